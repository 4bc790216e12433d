//! Release benchmarks of issue 12 on real `tribunal serve` processes (BENCHMARKS.md,
//! "Scale-out on Postgres and Redis"). Prints figures; asserts nothing about speed.
//!
//! TRIBUNAL_TEST_POSTGRES_URL=postgres://... TRIBUNAL_TEST_REDIS_URL=redis://... \
//!   cargo bench --bench replicas -- [all|throughput|rate] [ITEMS] [RPM] [SECONDS]
//!
//! 1. `throughput`: items/s of one job of ITEMS items (default 5,000; three zero-latency
//!    simulated judges x 3 criteria, `job_concurrency = 64`, submission included) on one
//!    SQLite node, then on 1, 2 and 3 replicas sharing one fresh Postgres database.
//!    Needs the Postgres URL (without it only the SQLite row is printed).
//! 2. `rate`: three replicas on Postgres and one Redis share `requests_per_minute = RPM`
//!    (default 1,200) of one mock judge (20 ms per call) for SECONDS (default 150): the
//!    busiest 60 s sliding window the mock saw, and the sustained rate after the first
//!    minute as a share of RPM. Needs both URLs.
//!
//! A part whose URL is missing prints `skipped`. Every figure line carries the load
//! average (`/proc/loadavg`) at its start and end: the box is shared.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

#[path = "../tests/it/mock_openai.rs"]
#[expect(dead_code, reason = "the bench uses only part of the test mock")]
mod mock_openai;
#[path = "../tests/it/spawn.rs"]
#[expect(dead_code, reason = "the bench does not use the gRPC address")]
mod spawn;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;

use mock_openai::{Reply, met};

const PG_ENV: &str = "TRIBUNAL_TEST_POSTGRES_URL";
const REDIS_ENV: &str = "TRIBUNAL_TEST_REDIS_URL";

fn env_url(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|u| !u.trim().is_empty())
}

/// The 1, 5 and 15 minute load averages.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A new database on the server of `admin` (a URL whose user may create databases).
async fn fresh_database(admin: &str) -> String {
    let name = format!("tribunal_bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (base, query) = admin
        .split_once('?')
        .map_or((admin, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

fn case(i: usize, criteria: &Value) -> Value {
    json!({
        "format": "case.v1",
        "case_id": format!("b{i}"),
        "conversation": [{"role": "user", "content": "I have a fever of 39C for three days."}],
        "response": format!("Response {i}: see a doctor, drink fluids."),
        "rubric": {"format": "rubric.v1", "id": "fever", "version": 1, "title": "Fever",
            "criteria": criteria}
    })
}

fn three_criteria() -> Value {
    json!([
        {"id": "see-doctor", "text": "Advises seeing a clinician for fever over 3 days.", "points": 7},
        {"id": "fluids", "text": "Recommends fluids.", "points": 3},
        {"id": "antibiotics", "text": "Recommends antibiotics without evaluation.", "points": -6, "veto": true}
    ])
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn submit(http: &reqwest::Client, base: &str, items: &[Value]) -> String {
    let job: Value = http
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "application/json")
        .body(Value::Array(items.to_vec()).to_string())
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

async fn state(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn stop(servers: Vec<spawn::Server>) {
    for mut s in servers {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
}

async fn throughput(items: usize) {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let criteria = three_criteria();
    let jobs: Vec<Value> = (0..items).map(|i| case(i, &criteria)).collect();
    let config = |url: &str| {
        format!(
            "{}\n[server]\ndatabase_url = \"{url}\"\njob_concurrency = 64\nmax_items_per_job = 1000000\n",
            tribunal::config::DEFAULT_CONFIG
        )
    };
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut runs = vec![(
        "SQLite, 1 node".to_owned(),
        write(dir.path(), "sqlite", &config(&sqlite)),
        1,
    )];
    match env_url(PG_ENV) {
        Some(admin) => {
            for replicas in 1..=3 {
                let db = fresh_database(&admin).await;
                runs.push((
                    format!("Postgres, {replicas} replica(s)"),
                    write(dir.path(), &format!("pg{replicas}"), &config(&db)),
                    replicas,
                ));
            }
        }
        None => println!("skipped: the Postgres rows of `throughput` ({PG_ENV} is not set)"),
    }
    for (label, cfg, replicas) in runs {
        let servers: Vec<_> = (0..replicas).map(|_| spawn::serve(&cfg)).collect();
        let load_before = load();
        let started = Instant::now();
        let id = submit(&http, &servers[0].url, &jobs).await;
        loop {
            let s = state(&http, &servers[0].url, &id).await;
            if s["state"] == "done" {
                assert_eq!(s["done"], items, "{s}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
        let rate = items as f64 / secs;
        println!(
            "throughput: {label}: {items} items in {secs:.1} s = {rate:.0} items/s (load {load_before} -> {})",
            load()
        );
        stop(servers);
    }
}

/// The most calls in any 60 s sliding window of sorted `times`.
fn busiest_minute(times: &[Instant]) -> usize {
    let mut most = 0;
    let mut end = 0;
    for (start, t) in times.iter().enumerate() {
        while end < times.len() && times[end] < *t + Duration::from_secs(60) {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

async fn rate(rpm: u32, secs: u64) {
    let (Some(admin), Some(redis)) = (env_url(PG_ENV), env_url(REDIS_ENV)) else {
        println!("skipped: `rate` needs {PG_ENV} and {REDIS_ENV}");
        return;
    };
    let db = fresh_database(&admin).await;
    let (mock, judge_url) =
        mock_openai::spawn(Reply::Delay(Duration::from_millis(20), Box::new(met(true)))).await;
    mock.keep_bodies.store(false, Ordering::Relaxed);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("tribunal-bench-{}", uuid::Uuid::now_v7().simple());
    let cfg = write(
        dir.path(),
        "rate",
        &format!(
            "[judges.a]\nprovider = \"openai\"\nbase_url = \"{judge_url}\"\nmodel = \"m\"\nrequests_per_minute = {rpm}\n\n\
             [committee]\nmembers = [\"a\"]\nquorum = 1\n\n\
             [server]\ndatabase_url = \"{db}\"\njob_concurrency = 32\nmax_items_per_job = 1000000\n\n\
             [redis]\nurl = \"{redis}\"\nreplicas = 3\nkey_prefix = \"{prefix}\"\n"
        ),
    );
    // More one-criterion items than the run can judge, so the limit is the bottleneck.
    let n = (u64::from(rpm) * secs / 60 * 12 / 10 + 100) as usize;
    let criteria =
        json!([{"id": "see-doctor", "text": "Advises seeing a clinician.", "points": 1}]);
    let items: Vec<Value> = (0..n).map(|i| case(i, &criteria)).collect();
    let servers: Vec<_> = (0..3).map(|_| spawn::serve(&cfg)).collect();
    let http = reqwest::Client::new();
    let load_before = load();
    let id = submit(&http, &servers[0].url, &items).await;
    // The run is timed from the first call the mock sees.
    while mock.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = mock.times.lock().unwrap()[0];
    tokio::time::sleep_until((first + Duration::from_secs(secs)).into()).await;
    let end = first + Duration::from_secs(secs);
    let mut times: Vec<Instant> = mock
        .times
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|t| *t < end)
        .collect();
    times.sort();
    let _ = http
        .delete(format!("{}/v1/jobs/{id}", servers[1].url))
        .send()
        .await;
    stop(servers);
    let busiest = busiest_minute(&times);
    let after = first + Duration::from_secs(60);
    let sustained = times.iter().filter(|t| **t >= after).count();
    #[expect(clippy::cast_precision_loss, reason = "rates for display")]
    let per_minute = sustained as f64 / (secs.saturating_sub(60).max(1) as f64) * 60.0;
    println!(
        "rate: 3 replicas (Postgres + Redis), requests_per_minute = {rpm}, {secs} s: {} calls; \
         busiest 60 s window {busiest} (limit {rpm}); after the first minute {per_minute:.1} calls/min \
         = {:.1}% of the limit (load {load_before} -> {})",
        times.len(),
        per_minute / f64::from(rpm) * 100.0,
        load()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let part = args.first().map_or("all", String::as_str);
    let items: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rpm: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1200);
    let secs: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(150);
    println!("replicas bench: uptime {}", load());
    if matches!(part, "all" | "throughput") {
        throughput(items).await;
    }
    if matches!(part, "all" | "rate") {
        rate(rpm, secs).await;
    }
}
