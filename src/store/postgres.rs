//! The Postgres store (sqlx, migrations in `migrations/postgres/` embedded at compile
//! time), for several replicas sharing one database: every `Store` operation behaves
//! as SQLite's does (the conformance suite in `tests/it/store_conformance.rs` runs on
//! both), plus the leased work queue (`JobQueue`) that lets any replica work any job.
//! Lease and staging times come from the database clock only (`tribunal_now_ms()`),
//! so replicas whose clocks drift still agree on what has expired. Must not grade,
//! call judges or know about transports.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};

use super::cache_writes::CacheWrites;
use super::{
    ACTIVE_JOBS_WHERE, Admission, BatchCounts, BatchRecord, CalibrationRunRecord,
    CalibrationSetRecord, ItemOutcome, JobQueue, JobRecord, JobState, LabelEvent, LabelRow,
    LabelsStored, LedgerStatus, RubricEntry, Store, StoreError, StoreResult, counts_by_state,
    i64_of, now_ms, split_document_labels, u64_of,
};
use crate::rubric::{Rubric, schema::parse_rubric};

/// The LISTEN/NOTIFY channel that carries job ids: an item of the job finished, or
/// the job changed state (committed, cancelled, done). Every replica listens, so a
/// follower on one replica wakes for results written by another, and a job submitted
/// anywhere is picked up everywhere without waiting for the next scan.
const CHANNEL: &str = "tribunal_jobs";

/// How long a staging job (a streamed submission still arriving) lives without a new
/// batch. Each batch refreshes it; a replica that dies mid-upload leaves its staging
/// job to expire, and any replica's janitor then removes it.
const STAGING_TTL_MS: i64 = 10 * 60 * 1000;

/// Pooled connections per replica (plus one for the listener): the server's
/// `max_connections` must exceed 17 x replicas (README).
const MAX_CONNECTIONS: u32 = 16;

pub struct PostgresStore {
    pool: PgPool,
    events: tokio::sync::broadcast::Sender<String>,
    /// Verdict-cache writes are batched by a background task, as on SQLite: one
    /// statement per batch instead of a round trip per judge call.
    cache_writes: CacheWrites,
}

/// Writes one batch of verdict-cache entries in one statement. First writer wins, as
/// on SQLite (`INSERT OR IGNORE`), so every replica reads the same answer for a key; a
/// key twice in one batch keeps the first too (DISTINCT ON over the batch's order).
async fn write_cache_batch(pool: PgPool, puts: Vec<([u8; 32], String)>) -> Result<(), sqlx::Error> {
    let (keys, answers): (Vec<Vec<u8>>, Vec<String>) =
        puts.into_iter().map(|(k, a)| (k.to_vec(), a)).unzip();
    sqlx::query(
        "INSERT INTO verdict_cache (key, answer, created_at)
         SELECT DISTINCT ON (k) k, a, tribunal_now_ms()
         FROM UNNEST($1::BYTEA[], $2::TEXT[]) WITH ORDINALITY AS t(k, a, n)
         ORDER BY k, n
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&keys)
    .bind(&answers)
    .execute(&pool)
    .await?;
    Ok(())
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host/db`), migrates, and starts the
    /// listener that turns other replicas' notifications into `job_events`.
    pub async fn open(url: &str) -> StoreResult<PostgresStore> {
        // A short acquire timeout makes /readyz answer "unavailable" promptly when the
        // database is down, instead of hanging for sqlx's default 30 s.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| StoreError::Db(format!("cannot connect to Postgres: {e}")))?;
        // Replicas starting together would race to migrate: an advisory lock (held by
        // sqlx's migrator for the run) makes the first one migrate and the others wait.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        move_labels_to_rows(&pool).await?;
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let tx = events.clone();
        // The listener lives as long as the process: it only forwards notifications.
        // sqlx reconnects it after a connection loss; notifications sent during the
        // gap are lost, which the job scan and the followers' poll cover.
        tokio::spawn(async move {
            loop {
                match listener.recv().await {
                    Ok(n) => {
                        let _ = tx.send(n.payload().to_owned());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Postgres job listener lost its connection; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let cache_pool = pool.clone();
        let cache_writes =
            CacheWrites::start(move |puts| write_cache_batch(cache_pool.clone(), puts));
        Ok(PostgresStore {
            pool,
            events,
            cache_writes,
        })
    }

    /// Waits until every verdict-cache write queued so far is committed.
    pub async fn flush(&self) {
        self.cache_writes.flush().await;
    }

    pub async fn close(&self) {
        self.flush().await;
        self.pool.close().await;
    }

    fn rubric_from(doc: &str) -> StoreResult<Rubric> {
        let v: serde_json::Value =
            serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        parse_rubric(&v).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn entry(row: &PgRow) -> StoreResult<RubricEntry> {
        let r = Self::rubric_from(&row.try_get::<String, _>(2)?)?;
        Ok(RubricEntry {
            id: row.try_get(0)?,
            version: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
            title: r.title,
            criteria: r.criteria.len(),
            created_at: row.try_get(3)?,
        })
    }

    /// The fenced or unfenced write of an item's outcome (see `Store::finish_item`
    /// and `JobQueue::finish_leased_item`).
    async fn finish(
        &self,
        job: &str,
        seq: u64,
        token: Option<&str>,
        o: &ItemOutcome,
    ) -> StoreResult<bool> {
        // One statement, one round trip, its own transaction. `j` locks the job's row
        // first (and, having waited for it, reads its latest counters), so completions
        // of one job are serialised until commit: `finished_seq` is a gap-free total
        // order that becomes visible in order, which followers rely on. The item
        // changes only while pending (and, fenced, only for the holder of its current
        // lease); the counters, the score facts and the notification follow only when
        // it did.
        let row: Option<(i64,)> = sqlx::query_as(
            "WITH j AS (
                 SELECT done + failed + 1 AS fseq FROM jobs WHERE id = $1 FOR UPDATE
             ), item AS (
                 UPDATE job_items SET state = $3, result = $4, abstained = $5, calls = $6,
                     input_tokens = $7, output_tokens = $8, cost_usd = $9,
                     cached_input_tokens = $15, reasoning_tokens = $16,
                     finished_at = tribunal_now_ms(), lease_until = NULL,
                     finished_seq = (SELECT fseq FROM j)
                 WHERE job_id = $1 AND seq = $2 AND state = 'pending'
                     AND ($10::TEXT IS NULL OR lease_token = $10)
                 RETURNING finished_seq
             ), counted AS (
                 UPDATE jobs SET done = done + $11, failed = failed + $12, abstained = abstained + $5,
                     calls = calls + $6, input_tokens = input_tokens + $7,
                     output_tokens = output_tokens + $8, cost_usd = cost_usd + $9,
                     cached_input_tokens = cached_input_tokens + $15,
                     reasoning_tokens = reasoning_tokens + $16
                 WHERE id = $1 AND EXISTS (SELECT 1 FROM item)
                 RETURNING id
             ), facts AS (
                 INSERT INTO job_item_facts (job_id, seq, finished_seq, facts)
                 SELECT $1, $2, item.finished_seq, $13 FROM item WHERE $13::TEXT IS NOT NULL
             )
             SELECT item.finished_seq FROM item, counted, LATERAL pg_notify($14, $1) AS n",
        )
        .bind(job)
        .bind(i64_of(seq))
        .bind(if o.failed { "failed" } else { "done" })
        .bind(&o.result)
        .bind(i64::from(o.abstained))
        .bind(i64_of(o.calls))
        .bind(i64_of(o.input_tokens))
        .bind(i64_of(o.output_tokens))
        .bind(o.cost_usd)
        .bind(token)
        .bind(i64::from(!o.failed))
        .bind(i64::from(o.failed))
        .bind(o.facts.as_deref())
        .bind(CHANNEL)
        .bind(i64_of(o.cached_input_tokens))
        .bind(i64_of(o.reasoning_tokens))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// Queues a job event, delivered to every replica when the transaction commits.
async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, job: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(job)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The advisory-lock class (first key of the two-key form) of the per-owner
/// concurrent-jobs quota; sqlx's migration lock uses the one-key form, a separate key
/// space.
const QUOTA_LOCK_CLASS: i32 = 0x7472_6a71;

/// The concurrent-jobs quota, counted in the transaction that then creates the job,
/// under a per-owner advisory transaction lock: every replica creating a job for the
/// same owner waits for it, and counts only once the one before has committed (or
/// rolled back), so the count and the insert are one step across replicas. The lock
/// is released with the transaction.
async fn admit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: Option<&str>,
    max_active: Option<u64>,
) -> StoreResult<Admission> {
    let (Some(owner), Some(max)) = (owner, max_active) else {
        return Ok(Admission::Admitted);
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(QUOTA_LOCK_CLASS)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    // Read committed: this statement's snapshot is taken after the lock is held.
    let active: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM jobs WHERE {ACTIVE_JOBS_WHERE}"
    ))
    .bind(owner)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Admission::of(active, max))
}

async fn insert_job_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &str,
    state: &str,
    total: u64,
    seed: u64,
    owner: Option<&str>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, state, total, seed, owner, created_at, staging_until)
         VALUES ($1, $2, $3, $4, $5, tribunal_now_ms(),
             CASE WHEN $2 = 'staging' THEN tribunal_now_ms() + $6 END)",
    )
    .bind(id)
    .bind(state)
    .bind(i64_of(total))
    .bind(i64_of(seed))
    .bind(owner)
    .bind(STAGING_TTL_MS)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Pending items from `first_seq` on, in one statement (arrays unnested server-side).
async fn insert_items(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: &str,
    first_seq: u64,
    items: &[(String, String)],
) -> StoreResult<()> {
    let seqs: Vec<i64> = (first_seq..)
        .take(items.len())
        .map(i64_of)
        .collect::<Vec<_>>();
    let cases: Vec<&str> = items.iter().map(|(c, _)| c.as_str()).collect();
    let inputs: Vec<&str> = items.iter().map(|(_, i)| i.as_str()).collect();
    sqlx::query(
        "INSERT INTO job_items (job_id, seq, case_id, input, state)
         SELECT $1, s, c, i, 'pending' FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[]) AS t(s, c, i)",
    )
    .bind(id)
    .bind(&seqs)
    .bind(&cases)
    .bind(&inputs)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn calibration_set_from(row: &PgRow, with_document: bool) -> StoreResult<CalibrationSetRecord> {
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
fn label_event_from(r: &PgRow, set: &str) -> StoreResult<LabelEvent> {
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

/// Inserts a set's labels as rows at positions `first_pos..`, in one statement.
/// Returns how many were inserted (a repeated (item, rater, kind) keeps the first).
async fn insert_label_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    set: &str,
    rows: &[LabelRow],
    first_pos: i64,
) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&LabelRow) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let done = sqlx::query(
        "INSERT INTO calibration_labels (set_id, item, rater, kind, value, pos)
         SELECT $1, i, r, k, v, $6 + n - 1
         FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[]) WITH ORDINALITY AS t(i, r, k, v, n)
         ORDER BY n
         ON CONFLICT DO NOTHING",
    )
    .bind(set)
    .bind(column(|r| r.item.clone()))
    .bind(column(|r| r.rater.clone()))
    .bind(column(|r| r.kind.clone()))
    .bind(column(|r| r.value.to_string()))
    .bind(first_pos)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

/// Moves the labels of sets stored before schema 6 out of their documents into rows,
/// once (a moved set has its `calibration_label_counts` row), one transaction per
/// set. Replicas starting together each claim a set by inserting its counts row; the
/// second waits for the first and then finds it done.
async fn move_labels_to_rows(pool: &PgPool) -> StoreResult<()> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM calibration_sets s
         WHERE NOT EXISTS (SELECT 1 FROM calibration_label_counts c WHERE c.set_id = s.id)",
    )
    .fetch_all(pool)
    .await?;
    for id in ids {
        let mut tx = pool.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO calibration_label_counts (set_id, labels, next_pos, updated_at)
             SELECT id, 0, 0, updated_at FROM calibration_sets WHERE id = $1
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            continue;
        }
        let document: String =
            sqlx::query_scalar("SELECT document FROM calibration_sets WHERE id = $1")
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?;
        let (items, rows) = split_document_labels(&document)
            .map_err(|e| StoreError::Corrupt(format!("calibration set {id}: {e}")))?;
        let labels = insert_label_rows(&mut tx, &id, &rows, 0).await?;
        sqlx::query("UPDATE calibration_sets SET document = $1, labels = $2 WHERE id = $3")
            .bind(&items)
            .bind(i64_of(labels))
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE calibration_label_counts SET labels = $1, next_pos = $2 WHERE set_id = $3",
        )
        .bind(i64_of(labels))
        .bind(i64_of(rows.len() as u64))
        .bind(&id)
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

const JOB_SELECT: &str =
    "SELECT j.id, j.state, j.total, j.seed, j.owner, j.created_at, j.started_at, j.finished_at,
    j.done, j.failed, j.abstained, j.calls, j.input_tokens, j.output_tokens, j.cost_usd,
    j.cached_input_tokens, j.reasoning_tokens
    FROM jobs j WHERE j.state != 'staging'";

fn job_from(row: &PgRow) -> StoreResult<JobRecord> {
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
impl Store for PostgresStore {
    async fn put_rubric(&self, rubric: &Rubric) -> StoreResult<bool> {
        let doc =
            serde_json::to_string(&rubric.to_raw()).map_err(|e| StoreError::Db(e.to_string()))?;
        let digest = blake3::hash(doc.as_bytes()).to_hex().to_string();
        // Two replicas may publish the same version at once: the insert yields to the
        // first, and the digest comparison decides no-op or conflict for the second.
        let inserted = sqlx::query(
            "INSERT INTO rubrics (id, version, document, digest, created_at)
             VALUES ($1, $2, $3, $4, tribunal_now_ms()) ON CONFLICT (id, version) DO NOTHING",
        )
        .bind(&rubric.id)
        .bind(i64::from(rubric.version))
        .bind(&doc)
        .bind(&digest)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(true);
        }
        let existing: Option<String> =
            sqlx::query_scalar("SELECT digest FROM rubrics WHERE id = $1 AND version = $2")
                .bind(&rubric.id)
                .bind(i64::from(rubric.version))
                .fetch_optional(&self.pool)
                .await?;
        match existing {
            Some(d) if d == digest => Ok(false),
            _ => Err(StoreError::RubricConflict {
                id: rubric.id.clone(),
                version: rubric.version,
            }),
        }
    }

    async fn get_rubric(&self, id: &str, version: Option<u32>) -> StoreResult<Option<Rubric>> {
        let doc: Option<String> = sqlx::query_scalar(
            "SELECT document FROM rubrics WHERE id = $1 AND ($2::BIGINT IS NULL OR version = $2)
             ORDER BY version DESC LIMIT 1",
        )
        .bind(id)
        .bind(version.map(i64::from))
        .fetch_optional(&self.pool)
        .await?;
        doc.map(|d| Self::rubric_from(&d)).transpose()
    }

    async fn list_rubrics(&self) -> StoreResult<Vec<RubricEntry>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (id) id, version, document, created_at FROM rubrics
             ORDER BY id, version DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::entry).collect()
    }

    async fn rubric_versions(&self, id: &str) -> StoreResult<Vec<RubricEntry>> {
        let rows = sqlx::query(
            "SELECT id, version, document, created_at FROM rubrics WHERE id = $1 ORDER BY version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::entry).collect()
    }

    async fn stage_job_under_quota(
        &self,
        id: &str,
        seed: u64,
        owner: Option<&str>,
        max_active: Option<u64>,
    ) -> StoreResult<Admission> {
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        // Refreshing the staging lease first also proves the job is still staging: a
        // janitor that removed it (an upload stalled past its lease) fails the batch
        // rather than leaving orphan items.
        let r = sqlx::query(
            "UPDATE jobs SET staging_until = tribunal_now_ms() + $2 WHERE id = $1 AND state = 'staging'",
        )
        .bind(id)
        .bind(STAGING_TTL_MS)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!(
                "job {id} is not a staging job (its upload stalled past the staging lease?)"
            )));
        }
        insert_items(&mut tx, id, first_seq, items).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn commit_staged_job(&self, id: &str, total: u64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE jobs SET state = 'queued', total = $1, created_at = tribunal_now_ms(),
                 staging_until = NULL
             WHERE id = $2 AND state = 'staging'",
        )
        .bind(i64_of(total))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!(
                "job {id} is not a staging job"
            )));
        }
        notify(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn discard_staged_job(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM job_items WHERE job_id = (SELECT id FROM jobs WHERE id = $1 AND state = 'staging')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE id = $1 AND state = 'staging'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn discard_staged_jobs(&self) -> StoreResult<u64> {
        // Only expired staging jobs: a live one is another replica's upload in
        // progress, which start-up must not delete.
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'staging' AND staging_until < tribunal_now_ms()
             FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM job_items WHERE job_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn job(&self, id: &str) -> StoreResult<Option<JobRecord>> {
        let row = sqlx::query(&format!("{JOB_SELECT} AND j.id = $1"))
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
            "{JOB_SELECT} AND ($1::BIGINT IS NULL OR (j.created_at, j.id) < ($1, $2::TEXT))
             AND ($3::TEXT IS NULL OR j.owner = $3)
             ORDER BY j.created_at DESC, j.id DESC LIMIT $4"
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
        let mut tx = self.pool.begin().await?;
        let changed = match state {
            JobState::Running => sqlx::query(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, tribunal_now_ms())
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?,
            JobState::Done => sqlx::query(
                "UPDATE jobs SET state = 'done', finished_at = tribunal_now_ms()
                 WHERE id = $1 AND state IN ('queued', 'running')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?,
            JobState::Cancelling => sqlx::query(
                "UPDATE jobs SET state = 'cancelling' WHERE id = $1 AND state IN ('queued', 'running')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?,
            JobState::Cancelled => sqlx::query(
                "UPDATE jobs SET state = 'cancelled', finished_at = tribunal_now_ms()
                 WHERE id = $1 AND state IN ('queued', 'running', 'cancelling')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?,
            JobState::Queued => {
                sqlx::query("UPDATE jobs SET state = 'queued' WHERE id = $1 AND state = 'running'")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
            }
        };
        if changed.rows_affected() > 0 {
            if state == JobState::Cancelling {
                // Replicas running the job fire its cancel token on this event.
                notify(&mut tx, &super::job_event_cancel(id)).await?;
            } else {
                notify(&mut tx, id).await?;
            }
        }
        tx.commit().await?;
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
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, input FROM job_items WHERE job_id = $1 AND state = 'pending' AND seq > $2
             ORDER BY seq LIMIT $3",
        )
        .bind(job)
        .bind(after.map_or(-1, i64_of))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, i)| (u64_of(s), i)).collect())
    }

    async fn finish_item(&self, job: &str, seq: u64, o: &ItemOutcome) -> StoreResult<bool> {
        self.finish(job, seq, None, o).await
    }

    async fn results(
        &self,
        job: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, u64, String)>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT finished_seq, seq, result FROM job_items
             WHERE job_id = $1 AND state != 'pending' AND finished_seq > $2
             ORDER BY finished_seq LIMIT $3",
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

    async fn score_facts(
        &self,
        job: &str,
        after: Option<u64>,
        upto: u64,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, facts FROM job_item_facts
             WHERE job_id = $1 AND seq > $2 AND finished_seq <= $3 ORDER BY seq LIMIT $4",
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
        sqlx::query("UPDATE jobs SET figures = $1, figures_upto = $2 WHERE id = $3")
            .bind(figures)
            .bind(i64_of(upto))
            .bind(job)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn job_figures(&self, job: &str) -> StoreResult<Option<(u64, String)>> {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT figures_upto, figures FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await?;
        Ok(match row {
            Some((Some(upto), Some(figures))) => Some((u64_of(upto), figures)),
            _ => None,
        })
    }

    async fn items_by_seq(
        &self,
        job: &str,
        which: super::Finished,
        after: Option<u64>,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT seq, result FROM job_items WHERE job_id = $1
             AND (state = 'done' OR ($2 AND state = 'failed')) AND seq > $3 ORDER BY seq LIMIT $4",
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
            sqlx::query_as("SELECT input FROM job_items WHERE job_id = $1 AND seq = $2")
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO calibration_sets (id, name, owner, document, items, labels, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
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
        sqlx::query(
            "INSERT INTO calibration_label_counts (set_id, labels, next_pos, updated_at)
             VALUES ($1, $2, $3, $4)",
        )
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
        let row = sqlx::query(&format!(
            "SELECT {SET_COLUMNS}, s.document FROM calibration_sets s
             LEFT JOIN calibration_label_counts c ON c.set_id = s.id WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| calibration_set_from(r, true))
            .transpose()
    }

    async fn calibration_labels(&self, set: &str) -> StoreResult<Vec<LabelRow>> {
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT item, rater, kind, value FROM calibration_labels WHERE set_id = $1 ORDER BY pos",
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
        let rows = sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM calibration_sets s
             LEFT JOIN calibration_label_counts c ON c.set_id = s.id
             WHERE ($1::TEXT IS NULL OR s.owner = $1) ORDER BY s.created_at DESC, s.id DESC"
        ))
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
        let mut tx = self.pool.begin().await?;
        // The set's counts row is its lock: replicas writing labels to the same set
        // take turns (and number their history entries one after the other); writes
        // to other sets never wait.
        let (mut labels, mut next_pos): (i64, i64) = sqlx::query_as(
            "SELECT labels, next_pos FROM calibration_label_counts WHERE set_id = $1 FOR UPDATE",
        )
        .bind(set)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("calibration set {set} has no label counts")))?;
        let first: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(n) + 1, 0) FROM calibration_label_history WHERE set_id = $1",
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
                "SELECT value FROM calibration_labels
                 WHERE set_id = $1 AND item = $2 AND rater = $3 AND kind = $4",
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
                    key("DELETE FROM calibration_labels WHERE set_id = $1 AND item = $2 AND rater = $3 AND kind = $4")
                        .execute(&mut *tx)
                        .await?;
                    labels -= 1;
                    out.removed += 1;
                }
                (false, true) => {
                    key("UPDATE calibration_labels SET value = $5, author = $6 WHERE set_id = $1 AND item = $2 AND rater = $3 AND kind = $4")
                        .bind(e.value.to_string())
                        .bind(&e.author)
                        .execute(&mut *tx)
                        .await?;
                    out.replaced += 1;
                }
                (false, false) => {
                    key("INSERT INTO calibration_labels (set_id, item, rater, kind, value, author, pos) VALUES ($1, $2, $3, $4, $5, $6, $7)")
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
            sqlx::query(
                "INSERT INTO calibration_label_history (set_id, n, item, rater, kind, value, previous, author, at, undoes, imported_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
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
        sqlx::query(
            "UPDATE calibration_label_counts SET labels = $1, next_pos = $2, updated_at = tribunal_now_ms()
             WHERE set_id = $3",
        )
        .bind(labels)
        .bind(next_pos)
        .bind(set)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        out.labels = u64_of(labels);
        Ok(out)
    }

    async fn label_history(&self, set: &str, item: Option<&str>) -> StoreResult<Vec<LabelEvent>> {
        let rows = sqlx::query(
            "SELECT item, rater, kind, value, previous, author, imported_by, at FROM calibration_label_history
             WHERE set_id = $1 AND ($2::TEXT IS NULL OR item = $2) ORDER BY n",
        )
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
        let mut tx = self.pool.begin().await?;
        let admission = admit(&mut tx, owner, max_active).await?;
        if admission != Admission::Admitted {
            tx.rollback().await?;
            return Ok(admission);
        }
        insert_job_row(&mut tx, &run.id, "queued", items.len() as u64, seed, owner).await?;
        insert_items(&mut tx, &run.id, 0, items).await?;
        sqlx::query("INSERT INTO calibration_runs (id, set_id, options) VALUES ($1, $2, $3)")
            .bind(&run.id)
            .bind(&run.set_id)
            .bind(&run.options)
            .execute(&mut *tx)
            .await?;
        notify(&mut tx, &run.id).await?;
        tx.commit().await?;
        Ok(Admission::Admitted)
    }

    async fn calibration_run(&self, id: &str) -> StoreResult<Option<CalibrationRunRecord>> {
        let row = sqlx::query(
            "SELECT id, set_id, options, report, finished_at FROM calibration_runs WHERE id = $1",
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
             FROM calibration_sets s LEFT JOIN calibration_label_counts c ON c.set_id = s.id WHERE s.id = $1"),
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                calibration_set_from(&r, false)?,
                u64_of(r.try_get::<i64, _>("version")?),
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
             WHERE r.set_id = $1 AND j.state != 'staging'
             ORDER BY j.created_at DESC, j.id DESC LIMIT $2",
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
             WHERE h.set_id = $1 AND h.author IS NOT DISTINCT FROM $2::TEXT AND h.undoes IS NULL
               AND NOT EXISTS (SELECT 1 FROM calibration_label_history u WHERE u.set_id = h.set_id AND u.undoes = h.n)
             ORDER BY h.n DESC LIMIT 1",
        )
        .bind(set)
        .bind(author)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                u64_of(r.try_get::<i64, _>("n")?),
                label_event_from(&r, set)?,
            ))
        })
        .transpose()
    }

    async fn finish_calibration_run(&self, id: &str, report: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE calibration_runs SET report = $1, finished_at = tribunal_now_ms()
             WHERE id = $2 AND report IS NULL",
        )
        .bind(report)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn cache_get(&self, key: &[u8; 32]) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT answer FROM verdict_cache WHERE key = $1")
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
        // This runs before every metrics scrape, so the pool gauges are as fresh as the
        // scrape (and set even when the queries below fail).
        crate::metrics::store_pool(self.pool.size(), self.pool.num_idle(), MAX_CONNECTIONS);
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM jobs WHERE state != 'staging' GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        let by_state = counts_by_state(&rows);
        let pending: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(total - done - failed), 0)::BIGINT FROM jobs
             WHERE state IN ('queued', 'running')",
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO judge_batches (id, judge, input_file_id, status, custom_ids, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
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
                "INSERT INTO judge_batch_jobs (batch_id, job_id) VALUES ($1, $2)
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
            "UPDATE judge_batches SET status = $1, finished_at = COALESCE(finished_at, $2) WHERE id = $3",
        )
        .bind(status.as_str())
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn resumable_judge_batches(&self, judge: &str) -> StoreResult<Vec<BatchRecord>> {
        let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT id, judge, input_file_id, status, custom_ids, created_at FROM judge_batches
             WHERE judge = $1 AND status IN ('open', 'completed') ORDER BY created_at, id",
        )
        .bind(judge)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(super::batch_record).collect()
    }

    async fn job_batch_counts(&self, job: &str) -> StoreResult<BatchCounts> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT b.status, COUNT(*) FROM judge_batch_jobs j JOIN judge_batches b ON b.id = j.batch_id
             WHERE j.job_id = $1 GROUP BY b.status",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        Ok(super::batch_counts(&rows))
    }

    async fn judge_batch_jobs_all_cancelled(&self, id: &str) -> StoreResult<bool> {
        let (linked, cancelled): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN jobs.state IN ('cancelling', 'cancelled') THEN 1 ELSE 0 END), 0)
             FROM judge_batch_jobs j JOIN jobs ON jobs.id = j.job_id WHERE j.batch_id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(linked > 0 && cancelled == linked)
    }
}

#[async_trait::async_trait]
impl JobQueue for PostgresStore {
    async fn claim_items(
        &self,
        job: &str,
        token: &str,
        lease: Duration,
        limit: u32,
    ) -> StoreResult<Vec<(u64, String)>> {
        // SKIP LOCKED: replicas claiming at the same moment take different rows
        // instead of queueing behind each other's locks. Only a running job's items are
        // claimed, so a cancel (from any replica) stops every claim at once.
        let mut rows: Vec<(i64, String)> = sqlx::query_as(
            "UPDATE job_items SET lease_token = $2, lease_until = tribunal_now_ms() + $3
             WHERE (job_id, seq) IN (
                 SELECT i.job_id, i.seq FROM job_items i JOIN jobs j ON j.id = i.job_id
                 WHERE i.job_id = $1 AND j.state = 'running' AND i.state = 'pending'
                     AND (i.lease_until IS NULL OR i.lease_until < tribunal_now_ms())
                 ORDER BY i.seq LIMIT $4
                 FOR UPDATE OF i SKIP LOCKED)
             RETURNING seq, input",
        )
        .bind(job)
        .bind(token)
        .bind(lease_ms(lease))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.sort_by_key(|(s, _)| *s);
        Ok(rows.into_iter().map(|(s, i)| (u64_of(s), i)).collect())
    }

    async fn renew_leases(&self, job: &str, token: &str, lease: Duration) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE job_items SET lease_until = tribunal_now_ms() + $3
             WHERE job_id = $1 AND state = 'pending' AND lease_token = $2",
        )
        .bind(job)
        .bind(token)
        .bind(lease_ms(lease))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn finish_leased_item(
        &self,
        job: &str,
        seq: u64,
        token: &str,
        outcome: &ItemOutcome,
    ) -> StoreResult<bool> {
        self.finish(job, seq, Some(token), outcome).await
    }

    fn job_events(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.events.subscribe()
    }

    async fn release_and_settle(&self, job: &str, token: Option<&str>) -> StoreResult<bool> {
        if let Some(token) = token {
            sqlx::query(
                "UPDATE job_items SET lease_token = NULL, lease_until = NULL
                 WHERE job_id = $1 AND state = 'pending' AND lease_token = $2",
            )
            .bind(job)
            .bind(token)
            .execute(&self.pool)
            .await?;
        }
        // Its own statement, after the release committed: of two replicas letting go at
        // once, the later one's check sees the other's leases gone, so one of them
        // always settles.
        let mut tx = self.pool.begin().await?;
        let settled = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = tribunal_now_ms()
             WHERE id = $1 AND state = 'cancelling' AND NOT EXISTS (
                 SELECT 1 FROM job_items WHERE job_id = $1 AND state = 'pending'
                     AND lease_until >= tribunal_now_ms())",
        )
        .bind(job)
        .execute(&mut *tx)
        .await?;
        if settled.rows_affected() > 0 {
            notify(&mut tx, job).await?;
        }
        tx.commit().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_optional(&self.pool)
            .await?;
        Ok(state.as_deref() == Some(JobState::Cancelled.as_str()))
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
}
