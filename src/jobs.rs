//! Durable batch jobs: items are stored before a job is acknowledged; a runner per job
//! reads pending items a page at a time (never the whole job in memory), grades them
//! and records each outcome once. Items are admitted by the judges' own limits: every
//! job of the process shares one budget of judge calls (`Committee::call_budget`), an
//! item holds its calls' worth of it while its judges work and gives it back before its
//! result is written, so the judges stay busy, a slow item never holds back the ones
//! after it, and store writes never hold judge capacity. `server.job_concurrency` is an
//! explicit per-job cap on items in flight instead. After a crash, `resume` restarts every unfinished job: finished items
//! are skipped, pending ones are graded (their judge calls hit the persistent cache).
//! Every runner is a tracked task with two tokens: `stop` (shutdown or cancel: no new
//! item starts) and `cancel` (the job's cancel only), which reaches through the grader
//! to the committee and every judge call, so once a job is cancelled no judge call of
//! it starts (calls already sent are awaited up to their deadline and their items
//! recorded if they complete; the rest stay pending). A cancelled job reads
//! `cancelling` until its runners have let go, then `cancelled` (`settle`); a cancelling
//! job is never resumed.
//! What else a finished job needs (a calibration run's report) is an on-finish hook
//! (`JobFinished`) given by `app`: this module must not know calibration or any other
//! kind of job.
//!
//! On a store shared by replicas (Postgres, `SharedQueue`) the runner is different:
//! every replica runs every unfinished job, claiming its items in small batches under
//! a lease (heartbeat every third of it) and recording each result fenced by its lease
//! token, so items are split across replicas, a crashed replica's items are reclaimed
//! when their leases expire, and each item still has exactly one result. Replicas hear
//! of new jobs, cancels and finished items through the store's job events (Postgres
//! LISTEN/NOTIFY), with a periodic scan for anything missed. A cancel event fires the
//! job's tokens on every replica running it; each runner releases its leases when it
//! has let go, and the job reads cancelled once no live lease holds its items. SQLite keeps the
//! single-process runner above, unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::grader::Grader;
use crate::item::parse_line;
use crate::store::{ItemOutcome, JobQueue, JobState, Store, parse_job_event};

/// Pending items read per store round trip.
const PAGE: u32 = 256;

/// Items one job keeps in flight at most when admitted by the call budget (memory
/// bound; the budget is the throttle). Items waiting for their store write count too,
/// so the group commit below has a full batch to write.
const MAX_IN_FLIGHT: usize = 1024;

/// On a shared queue, items one runner holds leased at most when admitted by the call
/// budget: enough to keep the judges busy, few enough that a crashed replica strands
/// little until its leases expire.
const MAX_LEASED: usize = 128;

/// Items claimed per round trip on a shared queue: small, so replicas split a job
/// finely and a crashed replica strands only what it held in flight until its leases
/// expire.
const CLAIM_BATCH: u32 = 8;

/// How often a replica on a shared queue looks for unfinished jobs it does not run
/// (a notification it missed, a runner that stopped on a store error) and removes
/// expired staging jobs.
const SCAN: Duration = Duration::from_secs(2);

/// The work queue of a store several replicas share, and the lease its claims take.
pub struct SharedQueue {
    pub queue: Arc<dyn JobQueue>,
    pub lease: Duration,
}

/// Work to do when a job's last item is recorded, before the job reads as done.
#[async_trait::async_trait]
pub trait JobFinished: Send + Sync {
    /// Called once per completed (not cancelled) run of job `id`, after every item is
    /// recorded and before the job is marked done, so whatever it writes is there when
    /// a client sees "done". It may be called again for the same job (a runner
    /// restarted after a crash or a failure), so it must be idempotent. An error keeps
    /// the job from reading as done: the runner stops and `resume` retries on restart.
    /// Implementations log their own failure with its context.
    async fn finished(&self, id: &str) -> crate::Result<()>;
}

/// The tokens of one job's runner in this process.
#[derive(Clone)]
struct Runner {
    /// Stops starting items: fired by shutdown (a child of it) and by the job's cancel.
    stop: CancellationToken,
    /// The job's cancel only: handed down to every judge call of the job, so none
    /// starts after it fires. Shutdown leaves it alone (items in flight then finish).
    cancel: CancellationToken,
    /// The token this runner's leases carry on a shared queue.
    lease: String,
}

pub struct Jobs {
    grader: Arc<Grader>,
    store: Arc<dyn Store>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    running: Mutex<HashMap<String, Runner>>,
    /// Per job, bumped after each of its finished items and when it becomes final,
    /// so a follower wakes for its own job only, and only when there is something
    /// new to read. Entries exist while a job runs or someone follows it.
    progress: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
    admission: Admission,
    on_finish: Arc<dyn JobFinished>,
    /// Set on a shared store: jobs run through leases instead of the local runner.
    shared: Option<SharedQueue>,
}

impl Jobs {
    /// Runners that call `on_finish` when a job's items are all recorded, before the
    /// job reads as done; leased runners when `shared` is given.
    pub fn new(
        grader: Arc<Grader>,
        store: Arc<dyn Store>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        concurrency: Option<usize>,
        on_finish: Arc<dyn JobFinished>,
        shared: Option<SharedQueue>,
    ) -> Arc<Jobs> {
        let admission = Admission::new(&grader, concurrency);
        Arc::new(Jobs {
            grader,
            store,
            tracker,
            shutdown,
            running: Mutex::new(HashMap::new()),
            progress: Mutex::new(HashMap::new()),
            admission,
            on_finish,
            shared,
        })
    }

    /// A receiver that changes whenever an item of job `id` finishes, or the job
    /// becomes final. Subscribe before reading, so nothing recorded in between is
    /// missed.
    pub fn subscribe(&self, id: &str) -> tokio::sync::watch::Receiver<u64> {
        let Ok(mut map) = self.progress.lock() else {
            // A poisoned map only loses wake-ups: followers fall back to polling.
            return tokio::sync::watch::channel(0).1;
        };
        // Entries nobody follows for jobs that no longer run are dropped here, so
        // the map stays as small as the set of running or followed jobs.
        let running: Vec<String> = self
            .running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        map.retain(|job, tx| tx.receiver_count() > 0 || running.contains(job));
        map.entry(id.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe()
    }

    /// Wakes job `id`'s followers.
    fn bump(&self, id: &str) {
        if let Ok(map) = self.progress.lock() {
            if let Some(tx) = map.get(id) {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    /// Starts (or restarts) the runner of a stored job.
    pub fn start(self: &Arc<Self>, id: &str) {
        let runner = Runner {
            stop: self.shutdown.child_token(),
            cancel: CancellationToken::new(),
            lease: uuid::Uuid::now_v7().to_string(),
        };
        if let Ok(mut map) = self.running.lock() {
            if map.contains_key(id) {
                return;
            }
            map.insert(id.to_owned(), runner.clone());
        }
        let this = Arc::clone(self);
        let id = id.to_owned();
        self.tracker.spawn(async move {
            let ran = match &this.shared {
                Some(shared) => this.run_leased(&id, &runner, shared).await,
                None => this.run(&id, &runner).await,
            };
            if let Err(e) = ran {
                tracing::error!(job = %id, error = %e, "job runner stopped on a store error; it resumes on restart");
            }
            if let Ok(mut map) = this.running.lock() {
                map.remove(&id);
            }
            // Read after leaving the map: a cancel that found this runner there fired
            // its token before, so it is seen here; one that came later found no runner
            // and settled the job itself. Either way someone settles.
            if runner.cancel.is_cancelled() {
                if let Err(e) = this.settle(&id, Some(&runner.lease)).await {
                    tracing::warn!(job = %id, error = %e, "could not mark the cancelled job cancelled; the next scan or restart does");
                }
            }
        });
    }

    /// Fires the tokens of job `id`'s runner in this process; false when none runs here.
    fn fire(&self, id: &str) -> bool {
        let Ok(map) = self.running.lock() else {
            return false;
        };
        map.get(id).is_some_and(|r| {
            r.cancel.cancel();
            r.stop.cancel();
            true
        })
    }

    /// A cancelling job whose runner (`lease`: its leases on a shared queue) has let go,
    /// or that no runner here works: cancelled now, with its finish time; on a shared
    /// queue once no replica holds a live lease on its items (the last to let go, or a
    /// scan after a dead replica's leases expired, settles it).
    async fn settle(&self, id: &str, lease: Option<&str>) -> crate::Result<()> {
        match &self.shared {
            Some(shared) => {
                shared.queue.release_and_settle(id, lease).await?;
            }
            None => self.store.set_job_state(id, JobState::Cancelled).await?,
        }
        self.bump(id);
        Ok(())
    }

    /// Whether job `id` may be worked now (queued or running): a runner started for a
    /// job cancelled, cancelling or done in the meantime leaves at once.
    async fn runnable(&self, id: &str) -> crate::Result<bool> {
        Ok(self
            .store
            .job(id)
            .await?
            .is_some_and(|j| j.state.is_runnable()))
    }

    /// Removes submissions a previous process was still receiving (all-or-nothing:
    /// their clients never got a job id), then resumes every job left queued or
    /// running.
    pub async fn resume(self: &Arc<Self>) -> crate::Result<usize> {
        let cut_off = self.store.discard_staged_jobs().await?;
        if cut_off > 0 {
            tracing::warn!(
                submissions = cut_off,
                "removed job submissions cut off by the previous process"
            );
        }
        // Cancels under way when the previous process stopped: nothing of theirs runs
        // in this process, so they are settled, never resumed (on a shared store, once
        // no other replica holds their items).
        for id in self.store.cancelling_jobs().await? {
            self.settle(&id, None).await?;
        }
        let ids = self.store.unfinished_jobs().await?;
        for id in &ids {
            tracing::info!(job = %id, "resuming job");
            self.start(id);
        }
        if let Some(shared) = &self.shared {
            let this = Arc::clone(self);
            let events = shared.queue.job_events();
            self.tracker
                .spawn(async move { this.watch_shared(events).await });
        }
        Ok(ids.len())
    }

    /// On a shared store, until shutdown: wakes followers for results any replica
    /// wrote, starts runners for jobs submitted (or resumed) anywhere, and scans for
    /// what a lost notification would have said; removes expired staging jobs.
    async fn watch_shared(self: Arc<Self>, mut events: tokio::sync::broadcast::Receiver<String>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut scan = tokio::time::interval(SCAN);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listening = true;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                event = events.recv(), if listening => match event {
                    Ok(event) => {
                        let (id, cancel) = parse_job_event(&event);
                        self.bump(id);
                        if cancel {
                            // Cancelled on any replica: stop this one's work on it now.
                            self.fire(id);
                        } else if !self.is_running(id) {
                            self.start(id);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Some events were dropped: wake every follower (each re-reads
                        // its job) and look for jobs to run now, not at the next tick.
                        self.bump_all();
                        self.scan().await;
                    }
                    Err(RecvError::Closed) => listening = false,
                },
                _ = scan.tick() => self.scan().await,
            }
        }
    }

    /// Starts a runner for every unfinished job not running here, and stops the ones
    /// running here whose job is no longer runnable (a cancel event this replica
    /// missed); settles cancelling jobs nobody here works (a dead replica's leases
    /// expired); removes expired staging jobs. Errors are logged: the next scan retries.
    async fn scan(self: &Arc<Self>) {
        match self.store.discard_staged_jobs().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                submissions = n,
                "removed job submissions whose staging lease expired"
            ),
            Err(e) => tracing::warn!(error = %e, "could not remove expired job submissions"),
        }
        // Read before the list: a runner started before it was read is in the list
        // unless its job stopped being runnable.
        let here: Vec<String> = self
            .running
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        match self.store.unfinished_jobs().await {
            Ok(ids) => {
                for id in ids.iter().filter(|id| !self.is_running(id)) {
                    self.start(id);
                }
                for id in here.iter().filter(|id| !ids.contains(id)) {
                    self.fire(id);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list unfinished jobs"),
        }
        match self.store.cancelling_jobs().await {
            Ok(ids) => {
                for id in ids.iter().filter(|id| !self.is_running(id)) {
                    if let Err(e) = self.settle(id, None).await {
                        tracing::warn!(job = %id, error = %e, "could not settle a cancelled job");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list cancelling jobs"),
        }
    }

    fn is_running(&self, id: &str) -> bool {
        self.running.lock().is_ok_and(|m| m.contains_key(id))
    }

    fn bump_all(&self) {
        if let Ok(map) = self.progress.lock() {
            for tx in map.values() {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    /// Cancels a job: it reads `cancelling` at once and no new item or judge call of it
    /// starts, here or (through the cancel event) on any replica running it. Judge calls
    /// already sent are awaited up to their deadline (their tokens are counted and
    /// their answers cached); an item all of whose calls complete is recorded, every
    /// other one stays pending. Items waiting for a provider batch are let go (the
    /// batch collector leaves their calls out of files not yet sent and cancels a
    /// submitted batch once every job in it is cancelled). The job reads `cancelled`,
    /// with its finish time, once its runners have let go (`settle`); when none runs
    /// here, at once (on a shared store: once no replica holds its items).
    pub async fn cancel(&self, id: &str) -> crate::Result<()> {
        self.store.set_job_state(id, JobState::Cancelling).await?;
        if !self.fire(id) {
            self.settle(id, None).await?;
        }
        self.bump(id);
        Ok(())
    }

    async fn run(&self, id: &str, runner: &Runner) -> crate::Result<()> {
        if !self.runnable(id).await? {
            return Ok(());
        }
        let token = &runner.stop;
        let cancel = &runner.cancel;
        self.store.set_job_state(id, JobState::Running).await?;
        // Each item is graded *and recorded* inside its own future, and this loop
        // only drains them: awaiting a store write here while the other futures sit
        // unpolled would strand the pool connections and permits they hold.
        // Shutdown stops starting items; the ones in flight finish and are recorded.
        // A cancel stops them too, and no judge call of the job starts after it (items
        // waiting for admission or for a limiter permit are let go, pending). Pages
        // are read as the items before them are admitted, so a page's slowest item
        // never holds back the next page.
        let pages = self.read_pages(id, token);
        // The first error is kept while the items in flight still finish and are
        // recorded, as on cancel.
        let first_error = pages
            .take_while(|_| std::future::ready(!token.is_cancelled()))
            .map(|item| async move {
                let (seq, input) = item?;
                let Some(outcome) = self.grade_admitted(id, &input, cancel).await else {
                    return Ok(());
                };
                self.store.finish_item(id, seq, &outcome).await?;
                self.bump(id);
                Ok(())
            })
            .buffer_unordered(self.admission.items_in_flight(MAX_IN_FLIGHT))
            .fold(None, |first: Option<crate::Error>, r| async move {
                first.or(r.err())
            })
            .await;
        if let Some(e) = first_error {
            return Err(e);
        }
        if !token.is_cancelled() {
            // The hook runs before the job reads as done, so a client that sees "done"
            // finds what it wrote (a calibration run's report).
            self.on_finish.finished(id).await?;
            self.store.set_job_state(id, JobState::Done).await?;
            self.bump(id);
        }
        Ok(())
    }

    /// Job `id`'s pending items in seq order, read a page at a time by a task of its
    /// own, one page ahead of the items admitted, so reading never waits for the items
    /// in flight and they are never left unpolled while a page is read (a reader that
    /// waited for a pool connection such an item held would never get it). It stops at
    /// the end, on cancel, on a store error (sent as the last element), or when the
    /// stream is dropped.
    fn read_pages(
        &self,
        id: &str,
        token: &CancellationToken,
    ) -> impl futures::Stream<Item = crate::Result<(u64, String)>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(PAGE as usize);
        let store = Arc::clone(&self.store);
        let (job, token) = (id.to_owned(), token.clone());
        tokio::spawn(async move {
            let mut after = None;
            while !token.is_cancelled() {
                match store.pending_items(&job, after, PAGE).await {
                    Ok(page) => {
                        let Some(last) = page.last().map(|(s, _)| *s) else {
                            return;
                        };
                        after = Some(last);
                        for item in page {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(crate::Error::from(e))).await;
                        return;
                    }
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }

    /// A job's runner on a shared store. Items are claimed a small batch at a time
    /// while fewer than `concurrency` are in flight, each graded and recorded in a
    /// task of its own (so a store round trip here never stalls them), and the leases
    /// of those in flight are renewed every third of the lease. When nothing is
    /// claimable the runner waits for other replicas' items (their results, or their
    /// leases expiring) and finishes the job once no item is pending. A cancel from
    /// any replica stops every claim; items in flight finish and are recorded.
    async fn run_leased(
        self: &Arc<Self>,
        id: &str,
        runner: &Runner,
        shared: &SharedQueue,
    ) -> crate::Result<()> {
        use futures::stream::FuturesUnordered;
        if !self.runnable(id).await? {
            return Ok(());
        }
        let token = &runner.stop;
        self.store.set_job_state(id, JobState::Running).await?;
        // One lease token per runner: the heartbeat renews all its items in one
        // statement, and a runner whose lease was taken over is fenced out.
        let lease_token = runner.lease.clone();
        let lease = shared.lease;
        let mut beat = tokio::time::interval(lease / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inflight = FuturesUnordered::new();
        let mut failure: Option<crate::Error> = None;
        let mut exhausted = false;
        loop {
            let most = self.admission.items_in_flight(MAX_LEASED);
            let room = most.saturating_sub(inflight.len());
            // Claims wait for room for a batch (or an idle runner): claiming one item
            // per completion would double the round trips per item. A batch is at most
            // half the concurrency, so a slow item never stalls the pipeline.
            let batch = usize::try_from(CLAIM_BATCH)
                .unwrap_or(1)
                .min(most.div_ceil(2));
            let worth_it = room >= batch || (inflight.is_empty() && room > 0);
            if !token.is_cancelled() && failure.is_none() && !exhausted && worth_it {
                let want = u32::try_from(room).unwrap_or(CLAIM_BATCH).min(CLAIM_BATCH);
                match shared
                    .queue
                    .claim_items(id, &lease_token, lease, want)
                    .await
                {
                    Ok(items) => {
                        exhausted = items.is_empty();
                        for (seq, input) in items {
                            inflight.push(self.spawn_leased(
                                id,
                                seq,
                                input,
                                &lease_token,
                                shared,
                                &runner.cancel,
                            ));
                        }
                        continue;
                    }
                    Err(e) => failure = Some(e.into()),
                }
            }
            if inflight.is_empty() {
                if let Some(e) = failure {
                    return Err(e);
                }
                if token.is_cancelled() {
                    return Ok(());
                }
                let Some(job) = self.store.job(id).await? else {
                    return Ok(());
                };
                if !job.state.is_runnable() {
                    // Done elsewhere, or cancelled (an event this replica missed: the
                    // scan settles it).
                    return Ok(());
                }
                if job.pending() == 0 {
                    // Every replica that sees the last item recorded may get here;
                    // the hook is idempotent and the state change guarded.
                    self.on_finish.finished(id).await?;
                    self.store.set_job_state(id, JobState::Done).await?;
                    self.bump(id);
                    return Ok(());
                }
                // The remaining items are leased by other replicas: wait for their
                // results, or for their leases to expire so they can be reclaimed.
                tokio::select! {
                    () = token.cancelled() => {}
                    () = tokio::time::sleep((lease / 3).min(Duration::from_secs(1))) => {}
                }
                exhausted = false;
                continue;
            }
            tokio::select! {
                done = inflight.next() => {
                    exhausted = false;
                    match done {
                        Some(Ok(Ok(()))) | None => {}
                        Some(Ok(Err(e))) => { failure.get_or_insert(e); }
                        Some(Err(join)) => {
                            failure.get_or_insert(crate::Error::Internal(format!("job item task failed: {join}")));
                        }
                    }
                }
                _ = beat.tick() => {
                    if let Err(e) = shared.queue.renew_leases(id, &lease_token, lease).await {
                        // A missed heartbeat risks the lease, never the result: an
                        // item taken over is graded again elsewhere and recorded once.
                        tracing::warn!(job = %id, error = %e, "lease heartbeat failed");
                    }
                }
            }
        }
    }

    /// Grades and records one claimed item in a tracked task of its own.
    fn spawn_leased(
        self: &Arc<Self>,
        id: &str,
        seq: u64,
        input: String,
        lease_token: &str,
        shared: &SharedQueue,
        cancel: &CancellationToken,
    ) -> tokio::task::JoinHandle<crate::Result<()>> {
        let this = Arc::clone(self);
        let cancel = cancel.clone();
        let queue = Arc::clone(&shared.queue);
        let id = id.to_owned();
        let lease_token = lease_token.to_owned();
        self.tracker.spawn(async move {
            let Some(outcome) = this.grade_admitted(&id, &input, &cancel).await else {
                // The job's cancel cut the item short, or shutdown came while it waited
                // for a provider batch: it stays pending (the runner releases its lease
                // on a cancel; on shutdown it runs out and a replica, or this one
                // restarted, picks the item up if the job still runs).
                return Ok(());
            };
            if queue
                .finish_leased_item(&id, seq, &lease_token, &outcome)
                .await?
            {
                this.bump(&id);
            } else {
                tracing::info!(job = %id, seq, "item's lease was taken over before its result was recorded; the other replica records it");
            }
            Ok(())
        })
    }

    /// Grades one stored item of job `id` once the call budget admits it; the budget is
    /// given back as soon as its judges are done, before the caller writes the outcome.
    /// Its judge calls run in the job's batch scope, so batch judges batch them and
    /// count them for the job.
    /// `None`: the job's cancel (`cancel`) came before every judge call of the item had
    /// started (waiting for admission, a limiter permit or a provider batch), or
    /// shutdown came while it waited for a provider batch; it stays pending.
    async fn grade_admitted(
        &self,
        id: &str,
        input: &str,
        cancel: &CancellationToken,
    ) -> Option<ItemOutcome> {
        let failed = |case_id: &str, e: &crate::Error| {
            Some(ItemOutcome {
                failed: true,
                result: crate::grader::failed_item_json(case_id, e).to_string(),
                facts: None,
                abstained: false,
                calls: 0,
                input_tokens: 0,
                cached_input_tokens: 0,
                output_tokens: 0,
                reasoning_tokens: 0,
                cost_usd: 0.0,
            })
        };
        let item = match parse_line(input) {
            Ok((_, item)) => item,
            Err(inv) => return failed("", &crate::Error::Invalid(inv)),
        };
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => return None,
            p = self.admission.admit(&self.grader, &item) => p,
        };
        let grading = crate::judge::batch::scope(Some(id), self.grader.grade_until(&item, cancel));
        let graded = if self.grader.committee.batches() {
            // A batched call can wait hours for its batch: on shutdown the item is left
            // pending instead of holding the process. Its batch is stored, so the item
            // re-run after the restart waits for that batch rather than resubmitting.
            // A cancelled job lets its waiting items go the same way: the answers
            // would be paid for and never read.
            tokio::select! {
                graded = grading => graded,
                () = self.shutdown.cancelled() => return None,
                () = cancel.cancelled() => return None,
            }
        } else {
            // Live calls already sent finish (what they bill is counted and cached);
            // after a cancel no new one starts and the item is let go unless complete.
            grading.await
        };
        drop(permit);
        match graded? {
            Ok(report) => {
                // The report is serialised once, here, for storage; the counters and
                // the score facts come from the typed document, not from its JSON.
                let doc = report.to_doc();
                let result = match serde_json::to_string(&doc) {
                    Ok(json) => json,
                    Err(e) => {
                        return failed(
                            &item.case.id,
                            &crate::Error::Internal(format!("report serialisation: {e}")),
                        );
                    }
                };
                Some(ItemOutcome {
                    failed: false,
                    abstained: !doc.abstentions.is_empty(),
                    calls: doc.usage.upstream_calls,
                    input_tokens: doc.usage.input_tokens,
                    cached_input_tokens: doc.usage.cached_input_tokens,
                    output_tokens: doc.usage.output_tokens,
                    reasoning_tokens: doc.usage.reasoning_tokens,
                    cost_usd: doc.usage.cost_usd.unwrap_or(0.0),
                    facts: Some(doc.score_facts_json()),
                    result,
                })
            }
            Err(e) => failed(&item.case.id, &e),
        }
    }
}

/// How items are let in to grading: by an explicit per-job cap on items in flight
/// (`server.job_concurrency`), or by the committee's call budget, one budget for every
/// job of the process, so the judges' own limits (concurrency, RPM, TPM) are the only
/// throttle.
struct Admission {
    /// `server.job_concurrency`: items in flight per job; no call budget then.
    cap: Option<usize>,
    /// The committee's call budget, shared by all jobs.
    calls: crate::committee::CallBudget,
}

impl Admission {
    fn new(grader: &Grader, cap: Option<usize>) -> Admission {
        Admission {
            cap: cap.map(|c| c.max(1)),
            calls: crate::committee::CallBudget::of(&grader.committee),
        }
    }

    /// Items one job keeps in flight: the explicit cap, else up to `most` (the call
    /// budget then decides how many of them are with the judges).
    fn items_in_flight(&self, most: usize) -> usize {
        self.cap.unwrap_or(most).max(1)
    }

    /// Waits for the item's calls in the budget; no permit under an explicit cap.
    async fn admit(
        &self,
        grader: &Grader,
        item: &crate::item::Item,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if self.cap.is_some() {
            return None;
        }
        self.calls.admit(&grader.committee, item).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::SqliteStore;

    const ITEM: &str = r#"{"format": "case.v1", "case_id": "c1", "conversation": [{"role": "user", "content": "Hi"}], "response": "Hello", "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t", "scoring": {"policy": "weighted"}, "criteria": [{"id": "greets", "text": "Greets the user.", "points": 1}]}}"#;

    /// Records the job's state when the hook runs; fails when asked to.
    struct Probe {
        store: Arc<dyn Store>,
        fail: bool,
        seen: Mutex<Vec<(String, Option<JobState>)>>,
    }

    #[async_trait::async_trait]
    impl JobFinished for Probe {
        async fn finished(&self, id: &str) -> crate::Result<()> {
            let state = self.store.job(id).await?.map(|j| j.state);
            self.seen.lock().unwrap().push((id.to_owned(), state));
            if self.fail {
                return Err(crate::Error::Internal("probe failed".into()));
            }
            Ok(())
        }
    }

    /// A SQLite store in `dir` and runners whose on-finish hook is a `Probe` (failing
    /// when asked to); the tracker is the runners'.
    async fn runners(
        dir: &tempfile::TempDir,
        fail: bool,
    ) -> (Arc<dyn Store>, Arc<Jobs>, Arc<Probe>, TaskTracker) {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        let cfg = Config::default_simulated().unwrap();
        let grader = Arc::new(Grader::with_store(&cfg, Arc::clone(&store)).unwrap());
        let probe = Arc::new(Probe {
            store: Arc::clone(&store),
            fail,
            seen: Mutex::new(Vec::new()),
        });
        let tracker = TaskTracker::new();
        let jobs = Jobs::new(
            grader,
            Arc::clone(&store),
            tracker.clone(),
            CancellationToken::new(),
            None,
            Arc::clone(&probe) as Arc<dyn JobFinished>,
            None,
        );
        (store, jobs, probe, tracker)
    }

    /// Stores job `id` with the one item `ITEM`, queued.
    async fn queue_one(store: &dyn Store, id: &str) {
        store.stage_job(id, 0, None).await.unwrap();
        store
            .stage_items(id, 0, &[("c1".to_owned(), ITEM.to_owned())])
            .await
            .unwrap();
        store.commit_staged_job(id, 1).await.unwrap();
    }

    /// Runs one single-item job to its end; returns what the hook saw and the final state.
    async fn run_job(fail: bool) -> (Vec<(String, Option<JobState>)>, JobState) {
        let dir = tempfile::tempdir().unwrap();
        let (store, jobs, probe, tracker) = runners(&dir, fail).await;
        queue_one(store.as_ref(), "j1").await;
        jobs.start("j1");
        tracker.close();
        tracker.wait().await;
        let state = store.job("j1").await.unwrap().unwrap().state;
        let seen = probe.seen.lock().unwrap().clone();
        (seen, state)
    }

    #[tokio::test]
    async fn the_hook_runs_before_the_job_reads_as_done() {
        let (seen, state) = run_job(false).await;
        assert_eq!(seen, [("j1".to_owned(), Some(JobState::Running))]);
        assert_eq!(state, JobState::Done);
    }

    /// A job left cancelling (its process stopped before its runner let go) is settled
    /// as cancelled at resume and never run; a cancel with no runner here settles at once.
    #[tokio::test]
    async fn cancelling_jobs_are_settled_at_resume_and_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let (store, jobs, probe, tracker) = runners(&dir, false).await;
        for id in ["left", "queued"] {
            queue_one(store.as_ref(), id).await;
        }
        store
            .set_job_state("left", JobState::Running)
            .await
            .unwrap();
        store
            .set_job_state("left", JobState::Cancelling)
            .await
            .unwrap();
        // The queued job is cancelled before anything resumes it: no runner, settled.
        jobs.cancel("queued").await.unwrap();
        assert_eq!(jobs.resume().await.unwrap(), 0, "nothing to resume");
        tracker.close();
        tracker.wait().await;
        for id in ["left", "queued"] {
            let job = store.job(id).await.unwrap().unwrap();
            assert_eq!(job.state, JobState::Cancelled, "{id}");
            assert!(job.finished_at.is_some(), "{id}");
            assert_eq!((job.done, job.failed, job.pending()), (0, 0, 1), "{id}");
        }
        assert!(probe.seen.lock().unwrap().is_empty(), "no runner finished");
    }

    #[tokio::test]
    async fn a_failed_hook_keeps_the_job_from_reading_as_done() {
        let (seen, state) = run_job(true).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(state, JobState::Running, "resumed on restart");
    }
}
