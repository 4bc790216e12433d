//! Judge Batch API (issue 13 item 3): job calls of a `batch = true` judge go to the
//! mock's `/v1/files` + `/v1/batches` in batch files cut by size and age, come back by
//! `custom_id` through the usual parse / usage / cost path at the batch price, are
//! retried when an entry or batch fails, then abstain as `batch_failed`; cache hits
//! are never submitted; a server killed mid-batch resumes polling the stored batch.

use std::time::Duration;

use serde_json::{Value, json};
use tribunal::app::LoadConfig as _;
use tribunal::config::Config;
use tribunal::grader::Grader;
use tribunal::item::{Item, parse_item};
use tribunal::judge::batch::scope;

use crate::mock_openai::{BATCH_PRICE_FACTOR, Mock, Prices, met, spawn};
use crate::server::{TestApp, all_results, case};

const PRICES: Prices = Prices {
    input: 2.0,
    cached_input: 0.5,
    output: 8.0,
};

/// A committee of one batch judge on the mock; `batch` holds its `batch_*` lines.
fn config(url: &str, batch: &str) -> String {
    format!(
        r#"
[judges.a]
provider = "openai"
base_url = "{url}"
model = "mock-model"
timeout_ms = 200
price_input_per_mtok = {}
price_cached_input_per_mtok = {}
price_output_per_mtok = {}
batch = true
batch_poll_ms = 40
{batch}

[committee]
members = ["a"]
quorum = 1
request_timeout_ms = 1000
"#,
        PRICES.input, PRICES.cached_input, PRICES.output
    )
}

fn grader(url: &str, batch: &str) -> Grader {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tribunal.toml");
    std::fs::write(&path, config(url, batch)).unwrap();
    Grader::from_config(&Config::load(Some(&path), std::iter::empty()).unwrap()).unwrap()
}

fn item(id: &str) -> Item {
    parse_item(&case(id, &format!("See a doctor and drink fluids ({id}).")))
        .unwrap()
        .1
}

async fn mock(delay_ms: u64) -> (std::sync::Arc<Mock>, String) {
    let (mock, url) = spawn(met(true)).await;
    mock.bill_prefixes(PRICES);
    mock.batch_delay(Duration::from_millis(delay_ms));
    (mock, url)
}

fn sizes(mock: &Mock) -> Vec<usize> {
    mock.batches_created().iter().map(Vec::len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_job_completes_with_scores_and_costs_the_mock_bill() {
    let (mock, url) = mock(300).await;
    // 4 items x 3 criteria = 12 calls, under the size threshold: one batch, sent by age.
    let app = TestApp::spawn_with(
        &config(&url, "batch_max_requests = 100\nbatch_max_wait_ms = 300"),
        "",
        &[],
    )
    .await;
    let items: Vec<Value> = (0..4)
        .map(|i| {
            case(
                &format!("b{i}"),
                &format!("See a doctor and drink fluids ({i})."),
            )
        })
        .collect();
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let done = app.wait_job(id).await;
    assert_eq!(done["done"], 4, "{done}");
    assert_eq!(mock.calls(), 0, "no live call");
    assert_eq!(sizes(&mock), [12], "one batch holds all 12 calls");
    let (_, status) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(
        status["batches"],
        json!({"submitted": 1, "completed": 1, "failed": 0}),
        "{status}"
    );
    let results = all_results(&reqwest::Client::new(), &app.url, id).await;
    for r in &results {
        // Every criterion met (the mock's answer): +7 +3, and the -6 pitfall met too.
        assert_eq!(r["abstentions"], json!([]), "{r}");
        for c in r["criteria"].as_array().unwrap() {
            assert_eq!(c["verdict"], true, "{c}");
        }
        assert_eq!(r["usage"]["upstream_calls"], 3);
    }
    let bill = mock.bill();
    assert_eq!(bill.calls, 12);
    let cost = status["cost_usd"].as_f64().unwrap();
    assert!(bill.usd > 0.0);
    assert!(
        (cost - bill.usd).abs() <= bill.usd * 0.01,
        "reported {cost} vs billed {}",
        bill.usd
    );
    // The same tokens at live prices would cost twice as much.
    let live = ((bill.input_tokens - bill.cached_input_tokens) as f64 * PRICES.input
        + bill.cached_input_tokens as f64 * PRICES.cached_input
        + bill.output_tokens as f64 * PRICES.output)
        / 1e6;
    assert!((bill.usd - live * BATCH_PRICE_FACTOR).abs() < 1e-12);
    let (_, judges) = app.get("/v1/judges").await;
    assert_eq!(judges["judges"][0]["health"]["batches"]["submitted"], 1);
    assert_eq!(judges["judges"][0]["health"]["batches"]["requests"], 12);
    let (_, metrics) = app.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    let completed = text.lines().find(|l| {
        l.starts_with("tribunal_judge_batches_total{")
            && l.contains("outcome=\"completed\"")
            && l.contains("judge=\"a\"")
    });
    assert_eq!(completed.map(|l| l.ends_with(" 1")), Some(true), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_cut_at_the_size_threshold_and_the_rest_flushed_by_age() {
    let (mock, url) = mock(50).await;
    let g = grader(&url, "batch_max_requests = 4\nbatch_max_wait_ms = 400");
    let items: Vec<Item> = (0..3).map(|i| item(&format!("s{i}"))).collect();
    let started = std::time::Instant::now();
    let reports = futures::future::join_all(items.iter().map(|i| scope(None, g.grade(i)))).await;
    for r in reports {
        assert!(!r.unwrap().degraded);
    }
    // 9 calls: two full files of 4 at once, the last call alone after the age threshold.
    let mut got = sizes(&mock);
    got.sort_unstable();
    assert_eq!(got, [1, 4, 4]);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_retried_in_a_later_batch() {
    let (mock, url) = mock(30).await;
    mock.batch.lock().unwrap().expire_entries = 1;
    let g = grader(&url, "batch_max_requests = 10\nbatch_max_wait_ms = 50");
    let report = scope(None, g.grade(&item("e"))).await.unwrap();
    assert!(!report.degraded, "the retry answered");
    let created = mock.batches_created();
    assert_eq!(sizes(&mock), [3, 1]);
    assert!(
        created[0].contains(&created[1][0]),
        "same custom_id retried"
    );
    // The expired entry was not billed; the retry was.
    assert_eq!(mock.bill().calls, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_failing_every_batch_abstain_as_batch_failed() {
    let (mock, url) = mock(30).await;
    // 3 calls: all fail in the first batch, one fails again in the retry batch.
    mock.batch.lock().unwrap().fail_entries = 4;
    let g = grader(
        &url,
        "batch_max_requests = 10\nbatch_max_wait_ms = 50\nbatch_max_attempts = 2",
    );
    let report = scope(None, g.grade(&item("f"))).await.unwrap();
    let doc = serde_json::to_value(report.to_doc()).unwrap();
    assert_eq!(
        doc["abstentions"].as_array().unwrap().len(),
        1,
        "{}",
        doc["abstentions"]
    );
    assert_eq!(doc["abstentions"][0]["reason"], "batch_failed");
    assert_eq!(sizes(&mock), [3, 3]);
    // A whole batch failing counts as its entries failing.
    let (mock, url) = self::mock(30).await;
    mock.batch.lock().unwrap().fail_batches = 1;
    let g = grader(&url, "batch_max_requests = 10\nbatch_max_wait_ms = 50");
    let report = scope(None, g.grade(&item("g"))).await.unwrap();
    assert!(!report.degraded);
    assert_eq!(sizes(&mock), [3, 3]);
    let health = g.committee.members[0].client.batcher.as_ref().unwrap();
    assert_eq!(
        health
            .stats
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_are_never_submitted() {
    let (mock, url) = mock(30).await;
    let g = grader(&url, "batch_max_requests = 10\nbatch_max_wait_ms = 50");
    // Two identical items at once: the verdict cache's single flight asks once.
    let one = item("same");
    let (a, b) = tokio::join!(scope(None, g.grade(&one)), scope(None, g.grade(&one)));
    assert!(!a.unwrap().degraded && !b.unwrap().degraded);
    assert_eq!(sizes(&mock), [3]);
    // Again later: answered from the cache, no new batch.
    let again = scope(None, g.grade(&one)).await.unwrap();
    assert!(again.criteria.iter().all(|c| c.ballots[0].cached));
    assert_eq!(sizes(&mock), [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outside_a_job_stay_live() {
    let (mock, url) = mock(30).await;
    let g = grader(&url, "batch_max_requests = 10\nbatch_max_wait_ms = 50");
    let report = g.grade(&item("live")).await.unwrap();
    assert!(!report.degraded);
    assert_eq!(mock.calls(), 3);
    assert!(mock.batches_created().is_empty());
    // Live calls are billed at the full price.
    let cost: f64 = report
        .criteria
        .iter()
        .flat_map(|c| &c.ballots)
        .map(|b| b.cost_usd)
        .sum();
    assert!((cost - mock.bill().usd).abs() <= mock.bill().usd * 0.01);
}

/// A server on a SQLite file with one batch judge (the mock completes batches
/// `delay_ms` after submission), running a three-item job whose nine calls were just
/// submitted as one batch and stored (the job status reads the store).
struct MidBatch {
    mock: std::sync::Arc<Mock>,
    _dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
    server: crate::spawn::Server,
    job: String,
    http: reqwest::Client,
}

async fn mid_batch(delay_ms: u64, prefix: &str) -> MidBatch {
    let (mock, url) = mock(delay_ms).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    let db = dir.path().join("batch.db");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\ndatabase_url = \"sqlite://{}\"\n",
            config(&url, "batch_max_requests = 100\nbatch_max_wait_ms = 100"),
            db.display()
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let items: Vec<Value> = (0..3)
        .map(|i| case(&format!("{prefix}{i}"), &format!("answer {i}")))
        .collect();
    let server = crate::spawn::serve(&cfg);
    let job: Value = http
        .post(format!("{}/v1/jobs", server.url))
        .header("content-type", "application/json")
        .body(Value::Array(items).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = job["id"].as_str().unwrap().to_owned();
    let run = MidBatch {
        mock,
        _dir: dir,
        cfg,
        server,
        job,
        http,
    };
    for _ in 0..200 {
        if run.status().await["batches"]["submitted"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sizes(&run.mock), [9], "the batch was submitted and stored");
    run
}

impl MidBatch {
    async fn status(&self) -> Value {
        self.http
            .get(format!("{}/v1/jobs/{}", self.server.url, self.job))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Starts the next server on the same store file.
    fn restart(&mut self) {
        self.server = crate::spawn::serve(&self.cfg);
    }

    /// Polls until the job is done (or gives up after `polls`), then stops the server.
    async fn finish(&mut self, polls: usize) -> Value {
        let mut status = self.status().await;
        for _ in 0..polls {
            if status["state"] == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            status = self.status().await;
        }
        self.server.child.kill().unwrap();
        self.server.child.wait().unwrap();
        status
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_batch_resumes_polling_without_resubmitting() {
    let mut run = mid_batch(2_500, "r").await;
    run.server.child.kill().unwrap();
    run.server.child.wait().unwrap();

    run.restart();
    let status = run.finish(400).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["done"], 3, "{status}");
    assert_eq!(
        sizes(&run.mock),
        [9],
        "no second batch for the same requests"
    );
    assert_eq!(run.mock.calls(), 0);
    assert_eq!(
        status["batches"],
        json!({"submitted": 1, "completed": 1, "failed": 0})
    );
    let cost = status["cost_usd"].as_f64().unwrap();
    let bill = run.mock.bill().usd;
    assert!((cost - bill).abs() <= bill * 0.01, "{cost} vs {bill}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_with_batch_flag_end_to_end() {
    let (mock, url) = mock(100).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    // `batch = true` plus its options; without --batch the CLI would call live.
    std::fs::write(
        &cfg,
        config(&url, "batch_max_requests = 100\nbatch_max_wait_ms = 100"),
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    let out = dir.path().join("out.jsonl");
    let lines: Vec<String> = (0..3)
        .map(|i| case(&format!("g{i}"), &format!("See a doctor ({i}).")).to_string())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let (i, c, o) = (input.clone(), cfg.clone(), out.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tribunal"))
            .args(["grade", i.to_str().unwrap(), "-c", c.to_str().unwrap()])
            .args(["-o", o.to_str().unwrap(), "--format", "json", "--batch"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 3);
    let cost: f64 = reports
        .iter()
        .map(|r| r["usage"]["cost_usd"].as_f64().unwrap())
        .sum();
    assert_eq!(sizes(&mock), [9]);
    assert_eq!(mock.calls(), 0);
    assert!((cost - mock.bill().usd).abs() <= mock.bill().usd * 0.01);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_batch_on_a_simulated_committee_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, case("x", "See a doctor.").to_string()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tribunal"))
        .args(["grade", input.to_str().unwrap(), "--batch"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("--batch") && err.contains("simulated") && err.contains("no Batch API"),
        "{err}"
    );
}

#[tokio::test]
async fn estimate_applies_the_batch_price_factor() {
    let url = "http://127.0.0.1:9/v1";
    let items = [item("est1"), item("est2")];
    let batched = grader(url, "batch_price_factor = 0.5")
        .committee
        .estimate(&items);
    let live_cfg = config(url, "").replace("batch = true\nbatch_poll_ms = 40\n", "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.toml");
    std::fs::write(&path, live_cfg).unwrap();
    let live = Grader::from_config(&Config::load(Some(&path), std::iter::empty()).unwrap())
        .unwrap()
        .committee
        .estimate(&items);
    assert!(batched[0].batch && !live[0].batch);
    assert_eq!(batched[0].calls, live[0].calls);
    assert!(live[0].cost_usd > 0.0);
    assert!((batched[0].cost_usd - 0.5 * live[0].cost_usd).abs() < 1e-12);
}

/// SIGTERM while a job's calls wait in a provider batch: the server stops without
/// waiting for the batch (the items stay pending instead of holding shutdown), and the
/// restarted server waits for the stored batch rather than sending a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_does_not_wait_for_a_batch() {
    // The batch completes 8 s after submission; a shutdown that waited for it would
    // record the items as done before exiting.
    let mut run = mid_batch(8_000, "g").await;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &run.server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
    let exit = run.server.child.wait().unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");

    // The items were left pending (nothing recorded while the batch was out).
    run.restart();
    let status = run.status().await;
    assert_eq!(status["done"], 0, "{status}");
    let status = run.finish(800).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["done"], 3, "{status}");
    assert_eq!(
        sizes(&run.mock),
        [9],
        "no second batch for the same requests"
    );
}

/// A server with one batch judge (`batch_max_wait_ms = wait_ms`) on a mock whose batches
/// complete after `delay_ms`, and a submitted job of three one-line items.
async fn batch_job(
    delay_ms: u64,
    wait_ms: u64,
    prefix: &str,
) -> (std::sync::Arc<Mock>, TestApp, Vec<Value>, String) {
    let (mock, url) = mock(delay_ms).await;
    let app = TestApp::spawn_with(
        &config(
            &url,
            &format!("batch_max_requests = 100\nbatch_max_wait_ms = {wait_ms}"),
        ),
        "",
        &[],
    )
    .await;
    let items: Vec<Value> = (0..3)
        .map(|i| case(&format!("{prefix}{i}"), &format!("Drink fluids ({i}).")))
        .collect();
    let (code, job) = app.post("/v1/jobs", &Value::Array(items.clone())).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    (mock, app, items, id)
}

/// Cancelling a job (gRPC `CancelJob`) whose calls sit in a submitted batch asks the provider to cancel
/// that batch (every job in it is cancelled, nobody waits for its entries), so its
/// requests are never answered or billed; the batch ends `cancelled` at the provider and
/// counts as failed for the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_cancels_its_submitted_batch_at_the_provider() {
    // The batch would complete after 20 s; the cancellation must stop it long before.
    let (mock, app, _, id) = batch_job(20_000, 100, "x").await;
    // Wait for the file to be sent and the batch stored.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = app.get(&format!("/v1/jobs/{id}")).await;
        if status["batches"]["submitted"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no batch: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sizes(&mock), [9]);
    // Cancelled over gRPC here (the next test cancels over HTTP): one service call.
    use tribunal::api::grpc::pb;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let cancelled = grpc
        .cancel_job(pb::CancelJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    // `cancelling` until the runner has let go of the items waiting for the batch.
    assert!(
        matches!(cancelled.state.as_str(), "cancelling" | "cancelled"),
        "{cancelled:?}"
    );
    // The next polls see every job of the batch cancelled and cancel it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, status) = app.get(&format!("/v1/jobs/{id}")).await;
        if status["batches"]["failed"] == 1 {
            assert_eq!(status["state"], "cancelled", "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batch still open: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled = mock.batch.lock().unwrap().cancelled.clone();
    assert_eq!(cancelled.len(), 1, "one cancel request: {cancelled:?}");
    let bill = mock.bill();
    assert_eq!(bill.calls, 0, "no entry answered or billed: {bill:?}");
    let (_, judges) = app.get("/v1/judges").await;
    assert_eq!(
        judges["judges"][0]["health"]["batches"]["cancel_requested"], 1,
        "{judges}"
    );
}

/// A job cancelled (HTTP `DELETE /v1/jobs/{id}`) while its calls wait for the next batch file: the file is never
/// sent (the calls' callers are gone), and a running job's batch is never cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_before_its_file_is_sent_submits_nothing() {
    let (mock, app, items, id) = batch_job(200, 1_500, "y").await;
    // Let the calls reach the collector, then cancel well before the 1.5 s file age.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let resp = reqwest::Client::new()
        .delete(format!("{}/v1/jobs/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        sizes(&mock).is_empty(),
        "a file was sent: {:?}",
        sizes(&mock)
    );
    let (_, judges) = app.get("/v1/judges").await;
    let batches = &judges["judges"][0]["health"]["batches"];
    assert_eq!(batches["submitted"], 0, "{judges}");
    assert_eq!(batches["dropped"], 9, "{judges}");

    // A job that is not cancelled still gets its batch, answered in full.
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let done = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!(done["done"], 3, "{done}");
    assert_eq!(sizes(&mock), [9]);
    assert!(mock.batch.lock().unwrap().cancelled.is_empty());
}
