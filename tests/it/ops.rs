//! Operations, against the real binary: every expression of the committed Grafana
//! dashboard and Prometheus rules, queried on a real Prometheus that scrapes the
//! server after a workload (grades, a job, a calibration run); and OTLP trace export
//! to an in-process collector, with no exporter at all when it is not configured.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};

use crate::root;
use crate::server::case;
use crate::spawn::serve;

/// Kills a child process when dropped, so that a failing assertion does not leave a
/// server or a Prometheus running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `name` on PATH. Missing: a failure under `CI=true` (CI installs it), else `None`
/// and the caller prints `skipped`.
fn required_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{name} is not installed; CI must install Debian's prometheus package (.ci/run does)"
        );
        eprintln!("skipped: {name} is not installed (apt-get install prometheus)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn key_hash(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex().to_string()
}

/// Three simulated judges that fail in every way a provider can (429s with
/// Retry-After, 500s, malformed verdicts, refusals), with prices, one outbound
/// limiter, an escalation judge and two API keys (one with a 1/minute quota), so the
/// workload produces every series the dashboard shows.
fn workload_config(db: &Path) -> String {
    let judge = |name: &str, seed: u32, extra: &str| {
        format!(
            "[judges.{name}]\nprovider = \"sim\"\nmodel = \"{name}\"\nprice_input_per_mtok = 2.5\nprice_output_per_mtok = 10.0\n{extra}\n[judges.{name}.sim]\nseed = {seed}\nlatency_ms = 6\nlatency_jitter_ms = 4\nrate_429 = 0.12\nretry_after_ms = 10\nrate_500 = 0.05\nrate_malformed = 0.04\nrate_refusal = 0.04\n\n"
        )
    };
    format!(
        "{}{}{}{}[committee]\nmembers = [\"sim-a\", \"sim-b\", \"sim-c\"]\nconsensus = \"majority\"\nconsensus_tie = \"escalate\"\nescalation = \"sim-e\"\nquorum = 2\n\n[server]\ndatabase_url = \"sqlite://{}\"\njob_concurrency = 4\n\n[[server.api_keys]]\nname = \"ops\"\nrole = \"admin\"\nblake3 = \"{}\"\n\n[[server.api_keys]]\nname = \"tiny\"\nrole = \"client\"\nblake3 = \"{}\"\nrequests_per_minute = 1\n",
        judge("sim-a", 1, "requests_per_minute = 6000"),
        judge("sim-b", 2, ""),
        judge("sim-c", 3, ""),
        judge("sim-e", 4, ""),
        db.display(),
        key_hash("ops-key"),
        key_hash("tiny-key"),
    )
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth("ops-key");
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let code = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Polls `path` until its `state` is `done`.
    async fn wait_done(&self, path: &str) -> Value {
        let started = Instant::now();
        loop {
            let (code, v) = self.get(path).await;
            assert_eq!(code, 200, "{path}: {v}");
            let state = v.get("state").or_else(|| v.pointer("/job/state"));
            if state == Some(&json!("done")) {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{path} did not finish: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Grades (some twice, for cache hits, and one invalid), a 40-item job and a
/// calibration run of the small example set; plus quota rejections. The phases are
/// spread over several 1s scrapes: a series Prometheus first sees after its counter
/// stopped moving has no increase, and simulated judges finish everything in well
/// under a second.
async fn workload(c: &Client) {
    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    for i in 0..12 {
        let item = case(
            &format!("g{i}"),
            &format!("See a doctor and drink fluids ({i})."),
        );
        let (code, report) = c.post("/v1/grade", &item).await;
        assert_eq!(code, 200, "{report}");
        if i % 3 == 0 {
            let (code, again) = c.post("/v1/grade", &item).await;
            assert_eq!(code, 200, "{again}");
        }
    }
    let mut bad = case("bad", "x");
    bad["rubric"]["criteria"][0]["points"] = json!(12);
    assert_eq!(c.post("/v1/grade", &bad).await.0, 400);
    pause().await;

    let items: Vec<Value> = (0..40)
        .map(|i| {
            case(
                &format!("j{i}"),
                &format!("Rest, fluids, and see a clinician {i}."),
            )
        })
        .collect();
    let (code, job) = c.post("/v1/jobs", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    c.wait_done(&format!("/v1/jobs/{id}")).await;
    pause().await;

    let set =
        std::fs::read_to_string(root().join("calibration/examples/triage-small.jsonl")).unwrap();
    let (code, set) = c
        .post(
            "/v1/calibration/sets",
            &json!({"format": "calibration.v1", "content": set}),
        )
        .await;
    assert_eq!(code, 201, "{set}");
    let (code, run) = c
        .post(
            "/v1/calibration/runs",
            &json!({"set": set["id"], "resamples": 100, "seed": 1}),
        )
        .await;
    assert_eq!(code, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    c.wait_done(&format!("/v1/calibration/runs/{run_id}")).await;
    pause().await;

    // The 1/minute key: the second and third requests are refused by its quota.
    let mut refused = 0;
    for _ in 0..3 {
        let r = c
            .http
            .get(format!("{}/v1/jobs", c.url))
            .bearer_auth("tiny-key")
            .send()
            .await
            .unwrap();
        refused += usize::from(r.status().as_u16() == 429);
    }
    assert_eq!(refused, 2);
}

/// Every panel expression of the dashboard, with Grafana's variables replaced by
/// what Grafana would send for a 1s-scraped Prometheus (README "Operations" says
/// how to do the same by hand).
fn dashboard_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/grafana/tribunal.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "the datasource is a template variable"
    );
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap().to_owned();
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
                .replace("$__interval", "5s");
            assert!(!expr.contains('$'), "{title}: unknown variable in {expr}");
            out.push((title.clone(), expr));
        }
    }
    out
}

async fn prom_query(http: &reqwest::Client, prom: &str, expr: &str) -> Result<usize, String> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), [("query", expr)])
        .unwrap();
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_return_series_on_a_real_prometheus() {
    let Some(prometheus) = required_tool("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(&cfg, workload_config(&dir.path().join("ops.db"))).unwrap();
    let server = serve(&cfg);
    let url = server.url.clone();
    let _server = Reaped(server.child);
    let target = url.trim_start_matches("http://").to_owned();

    let rules = root().join("deploy/prometheus/tribunal.rules.yml");
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: tribunal\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let prom_url = format!("http://127.0.0.1:{port}");
    let _prom = Reaped(
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{prom_url}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    workload(&Client {
        http: http.clone(),
        url,
    })
    .await;

    // The rules Prometheus loaded, as it parsed them: all of the file's, healthy.
    let recorded = rules_text.matches("- record:").count();
    let alerts = rules_text.matches("- alert:").count();
    let mut expressions = dashboard_expressions();
    let started = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{prom_url}/api/v1/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let loaded: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        let of = |kind: &str| loaded.iter().filter(|r| r["type"] == kind).count();
        assert_eq!((of("recording"), of("alerting")), (recorded, alerts), "{v}");
        if loaded.iter().all(|r| r["health"] == "ok") {
            for r in loaded.iter().filter(|r| r["type"] == "recording") {
                let name = r["name"].as_str().unwrap();
                expressions.push((
                    format!("rule {name}"),
                    r["query"].as_str().unwrap().to_owned(),
                ));
                expressions.push((format!("series {name}"), name.to_owned()));
            }
            break;
        }
        let sick: Vec<_> = loaded.iter().filter(|r| r["health"] == "err").collect();
        assert!(sick.is_empty(), "rules failing to evaluate: {sick:#?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rules never evaluated: {v}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Each expression parses at once; series may need a few scrapes and rule
    // evaluations after the workload (rates need two samples), so empty results are
    // retried for a while before they fail.
    let started = Instant::now();
    loop {
        let mut empty = Vec::new();
        for (what, expr) in &expressions {
            match prom_query(&http, &prom_url, expr).await {
                Ok(0) => empty.push(format!("{what}: {expr}")),
                Ok(_) => {}
                Err(e) => panic!("{what}: `{expr}` does not parse or evaluate: {e}"),
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(45),
            "expressions with no series:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(expressions.len() > 40, "{} expressions", expressions.len());
}

/// An OTLP/HTTP collector: decodes every export request it receives.
async fn collector() -> (Arc<Mutex<Vec<ExportTraceServiceRequest>>>, String) {
    let got: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let sink = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                sink.lock().unwrap().push(req);
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (got, format!("http://{addr}"))
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

fn text_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The names of the threads of process `pid` (Linux: /proc/<pid>/task/*/comm).
#[cfg(target_os = "linux")]
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

fn config_with(db: &Path, extra: &str) -> String {
    format!(
        "{}\n[server]\ndatabase_url = \"sqlite://{}\"\n{extra}",
        tribunal::config::DEFAULT_CONFIG,
        db.display()
    )
}

/// SIGTERM (graceful shutdown, which flushes the exporter), then waits for the exit.
fn terminate(mut child: Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_with_their_parentage_and_attributes() {
    let (got, endpoint) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(
        &cfg,
        config_with(
            &dir.path().join("t.db"),
            &format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"tribunal-ops-test\"\n"),
        ),
    )
    .unwrap();
    let server = serve(&cfg);
    #[cfg(target_os = "linux")]
    assert!(
        thread_names(server.child.id())
            .iter()
            .any(|n| n.starts_with("OpenTelemetry")),
        "the exporter's thread runs when an endpoint is set: {:?}",
        thread_names(server.child.id())
    );
    let r = reqwest::Client::new()
        .post(format!("{}/v1/grade", server.url))
        .header("x-request-id", "ops-trace-1")
        .json(&case("c-trace", "See a doctor and drink fluids."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let child = server.child;
    tokio::task::spawn_blocking(move || terminate(child))
        .await
        .unwrap();

    let requests = got.lock().unwrap().clone();
    assert!(!requests.is_empty(), "nothing was exported");
    let mut spans: Vec<Span> = Vec::new();
    for req in &requests {
        for rs in &req.resource_spans {
            let resource = rs.resource.as_ref().unwrap();
            assert_eq!(
                text_attr(&resource.attributes, "service.name").as_deref(),
                Some("tribunal-ops-test")
            );
            spans.extend(rs.scope_spans.iter().flat_map(|s| s.spans.iter().cloned()));
        }
    }
    let request = spans
        .iter()
        .find(|s| {
            s.name == "request"
                && text_attr(&s.attributes, "request_id").as_deref() == Some("ops-trace-1")
        })
        .unwrap_or_else(|| {
            panic!(
                "no request span for ops-trace-1 in {:#?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        text_attr(&request.attributes, "route").as_deref(),
        Some("/v1/grade")
    );
    assert_eq!(
        text_attr(&request.attributes, "method").as_deref(),
        Some("POST")
    );
    let children = |parent: &Span, name: &str| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
            .inspect(|s| assert_eq!(s.trace_id, parent.trace_id, "{name} shares its trace"))
            .cloned()
            .collect()
    };
    let grades = children(request, "grade");
    assert_eq!(grades.len(), 1, "one grade span under the request");
    assert_eq!(
        text_attr(&grades[0].attributes, "case_id").as_deref(),
        Some("c-trace")
    );
    let criteria = children(&grades[0], "criterion");
    // Three criteria, each asked of three judges.
    assert_eq!(criteria.len(), 9, "criterion spans under grade");
    let mut calls = 0;
    for c in &criteria {
        let judge = text_attr(&c.attributes, "judge").unwrap();
        assert!(judge.starts_with("sim-"), "{judge}");
        for call in children(c, "judge_call") {
            assert_eq!(text_attr(&call.attributes, "judge"), Some(judge.clone()));
            assert_eq!(text_attr(&call.attributes, "model"), Some(judge.clone()));
            calls += 1;
        }
    }
    assert_eq!(calls, 9, "one judge_call under each criterion");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_no_exporter_thread_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(&cfg, config_with(&dir.path().join("t.db"), "")).unwrap();
    let server = serve(&cfg);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/grade", server.url))
        .json(&case("c-off", "See a doctor."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let names = thread_names(server.child.id());
    let _server = Reaped(server.child);
    assert!(!names.is_empty());
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("OpenTelemetry") || n.starts_with("reqwest")),
        "no exporter threads without [telemetry] otlp_endpoint: {names:?}"
    );
}
