//! The store conformance suite: every `Store` operation checked against SQLite always,
//! and against Postgres when `TRIBUNAL_TEST_POSTGRES_URL` names a server whose user
//! may create databases (each test gets a fresh database, dropped at the end). Without
//! the URL the Postgres half prints `skipped`; under `CI=true` it fails instead. The
//! leased work queue (`JobQueue`), which only Postgres offers, is checked here too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tribunal::store::{
    BatchCounts, BatchRecord, CalibrationRunRecord, CalibrationSetRecord, Finished, ItemOutcome,
    JobQueue, JobState, LabelEvent, LabelRow, LedgerStatus, PostgresStore, SqliteStore, Store,
};

/// The env var naming the Postgres server the suite (and the replica test) may use.
pub const PG_URL_VAR: &str = "TRIBUNAL_TEST_POSTGRES_URL";

/// The Postgres admin URL, or None after printing `skipped` (a failure under CI).
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {PG_URL_VAR} is not set: {test} needs a Postgres server"
            );
            println!("skipped: {test} ({PG_URL_VAR} is not set)");
            None
        }
    }
}

/// A fresh database on the server `admin_url` names; returns its URL.
pub async fn fresh_database(admin_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("tribunal_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    with_database(admin_url, &name)
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One backend under test.
enum Backend {
    Sqlite(
        Arc<SqliteStore>,
        #[expect(dead_code, reason = "keeps the file")] tempfile::TempDir,
    ),
    Postgres(Arc<PostgresStore>, String),
}

impl Backend {
    async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        Backend::Sqlite(Arc::new(SqliteStore::open(&url).await.unwrap()), dir)
    }

    async fn postgres(test: &str) -> Option<Backend> {
        let admin = postgres_url(test)?;
        let url = fresh_database(&admin).await;
        Some(Backend::Postgres(
            Arc::new(PostgresStore::open(&url).await.unwrap()),
            url,
        ))
    }

    fn store(&self) -> &dyn Store {
        match self {
            Backend::Sqlite(s, _) => &**s,
            Backend::Postgres(p, _) => &**p,
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(..))
    }

    /// Waits for batched writes (the verdict cache's) to commit.
    async fn flush(&self) {
        match self {
            Backend::Sqlite(s, _) => s.flush().await,
            Backend::Postgres(p, _) => p.flush().await,
        }
    }

    /// Runs raw SQL against the backend's database (to age a lease or a staging job).
    async fn raw(&self, sql: &str) {
        use sqlx::Connection;
        match self {
            Backend::Postgres(_, url) => {
                let mut c = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            Backend::Sqlite(..) => unreachable!("raw SQL is used on Postgres only"),
        }
    }
}

/// Defines `<name>_sqlite` and `<name>_postgres` tests running `body` on each store.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::Backend::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(b) = super::Backend::postgres(stringify!($name)).await {
                        super::$name(&b).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    rubrics,
    staging_is_all_or_nothing,
    expired_staging_jobs_are_removed,
    counters_results_and_snapshots,
    concurrent_finishes_count_once_in_a_gap_free_order,
    job_states_lists_and_quotas,
    calibration_sets_labels_and_runs,
    labels_move_to_rows_from_old_documents,
    verdict_cache_first_writer_wins,
    ping_answers,
    judge_batches_resume_and_count_per_job,
    a_batch_is_unwanted_once_every_job_in_it_is_cancelled,
    cached_and_reasoning_tokens_are_job_counters,
);

const RUBRIC: &str = r#"{"format": "rubric.v1", "id": "r", "version": 1, "title": "T", "scoring": {"policy": "weighted"}, "criteria": [{"id": "a", "text": "A.", "points": 1}]}"#;

fn rubric(version: u32, title: &str) -> tribunal::rubric::Rubric {
    let mut v: serde_json::Value = serde_json::from_str(RUBRIC).unwrap();
    v["version"] = json!(version);
    v["title"] = json!(title);
    tribunal::rubric::schema::parse_rubric(&v).unwrap()
}

async fn rubrics(b: &Backend) {
    let s = b.store();
    assert!(s.put_rubric(&rubric(1, "one")).await.unwrap());
    assert!(
        !s.put_rubric(&rubric(1, "one")).await.unwrap(),
        "identical: no-op"
    );
    let conflict = s.put_rubric(&rubric(1, "changed")).await.unwrap_err();
    assert!(matches!(
        conflict,
        tribunal::store::StoreError::RubricConflict { version: 1, .. }
    ));
    assert!(s.put_rubric(&rubric(2, "two")).await.unwrap());
    assert_eq!(s.get_rubric("r", None).await.unwrap().unwrap().title, "two");
    assert_eq!(
        s.get_rubric("r", Some(1)).await.unwrap().unwrap().title,
        "one"
    );
    assert!(s.get_rubric("r", Some(3)).await.unwrap().is_none());
    assert!(s.get_rubric("nope", None).await.unwrap().is_none());
    let latest = s.list_rubrics().await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(
        (
            latest[0].version,
            latest[0].title.as_str(),
            latest[0].criteria
        ),
        (2, "two", 1)
    );
    let versions: Vec<u32> = s
        .rubric_versions("r")
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, [1, 2]);
}

fn items(n: usize, from: usize) -> Vec<(String, String)> {
    (from..from + n)
        .map(|i| (format!("c{i}"), format!("{{\"n\": {i}}}")))
        .collect()
}

/// A staged and committed job of `n` items.
async fn queued_job(s: &dyn Store, id: &str, n: usize, owner: Option<&str>) {
    s.stage_job(id, 7, owner).await.unwrap();
    s.stage_items(id, 0, &items(n, 0)).await.unwrap();
    s.commit_staged_job(id, n as u64).await.unwrap();
}

async fn staging_is_all_or_nothing(b: &Backend) {
    let s = b.store();
    s.stage_job("j", 42, Some("alice")).await.unwrap();
    s.stage_items("j", 0, &items(3, 0)).await.unwrap();
    s.stage_items("j", 3, &items(2, 3)).await.unwrap();
    assert!(
        s.job("j").await.unwrap().is_none(),
        "a staging job is invisible"
    );
    assert!(s.list_jobs(None, 10, None).await.unwrap().is_empty());
    assert_eq!(
        s.active_jobs("alice").await.unwrap(),
        1,
        "counts toward the quota"
    );
    assert_eq!(s.job_counts().await.unwrap().1, 0, "not pending work yet");
    s.commit_staged_job("j", 5).await.unwrap();
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.total, job.seed, job.owner.as_deref()),
        (JobState::Queued, 5, 42, Some("alice"))
    );
    let page = s.pending_items("j", None, 2).await.unwrap();
    assert_eq!(
        page,
        [(0, "{\"n\": 0}".to_owned()), (1, "{\"n\": 1}".to_owned())]
    );
    let rest: Vec<u64> = s
        .pending_items("j", Some(1), 10)
        .await
        .unwrap()
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(rest, [2, 3, 4]);
    assert!(s.commit_staged_job("j", 5).await.is_err(), "committed once");

    s.stage_job("k", 1, Some("alice")).await.unwrap();
    s.stage_items("k", 0, &items(2, 0)).await.unwrap();
    s.discard_staged_job("k").await.unwrap();
    assert!(s.job("k").await.unwrap().is_none());
    assert!(
        s.pending_items("k", None, 10).await.unwrap().is_empty(),
        "no items left behind"
    );
    assert!(
        s.commit_staged_job("k", 2).await.is_err(),
        "a discarded job cannot be committed"
    );
    assert_eq!(s.active_jobs("alice").await.unwrap(), 1);
    s.discard_staged_job("j").await.unwrap();
    assert!(
        s.job("j").await.unwrap().is_some(),
        "discard touches staging jobs only"
    );
}

async fn expired_staging_jobs_are_removed(b: &Backend) {
    let s = b.store();
    s.stage_job("live", 1, None).await.unwrap();
    s.stage_items("live", 0, &items(2, 0)).await.unwrap();
    queued_job(s, "kept", 1, None).await;
    if b.is_postgres() {
        // Shared by replicas: a live staging job is someone's upload in progress.
        assert_eq!(s.discard_staged_jobs().await.unwrap(), 0);
        b.raw("UPDATE jobs SET staging_until = 0 WHERE id = 'live'")
            .await;
        assert!(
            s.stage_items("live", 2, &items(1, 2)).await.is_ok(),
            "not removed yet"
        );
        b.raw("UPDATE jobs SET staging_until = 0 WHERE id = 'live'")
            .await;
    }
    assert_eq!(s.discard_staged_jobs().await.unwrap(), 1);
    assert!(s.commit_staged_job("live", 3).await.is_err());
    assert!(s.pending_items("live", None, 10).await.unwrap().is_empty());
    assert!(s.job("kept").await.unwrap().is_some());
    if b.is_postgres() {
        assert!(
            s.stage_items("live", 3, &items(1, 3)).await.is_err(),
            "a removed upload fails its next batch"
        );
    }
}

fn done(calls: u64, abstained: bool, score: f64) -> ItemOutcome {
    ItemOutcome {
        failed: false,
        result: json!({"format": "grade_report.v1", "score": score}).to_string(),
        facts: Some(json!({"score": score}).to_string()),
        abstained,
        calls,
        input_tokens: calls * 10,
        cached_input_tokens: calls * 6,
        output_tokens: calls * 2,
        reasoning_tokens: calls,
        cost_usd: 0.5 * calls as f64,
    }
}

fn failed() -> ItemOutcome {
    ItemOutcome {
        failed: true,
        result: json!({"case_id": "c", "error": "boom"}).to_string(),
        facts: None,
        abstained: false,
        calls: 0,
        input_tokens: 0,
        cached_input_tokens: 0,
        output_tokens: 0,
        reasoning_tokens: 0,
        cost_usd: 0.0,
    }
}

async fn counters_results_and_snapshots(b: &Backend) {
    let s = b.store();
    queued_job(s, "j", 4, None).await;
    s.set_job_state("j", JobState::Running).await.unwrap();
    assert!(s.finish_item("j", 2, &done(3, true, 0.5)).await.unwrap());
    assert!(
        !s.finish_item("j", 2, &done(9, false, 1.0)).await.unwrap(),
        "recorded once"
    );
    assert!(s.finish_item("j", 0, &failed()).await.unwrap());
    assert!(s.finish_item("j", 3, &done(1, false, 1.0)).await.unwrap());
    assert!(
        !s.finish_item("j", 99, &done(1, false, 1.0)).await.unwrap(),
        "no such item"
    );
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!(
        (job.done, job.failed, job.abstained, job.pending()),
        (2, 1, 1, 1)
    );
    assert_eq!((job.calls, job.input_tokens, job.output_tokens), (4, 40, 8));
    assert!((job.cost_usd - 2.0).abs() < 1e-9);
    let pending: Vec<u64> = s
        .pending_items("j", None, 10)
        .await
        .unwrap()
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(pending, [1]);
    let results = s.results("j", 0, 10).await.unwrap();
    let order: Vec<(u64, u64)> = results.iter().map(|(f, q, _)| (*f, *q)).collect();
    assert_eq!(order, [(1, 2), (2, 0), (3, 3)], "completion order");
    assert!(results[1].2.contains("boom"));
    let after: Vec<u64> = s
        .results("j", 1, 1)
        .await
        .unwrap()
        .iter()
        .map(|(f, _, _)| *f)
        .collect();
    assert_eq!(after, [2]);
    // Snapshots: the facts of done items among the first `upto` to finish, by seq.
    let facts = |upto| async move { s.score_facts("j", None, upto, 10).await.unwrap() };
    assert_eq!(facts(1).await, [(2, json!({"score": 0.5}).to_string())]);
    assert_eq!(facts(2).await.len(), 1, "the failed item has no facts");
    let all: Vec<u64> = facts(3).await.iter().map(|(q, _)| *q).collect();
    assert_eq!(all, [2, 3]);
    let paged: Vec<u64> = s
        .score_facts("j", Some(2), 3, 10)
        .await
        .unwrap()
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(paged, [3]);
    let reports: Vec<u64> = s
        .items_by_seq("j", Finished::DoneOnly, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(reports, [2, 3], "done items only, by seq");
    assert_eq!(
        s.items_by_seq("j", Finished::DoneOnly, Some(2), 1)
            .await
            .unwrap()
            .len(),
        1
    );
    // With the failed ones: item 0's error document too, never the pending item 1.
    let finished = s
        .items_by_seq("j", Finished::AlsoFailed, None, 10)
        .await
        .unwrap();
    let seqs: Vec<u64> = finished.iter().map(|(q, _)| *q).collect();
    assert_eq!(seqs, [0, 2, 3], "done and failed items, by seq");
    assert!(finished[0].1.contains("boom"));
    let one = s
        .items_by_seq("j", Finished::AlsoFailed, Some(1), 1)
        .await
        .unwrap();
    assert_eq!(one.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [2]);
}

async fn concurrent_finishes_count_once_in_a_gap_free_order(b: &Backend) {
    let s = b.store();
    queued_job(s, "j", 20, None).await;
    s.set_job_state("j", JobState::Running).await.unwrap();
    // Every item finished by four writers at once: one wins each.
    let writes = (0..20u64).flat_map(|seq| (0..4).map(move |w| (seq, w)));
    let wins: Vec<bool> = futures::future::join_all(writes.map(|(seq, w)| async move {
        let mut o = done(w + 1, false, 1.0);
        o.result = json!({"writer": w}).to_string();
        s.finish_item("j", seq, &o).await.unwrap()
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 20);
    let job = s.job("j").await.unwrap().unwrap();
    assert_eq!((job.done, job.failed), (20, 0));
    let results = s.results("j", 0, 100).await.unwrap();
    let finished: Vec<u64> = results.iter().map(|(f, _, _)| *f).collect();
    assert_eq!(finished, (1..=20).collect::<Vec<_>>());
    let mut seqs: Vec<u64> = results.iter().map(|(_, q, _)| *q).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
    // The counters are the sums over the winning results (writer w spent w + 1 calls).
    let calls: u64 = results
        .iter()
        .map(|(_, _, r)| {
            serde_json::from_str::<serde_json::Value>(r).unwrap()["writer"]
                .as_u64()
                .unwrap()
                + 1
        })
        .sum();
    assert_eq!(job.calls, calls);
}

async fn job_states_lists_and_quotas(b: &Backend) {
    let s = b.store();
    queued_job(s, "a", 2, Some("alice")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    queued_job(s, "b", 3, Some("bob")).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    queued_job(s, "c", 1, Some("alice")).await;
    assert_eq!(s.unfinished_jobs().await.unwrap(), ["a", "b", "c"]);
    s.set_job_state("a", JobState::Running).await.unwrap();
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!(a.state, JobState::Running);
    assert!(a.started_at.is_some() && a.finished_at.is_none());
    s.set_job_state("a", JobState::Queued).await.unwrap();
    assert_eq!(s.job("a").await.unwrap().unwrap().state, JobState::Queued);
    s.set_job_state("a", JobState::Running).await.unwrap();
    s.set_job_state("a", JobState::Done).await.unwrap();
    let a = s.job("a").await.unwrap().unwrap();
    assert_eq!(a.state, JobState::Done);
    assert!(a.finished_at.is_some());
    s.set_job_state("a", JobState::Running).await.unwrap();
    s.set_job_state("a", JobState::Cancelled).await.unwrap();
    assert_eq!(
        s.job("a").await.unwrap().unwrap().state,
        JobState::Done,
        "final stays final"
    );
    s.set_job_state("b", JobState::Cancelled).await.unwrap();
    s.set_job_state("b", JobState::Running).await.unwrap();
    assert_eq!(
        s.job("b").await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(s.unfinished_jobs().await.unwrap(), ["c"]);

    let all: Vec<String> = s
        .list_jobs(None, 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(all, ["c", "b", "a"], "newest first");
    let first = s.list_jobs(None, 1, None).await.unwrap();
    let cursor = Some((first[0].created_at, first[0].id.clone()));
    let next: Vec<String> = s
        .list_jobs(cursor, 10, None)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(next, ["b", "a"]);
    let alice: Vec<String> = s
        .list_jobs(None, 10, Some("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(alice, ["c", "a"]);

    assert_eq!(
        s.active_jobs("alice").await.unwrap(),
        1,
        "c only: a is done"
    );
    assert_eq!(s.active_jobs("bob").await.unwrap(), 0);
    assert_eq!(s.active_jobs("carol").await.unwrap(), 0);
    let (by_state, pending) = s.job_counts().await.unwrap();
    let count = |st| by_state.iter().find(|(x, _)| *x == st).unwrap().1;
    assert_eq!(
        (
            count(JobState::Queued),
            count(JobState::Running),
            count(JobState::Done),
            count(JobState::Cancelled)
        ),
        (1, 0, 1, 1)
    );
    assert_eq!(pending, 1);
}

fn event(item: &str, value: serde_json::Value, previous: Option<serde_json::Value>) -> LabelEvent {
    LabelEvent {
        item: item.to_owned(),
        rater: "dr".to_owned(),
        kind: "human".to_owned(),
        value,
        previous,
        author: Some("alice".to_owned()),
        imported_by: None,
        at: 1_700_000_000_000,
    }
}

fn row(item: &str, rater: &str, value: serde_json::Value) -> LabelRow {
    LabelRow {
        item: item.to_owned(),
        rater: rater.to_owned(),
        kind: "human".to_owned(),
        value,
    }
}

async fn calibration_sets_labels_and_runs(b: &Backend) {
    let s = b.store();
    let set = |id: &str, owner: Option<&str>, at: i64| CalibrationSetRecord {
        id: id.to_owned(),
        name: format!("set {id}"),
        owner: owner.map(str::to_owned),
        document: "{\"format\": \"calibration.v1\"}\n".to_owned(),
        items: 2,
        labels: 0,
        created_at: at,
        updated_at: at,
    };
    s.put_calibration_set(&set("s1", Some("alice"), 1000), &[])
        .await
        .unwrap();
    s.put_calibration_set(&set("s2", None, 2000), &[row("i1", "h", json!("no"))])
        .await
        .unwrap();
    assert!(
        s.put_calibration_set(&set("s1", None, 3000), &[])
            .await
            .is_err(),
        "ids are unique"
    );
    assert_eq!(
        s.calibration_labels("s2").await.unwrap(),
        [row("i1", "h", json!("no"))]
    );
    assert_eq!(
        s.calibration_set("s1").await.unwrap().unwrap(),
        set("s1", Some("alice"), 1000)
    );
    assert!(s.calibration_set("s9").await.unwrap().is_none());
    let listed = s.list_calibration_sets(None).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["s2", "s1"]
    );
    assert!(
        listed.iter().all(|r| r.document.is_empty()),
        "listings leave documents out"
    );
    assert_eq!(
        s.list_calibration_sets(Some("alice")).await.unwrap().len(),
        1
    );

    // Labels are rows: written without the document, `previous` read by the store.
    let w = s
        .write_calibration_labels("s1", &[event("i1", json!("yes"), None)], None)
        .await
        .unwrap();
    assert_eq!((w.added, w.replaced, w.labels, w.first), (1, 0, 1, 0));
    let w = s
        .write_calibration_labels(
            "s1",
            &[
                event("i1", json!("no"), None),
                event("i2", json!(3), Some(json!("ignored"))),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!((w.added, w.replaced, w.labels, w.first), (1, 1, 2, 1));
    let now = s.calibration_set("s1").await.unwrap().unwrap();
    assert_eq!(
        (now.document.as_str(), now.labels, now.created_at),
        ("{\"format\": \"calibration.v1\"}\n", 2, 1000),
        "the document is not rewritten; the count follows the rows"
    );
    assert!(now.updated_at >= now.created_at);
    assert_eq!(
        s.list_calibration_sets(Some("alice")).await.unwrap()[0].labels,
        2
    );
    assert_eq!(
        s.calibration_set_version("s1").await.unwrap().unwrap().1,
        3,
        "one version per history entry"
    );
    assert_eq!(
        s.calibration_labels("s1").await.unwrap(),
        [row("i1", "dr", json!("no")), row("i2", "dr", json!(3))],
        "first-written order; a replaced label keeps its place"
    );
    let history = s.label_history("s1", None).await.unwrap();
    assert_eq!(
        history,
        [
            event("i1", json!("yes"), None),
            event("i1", json!("no"), Some(json!("yes"))),
            event("i2", json!(3), None)
        ]
    );
    assert_eq!(
        s.label_history("s1", Some("i2")).await.unwrap(),
        [event("i2", json!(3), None)]
    );
    assert!(s.label_history("s2", None).await.unwrap().is_empty());

    // An undo of entry 2 removes the label it added, and is recorded as an undo.
    let mut undo = event("i2", serde_json::Value::Null, Some(json!(3)));
    undo.imported_by = Some("root".to_owned());
    let w = s
        .write_calibration_labels("s1", std::slice::from_ref(&undo), Some(2))
        .await
        .unwrap();
    assert_eq!((w.removed, w.labels, w.first), (1, 1, 3));
    assert_eq!(
        s.calibration_labels("s1").await.unwrap(),
        [row("i1", "dr", json!("no"))]
    );
    assert_eq!(
        s.label_history("s1", Some("i2")).await.unwrap()[1],
        undo,
        "imported_by is kept"
    );
    assert_eq!(
        s.last_undoable_label("s1", Some("alice"))
            .await
            .unwrap()
            .map(|(n, e)| (n, e.item)),
        Some((1, "i1".to_owned())),
        "the undone entry and the undo are skipped"
    );

    let run = CalibrationRunRecord {
        id: "run1".to_owned(),
        set_id: "s1".to_owned(),
        options: "{\"seed\": 1}".to_owned(),
        report: None,
        finished_at: None,
    };
    s.create_calibration_run(&run, 5, Some("alice"), &items(2, 0))
        .await
        .unwrap();
    assert_eq!(s.calibration_run("run1").await.unwrap().unwrap(), run);
    let job = s.job("run1").await.unwrap().unwrap();
    assert_eq!((job.state, job.total, job.seed), (JobState::Queued, 2, 5));
    assert_eq!(s.pending_items("run1", None, 10).await.unwrap().len(), 2);
    assert!(
        s.finish_calibration_run("run1", "{\"report\": 1}")
            .await
            .unwrap()
    );
    assert!(
        !s.finish_calibration_run("run1", "{\"report\": 2}")
            .await
            .unwrap(),
        "written once"
    );
    let finished = s.calibration_run("run1").await.unwrap().unwrap();
    assert_eq!(finished.report.as_deref(), Some("{\"report\": 1}"));
    assert!(finished.finished_at.is_some());
    assert!(s.calibration_run("run2").await.unwrap().is_none());
}

/// A database made before labels were rows (SQLite schema 8, Postgres schema 5), with
/// labels inside a set's document: opening it with this build moves them to rows,
/// leaves the document without labels, keeps the history and its undo, and does it
/// once.
async fn labels_move_to_rows_from_old_documents(b: &Backend) {
    let (dir, last_old) = match b {
        Backend::Sqlite(..) => ("migrations", 8),
        Backend::Postgres(..) => ("migrations/postgres", 5),
    };
    let mut old = sqlx::migrate::Migrator::new(crate::root().join(dir))
        .await
        .unwrap();
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version <= last_old)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    let doc = concat!(
        r#"{"format": "calibration.v1", "name": "old", "scale": "nominal", "categories": ["no", "yes"]}"#,
        "\n",
        r#"{"id": "a", "labels": [{"rater": "nurse-a", "kind": "human", "value": "yes"}, {"rater": "gpt", "kind": "judge", "value": "no"}]}"#,
        "\n",
        r#"{"id": "b", "labels": [{"rater": "nurse-a", "kind": "human", "value": "no"}]}"#,
        "\n",
    );
    let inserts = [
        format!(
            "INSERT INTO calibration_sets (id, name, owner, document, items, labels, created_at, updated_at) VALUES ('old', 'old', 'alice', '{doc}', 2, 3, 1000, 2000)"
        ),
        "INSERT INTO calibration_label_history (set_id, n, item, rater, kind, value, previous, author, at) VALUES ('old', 0, 'b', 'nurse-a', 'human', '\"no\"', NULL, 'nurse-a', 1500)".to_owned(),
    ];
    let url = match b {
        Backend::Sqlite(..) => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("old.db").display());
            let opts: sqlx::sqlite::SqliteConnectOptions = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            old.run(&pool).await.unwrap();
            for q in &inserts {
                sqlx::query(q).execute(&pool).await.unwrap();
            }
            pool.close().await;
            let store = SqliteStore::open(&url).await.unwrap();
            check_moved_labels(&store).await;
            drop(store);
            // A second open finds nothing left to move and changes nothing.
            check_moved_labels(&SqliteStore::open(&url).await.unwrap()).await;
            return;
        }
        Backend::Postgres(..) => {
            // A database of its own, migrated to the old schema only.
            let admin = postgres_url("labels_move_to_rows_from_old_documents").unwrap();
            fresh_database(&admin).await
        }
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    old.run(&pool).await.unwrap();
    for q in &inserts {
        sqlx::query(q).execute(&pool).await.unwrap();
    }
    pool.close().await;
    check_moved_labels(&PostgresStore::open(&url).await.unwrap()).await;
    check_moved_labels(&PostgresStore::open(&url).await.unwrap()).await;
}

async fn check_moved_labels(s: &dyn Store) {
    let rec = s.calibration_set("old").await.unwrap().unwrap();
    assert!(
        !rec.document.contains("nurse-a"),
        "labels left the document: {}",
        rec.document
    );
    let mut set = tribunal::calibration::set::parse_set(&rec.document).unwrap();
    assert_eq!(set.items.len(), 2);
    assert_eq!(rec.labels, 3);
    let rows = s.calibration_labels("old").await.unwrap();
    assert_eq!(
        rows,
        [
            row("a", "nurse-a", json!("yes")),
            LabelRow {
                kind: "judge".to_owned(),
                ..row("a", "gpt", json!("no"))
            },
            row("b", "nurse-a", json!("no")),
        ]
    );
    set.attach_labels(
        rows.iter()
            .map(|r| (r.item.as_str(), r.rater.as_str(), r.kind.as_str(), &r.value)),
    )
    .unwrap();
    assert_eq!(set.items[0].labels.len(), 2);
    // The history (and so undo) goes on from where it was.
    let (n, e) = s
        .last_undoable_label("old", Some("nurse-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n, e.item.as_str()), (0, "b"));
    assert_eq!(
        s.calibration_set_version("old").await.unwrap().unwrap().1,
        1
    );
}

async fn verdict_cache_first_writer_wins(b: &Backend) {
    let s = b.store();
    let key = *blake3::hash(b"k").as_bytes();
    assert!(s.cache_get(&key).await.unwrap().is_none());
    s.cache_put(&key, "{\"first\": true}").await.unwrap();
    b.flush().await;
    assert_eq!(
        s.cache_get(&key).await.unwrap().as_deref(),
        Some("{\"first\": true}")
    );
    s.cache_put(&key, "{\"second\": true}").await.unwrap();
    b.flush().await;
    assert_eq!(
        s.cache_get(&key).await.unwrap().as_deref(),
        Some("{\"first\": true}")
    );
    assert!(
        s.cache_get(blake3::hash(b"other").as_bytes())
            .await
            .unwrap()
            .is_none()
    );
}

fn judge_batch(id: &str, judge: &str, ids: &[&str], jobs: &[&str], at: i64) -> BatchRecord {
    BatchRecord {
        id: id.into(),
        judge: judge.into(),
        input_file_id: format!("file-{id}"),
        status: LedgerStatus::Open,
        custom_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        jobs: jobs.iter().map(|s| (*s).to_owned()).collect(),
        created_at: at,
    }
}

async fn judge_batches_resume_and_count_per_job(b: &Backend) {
    let s = b.store();
    assert!(s.resumable_judge_batches("a").await.unwrap().is_empty());
    let b1 = judge_batch("b1", "a", &["x", "y"], &["j1", "j2"], 1_000);
    s.put_judge_batch(&b1).await.unwrap();
    // Writing the same batch again changes nothing (no duplicate job links either).
    s.put_judge_batch(&b1).await.unwrap();
    s.put_judge_batch(&judge_batch("b2", "a", &["z"], &["j1"], 2_000))
        .await
        .unwrap();
    s.put_judge_batch(&judge_batch("b3", "other", &["w"], &["j1"], 3_000))
        .await
        .unwrap();
    let open = s.resumable_judge_batches("a").await.unwrap();
    assert_eq!(
        open.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["b1", "b2"],
        "oldest first, this judge's only"
    );
    assert_eq!(open[0].custom_ids, ["x", "y"]);
    assert_eq!(open[0].input_file_id, "file-b1");
    assert_eq!(open[0].created_at, 1_000);
    let counts = |submitted, completed, failed| BatchCounts {
        submitted,
        completed,
        failed,
    };
    assert_eq!(s.job_batch_counts("j1").await.unwrap(), counts(3, 0, 0));
    assert_eq!(s.job_batch_counts("j2").await.unwrap(), counts(1, 0, 0));
    assert_eq!(s.job_batch_counts("none").await.unwrap(), counts(0, 0, 0));
    // Completed batches still resume (entries may be unclaimed); delivered and failed
    // ones do not.
    s.set_judge_batch_status("b1", LedgerStatus::Completed)
        .await
        .unwrap();
    s.set_judge_batch_status("b2", LedgerStatus::Failed)
        .await
        .unwrap();
    let open = s.resumable_judge_batches("a").await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].status, LedgerStatus::Completed);
    s.set_judge_batch_status("b1", LedgerStatus::Delivered)
        .await
        .unwrap();
    assert!(s.resumable_judge_batches("a").await.unwrap().is_empty());
    assert_eq!(s.job_batch_counts("j1").await.unwrap(), counts(3, 1, 1));
    assert_eq!(s.job_batch_counts("j2").await.unwrap(), counts(1, 1, 0));
}

/// `judge_batch_jobs_all_cancelled`: true only when the batch has job links and every
/// linked job is cancelled (a done or running job keeps it wanted).
async fn a_batch_is_unwanted_once_every_job_in_it_is_cancelled(b: &Backend) {
    let s = b.store();
    for id in ["c1", "c2"] {
        queued_job(s, id, 1, None).await;
        s.set_job_state(id, JobState::Running).await.unwrap();
    }
    s.put_judge_batch(&judge_batch("both", "a", &["x"], &["c1", "c2"], 1_000))
        .await
        .unwrap();
    s.put_judge_batch(&judge_batch("one", "a", &["y"], &["c1"], 1_000))
        .await
        .unwrap();
    s.put_judge_batch(&judge_batch("none", "a", &["z"], &[], 1_000))
        .await
        .unwrap();
    let unwanted =
        |id: &'static str| async move { s.judge_batch_jobs_all_cancelled(id).await.unwrap() };
    assert!(!unwanted("both").await && !unwanted("one").await);
    assert!(!unwanted("none").await, "no job links: never cancelled");
    assert!(!unwanted("missing").await);
    s.set_job_state("c1", JobState::Cancelled).await.unwrap();
    assert!(unwanted("one").await);
    assert!(!unwanted("both").await, "c2 still runs");
    s.set_job_state("c2", JobState::Done).await.unwrap();
    assert!(
        !unwanted("both").await,
        "a done job's batch is not cancelled"
    );
}

async fn ping_answers(b: &Backend) {
    b.store().ping().await.unwrap();
}

/// The next job event, within 10 s.
async fn next(events: &mut tokio::sync::broadcast::Receiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap()
}

/// The Postgres store as a leased work queue.
async fn queue_backend(test: &str) -> Option<(Arc<PostgresStore>, String)> {
    match Backend::postgres(test).await? {
        Backend::Postgres(p, url) => Some((p, url)),
        Backend::Sqlite(..) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_are_disjoint_and_only_on_running_jobs() {
    let Some((pg, _)) = queue_backend("postgres_claims_are_disjoint").await else {
        return;
    };
    queued_job(&*pg, "j", 10, None).await;
    let lease = Duration::from_secs(30);
    assert!(
        pg.claim_items("j", "t0", lease, 5)
            .await
            .unwrap()
            .is_empty(),
        "queued: not claimable"
    );
    pg.set_job_state("j", JobState::Running).await.unwrap();
    let claims = futures::future::join_all((0..4).map(|i| {
        let pg = Arc::clone(&pg);
        async move {
            pg.claim_items("j", &format!("t{i}"), lease, 3)
                .await
                .unwrap()
        }
    }))
    .await;
    let mut seqs: Vec<u64> = claims.iter().flatten().map(|(q, _)| *q).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "every item claimed once");
    assert!(
        pg.claim_items("j", "t9", lease, 3)
            .await
            .unwrap()
            .is_empty(),
        "all leased"
    );
    pg.set_job_state("j", JobState::Cancelled).await.unwrap();
    for i in 0..4 {
        pg.renew_leases("j", &format!("t{i}"), Duration::ZERO)
            .await
            .unwrap();
    }
    assert!(
        pg.claim_items("j", "t9", lease, 3)
            .await
            .unwrap()
            .is_empty(),
        "cancelled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_results_are_fenced_by_the_lease_token() {
    let Some((pg, _)) = queue_backend("postgres_results_are_fenced").await else {
        return;
    };
    queued_job(&*pg, "j", 2, None).await;
    pg.set_job_state("j", JobState::Running).await.unwrap();
    let short = Duration::from_millis(300);
    let a = pg.claim_items("j", "a", short, 1).await.unwrap();
    assert_eq!(a.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [0]);
    assert!(
        !pg.finish_leased_item("j", 0, "b", &done(1, false, 1.0))
            .await
            .unwrap(),
        "not b's lease"
    );
    // The heartbeat keeps the lease: after renewing, the item is still a's.
    assert_eq!(
        pg.renew_leases("j", "a", Duration::from_secs(30))
            .await
            .unwrap(),
        1
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b1 = pg.claim_items("j", "b", short, 5).await.unwrap();
    assert_eq!(
        b1.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        [1],
        "item 0 still leased"
    );
    // An expired lease is reclaimed, and the old holder is fenced out. Renewing for
    // zero stands for a lease running out (a heartbeat that stopped) without
    // sleeping through a real one.
    assert_eq!(pg.renew_leases("j", "a", Duration::ZERO).await.unwrap(), 1);
    assert_eq!(pg.renew_leases("j", "b", Duration::ZERO).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let c = pg
        .claim_items("j", "c", Duration::from_secs(30), 5)
        .await
        .unwrap();
    assert_eq!(c.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [0, 1]);
    assert!(
        !pg.finish_leased_item("j", 0, "a", &done(1, false, 1.0))
            .await
            .unwrap(),
        "a's lease was taken over"
    );
    assert!(
        pg.finish_leased_item("j", 0, "c", &done(2, false, 1.0))
            .await
            .unwrap()
    );
    assert!(
        !pg.finish_leased_item("j", 0, "c", &done(2, false, 1.0))
            .await
            .unwrap(),
        "one result per item"
    );
    assert_eq!(
        pg.renew_leases("j", "c", Duration::from_secs(30))
            .await
            .unwrap(),
        1,
        "item 1 only"
    );
    let job = pg.job("j").await.unwrap().unwrap();
    assert_eq!((job.done, job.calls), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_job_events_reach_every_listener() {
    let Some((pg, url)) = queue_backend("postgres_job_events").await else {
        return;
    };
    // A second store on the same database stands for another replica.
    let other = PostgresStore::open(&url).await.unwrap();
    let mut events = other.job_events();
    queued_job(&*pg, "j", 1, None).await;
    assert_eq!(next(&mut events).await, "j", "committed");
    pg.set_job_state("j", JobState::Running).await.unwrap();
    assert_eq!(next(&mut events).await, "j", "running");
    assert!(pg.finish_item("j", 0, &done(1, false, 1.0)).await.unwrap());
    assert_eq!(next(&mut events).await, "j", "item finished");
}

/// A job's cached-input and reasoning tokens are counters like its input tokens: 0 for
/// a new job, the sum over recorded items (each counted once, also when many finish at
/// once and the store commits them together), and the same in `job` and `list_jobs`.
async fn cached_and_reasoning_tokens_are_job_counters(b: &Backend) {
    let s = b.store();
    queued_job(s, "t", 12, None).await;
    let fresh = s.job("t").await.unwrap().unwrap();
    assert_eq!((fresh.cached_input_tokens, fresh.reasoning_tokens), (0, 0));
    s.set_job_state("t", JobState::Running).await.unwrap();
    // Items 0..10 finish concurrently, two writers each (one wins); item 10 fails;
    // item 11 stays pending.
    let writes = (0..10u64).flat_map(|seq| (0..2u64).map(move |w| (seq, w)));
    let wins: Vec<bool> = futures::future::join_all(writes.map(|(seq, w)| async move {
        // The two writers' figures differ, so a double or a mixed count would show.
        let mut o = done(seq + 1, false, 1.0);
        o.cached_input_tokens += w * 1_000;
        o.reasoning_tokens += w * 100;
        o.result = json!({"writer": w}).to_string();
        s.finish_item("t", seq, &o).await.unwrap()
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 10);
    assert!(s.finish_item("t", 10, &failed()).await.unwrap());
    // The counters are the sums of the recorded outcomes: item seq spent seq + 1
    // calls, so 6 * (seq + 1) cached and seq + 1 reasoning tokens, plus its winning
    // writer's offset.
    let results = s.results("t", 0, 100).await.unwrap();
    let (mut cached, mut reasoning) = (0, 0);
    for (_, seq, text) in &results {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let Some(w) = v["writer"].as_u64() else {
            continue;
        };
        cached += 6 * (seq + 1) + 1_000 * w;
        reasoning += seq + 1 + 100 * w;
    }
    let job = s.job("t").await.unwrap().unwrap();
    assert_eq!((job.done, job.failed), (10, 1), "{job:?}");
    assert_eq!(
        (job.cached_input_tokens, job.reasoning_tokens),
        (cached, reasoning),
        "{job:?}"
    );
    let listed = s.list_jobs(None, 10, None).await.unwrap();
    let listed = listed.iter().find(|j| j.id == "t").unwrap();
    assert_eq!(
        (listed.cached_input_tokens, listed.reasoning_tokens),
        (job.cached_input_tokens, job.reasoning_tokens)
    );
    // A result recorded twice still counts once.
    assert!(!s.finish_item("t", 0, &done(50, false, 1.0)).await.unwrap());
    let again = s.job("t").await.unwrap().unwrap();
    assert_eq!(
        (again.cached_input_tokens, again.reasoning_tokens),
        (job.cached_input_tokens, job.reasoning_tokens)
    );
}
