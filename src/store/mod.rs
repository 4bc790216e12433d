//! Persistence: the `Store` trait (rubric versions, jobs and their items, results, the
//! persistent verdict cache) with its SQLite and Postgres implementations, and the
//! leased work queue (`JobQueue`) that only a shared database offers. The domain talks
//! to the traits only. Must not grade, call judges or know about transports.

mod cache_writes;
mod postgres;
mod sqlite;

use std::time::Duration;

use serde_json::Value;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub use crate::judge::batch::{BatchCounts, BatchRecord, LedgerStatus};
use crate::rubric::Rubric;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("rubric {id}@{version} already exists with different content; publish a new version")]
    RubricConflict { id: String, version: u32 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // Every failed query of either engine passes here once.
        crate::metrics::store_error(&e);
        StoreError::Db(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Db(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A job's state (snake_case in the job status document). `Cancelling` is a cancelled
/// job whose runners have not all let go yet (judge calls in flight finish, nothing
/// new starts): not final (followers keep following), never runnable (nothing resumes
/// it); it becomes `Cancelled`, with its finish time, once they have.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Done,
    Cancelling,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Done,
        JobState::Cancelling,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelling => "cancelling",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Cancelled)
    }

    /// Whether a runner may work the job (start, resume, claim its items).
    pub fn is_runnable(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A job with its item counts and usage.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub state: JobState,
    pub total: u64,
    pub seed: u64,
    pub owner: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub done: u64,
    pub failed: u64,
    /// Items whose report has at least one abstained ballot.
    pub abstained: u64,
    pub calls: u64,
    pub input_tokens: u64,
    /// Part of `input_tokens` the provider billed at its cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `output_tokens` spent on hidden reasoning.
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
}

impl JobRecord {
    pub fn pending(&self) -> u64 {
        self.total.saturating_sub(self.done + self.failed)
    }

    /// Seconds left at the pace so far, when there is a pace.
    pub fn eta_seconds(&self, now_ms: i64) -> Option<f64> {
        let started = self.started_at?;
        let finished = self.done + self.failed;
        if finished == 0 || !self.state.is_runnable() {
            return None;
        }
        #[expect(clippy::cast_precision_loss, reason = "display estimate")]
        let per_item = (now_ms - started).max(0) as f64 / 1000.0 / finished as f64;
        #[expect(clippy::cast_precision_loss, reason = "display estimate")]
        Some(per_item * self.pending() as f64)
    }
}

/// Which recorded items `Store::items_by_seq` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Items graded to a report.
    DoneOnly,
    /// Those and the items that failed (their error document).
    AlsoFailed,
}

impl Finished {
    fn also_failed(self) -> bool {
        self == Finished::AlsoFailed
    }
}

/// One finished item, as the job runner records it.
#[derive(Debug, Clone)]
pub struct ItemOutcome {
    pub failed: bool,
    /// `grade_report.v1` JSON, or `{"case_id", "error"}` for a failed item.
    pub result: String,
    /// The report's score facts (`{format, case_id, score, tags}`), which summaries
    /// read instead of the whole report; `None` for a failed item.
    pub facts: Option<String>,
    pub abstained: bool,
    pub calls: u64,
    pub input_tokens: u64,
    /// Part of `input_tokens` the provider billed at its cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// Part of `output_tokens` spent on hidden reasoning.
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
}

/// A stored calibration set (its document is canonical `calibration.v1` JSONL).
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSetRecord {
    pub id: String,
    pub name: String,
    /// The API key that uploaded it; `None` without auth.
    pub owner: Option<String>,
    /// Empty in listings, which leave the document out.
    pub document: String,
    pub items: u64,
    pub labels: u64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One label written through the API, as the label history keeps it (and as
/// `GET /v1/calibration/sets/{id}/labels` shows it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LabelEvent {
    pub item: String,
    pub rater: String,
    /// `human` or `judge`.
    pub kind: String,
    /// The label's value as written (a category name or a number).
    pub value: Value,
    /// The value it replaced, when it corrected an earlier label.
    pub previous: Option<Value>,
    /// The API key that wrote it; `None` without auth.
    pub author: Option<String>,
    /// Set when an admin wrote a human label on behalf of another rater (an import):
    /// the admin's key name (`local` without auth). `author` is who wrote it either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_by: Option<String>,
    pub at: i64,
}

/// One current label of a set as stored: one row per (set, item, rater, kind). `value`
/// is the label as the API shows it (a category name, or a number).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRow {
    pub item: String,
    pub rater: String,
    /// `human` or `judge`.
    pub kind: String,
    pub value: Value,
}

/// What a label write changed, as the store found it inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelsStored {
    /// Labels new to the set.
    pub added: u64,
    /// Labels whose value was replaced.
    pub replaced: u64,
    /// Labels removed (an event whose value is null).
    pub removed: u64,
    /// The set's label count after the write.
    pub labels: u64,
    /// The history position (`n`) of the write's first event: equal to the label
    /// version the writer read when no other write came in between.
    pub first: u64,
}

/// A calibration run: a job (same id) over a set's items, and its report once done.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationRunRecord {
    pub id: String,
    pub set_id: String,
    /// JSON: the run's options (seed, resamples, confidence, item mapping).
    pub options: String,
    pub report: Option<String>,
    pub finished_at: Option<i64>,
}

/// What creating a job under its owner's concurrent-jobs quota did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The job was created (and counts against the quota from now on).
    Admitted,
    /// Nothing was written: the owner already had `active` unfinished jobs, at least
    /// the quota.
    Refused { active: u64 },
}

impl Admission {
    /// The verdict on an owner with `active` unfinished jobs under a quota of `max`.
    fn of(active: i64, max: u64) -> Admission {
        let active = u64_of(active);
        if active >= max {
            Admission::Refused { active }
        } else {
            Admission::Admitted
        }
    }
}

/// An owner's unfinished jobs (`Store::active_jobs`): every state but the final ones,
/// so a state added between (a job still letting go of its work) counts too. A partial
/// index (`jobs_active_by_owner`, same predicate) keeps this count to those rows.
const ACTIVE_JOBS_WHERE: &str = "owner = $1 AND state NOT IN ('done', 'cancelled')";

/// A stored rubric version, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct RubricEntry {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub criteria: usize,
    pub created_at: i64,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Stores an immutable rubric version. Re-publishing identical content is a no-op
    /// (returns false); different content under an existing version is a conflict.
    async fn put_rubric(&self, rubric: &Rubric) -> StoreResult<bool>;
    /// A version, or the latest when `version` is None.
    async fn get_rubric(&self, id: &str, version: Option<u32>) -> StoreResult<Option<Rubric>>;
    /// Latest version of every rubric.
    async fn list_rubrics(&self) -> StoreResult<Vec<RubricEntry>>;
    async fn rubric_versions(&self, id: &str) -> StoreResult<Vec<RubricEntry>>;

    /// Starts a streamed submission: a job in the hidden `staging` state (no read
    /// sees it, no runner starts it). Items follow with `stage_items`; then either
    /// `commit_staged_job` makes it queued with all its items, or `discard_staged_job`
    /// removes every trace of it, so a submission is still all-or-nothing.
    async fn stage_job(&self, id: &str, seed: u64, owner: Option<&str>) -> StoreResult<()> {
        self.stage_job_under_quota(id, seed, owner, None)
            .await
            .map(|_| ())
    }
    /// `stage_job` under `owner`'s concurrent-jobs quota: at most `max_active`
    /// unfinished jobs (`Store::active_jobs`, staging ones included). The count and
    /// the insert are one step (the writer's transaction on SQLite; a per-owner
    /// advisory transaction lock on Postgres), so simultaneous submissions from any
    /// mix of transports and replicas never exceed the quota. Refused: nothing is
    /// written. No quota applies without an owner or without `max_active`.
    async fn stage_job_under_quota(
        &self,
        id: &str,
        seed: u64,
        owner: Option<&str>,
        max_active: Option<u64>,
    ) -> StoreResult<Admission>;
    /// Adds pending items `first_seq..` (`(case_id, input_json)` in order) to a
    /// staging job.
    async fn stage_items(
        &self,
        id: &str,
        first_seq: u64,
        items: &[(String, String)],
    ) -> StoreResult<()>;
    /// Makes a staging job queued with `total` items.
    async fn commit_staged_job(&self, id: &str, total: u64) -> StoreResult<()>;
    /// Removes a staging job and its items (a submission that failed or was cut off).
    async fn discard_staged_job(&self, id: &str) -> StoreResult<()>;
    /// Removes staging jobs whose submissions were cut off by a crash; returns how
    /// many. SQLite (one process) removes every staging job, at start-up, before the
    /// server takes requests. Postgres (shared by replicas) removes only those whose
    /// staging lease expired: a live one is another replica's upload in progress.
    async fn discard_staged_jobs(&self) -> StoreResult<u64>;
    /// A job with its counters, read from its own row (O(1) whatever its size).
    async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>>;
    /// Jobs newest first, after the `(created_at, id)` cursor; only `owner`'s when given.
    async fn list_jobs(
        &self,
        before: Option<(i64, String)>,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<JobRecord>>;
    /// Moves a job on, guarded so no state goes back: `Running` from queued (setting
    /// `started_at`), `Queued` from running, `Cancelling` from queued or running, `Done`
    /// from queued or running (never from cancelling: the caller's cancel wins),
    /// `Cancelled` from queued, running or cancelling (setting `finished_at`). A change
    /// that does not apply is ignored. On Postgres a change notifies every replica; a
    /// change to `Cancelling` is sent as a cancel event (`job_event_cancel`).
    async fn set_job_state(&self, id: &str, state: JobState) -> StoreResult<()>;
    /// Jobs left queued or running (to resume after a restart). Never a cancelling job.
    async fn unfinished_jobs(&self) -> StoreResult<Vec<String>>;
    /// Jobs cancelled whose runners had not let go yet (`Cancelling`): at start-up
    /// they are settled as cancelled, never resumed.
    async fn cancelling_jobs(&self) -> StoreResult<Vec<String>>;
    /// Pending items with `seq > after`, in order: `(seq, input_json)`.
    async fn pending_items(
        &self,
        job: &str,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>>;
    /// Records an item's outcome once, and adds it to the job's counters in the same
    /// transaction; a second write for the same item is ignored (returns false), so a
    /// crash-and-resume can never duplicate a result or count it twice.
    async fn finish_item(&self, job: &str, seq: u64, outcome: &ItemOutcome) -> StoreResult<bool>;
    /// Finished items in completion order after `after` (a `finished_seq`):
    /// `(finished_seq, seq, result_json)`.
    async fn results(
        &self,
        job: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, u64, String)>>;
    /// Done items' score facts in item order (for summaries), paged by `seq`, among
    /// the first `upto` items to finish (a snapshot: read `done + failed` once, and
    /// every page agrees with it): `(seq, facts_json)`, from a table of small rows (not
    /// the items' reports). An item recorded before facts were kept gives its whole
    /// report, which reads the same way.
    async fn score_facts(
        &self,
        job: &str,
        after: Option<u64>,
        upto: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>>;
    /// Keeps a job's summary figures (the summary document without its entries) over
    /// its first `upto` finished items, replacing any kept before.
    async fn put_job_figures(&self, job: &str, upto: u64, figures: &str) -> StoreResult<()>;
    /// The figures `put_job_figures` kept, with the `upto` they cover.
    async fn job_figures(&self, job: &str) -> StoreResult<Option<(u64, String)>>;
    /// Recorded items in item order after `after` (a `seq`): `(seq, result_json)`, the
    /// done items' whole reports (calibration runs read the ballots) and, with
    /// `Finished::AlsoFailed`, failed items' error documents too (the UI's job pages).
    /// `after = seq - 1, limit = 1` reads one item by its `seq`.
    async fn items_by_seq(
        &self,
        job: &str,
        which: Finished,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>>;

    /// One item of a job as it was submitted (its input JSON), by `seq`; None for no
    /// such item. The UI's item page shows the conversation, response and rubric.
    async fn item_input(&self, job: &str, seq: u64) -> StoreResult<Option<String>>;

    /// Stores a new calibration set: its document (items only: each item's `labels`
    /// is empty) and its labels as rows, in one transaction. `labels` keeps the first of
    /// repeated (item, rater, kind) rows.
    async fn put_calibration_set(
        &self,
        set: &CalibrationSetRecord,
        labels: &[LabelRow],
    ) -> StoreResult<()>;
    /// A set with its stored document (items only; its labels are `calibration_labels`).
    async fn calibration_set(&self, id: &str) -> StoreResult<Option<CalibrationSetRecord>>;
    /// A set's current labels, in the order they were first written.
    async fn calibration_labels(&self, set: &str) -> StoreResult<Vec<LabelRow>>;
    /// Every set (only `owner`'s when given), newest first, without documents.
    async fn list_calibration_sets(
        &self,
        owner: Option<&str>,
    ) -> StoreResult<Vec<CalibrationSetRecord>>;
    /// Writes labels, one row each, without touching the set's document, and appends
    /// `events` to the label history, in one transaction that holds the set (only
    /// that set) against other label writers. An event whose `value` is null removes
    /// the label. Each history entry's `previous` is the value the row had (read in the
    /// transaction, whatever the event says); `undoes` marks the write an undo of that
    /// history entry.
    async fn write_calibration_labels(
        &self,
        set: &str,
        events: &[LabelEvent],
        undoes: Option<u64>,
    ) -> StoreResult<LabelsStored>;
    /// A set's label history in write order, for one item when given.
    async fn label_history(&self, set: &str, item: Option<&str>) -> StoreResult<Vec<LabelEvent>>;
    /// Creates the run's job, its pending items and the run row in one transaction.
    async fn create_calibration_run(
        &self,
        run: &CalibrationRunRecord,
        seed: u64,
        owner: Option<&str>,
        items: &[(String, String)],
    ) -> StoreResult<()> {
        self.create_calibration_run_under_quota(run, seed, owner, items, None)
            .await
            .map(|_| ())
    }
    /// `create_calibration_run` under `owner`'s concurrent-jobs quota, counted and
    /// taken in the same transaction as `stage_job_under_quota` does (a run is a job).
    /// Refused: nothing is written.
    async fn create_calibration_run_under_quota(
        &self,
        run: &CalibrationRunRecord,
        seed: u64,
        owner: Option<&str>,
        items: &[(String, String)],
        max_active: Option<u64>,
    ) -> StoreResult<Admission>;
    async fn calibration_run(&self, id: &str) -> StoreResult<Option<CalibrationRunRecord>>;
    /// Writes a run's report once; a second write is ignored (returns false).
    async fn finish_calibration_run(&self, id: &str, report: &str) -> StoreResult<bool>;

    /// A set without its document, with its label version: the number of label
    /// writes it has had (its history's length), which changes with every write, so
    /// a parsed copy of the document can be kept and checked with this one small read.
    async fn calibration_set_version(
        &self,
        id: &str,
    ) -> StoreResult<Option<(CalibrationSetRecord, u64)>>;
    /// A set's runs with their jobs, newest first, at most `limit`; the runs' options
    /// and reports are left out (read one with `calibration_run`).
    async fn calibration_runs_of_set(
        &self,
        set: &str,
        limit: u32,
    ) -> StoreResult<Vec<(CalibrationRunRecord, JobRecord)>>;
    /// The newest label write of `author` (`None`: written without auth) on a set that
    /// is not itself an undo and has not been undone, with its place `n` in the history.
    async fn last_undoable_label(
        &self,
        set: &str,
        author: Option<&str>,
    ) -> StoreResult<Option<(u64, LabelEvent)>>;
    async fn cache_get(&self, key: &[u8; 32]) -> StoreResult<Option<String>>;
    async fn cache_put(&self, key: &[u8; 32], answer: &str) -> StoreResult<()>;

    /// Unfinished jobs submitted under an API key, submissions still arriving
    /// included (concurrent-jobs quota): every job not `done` or `cancelled`. The
    /// quota itself is taken with the job (`stage_job_under_quota`); this read alone
    /// decides nothing.
    async fn active_jobs(&self, owner: &str) -> StoreResult<i64>;

    /// Jobs per state and pending items across all jobs (metrics gauges).
    async fn job_counts(&self) -> StoreResult<(Vec<(JobState, i64)>, i64)>;

    /// Liveness of the database (for /readyz).
    async fn ping(&self) -> StoreResult<()>;

    /// Records a submitted judge batch (provider Batch API) with the jobs that have an
    /// entry in it; writing the same batch id again is a no-op.
    async fn put_judge_batch(&self, batch: &BatchRecord) -> StoreResult<()>;
    /// Sets a judge batch's status, and its finish time once it is no longer open.
    async fn set_judge_batch_status(&self, id: &str, status: LedgerStatus) -> StoreResult<()>;
    /// A judge's batches still open or completed-but-not-delivered, oldest first (what a
    /// restart resumes polling). `jobs` is left empty.
    async fn resumable_judge_batches(&self, judge: &str) -> StoreResult<Vec<BatchRecord>>;
    /// Batches submitted with an entry of `job`, and how many of them completed
    /// (completed or delivered) or failed.
    async fn job_batch_counts(&self, job: &str) -> StoreResult<BatchCounts>;
    /// Whether every job with an entry in batch `id` was cancelled (false for a batch
    /// linked to no job): nobody wants its answers, so the provider can stop it.
    async fn judge_batch_jobs_all_cancelled(&self, id: &str) -> StoreResult<bool>;
}

/// The leased work queue of a database several replicas share (Postgres): any
/// replica claims a job's items in small batches under a lease, renews the lease
/// while it grades them, and records each result fenced by its lease token. A
/// separate trait, not part of `Store`: SQLite serves one process, whose runner
/// needs no leases, and keeping them out of it leaves its behaviour unchanged.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync {
    /// Claims up to `limit` pending items of running job `job` that no live lease
    /// holds, in `seq` order, for `token` until the database clock passes now +
    /// `lease`; rows another claimer holds locked are skipped. Empty when none is
    /// claimable, or the job is not running (cancelled, done).
    async fn claim_items(
        &self,
        job: &str,
        token: &str,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>>;
    /// Extends every lease `token` still holds on `job`'s pending items to now +
    /// `lease` (database clock); returns how many.
    async fn renew_leases(&self, job: &str, token: &str, lease: Duration) -> StoreResult<u64>;
    /// `Store::finish_item`, written only while `token` holds the item's lease: a
    /// runner whose lease expired (and whose item another replica took) records
    /// nothing (false), so every item has exactly one result.
    async fn finish_leased_item(
        &self,
        job: &str,
        seq: u64,
        token: &str,
        outcome: &ItemOutcome,
    ) -> StoreResult<bool>;
    /// Ids of jobs with news from any replica: an item finished, or the job was
    /// committed or changed state; a cancel comes as `job_event_cancel(id)` (read it
    /// back with `parse_job_event`). A lagged receiver has missed some.
    fn job_events(&self) -> tokio::sync::broadcast::Receiver<String>;
    /// Lets go of the leases `token` holds on `job`'s pending items (a runner that
    /// stopped on a cancel: its items stay pending), then, if the job is cancelling
    /// and no live lease holds any of its items any more (every replica's runner let
    /// go, or died and its leases expired), makes it cancelled with its finish time.
    /// `token: None` only settles. Returns whether the job is cancelled now.
    async fn release_and_settle(&self, job: &str, token: Option<&str>) -> StoreResult<bool>;
}

/// The job event that says job `id` was cancelled (a replica running it stops at once).
pub fn job_event_cancel(id: &str) -> String {
    format!("{CANCEL_EVENT}{id}")
}

/// A job event as `(job id, is a cancel)`.
pub fn parse_job_event(event: &str) -> (&str, bool) {
    match event.strip_prefix(CANCEL_EVENT) {
        Some(id) => (id, true),
        None => (event, false),
    }
}

/// Prefix of a cancel event's payload (job ids are UUIDs: never this).
const CANCEL_EVENT: &str = "cancel:";

/// The store as the verdict cache's persistent second tier. Store errors are logged
/// and treated as misses: a cache must never fail a grade.
pub struct CacheTier(pub std::sync::Arc<dyn Store>);

#[async_trait::async_trait]
impl crate::cache::SecondTier for CacheTier {
    async fn get(&self, key: &crate::cache::CacheKey) -> Option<crate::cache::CachedAnswer> {
        match self.0.cache_get(key).await {
            Ok(Some(text)) => crate::cache::CachedAnswer::from_json(&text),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "verdict cache read failed; treating as a miss");
                None
            }
        }
    }

    async fn put(&self, key: &crate::cache::CacheKey, value: &crate::cache::CachedAnswer) {
        if let Err(e) = self.0.cache_put(key, &value.to_json()).await {
            tracing::warn!(error = %e, "verdict cache write failed");
        }
    }
}

/// The store as the judges' batch ledger (`judge::batch::BatchLedger`).
pub struct BatchLedgerTier(pub std::sync::Arc<dyn Store>);

#[async_trait::async_trait]
impl crate::judge::batch::BatchLedger for BatchLedgerTier {
    async fn put_batch(&self, batch: &BatchRecord) -> Result<(), String> {
        self.0
            .put_judge_batch(batch)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_batch_status(&self, id: &str, status: LedgerStatus) -> Result<(), String> {
        self.0
            .set_judge_batch_status(id, status)
            .await
            .map_err(|e| e.to_string())
    }

    async fn jobs_all_cancelled(&self, id: &str) -> Result<bool, String> {
        self.0
            .judge_batch_jobs_all_cancelled(id)
            .await
            .map_err(|e| e.to_string())
    }

    async fn resumable_batches(&self, judge: &str) -> Result<Vec<BatchRecord>, String> {
        self.0
            .resumable_judge_batches(judge)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A stored judge batch row `(id, judge, input_file_id, status, custom_ids JSON,
/// created_at)` as a record.
fn batch_record(row: (String, String, String, String, String, i64)) -> StoreResult<BatchRecord> {
    let (id, judge, input_file_id, status, ids, created_at) = row;
    let status = LedgerStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("judge batch {id}: status \"{status}\"")))?;
    let custom_ids: Vec<String> = serde_json::from_str(&ids)
        .map_err(|e| StoreError::Corrupt(format!("judge batch {id}: custom ids: {e}")))?;
    Ok(BatchRecord {
        id,
        judge,
        input_file_id,
        status,
        custom_ids,
        jobs: Vec::new(),
        created_at,
    })
}

/// `(status, count)` rows of one job's batches as its counters.
fn batch_counts(rows: &[(String, i64)]) -> BatchCounts {
    let mut c = BatchCounts::default();
    for (status, n) in rows {
        let n = u64_of(*n);
        c.submitted += n;
        match LedgerStatus::parse(status) {
            Some(LedgerStatus::Completed | LedgerStatus::Delivered) => c.completed += n,
            Some(LedgerStatus::Failed) => c.failed += n,
            Some(LedgerStatus::Open) | None => {}
        }
    }
    c
}

/// A stored count or sequence number (never negative) as the `u64` the domain uses.
fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A `u64` as the `i64` both engines store (saturating; counts never get near it).
fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `(state, count)` rows of a `GROUP BY state` as a count for every state, zero for the
/// states no job is in.
fn counts_by_state(rows: &[(String, i64)]) -> Vec<(JobState, i64)> {
    JobState::ALL
        .into_iter()
        .map(|st| {
            (
                st,
                rows.iter()
                    .find(|(s, _)| s == st.as_str())
                    .map_or(0, |(_, n)| *n),
            )
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Splits a calibration.v1 document stored before labels were rows (schema 9 on
/// SQLite, 6 on Postgres) into the document without labels (each item's `labels`
/// emptied, everything else as it was) and its labels as rows, in document order,
/// keeping the first of repeated (item, rater, kind) labels (the one agreement
/// statistics counted). Line by line, so any stored document moves, valid or not.
fn split_document_labels(document: &str) -> Result<(String, Vec<LabelRow>), String> {
    let mut out = String::with_capacity(document.len());
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in document.lines().enumerate() {
        let mut v: Value = match serde_json::from_str(line) {
            Ok(v) if n > 0 => v,
            // The header, blank lines and anything unreadable stay as they are.
            _ => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
        };
        let item = v.get("id").and_then(Value::as_str).map(str::to_owned);
        if let (Some(item), Some(labels)) = (item, v.get_mut("labels")) {
            for l in std::mem::take(labels).as_array().into_iter().flatten() {
                let field = |f: &str| l.get(f).and_then(Value::as_str).map(str::to_owned);
                let (Some(rater), Some(kind), Some(value)) =
                    (field("rater"), field("kind"), l.get("value"))
                else {
                    return Err(format!(
                        "line {}: a label without rater, kind or value",
                        n + 1
                    ));
                };
                if seen.insert((item.clone(), rater.clone(), kind.clone())) {
                    rows.push(LabelRow {
                        item: item.clone(),
                        rater,
                        kind,
                        value: value.clone(),
                    });
                }
            }
            *labels = Value::Array(Vec::new());
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    Ok((out, rows))
}

#[cfg(test)]
mod label_rows_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn old_documents_split_into_items_and_rows() {
        let doc = concat!(
            r#"{"format": "calibration.v1", "name": "n", "scale": "nominal", "categories": ["a", "b"]}"#,
            "\n",
            r#"{"id": "x", "category": "c", "labels": [{"rater": "h1", "kind": "human", "value": "a"}, {"rater": "h1", "kind": "human", "value": "b"}, {"rater": "j", "kind": "judge", "value": "b"}]}"#,
            "\n",
            r#"{"id": "y", "labels": []}"#,
            "\n",
        );
        let (items, rows) = split_document_labels(doc).unwrap();
        assert_eq!(
            items,
            concat!(
                r#"{"format": "calibration.v1", "name": "n", "scale": "nominal", "categories": ["a", "b"]}"#,
                "\n",
                r#"{"id":"x","category":"c","labels":[]}"#,
                "\n",
                r#"{"id":"y","labels":[]}"#,
                "\n",
            )
        );
        let row = |rater: &str, kind: &str, value: Value| LabelRow {
            item: "x".into(),
            rater: rater.into(),
            kind: kind.into(),
            value,
        };
        assert_eq!(
            rows,
            [
                row("h1", "human", json!("a")),
                row("j", "judge", json!("b"))
            ],
            "document order, the first of a repeated label kept"
        );
        assert!(
            split_document_labels("{}\n{\"id\": \"x\", \"labels\": [{\"rater\": \"h\"}]}").is_err()
        );
    }
}
