//! Durable batch jobs: items are stored before a job is acknowledged; a runner per job
//! grades pending items in pages (never the whole job in memory) and records each
//! outcome once. After a crash, `resume` restarts every unfinished job: finished items
//! are skipped, pending ones are graded (their judge calls hit the persistent cache).
//! Every runner is a tracked task with a cancellation token (graceful shutdown, cancel).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::grader::Grader;
use crate::item::parse_line;
use crate::store::{ItemOutcome, JobState, Store};

/// Items graded concurrently per job.
const PAGE: u32 = 256;

pub struct Jobs {
    grader: Arc<Grader>,
    store: Arc<dyn Store>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Bumped after every finished item, so followers wake up.
    progress: tokio::sync::watch::Sender<u64>,
    concurrency: usize,
}

impl Jobs {
    pub fn new(
        grader: Arc<Grader>,
        store: Arc<dyn Store>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        concurrency: usize,
    ) -> Arc<Jobs> {
        Arc::new(Jobs {
            grader,
            store,
            tracker,
            shutdown,
            running: Mutex::new(HashMap::new()),
            progress: tokio::sync::watch::channel(0).0,
            concurrency: concurrency.max(1),
        })
    }

    /// A receiver that changes whenever any job item finishes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.progress.subscribe()
    }

    /// Starts (or restarts) the runner of a stored job.
    pub fn start(self: &Arc<Self>, id: &str) {
        let token = self.shutdown.child_token();
        if let Ok(mut map) = self.running.lock() {
            if map.contains_key(id) {
                return;
            }
            map.insert(id.to_owned(), token.clone());
        }
        let this = Arc::clone(self);
        let id = id.to_owned();
        self.tracker.spawn(async move {
            if let Err(e) = this.run(&id, &token).await {
                tracing::error!(job = %id, error = %e, "job runner stopped on a store error; it resumes on restart");
            }
            if let Ok(mut map) = this.running.lock() {
                map.remove(&id);
            }
        });
    }

    /// Resumes every job left queued or running by a previous process.
    pub async fn resume(self: &Arc<Self>) -> crate::Result<usize> {
        let ids = self.store.unfinished_jobs().await?;
        for id in &ids {
            tracing::info!(job = %id, "resuming job");
            self.start(id);
        }
        Ok(ids.len())
    }

    /// Cancels a job: no new items start; items in flight finish and are recorded.
    pub async fn cancel(&self, id: &str) -> crate::Result<()> {
        self.store.set_job_state(id, JobState::Cancelled).await?;
        if let Ok(map) = self.running.lock() {
            if let Some(t) = map.get(id) {
                t.cancel();
            }
        }
        self.progress.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn run(&self, id: &str, token: &CancellationToken) -> crate::Result<()> {
        self.store.set_job_state(id, JobState::Running).await?;
        let mut after = None;
        loop {
            if token.is_cancelled() {
                return Ok(());
            }
            let page = self.store.pending_items(id, after, PAGE).await?;
            let Some(last) = page.last().map(|(s, _)| *s) else {
                break;
            };
            after = Some(last);
            // Each item is graded *and recorded* inside its own future, and this loop
            // only drains them: awaiting a store write here while the other futures sit
            // unpolled would strand the pool connections and permits they hold.
            // Cancellation (job cancel or shutdown) stops starting items; the ones in
            // flight finish and are recorded.
            let results: Vec<crate::Result<()>> = futures::stream::iter(page)
                .take_while(|_| std::future::ready(!token.is_cancelled()))
                .map(|(seq, input)| async move {
                    let outcome = self.grade_one(&input).await;
                    self.store.finish_item(id, seq, &outcome).await?;
                    self.progress.send_modify(|n| *n += 1);
                    Ok(())
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for r in results {
                r?;
            }
        }
        if !token.is_cancelled() {
            // A calibration run's report is written before its job reads as done, so a
            // client that sees "done" finds the report.
            if let Err(e) = crate::calibration::run::finish(&*self.store, id).await {
                tracing::error!(job = %id, error = %e, "calibration report failed; it is retried on restart");
                return Err(e);
            }
            self.store.set_job_state(id, JobState::Done).await?;
            self.progress.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn grade_one(&self, input: &str) -> ItemOutcome {
        let failed = |case_id: &str, e: &crate::Error| ItemOutcome {
            failed: true,
            result: crate::grader::failed_item_json(case_id, e),
            abstained: false,
            calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
        };
        let item = match parse_line(input) {
            Ok((_, item)) => item,
            Err(inv) => return failed("", &crate::Error::Invalid(inv)),
        };
        match self.grader.grade(&item).await {
            Ok(report) => {
                let json = report.to_json();
                let usage = &json["usage"];
                ItemOutcome {
                    failed: false,
                    abstained: report
                        .criteria
                        .iter()
                        .any(|c| c.ballots.iter().any(|b| b.abstained.is_some())),
                    calls: usage["upstream_calls"].as_u64().unwrap_or(0),
                    input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
                    output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
                    cost_usd: usage["cost_usd"].as_f64().unwrap_or(0.0),
                    result: json,
                }
            }
            Err(e) => failed(&item.case.id, &e),
        }
    }
}
