//! The concurrent-jobs quota under simultaneous submissions (issue 24, "quotas are
//! atomic"). The store counts an owner's unfinished jobs and creates the new one in one
//! step (the writer's transaction on SQLite, a per-owner advisory lock on Postgres), so
//! a key with `max_concurrent_jobs = 1` gets exactly one job or calibration run
//! accepted out of a burst of 30 sent at once over HTTP and gRPC (unary and streamed),
//! on one SQLite server and on two Postgres replicas; the refused ones store nothing
//! and reach no judge. The store half checks the take itself on both engines. The
//! Postgres tests need `TRIBUNAL_TEST_POSTGRES_URL` (see `store_conformance`): they
//! print `skipped` without it and fail under `CI=true`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tonic::Code;
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;
use tribunal::store::{
    Admission, CalibrationRunRecord, CalibrationSetRecord, JobState, PostgresStore, SqliteStore,
    Store,
};

use crate::mock_openai::{Reply, met, spawn as mock};
use crate::server::{TestApp, case};
use crate::spawn::serve;
use crate::store_conformance::{fresh_database, postgres_url};

/// Submissions fired at once.
const BURST: usize = 30;
/// The key's secret; its config names it by its blake3 hash.
const SECRET: &str = "one-job-secret";
/// Every judge call takes this long, so the accepted job is still running when the
/// last answer of the burst arrives (checked, so a slow machine cannot pass vacuously).
const JUDGE_DELAY: Duration = Duration::from_secs(8);

/// One mock judge (each call answered after `JUDGE_DELAY`) as the whole committee.
fn judges(judge_url: &str) -> String {
    format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{judge_url}\"\nmodel = \"m\"\ntimeout_ms = 60000\n\n\
         [committee]\nmembers = [\"a\"]\nquorum = 1\n"
    )
}

/// The key `one`: one unfinished job (or calibration run) at a time.
fn one_job_key() -> String {
    format!(
        "[[server.api_keys]]\nname = \"one\"\nblake3 = \"{}\"\nmax_concurrent_jobs = 1\n",
        blake3::hash(SECRET.as_bytes()).to_hex()
    )
}

fn bearer() -> String {
    format!("Bearer {SECRET}")
}

fn with_key<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", bearer().parse().unwrap());
    r
}

/// What one submission got.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Accepted: the job's (or run's) id.
    Accepted(String),
    /// Refused with the concurrent-jobs quota's error (`rate_limited` / 429 with
    /// `Retry-After`, RESOURCE_EXHAUSTED with `retry-after`).
    OverQuota,
    /// Anything else (a failure of the test).
    Other(String),
}

async fn http_outcome(r: reqwest::Response, accepted: u16) -> Outcome {
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key("retry-after");
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if status == accepted {
        if let Some(id) = body["id"].as_str() {
            return Outcome::Accepted(id.to_owned());
        }
    }
    if status == 429 && retry_after && body["error"]["kind"] == "rate_limited" {
        return Outcome::OverQuota;
    }
    Outcome::Other(format!("HTTP {status}: {body}"))
}

fn grpc_outcome(r: Result<String, tonic::Status>) -> Outcome {
    match r {
        Ok(id) => Outcome::Accepted(id),
        Err(s)
            if s.code() == Code::ResourceExhausted && s.metadata().get("retry-after").is_some() =>
        {
            Outcome::OverQuota
        }
        Err(s) => Outcome::Other(format!("gRPC {:?}: {}", s.code(), s.message())),
    }
}

/// One server (a replica) as a submitter reaches it.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    url: String,
    grpc: TribunalClient<tonic::transport::Channel>,
}

impl Target {
    async fn new(url: &str, grpc_url: &str) -> Target {
        Target {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            grpc: TribunalClient::connect(grpc_url.to_owned()).await.unwrap(),
        }
    }

    /// Submits a two-item job, by the `n`th of four ways: HTTP JSON array, HTTP NDJSON,
    /// gRPC `SubmitJob`, gRPC `SubmitJobStream` (two chunks).
    async fn submit_job(mut self, n: usize) -> Outcome {
        let items = [
            case(&format!("r{n}a"), "Rest and fluids."),
            case(&format!("r{n}b"), "See a doctor."),
        ];
        let lines: Vec<String> = items.iter().map(Value::to_string).collect();
        match n % 4 {
            0 | 1 => {
                let (ctype, body) = if n % 4 == 0 {
                    ("application/json", Value::Array(items.to_vec()).to_string())
                } else {
                    ("application/x-ndjson", lines.join("\n"))
                };
                let r = self
                    .http
                    .post(format!("{}/v1/jobs", self.url))
                    .header("authorization", bearer())
                    .header("content-type", ctype)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                http_outcome(r, 202).await
            }
            2 => grpc_outcome(
                self.grpc
                    .submit_job(with_key(pb::SubmitJobRequest {
                        items_json: lines,
                        seed: 0,
                    }))
                    .await
                    .map(|r| r.into_inner().id),
            ),
            _ => {
                let chunks: Vec<pb::SubmitJobChunk> = lines
                    .into_iter()
                    .map(|l| pb::SubmitJobChunk {
                        items_json: vec![l],
                        seed: 0,
                    })
                    .collect();
                grpc_outcome(
                    self.grpc
                        .submit_job_stream(with_key(futures::stream::iter(chunks)))
                        .await
                        .map(|r| r.into_inner().id),
                )
            }
        }
    }

    /// Starts a calibration run of `set`, over HTTP for even `n`, gRPC for odd.
    async fn start_run(mut self, set: String, n: usize) -> Outcome {
        let doc = json!({"set": set, "resamples": 10});
        if n % 2 == 0 {
            let r = self
                .http
                .post(format!("{}/v1/calibration/runs", self.url))
                .header("authorization", bearer())
                .header("content-type", "application/json")
                .body(doc.to_string())
                .send()
                .await
                .unwrap();
            http_outcome(r, 202).await
        } else {
            grpc_outcome(
                self.grpc
                    .start_calibration_run(with_key(pb::JsonDocument {
                        json: doc.to_string(),
                    }))
                    .await
                    .map(|r| {
                        let v: Value = serde_json::from_str(&r.into_inner().json).unwrap();
                        v["id"].as_str().unwrap().to_owned()
                    }),
            )
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .header("authorization", bearer())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Uploads a two-item live calibration set; returns its id.
    async fn upload_set(&self) -> String {
        let text =
            std::fs::read_to_string(crate::root().join("calibration/examples/triage-live.jsonl"))
                .unwrap();
        let content: Vec<&str> = text.lines().take(3).collect();
        let r = self
            .http
            .post(format!("{}/v1/calibration/sets", self.url))
            .header("authorization", bearer())
            .header("content-type", "application/json")
            .body(
                json!({"format": "calibration.v1", "content": content.join("\n"), "name": "race"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let set: Value = r.json().await.unwrap();
        set["id"].as_str().unwrap().to_owned()
    }

    /// Waits for a job (or run: same id) to finish; returns its status.
    async fn wait_done(&self, id: &str) -> Value {
        let mut job = Value::Null;
        for _ in 0..1200 {
            job = self.get(&format!("/v1/jobs/{id}")).await;
            if job["state"] == "done" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} did not finish: {job}");
    }
}

/// Fires `BURST` submissions at once (each a task, released together by a barrier).
async fn burst<F, Fut>(submit: F) -> Vec<Outcome>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Barrier::new(BURST));
    let tasks: Vec<_> = (0..BURST)
        .map(|n| {
            let gate = Arc::clone(&gate);
            let submission = submit(n);
            tokio::spawn(async move {
                gate.wait().await;
                submission.await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(BURST);
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    outcomes
}

/// Exactly one accepted, every other refused by the quota; returns the accepted id.
fn exactly_one_accepted(outcomes: &[Outcome]) -> String {
    let accepted: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let other: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Other(_)))
        .collect();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!(accepted.len(), 1, "accepted: {accepted:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::OverQuota)
            .count(),
        BURST - 1
    );
    accepted[0].to_owned()
}

/// After a burst: the accepted job is still unfinished (so every refusal happened while
/// it held the quota), it is the key's only job, and once it is done only its own
/// items reached the judge.
async fn held_then_finished(t: &Target, id: &str, judge: &crate::mock_openai::Mock) {
    let job = t.get(&format!("/v1/jobs/{id}")).await;
    assert!(
        job["state"] == "queued" || job["state"] == "running",
        "the accepted job finished before the burst was answered (machine too slow for a {JUDGE_DELAY:?} judge?): {job}"
    );
    let jobs = t.get("/v1/jobs").await;
    let listed: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id], "refused submissions left no job: {jobs}");
    let done = t.wait_done(id).await;
    assert_eq!(done["total"], 2, "{done}");
    assert_eq!(
        judge.calls() as u64,
        done["calls"].as_u64().unwrap(),
        "only the accepted job's items were judged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_simultaneous_jobs_on_both_transports_get_one_accepted() {
    let (judge, judge_url) = mock(Reply::Delay(JUDGE_DELAY, Box::new(met(true)))).await;
    let app = TestApp::spawn_with(&judges(&judge_url), &one_job_key(), &[]).await;
    let t = Target::new(&app.url, &app.grpc_url).await;
    let outcomes = burst(|n| t.clone().submit_job(n)).await;
    let id = exactly_one_accepted(&outcomes);
    held_then_finished(&t, &id, &judge).await;
    // Finished, it frees the quota: the next submission is accepted.
    match t.clone().submit_job(0).await {
        Outcome::Accepted(next) => {
            t.wait_done(&next).await;
        }
        other => panic!("after the job finished: {other:?}"),
    }
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_simultaneous_calibration_runs_get_one_accepted() {
    let (judge, judge_url) = mock(Reply::Delay(JUDGE_DELAY, Box::new(met(true)))).await;
    let app = TestApp::spawn_with(&judges(&judge_url), &one_job_key(), &[]).await;
    let t = Target::new(&app.url, &app.grpc_url).await;
    let set = t.upload_set().await;
    let outcomes = burst(|n| t.clone().start_run(set.clone(), n)).await;
    let id = exactly_one_accepted(&outcomes);
    held_then_finished(&t, &id, &judge).await;
    let run = t.get(&format!("/v1/calibration/runs/{id}")).await;
    assert_eq!(run["state"], "done", "{run}");
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_replicas_take_the_quota_once() {
    let Some(admin) = postgres_url("two_postgres_replicas_take_the_quota_once") else {
        return;
    };
    let db = fresh_database(&admin).await;
    let (judge, judge_url) = mock(Reply::Delay(JUDGE_DELAY, Box::new(met(true)))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pg.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\ndatabase_url = \"{db}\"\njob_concurrency = 8\n\n{}",
            judges(&judge_url),
            one_job_key()
        ),
    )
    .unwrap();
    let mut replicas = [serve(&cfg), serve(&cfg)];
    let mut targets = Vec::new();
    for r in &replicas {
        targets.push(Target::new(&r.url, &r.grpc_url).await);
    }
    // Jobs: submissions alternate between the replicas and cycle through the four ways.
    let outcomes = burst(|n| targets[n % 2].clone().submit_job(n / 2)).await;
    let id = exactly_one_accepted(&outcomes);
    held_then_finished(&targets[1], &id, &judge).await;
    // Calibration runs: the same, with the quota free again.
    let set = targets[0].upload_set().await;
    let before = judge.calls();
    let outcomes = burst(|n| targets[n % 2].clone().start_run(set.clone(), n / 2)).await;
    let run = exactly_one_accepted(&outcomes);
    let status = targets[0].get(&format!("/v1/jobs/{run}")).await;
    assert!(
        status["state"] == "queued" || status["state"] == "running",
        "{status}"
    );
    let done = targets[1].wait_done(&run).await;
    assert_eq!(
        (judge.calls() - before) as u64,
        done["calls"].as_u64().unwrap()
    );
    for r in &mut replicas {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
}

/// A calibration run record of set `set`.
fn run(id: &str, set: &str) -> CalibrationRunRecord {
    CalibrationRunRecord {
        id: id.to_owned(),
        set_id: set.to_owned(),
        options: "{}".to_owned(),
        report: None,
        finished_at: None,
    }
}

async fn put_set(s: &dyn Store, id: &str, owner: &str) {
    s.put_calibration_set(
        &CalibrationSetRecord {
            id: id.to_owned(),
            name: id.to_owned(),
            owner: Some(owner.to_owned()),
            document: "{\"format\": \"calibration.v1\"}\n".to_owned(),
            items: 1,
            labels: 0,
            created_at: 1,
            updated_at: 1,
        },
        &[],
    )
    .await
    .unwrap();
}

fn one_item() -> Vec<(String, String)> {
    vec![("c0".to_owned(), "{\"n\": 0}".to_owned())]
}

/// The take, one call at a time: what counts, what a refusal leaves, what frees a place.
async fn the_quota_is_taken_with_the_job(s: &dyn Store) {
    use Admission::{Admitted, Refused};
    put_set(s, "set", "alice").await;
    let items = one_item();
    // A staging job (a submission still arriving) holds the quota.
    assert_eq!(
        s.stage_job_under_quota("a", 1, Some("alice"), Some(1))
            .await
            .unwrap(),
        Admitted
    );
    assert_eq!(
        s.stage_job_under_quota("b", 1, Some("alice"), Some(1))
            .await
            .unwrap(),
        Refused { active: 1 }
    );
    assert_eq!(
        s.create_calibration_run_under_quota(&run("r0", "set"), 1, Some("alice"), &items, Some(1))
            .await
            .unwrap(),
        Refused { active: 1 },
        "a run is a job: the same quota"
    );
    // A refusal writes nothing.
    assert!(
        s.commit_staged_job("b", 0).await.is_err(),
        "a refused job has no row"
    );
    assert!(s.calibration_run("r0").await.unwrap().is_none());
    assert!(s.job("r0").await.unwrap().is_none());
    assert!(s.pending_items("r0", None, 10).await.unwrap().is_empty());
    assert_eq!(s.active_jobs("alice").await.unwrap(), 1);
    // Another owner, no owner, no quota: none is held back by alice's.
    for (id, owner, max) in [
        ("c", Some("bob"), Some(1)),
        ("d", None, Some(1)),
        ("e", Some("alice"), None),
    ] {
        assert_eq!(
            s.stage_job_under_quota(id, 1, owner, max).await.unwrap(),
            Admitted,
            "{id}"
        );
    }
    // Under a quota of 3 alice (a, e) gets one more: a run, created whole.
    assert_eq!(
        s.create_calibration_run_under_quota(&run("r1", "set"), 5, Some("alice"), &items, Some(3))
            .await
            .unwrap(),
        Admitted
    );
    assert_eq!(
        s.calibration_run("r1").await.unwrap().unwrap(),
        run("r1", "set")
    );
    let job = s.job("r1").await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.total, job.owner.as_deref()),
        (JobState::Queued, 1, Some("alice"))
    );
    assert_eq!(
        s.stage_job_under_quota("f", 1, Some("alice"), Some(3))
            .await
            .unwrap(),
        Refused { active: 3 }
    );
    // Committed and running jobs still count.
    s.stage_items("a", 0, &items).await.unwrap();
    s.commit_staged_job("a", 1).await.unwrap();
    s.set_job_state("a", JobState::Running).await.unwrap();
    assert_eq!(
        s.stage_job_under_quota("f", 1, Some("alice"), Some(3))
            .await
            .unwrap(),
        Refused { active: 3 }
    );
    // A discarded submission and a finished job free their places.
    s.discard_staged_job("e").await.unwrap();
    assert_eq!(
        s.stage_job_under_quota("f", 1, Some("alice"), Some(3))
            .await
            .unwrap(),
        Admitted
    );
    s.set_job_state("a", JobState::Done).await.unwrap();
    s.set_job_state("r1", JobState::Done).await.unwrap();
    assert_eq!(s.active_jobs("alice").await.unwrap(), 1, "f");
    assert_eq!(
        s.stage_job_under_quota("g", 1, Some("alice"), Some(2))
            .await
            .unwrap(),
        Admitted
    );
}

/// Forty takes at once, jobs and runs mixed, spread over `stores` (replicas sharing a
/// database): exactly `max` get in, and every refusal saw exactly `max` active.
async fn simultaneous_takes_admit_exactly_the_quota(stores: &[Arc<dyn Store>]) {
    const TAKES: usize = 40;
    const MAX: u64 = 2;
    put_set(&*stores[0], "race-set", "carol").await;
    let gate = Arc::new(tokio::sync::Barrier::new(TAKES));
    let tasks: Vec<_> = (0..TAKES)
        .map(|i| {
            let s = Arc::clone(&stores[i % stores.len()]);
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                let id = format!("race-{i}");
                gate.wait().await;
                if i % 2 == 0 {
                    s.stage_job_under_quota(&id, 1, Some("carol"), Some(MAX))
                        .await
                        .unwrap()
                } else {
                    s.create_calibration_run_under_quota(
                        &run(&id, "race-set"),
                        1,
                        Some("carol"),
                        &one_item(),
                        Some(MAX),
                    )
                    .await
                    .unwrap()
                }
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Admission::Admitted => admitted += 1,
            Admission::Refused { active } => assert_eq!(active, MAX),
        }
    }
    assert_eq!(admitted, MAX);
    assert_eq!(
        stores[0].active_jobs("carol").await.unwrap(),
        i64::try_from(MAX).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_takes_the_quota_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("q.db").display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
    the_quota_is_taken_with_the_job(&*store).await;
    simultaneous_takes_admit_exactly_the_quota(&[store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_takes_the_quota_with_the_job_across_replicas() {
    let Some(admin) = postgres_url("postgres_store_takes_the_quota_with_the_job_across_replicas")
    else {
        return;
    };
    let url = fresh_database(&admin).await;
    let one: Arc<dyn Store> = Arc::new(PostgresStore::open(&url).await.unwrap());
    let two: Arc<dyn Store> = Arc::new(PostgresStore::open(&url).await.unwrap());
    the_quota_is_taken_with_the_job(&*one).await;
    simultaneous_takes_admit_exactly_the_quota(&[one, two]).await;
}
