//! Judge cost (issue 13): cached and reasoning tokens read from the provider's usage,
//! billed at the judge's cached price, summed into ballots and reports; v2 prompts
//! sharing a prefix the mock's OpenAI-style cache bills as cached.

use serde_json::json;
use tribunal::app::LoadConfig as _;
use tribunal::config::Config;
use tribunal::grader::Grader;
use tribunal::item::{Item, parse_item};

use crate::mock_openai::{Prices, Reply, met, spawn};

/// USD per million tokens, gpt-4.1's list prices.
const PRICES: Prices = Prices {
    input: 2.0,
    cached_input: 0.5,
    output: 8.0,
};

fn grader(base_url: &str, committee_extra: &str) -> Grader {
    grader_with(base_url, "", committee_extra)
}

fn grader_with(base_url: &str, judge_extra: &str, committee_extra: &str) -> Grader {
    let toml = format!(
        r#"
[judges.a]
provider = "openai"
base_url = "{base_url}"
model = "mock-model"
timeout_ms = 5000
price_input_per_mtok = {}
price_cached_input_per_mtok = {}
price_output_per_mtok = {}
{judge_extra}

[committee]
members = ["a"]
quorum = 1
request_timeout_ms = 20000
{committee_extra}
"#,
        PRICES.input, PRICES.cached_input, PRICES.output
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tribunal.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = Config::load(Some(&path), std::iter::empty()).unwrap();
    Grader::from_config(&cfg).unwrap()
}

/// An item whose conversation is long enough (well over 1,024 tokens) for a prefix cache.
fn long_item(id: &str, n_criteria: usize) -> Item {
    let question = "My father is 72 and has had a cough for three weeks, with some fever at night and less appetite. ".repeat(60);
    let criteria: Vec<_> = (0..n_criteria)
        .map(|i| json!({"id": format!("c{i}"), "text": format!("Advises point number {i} clearly."), "points": 5}))
        .collect();
    parse_item(&json!({
        "case_id": id,
        "conversation": [{"role": "user", "content": question}],
        "response": format!("He should see a doctor this week ({id}); go to urgent care if breathing gets hard."),
        "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t", "criteria": criteria}
    }))
    .unwrap()
    .1
}

#[tokio::test]
async fn cached_and_reasoning_tokens_are_read_and_billed_at_their_prices() {
    let (mock, url) = spawn(met(true)).await;
    *mock.usage.lock().unwrap() = Some(json!({
        "prompt_tokens": 2000, "completion_tokens": 50, "total_tokens": 2050,
        "prompt_tokens_details": {"cached_tokens": 1536},
        "completion_tokens_details": {"reasoning_tokens": 20}
    }));
    let g = grader(&url, "");
    let report = g.grade(&long_item("one", 1)).await.unwrap();
    let b = &report.criteria[0].ballots[0];
    assert_eq!(
        (
            b.input_tokens,
            b.cached_input_tokens,
            b.output_tokens,
            b.reasoning_tokens
        ),
        (2000, 1536, 50, 20)
    );
    let expected = (464.0 * 2.0 + 1536.0 * 0.5 + 50.0 * 8.0) / 1e6;
    assert!((b.cost_usd - expected).abs() < 1e-12, "{}", b.cost_usd);
    let doc = report.to_json();
    assert_eq!(doc["usage"]["cached_input_tokens"], 1536);
    assert_eq!(doc["usage"]["reasoning_tokens"], 20);
    assert_eq!(
        doc["criteria"][0]["ballots"][0]["cached_input_tokens"],
        1536
    );
    // The judge's counters and the tokens metric by direction carry them too.
    let stats = &g.committee.members[0].client.stats;
    assert_eq!(
        stats
            .cached_input_tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        1536
    );
    let metrics = tribunal::metrics::render();
    for direction in ["input", "cached_input", "output", "reasoning"] {
        let needle = format!("direction=\"{direction}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("tribunal_judge_tokens_total") && l.contains(&needle)),
            "no {direction} tokens in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn without_a_cached_price_cached_tokens_cost_the_input_price() {
    let (mock, url) = spawn(met(true)).await;
    *mock.usage.lock().unwrap() = Some(json!({
        "prompt_tokens": 2000, "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 1536}
    }));
    let toml = format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\nprice_input_per_mtok = 2.0\nprice_output_per_mtok = 8.0\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).unwrap();
    let g = Grader::from_config(&Config::load(Some(&path), std::iter::empty()).unwrap()).unwrap();
    let report = g.grade(&long_item("one", 1)).await.unwrap();
    let expected = (2000.0 * 2.0 + 50.0 * 8.0) / 1e6;
    assert!((report.cost_usd() - expected).abs() < 1e-12);
}

#[tokio::test]
async fn cache_laid_out_prompts_are_billed_as_cached_and_the_reported_cost_is_the_bill() {
    for (version, mode) in [
        ("v1", "per_criterion"),
        ("v2", "per_criterion"),
        ("v2", "batched"),
        ("v3", "per_criterion"),
        ("v3", "batched"),
    ] {
        let reply = if mode == "batched" {
            let results: Vec<_> = (0..6)
                .map(|i| json!({"id": format!("c{i}"), "explanation": "ok", "criteria_met": true}))
                .collect();
            Reply::Content(json!({ "results": results }).to_string())
        } else {
            met(true)
        };
        let (mock, url) = spawn(reply).await;
        mock.bill_prefixes(PRICES);
        let g = grader(
            &url,
            &format!("prompts = \"{version}\"\nprompt_mode = \"{mode}\""),
        );
        let mut reported = 0.0;
        let mut cached = 0;
        for id in ["a", "b"] {
            let r = g.grade(&long_item(id, 6)).await.unwrap();
            reported += r.cost_usd();
            cached += r.to_doc().usage.cached_input_tokens;
        }
        let bill = mock.bill();
        assert!(bill.calls > 0);
        assert_eq!(cached, bill.cached_input_tokens, "{version} {mode}");
        assert!(
            (reported - bill.usd).abs() <= bill.usd * 1e-9,
            "{version} {mode}: reported {reported} vs billed {}",
            bill.usd
        );
        match mode {
            // Per criterion, every call after an item's first reuses its prefix: the
            // nonce is per item, so under v1 (nonce in the system message) too.
            "per_criterion" => {
                assert!(
                    bill.cached_input_tokens * 10 > bill.input_tokens * 6,
                    "{version}: {bill:?}"
                );
                let uncached = (bill.input_tokens as f64 * PRICES.input
                    + bill.output_tokens as f64 * PRICES.output)
                    / 1e6;
                assert!(
                    bill.usd < 0.6 * uncached,
                    "{version}: {bill:?} vs {uncached}"
                );
            }
            // Batched sends one call per item. Under v1 the system message holds the
            // nonce, so the two items share nothing; the v2 and v3 static system message
            // (with its worked examples, past the 1,024-token minimum) is cached on the
            // second item.
            _ => {
                assert_eq!(bill.calls, 2);
                if version == "v1" {
                    assert_eq!(bill.cached_input_tokens, 0);
                } else {
                    assert!(bill.cached_input_tokens >= 1024, "{version}: {bill:?}");
                }
            }
        }
    }
}

/// An estimate within 20% of what the mock billed.
fn assert_near(context: &str, what: &str, estimated: f64, billed: f64) {
    assert!(
        (estimated - billed).abs() <= 0.2 * billed,
        "{what}: estimated {estimated} vs billed {billed}\n{context}"
    );
}

/// Three long items with six criteria each, one of them twice (a verdict-cache
/// repeat: same conversation, response and criteria under another case id).
fn repeat_items() -> Vec<serde_json::Value> {
    ["a", "b", "c", "a"]
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let item = long_item(id, 6);
            json!({
                "case_id": format!("{id}-{n}"),
                "conversation": [{"role": "user", "content": item.case.conversation[0].content}],
                "response": item.response,
                "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t",
                           "criteria": (0..6).map(|i| json!({"id": format!("c{i}"), "text": format!("Advises point number {i} clearly."), "points": 5})).collect::<Vec<_>>()}
            })
        })
        .collect()
}

/// Writes a JSONL input of `n` one-criterion items and a config for the mock at `url`.
fn grade_inputs(dir: &std::path::Path, url: &str, n: usize, judge_extra: &str) {
    let mut lines = String::new();
    for i in 0..n {
        let row = json!({
            "case_id": format!("case-{i}"),
            "conversation": [{"role": "user", "content": format!("Question {i}?")}],
            "response": format!("Answer {i}."),
            "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t",
                       "criteria": [{"id": "c0", "text": "Answers.", "points": 5}]}
        });
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.join("in.jsonl"), lines).unwrap();
    std::fs::write(
        dir.join("t.toml"),
        format!(
            "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\nprice_input_per_mtok = 2.0\nprice_cached_input_per_mtok = 0.5\nprice_output_per_mtok = 8.0\n{judge_extra}\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grade_keeps_input_order_without_a_slow_item_holding_back_the_rest() {
    let (mock, url) = spawn(met(true)).await;
    // The first call is slow; by default the other items are admitted and answered
    // meanwhile (the judge has 4 permits), and the output still follows input order.
    mock.push(Reply::Delay(
        std::time::Duration::from_millis(1500),
        Box::new(met(false)),
    ));
    let dir = tempfile::tempdir().unwrap();
    grade_inputs(dir.path(), &url, 20, "max_concurrency = 4");
    let path = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        crate::tribunal(
            &["grade", "in.jsonl", "-c", "t.toml", "-o", "out.jsonl"],
            &path,
        )
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["case_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("case-{i}")).collect();
    assert_eq!(ids, expected);
    let times = mock.times.lock().unwrap().clone();
    assert_eq!(times.len(), 20);
    let last = *times.iter().max().unwrap();
    assert!(
        last - times[0] < std::time::Duration::from_millis(1500),
        "the other 19 calls waited for the slow first one: {:?}",
        last - times[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_calls_no_judge_and_predicts_the_real_run() {
    let (mock, url) = spawn(met(true)).await;
    mock.bill_prefixes(PRICES);
    let dir = tempfile::tempdir().unwrap();
    grade_inputs(dir.path(), &url, 1, "");
    let lines: String = repeat_items().iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), lines).unwrap();
    let path = dir.path().to_owned();
    let est = tokio::task::spawn_blocking(move || {
        crate::tribunal(&["grade", "in.jsonl", "-c", "t.toml", "--estimate"], &path)
    })
    .await
    .unwrap();
    assert_eq!(est.code, 0, "{}", est.stderr);
    assert_eq!(mock.calls(), 0, "an estimate never calls a judge");
    let est: serde_json::Value = serde_json::from_str(&est.stdout).unwrap();
    let judge = &est["judges"][0];
    assert_eq!(judge["calls"], 18);
    assert_eq!(judge["cache_hits"], 6);
    assert_eq!(judge["prefix_cache"], true);

    let path = dir.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        crate::tribunal(
            &["grade", "in.jsonl", "-c", "t.toml", "-o", "out.jsonl"],
            &path,
        )
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bill = mock.bill();
    assert_eq!(bill.calls, 18);
    let context = format!("{est:#}\n{bill:?}");
    assert_near(
        &context,
        "input tokens",
        judge["input_tokens"].as_f64().unwrap(),
        bill.input_tokens as f64,
    );
    assert_near(
        &context,
        "cached input tokens",
        judge["cached_input_tokens"].as_f64().unwrap(),
        bill.cached_input_tokens as f64,
    );
    println!("estimate {est:#}\nbill {bill:?}");
}

/// A server job with one mock judge of `max_concurrency = 64` and 300 ms latency:
/// with default flags the items are admitted by the judges' call budget, so the judge
/// gets all 64 of its permits at once (the old fixed default let 32 items run per job),
/// and the 300 items (more than one store page of 256) never wait for a page's
/// slowest item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_jobs_fill_the_judges_permits_by_default() {
    let (mock, url) = spawn(Reply::Delay(
        std::time::Duration::from_millis(300),
        Box::new(met(true)),
    ))
    .await;
    mock.keep_bodies
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let config = format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\nmax_concurrency = 64\ntimeout_ms = 20000\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\nrequest_timeout_ms = 60000\n"
    );
    let app = crate::server::TestApp::spawn_with(&config, "", &[]).await;
    let items: Vec<serde_json::Value> = (0..300)
        .map(|i| {
            json!({
                "case_id": format!("case-{i}"),
                "conversation": [{"role": "user", "content": format!("Question {i}?")}],
                "response": format!("Answer {i}."),
                "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t",
                           "criteria": [{"id": "c0", "text": "Answers.", "points": 5}]}
            })
        })
        .collect();
    let (code, job) = app.post("/v1/jobs", &serde_json::Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let status = app.wait_job(job["id"].as_str().unwrap()).await;
    assert_eq!(status["done"], 300, "{status}");
    let mut times = mock.times.lock().unwrap().clone();
    times.sort();
    assert_eq!(times.len(), 300);
    // Calls arriving before the first answer can have come back: every permit was
    // handed out at once, not the 32 a fixed item cap would allow.
    let first_wave = times
        .iter()
        .filter(|t| **t - times[0] < std::time::Duration::from_millis(250))
        .count();
    assert!(
        first_wave >= 60,
        "only {first_wave} calls in the first wave"
    );
    // 300 calls through 64 permits at 300 ms take five waves; a runner that waited at
    // the page boundary for the slowest of the first 256 would add one more.
    let span = *times.last().unwrap() - times[0];
    assert!(
        span < std::time::Duration::from_millis(300 * 5 + 250),
        "calls spread over {span:?}"
    );
}

/// `POST /v1/jobs?dry_run=true` and gRPC `EstimateJob`: the items are validated like a
/// submission, nothing is stored, no judge is called, and the figures are those of
/// `tribunal grade --estimate` on the same items (the same committee estimate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_estimates_a_job_without_storing_it_or_calling_a_judge() {
    use tribunal::api::grpc::pb;
    let (mock, url) = spawn(met(true)).await;
    let dir = tempfile::tempdir().unwrap();
    grade_inputs(dir.path(), &url, 1, "");
    let items = repeat_items();
    let lines: String = items.iter().map(|i| format!("{i}\n")).collect();
    std::fs::write(dir.path().join("in.jsonl"), &lines).unwrap();
    let path = dir.path().to_owned();
    let cli = tokio::task::spawn_blocking(move || {
        crate::tribunal(&["grade", "in.jsonl", "-c", "t.toml", "--estimate"], &path)
    })
    .await
    .unwrap();
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let cli: serde_json::Value = serde_json::from_str(&cli.stdout).unwrap();

    let config = std::fs::read_to_string(dir.path().join("t.toml")).unwrap();
    let app = crate::server::TestApp::spawn_with(&config, "", &[]).await;
    let (code, http) = app
        .post(
            "/v1/jobs?dry_run=true",
            &serde_json::Value::Array(items.clone()),
        )
        .await;
    assert_eq!(code, 200, "{http}");
    assert_eq!(http["items"], 4, "{http}");
    assert_eq!(http["calls"], 18, "{http}");
    let judge = &http["judges"][0];
    for field in [
        "judge",
        "calls",
        "cache_hits",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "prefix_cache",
        "batch",
    ] {
        assert_eq!(
            judge[field], cli["judges"][0][field],
            "{field}: {http} vs {cli}"
        );
    }
    let (cost, cli_cost) = (
        judge["cost_usd"].as_f64().unwrap(),
        cli["judges"][0]["cost_usd"].as_f64().unwrap(),
    );
    assert!(
        cost > 0.0 && (cost - cli_cost).abs() < 1e-9,
        "{cost} vs {cli_cost}"
    );
    assert!(
        http["method"].as_str().unwrap().contains("verdict cache"),
        "{http}"
    );

    // NDJSON bodies are estimated the same way.
    let r = app
        .http
        .post(format!("{}/v1/jobs?dry_run=true", app.url))
        .header("content-type", "application/x-ndjson")
        .body(lines.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ndjson: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ndjson, http);

    // gRPC answers the same document.
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let doc = grpc
        .estimate_job(pb::SubmitJobRequest {
            items_json: items.iter().map(|i| i.to_string()).collect(),
            seed: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&doc.json).unwrap();
    assert_eq!(doc, http);

    // Nothing was stored and no judge was called.
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 0, "{list}");
    assert_eq!(mock.calls(), 0);

    // An invalid item fails the dry run as it fails a submission, naming the field.
    let mut bad = items.clone();
    bad[1].as_object_mut().unwrap().remove("response");
    let (code, err) = app
        .post(
            "/v1/jobs?dry_run=true",
            &serde_json::Value::Array(bad.clone()),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert!(err.to_string().contains("items[1].response"), "{err}");
    let e = grpc
        .estimate_job(pb::SubmitJobRequest {
            items_json: bad.iter().map(|i| i.to_string()).collect(),
            seed: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
}

/// A server job's status carries its cached input tokens (and reasoning tokens) like
/// its input tokens: against the mock that bills cached prefixes, the job's
/// `cached_input_tokens` is what the mock billed as cached, the sum over its results'
/// report usage, and the same over HTTP (one job and the listing), gRPC (`GetJob` and
/// `ListJobs`) and the UI's job page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_status_counts_the_cached_input_tokens_the_provider_billed() {
    use tribunal::api::grpc::pb;
    let (mock, url) = spawn(met(true)).await;
    mock.bill_prefixes(PRICES);
    let config = format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\ntimeout_ms = 5000\nprice_input_per_mtok = {}\nprice_cached_input_per_mtok = {}\nprice_output_per_mtok = {}\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\nrequest_timeout_ms = 20000\n",
        PRICES.input, PRICES.cached_input, PRICES.output
    );
    let app = crate::server::TestApp::spawn_with(&config, "", &[]).await;
    // Three distinct long items (no verdict-cache repeats), six criteria each: every
    // call after an item's first shares its conversation prefix.
    let items: Vec<serde_json::Value> = repeat_items().into_iter().take(3).collect();
    let (code, job) = app.post("/v1/jobs", &serde_json::Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let status = app.wait_job(&id).await;
    assert_eq!(status["done"], 3, "{status}");

    let bill = mock.bill();
    assert_eq!(bill.calls, 18, "{bill:?}");
    let cached = status["cached_input_tokens"].as_u64().unwrap();
    assert!(cached > 0, "{status}\n{bill:?}");
    assert_eq!(cached, bill.cached_input_tokens, "{status}\n{bill:?}");
    assert_eq!(status["input_tokens"], bill.input_tokens, "{status}");
    let counted = status["cost_usd"].as_f64().unwrap();
    assert!(
        (counted - bill.usd).abs() <= bill.usd * 1e-9,
        "job cost {counted} vs billed {}",
        bill.usd
    );
    // The counters are the sums over the job's results, the new ones included.
    let results = crate::server::all_results(&app.http, &app.url, &id).await;
    crate::server::assert_counters_match(&status, &results);
    let sum = |k: &str| -> u64 {
        results
            .iter()
            .map(|r| r["usage"][k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(cached, sum("cached_input_tokens"));
    assert_eq!(status["reasoning_tokens"], sum("reasoning_tokens"));

    // The listing reads the same row.
    let (_, list) = app.get("/v1/jobs").await;
    let listed = &list["jobs"][0];
    assert_eq!(listed["id"], id.as_str(), "{list}");
    assert_eq!(listed["cached_input_tokens"], cached, "{list}");

    // gRPC's Job message carries the same figures.
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let got = grpc
        .get_job(pb::GetJobRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            got.cached_input_tokens,
            got.reasoning_tokens,
            got.input_tokens
        ),
        (
            cached,
            status["reasoning_tokens"].as_u64().unwrap(),
            bill.input_tokens
        )
    );
    let page = grpc
        .list_jobs(pb::ListJobsRequest {
            limit: 10,
            after: String::new(),
            owner: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.jobs[0].cached_input_tokens, cached);

    // The UI's job page shows it next to the input tokens.
    let mut ui = crate::ui::Client::new(&app.url);
    let r = ui.get(&format!("/ui/jobs/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = format!("<span id=\"job-cached\">{cached}</span> cached");
    assert!(r.body.contains(&shown), "no {shown:?} in {}", r.body);
}

/// `committee.explanations = false` with structured output, against a mock that answers
/// as a provider enforcing the schema does: the schema holds the verdict field alone,
/// the system message asks for nothing else, the judge's (constrained) answer is a few
/// tokens, the verdicts are the same as with explanations, the reported cost is the
/// bill, and the estimate expects the short answers and counts the schema it sends.
#[tokio::test]
async fn verdict_only_answers_cost_a_few_output_tokens_and_grade_the_same() {
    // Two sentences of explanation and the verdict: 60 of the mock's tokens, the
    // estimate's assumption.
    let answer = r#"{"explanation": "The response tells the user to seek urgent care if the chest pain spreads or comes with shortness of breath, which is what the criterion asks for. It also explains the warning signs in plain language.", "criteria_met": true}"#;
    let mut runs = Vec::new();
    for explanations in [true, false] {
        let (mock, url) = spawn(Reply::Content(answer.into())).await;
        mock.bill_prefixes(PRICES);
        mock.constrain_to_schema
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let g = grader_with(
            &url,
            "structured_output = true",
            &format!("explanations = {explanations}"),
        );
        let items = [long_item("a", 6), long_item("b", 6)];
        let estimate = g.committee.estimate(&items);
        let mut docs = Vec::new();
        for item in &items {
            docs.push(g.grade(item).await.unwrap().to_doc());
        }
        let bill = mock.bill();
        assert_eq!(bill.calls, 12);
        let reported: f64 = docs
            .iter()
            .map(|d| d.usage.cost_usd.unwrap_or_default())
            .sum();
        assert!(
            (reported - bill.usd).abs() <= bill.usd * 1e-9,
            "explanations = {explanations}: reported {reported} vs billed {}",
            bill.usd
        );
        for body in mock.bodies.lock().unwrap().iter() {
            let schema = &body["response_format"]["json_schema"]["schema"];
            let system = body["messages"][0]["content"].as_str().unwrap();
            assert_eq!(
                schema["properties"].get("explanation").is_some(),
                explanations,
                "{schema}"
            );
            assert_eq!(system.contains("\"explanation\""), explanations);
        }
        for d in &docs {
            assert!(!d.degraded);
            for c in &d.criteria {
                assert_eq!(c.verdict, Some(tribunal::rubric::Verdict::Met(true)));
                assert_eq!(c.ballots[0].explanation.is_empty(), !explanations);
            }
        }
        let e = &estimate[0];
        assert_eq!(e.calls, 12);
        let per_answer = if explanations { 60 } else { 8 };
        assert_eq!(e.output_tokens, 12 * per_answer);
        let context = format!("explanations = {explanations}");
        assert_near(
            &context,
            "input tokens",
            e.input_tokens as f64,
            bill.input_tokens as f64,
        );
        assert_near(
            &context,
            "output tokens",
            e.output_tokens as f64,
            bill.output_tokens as f64,
        );
        assert_near(&context, "cost", e.cost_usd, bill.usd);
        runs.push(bill);
    }
    let (explained, terse) = (runs[0], runs[1]);
    // The constrained answer is `{"criteria_met":true}`: 9 of the mock's tokens.
    assert_eq!(terse.output_tokens, 12 * 9);
    assert_eq!(explained.output_tokens, 12 * 60);
    assert!(terse.usd < explained.usd, "{terse:?} vs {explained:?}");
}
