//! The embedded SQLite store (sqlx, WAL, migrations embedded at compile time).
//! WAL with `synchronous = NORMAL`: a committed transaction survives a process crash
//! (kill -9); only an OS crash can lose the last moments.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::cache_writes::CacheWrites;
use super::{
    ACTIVE_JOBS_WHERE, Admission, BatchCounts, BatchRecord, CalibrationRunRecord,
    CalibrationSetRecord, ItemOutcome, JobRecord, JobState, LabelEvent, LabelRow, LabelsStored,
    LedgerStatus, RubricEntry, Store, StoreError, StoreResult, counts_by_state, i64_of, now_ms,
    split_document_labels, u64_of,
};
use crate::rubric::{Rubric, schema::parse_rubric};

/// Reads use a small pool; every write goes through one connection. SQLite allows one
/// writer at a time, and several pooled writers contend in SQLite's busy handler
/// (sleeping and retrying), which collapses throughput under load. One writer
/// connection queues writes in-process instead.
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    /// Verdict-cache writes are batched by a background task: one transaction per
    /// batch instead of one per judge call.
    cache_writes: CacheWrites,
    /// Finished items are recorded by a background task too (group commit): each
    /// caller still gets its answer only once its item's transaction has committed.
    finish_tx: tokio::sync::mpsc::Sender<Finish>,
}

async fn write_cache_batch(
    writer: SqlitePool,
    puts: Vec<([u8; 32], String)>,
) -> Result<(), sqlx::Error> {
    let mut tx = writer.begin().await?;
    let now = now_ms();
    for (key, answer) in &puts {
        sqlx::query(
            "INSERT OR IGNORE INTO verdict_cache (key, answer, created_at) VALUES (?, ?, ?)",
        )
        .bind(&key[..])
        .bind(answer)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// One `finish_item` call waiting for the item writer.
struct Finish {
    job: String,
    seq: u64,
    outcome: ItemOutcome,
    reply: tokio::sync::oneshot::Sender<StoreResult<bool>>,
}

/// The most finished items one transaction records.
const FINISH_BATCH: usize = 256;

/// Records finished items in batches: whatever is queued when the writer comes round
/// (up to `FINISH_BATCH`) goes into one transaction. sqlx runs each statement on the
/// connection's own thread, so every statement costs two thread switches; a
/// transaction per item (begin, item, facts, counters, commit) made that the grading
/// rate's limit. A batch pays begin, commit, one counter read and one counter update
/// per job once, and the item and facts rows per item. Nobody is answered before the
/// commit, so a crash still loses only items whose callers were never told they were
/// stored. A batch that fails is retried one item at a time, so one bad row fails
/// alone.
async fn finish_writer(writer: SqlitePool, mut rx: tokio::sync::mpsc::Receiver<Finish>) {
    let mut batch = Vec::with_capacity(FINISH_BATCH);
    while rx.recv_many(&mut batch, FINISH_BATCH).await > 0 {
        match write_finished(&writer, &batch).await {
            Ok(applied) => {
                for (f, applied) in batch.drain(..).zip(applied) {
                    let _ = f.reply.send(Ok(applied));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some(f) = batch.pop() {
                    let _ = f.reply.send(Err(e));
                }
            }
            Err(_) => {
                for f in batch.drain(..) {
                    let one = write_finished(&writer, std::slice::from_ref(&f)).await;
                    let _ = f
                        .reply
                        .send(one.map(|a| a.first().copied().unwrap_or(false)));
                }
            }
        }
    }
}

/// One transaction recording `batch`: each item still pending gets its result, its
/// score facts and its place in the job's completion order (`done + failed` before it,
/// plus one), and its job's counters grow by the batch's sums. Returns, per item,
/// whether it was recorded (false: it was no longer pending, so nothing counted twice).
async fn write_finished(writer: &SqlitePool, batch: &[Finish]) -> StoreResult<Vec<bool>> {
    #[derive(Default)]
    struct Sums {
        finished: i64,
        done: i64,
        failed: i64,
        abstained: i64,
        calls: i64,
        input_tokens: i64,
        cached_input_tokens: i64,
        output_tokens: i64,
        reasoning_tokens: i64,
        cost_usd: f64,
    }
    let mut tx = writer.begin().await?;
    // Per job: its `done + failed` when the batch began, and what the batch adds. The
    // one writer connection is the only place counters change, so the read is exact.
    let mut jobs: Vec<(&str, i64, Sums)> = Vec::new();
    let mut applied = Vec::with_capacity(batch.len());
    let now = now_ms();
    for f in batch {
        let at = match jobs.iter().position(|(j, _, _)| *j == f.job) {
            Some(at) => at,
            None => {
                let base: Option<i64> =
                    sqlx::query_scalar("SELECT done + failed FROM jobs WHERE id = ?")
                        .bind(&f.job)
                        .fetch_optional(&mut *tx)
                        .await?;
                jobs.push((&f.job, base.unwrap_or(0), Sums::default()));
                jobs.len() - 1
            }
        };
        let (_, base, sums) = &mut jobs[at];
        let finished_seq = *base + sums.finished + 1;
        let o = &f.outcome;
        let r = sqlx::query(
            "UPDATE job_items SET state = ?, result = ?, abstained = ?, calls = ?, input_tokens = ?,
                 output_tokens = ?, cost_usd = ?, cached_input_tokens = ?, reasoning_tokens = ?,
                 finished_at = ?, finished_seq = ?
             WHERE job_id = ? AND seq = ? AND state = 'pending'",
        )
        .bind(if o.failed { "failed" } else { "done" })
        .bind(&o.result)
        .bind(i64::from(o.abstained))
        .bind(i64_of(o.calls))
        .bind(i64_of(o.input_tokens))
        .bind(i64_of(o.output_tokens))
        .bind(o.cost_usd)
        .bind(i64_of(o.cached_input_tokens))
        .bind(i64_of(o.reasoning_tokens))
        .bind(now)
        .bind(finished_seq)
        .bind(&f.job)
        .bind(i64_of(f.seq))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            applied.push(false);
            continue;
        }
        if let Some(facts) = &o.facts {
            sqlx::query(
                "INSERT INTO job_item_facts (job_id, seq, finished_seq, facts) VALUES (?, ?, ?, ?)",
            )
            .bind(&f.job)
            .bind(i64_of(f.seq))
            .bind(finished_seq)
            .bind(facts)
            .execute(&mut *tx)
            .await?;
        }
        sums.finished += 1;
        sums.done += i64::from(!o.failed);
        sums.failed += i64::from(o.failed);
        sums.abstained += i64::from(o.abstained);
        sums.calls += i64_of(o.calls);
        sums.input_tokens += i64_of(o.input_tokens);
        sums.cached_input_tokens += i64_of(o.cached_input_tokens);
        sums.output_tokens += i64_of(o.output_tokens);
        sums.reasoning_tokens += i64_of(o.reasoning_tokens);
        sums.cost_usd += o.cost_usd;
        applied.push(true);
    }
    for (job, _, s) in &jobs {
        if s.finished == 0 {
            continue;
        }
        sqlx::query(
            "UPDATE jobs SET done = done + ?, failed = failed + ?, abstained = abstained + ?, calls = calls + ?,
                 input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, cost_usd = cost_usd + ?,
                 cached_input_tokens = cached_input_tokens + ?, reasoning_tokens = reasoning_tokens + ?
             WHERE id = ?",
        )
        .bind(s.done)
        .bind(s.failed)
        .bind(s.abstained)
        .bind(s.calls)
        .bind(s.input_tokens)
        .bind(s.output_tokens)
        .bind(s.cost_usd)
        .bind(s.cached_input_tokens)
        .bind(s.reasoning_tokens)
        .bind(*job)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(applied)
}

impl SqliteStore {
    /// Opens (creating if missing) `url`, e.g. `sqlite://tribunal.db`, and migrates.
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Db(format!("{url}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(120))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        move_labels_to_rows(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts.read_only(true))
            .await?;
        let cache_writer = writer.clone();
        let cache_writes =
            CacheWrites::start(move |puts| write_cache_batch(cache_writer.clone(), puts));
        let (finish_tx, rx) = tokio::sync::mpsc::channel(FINISH_BATCH);
        tokio::spawn(finish_writer(writer.clone(), rx));
        Ok(SqliteStore {
            pool,
            writer,
            cache_writes,
            finish_tx,
        })
    }

    /// Waits until every verdict-cache write queued so far is committed.
    pub async fn flush(&self) {
        self.cache_writes.flush().await;
    }

    pub async fn close(&self) {
        self.flush().await;
        self.pool.close().await;
        self.writer.close().await;
    }

    fn rubric_from(doc: &str) -> StoreResult<Rubric> {
        let v: serde_json::Value =
            serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        parse_rubric(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// A row of `(id, version, document, created_at)` as a rubric entry.
    fn entry(row: &sqlx::sqlite::SqliteRow) -> StoreResult<RubricEntry> {
        let r = Self::rubric_from(&row.try_get::<String, _>(2)?)?;
        Ok(RubricEntry {
            id: row.try_get(0)?,
            version: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
            title: r.title,
            criteria: r.criteria.len(),
            created_at: row.try_get(3)?,
        })
    }
}

/// The concurrent-jobs quota, counted in the writer's transaction that then creates
/// the job: every write goes through the one writer connection, so no other job can be
/// created between the count and the insert (and a write from another process would
/// make the insert fail, never slip in).
async fn admit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    owner: Option<&str>,
    max_active: Option<u64>,
) -> StoreResult<Admission> {
    let (Some(owner), Some(max)) = (owner, max_active) else {
        return Ok(Admission::Admitted);
    };
    let active: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE {ACTIVE_JOBS_WHERE}"
    ))
    .bind(owner)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Admission::of(active, max))
}

/// Inserts a queued job and its pending items inside the caller's transaction.
async fn insert_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    seed: u64,
    owner: Option<&str>,
    items: &[(String, String)],
) -> StoreResult<()> {
    insert_job_row(tx, id, "queued", items.len() as u64, seed, owner).await?;
    insert_items(tx, id, 0, items).await
}

async fn insert_job_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    state: &str,
    total: u64,
    seed: u64,
    owner: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, state, total, seed, owner, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(state)
    .bind(i64_of(total))
    .bind(i64_of(seed))
    .bind(owner)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Pending items from `first_seq` on; one prepared statement, reused.
async fn insert_items(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    first_seq: u64,
    items: &[(String, String)],
) -> StoreResult<()> {
    for (seq, (case_id, input)) in (first_seq..).zip(items) {
        sqlx::query("INSERT INTO job_items (job_id, seq, case_id, input, state) VALUES (?, ?, ?, ?, 'pending')")
            .bind(id)
            .bind(i64_of(seq))
            .bind(case_id)
            .bind(input)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn calibration_set_from(
    row: &sqlx::sqlite::SqliteRow,
    with_document: bool,
) -> StoreResult<CalibrationSetRecord> {
    Ok(CalibrationSetRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        document: if with_document {
            row.try_get("document")?
        } else {
            String::new()
        },
        items: u64_of(row.try_get("items")?),
        labels: u64_of(row.try_get("labels")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A label history row (`item, rater, kind, value, previous, author, at`).
fn label_event_from(r: &sqlx::sqlite::SqliteRow, set: &str) -> StoreResult<LabelEvent> {
    let json = |text: String| {
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("label history of set {set}: {e}")))
    };
    Ok(LabelEvent {
        item: r.try_get("item")?,
        rater: r.try_get("rater")?,
        kind: r.try_get("kind")?,
        value: json(r.try_get("value")?)?,
        previous: r
            .try_get::<Option<String>, _>("previous")?
            .map(json)
            .transpose()?,
        author: r.try_get("author")?,
        imported_by: r.try_get("imported_by")?,
        at: r.try_get("at")?,
    })
}

/// Label rows a statement inserts at most (7 parameters each, well under SQLite's
/// limit of 32,766).
const LABEL_ROWS_PER_INSERT: usize = 500;

/// Inserts a set's labels as rows at positions `first_pos..`, many per statement.
/// Returns how many were inserted (a repeated (item, rater, kind) keeps the first).
async fn insert_label_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    set: &str,
    rows: &[LabelRow],
    first_pos: i64,
) -> StoreResult<u64> {
    let mut inserted = 0;
    for (k, chunk) in rows.chunks(LABEL_ROWS_PER_INSERT).enumerate() {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT OR IGNORE INTO calibration_labels (set_id, item, rater, kind, value, pos, author) ",
        );
        let base = first_pos + i64_of((k * LABEL_ROWS_PER_INSERT) as u64);
        q.push_values(chunk.iter().enumerate(), |mut b, (i, r)| {
            b.push_bind(set)
                .push_bind(&r.item)
                .push_bind(&r.rater)
                .push_bind(&r.kind)
                .push_bind(r.value.to_string())
                .push_bind(base + i64_of(i as u64))
                .push_bind(None::<String>);
        });
        inserted += q.build().execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

/// Moves the labels of sets stored before schema 9 out of their documents into rows,
/// once (a moved set has its `calibration_label_counts` row), one transaction per set.
async fn move_labels_to_rows(writer: &SqlitePool) -> StoreResult<()> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM calibration_sets s
         WHERE NOT EXISTS (SELECT 1 FROM calibration_label_counts c WHERE c.set_id = s.id)",
    )
    .fetch_all(writer)
    .await?;
    for id in ids {
        let mut tx = writer.begin().await?;
        let (document, updated_at): (String, i64) =
            sqlx::query_as("SELECT document, updated_at FROM calibration_sets WHERE id = ?")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        let (items, rows) = split_document_labels(&document)
            .map_err(|e| StoreError::Corrupt(format!("calibration set {id}: {e}")))?;
        let labels = insert_label_rows(&mut tx, &id, &rows, 0).await?;
        sqlx::query("UPDATE calibration_sets SET document = ?, labels = ? WHERE id = ?")
            .bind(&items)
            .bind(i64_of(labels))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO calibration_label_counts (set_id, labels, next_pos, updated_at) VALUES (?, ?, ?, ?)")
            .bind(&id)
            .bind(i64_of(labels))
            .bind(i64_of(rows.len() as u64))
            .bind(updated_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(set = %id, labels, "moved a calibration set's labels into rows");
    }
    Ok(())
}

/// The label count and last label write of a set come from its counts row (written
/// with every label), the rest from the set's row.
const SET_COLUMNS: &str = "s.id, s.name, s.owner, s.items, COALESCE(c.labels, s.labels) AS labels,
    s.created_at, COALESCE(c.updated_at, s.updated_at) AS updated_at";

/// A job's row, counters included: no item is read. Staging jobs (submissions still
/// arriving) are invisible.
const JOB_SELECT: &str =
    "SELECT j.id, j.state, j.total, j.seed, j.owner, j.created_at, j.started_at, j.finished_at,
    j.done, j.failed, j.abstained, j.calls, j.input_tokens, j.output_tokens, j.cost_usd,
    j.cached_input_tokens, j.reasoning_tokens
    FROM jobs j WHERE j.state != 'staging'";

fn job_from(row: &sqlx::sqlite::SqliteRow) -> StoreResult<JobRecord> {
    let state: String = row.try_get(1)?;
    Ok(JobRecord {
        id: row.try_get(0)?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state {state}")))?,
        total: u64_of(row.try_get(2)?),
        seed: u64_of(row.try_get(3)?),
        owner: row.try_get(4)?,
        created_at: row.try_get(5)?,
        started_at: row.try_get(6)?,
        finished_at: row.try_get(7)?,
        done: u64_of(row.try_get(8)?),
        failed: u64_of(row.try_get(9)?),
        abstained: u64_of(row.try_get(10)?),
        calls: u64_of(row.try_get(11)?),
        input_tokens: u64_of(row.try_get(12)?),
        cached_input_tokens: u64_of(row.try_get(15)?),
        output_tokens: u64_of(row.try_get(13)?),
        reasoning_tokens: u64_of(row.try_get(16)?),
        cost_usd: row.try_get(14)?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn put_rubric(&self, rubric: &Rubric) -> StoreResult<bool> {
        let doc =
            serde_json::to_string(&rubric.to_raw()).map_err(|e| StoreError::Db(e.to_string()))?;
        let digest = blake3::hash(doc.as_bytes()).to_hex().to_string();
        let mut tx = self.writer.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT digest FROM rubrics WHERE id = ? AND version = ?")
                .bind(&rubric.id)
                .bind(i64::from(rubric.version))
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            Some(d) if d == digest => Ok(false),
            Some(_) => Err(StoreError::RubricConflict {
                id: rubric.id.clone(),
                version: rubric.version,
            }),
            None => {
                sqlx::query("INSERT INTO rubrics (id, version, document, digest, created_at) VALUES (?, ?, ?, ?, ?)")
                    .bind(&rubric.id)
                    .bind(i64::from(rubric.version))
                    .bind(&doc)
                    .bind(&digest)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }
        }
    }

    async fn get_rubric(&self, id: &str, version: Option<u32>) -> StoreResult<Option<Rubric>> {
        let doc: Option<String> = match version {
            Some(v) => {
                sqlx::query_scalar("SELECT document FROM rubrics WHERE id = ? AND version = ?")
                    .bind(id)
                    .bind(i64::from(v))
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_scalar(
                    "SELECT document FROM rubrics WHERE id = ? ORDER BY version DESC LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        doc.map(|d| Self::rubric_from(&d)).transpose()
    }

    async fn list_rubrics(&self) -> StoreResult<Vec<RubricEntry>> {
        let rows = sqlx::query(
            "SELECT r.id, r.version, r.document, r.created_at FROM rubrics r
             WHERE r.version = (SELECT MAX(version) FROM rubrics x WHERE x.id = r.id) ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::entry).collect()
    }

    async fn rubric_versions(&self, id: &str) -> StoreResult<Vec<RubricEntry>> {
        let rows = sqlx::query(
            "SELECT id, version, document, created_at FROM rubrics WHERE id = ? ORDER BY version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::entry).collect()
    }

    async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let row = sqlx::query(&format!("{JOB_SELECT} AND j.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn list_jobs(
        &self,
        before: Option<(i64, String)>,
        limit: u32,
        owner: Option<&str>,
    ) -> StoreResult<Vec<JobRecord>> {
        let (t, id) = before.unzip();
        let rows = sqlx::query(&format!(
            "{JOB_SELECT} AND (?1 IS NULL OR (j.created_at, j.id) < (?1, ?2)) AND (?3 IS NULL OR j.owner = ?3)
             ORDER BY j.created_at DESC, j.id DESC LIMIT ?4"
        ))
        .bind(t)
        .bind(id)
        .bind(owner)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    async fn set_job_state(&self, id: &str, state: JobState) -> StoreResult<()> {
        let now = now_ms();
        match state {
            JobState::Running => {
                sqlx::query("UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?) WHERE id = ? AND state = 'queued'")
                    .bind(now)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
            JobState::Done => {
                sqlx::query("UPDATE jobs SET state = 'done', finished_at = ? WHERE id = ? AND state IN ('queued', 'running')")
                    .bind(now)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
            JobState::Cancelling => {
                sqlx::query("UPDATE jobs SET state = 'cancelling' WHERE id = ? AND state IN ('queued', 'running')")
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
            JobState::Cancelled => {
                sqlx::query("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state IN ('queued', 'running', 'cancelling')")
                    .bind(now)
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
            JobState::Queued => {
                sqlx::query("UPDATE jobs SET state = 'queued' WHERE id = ? AND state = 'running'")
                    .bind(id)
                    .execute(&self.writer)
                    .await?;
            }
        }
        Ok(())
    }

    async fn unfinished_jobs(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn cancelling_jobs(&self) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM jobs WHERE state = 'cancelling' ORDER BY created_at",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn pending_items(
        &self,
        job: &str,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        let after = after.map_or(-1, i64_of);
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, input FROM job_items WHERE job_id = ? AND state = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(job)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, i)| (u64_of(s), i)).collect())
    }

    async fn finish_item(&self, job: &str, seq: u64, o: &ItemOutcome) -> StoreResult<bool> {
        let (reply, applied) = tokio::sync::oneshot::channel();
        let finish = Finish {
            job: job.to_owned(),
            seq,
            outcome: o.clone(),
            reply,
        };
        let stopped = || StoreError::Db("the job item writer has stopped".into());
        self.finish_tx.send(finish).await.map_err(|_| stopped())?;
        applied.await.map_err(|_| stopped())?
    }

    async fn stage_job_under_quota(
        &self,
        id: &str,
        seed: u64,
        owner: Option<&str>,
        max_active: Option<u64>,
    ) -> StoreResult<Admission> {
        let mut tx = self.writer.begin().await?;
        let admission = admit(&mut tx, owner, max_active).await?;
        if admission != Admission::Admitted {
            // At once, not when the connection is next used: on Postgres this also
            // releases the owner's quota lock.
            tx.rollback().await?;
            return Ok(admission);
        }
        insert_job_row(&mut tx, id, "staging", 0, seed, owner).await?;
        tx.commit().await?;
        Ok(admission)
    }

    async fn stage_items(
        &self,
        id: &str,
        first_seq: u64,
        items: &[(String, String)],
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        insert_items(&mut tx, id, first_seq, items).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_staged_job(&self, id: &str, total: u64) -> StoreResult<()> {
        let r = sqlx::query("UPDATE jobs SET state = 'queued', total = ?, created_at = ? WHERE id = ? AND state = 'staging'")
            .bind(i64_of(total))
            .bind(now_ms())
            .bind(id)
            .execute(&self.writer)
            .await?;
        if r.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "job {id} is not a staging job"
            )))
        }
    }

    async fn discard_staged_job(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM job_items WHERE job_id = (SELECT id FROM jobs WHERE id = ? AND state = 'staging')")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE id = ? AND state = 'staging'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn discard_staged_jobs(&self) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "DELETE FROM job_items WHERE job_id IN (SELECT id FROM jobs WHERE state = 'staging')",
        )
        .execute(&mut *tx)
        .await?;
        let r = sqlx::query("DELETE FROM jobs WHERE state = 'staging'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn score_facts(
        &self,
        job: &str,
        after: Option<u64>,
        upto: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, facts FROM job_item_facts
             WHERE job_id = ? AND seq > ? AND finished_seq <= ? ORDER BY seq LIMIT ?",
        )
        .bind(job)
        .bind(after.map_or(-1, i64_of))
        .bind(i64_of(upto))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, r)| (u64_of(s), r)).collect())
    }

    async fn put_job_figures(&self, job: &str, upto: u64, figures: &str) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET figures = ?, figures_upto = ? WHERE id = ?")
            .bind(figures)
            .bind(i64_of(upto))
            .bind(job)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn job_figures(&self, job: &str) -> StoreResult<Option<(u64, String)>> {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT figures_upto, figures FROM jobs WHERE id = ?")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((Some(upto), Some(figures))) => Some((u64_of(upto), figures)),
            _ => None,
        })
    }

    async fn results(
        &self,
        job: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, u64, String)>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT finished_seq, seq, result FROM job_items
             WHERE job_id = ? AND state != 'pending' AND finished_seq > ? ORDER BY finished_seq LIMIT ?",
        )
        .bind(job)
        .bind(i64_of(after))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(f, s, r)| (u64_of(f), u64_of(s), r))
            .collect())
    }

    async fn items_by_seq(
        &self,
        job: &str,
        which: super::Finished,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, result FROM job_items WHERE job_id = ?
             AND (state = 'done' OR (? AND state = 'failed')) AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(job)
        .bind(which.also_failed())
        .bind(after.map_or(-1, i64_of))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, r)| (u64_of(s), r)).collect())
    }

    async fn item_input(&self, job: &str, seq: u64) -> StoreResult<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT input FROM job_items WHERE job_id = ? AND seq = ?")
                .bind(job)
                .bind(i64_of(seq))
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(input,)| input))
    }

    async fn put_calibration_set(
        &self,
        set: &CalibrationSetRecord,
        labels: &[LabelRow],
    ) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("INSERT INTO calibration_sets (id, name, owner, document, items, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&set.id)
            .bind(&set.name)
            .bind(&set.owner)
            .bind(&set.document)
            .bind(i64_of(set.items))
            .bind(i64_of(set.labels))
            .bind(set.created_at)
            .bind(set.updated_at)
            .execute(&mut *tx)
            .await?;
        let stored = insert_label_rows(&mut tx, &set.id, labels, 0).await?;
        sqlx::query("INSERT INTO calibration_label_counts (set_id, labels, next_pos, updated_at) VALUES (?, ?, ?, ?)")
            .bind(&set.id)
            .bind(i64_of(stored))
            .bind(i64_of(labels.len() as u64))
            .bind(set.updated_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn calibration_set(&self, id: &str) -> StoreResult<Option<CalibrationSetRecord>> {
        let row = sqlx::query(&format!("SELECT {SET_COLUMNS}, s.document FROM calibration_sets s LEFT JOIN calibration_label_counts c ON c.set_id = s.id WHERE s.id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|r| calibration_set_from(r, true))
            .transpose()
    }

    async fn calibration_labels(&self, set: &str) -> StoreResult<Vec<LabelRow>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT item, rater, kind, value FROM calibration_labels WHERE set_id = ? ORDER BY pos",
        )
        .bind(set)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(item, rater, kind, value)| {
                Ok(LabelRow {
                    value: serde_json::from_str(&value).map_err(|e| {
                        StoreError::Corrupt(format!("label of item {item} in set {set}: {e}"))
                    })?,
                    item,
                    rater,
                    kind,
                })
            })
            .collect()
    }

    async fn list_calibration_sets(
        &self,
        owner: Option<&str>,
    ) -> StoreResult<Vec<CalibrationSetRecord>> {
        let rows = sqlx::query(&format!("SELECT {SET_COLUMNS} FROM calibration_sets s LEFT JOIN calibration_label_counts c ON c.set_id = s.id WHERE (?1 IS NULL OR s.owner = ?1) ORDER BY s.created_at DESC, s.id DESC"))
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| calibration_set_from(r, false))
            .collect()
    }

    async fn write_calibration_labels(
        &self,
        set: &str,
        events: &[LabelEvent],
        undoes: Option<u64>,
    ) -> StoreResult<LabelsStored> {
        // One writer connection: the transaction holds every set, but only for the
        // few row statements of this write (no document is read or written).
        let mut tx = self.writer.begin().await?;
        let (mut labels, mut next_pos): (i64, i64) = sqlx::query_as(
            "SELECT labels, next_pos FROM calibration_label_counts WHERE set_id = ?",
        )
        .bind(set)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("calibration set {set} has no label counts")))?;
        let (first,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(n) + 1, 0) FROM calibration_label_history WHERE set_id = ?",
        )
        .bind(set)
        .fetch_one(&mut *tx)
        .await?;
        let mut out = LabelsStored {
            added: 0,
            replaced: 0,
            removed: 0,
            labels: 0,
            first: u64_of(first),
        };
        for (i, e) in events.iter().enumerate() {
            let previous: Option<String> = sqlx::query_scalar(
                "SELECT value FROM calibration_labels WHERE set_id = ? AND item = ? AND rater = ? AND kind = ?",
            )
            .bind(set)
            .bind(&e.item)
            .bind(&e.rater)
            .bind(&e.kind)
            .fetch_optional(&mut *tx)
            .await?;
            let key = |q: &'static str| {
                sqlx::query(q)
                    .bind(set)
                    .bind(&e.item)
                    .bind(&e.rater)
                    .bind(&e.kind)
            };
            match (e.value.is_null(), previous.is_some()) {
                (true, false) => {}
                (true, true) => {
                    key("DELETE FROM calibration_labels WHERE set_id = ? AND item = ? AND rater = ? AND kind = ?")
                        .execute(&mut *tx)
                        .await?;
                    labels -= 1;
                    out.removed += 1;
                }
                (false, true) => {
                    key("UPDATE calibration_labels SET value = ?5, author = ?6 WHERE set_id = ?1 AND item = ?2 AND rater = ?3 AND kind = ?4")
                        .bind(e.value.to_string())
                        .bind(&e.author)
                        .execute(&mut *tx)
                        .await?;
                    out.replaced += 1;
                }
                (false, false) => {
                    key("INSERT INTO calibration_labels (set_id, item, rater, kind, value, author, pos) VALUES (?, ?, ?, ?, ?, ?, ?)")
                        .bind(e.value.to_string())
                        .bind(&e.author)
                        .bind(next_pos)
                        .execute(&mut *tx)
                        .await?;
                    labels += 1;
                    next_pos += 1;
                    out.added += 1;
                }
            }
            sqlx::query("INSERT INTO calibration_label_history (set_id, n, item, rater, kind, value, previous, author, at, undoes, imported_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
                .bind(set)
                .bind(first + i64_of(i as u64))
                .bind(&e.item)
                .bind(&e.rater)
                .bind(&e.kind)
                .bind(e.value.to_string())
                .bind(previous)
                .bind(&e.author)
                .bind(e.at)
                .bind(undoes.map(i64_of))
                .bind(&e.imported_by)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE calibration_label_counts SET labels = ?, next_pos = ?, updated_at = ? WHERE set_id = ?")
            .bind(labels)
            .bind(next_pos)
            .bind(now_ms())
            .bind(set)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        out.labels = u64_of(labels);
        Ok(out)
    }

    async fn label_history(&self, set: &str, item: Option<&str>) -> StoreResult<Vec<LabelEvent>> {
        let rows = sqlx::query("SELECT item, rater, kind, value, previous, author, imported_by, at FROM calibration_label_history WHERE set_id = ?1 AND (?2 IS NULL OR item = ?2) ORDER BY n")
            .bind(set)
            .bind(item)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| label_event_from(r, set)).collect()
    }

    async fn create_calibration_run_under_quota(
        &self,
        run: &CalibrationRunRecord,
        seed: u64,
        owner: Option<&str>,
        items: &[(String, String)],
        max_active: Option<u64>,
    ) -> StoreResult<Admission> {
        let mut tx = self.writer.begin().await?;
        let admission = admit(&mut tx, owner, max_active).await?;
        if admission != Admission::Admitted {
            tx.rollback().await?;
            return Ok(admission);
        }
        insert_job(&mut tx, &run.id, seed, owner, items).await?;
        sqlx::query("INSERT INTO calibration_runs (id, set_id, options) VALUES (?, ?, ?)")
            .bind(&run.id)
            .bind(&run.set_id)
            .bind(&run.options)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Admission::Admitted)
    }

    async fn calibration_run(&self, id: &str) -> StoreResult<Option<CalibrationRunRecord>> {
        let row = sqlx::query(
            "SELECT id, set_id, options, report, finished_at FROM calibration_runs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CalibrationRunRecord {
                id: r.try_get("id")?,
                set_id: r.try_get("set_id")?,
                options: r.try_get("options")?,
                report: r.try_get("report")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .transpose()
    }

    async fn calibration_set_version(
        &self,
        id: &str,
    ) -> StoreResult<Option<(CalibrationSetRecord, u64)>> {
        // The history's primary key is (set_id, n), so its newest entry is one probe.
        let row = sqlx::query(
            &format!("SELECT {SET_COLUMNS},
                (SELECT COALESCE(MAX(n) + 1, 0) FROM calibration_label_history h WHERE h.set_id = s.id) AS version
             FROM calibration_sets s LEFT JOIN calibration_label_counts c ON c.set_id = s.id WHERE s.id = ?"),
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                calibration_set_from(&r, false)?,
                u64_of(r.try_get("version")?),
            ))
        })
        .transpose()
    }

    async fn calibration_runs_of_set(
        &self,
        set: &str,
        limit: u32,
    ) -> StoreResult<Vec<(CalibrationRunRecord, JobRecord)>> {
        let rows = sqlx::query(
            "SELECT j.id, j.state, j.total, j.seed, j.owner, j.created_at, j.started_at, j.finished_at,
                j.done, j.failed, j.abstained, j.calls, j.input_tokens, j.output_tokens, j.cost_usd,
                j.cached_input_tokens, j.reasoning_tokens, r.set_id, r.finished_at AS run_finished_at
             FROM calibration_runs r JOIN jobs j ON j.id = r.id
             WHERE r.set_id = ? AND j.state != 'staging'
             ORDER BY j.created_at DESC, j.id DESC LIMIT ?",
        )
        .bind(set)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let job = job_from(r)?;
                Ok((
                    CalibrationRunRecord {
                        id: job.id.clone(),
                        set_id: r.try_get("set_id")?,
                        options: String::new(),
                        report: None,
                        finished_at: r.try_get("run_finished_at")?,
                    },
                    job,
                ))
            })
            .collect()
    }

    async fn last_undoable_label(
        &self,
        set: &str,
        author: Option<&str>,
    ) -> StoreResult<Option<(u64, LabelEvent)>> {
        let row = sqlx::query(
            "SELECT n, item, rater, kind, value, previous, author, imported_by, at FROM calibration_label_history h
             WHERE h.set_id = ?1 AND h.author IS ?2 AND h.undoes IS NULL
               AND NOT EXISTS (SELECT 1 FROM calibration_label_history u WHERE u.set_id = h.set_id AND u.undoes = h.n)
             ORDER BY h.n DESC LIMIT 1",
        )
        .bind(set)
        .bind(author)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((u64_of(r.try_get("n")?), label_event_from(&r, set)?)))
            .transpose()
    }

    async fn finish_calibration_run(&self, id: &str, report: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE calibration_runs SET report = ?, finished_at = ? WHERE id = ? AND report IS NULL")
            .bind(report)
            .bind(now_ms())
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn cache_get(&self, key: &[u8; 32]) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT answer FROM verdict_cache WHERE key = ?")
                .bind(&key[..])
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn cache_put(&self, key: &[u8; 32], answer: &str) -> StoreResult<()> {
        self.cache_writes.put(key, answer).await
    }

    async fn active_jobs(&self, owner: &str) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM jobs WHERE {ACTIVE_JOBS_WHERE}"
        ))
        .bind(owner)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn job_counts(&self) -> StoreResult<(Vec<(JobState, i64)>, i64)> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM jobs WHERE state != 'staging' GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        let by_state = counts_by_state(&rows);
        let pending: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(total - done - failed), 0) FROM jobs WHERE state IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((by_state, pending))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn put_judge_batch(&self, batch: &BatchRecord) -> StoreResult<()> {
        let ids = serde_json::to_string(&batch.custom_ids)
            .map_err(|e| StoreError::Db(format!("judge batch custom ids: {e}")))?;
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO judge_batches (id, judge, input_file_id, status, custom_ids, created_at)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&batch.id)
        .bind(&batch.judge)
        .bind(&batch.input_file_id)
        .bind(batch.status.as_str())
        .bind(ids)
        .bind(batch.created_at)
        .execute(&mut *tx)
        .await?;
        for job in &batch.jobs {
            sqlx::query(
                "INSERT INTO judge_batch_jobs (batch_id, job_id) VALUES (?, ?)
                 ON CONFLICT (batch_id, job_id) DO NOTHING",
            )
            .bind(&batch.id)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_judge_batch_status(&self, id: &str, status: LedgerStatus) -> StoreResult<()> {
        let finished = (status != LedgerStatus::Open).then(now_ms);
        sqlx::query(
            "UPDATE judge_batches SET status = ?, finished_at = COALESCE(finished_at, ?) WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(finished)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn resumable_judge_batches(&self, judge: &str) -> StoreResult<Vec<BatchRecord>> {
        let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, judge, input_file_id, status, custom_ids, created_at FROM judge_batches
             WHERE judge = ? AND status IN ('open', 'completed') ORDER BY created_at, id",
        )
        .bind(judge)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(super::batch_record).collect()
    }

    async fn job_batch_counts(&self, job: &str) -> StoreResult<BatchCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT b.status, COUNT(*) FROM judge_batch_jobs j JOIN judge_batches b ON b.id = j.batch_id
             WHERE j.job_id = ? GROUP BY b.status",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        Ok(super::batch_counts(&rows))
    }

    async fn judge_batch_jobs_all_cancelled(&self, id: &str) -> StoreResult<bool> {
        let (linked, cancelled): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN jobs.state IN ('cancelling', 'cancelled') THEN 1 ELSE 0 END), 0)
             FROM judge_batch_jobs j JOIN jobs ON jobs.id = j.job_id WHERE j.batch_id = ?",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(linked > 0 && cancelled == linked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_cache_reads_and_writes_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&format!("sqlite://{}", dir.path().join("c.db").display()))
                .await
                .unwrap(),
        );
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let s = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_le_bytes());
                assert!(s.cache_get(&key).await.unwrap().is_none());
                s.cache_put(&key, "{}").await.unwrap();
                s.flush().await;
                assert!(s.cache_get(&key).await.unwrap().is_some());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
