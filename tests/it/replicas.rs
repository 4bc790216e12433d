//! Several real `tribunal serve` processes on one Postgres database: a job submitted to
//! one replica is worked by all; one replica is killed with SIGKILL mid-job and the
//! others reclaim its items when their leases expire; every item ends with exactly one
//! result and the summary equals a single-node (SQLite) run's. Also: `/readyz` fails
//! while the database is unreachable, and the store metrics show the pool and the
//! failed queries. Needs `TRIBUNAL_TEST_POSTGRES_URL` (see
//! `store_conformance`); prints `skipped` without it, fails under `CI=true`.
//! The combined test (`three_replicas_on_postgres_and_redis_...`) adds one Redis: the
//! replicas share one requests-per-minute limit, and the mock judge's call times show
//! no 60-second sliding window above it. That test also needs `TRIBUNAL_TEST_REDIS_URL`.

use std::time::Duration;

use serde_json::Value;

use crate::mock_openai::{Reply, met, spawn as mock};
use crate::server::{all_results, assert_counters_match, case};
use crate::spawn::serve;
use crate::store_conformance::{fresh_database, postgres_url};

/// A config with one mock judge and `database_url`; leases of 2 s.
fn config(
    dir: &std::path::Path,
    name: &str,
    judge_url: &str,
    database_url: &str,
) -> std::path::PathBuf {
    config_with(dir, name, judge_url, database_url, "", "")
}

/// `config` with extra lines for the judge (`judge_extra`) and extra sections (`tail`).
fn config_with(
    dir: &std::path::Path,
    name: &str,
    judge_url: &str,
    database_url: &str,
    judge_extra: &str,
    tail: &str,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[judges.a]\nprovider = \"openai\"\nbase_url = \"{judge_url}\"\nmodel = \"m\"\ntimeout_ms = 10000\n{judge_extra}\n\
             [committee]\nmembers = [\"a\"]\nquorum = 1\n\n\
             [server]\ndatabase_url = \"{database_url}\"\njob_concurrency = 8\njob_lease_seconds = 2\n\n{tail}"
        ),
    )
    .unwrap();
    path
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The judge calls this process made (`GET /v1/judges`).
async fn judge_calls(http: &reqwest::Client, base: &str) -> u64 {
    get(http, format!("{base}/v1/judges")).await["judges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["health"]["calls"].as_u64().unwrap())
        .sum()
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

async fn wait_done(http: &reqwest::Client, base: &str, id: &str, secs: u64) -> Value {
    let mut state = Value::Null;
    for _ in 0..secs * 10 {
        state = get(http, format!("{base}/v1/jobs/{id}")).await;
        if state["state"] == "done" {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job not done in {secs} s: {state}");
}

/// The summary's figures without what differs between two runs of the same items
/// (the job's id and times).
async fn figures(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let mut s = get(http, format!("{base}/v1/jobs/{id}/summary")).await;
    s.as_object_mut().unwrap().remove("job");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_a_job_and_survive_a_sigkill() {
    let Some(admin) = postgres_url("three_replicas_share_a_job_and_survive_a_sigkill") else {
        return;
    };
    let db = fresh_database(&admin).await;
    let (judge, judge_url) =
        mock(Reply::Delay(Duration::from_millis(15), Box::new(met(true)))).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "pg", &judge_url, &db);
    let http = reqwest::Client::new();
    let total = 2000;
    let items: Vec<Value> = (0..total)
        .map(|i| case(&format!("k{i}"), &format!("answer number {i}")))
        .collect();

    let mut replicas: Vec<_> = (0..3).map(|_| serve(&cfg)).collect();
    let id = submit(&http, &replicas[0].url, &items).await;
    // A follower on replica 2 streams the results every replica writes.
    let follow_url = format!("{}/v1/jobs/{id}/results?follow=true", replicas[2].url);
    let follower = tokio::spawn({
        let http = http.clone();
        async move {
            let text = http
                .get(follow_url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines().count()
        }
    });
    // Kill replica 1 once the job is well under way.
    let mut seen = 0;
    for _ in 0..600 {
        seen = get(&http, format!("{}/v1/jobs/{id}", replicas[0].url)).await["done"]
            .as_u64()
            .unwrap_or(0);
        if seen >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen >= 300 && seen < total as u64,
        "killed after {seen} items"
    );
    let mut killed = replicas.remove(1);
    killed.child.kill().unwrap(); // SIGKILL: no graceful shutdown, leases left held.
    killed.child.wait().unwrap();

    let state = wait_done(&http, &replicas[0].url, &id, 300).await;
    // Both survivors graded part of the job (each process counts its own judge calls).
    for r in &replicas {
        let calls = judge_calls(&http, &r.url).await;
        assert!(
            calls > 0 && calls < (total * 3) as u64,
            "{} made {calls} calls",
            r.url
        );
    }
    assert_eq!(state["done"], total, "{state}");
    let results = all_results(&http, &replicas[1].url, &id).await;
    assert_eq!(results.len(), total, "none lost, none duplicated");
    let cases: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(cases.len(), total, "exactly one result per item");
    assert_counters_match(&state, &results);
    let followed = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(followed, total, "the follower saw every replica's results");
    // Judge calls repeated beyond one item's worth (3 criteria) per item: only those
    // in flight on the killed replica (8 items x 3 calls), whose results it never
    // recorded, may be paid twice.
    let calls = judge.calls();
    assert!(calls >= total * 3, "{calls}");
    assert!(
        calls <= total * 3 + 8 * 3 * 2,
        "{calls} judge calls for {total} items"
    );

    // The same items on one node (SQLite) give the same figures.
    let single_cfg = config(
        dir.path(),
        "single",
        &judge_url,
        &format!("sqlite://{}", dir.path().join("single.db").display()),
    );
    let single = serve(&single_cfg);
    let single_id = submit(&http, &single.url, &items).await;
    wait_done(&http, &single.url, &single_id, 300).await;
    assert_eq!(
        figures(&http, &replicas[0].url, &id).await,
        figures(&http, &single.url, &single_id).await
    );
    println!("3 replicas, one SIGKILLed after {seen} of {total} items; {calls} judge calls");
    for mut r in replicas.into_iter().chain([single]) {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
}

/// The shared limit of the combined test: 2,000 one-criterion items are 2,000 judge
/// calls, about 100 s at 1,200 per minute, so more than one full 60-second window is
/// observed. A low rate also leaves room for the delay between a permit (on Redis'
/// clock) and the call reaching the mock: at 20 calls/s the bucket's two-request
/// margin is 100 ms of jitter.
const SHARED_RPM: usize = 1200;

/// One item of the combined test: one criterion, so an item is one judge call and a
/// repeated call is a repeated item.
fn one_criterion_case(i: usize) -> Value {
    serde_json::json!({
        "format": "case.v1",
        "case_id": format!("r{i}"),
        "conversation": [{"role": "user", "content": "I have a fever of 39C for three days."}],
        "response": format!("answer number {i}; see a doctor."),
        "tags": ["theme:demo"],
        "rubric": {"format": "rubric.v1", "id": "fever-one", "version": 1, "title": "Fever",
            "criteria": [
                {"id": "see-doctor", "text": "Advises seeing a clinician for fever over 3 days.", "points": 7, "tags": ["axis:accuracy"]}
            ]}
    })
}

/// Which item a recorded judge request was for (its response text names the number).
/// The prompt itself differs between replicas (each draws its own nonce key), so
/// requests are matched by the graded text, not by body.
fn item_of(body: &Value) -> usize {
    let text = body.to_string();
    let at = text.find("answer number ").unwrap() + "answer number ".len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// The most calls in any 60-second sliding window of `times` (sorted).
fn busiest_minute(times: &[std::time::Instant]) -> usize {
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

/// Issue 12's combined test: three real replicas on one Postgres and one Redis, one
/// 2,000-item job under a requests-per-minute limit shared through Redis, one replica
/// SIGKILLed mid-job. Every item has exactly one result, the summary equals a
/// single-node run's, the mock never sees more than the limit in any 60 s sliding
/// window (over a run longer than one window), and the only repeated judge calls are
/// of items the killed replica was grading: first called before the kill, again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_and_redis_share_one_rpm_limit_through_a_sigkill() {
    let test = "three_replicas_on_postgres_and_redis_share_one_rpm_limit_through_a_sigkill";
    let Some(admin) = postgres_url(test) else {
        return;
    };
    let Some(redis) = crate::redis_conformance::redis_url(test) else {
        return;
    };
    let db = fresh_database(&admin).await;
    let (judge, judge_url) =
        mock(Reply::Delay(Duration::from_millis(15), Box::new(met(true)))).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("tribunal-test-{}", uuid::Uuid::now_v7().simple());
    // Each replica may hold 4 calls open; the limit is one for the fleet.
    let cfg = config_with(
        dir.path(),
        "pg-redis",
        &judge_url,
        &db,
        &format!("requests_per_minute = {SHARED_RPM}\nmax_concurrency = 4\n"),
        &format!(
            "[redis]\nurl = \"{redis}\"\nreplicas = 3\nkey_prefix = \"{prefix}\"\nlease_ms = 2000\n"
        ),
    );
    let http = reqwest::Client::new();
    let total = 2000;
    let items: Vec<Value> = (0..total).map(one_criterion_case).collect();

    let mut replicas: Vec<_> = (0..3).map(|_| serve(&cfg)).collect();
    let id = submit(&http, &replicas[0].url, &items).await;
    // Kill replica 1 about a third of the way through (some 35 s in).
    let mut seen = 0;
    for _ in 0..1200 {
        seen = get(&http, format!("{}/v1/jobs/{id}", replicas[0].url)).await["done"]
            .as_u64()
            .unwrap_or(0);
        if seen >= 700 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen >= 700 && seen < total as u64,
        "killed after {seen} items"
    );
    let mut killed = replicas.remove(1);
    let killed_at = std::time::Instant::now();
    killed.child.kill().unwrap(); // SIGKILL: leases (store and Redis) left held.
    killed.child.wait().unwrap();

    let state = wait_done(&http, &replicas[0].url, &id, 400).await;
    assert_eq!(state["done"], total, "{state}");
    let results = all_results(&http, &replicas[1].url, &id).await;
    assert_eq!(results.len(), total, "none lost, none duplicated");
    let cases: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(cases.len(), total, "exactly one result per item");
    assert_counters_match(&state, &results);

    // The shared limit, as the provider sees it.
    let mut times = judge.times.lock().unwrap().clone();
    times.sort();
    let span = *times.last().unwrap() - times[0];
    assert!(
        span > Duration::from_secs(60),
        "the calls span {span:?}: no full 60 s window was observed"
    );
    let busiest = busiest_minute(&times);
    assert!(
        busiest <= SHARED_RPM,
        "{busiest} judge calls in one 60 s window; the shared limit is {SHARED_RPM}"
    );

    // Repeated calls: only items the killed replica had in flight. Each replica grades
    // at most `job_concurrency` (8) items at once, and a repeat needs the first call
    // to have been made before the kill and its verdict never shared.
    let (calls_at, bodies) = {
        let times = judge.times.lock().unwrap();
        let bodies = judge.bodies.lock().unwrap();
        (times.clone(), bodies.clone())
    };
    assert_eq!(calls_at.len(), bodies.len());
    let mut per_item: std::collections::BTreeMap<usize, Vec<std::time::Instant>> =
        std::collections::BTreeMap::new();
    for (t, b) in calls_at.iter().zip(&bodies) {
        per_item.entry(item_of(b)).or_default().push(*t);
    }
    assert_eq!(per_item.len(), total, "every item was judged");
    let repeated: Vec<_> = per_item.iter().filter(|(_, t)| t.len() > 1).collect();
    assert!(
        repeated.len() <= 8,
        "{} items judged more than once: {repeated:?}",
        repeated.len()
    );
    for (item, t) in &repeated {
        assert_eq!(t.len(), 2, "item {item} judged {} times", t.len());
        assert!(
            t[0] < killed_at && t[1] > killed_at,
            "item {item} was judged twice, not across the kill"
        );
    }

    // The same items on one node (SQLite, no Redis, no limit) give the same figures.
    let (_single_judge, single_judge_url) =
        mock(Reply::Delay(Duration::from_millis(15), Box::new(met(true)))).await;
    let single_cfg = config(
        dir.path(),
        "single",
        &single_judge_url,
        &format!("sqlite://{}", dir.path().join("single.db").display()),
    );
    let single = serve(&single_cfg);
    let single_id = submit(&http, &single.url, &items).await;
    wait_done(&http, &single.url, &single_id, 300).await;
    assert_eq!(
        figures(&http, &replicas[0].url, &id).await,
        figures(&http, &single.url, &single_id).await
    );
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let per_minute = (times.len() - 1) as f64 / span.as_secs_f64() * 60.0;
    println!(
        "3 replicas on Postgres + Redis, one SIGKILLed after {seen} of {total} items: \
         {} judge calls over {:.1} s ({per_minute:.0}/min), busiest 60 s window {busiest} \
         of {SHARED_RPM}, {} items judged twice",
        times.len(),
        span.as_secs_f64(),
        repeated.len()
    );
    for mut r in replicas.into_iter().chain([single]) {
        r.child.kill().unwrap();
        r.child.wait().unwrap();
    }
}

/// The sum of `tribunal_store_errors_total` over its kinds in a scrape.
fn store_errors(scrape: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with("tribunal_store_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_postgres_is_unreachable() {
    use sqlx::Connection;
    let Some(admin) = postgres_url("readyz_fails_while_postgres_is_unreachable") else {
        return;
    };
    let db = fresh_database(&admin).await;
    let name = db
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (_judge, judge_url) = mock(met(true)).await;
    let cfg = config(dir.path(), "pg", &judge_url, &db);
    let mut server = serve(&cfg);
    let http = reqwest::Client::new();
    let ready = || async {
        http.get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    let metrics = || async {
        http.get(format!("{}/metrics", server.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = metrics().await;
    assert!(
        before.contains("tribunal_store_pool_connections{state=\"max\"} 16"),
        "{before}"
    );
    let errors_before = store_errors(&before);
    // Closing the database to new connections and ending the server's ones stands for
    // Postgres going down, for this server only (other tests share the cluster).
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    let outage = |allow: bool| format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}");
    sqlx::query(&outage(false))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(ready().await, 503, "not ready without its database");
    let during = metrics().await;
    assert!(
        store_errors(&during) > errors_before,
        "the failed probe is counted: {during}"
    );
    sqlx::query(&outage(true)).execute(&mut conn).await.unwrap();
    let mut back = 0;
    for _ in 0..100 {
        back = ready().await;
        if back == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "ready again once the database is back");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Items/s of one job of `ITEMS` items (default 5,000; three zero-latency simulated
/// judges x 3 criteria, as in `benches/server.rs`) on one SQLite node, then on 1, 2
/// and 3 replicas sharing Postgres. A measurement for BENCHMARKS.md, not a check of
/// speed: `cargo test --test it replicas::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes); run it by name"]
async fn throughput_sqlite_vs_postgres_replicas() {
    let Some(admin) = postgres_url("throughput_sqlite_vs_postgres_replicas") else {
        return;
    };
    let n: usize = std::env::var("ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let items: Vec<Value> = (0..n)
        .map(|i| {
            case(
                &format!("t{i}"),
                &format!("Response {i}: see a doctor, drink fluids."),
            )
        })
        .collect();
    let write = |name: &str, url: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "{}\n[server]\ndatabase_url = \"{url}\"\njob_concurrency = 64\n",
                tribunal::config::DEFAULT_CONFIG
            ),
        )
        .unwrap();
        path
    };
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut runs = vec![("SQLite, 1 node".to_owned(), write("sqlite", &sqlite), 1)];
    for replicas in 1..=3 {
        let db = fresh_database(&admin).await;
        runs.push((
            format!("Postgres, {replicas} replica(s)"),
            write(&format!("pg{replicas}"), &db),
            replicas,
        ));
    }
    for (label, cfg, replicas) in runs {
        let servers: Vec<_> = (0..replicas).map(|_| serve(&cfg)).collect();
        let started = std::time::Instant::now();
        let id = submit(&http, &servers[0].url, &items).await;
        let state = wait_done(&http, &servers[0].url, &id, 1800).await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(state["done"], n);
        #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
        let rate = n as f64 / secs;
        println!("{label}: {n} items in {secs:.1} s = {rate:.0} items/s (submission included)");
        for mut s in servers {
            s.child.kill().unwrap();
            s.child.wait().unwrap();
        }
    }
}
