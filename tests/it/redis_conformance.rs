//! Conformance of the shared limiter and the shared verdict cache: every check runs on
//! the in-process backends (`LocalBuckets`, `LocalShared`) and on a real Redis named by
//! `TRIBUNAL_TEST_REDIS_URL` (`.ci/run` starts one). Without the variable the Redis half
//! prints `skipped`; under `CI=true` it fails instead. Each Redis run uses its own key
//! prefix, so runs never see each other's keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tribunal::cache::{CachedAnswer, FlightConfig, LocalShared, SharedTier, Source, VerdictCache};
use tribunal::config::{CacheConfig, RedisConfig};
use tribunal::judge::{Parsed, Usage};
use tribunal::limits::{Admit, BucketStore, Failover, Limit, LocalBuckets, Take};
use tribunal::redis::{Redis, RedisBuckets, RedisTier};
use tribunal::rubric::Verdict;

/// The env var naming the Redis the suite may use (any database; keys are prefixed).
pub const REDIS_ENV: &str = "TRIBUNAL_TEST_REDIS_URL";

/// The test Redis URL; `None` (after printing `skipped`) on a laptop without one.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var(REDIS_ENV) {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "{REDIS_ENV} is not set; CI must start redis-server and export it (.ci/run does)"
            );
            println!("skipped: {test} on Redis ({REDIS_ENV} is not set)");
            None
        }
    }
}

fn redis_cfg(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: secrecy::SecretString::from(url.to_owned()),
        replicas: 1,
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_secs(2),
        lease: Duration::from_millis(300),
    }
}

/// A fresh prefix, so every run starts with empty buckets and no cached verdicts.
fn prefix() -> String {
    format!("tribunal-test-{}", uuid::Uuid::now_v7().simple())
}

/// `n` separate connections to one Redis under one prefix: `n` replicas.
async fn replicas(url: &str, prefix: &str, n: usize) -> Vec<Arc<Redis>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = Redis::connect(&redis_cfg(url, prefix)).unwrap();
        r.ping().await.unwrap();
        out.push(r);
    }
    out
}

/// One backend under test: `n` bucket stores that stand for `n` replicas sharing state.
async fn bucket_stores(url: Option<&str>, n: usize) -> Vec<Arc<dyn BucketStore>> {
    match url {
        None => {
            let one: Arc<dyn BucketStore> = Arc::new(LocalBuckets::new());
            vec![one; n]
        }
        Some(url) => replicas(url, &prefix(), n)
            .await
            .into_iter()
            .map(|r| Arc::new(RedisBuckets(r)) as Arc<dyn BucketStore>)
            .collect(),
    }
}

fn take(key: &str, limit: Limit, cost: f64) -> Take {
    Take {
        key: key.to_owned(),
        limit,
        cost,
    }
}

/// A bucket of `capacity` that never refills within a test.
fn fixed(capacity: u32) -> Limit {
    Limit {
        per_window: f64::from(capacity),
        window: Duration::from_secs(3600),
        burst: f64::from(capacity),
    }
}

async fn fifty_takes_of_five_on_a_hundred(url: Option<&str>) {
    let stores = bucket_stores(url, 2).await;
    let limit = fixed(100);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            // Two replicas race for one bucket.
            let s = Arc::clone(&stores[i % 2]);
            tokio::spawn(async move { s.take(&[take("j:tpm", limit, 5.0)]).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        match t.await.unwrap() {
            Admit::Taken => taken += 1,
            Admit::Never => {}
            Admit::Wait(w) => panic!("a bucket that never refills said wait {w:?}"),
        }
    }
    assert_eq!(taken, 20, "50 concurrent takes of 5 on capacity 100");
}

async fn takes_are_all_or_nothing(url: Option<&str>) {
    let s = &bucket_stores(url, 1).await[0];
    let (a, b) = (fixed(10), fixed(10));
    assert_eq!(s.take(&[take("k:b", b, 8.0)]).await.unwrap(), Admit::Taken);
    // b holds 2: the pair is refused and a is left untouched.
    assert_eq!(
        s.take(&[take("k:a", a, 5.0), take("k:b", b, 5.0)])
            .await
            .unwrap(),
        Admit::Never
    );
    assert_eq!(s.take(&[take("k:a", a, 10.0)]).await.unwrap(), Admit::Taken);
    // A refilling bucket says how long to wait instead.
    let slow = Limit {
        per_window: 11.0,
        window: Duration::from_secs(10),
        burst: 1.0,
    };
    assert_eq!(
        s.take(&[take("k:c", slow, 1.0)]).await.unwrap(),
        Admit::Taken
    );
    match s.take(&[take("k:c", slow, 1.0)]).await.unwrap() {
        Admit::Wait(w) => assert!(
            w > Duration::from_millis(900) && w <= Duration::from_millis(1000),
            "{w:?}"
        ),
        other => panic!("expected a wait, got {other:?}"),
    }
}

async fn estimates_reconcile_both_ways(url: Option<&str>) {
    let s = &bucket_stores(url, 1).await[0];
    let l = fixed(100);
    assert_eq!(
        s.take(&[take("r:tpm", l, 50.0)]).await.unwrap(),
        Admit::Taken
    );
    // 20 used of the 50 borrowed: 30 come back (level 80).
    s.charge(&take("r:tpm", l, -30.0)).await.unwrap();
    assert_eq!(
        s.take(&[take("r:tpm", l, 80.0)]).await.unwrap(),
        Admit::Taken
    );
    // A refund never lifts a bucket above its capacity.
    s.charge(&take("r:tpm", l, -1000.0)).await.unwrap();
    assert_eq!(
        s.take(&[take("r:tpm", l, 100.0)]).await.unwrap(),
        Admit::Taken
    );
    // Usage beyond the estimate leaves a debt that later takes must wait out.
    s.charge(&take("r:tpm", l, 40.0)).await.unwrap();
    s.charge(&take("r:tpm", l, -60.0)).await.unwrap();
    assert_eq!(
        s.take(&[take("r:tpm", l, 21.0)]).await.unwrap(),
        Admit::Never
    );
    assert_eq!(
        s.take(&[take("r:tpm", l, 20.0)]).await.unwrap(),
        Admit::Taken
    );
}

/// Two instances acquiring as fast as they can for `run`: no sliding window of the
/// limit's length ever admits more than the limit, and together they get close to it.
async fn two_instances_never_exceed_the_limit(url: Option<&str>) {
    let stores = bucket_stores(url, 2).await;
    let limit = Limit {
        per_window: 20.0,
        window: Duration::from_secs(1),
        burst: 2.0,
    };
    let run = Duration::from_millis(2500);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in stores {
        for _ in 0..3 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                while start.elapsed() < run {
                    match s.take(&[take("pair:rpm", limit, 1.0)]).await.unwrap() {
                        Admit::Taken => times.push(start.elapsed()),
                        Admit::Wait(w) => {
                            tokio::time::sleep(w.min(Duration::from_millis(50))).await
                        }
                        Admit::Never => panic!("a cost of 1 fits"),
                    }
                }
                times
            }));
        }
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    times.sort();
    // Times are taken when a reply arrives, which trails the server's clock by a
    // varying latency; 10 ms of the window are left for it.
    let window = limit.window - Duration::from_millis(10);
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u - *t < window).count();
        assert!(n <= 20, "{n} admitted within 1 s from {t:?}");
    }
    // Capacity 2 + 18/s for 2.5 s is 47; allow scheduling slack on a busy machine.
    assert!(
        times.len() >= 38,
        "only {} admitted in {run:?}",
        times.len()
    );
    assert!(times.len() <= 47, "{} admitted in {run:?}", times.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_fifty_takes_of_five_on_a_hundred() {
    fifty_takes_of_five_on_a_hundred(None).await;
    if let Some(url) = redis_url("limiter_fifty_takes_of_five_on_a_hundred") {
        fifty_takes_of_five_on_a_hundred(Some(&url)).await;
    }
}

#[tokio::test]
async fn limiter_takes_are_all_or_nothing() {
    takes_are_all_or_nothing(None).await;
    if let Some(url) = redis_url("limiter_takes_are_all_or_nothing") {
        takes_are_all_or_nothing(Some(&url)).await;
    }
}

#[tokio::test]
async fn limiter_estimates_reconcile_both_ways() {
    estimates_reconcile_both_ways(None).await;
    if let Some(url) = redis_url("limiter_estimates_reconcile_both_ways") {
        estimates_reconcile_both_ways(Some(&url)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_two_instances_never_exceed_the_limit() {
    two_instances_never_exceed_the_limit(None).await;
    if let Some(url) = redis_url("limiter_two_instances_never_exceed_the_limit") {
        two_instances_never_exceed_the_limit(Some(&url)).await;
    }
}

/// A Redis that does not answer: the limiter falls back to this replica's share,
/// starting empty, so it admits no more than limit / replicas.
#[tokio::test]
async fn limiter_without_redis_enforces_its_share() {
    let mut cfg = redis_cfg("redis://127.0.0.1:1", &prefix());
    cfg.timeout = Duration::from_millis(200);
    let redis = Redis::connect(&cfg).unwrap();
    let failover = Failover::new(Arc::new(RedisBuckets(Arc::clone(&redis))), 4);
    let limit = Limit {
        per_window: 40.0,
        window: Duration::from_secs(1),
        burst: 4.0,
    };
    let start = Instant::now();
    let mut taken = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        match failover
            .take(&[take("down:rpm", limit, 1.0)])
            .await
            .unwrap()
        {
            Admit::Taken => taken += 1,
            Admit::Wait(w) => tokio::time::sleep(w).await,
            Admit::Never => panic!("a cost of 1 fits the share"),
        }
    }
    // The share is 10 per second with a burst of 1 (9/s refill, starting empty): about
    // 13 in 1.5 s, never the 40 + 36/s of the full limit.
    assert!(
        (8..=15).contains(&taken),
        "{taken} taken on a share of 10/s"
    );
    let status = redis.health.status();
    assert!(!status.up);
    assert!(status.last_error.is_some());
}

fn answer(text: &str) -> CachedAnswer {
    CachedAnswer {
        answers: vec![Parsed {
            verdict: Verdict::Met(true),
            explanation: text.to_owned(),
        }],
        usage: Usage {
            input_tokens: 10,
            output_tokens: 2,
            ..Usage::default()
        },
        template_hash: "t".into(),
    }
}

fn cache_cfg() -> CacheConfig {
    CacheConfig {
        max_bytes: 1 << 20,
        ttl: Duration::from_secs(60),
    }
}

fn flight() -> FlightConfig {
    FlightConfig {
        lease: Duration::from_millis(300),
        poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(50),
    }
}

/// `n` tiers standing for `n` replicas' views of one shared tier.
async fn tiers(url: Option<&str>, n: usize) -> Vec<Arc<dyn SharedTier>> {
    match url {
        None => {
            let one: Arc<dyn SharedTier> = Arc::new(LocalShared::default());
            vec![one; n]
        }
        Some(url) => replicas(url, &prefix(), n)
            .await
            .into_iter()
            .map(|redis| {
                Arc::new(RedisTier {
                    redis,
                    ttl: Duration::from_secs(60),
                }) as Arc<dyn SharedTier>
            })
            .collect(),
    }
}

fn caches(tiers: &[Arc<dyn SharedTier>]) -> Vec<Arc<VerdictCache>> {
    tiers
        .iter()
        .map(|t| {
            let c = Arc::new(VerdictCache::new(&cache_cfg(), None));
            assert!(c.share(Arc::clone(t), flight()));
            c
        })
        .collect()
}

/// Two replicas' caches, eight concurrent lookups each of one key: one judge call, and
/// every caller sees its verdict.
async fn two_caches_make_one_call(url: Option<&str>) {
    let caches = caches(&tiers(url, 2).await);
    let calls = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let cache = Arc::clone(&caches[i % 2]);
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            let (r, src) = cache
                .get_or_call::<_, String>([7; 32], async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(answer(&format!("call {n}")))
                })
                .await;
            (r.unwrap().answers[0].explanation.clone(), src)
        }));
    }
    let mut upstream = 0;
    for t in tasks {
        let (text, src) = t.await.unwrap();
        assert_eq!(text, "call 0");
        upstream += usize::from(src == Source::Upstream);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one judge call for one key"
    );
    assert_eq!(upstream, 1);
    // A later lookup on either replica is a hit without a call.
    let (r, src) = caches[1]
        .get_or_call::<_, String>([7; 32], async { Err("must not be called".into()) })
        .await;
    assert_eq!(r.unwrap().answers[0].explanation, "call 0");
    assert_eq!(src, Source::Memory);
}

/// A lease whose holder died (never renewed, never released): a waiter takes over once
/// it lapses, and calls exactly once.
async fn a_lapsed_lease_is_taken_over(url: Option<&str>) {
    let tiers = tiers(url, 2).await;
    let key = [9; 32];
    assert!(
        tiers[0]
            .lease(&key, "dead-replica", Duration::from_millis(300))
            .await
            .unwrap()
    );
    let caches = caches(&tiers[1..]);
    let calls = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let c = Arc::clone(&calls);
    let (r, src) = caches[0]
        .get_or_call::<_, String>(key, async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(answer("successor"))
        })
        .await;
    assert_eq!(r.unwrap().answers[0].explanation, "successor");
    assert_eq!(src, Source::Upstream);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "took over after {:?}, before the lease lapsed",
        started.elapsed()
    );
}

/// The first value written stays; a second writer is handed it back. Failures are
/// never written and release the lease at once.
async fn first_writer_wins(url: Option<&str>) {
    let tiers = tiers(url, 2).await;
    let key = [3; 32];
    assert_eq!(
        tiers[0].put_first(&key, &answer("first")).await.unwrap(),
        None
    );
    let back = tiers[1].put_first(&key, &answer("second")).await.unwrap();
    assert_eq!(
        back.map(|a| a.answers[0].explanation.clone()),
        Some("first".into())
    );
    let got = tiers[1].get(&key).await.unwrap();
    assert_eq!(
        got.map(|a| a.answers[0].explanation.clone()),
        Some("first".into())
    );
    // A lease is its holder's alone: another token can neither renew nor release it.
    let other = [4; 32];
    let lease = Duration::from_secs(5);
    assert!(tiers[0].lease(&other, "a", lease).await.unwrap());
    assert!(!tiers[1].lease(&other, "b", lease).await.unwrap());
    assert!(!tiers[1].renew(&other, "b", lease).await.unwrap());
    tiers[1].release(&other, "b").await.unwrap();
    assert!(!tiers[1].lease(&other, "b", lease).await.unwrap());
    assert!(tiers[0].renew(&other, "a", lease).await.unwrap());
    tiers[0].release(&other, "a").await.unwrap();
    assert!(tiers[1].lease(&other, "b", lease).await.unwrap());
    // An abstention is not cached on any replica, and the next caller calls again.
    let caches = caches(&tiers);
    let (r, _) = caches[0]
        .get_or_call::<_, String>([5; 32], async { Err("abstained".into()) })
        .await;
    assert!(r.is_err());
    assert_eq!(tiers[1].get(&[5; 32]).await.unwrap(), None);
    let started = Instant::now();
    let (r, src) = caches[1]
        .get_or_call::<_, String>([5; 32], async { Ok(answer("retried")) })
        .await;
    assert_eq!(r.unwrap().answers[0].explanation, "retried");
    assert_eq!(src, Source::Upstream);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "waited for a released lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_two_replicas_make_one_judge_call() {
    two_caches_make_one_call(None).await;
    if let Some(url) = redis_url("cache_two_replicas_make_one_judge_call") {
        two_caches_make_one_call(Some(&url)).await;
    }
}

#[tokio::test]
async fn cache_lapsed_lease_is_taken_over() {
    a_lapsed_lease_is_taken_over(None).await;
    if let Some(url) = redis_url("cache_lapsed_lease_is_taken_over") {
        a_lapsed_lease_is_taken_over(Some(&url)).await;
    }
}

#[tokio::test]
async fn cache_first_writer_wins() {
    first_writer_wins(None).await;
    if let Some(url) = redis_url("cache_first_writer_wins") {
        first_writer_wins(Some(&url)).await;
    }
}

/// With Redis unreachable the cache still answers, from the judge and then from
/// memory: it degrades to local instead of failing grades.
#[tokio::test]
async fn cache_without_redis_degrades_to_local() {
    let mut cfg = redis_cfg("redis://127.0.0.1:1", &prefix());
    cfg.timeout = Duration::from_millis(200);
    let redis = Redis::connect(&cfg).unwrap();
    let cache = VerdictCache::new(&cache_cfg(), None);
    cache.share(
        Arc::new(RedisTier {
            redis: Arc::clone(&redis),
            ttl: Duration::from_secs(60),
        }),
        flight(),
    );
    let (r, src) = cache
        .get_or_call::<_, String>([1; 32], async { Ok(answer("local")) })
        .await;
    assert_eq!(r.unwrap().answers[0].explanation, "local");
    assert_eq!(src, Source::Upstream);
    let (r, src) = cache
        .get_or_call::<_, String>([1; 32], async { Err("must not be called".into()) })
        .await;
    assert!(r.is_ok());
    assert_eq!(src, Source::Memory);
    assert_eq!(cache.shared_status().await.map(|s| s.up), Some(false));
}

/// One API key's request quota, spent through two replicas' `Auth`s: one budget.
async fn quota_is_one_budget_across_replicas(url: Option<&str>) {
    let stores = bucket_stores(url, 2).await;
    let key = tribunal::config::ApiKeyConfig {
        name: "ci".into(),
        role: tribunal::service::Role::Client,
        blake3: blake3::hash(b"k").to_hex().to_string(),
        requests_per_minute: Some(3),
        max_concurrent_jobs: None,
    };
    let auths: Vec<_> = stores
        .into_iter()
        .map(|s| {
            let a = tribunal::service::Auth::new(std::slice::from_ref(&key));
            assert!(a.share(s));
            a
        })
        .collect();
    let mut ok = 0;
    for i in 0..8 {
        match auths[i % 2].authenticate(Some("Bearer k")).await {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.kind(), tribunal::ErrorKind::RateLimited),
        }
    }
    assert_eq!(ok, 3, "a quota of 3 per minute across two replicas");
}

#[tokio::test]
async fn quota_one_budget_across_replicas() {
    quota_is_one_budget_across_replicas(None).await;
    if let Some(url) = redis_url("quota_one_budget_across_replicas") {
        quota_is_one_budget_across_replicas(Some(&url)).await;
    }
}

/// A server whose Redis does not answer still grades and stays ready, and `/readyz`
/// says Redis is degraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_redis_grades_and_reports_degraded() {
    let app = crate::server::TestApp::spawn(
        "[redis]\nurl = \"redis://127.0.0.1:1\"\nreplicas = 2\ntimeout_ms = 200\n",
    )
    .await;
    let (code, report) = app
        .post(
            "/v1/grade",
            &crate::server::case("g", "Rest and drink fluids."),
        )
        .await;
    assert_eq!(code, 200, "{report}");
    let (code, ready) = app.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["redis"]["status"], "degraded", "{ready}");
    assert!(ready["redis"]["error"].is_string(), "{ready}");
    app.running.unwrap().stop().await;
}

/// Two servers on one Redis: the second pays no judge call for what the first graded,
/// and `/readyz` shows Redis up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_verdicts_through_redis() {
    let Some(url) = redis_url("two_servers_share_verdicts_through_redis") else {
        return;
    };
    let section = format!("[redis]\nurl = \"{url}\"\nkey_prefix = \"{}\"\n", prefix());
    let a = crate::server::TestApp::spawn(&section).await;
    let b = crate::server::TestApp::spawn(&section).await;
    let item = crate::server::case("shared", "Rest and drink fluids.");
    let (code, first) = a.post("/v1/grade", &item).await;
    assert_eq!(code, 200, "{first}");
    assert!(
        first["usage"]["upstream_calls"].as_u64().unwrap() > 0,
        "{first}"
    );
    let (code, second) = b.post("/v1/grade", &item).await;
    assert_eq!(code, 200, "{second}");
    assert_eq!(second["usage"]["upstream_calls"], 0, "{second}");
    assert_eq!(first["score"], second["score"]);
    let (code, ready) = b.get("/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(ready["redis"]["status"], "up", "{ready}");
    a.running.unwrap().stop().await;
    b.running.unwrap().stop().await;
}

#[test]
fn config_check_prints_the_redis_section_and_refuses_shares_below_one() {
    let dir = tempfile::tempdir().unwrap();
    let judge = tribunal::config::DEFAULT_CONFIG.replace(
        "model = \"sim-a\"\n",
        "model = \"sim-a\"\nrequests_per_minute = 600\ntokens_per_minute = 90000\n",
    );
    let redis = "[redis]\nurl = \"redis://:hunter2@127.0.0.1:6390/2\"\nreplicas = 3\nkey_prefix = \"team-a\"\n";
    std::fs::write(dir.path().join("ok.toml"), format!("{judge}\n{redis}")).unwrap();
    let run = crate::tribunal(&["config", "check", "-c", "ok.toml"], dir.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "redis: url=redis://:***@127.0.0.1:6390/2 replicas=3 key_prefix=team-a timeout=500ms lease=5s"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "redis fallback share of judge sim-a: requests_per_minute 600 -> 200.0, tokens_per_minute 90000 -> 30000.0"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    // Without [redis] it says nothing is shared.
    std::fs::write(dir.path().join("local.toml"), &judge).unwrap();
    let run = crate::tribunal(&["config", "check", "-c", "local.toml"], dir.path());
    assert!(run.stdout.contains("redis: off"), "{}", run.stdout);
    // A limit below one per replica is refused with the field and the fix.
    let low = judge.replace("requests_per_minute = 600", "requests_per_minute = 2");
    std::fs::write(dir.path().join("low.toml"), format!("{low}\n{redis}")).unwrap();
    let run = crate::tribunal(&["config", "check", "-c", "low.toml"], dir.path());
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("judges.sim-a.requests_per_minute: is 2, below redis.replicas = 3")
            && run
                .stderr
                .contains("raise it to at least 3 or lower redis.replicas"),
        "{}",
        run.stderr
    );
}
