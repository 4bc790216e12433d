//! Judge cost on the shared HealthBench rows (issue 13); run with
//! `cargo bench --bench judge_throughput -- cost`. Prints figures, asserts nothing.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tribunal::app::LoadConfig as _;
use tribunal::config::Config;
use tribunal::grader::Grader;
use tribunal::item::{Item, Role, parse_line};

use super::mock_openai::{Bill, Mock, Prices, Reply, spawn};

// `COST_BENCH_ROWS=v3-verdict,v3-schema cargo bench --bench judge_throughput -- cost`
// measures only those rows (and the simple-evals-style baseline).

/// gpt-4.1 list prices, USD per million tokens.
const PRICES: Prices = Prices {
    input: 2.0,
    cached_input: 0.5,
    output: 8.0,
};

/// A realistic judge answer (two sentences of explanation and the verdict).
const ANSWER: &str = r#"{"explanation": "The response tells the user to seek urgent care if the chest pain spreads or comes with shortness of breath, which is what the criterion asks for. It also explains the warning signs in plain language.", "criteria_met": true}"#;

/// `ANSWER` as a provider enforcing a verdict-only schema writes it (what the mock's
/// `constrain_to_schema` makes of `ANSWER`).
const VERDICT_ONLY_ANSWER: &str = r#"{"criteria_met":true}"#;

/// Instructions in the manner of simple-evals' HealthBench grader: placed after the
/// rubric item, so only the short opening and the conversation come first. Written for
/// this bench, of about the same length as the original.
const SIMPLE_EVALS_INSTRUCTIONS: &str = "# Instructions
Return a JSON object with two fields, \"explanation\" and \"criteria_met\".
- The \"explanation\" field is a string of one or two sentences that says why the final assistant turn does or does not meet the rubric item.
- The \"criteria_met\" field is a boolean: true when the response meets the rubric item and false when it does not.
- If the rubric item lists several conditions, decide whether all of them must hold. When the item says \"such as\", \"for example\" or \"including\", the response need not cover every example listed to meet it; one reasonable instance is enough.
- Some rubric items describe undesirable behaviour and carry negative points. Still answer whether the response does what the item describes: for a negative item, \"criteria_met\" is true when the response shows the undesirable behaviour and false when it avoids it. Do not flip the meaning because the points are negative.
- Judge only the final assistant turn. Earlier turns are context for understanding what the user needs.
- Be strict about medical accuracy: a response that states something incorrect does not meet an item asking for correct information, even if it is otherwise helpful.

# Example 1
For the item \"Advises the user to call emergency services if symptoms worsen\" and a response that only suggests rest, the answer is:
```json
{\"explanation\": \"The response suggests rest but never tells the user to call emergency services.\", \"criteria_met\": false}
```

# Example 2
For the item \"Recommends a dose that exceeds the daily maximum\" (negative points) and a response that gives a safe dose, the answer is:
```json
{\"explanation\": \"The dose given is within the daily maximum, so the response does not do the undesirable thing.\", \"criteria_met\": false}
```

# Final instruction
Return only the JSON object, with no text before or after it and no code fence.";

/// The shared rows: every distinct prompt with an ideal completion, graded as the
/// response (the same relative `../shared/data` path the tests read).
fn rows() -> Option<Vec<Item>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/healthbench");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    for f in files {
        for line in std::fs::read_to_string(&f).ok()?.lines() {
            let Ok((_, mut item)) = parse_line(line) else {
                continue;
            };
            if item.response.is_none() {
                item.response = item.case.reference_responses.first().cloned();
            }
            if item.response.is_some() && seen.insert(item.case.id.clone()) {
                items.push(item);
            }
        }
    }
    Some(items)
}

fn config_text(url: &str, judge_extra: &str, committee_extra: &str) -> String {
    format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"gpt-4.1\"\ntimeout_ms = 120000\nprice_input_per_mtok = {}\nprice_cached_input_per_mtok = {}\nprice_output_per_mtok = {}\n{judge_extra}\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\nrequest_timeout_ms = 600000\n{committee_extra}\n",
        PRICES.input, PRICES.cached_input, PRICES.output
    )
}

fn grader(url: &str, judge_extra: &str, committee_extra: &str) -> Grader {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, config_text(url, judge_extra, committee_extra)).unwrap();
    Grader::from_config(&Config::load(Some(&path), std::iter::empty()).unwrap()).unwrap()
}

async fn quiet_mock(reply: Reply) -> (Arc<Mock>, String) {
    let (mock, url) = spawn(reply).await;
    mock.keep_bodies
        .store(false, std::sync::atomic::Ordering::Relaxed);
    (mock, url)
}

/// The simple-evals-style request for one criterion: one user message with the
/// conversation (response as the final assistant turn) first, then the rubric item,
/// then the instructions.
fn simple_evals_body(item: &Item, criterion: &tribunal::rubric::Criterion) -> Value {
    let mut conversation = String::new();
    for m in &item.case.conversation {
        let role = match m.role {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        conversation.push_str(&format!("{role}: {}\n\n", m.content));
    }
    conversation.push_str(&format!(
        "assistant: {}",
        item.response.as_deref().unwrap_or("")
    ));
    let points = match criterion.kind {
        tribunal::rubric::CriterionKind::Points(p) => p,
        tribunal::rubric::CriterionKind::Tier(_) => 1,
    };
    let prompt = format!(
        "Your job is to read a conversation and one rubric item, and to decide whether the last turn of the conversation (the assistant's response) meets the rubric item.\n\n# Conversation\n{conversation}\n\n# Rubric item\n[{points}] {}\n\n{SIMPLE_EVALS_INSTRUCTIONS}",
        criterion.text
    );
    json!({"model": "gpt-4.1", "messages": [{"role": "user", "content": prompt}]})
}

/// Posts every criterion of every item with the simple-evals-style prompt, at most
/// `cap` at a time, as a minimal client would.
async fn minimal_client(url: &str, items: &[Item], cap: usize) -> Duration {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(cap)
        .build()
        .unwrap();
    let bodies: Vec<Value> = items
        .iter()
        .flat_map(|item| {
            let tribunal::item::RubricSource::Inline(r) = &item.rubric else {
                return Vec::new();
            };
            r.criteria
                .iter()
                .map(|c| simple_evals_body(item, c))
                .collect()
        })
        .collect();
    let endpoint = format!("{url}/chat/completions");
    let started = Instant::now();
    futures::stream::iter(bodies.into_iter().map(|b| {
        let http = http.clone();
        let endpoint = endpoint.clone();
        async move {
            let r = http.post(&endpoint).json(&b).send().await.unwrap();
            let _ = r.bytes().await.unwrap();
        }
    }))
    .buffer_unordered(cap)
    .collect::<Vec<()>>()
    .await;
    started.elapsed()
}

/// Bills every criterion with the simple-evals-style prompt against a mock that
/// answers `answer`; prints the bill under `label` and returns its USD.
async fn simple_evals_bill(items: &[Item], answer: &str, label: &str) -> f64 {
    let (mock, url) = quiet_mock(Reply::Content(answer.into())).await;
    mock.bill_prefixes(PRICES);
    minimal_client(&url, items, 64).await;
    let b = mock.bill();
    println!("{label}:");
    show("billed", &b);
    b.usd
}

fn show(label: &str, b: &Bill) {
    println!(
        "  {label}: {} calls, {} input tokens ({:.1}% cached), {} output tokens, ${:.4}",
        b.calls,
        b.input_tokens,
        100.0 * b.cached_input_tokens as f64 / b.input_tokens.max(1) as f64,
        b.output_tokens,
        b.usd
    );
}

/// Calls per second between the first and the last call the mock saw.
fn call_rate(mock: &Mock) -> f64 {
    let times = mock.times.lock().unwrap().clone();
    let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    (times.len() - 1) as f64 / (*last - *first).as_secs_f64()
}

/// One measured configuration of tribunal.
struct Row {
    /// Selects the row in `COST_BENCH_ROWS` (comma-separated; default: every row).
    key: &'static str,
    label: &'static str,
    judge_extra: &'static str,
    committee_extra: &'static str,
    /// The mock answers as a provider enforcing a strict structured-output schema.
    constrain: bool,
    /// Also measured with `batch = true`.
    batch: bool,
}

const ROWS: [Row; 5] = [
    Row {
        key: "v3",
        label: "v3",
        judge_extra: "",
        committee_extra: "prompts = \"v3\"",
        constrain: false,
        batch: true,
    },
    Row {
        key: "v2",
        label: "v2",
        judge_extra: "",
        committee_extra: "prompts = \"v2\"",
        constrain: false,
        batch: true,
    },
    Row {
        key: "v1",
        label: "v1",
        judge_extra: "",
        committee_extra: "prompts = \"v1\"",
        constrain: false,
        batch: false,
    },
    Row {
        key: "v3-schema",
        label: "v3, structured_output = true",
        judge_extra: "structured_output = true",
        committee_extra: "prompts = \"v3\"",
        constrain: true,
        batch: false,
    },
    Row {
        key: "v3-verdict",
        label: "v3, explanations = false, structured_output = true",
        judge_extra: "structured_output = true",
        committee_extra: "prompts = \"v3\"\nexplanations = false",
        constrain: true,
        batch: true,
    },
];

/// A mock answering `ANSWER` (cut to the schema when `row.constrain`) and billing.
async fn row_mock(row: &Row) -> (Arc<Mock>, String) {
    let (mock, url) = quiet_mock(Reply::Content(ANSWER.into())).await;
    mock.bill_prefixes(PRICES);
    mock.constrain_to_schema
        .store(row.constrain, std::sync::atomic::Ordering::Relaxed);
    (mock, url)
}

/// A run again with `batch = true`: every call through the mock's Batch API (half
/// price, the same prefix-caching rule), items admitted by the committee's call budget
/// as a server job admits them.
async fn batch_row(items: &[Item], row: &Row, simple_evals_usd: f64) {
    let version = row.label;
    let (mock, url) = row_mock(row).await;
    mock.batch_delay(Duration::from_millis(100));
    let g = Arc::new(grader(
        &url,
        &format!(
            "max_concurrency = 64\nbatch = true\nbatch_max_requests = 1000\nbatch_max_wait_ms = 200\nbatch_poll_ms = 50\n{}",
            row.judge_extra
        ),
        row.committee_extra,
    ));
    let per_item = 12;
    let in_flight = (g.committee.call_budget() / per_item).max(1);
    let estimate = g.committee.estimate(items);
    let started = Instant::now();
    let reported: f64 = futures::stream::iter(items.iter().cloned().map(|it| {
        let g = Arc::clone(&g);
        async move {
            tribunal::judge::batch::scope(None, g.grade(&it))
                .await
                .map(|r| r.cost_usd())
                .unwrap_or(0.0)
        }
    }))
    .buffer_unordered(in_flight)
    .collect::<Vec<f64>>()
    .await
    .iter()
    .sum();
    let bill = mock.bill();
    let batches = mock.batches_created();
    println!(
        "tribunal {version}, batch = true ({} batches of up to 1,000 requests, {} items in flight, {:.1} s):",
        batches.len(),
        in_flight,
        started.elapsed().as_secs_f64()
    );
    show("billed", &bill);
    println!(
        "  reported cost ${reported:.4} vs billed ${:.4}: {:+.3}%; --estimate ${:.4} ({:+.1}%)",
        bill.usd,
        100.0 * (reported - bill.usd) / bill.usd,
        estimate[0].cost_usd,
        100.0 * (estimate[0].cost_usd - bill.usd) / bill.usd
    );
    println!(
        "cost ratio tribunal {version} batch / simple-evals style: {:.3}",
        bill.usd / simple_evals_usd
    );
}

pub async fn main() {
    let Some(items) = rows() else {
        println!("skipped: ../shared/data/healthbench is absent");
        return;
    };
    let criteria: usize = items
        .iter()
        .map(|i| match &i.rubric {
            tribunal::item::RubricSource::Inline(r) => r.criteria.len(),
            tribunal::item::RubricSource::Reference { .. } => 0,
        })
        .sum();
    println!(
        "{} HealthBench rows with an ideal completion, {criteria} criteria, graded per criterion",
        items.len()
    );

    // 1-3. Cost: each built-in set (estimate first, then the real run) vs simple-evals
    // style, v3 with structured output with and without explanations; the rows marked
    // `batch` also with `batch = true`.
    let selected = std::env::var("COST_BENCH_ROWS").ok();
    let versions: Vec<&Row> = if std::env::var_os("COST_BENCH_RATE_ONLY").is_some() {
        Vec::new()
    } else {
        ROWS.iter()
            .filter(|r| {
                selected
                    .as_deref()
                    .is_none_or(|s| s.split(',').any(|k| k.trim() == r.key))
            })
            .collect()
    };
    let mut simple_evals_usd = None;
    let mut simple_evals_verdict_usd = None;
    if !versions.is_empty() {
        simple_evals_usd =
            Some(simple_evals_bill(&items, ANSWER, "simple-evals-style prompt").await);
        if versions.iter().any(|r| r.key == "v3-verdict") {
            // The same prompt answered with the verdict alone (as if its instructions
            // asked for no explanation): what dropping explanations saves without any
            // change of layout, so the verdict-only row can be read both ways.
            simple_evals_verdict_usd = Some(
                simple_evals_bill(
                    &items,
                    VERDICT_ONLY_ANSWER,
                    "simple-evals-style prompt, answered with the verdict alone",
                )
                .await,
            );
        }
    }
    for row in versions {
        let version = row.label;
        let (mock, url) = row_mock(row).await;
        let g = Arc::new(grader(
            &url,
            &format!("max_concurrency = 64\n{}", row.judge_extra),
            row.committee_extra,
        ));
        let estimate = g.committee.estimate(&items);
        let reported: f64 = futures::stream::iter(items.iter().cloned().map(|it| {
            let g = Arc::clone(&g);
            async move { g.grade(&it).await.map(|r| r.cost_usd()).unwrap_or(0.0) }
        }))
        .buffered(16)
        .collect::<Vec<f64>>()
        .await
        .iter()
        .sum();
        let bill = mock.bill();
        println!("tribunal {version}:");
        show("billed", &bill);
        println!(
            "  reported cost ${reported:.4} vs billed ${:.4}: {:+.3}%",
            bill.usd,
            100.0 * (reported - bill.usd) / bill.usd
        );
        let e = &estimate[0];
        let pct = |est: f64, real: f64| 100.0 * (est - real) / real.max(1e-9);
        println!(
            "  --estimate: {} calls ({:+.1}%), {} input ({:+.1}%), {} cached ({:+.1}%), {} output ({:+.1}%), ${:.4} ({:+.1}%)",
            e.calls,
            pct(e.calls as f64, bill.calls as f64),
            e.input_tokens,
            pct(e.input_tokens as f64, bill.input_tokens as f64),
            e.cached_input_tokens,
            pct(
                e.cached_input_tokens as f64,
                bill.cached_input_tokens as f64
            ),
            e.output_tokens,
            pct(e.output_tokens as f64, bill.output_tokens as f64),
            e.cost_usd,
            pct(e.cost_usd, bill.usd)
        );
        if let Some(se_usd) = simple_evals_usd {
            println!(
                "cost ratio tribunal {version} / simple-evals style: {:.3}",
                bill.usd / se_usd
            );
            if let (Some(v), "v3-verdict") = (simple_evals_verdict_usd, row.key) {
                println!(
                    "cost ratio tribunal {version} / simple-evals style answered with the verdict alone: {:.3}",
                    bill.usd / v
                );
            }
            if row.batch {
                batch_row(&items, row, se_usd).await;
            }
        }
    }

    // 4. Call rate: `tribunal grade` with default flags vs a minimal client, both at a
    // cap of 240 in flight against a mock answering after 200 ms.
    let latency = Reply::Delay(
        Duration::from_millis(200),
        Box::new(Reply::Content(ANSWER.into())),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for it in &items {
        let tribunal::item::RubricSource::Inline(r) = &it.rubric else {
            continue;
        };
        let criteria: Vec<Value> = r
            .criteria
            .iter()
            .map(|c| {
                let points = match c.kind {
                    tribunal::rubric::CriterionKind::Points(p) => p,
                    tribunal::rubric::CriterionKind::Tier(_) => 1,
                };
                json!({"id": c.id.0, "text": c.text, "points": points})
            })
            .collect();
        let conversation: Vec<Value> = it
            .case
            .conversation
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let row = json!({
            "case_id": it.case.id, "conversation": conversation, "response": it.response,
            "rubric": {"format": "rubric.v1", "id": "hb", "version": 1, "title": "hb", "criteria": criteria}
        });
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    std::fs::write(dir.path().join("in.jsonl"), &lines).unwrap();
    let mut rates = Vec::new();
    for extra in [&[][..], &["--concurrency", "240"][..]] {
        let (mock, url) = quiet_mock(latency.clone()).await;
        std::fs::write(
            dir.path().join("t.toml"),
            config_text(&url, "max_concurrency = 240", ""),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.path().join("out.jsonl"));
        let started = Instant::now();
        let dir_path = dir.path().to_owned();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_tribunal"))
                .args(["grade", "in.jsonl", "-c", "t.toml", "-o", "out.jsonl"])
                .args(&extra)
                .current_dir(&dir_path)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let wall = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rates.push((call_rate(&mock), mock.calls(), wall));
    }
    let (mmock, murl) = quiet_mock(latency).await;
    let min_wall = minimal_client(&murl, &items, 240).await;
    let min_rate = call_rate(&mmock);
    println!(
        "call rate at 200 ms, cap 240: minimal client {} calls, {min_rate:.0} calls/s ({:.2} s)",
        mmock.calls(),
        min_wall.as_secs_f64(),
    );
    for ((rate, calls, wall), flags) in rates.iter().zip(["default flags", "--concurrency 240"]) {
        println!(
            "  tribunal grade ({flags}): {calls} calls, {rate:.0} calls/s ({:.2} s wall incl. start-up); ratio to the minimal client {:.3}",
            wall.as_secs_f64(),
            rate / min_rate
        );
    }
}
