//! Label writes on a large calibration set, against the real `tribunal serve` binary
//! on loopback (keyless: the caller is the local admin; temp SQLite). Prints figures;
//! asserts only that every write answers 200.
//!
//! cargo bench --bench labels                 (ITEMS=40000, WRITES=20)
//! TRIBUNAL_BIN=/path/to/tribunal cargo bench --bench labels   (another build)
//!
//! 1. uploads a set of ITEMS items (~650 bytes each with its labels: 26 MB of JSONL
//!    at 40,000 items; three human raters and one judge label every item) and a
//!    10-item set;
//! 2. times WRITES sequential one-label writes to the large set;
//! 3. times WRITES one-label writes to the small set alone, then again while three
//!    writers keep writing labels to the large set.
//!
//! Times are taken by the client around each request: server time plus one loopback
//! round trip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

#[path = "../tests/it/spawn.rs"]
mod spawn;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

fn set_text(name: &str, n: usize) -> String {
    let mut lines = vec![
        json!({"format": "calibration.v1", "name": name, "scale": "nominal",
            "categories": ["false", "true"], "met": "true"})
        .to_string(),
    ];
    for i in 0..n {
        let labels: Vec<Value> = ["nurse", "doctor", "resident"]
            .iter()
            .enumerate()
            .map(|(r, rater)| json!({"rater": rater, "kind": "human", "value": (i + r) % 3 != 0}))
            .chain(std::iter::once(
                json!({"rater": "judge-gpt", "kind": "judge", "value": i % 4 != 3}),
            ))
            .collect();
        lines.push(
            json!({"id": format!("x{i}"), "category": "triage",
                "case": format!("Question {i}: I have had a headache for two days and it gets worse in the evening. I took paracetamol twice. What should I do?"),
                "response": format!("Answer {i}: rest, drink fluids, and see a doctor if it gets worse, if you have a fever, a stiff neck, or any change in vision or speech; in an emergency call your local number."),
                "criterion": format!("Advises seeing a doctor when warning signs appear (criterion {}).", i % 25),
                "labels": labels})
            .to_string(),
        );
    }
    lines.join("\n")
}

/// Median and p95 of `ms`, sorted in place.
fn figures(ms: &mut [f64]) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    (ms[n / 2], ms[((n * 95) / 100).min(n - 1)])
}

async fn write(http: &reqwest::Client, url: &str, set: &str, item: usize, value: bool) -> f64 {
    let t = Instant::now();
    let r = http
        .post(format!("{url}/v1/calibration/sets/{set}/labels"))
        .header("content-type", "application/json")
        .body(
            json!({"labels": [{"item": format!("x{item}"), "rater": "local", "kind": "human", "value": value}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    t.elapsed().as_secs_f64() * 1000.0
}

async fn upload(http: &reqwest::Client, url: &str, name: &str, n: usize) -> String {
    let r = http
        .post(format!("{url}/v1/calibration/sets"))
        .header("content-type", "application/json")
        .body(json!({"content": set_text(name, n)}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let set: Value = r.json().await.unwrap();
    set["id"].as_str().unwrap().to_owned()
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let items = env("ITEMS", 40_000);
    let writes = env("WRITES", 20);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[server]\ndatabase_url = \"sqlite://{}\"\nmax_items_per_job = 2000000\nmax_body_bytes = 268435456\n",
            tribunal::config::DEFAULT_CONFIG,
            dir.path().join("bench.db").display()
        ),
    )
    .unwrap();
    let server = match std::env::var("TRIBUNAL_BIN") {
        Ok(bin) => spawn::serve_binary(std::path::Path::new(&bin), &cfg),
        Err(_) => spawn::serve(&cfg),
    };
    // The gRPC listener is not used here.
    let _ = &server.grpc_url;
    let mut child = server.child;
    let url = server.url;
    let http = reqwest::Client::new();

    let t = Instant::now();
    let big = upload(&http, &url, "bench-labels-big", items).await;
    let uploaded = t.elapsed().as_secs_f64();
    let small = upload(&http, &url, "bench-labels-small", 10).await;
    println!(
        "set of {items} items ({:.1} MB of JSONL): uploaded in {uploaded:.1} s",
        set_text("bench-labels-big", items).len() as f64 / 1e6
    );
    // The first read after the upload parses the set; not part of a write's figure.
    let t = Instant::now();
    let r = http
        .get(format!("{url}/v1/calibration/sets/{big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    println!(
        "first read of the large set: {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let mut ms = Vec::new();
    for i in 0..writes {
        ms.push(write(&http, &url, &big, i * 7, i % 2 == 0).await);
    }
    let (m, p) = figures(&mut ms);
    println!(
        "one label write, {items}-item set: median {m:7.2} ms  p95 {p:7.2} ms  ({writes} writes)"
    );

    let mut ms = Vec::new();
    for i in 0..writes {
        ms.push(write(&http, &url, &small, i % 10, i % 2 == 0).await);
    }
    let (m, p) = figures(&mut ms);
    println!("one label write, 10-item set, alone: median {m:7.2} ms  p95 {p:7.2} ms");

    let stop = Arc::new(AtomicBool::new(false));
    let mut busy = Vec::new();
    for w in 0..3 {
        let (http, url, big, stop) = (http.clone(), url.clone(), big.clone(), stop.clone());
        busy.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                write(&http, &url, &big, (w * 1000 + n) % items, n % 2 == 0).await;
                n += 1;
            }
            n
        }));
    }
    let mut ms = Vec::new();
    for i in 0..writes {
        ms.push(write(&http, &url, &small, i % 10, i % 2 == 1).await);
    }
    stop.store(true, Ordering::Relaxed);
    let mut big_writes = 0;
    for b in busy {
        big_writes += b.await.unwrap();
    }
    let (m, p) = figures(&mut ms);
    println!(
        "one label write, 10-item set, while 3 writers label the large set: median {m:7.2} ms  p95 {p:7.2} ms  ({big_writes} large-set writes meanwhile)"
    );
    let _ = child.kill();
    let _ = child.wait();
}
