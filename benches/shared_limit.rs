//! Achieved call rate against one requests-per-minute limit shared through Redis by
//! three limiter instances (three `JudgeLimiter`s on three connections, as three
//! replicas would hold). Prints figures; it asserts nothing.
//!
//! TRIBUNAL_TEST_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench shared_limit -- [RPM] [SECONDS]
//!
//! Reports the most calls in any 60 s sliding window (must not exceed RPM) and the
//! sustained rate after the first minute, as a share of RPM (the bucket's capacity of
//! one request makes it (RPM - 1) / RPM at best).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench harness"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tribunal::config::{LimitsConfig, RedisConfig};
use tribunal::limits::{BucketStore, Failover, JudgeLimiter};
use tribunal::redis::{Redis, RedisBuckets};

const REPLICAS: usize = 3;
/// Workers per replica, each looping acquire -> call.
const WORKERS: usize = 8;
/// The simulated judge call.
const CALL: Duration = Duration::from_millis(20);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let rpm: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1200);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(150);
    let url = std::env::var("TRIBUNAL_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6390".into());
    let prefix = format!("tribunal-bench-{}", uuid::Uuid::now_v7().simple());
    let limits = LimitsConfig {
        requests_per_minute: Some(rpm),
        tokens_per_minute: None,
        max_concurrency: WORKERS,
    };
    let times = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let start = Instant::now();
    let run = Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..REPLICAS {
        let redis = Redis::connect(&RedisConfig {
            url: secrecy::SecretString::from(url.clone()),
            replicas: REPLICAS as u32,
            key_prefix: prefix.clone(),
            timeout: Duration::from_millis(500),
            lease: Duration::from_secs(5),
        })
        .unwrap();
        redis.ping().await.expect("redis answers");
        let store: Arc<dyn BucketStore> = Arc::new(Failover::new(
            Arc::new(RedisBuckets(redis)),
            REPLICAS as u32,
        ));
        let limiter = Arc::new(JudgeLimiter::new(&limits));
        assert!(limiter.share("bench-judge", store));
        for _ in 0..WORKERS {
            let limiter = Arc::clone(&limiter);
            let times = Arc::clone(&times);
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run {
                    let _permit = limiter.acquire(100).await;
                    times.lock().unwrap().push(start.elapsed());
                    tokio::time::sleep(CALL).await;
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = times.lock().unwrap().clone();
    times.sort();
    let minute = Duration::from_secs(60);
    let mut max_window = 0;
    let mut j = 0;
    for i in 0..times.len() {
        while j < times.len() && times[j] - times[i] < minute {
            j += 1;
        }
        max_window = max_window.max(j - i);
    }
    // Workers still waiting when the run ends get their permits after it; the
    // sustained rate counts only calls inside [60 s, run).
    let steady: Vec<&Duration> = times
        .iter()
        .filter(|t| **t >= minute && **t < run)
        .collect();
    let steady_secs = run.as_secs_f64() - 60.0;
    let steady_rpm = steady.len() as f64 / steady_secs * 60.0;
    println!(
        "shared limit: {REPLICAS} limiter instances x {WORKERS} workers on one Redis, RPM {rpm}, {secs} s"
    );
    println!("  calls: {}", times.len());
    println!(
        "  most calls in any 60 s sliding window: {max_window} (limit {rpm}): {}",
        if max_window <= rpm as usize {
            "within"
        } else {
            "EXCEEDED"
        }
    );
    println!(
        "  sustained after the first minute: {steady_rpm:.1} calls/min = {:.2}% of the limit",
        steady_rpm / f64::from(rpm) * 100.0
    );
}
