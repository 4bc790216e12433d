//! Judge-path throughput against a local mock OpenAI endpoint. Prints figures; it is
//! not a test and asserts nothing about speed.
//!
//! cargo bench --bench judge_throughput
//!
//! 1. judge calls/s through the full path (render, cache miss, limiter, HTTP, parse,
//!    vote, score) with a zero-latency mock;
//! 2. achieved rate vs the Little's-law bound C/L at C = 256, L = 200 ms;
//! 3. achieved rate vs a configured requests_per_minute limit.
//!
//! cargo bench --bench judge_throughput -- cost
//!
//! Judge cost (issue 13), on the shared HealthBench rows graded per criterion against a
//! mock that bills cached prefixes like OpenAI: cost of tribunal's v2 prompts vs a
//! simple-evals-style prompt, reported cost vs the mock's bill, `--estimate` vs the real
//! run, and the default-flag `tribunal grade` call rate vs a minimal client at the
//! same cap (200 ms latency, max_concurrency 240).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

#[path = "../tests/it/mock_openai.rs"]
#[expect(dead_code, reason = "the bench uses only part of the test mock")]
mod mock_openai;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tribunal::app::LoadConfig as _;
use tribunal::config::Config;
use tribunal::grader::Grader;
use tribunal::item::{Item, parse_item};

use mock_openai::{Reply, met, spawn};

#[path = "judge_throughput/cost.rs"]
mod cost;

fn grader(url: &str, judge_extra: &str) -> Grader {
    let toml = format!(
        "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n{judge_extra}\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\nrequest_timeout_ms = 600000\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, toml).unwrap();
    Grader::from_config(&Config::load(Some(&path), std::iter::empty()).unwrap()).unwrap()
}

fn item(id: usize, criteria: usize) -> Item {
    let cs: Vec<_> = (0..criteria)
        .map(|i| json!({"id": format!("c{i}"), "text": format!("The response covers point {i}."), "points": 5}))
        .collect();
    parse_item(&json!({
        "case_id": format!("case-{id}"),
        "conversation": [{"role": "user", "content": "A question about a symptom."}],
        "response": format!("Response number {id} with some advice."),
        "rubric": {"format": "rubric.v1", "id": "bench", "version": 1, "title": "bench", "criteria": cs}
    }))
    .unwrap()
    .1
}

async fn run(g: Arc<Grader>, items: Vec<Item>, concurrency: usize) -> Duration {
    let started = Instant::now();
    let mut s = futures::stream::iter(items.into_iter().map(|it| {
        let g = Arc::clone(&g);
        async move { g.grade(&it).await.unwrap() }
    }))
    .buffer_unordered(concurrency);
    while s.next().await.is_some() {}
    started.elapsed()
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "cost") {
        cost::main().await;
        return;
    }
    // 1. Zero-latency mock, full path.
    let (mock, url) = spawn(met(true)).await;
    let g = Arc::new(grader(&url, "max_concurrency = 64"));
    let warm: Vec<Item> = (0..20).map(|i| item(1_000_000 + i, 20)).collect();
    run(Arc::clone(&g), warm, 16).await;
    let before = mock.calls();
    let items: Vec<Item> = (0..400).map(|i| item(i, 50)).collect();
    let elapsed = run(Arc::clone(&g), items, 32).await;
    let calls = mock.calls() - before;
    println!(
        "zero-latency mock: {calls} judge calls in {:.2}s = {:.0} calls/s (full path: render, cache miss, limiter, HTTP, parse, vote, score)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64()
    );

    // 2. Little's law: C = 256 in flight, L = 200 ms -> bound 1280 calls/s.
    let (mock, url) = spawn(Reply::Delay(
        Duration::from_millis(200),
        Box::new(met(true)),
    ))
    .await;
    let g = Arc::new(grader(&url, "max_concurrency = 256"));
    let items: Vec<Item> = (0..160).map(|i| item(i, 80)).collect();
    let elapsed = run(Arc::clone(&g), items, 64).await;
    let rate = mock.calls() as f64 / elapsed.as_secs_f64();
    // Steady state: calls that started between 1 s after the first and 1 s before the
    // last, so the ramp-up and the partly filled last wave do not count.
    let times = mock.times.lock().unwrap().clone();
    let (first, last) = (times[0], *times.last().unwrap());
    let window = (last - first).as_secs_f64() - 2.0;
    let inside = times
        .iter()
        .filter(|t| **t >= first + Duration::from_secs(1) && **t <= last - Duration::from_secs(1))
        .count();
    let steady = inside as f64 / window;
    println!(
        "C=256, L=200ms: {} calls in {:.2}s = {rate:.0} calls/s overall ({:.1}% of C/L = 1280/s); steady state {steady:.0} calls/s ({:.1}%)",
        mock.calls(),
        elapsed.as_secs_f64(),
        100.0 * rate / 1280.0,
        100.0 * steady / 1280.0
    );

    // 3. Configured limit: 6000 requests/minute = 100/s, for about 10 s.
    let (mock, url) = spawn(met(true)).await;
    let g = Arc::new(grader(
        &url,
        "requests_per_minute = 6000\nmax_concurrency = 64",
    ));
    let items: Vec<Item> = (0..20).map(|i| item(i, 50)).collect();
    run(Arc::clone(&g), items, 20).await;
    let times = mock.times.lock().unwrap().clone();
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    let achieved = (times.len() - 1) as f64 / span;
    let mut worst_window = 0usize;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(1))
            .count();
        worst_window = worst_window.max(n);
    }
    println!(
        "rpm limit 6000 (100/s): {} calls over {span:.2}s = {achieved:.2}/s = {:.1}% of the limit; busiest 1 s window: {worst_window} calls",
        times.len(),
        100.0 * achieved / 100.0
    );
}
