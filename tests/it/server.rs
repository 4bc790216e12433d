//! The server over HTTP: every route, errors, auth, quotas, cancel, follow-streaming,
//! metrics and the OpenAPI document, against `TestApp::spawn()` (port 0, temp SQLite,
//! simulated or mock judges).

use std::time::Duration;

use serde_json::{Value, json};
use tribunal::app::{LoadConfig as _, Running, start};
use tribunal::config::Config;

pub struct TestApp {
    pub url: String,
    pub grpc_url: String,
    pub http: reqwest::Client,
    pub running: Option<Running>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Default config (three simulated judges) plus `extra` TOML appended.
    pub async fn spawn(extra: &str) -> TestApp {
        Self::spawn_with(tribunal::config::DEFAULT_CONFIG, extra, &[]).await
    }

    pub async fn spawn_with(base: &str, extra: &str, env: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let path = dir.path().join("tribunal.toml");
        std::fs::write(&path, format!("{base}\n{extra}\n")).unwrap();
        let mut vars: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.push((
            "TRIBUNAL__SERVER__DATABASE_URL".into(),
            format!("\"sqlite://{}\"", db.display()),
        ));
        let cfg = Config::load(Some(&path), vars).unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = start(&cfg, http, Some(grpc)).await.unwrap();
        TestApp {
            url: format!("http://{}", running.http_addr),
            grpc_url: format!("http://{}", running.grpc_addr.unwrap()),
            http: reqwest::Client::new(),
            running: Some(running),
            _dir: dir,
        }
    }

    /// The server's SQLite file (to damage stored data on purpose).
    pub fn db_path(&self) -> std::path::PathBuf {
        self._dir.path().join("t.db")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, body.to_string()).await
    }

    pub async fn post_raw(&self, path: &str, body: String) -> (u16, Value) {
        self.post_as(path, "application/json", body).await
    }

    /// POSTs `body` with this `Content-Type`.
    pub async fn post_as(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Polls a job until it leaves queued/running.
    pub async fn wait_job(&self, id: &str) -> Value {
        for _ in 0..600 {
            let (_, j) = self.get(&format!("/v1/jobs/{id}")).await;
            if j["state"] == "done" || j["state"] == "cancelled" {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not finish");
    }
}

pub fn case(id: &str, response: &str) -> Value {
    json!({
        "format": "case.v1",
        "case_id": id,
        "conversation": [{"role": "user", "content": "I have a fever of 39C for three days."}],
        "response": response,
        "tags": ["theme:demo"],
        "rubric": {"format": "rubric.v1", "id": "fever", "version": 1, "title": "Fever",
            "criteria": [
                {"id": "see-doctor", "text": "Advises seeing a clinician for fever over 3 days.", "points": 7, "tags": ["axis:accuracy"]},
                {"id": "fluids", "text": "Recommends fluids.", "points": 3, "tags": ["axis:completeness"]},
                {"id": "antibiotics", "text": "Recommends antibiotics without evaluation.", "points": -6, "tags": ["axis:accuracy"], "veto": true}
            ]}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_grade_and_error_bodies() {
    let app = TestApp::spawn("").await;
    assert_eq!(app.get("/healthz").await.0, 200);
    let (code, ready) = app.get("/readyz").await;
    assert_eq!(code, 200);
    assert_eq!(ready["simulated"], true);

    let (code, report) = app
        .post("/v1/grade", &case("c1", "See a doctor and drink fluids."))
        .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["format"], "grade_report.v1");
    assert_eq!(report["simulated"], true);
    assert_eq!(report["criteria"].as_array().unwrap().len(), 3);
    assert_eq!(
        report["criteria"][0]["ballots"].as_array().unwrap().len(),
        3
    );

    // Bad input: a clear error naming the field, with the request id echoed.
    let mut bad = case("c2", "x");
    bad["rubric"]["criteria"][0]["points"] = json!(12);
    let r = app
        .http
        .post(format!("{}/v1/grade", app.url))
        .header("x-request-id", "req-123")
        .header("content-type", "application/json")
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["x-request-id"], "req-123");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "invalid_input");
    assert_eq!(body["error"]["field"], "rubric.criteria[0].points");
    assert_eq!(body["error"]["request_id"], "req-123");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside [-10, 10]")
    );

    let (code, body) = app.post_raw("/v1/grade", "{not json".into()).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON"),
        "{body}"
    );
    let (code, body) = app.post("/v1/grade", &json!({"case_id": "x", "conversation": [{"role": "user", "content": "q"}], "response": "r", "rubric": "missing@1"})).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["error"]["kind"], "not_found");
    // Every response carries a request id, generated when the client sent none.
    let r = app
        .http
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rubric_routes_store_immutable_versions() {
    let app = TestApp::spawn("").await;
    let rubric = case("x", "y")["rubric"].clone();
    let (code, stored) = app.post("/v1/rubrics", &rubric).await;
    assert_eq!(code, 201, "{stored}");
    assert_eq!(stored["criteria"][0]["id"], "see-doctor");
    assert_eq!(
        app.post("/v1/rubrics", &rubric).await.0,
        200,
        "identical content is idempotent"
    );
    let mut changed = rubric.clone();
    changed["title"] = json!("Other");
    let (code, body) = app.post("/v1/rubrics", &changed).await;
    assert_eq!(code, 409);
    assert_eq!(body["error"]["kind"], "conflict");
    changed["version"] = json!(2);
    assert_eq!(app.post("/v1/rubrics", &changed).await.0, 201);
    assert_eq!(app.get("/v1/rubrics/fever").await.1["version"], 2);
    assert_eq!(
        app.get("/v1/rubrics/fever/versions/1").await.1["title"],
        "Fever"
    );
    assert_eq!(
        app.get("/v1/rubrics/fever/versions").await.1["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(app.get("/v1/rubrics").await.1["rubrics"][0]["version"], 2);
    assert_eq!(app.get("/v1/rubrics/nope").await.0, 404);
    assert_eq!(app.get("/v1/rubrics/fever/versions/9").await.0, 404);
    let (code, v) = app
        .post(
            "/v1/rubrics/validate",
            &json!({"format": "rubric.v1", "id": "r", "version": 1, "title": "t", "criteria": []}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["field"], "criteria");
    // A case can name a stored rubric by reference.
    let mut by_ref = case("c-ref", "See a doctor.");
    by_ref["rubric"] = json!("fever@1");
    let (code, report) = app.post("/v1/grade", &by_ref).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["rubric"], "fever@1");
    app.running.unwrap().stop().await;
}

/// A job's counters (status document) equal the sums over its result lines: every
/// count exact, the cost to rounding.
pub fn assert_counters_match(status: &Value, results: &[Value]) {
    let failed = results.iter().filter(|r| r.get("error").is_some()).count() as u64;
    let done = results.len() as u64 - failed;
    let abstained = results
        .iter()
        .filter(|r| r["abstentions"].as_array().is_some_and(|a| !a.is_empty()))
        .count() as u64;
    let sum = |k: &str| -> u64 {
        results
            .iter()
            .map(|r| r["usage"][k].as_u64().unwrap_or(0))
            .sum()
    };
    let cost: f64 = results
        .iter()
        .map(|r| r["usage"]["cost_usd"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(status["done"], done, "{status}");
    assert_eq!(status["failed"], failed, "{status}");
    assert_eq!(status["abstained"], abstained, "{status}");
    assert_eq!(status["calls"], sum("upstream_calls"), "{status}");
    assert_eq!(status["input_tokens"], sum("input_tokens"), "{status}");
    assert_eq!(status["output_tokens"], sum("output_tokens"), "{status}");
    assert_eq!(
        status["cached_input_tokens"],
        sum("cached_input_tokens"),
        "{status}"
    );
    assert_eq!(
        status["reasoning_tokens"],
        sum("reasoning_tokens"),
        "{status}"
    );
    let counted = status["cost_usd"].as_f64().unwrap();
    assert!(
        (counted - cost).abs() <= 1e-9 * cost.max(1.0),
        "cost {counted} vs {cost}"
    );
    assert_eq!(
        status["pending"].as_u64().unwrap(),
        status["total"].as_u64().unwrap() - done - failed,
        "{status}"
    );
}

/// Every result line of a finished job (no follow).
pub async fn all_results(http: &reqwest::Client, base: &str, id: &str) -> Vec<Value> {
    let text = http
        .get(format!("{base}/v1/jobs/{id}/results"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_counters_stay_exact_under_concurrent_completion_and_faults() {
    // Jittered latency so items finish out of order, and faults so some ballots
    // abstain and some items fail outright (an unknown rubric reference cannot
    // happen at submission, so failures come from lost quorums).
    let base = tribunal::config::DEFAULT_CONFIG
        .replace("seed = 1\n", "seed = 1\nlatency_ms = 6\nlatency_jitter_ms = 5\nrate_malformed = 0.3\nrate_500 = 0.2\n")
        .replace("seed = 2\n", "seed = 2\nlatency_ms = 6\nlatency_jitter_ms = 5\nrate_refusal = 0.3\n")
        .replace("seed = 3\n", "seed = 3\nlatency_ms = 6\nlatency_jitter_ms = 5\nrate_malformed = 0.4\n")
        .replace("provider = \"sim\"\n", "provider = \"sim\"\nprice_input_per_mtok = 2.0\nprice_output_per_mtok = 8.0\n");
    let app = TestApp::spawn_with(&base, "[server]\njob_concurrency = 32\n", &[]).await;
    let items: Vec<Value> = (0..240)
        .map(|i| case(&format!("c{i}"), &format!("concurrent answer {i}")))
        .collect();
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Status read while items complete is consistent at every read.
    let mut polls = 0;
    loop {
        let (_, st) = app.get(&format!("/v1/jobs/{id}")).await;
        let (d, f, p, t) = (
            st["done"].as_u64().unwrap(),
            st["failed"].as_u64().unwrap(),
            st["pending"].as_u64().unwrap(),
            st["total"].as_u64().unwrap(),
        );
        assert_eq!(d + f + p, t, "{st}");
        polls += 1;
        if st["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = app.wait_job(&id).await;
    let results = all_results(&app.http, &app.url, &id).await;
    assert_eq!(results.len(), 240);
    assert!(
        status["abstained"].as_u64().unwrap() > 0,
        "the faults produce abstentions: {status}"
    );
    assert!(status["cost_usd"].as_f64().unwrap() > 0.0, "{status}");
    assert_counters_match(&status, &results);
    // The list shows the same counters as the job itself.
    let (_, list) = app.get("/v1/jobs").await;
    let listed = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap()
        .clone();
    for k in [
        "done",
        "failed",
        "abstained",
        "calls",
        "input_tokens",
        "cost_usd",
    ] {
        assert_eq!(listed[k], status[k], "{k}");
    }
    assert!(polls > 1);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_stream_summarise_and_cancel() {
    let app = TestApp::spawn("").await;
    let items: Vec<Value> = (0..30)
        .map(|i| case(&format!("job-{i}"), &format!("answer {i}")))
        .collect();
    let (code, job) = app
        .post("/v1/jobs?seed=3", &Value::Array(items.clone()))
        .await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    // Follow-streaming returns every result exactly once, then ends with the job.
    let text = app
        .http
        .get(format!("{}/v1/jobs/{id}/results?follow=true", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 30, "{text}");
    let ids: std::collections::BTreeSet<_> = lines
        .iter()
        .map(|l| l["case_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30);
    let done = app.wait_job(&id).await;
    assert_eq!(done["done"], 30);
    assert_eq!(done["pending"], 0);
    let (_, summary) = app.get(&format!("/v1/jobs/{id}/summary")).await;
    assert_eq!(
        summary["overall"]["n"].as_u64().unwrap()
            + summary["excluded"]["incomplete"].as_u64().unwrap(),
        30
    );
    assert_eq!(summary["seed"], 3);
    assert!(summary["tags"]["theme:demo"]["n"].as_u64().is_some());
    // The job summary takes the same length adjustment as `score`, on both
    // transports; the raw figures do not change.
    assert!(summary["overall_length_adjusted"].is_null(), "{summary}");
    let (code, adjusted) = app
        .get(&format!(
            "/v1/jobs/{id}/summary?length_adjustment=professional"
        ))
        .await;
    assert_eq!(code, 200, "{adjusted}");
    assert_eq!(adjusted["overall"], summary["overall"]);
    assert_eq!(
        adjusted["overall_length_adjusted"]["n"], summary["overall"]["n"],
        "{adjusted}"
    );
    // Short answers ("answer N") gain under the two-sided adjustment.
    assert!(
        adjusted["overall_length_adjusted"]["score"]
            .as_f64()
            .unwrap()
            >= summary["overall"]["score"].as_f64().unwrap(),
        "{adjusted}"
    );
    // A done job's figures were computed and kept when it finished, with a note that
    // every stored score object is exactly the entry the summary writes (so the
    // entries are copied). The summary serves the kept figures (a doctored copy shows
    // through), and gives the same document when the entries must be re-written or
    // the figures are gone and computed on request.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    let kept: String = sqlx::query_scalar("SELECT figures FROM jobs WHERE id = ?")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let kept: Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(kept["figures"]["overall"], summary["overall"], "{kept}");
    assert_eq!(kept["verbatim_entries"], true, "{kept}");
    let mut doctored = kept.clone();
    doctored["figures"]["overall"]["score"] = json!(0.125);
    let mut rewritten = kept.clone();
    rewritten["verbatim_entries"] = json!(false);
    for figures in [Some(&doctored), Some(&rewritten), None] {
        sqlx::query("UPDATE jobs SET figures = ? WHERE id = ?")
            .bind(figures.map(Value::to_string))
            .bind(&id)
            .execute(&pool)
            .await
            .unwrap();
        let (code, again) = app.get(&format!("/v1/jobs/{id}/summary")).await;
        assert_eq!(code, 200, "{again}");
        if figures == Some(&doctored) {
            assert_eq!(again["overall"]["score"], 0.125, "{again}");
            assert_eq!(again["examples"], summary["examples"]);
        } else {
            assert_eq!(again, summary);
        }
    }
    pool.close().await;
    let (code, bad) = app
        .get(&format!("/v1/jobs/{id}/summary?length_adjustment=long"))
        .await;
    assert_eq!(code, 400, "{bad}");
    assert_eq!(bad["error"]["field"], "length_adjustment");
    let mut grpc =
        tribunal::api::grpc::pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
            .await
            .unwrap();
    let doc = grpc
        .get_job_summary(tribunal::api::grpc::pb::GetJobSummaryRequest {
            id: id.clone(),
            length_adjustment: "professional".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let over_grpc: Value = serde_json::from_str(&doc.json).unwrap();
    assert_eq!(
        over_grpc["overall_length_adjusted"],
        adjusted["overall_length_adjusted"]
    );

    // NDJSON body and the {rubric, items} form.
    app.post("/v1/rubrics", &items[0]["rubric"]).await;
    let ndjson: String = items[..3].iter().map(|i| format!("{i}\n")).collect();
    let r = app
        .post_as("/v1/jobs", "application/x-ndjson", ndjson)
        .await;
    assert_eq!(r.0, 202, "{}", r.1);
    let bare: Vec<Value> = (0..2)
        .map(|i| json!({"case_id": format!("b{i}"), "conversation": [{"role": "user", "content": "q"}], "response": "r"}))
        .collect();
    let r = app
        .post("/v1/jobs", &json!({"rubric": "fever@1", "items": bare}))
        .await;
    assert_eq!(r.0, 202, "{}", r.1);
    assert_eq!(app.wait_job(r.1["id"].as_str().unwrap()).await["done"], 2);

    // An invalid item rejects the whole job, naming the item and field.
    let mut bad = items[..2].to_vec();
    bad[1]["rubric"]["criteria"][0]["tier"] = json!("vital");
    let (code, body) = app.post("/v1/jobs", &Value::Array(bad)).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("items[1].rubric.criteria[0]"),
        "{body}"
    );

    // Listing with paging.
    let (_, page) = app.get("/v1/jobs?limit=2").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, page2) = app.get(&format!("/v1/jobs?limit=2&after={next}")).await;
    assert_ne!(page2["jobs"][0]["id"], page["jobs"][0]["id"]);
    assert_eq!(app.get("/v1/jobs/does-not-exist").await.0, 404);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_slow_job() {
    let slow = "[judges.sim-a.sim]\nlatency_ms = 200\n";
    let base = tribunal::config::DEFAULT_CONFIG.replace("[judges.sim-a.sim]\nseed = 1\n", "");
    let app = TestApp::spawn_with(
        &base,
        &format!("{slow}seed = 1\n[server]\njob_concurrency = 2\n"),
        &[],
    )
    .await;
    let items: Vec<Value> = (0..40)
        .map(|i| case(&format!("s{i}"), &format!("slow {i}")))
        .collect();
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = app
        .http
        .delete(format!("{}/v1/jobs/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let j = app.wait_job(id).await;
    assert_eq!(j["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (_, after) = app.get(&format!("/v1/jobs/{id}")).await;
    assert!(after["done"].as_u64().unwrap() < 40, "{after}");
    assert!(after["pending"].as_u64().unwrap() > 0);
    // Items in flight at the cancel were recorded, and counted exactly once.
    assert_counters_match(&after, &all_results(&app.http, &app.url, id).await);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_quotas_and_limits() {
    let keys = "[server]\nmax_items_per_job = 5\nmax_body_bytes = 20000\n[[server.api_keys]]\nname = \"ci\"\nkey_env = \"TEST_KEY_CI\"\nrequests_per_minute = 4\nmax_concurrent_jobs = 1\n";
    // The key env var is read at load: without it the config is refused, loudly.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.toml");
    std::fs::write(&p, format!("{}\n{keys}", tribunal::config::DEFAULT_CONFIG)).unwrap();
    let err = Config::load(Some(&p), std::iter::empty()).unwrap_err();
    assert!(
        err.problems()
            .iter()
            .any(|e| e.contains("server.api_keys[0].key_env")),
        "{:?}",
        err.problems()
    );

    let slow =
        tribunal::config::DEFAULT_CONFIG.replace("seed = 1\n", "seed = 1\nlatency_ms = 300\n");
    let app = TestApp::spawn_with(&slow, keys, &[("TEST_KEY_CI", "s3cret")]).await;
    let send = |body: Value, key: Option<&str>| {
        let mut r = app
            .http
            .post(format!("{}/v1/jobs", app.url))
            .body(body.to_string());
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.send()
    };
    let one = Value::Array(vec![case("a1", "x")]);
    let r = send(one.clone(), None).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["kind"],
        "unauthenticated"
    );
    assert_eq!(
        send(one.clone(), Some("wrong"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // Open endpoints stay open.
    assert_eq!(app.get("/healthz").await.0, 200);
    // 1: too many items -> 413 naming the limit.
    let six = Value::Array((0..6).map(|i| case(&format!("m{i}"), "x")).collect());
    let r = send(six, Some("s3cret")).await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_items_per_job")
    );
    // 2: body over max_body_bytes -> 413.
    let big = "x".repeat(30_000);
    let r = send(Value::Array(vec![case("big", &big)]), Some("s3cret"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // 3: accepted. 4: the concurrent-jobs quota (1) is full -> 429.
    assert_eq!(
        send(one.clone(), Some("s3cret"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let r = send(one.clone(), Some("s3cret")).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // 5: the per-key request quota (4/min) is spent -> 429 with Retry-After.
    let r = send(one, Some("s3cret")).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_public_bind_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.toml");
    std::fs::write(&p, tribunal::config::DEFAULT_CONFIG).unwrap();
    let db = format!("\"sqlite://{}\"", dir.path().join("x.db").display());
    let cfg = Config::load(
        Some(&p),
        vec![("TRIBUNAL__SERVER__DATABASE_URL".to_owned(), db)],
    )
    .unwrap();
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = start(&cfg, l, None).await.err().unwrap();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_openapi() {
    let app = TestApp::spawn("").await;
    app.post("/v1/grade", &case("m1", "answer")).await;
    app.get("/v1/jobs/nope").await;
    let text = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "tribunal_http_requests_total",
        "tribunal_http_request_duration_seconds",
        "tribunal_judge_calls_total",
        "tribunal_judge_call_duration_seconds",
        "tribunal_judge_tokens_total",
        "tribunal_cache_lookups_total",
        "tribunal_consensus_total",
        "tribunal_jobs",
        "tribunal_job_items_pending",
        "tribunal_judge_calls_in_flight",
        "tribunal_grade_duration_seconds",
        "tribunal_ballots_total",
        "tribunal_build_info",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    // Labels carry bounded values only: route templates, never ids or raw paths.
    assert!(text.contains("route=\"/v1/jobs/{id}\""), "route templates");
    assert!(!text.contains("/v1/jobs/nope"));
    assert!(!text.contains("m1"), "no case ids in labels");
    let allowed_labels = [
        "route",
        "method",
        "status",
        "judge",
        "outcome",
        "direction",
        "tier",
        "result",
        "reason",
        "kind",
        "policy",
        "state",
        "key",
        // Calibration sets by server-made id, never by their free-text name.
        "set_id",
        "rater",
        "bound",
        "version",
        "commit",
        // Redis metrics: the component that sent a command, a cache flight's role.
        "component",
        "role",
        "le",
    ];
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('{'))
    {
        let labels = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap();
            assert!(
                allowed_labels.contains(&key),
                "unexpected label {key} in {line}"
            );
        }
    }
    let (code, doc) = app.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/v1/grade",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/results",
        "/v1/jobs/{id}/summary",
        "/v1/rubrics",
        "/v1/rubrics/validate",
        "/v1/rubrics/{id}",
        "/v1/rubrics/{id}/versions",
        "/v1/rubrics/{id}/versions/{version}",
        "/v1/judges",
        "/v1/calibration/sets",
        "/v1/calibration/sets/{id}",
        "/v1/calibration/sets/{id}/labels",
        "/v1/calibration/runs",
        "/v1/calibration/runs/{id}",
        "/v1/calibration/runs/{id}/disagreements",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains(&p),
            "{p} missing from openapi.json: {paths:?}"
        );
    }
    let (_, judges) = app.get("/v1/judges").await;
    assert_eq!(judges["judges"].as_array().unwrap().len(), 3);
    assert_eq!(judges["simulated"], true);
    assert_eq!(judges["committee"]["prompts"], "v3");
    assert_eq!(judges["committee"]["explanations"], true);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_records_in_flight_items_and_the_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    let slow = tribunal::config::DEFAULT_CONFIG
        .replace("seed = 1\n", "seed = 1\nlatency_ms = 150\n")
        .replace("seed = 2\n", "seed = 2\nlatency_ms = 150\n")
        .replace("seed = 3\n", "seed = 3\nlatency_ms = 150\n");
    std::fs::write(
        &path,
        format!(
            "{slow}\n[server]\njob_concurrency = 4\ndatabase_url = \"sqlite://{}\"\n",
            dir.path().join("g.db").display()
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(&path), std::iter::empty()).unwrap();
    let boot = || async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        start(&cfg, l, None).await.unwrap()
    };
    let first = boot().await;
    let service = first.service.clone();
    let lines: Vec<String> = (0..40)
        .map(|i| case(&format!("g{i}"), &format!("graceful {i}")).to_string())
        .collect();
    let admin = tribunal::service::Caller::local_admin();
    let job = service.submit_job(&admin, lines, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Stop: no new items start; the ones in flight finish and are recorded.
    first.stop().await;
    let second = boot().await;
    let after_stop = second.service.job(&admin, &job.id).await.unwrap();
    assert!(
        after_stop.done > 0 && after_stop.done < 40,
        "{after_stop:?}"
    );
    for _ in 0..400 {
        if second
            .service
            .job(&admin, &job.id)
            .await
            .unwrap()
            .state
            .is_final()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = second.service.job(&admin, &job.id).await.unwrap();
    assert_eq!(
        (done.done, done.failed, done.pending),
        (40, 0, 0),
        "{done:?}"
    );
    let page = second
        .service
        .results(&admin, &job.id, 0, 100)
        .await
        .unwrap();
    assert_eq!(page.rows.len(), 40, "every item recorded exactly once");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_summary_keeps_the_undefined_reason() {
    // undef-fx-1's rubric has only negative points: its score is undefined.
    let app = TestApp::spawn("").await;
    let items: Vec<Value> =
        std::fs::read_to_string(crate::root().join("tests/fixtures/grade-undefined.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let cases = [
        ("undef-fx-1", Value::from("no_positive_points")),
        ("undef-fx-2", Value::Null),
    ];
    for ((id, reason), item) in cases.iter().zip(&items) {
        let (code, report) = app.post("/v1/grade", item).await;
        assert_eq!(code, 200, "{report}");
        assert_eq!(
            report["score"]["undefined_reason"], *reason,
            "{id}: {report}"
        );
    }
    let (code, job) = app.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_job(&id).await["done"], 2);
    let (code, summary) = app.get(&format!("/v1/jobs/{id}/summary")).await;
    assert_eq!(code, 200, "{summary}");
    for (case_id, reason) in cases {
        assert_eq!(
            crate::summary_example(&summary, case_id)["undefined_reason"],
            reason,
            "{case_id}: {summary}"
        );
    }
    assert_eq!(summary["excluded"]["undefined"], 1, "{summary}");
    app.running.unwrap().stop().await;
}

/// Rows in the server's store: (jobs, job items).
async fn stored_rows(app: &TestApp) -> (i64, i64) {
    let url = format!("sqlite://{}", app.db_path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_items")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (jobs, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_submissions_stream_past_the_body_limit_and_stay_all_or_nothing() {
    let slow =
        tribunal::config::DEFAULT_CONFIG.replace("seed = 1\n", "seed = 1\nlatency_ms = 50\n");
    let app = TestApp::spawn_with(
        &slow,
        "[server]\nmax_body_bytes = 4096\nmax_items_per_job = 3000\njob_concurrency = 2\n",
        &[],
    )
    .await;
    let (code, _) = app.post("/v1/rubrics", &case("r", "r")["rubric"]).await;
    assert_eq!(code, 201);
    let line = |i: usize| {
        json!({"case_id": format!("n{i}"), "conversation": [{"role": "user", "content": "q"}],
               "response": format!("answer {i}"), "rubric": "fever@1"})
        .to_string()
    };
    let ndjson = |n: usize, bad: Option<usize>| -> String {
        (0..n)
            .map(|i| {
                if Some(i) == bad {
                    json!({"case_id": format!("n{i}"), "conversation": [], "rubric": "fever@1"})
                        .to_string()
                        + "\n"
                } else {
                    line(i) + "\n"
                }
            })
            .collect()
    };

    // 2,500 items, ~60 times the body limit: NDJSON has no size limit, only an item
    // count; the items land in two staged batches and then become one job.
    let body = ndjson(2500, None);
    assert!(body.len() > 40 * 4096);
    let (code, job) = app.post_as("/v1/jobs", "application/x-ndjson", body).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["total"], 2500);
    // Visible as a job at once (its runner may already have started it).
    assert!(
        job["state"] == "queued" || job["state"] == "running",
        "{job}"
    );
    let id = job["id"].as_str().unwrap().to_owned();
    app.http
        .delete(format!("{}/v1/jobs/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(stored_rows(&app).await, (1, 2500));

    // An invalid item after 2,000 stored ones: 400 naming it, and no trace of the
    // submission in the store or in the job list.
    let (code, body) = app
        .post_as("/v1/jobs", "application/x-ndjson", ndjson(2400, Some(2300)))
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["field"], "items[2300].conversation", "{body}");
    assert_eq!(stored_rows(&app).await, (1, 2500));
    let (_, list) = app.get("/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1, "{list}");

    // More items than server.max_items_per_job: 413 naming the setting, nothing kept.
    let (code, body) = app
        .post_as("/v1/jobs", "application/x-ndjson", ndjson(3001, None))
        .await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_items_per_job"),
        "{body}"
    );
    assert_eq!(stored_rows(&app).await, (1, 2500));

    // One document (a JSON array) is still read whole, so the byte limit holds, and
    // the error says how to send a large job.
    let array = format!("[{}]", (0..100).map(line).collect::<Vec<_>>().join(","));
    let (code, body) = app.post_raw("/v1/jobs", array).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NDJSON"),
        "{body}"
    );
    assert_eq!(stored_rows(&app).await, (1, 2500));

    // gRPC's client-streaming SubmitJobStream: the same intake, chunk by chunk.
    use tribunal::api::grpc::pb;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let chunks = |bad: Option<usize>| {
        let lines: Vec<String> = ndjson(2400, bad).lines().map(str::to_owned).collect();
        let chunks: Vec<pb::SubmitJobChunk> = lines
            // Each message within server.max_body_bytes (4096), as for HTTP lines.
            .chunks(10)
            .map(|c| pb::SubmitJobChunk {
                items_json: c.to_vec(),
                seed: 9,
            })
            .collect();
        futures::stream::iter(chunks)
    };
    let job = grpc
        .submit_job_stream(chunks(None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.total, 2400);
    assert!(
        ["queued", "running"].contains(&job.state.as_str()),
        "{job:?}"
    );
    grpc.cancel_job(pb::CancelJobRequest { id: job.id })
        .await
        .unwrap();
    assert_eq!(stored_rows(&app).await, (2, 4900));
    let e = grpc
        .submit_job_stream(chunks(Some(2100)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("items[2100].conversation"), "{e:?}");
    assert_eq!(stored_rows(&app).await, (2, 4900));
    app.running.unwrap().stop().await;
}
