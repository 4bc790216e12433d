//! A cancel stops work: against the in-process mock OpenAI judge (300 ms per call,
//! `max_concurrency` calls at once), a job cancelled part-way (HTTP `DELETE`, gRPC
//! `CancelJob`, and on Postgres at a replica other than the ones working it) reads
//! `cancelling` and then `cancelled` with its finish time; after the cancel at most the
//! calls already in flight reach the judge, the done count stops, and the unfinished
//! items stay pending (neither failed nor graded). The `cancelling` state on both
//! stores, and a cancelling job across a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribunal::store::{
    ItemOutcome, JobQueue, JobState, PostgresStore, SqliteStore, Store, job_event_cancel,
    parse_job_event,
};

use crate::mock_openai::{Mock, Reply, met, spawn as mock};
use crate::server::{TestApp, all_results, case};
use crate::store_conformance::{fresh_database, postgres_url};

/// Calls one judge makes at once; the most that may reach the judge after a cancel.
const MAX_CONCURRENCY: usize = 8;

/// Items per job: far more than run before the cancel.
const ITEMS: usize = 120;

/// A judge whose every answer takes 300 ms.
async fn slow_judge() -> (Arc<Mock>, String) {
    mock(Reply::Delay(
        Duration::from_millis(300),
        Box::new(met(true)),
    ))
    .await
}

/// One mock judge (three calls per item: `case` has three criteria), `tail` appended.
fn config(judge_url: &str, tail: &str) -> String {
    format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{judge_url}\"\nmodel = \"m\"\n\
         timeout_ms = 5000\nmax_concurrency = {MAX_CONCURRENCY}\n\n\
         [committee]\nmembers = [\"a\"]\nquorum = 1\nrequest_timeout_ms = 60000\n\n{tail}"
    )
}

fn items(prefix: &str) -> Value {
    Value::Array(
        (0..ITEMS)
            .map(|i| case(&format!("{prefix}{i}"), &format!("answer number {i}")))
            .collect(),
    )
}

async fn job(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn submit(http: &reqwest::Client, base: &str, body: &Value) -> String {
    let job: Value = http
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job}"))
        .to_owned()
}

/// Waits until at least `n` items of the job are done.
async fn wait_done_at_least(http: &reqwest::Client, base: &str, id: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = job(http, base, id).await;
        if j["done"].as_u64().unwrap() >= n {
            assert_eq!(j["state"], "running", "{j}");
            return;
        }
        assert!(Instant::now() < deadline, "job too slow: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follows the job after its cancel: it reads `cancelling` (no finish time) until it
/// reads `cancelled` (with one); returns the cancelled document.
async fn wait_cancelled(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = job(http, base, id).await;
        match j["state"].as_str().unwrap() {
            "cancelled" => {
                assert!(j["finished_at"].is_i64(), "{j}");
                return j;
            }
            "cancelling" => assert!(j["finished_at"].is_null(), "{j}"),
            other => panic!("after a cancel the job reads {other}: {j}"),
        }
        assert!(Instant::now() < deadline, "never cancelled: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What every cancel must leave: after the cancel (`calls_before` judge calls then) at
/// most the calls in flight reached the judge, the done count stays put once the job
/// reads cancelled, and the unfinished items are pending: neither failed nor graded.
async fn assert_stopped(
    judge: &Mock,
    calls_before: usize,
    in_flight_most: usize,
    http: &reqwest::Client,
    base: &str,
    id: &str,
) {
    let cancelled = wait_cancelled(http, base, id).await;
    // Long enough for several rounds of calls, had any gone on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = judge.calls() - calls_before;
    assert!(
        after <= in_flight_most,
        "{after} judge calls after the cancel (at most {in_flight_most} were in flight)"
    );
    let later = job(http, base, id).await;
    assert_eq!(later["state"], "cancelled", "{later}");
    assert_eq!(later["done"], cancelled["done"], "done stopped: {later}");
    assert_eq!(later["failed"], 0, "nothing failed: {later}");
    let done = later["done"].as_u64().unwrap();
    assert!(done < ITEMS as u64, "{later}");
    assert_eq!(later["pending"], ITEMS as u64 - done, "{later}");
    let results = all_results(http, base, id).await;
    assert_eq!(results.len() as u64, done, "only done items have results");
    assert!(
        results.iter().all(|r| r.get("error").is_none()),
        "no error documents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_cancel_stops_the_judge_calls_of_a_running_job() {
    let (judge, url) = slow_judge().await;
    let app = TestApp::spawn_with(&config(&url, ""), "", &[]).await;
    let id = submit(&app.http, &app.url, &items("h")).await;
    wait_done_at_least(&app.http, &app.url, &id, 10).await;
    let before = judge.calls();
    let r = app
        .http
        .delete(format!("{}/v1/jobs/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let status: Value = r.json().await.unwrap();
    // Calls were in flight: the job lets go of them before it reads cancelled.
    assert_eq!(status["state"], "cancelling", "{status}");
    assert!(status["finished_at"].is_null(), "{status}");
    assert_stopped(&judge, before, MAX_CONCURRENCY, &app.http, &app.url, &id).await;
    // Cancelling again changes nothing.
    let again: Value = app
        .http
        .delete(format!("{}/v1/jobs/{id}", app.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["state"], "cancelled", "{again}");
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_cancel_stops_the_judge_calls_of_a_running_job() {
    use tribunal::api::grpc::pb;
    let (judge, url) = slow_judge().await;
    let app = TestApp::spawn_with(&config(&url, ""), "", &[]).await;
    let id = submit(&app.http, &app.url, &items("g")).await;
    wait_done_at_least(&app.http, &app.url, &id, 10).await;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let before = judge.calls();
    let status = grpc
        .cancel_job(pb::CancelJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, "cancelling", "{status:?}");
    assert_stopped(&judge, before, MAX_CONCURRENCY, &app.http, &app.url, &id).await;
    let status = grpc
        .get_job(pb::GetJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, "cancelled", "{status:?}");
    app.running.unwrap().stop().await;
}

/// A grader for `config(judge_url, "")`.
fn grader(judge_url: &str) -> tribunal::grader::Grader {
    use tribunal::app::LoadConfig as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, config(judge_url, "")).unwrap();
    let cfg = tribunal::config::Config::load(Some(&path), std::iter::empty()).unwrap();
    tribunal::grader::Grader::from_config(&cfg).unwrap()
}

/// Below the runner: the committee checks the cancel token before every judge call
/// and while calls wait for a limiter permit; the calls already sent are awaited (not
/// dropped), and an item cut short gives no report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_judge_call_starts_after_the_cancel() {
    let (judge, url) = slow_judge().await;
    let g = grader(&url);
    // 20 items x 3 criteria at once: 8 calls go out, the other 52 wait for permits.
    let items: Vec<_> = (0..20)
        .map(|i| {
            tribunal::item::parse_item(&case(&format!("u{i}"), &format!("answer {i}")))
                .unwrap()
                .1
        })
        .collect();
    let cancel = tokio_util::sync::CancellationToken::new();
    let graded = futures::future::join_all(items.iter().map(|item| g.grade_until(item, &cancel)));
    let fire = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        Instant::now()
    };
    let (graded, fired) = tokio::join!(graded, fire);
    // An item all of whose calls were sent before the cancel is graded (at most 8 / 3
    // of them); every other one gives no report.
    let reports: Vec<_> = graded.iter().flatten().collect();
    assert!(reports.len() <= MAX_CONCURRENCY / 3, "{}", reports.len());
    assert!(
        reports
            .iter()
            .all(|r| r.as_ref().is_ok_and(|r| r.criteria.len() == 3)),
        "complete reports only"
    );
    assert_eq!(
        judge.calls(),
        MAX_CONCURRENCY,
        "only the calls sent before the cancel"
    );
    // They were awaited, not dropped: grading ended when they answered (300 ms after
    // they were sent, 200 ms after the cancel).
    assert!(fired.elapsed() >= Duration::from_millis(100));
    let stats = &g.committee.members[0].client.stats;
    assert_eq!(
        stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        MAX_CONCURRENCY as u64
    );
    assert!(
        stats
            .input_tokens
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "what was billed is counted"
    );
    // Already cancelled: not one call.
    let before = judge.calls();
    assert!(g.grade_until(&items[0], &cancel).await.is_none());
    assert_eq!(judge.calls(), before);
    // Without a cancel the same item is graded.
    let fresh = tokio_util::sync::CancellationToken::new();
    let report = g.grade_until(&items[1], &fresh).await.unwrap().unwrap();
    assert_eq!(report.criteria.len(), 3);
}

/// Two replicas on one Postgres database work the job, submitted to the first; the
/// cancel arrives at the second: its cancel event stops the first too, within the
/// calls the two had in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_at_one_replica_stops_the_other_replica_too() {
    let Some(admin) = postgres_url("a_cancel_at_one_replica_stops_the_other_replica_too") else {
        return;
    };
    let db = fresh_database(&admin).await;
    let (judge, url) = slow_judge().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg.toml");
    std::fs::write(
        &path,
        config(
            &url,
            &format!("[server]\ndatabase_url = \"{db}\"\njob_lease_seconds = 30\n"),
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut replicas: Vec<_> = (0..2).map(|_| crate::spawn::serve(&path)).collect();
    let id = submit(&http, &replicas[0].url, &items("p")).await;
    wait_done_at_least(&http, &replicas[0].url, &id, 10).await;
    let before = judge.calls();
    let status: Value = http
        .delete(format!("{}/v1/jobs/{id}", replicas[1].url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "cancelling", "{status}");
    // Each replica had at most its own judge's concurrency in flight.
    assert_stopped(
        &judge,
        before,
        2 * MAX_CONCURRENCY,
        &http,
        &replicas[0].url,
        &id,
    )
    .await;
    for r in &mut replicas {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
}

/// A cancelling job (its process stopped before its runner let go) is settled as
/// cancelled when the server starts again, never resumed: no judge call, no item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelling_at_a_restart_is_cancelled_and_never_resumed() {
    let (judge, url) = slow_judge().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let path = dir.path().join("r.toml");
    std::fs::write(
        &path,
        config(
            &url,
            &format!("[server]\ndatabase_url = \"sqlite://{}\"\n", db.display()),
        ),
    )
    .unwrap();
    // The job as a crash mid-cancel leaves it: stored, cancelling, nothing done.
    {
        let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        queued_job(&store, "j", 5).await;
        store.set_job_state("j", JobState::Running).await.unwrap();
        store
            .set_job_state("j", JobState::Cancelling)
            .await
            .unwrap();
        store.close().await;
    }
    let server = crate::spawn::serve(&path);
    let http = reqwest::Client::new();
    let status = job(&http, &server.url, "j").await;
    assert_eq!(status["state"], "cancelled", "{status}");
    assert!(status["finished_at"].is_i64(), "{status}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(judge.calls(), 0, "nothing resumed");
    let status = job(&http, &server.url, "j").await;
    assert_eq!(
        (status["done"].as_u64(), status["pending"].as_u64()),
        (Some(0), Some(5))
    );
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// A queued job of `n` one-line items.
async fn queued_job(s: &dyn Store, id: &str, n: u64) {
    s.stage_job(id, 0, None).await.unwrap();
    let items: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("c{i}"),
                case(&format!("c{i}"), "answer").to_string(),
            )
        })
        .collect();
    s.stage_items(id, 0, &items).await.unwrap();
    s.commit_staged_job(id, n).await.unwrap();
}

fn graded() -> ItemOutcome {
    ItemOutcome {
        failed: false,
        result: "{}".into(),
        facts: None,
        abstained: false,
        calls: 1,
        input_tokens: 1,
        cached_input_tokens: 0,
        output_tokens: 1,
        reasoning_tokens: 0,
        cost_usd: 0.0,
    }
}

/// `cancelling` on a store: not final and not runnable; only `cancelled` follows it,
/// with the finish time; a batch of a cancelling job is already unwanted.
async fn cancelling_is_neither_final_nor_runnable(s: &dyn Store) {
    assert!(!JobState::Cancelling.is_final() && !JobState::Cancelling.is_runnable());
    assert_eq!(JobState::parse("cancelling"), Some(JobState::Cancelling));
    queued_job(s, "j", 3).await;
    queued_job(s, "other", 1).await;
    s.set_job_state("j", JobState::Running).await.unwrap();
    assert!(s.finish_item("j", 0, &graded()).await.unwrap());
    s.set_job_state("j", JobState::Cancelling).await.unwrap();
    let j = s.job("j").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelling);
    assert_eq!((j.done, j.pending(), j.finished_at), (1, 2, None));
    assert_eq!(
        s.unfinished_jobs().await.unwrap(),
        ["other"],
        "never resumed"
    );
    assert_eq!(s.cancelling_jobs().await.unwrap(), ["j"]);
    let (counts, _) = s.job_counts().await.unwrap();
    assert!(counts.contains(&(JobState::Cancelling, 1)), "{counts:?}");
    // Neither done nor back to running or queued: the cancel wins.
    for next in [JobState::Done, JobState::Running, JobState::Queued] {
        s.set_job_state("j", next).await.unwrap();
        assert_eq!(
            s.job("j").await.unwrap().unwrap().state,
            JobState::Cancelling,
            "{next:?}"
        );
    }
    s.put_judge_batch(&tribunal::store::BatchRecord {
        id: "b".into(),
        judge: "a".into(),
        input_file_id: "f".into(),
        status: tribunal::store::LedgerStatus::Open,
        custom_ids: vec!["x".into()],
        jobs: vec!["j".into()],
        created_at: 1_000,
    })
    .await
    .unwrap();
    assert!(s.judge_batch_jobs_all_cancelled("b").await.unwrap());
    s.set_job_state("j", JobState::Cancelled).await.unwrap();
    let j = s.job("j").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert!(j.finished_at.is_some());
    assert_eq!(
        (j.done, j.pending()),
        (1, 2),
        "unfinished items stay pending"
    );
    assert!(s.cancelling_jobs().await.unwrap().is_empty());
    // A done job is never cancelling.
    s.set_job_state("other", JobState::Running).await.unwrap();
    s.set_job_state("other", JobState::Done).await.unwrap();
    s.set_job_state("other", JobState::Cancelling)
        .await
        .unwrap();
    assert_eq!(s.job("other").await.unwrap().unwrap().state, JobState::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancelling_state_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    cancelling_is_neither_final_nor_runnable(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancelling_state_on_postgres() {
    let Some(admin) = postgres_url("the_cancelling_state_on_postgres") else {
        return;
    };
    let pg = PostgresStore::open(&fresh_database(&admin).await)
        .await
        .unwrap();
    cancelling_is_neither_final_nor_runnable(&pg).await;
}

/// On a shared queue a cancel is an event of its own, and a cancelling job becomes
/// cancelled only once no live lease holds its items: each runner releases its own
/// when it lets go, and the last one settles the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_cancel_settles_once_every_lease_is_released() {
    let Some(admin) = postgres_url("postgres_a_cancel_settles_once_every_lease") else {
        return;
    };
    let url = fresh_database(&admin).await;
    let pg = PostgresStore::open(&url).await.unwrap();
    let other = PostgresStore::open(&url).await.unwrap();
    let mut events = other.job_events();
    queued_job(&pg, "j", 4).await;
    pg.set_job_state("j", JobState::Running).await.unwrap();
    let lease = Duration::from_secs(30);
    assert_eq!(pg.claim_items("j", "a", lease, 2).await.unwrap().len(), 2);
    assert_eq!(pg.claim_items("j", "b", lease, 1).await.unwrap().len(), 1);
    // Drain the events so far (commit, running).
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {}
    pg.set_job_state("j", JobState::Cancelling).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event, job_event_cancel("j"));
    assert_eq!(parse_job_event(&event), ("j", true));
    assert_eq!(parse_job_event("j"), ("j", false));
    assert!(
        pg.claim_items("j", "c", lease, 4).await.unwrap().is_empty(),
        "no claims once cancelling"
    );
    assert!(
        !pg.release_and_settle("j", None).await.unwrap(),
        "a and b hold items"
    );
    assert!(
        !pg.release_and_settle("j", Some("a")).await.unwrap(),
        "b holds one"
    );
    assert_eq!(
        pg.job("j").await.unwrap().unwrap().state,
        JobState::Cancelling
    );
    assert!(
        pg.release_and_settle("j", Some("b")).await.unwrap(),
        "the last lets go"
    );
    let j = pg.job("j").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert!(j.finished_at.is_some());
    assert_eq!(j.pending(), 4, "released items stay pending");
    // A runner that died instead: its lease expires and a settle without a token
    // (the scan's) finishes the cancel.
    queued_job(&pg, "k", 2).await;
    pg.set_job_state("k", JobState::Running).await.unwrap();
    assert_eq!(
        pg.claim_items("k", "dead", Duration::from_millis(200), 2)
            .await
            .unwrap()
            .len(),
        2
    );
    pg.set_job_state("k", JobState::Cancelling).await.unwrap();
    assert!(!pg.release_and_settle("k", None).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        pg.release_and_settle("k", None).await.unwrap(),
        "lease expired"
    );
}
