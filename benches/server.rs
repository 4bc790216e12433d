//! Server benchmarks against the real `tribunal serve` binary on loopback. Prints
//! figures; asserts nothing about speed.
//!
//! cargo bench --bench server            (ITEMS=100000 by default)
//!
//! 1. `POST /v1/grade` requests/s when every verdict is cached (64 concurrent clients
//!    in this process, so client and server share the 2 cores: a lower bound);
//! 2. a job of ITEMS items with a zero-latency simulated committee, submitted as one
//!    streamed NDJSON body: submission and grading rates;
//! 3. on that finished job: job status and job list latency (median, p99), the
//!    results stream over HTTP and over gRPC (MB/s), the summary's time;
//! 4. the server's peak RSS (VmHWM) across all of it.
//!
//! ITEMS=1000000 cargo bench --bench server   (the 1M-item run in BENCHMARKS.md)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

#[path = "../tests/it/spawn.rs"]
mod spawn;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

/// Runs `n` sequential requests; their median and p99 latency.
async fn latencies<F, Fut>(n: usize, mut one: F) -> String
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        one().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    format!(
        "median {:.2} ms, p99 {:.2} ms ({n} requests)",
        ms[n / 2],
        ms[(n * 99) / 100]
    )
}

fn rubric() -> Value {
    json!({"format": "rubric.v1", "id": "fever", "version": 1, "title": "Fever",
    "criteria": [
        {"id": "see-doctor", "text": "Advises seeing a clinician for fever over 3 days.", "points": 7},
        {"id": "fluids", "text": "Recommends fluids.", "points": 3},
        {"id": "antibiotics", "text": "Recommends antibiotics without evaluation.", "points": -6, "veto": true}
    ]})
}

fn item(i: usize) -> Value {
    json!({"case_id": format!("b{i}"), "conversation": [{"role": "user", "content": "I have had a fever of 39C for three days."}],
           "response": format!("Response {i}: please see a doctor and drink fluids."), "rubric": "fever@1"})
}

fn vm(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let items: usize = std::env::var("ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\ndatabase_url = \"sqlite://{}\"\njob_concurrency = 64\nmax_items_per_job = 2000000\n",
            tribunal::config::DEFAULT_CONFIG,
            dir.path().join("bench.db").display()
        ),
    )
    .unwrap();
    let spawn::Server {
        mut child,
        url,
        grpc_url,
    } = spawn::serve(&cfg);
    let pid = child.id();
    let http = reqwest::Client::new();
    http.post(format!("{url}/v1/rubrics"))
        .body(rubric().to_string())
        .send()
        .await
        .unwrap();

    // 1. Cached grade throughput.
    let body = item(0).to_string();
    let r = http
        .post(format!("{url}/v1/grade"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let http = http.clone();
        let url = url.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r = http
                    .post(format!("{url}/v1/grade"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                r.bytes().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "POST /v1/grade, all verdicts cached, 64 clients: {total} requests in {secs:.1}s = {:.0} req/s",
        total as f64 / secs
    );

    // 2. A large job: peak server RSS while it runs.
    let rss_before = vm(pid, "VmRSS:");
    let mut ndjson = String::with_capacity(items * 220);
    for i in 1..=items {
        ndjson.push_str(&item(i).to_string());
        ndjson.push('\n');
    }
    let started = Instant::now();
    let job: Value = http
        .post(format!("{url}/v1/jobs"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job}"))
        .to_owned();
    let submitted = started.elapsed().as_secs_f64();
    let mut peak_rss = 0;
    loop {
        peak_rss = peak_rss.max(vm(pid, "VmRSS:"));
        let j: Value = http
            .get(format!("{url}/v1/jobs/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let hwm = vm(pid, "VmHWM:");
    println!(
        "job of {items} items (3 criteria x 3 sim judges, zero latency): submitted in {submitted:.1}s ({:.0} items/s), done in {secs:.1}s = {:.0} items/s; server RSS before {} MB, peak sampled {} MB, VmHWM {} MB",
        items as f64 / submitted,
        items as f64 / secs,
        rss_before / 1024,
        peak_rss / 1024,
        hwm / 1024
    );

    // 3. Reading the finished job.
    let status = latencies(200, || {
        let http = http.clone();
        let u = format!("{url}/v1/jobs/{id}");
        async move {
            let r = http.get(u).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.unwrap();
        }
    })
    .await;
    println!("GET /v1/jobs/{{id}} on the {items}-item job: {status}");
    let list = latencies(100, || {
        let http = http.clone();
        let u = format!("{url}/v1/jobs?limit=50");
        async move {
            let r = http.get(u).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.bytes().await.unwrap();
        }
    })
    .await;
    println!("GET /v1/jobs?limit=50: {list}");

    let started = Instant::now();
    let mut body = http
        .get(format!("{url}/v1/jobs/{id}/results"))
        .send()
        .await
        .unwrap();
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = body.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(lines, items);
    println!(
        "GET /v1/jobs/{{id}}/results: {lines} lines, {} MB in {secs:.2}s = {:.0} MB/s",
        bytes / 1_000_000,
        bytes as f64 / 1e6 / secs
    );

    let mut grpc = TribunalClient::connect(grpc_url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);
    let started = Instant::now();
    let mut stream = grpc
        .stream_job_results(pb::StreamJobResultsRequest {
            id: id.clone(),
            follow: false,
        })
        .await
        .unwrap()
        .into_inner();
    let (mut bytes, mut n) = (0usize, 0usize);
    while let Some(r) = stream.message().await.unwrap() {
        bytes += r.json.len() + 1;
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(n, items);
    println!(
        "gRPC StreamJobResults: {n} messages, {} MB of report JSON in {secs:.2}s = {:.0} MB/s",
        bytes / 1_000_000,
        bytes as f64 / 1e6 / secs
    );

    let started = Instant::now();
    let r = http
        .get(format!("{url}/v1/jobs/{id}/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.bytes().await.unwrap();
    let served = started.elapsed().as_secs_f64();
    let summary: Value = serde_json::from_slice(&body).unwrap();
    println!(
        "GET /v1/jobs/{{id}}/summary: {served:.2}s to the body's last byte ({} MB), {:.2}s with the client's JSON parse (overall n = {})",
        body.len() / 1_000_000,
        started.elapsed().as_secs_f64(),
        summary["overall"]["n"]
    );
    println!(
        "server VmHWM across submission, grading, results and summary: {} MB",
        vm(pid, "VmHWM:") / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}
