//! Judge failures say why, everywhere (issue 25): an abstention keeps its detail (HTTP
//! status, URL without secrets, the start of the error body, the transport error) in
//! the ballot, the report's `abstentions`, a failed item's message, the rate-limited
//! `warn` log, job status, and `tribunal grade`'s end of run; `grade`'s exit codes;
//! the end of run's order; reports that name their policy and criteria; unpriced
//! cost; `config check --probe` and its price notes.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tribunal::app::LoadConfig as _;
use tribunal::config::Config;
use tribunal::grader::Grader;
use tribunal::item::{Item, parse_item};

use crate::mock_openai::{Reply, met, spawn};
use crate::{root, tribunal};

/// A committee of `good` (the mock's right URL) and `bad` (`bad_url`), quorum 1,
/// one attempt each.
fn grader(good_url: &str, bad_url: &str, extra: &str) -> Grader {
    let toml = format!(
        r#"
[judges.good]
provider = "openai"
base_url = "{good_url}"
model = "mock-model"
timeout_ms = 2000
max_attempts = 1

[judges.bad]
provider = "openai"
base_url = "{bad_url}"
model = "mock-model"
timeout_ms = 2000
max_attempts = 2
backoff_base_ms = 5
backoff_max_ms = 10
{extra}

[committee]
members = ["good", "bad"]
quorum = 1
request_timeout_ms = 20000
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tribunal.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(Some(&path), std::iter::empty()).unwrap();
    Grader::from_config(&cfg).unwrap()
}

fn item(case_id: &str) -> Item {
    parse_item(&json!({
        "case_id": case_id,
        "conversation": [{"role": "user", "content": "Is this safe?"}],
        "response": format!("An answer for {case_id}."),
        "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "R",
            "scoring": {"policy": "weighted"},
            "criteria": [
                {"id": "c0", "text": "Advises seeing a clinician.", "points": 5, "tags": ["axis:accuracy"]},
                {"id": "c1", "text": "Mentions fluids.", "points": 3}
            ]}
    }))
    .unwrap()
    .1
}

/// A `MakeWriter` that keeps every log line in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrong_path_shows_404_and_the_url_in_the_ballot_report_and_log() {
    let (_mock, url) = spawn(met(true)).await;
    // The classic mistake: base_url without `/v1`, here with credentials in the URL
    // that must never be shown.
    let bad = url
        .trim_end_matches("/v1")
        .replacen("http://", "http://user:s3cret@", 1);
    let g = grader(&url, &bad, "");
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut docs = Vec::new();
    for id in ["a1", "a2", "a3"] {
        docs.push(g.grade(&item(id)).await.unwrap().to_json());
    }
    let doc = &docs[0];
    let shown = format!("{}/chat/completions", url.trim_end_matches("/v1"));
    // The ballot.
    let ballot = doc["criteria"][0]["ballots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["judge"] == "bad")
        .unwrap();
    assert_eq!(ballot["abstained"], "client_error", "{ballot}");
    let detail = ballot["abstain_detail"].as_str().unwrap();
    assert!(detail.contains("HTTP 404"), "{detail}");
    assert!(detail.contains(&shown), "{detail}");
    assert!(!detail.contains("s3cret"), "{detail}");
    // The good judge's ballot has no detail at all.
    let good = doc["criteria"][0]["ballots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["judge"] == "good")
        .unwrap();
    assert!(good.get("abstain_detail").is_none(), "{good}");
    // The report's failure list.
    let abst = &doc["abstentions"][0];
    assert_eq!(abst["reason"], "client_error");
    assert!(
        abst["detail"].as_str().unwrap().contains("HTTP 404"),
        "{abst}"
    );
    // The log: one warn line for the judge's first 404, then silence within the
    // minute (six abstentions in all), never the secret.
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("judge abstained"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("WARN"), "{text}");
    assert!(
        lines[0].contains("HTTP 404") && lines[0].contains(&shown),
        "{text}"
    );
    assert!(lines[0].contains("judge=bad"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_port_says_connection_refused() {
    let (_mock, url) = spawn(met(true)).await;
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = format!("http://127.0.0.1:{port}/v1");
    let g = grader(&url, &refused, "");
    let doc = g.grade(&item("p1")).await.unwrap().to_json();
    let abst = doc["abstentions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["judge"] == "bad")
        .unwrap();
    assert_eq!(abst["reason"], "retries_exhausted", "{abst}");
    let detail = abst["detail"].as_str().unwrap().to_lowercase();
    assert!(detail.contains("connection refused"), "{detail}");
    assert!(detail.contains(&format!("127.0.0.1:{port}")), "{detail}");
    assert!(detail.contains("2 attempt(s)"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_quorum_names_each_judges_failure() {
    let (_mock, url) = spawn(Reply::Status(
        401,
        vec![],
        r#"{"error": {"message": "Incorrect API key provided"}}"#.into(),
    ))
    .await;
    let g = grader(&url, &url, "");
    let err = g.grade(&item("q1")).await.unwrap_err().to_string();
    assert!(err.contains("no criterion reached quorum"), "{err}");
    assert!(err.contains("judge good: client_error: HTTP 401"), "{err}");
    assert!(err.contains("Incorrect API key provided"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_name_their_policy_and_criteria_and_unpriced_cost_is_null() {
    let (_mock, url) = spawn(met(true)).await;
    // No price on either judge: the cost is unknown, not zero.
    let g = grader(&url, &url, "");
    let doc = g.grade(&item("r1")).await.unwrap().to_json();
    assert_eq!(doc["policy"], "weighted");
    let c0 = &doc["criteria"][0];
    assert_eq!(c0["id"], "c0");
    assert_eq!(c0["text"], "Advises seeing a clinician.");
    assert_eq!(c0["points"], 5);
    assert_eq!(c0["tier"], Value::Null);
    assert_eq!(c0["tags"], json!(["axis:accuracy"]));
    assert_eq!(doc["usage"]["cost_usd"], Value::Null, "{}", doc["usage"]);
    assert_eq!(doc["usage"]["unpriced"], true);
    // A priced judge: a number, and not unpriced.
    let g = grader(
        &url,
        &url,
        "price_input_per_mtok = 1.0\nprice_output_per_mtok = 1.0\n",
    );
    let priced = g.grade(&item("r2")).await.unwrap().to_json();
    // `good` has no price and still makes calls: unpriced.
    assert_eq!(priced["usage"]["unpriced"], true);
    // The simulated committee is free: 0, not null.
    let cfg = Config::load(None, std::iter::empty()).unwrap();
    let sim = Grader::from_config(&cfg).unwrap();
    let free = sim.grade(&item("r3")).await.unwrap().to_json();
    assert_eq!(free["usage"]["cost_usd"], 0.0, "{}", free["usage"]);
    assert_eq!(free["usage"]["unpriced"], false);
}

/// Writes `toml` as a config file in `dir`.
fn config_file(dir: &std::path::Path, toml: &str) -> String {
    let p = dir.join("tribunal.toml");
    std::fs::write(&p, toml).unwrap();
    p.to_string_lossy().into_owned()
}

fn one_judge(url: &str, extra: &str) -> String {
    format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\nmax_attempts = 1\n{extra}\n[committee]\nmembers = [\"a\"]\nquorum = 1\n"
    )
}

async fn run(args: Vec<String>) -> crate::Run {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        tribunal(&a, &root())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_exit_codes_say_what_happened() {
    let (mock, url) = spawn(met(true)).await;
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("tests/fixtures/grade-small.jsonl");
    let input = input.to_string_lossy().into_owned();
    let out = dir.path().join("out.jsonl").to_string_lossy().into_owned();

    // Every item fails (base_url without /v1): nothing graded, exit 5, and the 404
    // with its URL in the end of run and the failed items' lines.
    let cfg = config_file(
        dir.path(),
        &one_judge(url.trim_end_matches("/v1"), "price_input_per_mtok = 1.0\n"),
    );
    let r = run(vec![
        "grade".into(),
        input.clone(),
        "-c".into(),
        cfg.clone(),
        "-o".into(),
        out.clone(),
        "--format".into(),
        "table".into(),
    ])
    .await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("nothing was graded"), "{}", r.stderr);
    assert!(r.stderr.contains("HTTP 404"), "{}", r.stderr);
    assert!(!r.stderr.contains(" 0 abstained ballots"), "{}", r.stderr);
    assert!(
        r.stdout.contains("abstained 5 x client_error: HTTP 404"),
        "{}",
        r.stdout
    );
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(lines.contains("HTTP 404 from http://"), "{lines}");

    // One call of five fails: that item is excluded (incomplete), exit 4.
    std::fs::remove_file(&out).unwrap();
    mock.push(Reply::Status(400, vec![], r#"{"error": "bad"}"#.into()));
    let cfg = config_file(dir.path(), &one_judge(&url, "price_input_per_mtok = 1.0\n"));
    let r = run(vec![
        "grade".into(),
        input.clone(),
        "-c".into(),
        cfg.clone(),
        "-o".into(),
        out.clone(),
        "--concurrency".into(),
        "1".into(),
    ])
    .await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("excluded because a judge abstained"),
        "{}",
        r.stderr
    );
    // The JSON summary is still written, unchanged in shape.
    let summary: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(summary["excluded"]["incomplete"], 1, "{summary}");

    // Rows without a response: nothing graded, exit 5, and the hint.
    let bare = dir.path().join("bare.jsonl");
    let mut f = std::fs::File::create(&bare).unwrap();
    for l in std::fs::read_to_string(root().join("tests/fixtures/grade-small.jsonl"))
        .unwrap()
        .lines()
    {
        let mut v: Value = serde_json::from_str(l).unwrap();
        v.as_object_mut().unwrap().remove("response");
        writeln!(f, "{v}").unwrap();
    }
    drop(f);
    let r = run(vec!["grade".into(), bare.to_string_lossy().into_owned()]).await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("--use-reference"), "{}", r.stderr);
}

#[test]
fn the_end_of_run_ends_with_the_headline() {
    let dir = tempfile::tempdir().unwrap();
    let input = root().join("tests/fixtures/grade-small.jsonl");
    let table = |extra: &[&str]| {
        let summary = dir.path().join("summary.txt");
        let out = dir.path().join("out.jsonl");
        let _ = std::fs::remove_file(&out);
        let mut args = vec![
            "grade",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--format",
            "table",
        ];
        args.extend_from_slice(extra);
        let r = tribunal(&args, &root());
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::fs::read_to_string(&summary).unwrap()
    };
    let text = table(&[]);
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    assert!(lines[n - 1].starts_with("SIMULATED"), "{text}");
    assert!(
        lines[n - 2].starts_with("overall ") && lines[n - 2].contains("95% CI"),
        "{text}"
    );
    assert!(lines[n - 3].contains("2 included, 0 excluded"), "{text}");
    assert!(
        lines[n - 3].contains("policy healthbench, weighted"),
        "{text}"
    );
    // Per-judge calls and cost (simulated: free) above the headline; no tag rows.
    assert!(text.contains("judge sim-a (sim-a): "), "{text}");
    assert!(text.contains("$0 (simulated)"), "{text}");
    assert!(!text.contains("axis:accuracy"), "{text}");
    assert!(text.contains("--by-tag"), "{text}");
    // --by-tag: the tag rows come first, the headline still last.
    let text = table(&["--by-tag"]);
    let tag = text.find("axis:accuracy").unwrap();
    let overall = text.find("\noverall ").unwrap();
    assert!(tag < overall, "{text}");
    assert!(
        text.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("SIMULATED"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_probes_each_judge_and_notes_prices() {
    let (_mock, url) = spawn(met(true)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &one_judge(
            &url,
            "price_input_per_mtok = 2.0\nprice_output_per_mtok = 8.0\n",
        ),
    );
    let r = run(vec![
        "config".into(),
        "check".into(),
        "-c".into(),
        cfg.clone(),
        "--probe".into(),
    ])
    .await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("probe judge a (model m, at "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(": ok in "), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("cached input is priced at the full input price"),
        "{}",
        r.stdout
    );
    // Without --probe nothing is called and nothing fails.
    let wrong = config_file(dir.path(), &one_judge(url.trim_end_matches("/v1"), ""));
    let r = run(vec![
        "config".into(),
        "check".into(),
        "-c".into(),
        wrong.clone(),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("no price configured"), "{}", r.stdout);
    let r = run(vec![
        "config".into(),
        "check".into(),
        "-c".into(),
        wrong,
        "--probe".into(),
    ])
    .await;
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAILED after"), "{}", r.stdout);
    assert!(r.stdout.contains("HTTP 404 from http://"), "{}", r.stdout);
    assert!(
        r.stderr.contains("1 of 1 judge(s) failed the probe"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_counts_failures_by_reason_with_an_example() {
    let (_mock, url) = spawn(met(true)).await;
    let base = format!(
        "[judges.good]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[judges.bad]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"m\"\n\n[committee]\nmembers = [\"good\", \"bad\"]\nquorum = 1\n",
        url.trim_end_matches("/v1")
    );
    let app = crate::server::TestApp::spawn_with(&base, "", &[]).await;
    let items: Vec<Value> = (0..3)
        .map(|i| crate::server::case(&format!("j{i}"), "Drink fluids and see a doctor."))
        .collect();
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let status = app.wait_job(&id).await;
    assert_eq!(status["simulated"], false, "{status}");
    let f = &status["judge_failures"];
    assert_eq!(f["scanned_items"], 3, "{status}");
    assert_eq!(f["by_reason"]["client_error"], 9, "{status}");
    let example = f["example"].as_str().unwrap();
    assert!(
        example.contains("judge bad") && example.contains("HTTP 404"),
        "{example}"
    );
    // The summary says whether the judges were simulated.
    let (_, summary) = app.get(&format!("/v1/jobs/{id}/summary")).await;
    assert_eq!(summary["job"]["simulated"], false, "{summary}");
    app.running.unwrap().stop().await;
    // The simulated committee says so in status and summary.
    let app = crate::server::TestApp::spawn("").await;
    let (_, job) = app
        .post("/v1/jobs", &json!([crate::server::case("s0", "Fluids.")]))
        .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let status = app.wait_job(&id).await;
    assert_eq!(status["simulated"], true, "{status}");
    assert!(status["judge_failures"].is_null(), "{status}");
    let (_, summary) = app.get(&format!("/v1/jobs/{id}/summary")).await;
    assert_eq!(summary["job"]["simulated"], true, "{summary}");
    app.running.unwrap().stop().await;
}
