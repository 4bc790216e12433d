//! The provider Batch API for job calls: one `Batcher` per batch judge collects pending
//! chat requests into batch files (sent when `batch_max_requests` are waiting or the
//! oldest has waited `batch_max_wait_ms`), polls each submitted batch every
//! `batch_poll_ms`, and hands every entry's completion (or failure) back to the call
//! waiting for its `custom_id`. Submitted batches are written to a `BatchLedger`, so a
//! restarted process polls them again instead of resubmitting. The wire format lives
//! in `provider.rs` (`BatchApi`); storage behind the `BatchLedger` trait. Must not parse
//! verdicts, price calls or know about committees: `call.rs` does those for both paths.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{ChatRequest, Completion, ProviderError};
use crate::config::{BATCH_COMPLETION_WINDOW, BatchConfig, JudgeConfig};

tokio::task_local! {
    static SCOPE: BatchScope;
}

/// Marks the calls made inside it as job calls: batch judges send them through the
/// Batch API, attributed to `job` (for the job's batch counters).
#[derive(Debug, Clone, Default)]
struct BatchScope {
    job: Option<String>,
}

/// Runs `fut` as job work: batch judges batch the calls it makes. Synchronous grading
/// (`POST /v1/grade`, `tribunal grade` without `--batch`) runs outside any scope, so its
/// calls stay live and keep their ordinary deadlines.
pub async fn scope<F: Future>(job: Option<&str>, fut: F) -> F::Output {
    SCOPE
        .scope(
            BatchScope {
                job: job.map(str::to_owned),
            },
            fut,
        )
        .await
}

/// Whether the current task runs inside a `scope`.
pub fn in_scope() -> bool {
    SCOPE.try_with(|_| ()).is_ok()
}

fn current_job() -> Option<String> {
    SCOPE.try_with(|s| s.job.clone()).ok().flatten()
}

/// Where a submitted batch stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderBatchState {
    /// `validating`, `in_progress`, `finalizing`, `cancelling`.
    Running,
    Completed,
    Failed,
    Expired,
    Cancelled,
}

impl ProviderBatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderBatchState::Running => "running",
            ProviderBatchState::Completed => "completed",
            ProviderBatchState::Failed => "failed",
            ProviderBatchState::Expired => "expired",
            ProviderBatchState::Cancelled => "cancelled",
        }
    }
}

/// `GET /v1/batches/{id}`, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderBatch {
    pub state: ProviderBatchState,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
}

/// Why one entry of a batch gave no completion.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryError {
    /// Expired entries, 429 / 5xx answers and whole-batch failures are worth a later
    /// batch; a 4xx answer to the request itself is not.
    pub retryable: bool,
    pub message: String,
}

/// One entry's outcome.
pub type Entry = Result<Completion, EntryError>;

/// The provider side of the Batch API (OpenAI-compatible `/v1/files` + `/v1/batches`).
#[async_trait::async_trait]
pub trait BatchApi: Send + Sync {
    /// The chat-completions body a live call would send for `req`.
    fn request_body(&self, req: &ChatRequest) -> Value;
    /// Uploads a JSONL batch input file (`purpose=batch`); returns its file id.
    async fn upload(&self, jsonl: Vec<u8>) -> Result<String, ProviderError>;
    /// Creates a batch over an uploaded file; returns the batch id.
    async fn create(&self, input_file_id: &str, window: &str) -> Result<String, ProviderError>;
    async fn status(&self, batch_id: &str) -> Result<ProviderBatch, ProviderError>;
    /// Asks the provider to stop a batch (`POST /v1/batches/{id}/cancel`): it goes
    /// `cancelling`, then `cancelled`, and only entries already answered are billed.
    async fn cancel(&self, batch_id: &str) -> Result<(), ProviderError>;
    /// The entries of an output or error file: `(custom_id, outcome)`.
    async fn entries(&self, file_id: &str) -> Result<Vec<(String, Entry)>, ProviderError>;
}

/// A submitted batch as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Copy)]
pub enum LedgerStatus {
    /// Submitted; not yet final at the provider.
    Open,
    /// Final and completed, some entries not yet handed to a call (after a restart).
    Completed,
    /// Failed, expired or cancelled at the provider (its entries were retried).
    Failed,
    /// Completed and every entry handed to its call.
    Delivered,
}

impl LedgerStatus {
    pub const ALL: [LedgerStatus; 4] = [
        LedgerStatus::Open,
        LedgerStatus::Completed,
        LedgerStatus::Failed,
        LedgerStatus::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LedgerStatus::Open => "open",
            LedgerStatus::Completed => "completed",
            LedgerStatus::Failed => "failed",
            LedgerStatus::Delivered => "delivered",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerStatus> {
        LedgerStatus::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One submitted batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// The provider's batch id.
    pub id: String,
    pub judge: String,
    pub input_file_id: String,
    pub status: LedgerStatus,
    /// The `custom_id` of every entry, in file order.
    pub custom_ids: Vec<String>,
    /// Jobs with an entry in it (for their batch counters).
    pub jobs: Vec<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Batches submitted, completed and failed, for one job.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub struct BatchCounts {
    pub submitted: u64,
    pub completed: u64,
    /// Failed, expired or cancelled at the provider.
    pub failed: u64,
}

/// Where submitted batches are remembered across restarts (the store, behind this trait).
#[async_trait::async_trait]
pub trait BatchLedger: Send + Sync {
    async fn put_batch(&self, batch: &BatchRecord) -> Result<(), String>;
    async fn set_batch_status(&self, id: &str, status: LedgerStatus) -> Result<(), String>;
    /// A judge's batches still `Open` or `Completed` (the ones a restart resumes).
    async fn resumable_batches(&self, judge: &str) -> Result<Vec<BatchRecord>, String>;
    /// Whether every job with an entry in batch `id` was cancelled (false when it is
    /// linked to no job).
    async fn jobs_all_cancelled(&self, id: &str) -> Result<bool, String>;
}

/// Live counters of one batch judge.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Requests sent in batch files (retries included).
    pub requests: AtomicU64,
    /// Batches this process asked the provider to cancel (every job in them cancelled).
    pub cancelled: AtomicU64,
    /// Requests dropped before their file was sent (every caller had gone).
    pub dropped: AtomicU64,
}

/// The deterministic id of a request in a batch file: the judge, the system prompt
/// (static in the v2 templates), the destructured inputs (`content_key`, which leaves
/// the per-process delimiter nonce out), the sample and any re-ask turns. A restarted
/// process renders the same item with a new nonce, yet finds the same id in a stored
/// batch and waits for it instead of paying for it twice.
pub fn custom_id(cfg: &JudgeConfig, req: &ChatRequest) -> String {
    let mut h = blake3::Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(cfg.name.as_bytes());
    field(cfg.model.as_bytes());
    field(&req.content_key);
    field(&req.sample.to_le_bytes());
    for (i, (_, text)) in req.messages.iter().enumerate() {
        // The first user message carries the nonce; everything else is stable.
        if i != 1 {
            field(text.as_bytes());
        }
    }
    field(&(req.messages.len() as u64).to_le_bytes());
    format!("tb-{}", &h.finalize().to_hex()[..32])
}

/// A batch file is sent before it reaches this size: OpenAI accepts input files of up
/// to 200 MB, and the margin covers the JSONL framing estimate.
const MAX_FILE_BYTES: usize = 190 * 1024 * 1024;

struct Line {
    custom_id: String,
    body: Value,
    job: Option<String>,
}

#[derive(Default)]
struct State {
    /// Requests waiting for the next batch file.
    pending: Vec<Line>,
    /// Their bodies' JSON size, so a file stays under the provider's size limit.
    pending_bytes: usize,
    /// Bumped by every flush, so the age timer of a file already sent does nothing.
    generation: u64,
    waiters: HashMap<String, Vec<oneshot::Sender<Entry>>>,
    /// Custom ids pending or in a submitted batch: a second identical request waits for
    /// the first instead of adding a duplicate line (which the provider rejects).
    queued: HashSet<String>,
    /// Results of resumed batches whose calls have not come back yet: batch id, entry.
    ready: HashMap<String, (String, Entry)>,
    /// Entries of a resumed batch still in `ready`.
    unclaimed: HashMap<String, usize>,
}

enum Queued {
    Waiting(oneshot::Receiver<Entry>),
    /// A stored result, and the resumed batch it emptied (now delivered), if any.
    Ready(Entry, Option<String>),
}

/// One batch judge's collector.
pub struct Batcher {
    judge: String,
    pub cfg: BatchConfig,
    api: Arc<dyn BatchApi>,
    ledger: OnceLock<Arc<dyn BatchLedger>>,
    resumed: tokio::sync::OnceCell<()>,
    state: Mutex<State>,
    pub stats: BatchStats,
    /// Flush and poll tasks. They own no request state a shutdown must wait for: the
    /// batches they watch are in the ledger, and a restart polls them again.
    tasks: tokio_util::task::TaskTracker,
}

impl Batcher {
    pub fn new(judge: &str, cfg: BatchConfig, api: Arc<dyn BatchApi>) -> Self {
        Batcher {
            judge: judge.to_owned(),
            cfg,
            api,
            ledger: OnceLock::new(),
            resumed: tokio::sync::OnceCell::new(),
            state: Mutex::new(State::default()),
            stats: BatchStats::default(),
            tasks: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Remembers submitted batches in `ledger` (the server's store); without one,
    /// batches live only as long as the process.
    pub fn attach_ledger(&self, ledger: Arc<dyn BatchLedger>) {
        let _ = self.ledger.set(ledger);
    }

    pub fn request_body(&self, req: &ChatRequest) -> Value {
        self.api.request_body(req)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind; they are
        // still consistent enough to keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `body` in a batch (or waits for the stored batch that already holds
    /// `custom_id`) and returns its entry once the batch is final.
    pub async fn submit(self: &Arc<Self>, custom_id: String, body: Value) -> Entry {
        self.resume().await;
        // The lock is taken and released in a plain function, so no guard lives across
        // an await.
        let rx = match self.enqueue(custom_id, body) {
            Queued::Waiting(rx) => rx,
            Queued::Ready(entry, delivered) => {
                if let Some(batch) = delivered {
                    self.set_status(&batch, LedgerStatus::Delivered).await;
                }
                return entry;
            }
        };
        rx.await.unwrap_or_else(|_| {
            Err(EntryError {
                retryable: true,
                message: "the batch collector stopped before the batch finished".to_owned(),
            })
        })
    }

    /// Takes a resumed batch's stored result, or queues the request (once per id) and
    /// registers a waiter; starts a flush or the age timer as the file fills.
    fn enqueue(self: &Arc<Self>, custom_id: String, body: Value) -> Queued {
        let mut st = self.lock();
        if let Some((batch, entry)) = st.ready.remove(&custom_id) {
            let left = st.unclaimed.get_mut(&batch).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            let delivered = (left == Some(0)).then(|| {
                st.unclaimed.remove(&batch);
                batch
            });
            return Queued::Ready(entry, delivered);
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.entry(custom_id.clone()).or_default().push(tx);
        if st.queued.insert(custom_id.clone()) {
            st.pending_bytes += body.to_string().len() + custom_id.len() + 80;
            st.pending.push(Line {
                custom_id,
                body,
                job: current_job(),
            });
            if st.pending.len() >= self.cfg.max_requests || st.pending_bytes >= MAX_FILE_BYTES {
                st.pending_bytes = 0;
                let lines = std::mem::take(&mut st.pending);
                st.generation += 1;
                let this = Arc::clone(self);
                self.tasks.spawn(async move { this.flush(lines).await });
            } else if st.pending.len() == 1 {
                let generation = st.generation;
                let this = Arc::clone(self);
                self.tasks
                    .spawn(async move { this.age_timer(generation).await });
            }
        }
        Queued::Waiting(rx)
    }

    /// Sends the pending file once its first request has waited `max_wait`.
    async fn age_timer(self: Arc<Self>, generation: u64) {
        tokio::time::sleep(self.cfg.max_wait).await;
        let lines = self.take_pending(generation);
        if !lines.is_empty() {
            self.flush(lines).await;
        }
    }

    /// The pending lines, if no flush took them since `generation`.
    fn take_pending(&self, generation: u64) -> Vec<Line> {
        let mut st = self.lock();
        if st.generation != generation {
            return Vec::new();
        }
        st.generation += 1;
        st.pending_bytes = 0;
        std::mem::take(&mut st.pending)
    }

    /// Picks up the batches a previous process submitted (once, at the first call).
    async fn resume(self: &Arc<Self>) {
        self.resumed
            .get_or_init(|| async {
                let Some(ledger) = self.ledger.get() else {
                    return;
                };
                let batches = match ledger.resumable_batches(&self.judge).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(judge = %self.judge, error = %e, "cannot read stored batches; new calls are submitted afresh");
                        return;
                    }
                };
                if !batches.is_empty() {
                    tracing::info!(judge = %self.judge, batches = batches.len(), "resuming stored judge batches");
                }
                self.lock()
                    .queued
                    .extend(batches.iter().flat_map(|b| b.custom_ids.iter().cloned()));
                for b in batches {
                    let this = Arc::clone(self);
                    self.tasks
                        .spawn(async move { this.poll(b.id, b.custom_ids, b.created_at, true).await });
                }
            })
            .await;
    }

    /// Writes a file, creates its batch, records it and polls it to the end.
    async fn flush(self: Arc<Self>, lines: Vec<Line>) {
        let lines = self.drop_abandoned(lines);
        if lines.is_empty() {
            return;
        }
        let ids: Vec<String> = lines.iter().map(|l| l.custom_id.clone()).collect();
        let mut jobs: Vec<String> = lines.iter().filter_map(|l| l.job.clone()).collect();
        jobs.sort();
        jobs.dedup();
        let mut jsonl = Vec::new();
        for l in &lines {
            let line = json!({
                "custom_id": l.custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": l.body,
            });
            jsonl.extend_from_slice(line.to_string().as_bytes());
            jsonl.push(b'\n');
        }
        drop(lines);
        let (file, id) = match self.send_file(jsonl).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(judge = %self.judge, error = %e, "batch submission failed");
                let entry = Err(EntryError {
                    retryable: e.retryable(),
                    message: format!("batch submission failed: {e}"),
                });
                self.dispatch(&ids, HashMap::new(), &entry, None, false);
                return;
            }
        };
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        self.stats
            .requests
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        crate::metrics::judge_batch(&self.judge, "submitted", ids.len());
        let created_at = crate::store::now_ms();
        if let Some(ledger) = self.ledger.get() {
            let record = BatchRecord {
                id: id.clone(),
                judge: self.judge.clone(),
                input_file_id: file,
                status: LedgerStatus::Open,
                custom_ids: ids.clone(),
                jobs,
                created_at,
            };
            if let Err(e) = ledger.put_batch(&record).await {
                tracing::warn!(judge = %self.judge, batch = %id, error = %e, "cannot store the batch; a restart would submit its requests again");
            }
        }
        tracing::debug!(judge = %self.judge, batch = %id, requests = ids.len(), "judge batch submitted");
        self.poll(id, ids, created_at, false).await;
    }

    /// Leaves out the lines nobody waits for any more: every caller of the request went
    /// away (its job was cancelled, or the process is shutting down) while the file
    /// filled. Sending them would bill answers no one reads; after a restart, items
    /// still pending ask again.
    fn drop_abandoned(&self, lines: Vec<Line>) -> Vec<Line> {
        let mut st = self.lock();
        let mut kept = Vec::with_capacity(lines.len());
        for line in lines {
            let wanted = st
                .waiters
                .get(&line.custom_id)
                .is_some_and(|ws| ws.iter().any(|w| !w.is_closed()));
            if wanted {
                kept.push(line);
            } else {
                st.waiters.remove(&line.custom_id);
                st.queued.remove(&line.custom_id);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        kept
    }

    /// Whether nobody in this process waits for any entry of the batch and every job
    /// with an entry in it was cancelled: then its answers would be paid for and never
    /// read. Waiters are checked too because an identical request of another job may
    /// have joined an entry after the batch (and its job links) was written.
    async fn unwanted(&self, id: &str, ids: &[String]) -> bool {
        let waited = {
            let st = self.lock();
            ids.iter().any(|cid| {
                st.waiters
                    .get(cid)
                    .is_some_and(|ws| ws.iter().any(|w| !w.is_closed()))
            })
        };
        if waited {
            return false;
        }
        let Some(ledger) = self.ledger.get() else {
            return false;
        };
        match ledger.jobs_all_cancelled(id).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(judge = %self.judge, batch = %id, error = %e, "cannot read the batch's jobs; not cancelling it");
                false
            }
        }
    }

    /// Upload and create, retrying transient errors a few times.
    async fn send_file(&self, jsonl: Vec<u8>) -> Result<(String, String), ProviderError> {
        let mut last = ProviderError::Timeout;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(super::call::full_jitter(
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                    attempt,
                ))
                .await;
            }
            let file = match self.api.upload(jsonl.clone()).await {
                Ok(f) => f,
                Err(e) if e.retryable() => {
                    last = e;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.api.create(&file, BATCH_COMPLETION_WINDOW).await {
                Ok(id) => return Ok((file, id)),
                Err(e) if e.retryable() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Polls a batch until it is final (or past its completion window) and hands its
    /// entries out. `resumed` batches keep results whose call has not come back yet.
    async fn poll(self: Arc<Self>, id: String, ids: Vec<String>, created_at: i64, resumed: bool) {
        let window_ms = i64::try_from(self.cfg.completion_window.as_millis()).unwrap_or(i64::MAX);
        let poll_ms = i64::try_from(self.cfg.poll.as_millis()).unwrap_or(i64::MAX);
        let give_up_at = created_at
            .saturating_add(window_ms)
            .saturating_add(poll_ms.saturating_mul(2));
        let mut cancel_sent = false;
        loop {
            match self.api.status(&id).await {
                Ok(b) if b.state != ProviderBatchState::Running => {
                    self.finish(&id, &ids, b, resumed).await;
                    return;
                }
                Ok(_) if !cancel_sent && self.unwanted(&id, &ids).await => {
                    // Every job in it was cancelled: stop paying for it. The batch
                    // ends `cancelled` at the provider and is finished as any failed
                    // batch (its answered entries are handed to nobody).
                    match self.api.cancel(&id).await {
                        Ok(()) => {
                            cancel_sent = true;
                            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::judge_batch(&self.judge, "cancel_requested", ids.len());
                            tracing::info!(judge = %self.judge, batch = %id, "every job in the batch was cancelled; asked the provider to cancel it");
                        }
                        Err(e) => {
                            tracing::warn!(judge = %self.judge, batch = %id, error = %e, "batch cancel failed; asking again at the next poll");
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(judge = %self.judge, batch = %id, error = %e, "batch status poll failed; polling again");
                }
            }
            if crate::store::now_ms() > give_up_at {
                // The provider should have expired it by now; its entries are retried.
                tracing::warn!(judge = %self.judge, batch = %id, "batch outlived its completion window; retrying its requests");
                self.fail(&id, &ids, "the batch outlived its completion window")
                    .await;
                return;
            }
            tokio::time::sleep(self.cfg.poll).await;
        }
    }

    async fn fail(&self, id: &str, ids: &[String], why: &str) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        crate::metrics::judge_batch(&self.judge, "failed", ids.len());
        self.set_status(id, LedgerStatus::Failed).await;
        let entry = Err(EntryError {
            retryable: true,
            message: why.to_owned(),
        });
        self.dispatch(ids, HashMap::new(), &entry, None, false);
    }

    /// Reads a final batch's output and error files and hands the entries out.
    async fn finish(&self, id: &str, ids: &[String], b: ProviderBatch, resumed: bool) {
        let mut results: HashMap<String, Entry> = HashMap::new();
        for file in [&b.output_file_id, &b.error_file_id].into_iter().flatten() {
            match self.api.entries(file).await {
                Ok(entries) => results.extend(entries),
                Err(e) => {
                    tracing::warn!(judge = %self.judge, batch = %id, file = %file, error = %e, "cannot read a batch result file; its entries are retried");
                }
            }
        }
        let completed = b.state == ProviderBatchState::Completed;
        if completed {
            self.stats.completed.fetch_add(1, Ordering::Relaxed);
            crate::metrics::judge_batch(&self.judge, "completed", ids.len());
        } else {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            crate::metrics::judge_batch(&self.judge, "failed", ids.len());
        }
        let missing = Err(EntryError {
            retryable: true,
            message: format!(
                "no result for the request in batch {id} ({})",
                b.state.as_str()
            ),
        });
        let keep = resumed.then_some(id);
        let unclaimed = self.dispatch(ids, results, &missing, keep, completed);
        let status = match (completed, unclaimed) {
            (false, _) => LedgerStatus::Failed,
            (true, 0) => LedgerStatus::Delivered,
            (true, _) => LedgerStatus::Completed,
        };
        self.set_status(id, status).await;
    }

    /// Hands each id its result (or `missing`); returns how many were kept for calls
    /// that have not come back yet (only with `keep`, a resumed batch's id).
    fn dispatch(
        &self,
        ids: &[String],
        mut results: HashMap<String, Entry>,
        missing: &Entry,
        keep: Option<&str>,
        completed: bool,
    ) -> usize {
        let mut st = self.lock();
        let mut kept = 0;
        for cid in ids {
            let entry = results.remove(cid).unwrap_or_else(|| missing.clone());
            st.queued.remove(cid);
            match st.waiters.remove(cid) {
                Some(ws) => {
                    for w in ws {
                        let _ = w.send(entry.clone());
                    }
                }
                None => {
                    if let (Some(batch), true) = (keep, completed) {
                        st.ready.insert(cid.clone(), (batch.to_owned(), entry));
                        kept += 1;
                    }
                }
            }
        }
        if let (Some(batch), true) = (keep, kept > 0) {
            st.unclaimed.insert(batch.to_owned(), kept);
        }
        kept
    }

    async fn set_status(&self, id: &str, status: LedgerStatus) {
        if let Some(ledger) = self.ledger.get() {
            if let Err(e) = ledger.set_batch_status(id, status).await {
                tracing::warn!(judge = %self.judge, batch = %id, error = %e, "cannot store the batch status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{ChatRole, Expect, Scale};

    fn req(user: &str, sample: u32) -> ChatRequest {
        ChatRequest {
            messages: vec![
                (ChatRole::System, "static".into()),
                (ChatRole::User, user.into()),
            ],
            expect: Expect::One(Scale::Binary),
            explain: true,
            content_key: [3; 32],
            sample,
            reference: None,
        }
    }

    #[test]
    fn custom_ids_ignore_the_nonce_but_not_the_sample_or_reasks() {
        let cfg = crate::config::Config::default_simulated()
            .unwrap()
            .judges
            .into_values()
            .next()
            .unwrap();
        let a = custom_id(&cfg, &req("nonce A ...", 0));
        assert_eq!(a, custom_id(&cfg, &req("nonce B ...", 0)));
        assert_ne!(a, custom_id(&cfg, &req("nonce A ...", 1)));
        let mut reask = req("nonce A ...", 0);
        reask.messages.push((ChatRole::Assistant, "oops".into()));
        reask.messages.push((ChatRole::User, "again".into()));
        assert_ne!(a, custom_id(&cfg, &reask));
        assert!(a.starts_with("tb-") && a.len() == 35, "{a}");
    }

    #[test]
    fn ledger_status_names_round_trip() {
        for s in LedgerStatus::ALL {
            assert_eq!(LedgerStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(LedgerStatus::parse("nope"), None);
    }
}
