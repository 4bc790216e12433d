//! The edge of both transports (issue 24, items 3 and 9): a keyless server's
//! Content-Type and Host rules, limits read from headers, gRPC's message limit and
//! codec errors, clipped echoes, header and body timeouts, failed-key backoff, the
//! case of `Bearer`, UI streams ending at sign-out, and masked URLs in `config check`.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

use crate::server::{TestApp, case};
use crate::ui::{Client, ENV, KEYS};

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Sends `request` as is and reads the answer until the server closes the connection
/// (or `wait` passes): the raw bytes, as text.
async fn raw(url: &str, request: &[u8], wait: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr_of(url)).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

/// A POST of `body` with exactly these headers.
fn post_bytes(path: &str, host: &str, content_type: Option<&str>, body: &str) -> Vec<u8> {
    let ct = content_type.map_or_else(String::new, |t| format!("Content-Type: {t}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{ct}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn get_bytes(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_writes_need_a_json_ndjson_or_csv_content_type() {
    let app = TestApp::spawn("").await;
    let host = addr_of(&app.url);
    let body = case("c1", "Rest and fluids.").to_string();
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let r = raw(
            &app.url,
            &post_bytes("/v1/grade", &host, ct, &body),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(status_of(&r), 415, "{ct:?}: {r}");
        assert!(
            r.contains("application/json, application/x-ndjson, text/csv"),
            "{ct:?}: the accepted types are named: {r}"
        );
    }
    // A body-less write (undo) has no type to check: from another site's page (which
    // a browser marks with `Origin`) it is refused; from the server's own origin or a
    // tool (no `Origin`) it reaches the handler (404: no such set).
    let undo = "/v1/calibration/sets/x/labels/undo";
    let with_origin = |origin: &str| {
        let mut req = String::from_utf8(post_bytes(undo, &host, None, "")).unwrap();
        req = req.replacen("\r\n", &format!("\r\nOrigin: {origin}\r\n"), 1);
        req.into_bytes()
    };
    for (origin, expected) in [
        ("https://attacker.example".to_owned(), 403),
        ("null".to_owned(), 403),
        (format!("http://{host}.attacker.example"), 403),
        (format!("http://{host}"), 404),
    ] {
        let r = raw(&app.url, &with_origin(&origin), Duration::from_secs(30)).await;
        assert_eq!(status_of(&r), expected, "{origin}: {r}");
    }
    let r = raw(
        &app.url,
        &post_bytes(undo, &host, None, ""),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status_of(&r), 404, "{r}");
    // A method the route does not have is the router's 405, not a type error.
    let put = String::from_utf8(post_bytes("/v1/judges", &host, None, ""))
        .unwrap()
        .replacen("POST", "PUT", 1);
    let r = raw(&app.url, put.as_bytes(), Duration::from_secs(30)).await;
    assert_eq!(status_of(&r), 405, "{r}");
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0);
    // JSON (any case, with parameters) and NDJSON are served.
    for ct in ["application/json", "Application/JSON; charset=utf-8"] {
        let r = raw(
            &app.url,
            &post_bytes("/v1/grade", &host, Some(ct), &body),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(status_of(&r), 200, "{ct}: {r}");
    }
    let r = raw(
        &app.url,
        &post_bytes("/v1/jobs", &host, Some("application/x-ndjson"), &body),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status_of(&r), 202, "{r}");
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answers_only_to_loopback_and_its_configured_names() {
    let app = TestApp::spawn("[server]\nallowed_hosts = [\"Tribunal.Example.org\"]\n").await;
    let port = app.url.rsplit(':').next().unwrap().to_owned();
    for (host, expected) in [
        (format!("attacker.example:{port}"), 403),
        ("attacker.example".to_owned(), 403),
        (format!("127.0.0.1.attacker.example:{port}"), 403),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("127.3.2.1:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        ("localhost".to_owned(), 200),
        (format!("tribunal.example.org:{port}"), 200),
        ("TRIBUNAL.example.org".to_owned(), 200),
    ] {
        let r = raw(
            &app.url,
            &get_bytes("/v1/jobs", &host),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(status_of(&r), expected, "{host}: {r}");
        if expected == 403 {
            assert!(r.contains("server.allowed_hosts"), "{r}");
        }
    }
    // Probes answer to any name.
    let r = raw(
        &app.url,
        &get_bytes("/healthz", "10.0.0.7:8080"),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");

    // gRPC checks `:authority` the same way.
    let grpc_port = app.grpc_url.rsplit(':').next().unwrap().to_owned();
    let foreign = tonic::transport::Endpoint::from_shared(app.grpc_url.clone())
        .unwrap()
        .origin(
            format!("http://attacker.example:{grpc_port}")
                .parse()
                .unwrap(),
        )
        .connect()
        .await
        .unwrap();
    let e = TribunalClient::new(foreign)
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("attacker.example"), "{e:?}");
    let mut ok = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    ok.list_jobs(pb::ListJobsRequest::default()).await.unwrap();
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_any_host_is_served_until_allowed_hosts_is_set() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let r = raw(
        &app.url,
        b"GET /v1/jobs HTTP/1.1\r\nHost: tribunal.internal\r\nAuthorization: Bearer a-secret\r\nConnection: close\r\n\r\n",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    // Keys make the Content-Type rule unnecessary (a page has no key to send).
    let r = raw(
        &app.url,
        b"POST /v1/rubrics/validate HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer a-secret\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        Duration::from_secs(30),
    )
    .await;
    assert_ne!(status_of(&r), 415, "{r}");
    app.running.unwrap().stop().await;

    let extra = format!("[server]\nallowed_hosts = [\"tribunal.internal\"]\n{KEYS}");
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, &extra, ENV).await;
    for (host, expected) in [("tribunal.internal", 200), ("evil.example", 403)] {
        let r = raw(
            &app.url,
            format!(
                "GET /v1/jobs HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer a-secret\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(status_of(&r), expected, "{host}: {r}");
    }
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = app
            .http
            .get(format!("{}/v1/jobs", app.url))
            .header("authorization", format!("{scheme} a-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let mut req = tonic::Request::new(pb::ListJobsRequest::default());
    req.metadata_mut()
        .insert("authorization", "bearer a-secret".parse().unwrap());
    grpc.list_jobs(req).await.unwrap();
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_content_length_over_the_limit_is_refused_from_the_header() {
    let app = TestApp::spawn("[server]\nmax_body_bytes = 4096\n").await;
    let host = addr_of(&app.url);
    // Headers only: the 2 GB body is never sent, and the answer comes anyway.
    let started = Instant::now();
    let r = raw(
        &app.url,
        format!(
            "POST /v1/grade HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains("server.max_body_bytes (4096)"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered from the header"
    );
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_applies_max_body_bytes_and_names_codec_errors() {
    let app = TestApp::spawn("[server]\nmax_body_bytes = 2000\n").await;
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    // Over the configured limit (not tonic's 64 MiB): RESOURCE_EXHAUSTED naming it.
    let big = case("big", &"x".repeat(3000)).to_string();
    let e = grpc
        .grade(pb::GradeRequest { item_json: big })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("server.max_body_bytes (2000 bytes)"),
        "{e:?}"
    );
    // Under it, the same call is served.
    let small = case("small", "Rest.").to_string();
    grpc.grade(pb::GradeRequest { item_json: small })
        .await
        .unwrap();
    // A streamed chunk over the limit: the same answer.
    let chunks = futures::stream::iter(vec![pb::SubmitJobChunk {
        items_json: vec![case("big", &"y".repeat(3000)).to_string()],
        seed: 0,
    }]);
    let e = grpc.submit_job_stream(chunks).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("server.max_body_bytes"), "{e:?}");

    // Bytes that are not a GradeRequest (a string field holding invalid UTF-8).
    #[derive(Clone, PartialEq, prost::Message)]
    struct NotUtf8 {
        #[prost(bytes = "vec", tag = "1")]
        item_json: Vec<u8>,
    }
    let channel = tonic::transport::Endpoint::from_shared(app.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw_client = tonic::client::Grpc::new(channel);
    raw_client.ready().await.unwrap();
    let e = raw_client
        .unary::<NotUtf8, pb::GradeResponse, _>(
            tonic::Request::new(NotUtf8 {
                item_json: vec![b'{', 0xff, 0xfe, b'}'],
            }),
            "/tribunal.v1.Tribunal/Grade".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not valid protobuf"), "{e:?}");
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_ids_are_clipped_on_both_transports() {
    let app = TestApp::spawn("").await;
    let long = "a".repeat(100_000);
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let e = grpc
        .get_job(pb::GetJobRequest { id: long.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().len() < 300, "{} characters", e.message().len());
    assert!(
        e.message().contains("99872 more characters"),
        "{}",
        e.message()
    );
    let id = "b".repeat(20_000);
    let (code, body) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(code, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 300, "{message}");
    assert!(message.contains("more characters"), "{message}");
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_off() {
    let app =
        TestApp::spawn("[server]\nheader_read_timeout_ms = 300\nbody_idle_timeout_ms = 300\n")
            .await;
    let host = addr_of(&app.url);
    // Headers that never end: the connection is closed soon after the timeout.
    let started = Instant::now();
    let r = raw(
        &app.url,
        format!("GET /v1/jobs HTTP/1.1\r\nHost: {host}\r\nX-Slow: 1").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}: {r:?}"
    );
    assert!(!r.contains("200 OK"), "{r}");
    // A body that stops half-way: the request fails instead of waiting forever.
    let started = Instant::now();
    let r = raw(
        &app.url,
        format!(
            "POST /v1/grade HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":"
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "answered after {took:?}: {r:?}"
    );
    assert!(r.starts_with("HTTP/1.1 4"), "{r}");
    // gRPC: half of the HTTP/2 preface, then nothing.
    let started = Instant::now();
    let r = raw(
        &app.grpc_url,
        b"PRI * HTTP/2.0\r\n",
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}: {r:?}"
    );
    // A complete request on a fresh connection is still served.
    let r = raw(
        &app.url,
        &get_bytes("/v1/jobs", &host),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap()
        .list_jobs(pb::ListJobsRequest::default())
        .await
        .unwrap();
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_key_guesses_close_the_address_for_a_while_on_every_surface() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let call = |key: String| {
        let http = app.http.clone();
        let url = format!("{}/v1/jobs", app.url);
        async move {
            let r = http
                .get(url)
                .header("authorization", format!("Bearer {key}"))
                .send()
                .await
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), retry)
        }
    };
    // A missing key is not a guess.
    for _ in 0..10 {
        let r = app
            .http
            .get(format!("{}/v1/jobs", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }
    assert_eq!(call("a-secret".into()).await.0, 200);
    // Five free guesses; the sixth closes the address.
    for i in 0..6 {
        assert_eq!(call(format!("guess-{i}")).await.0, 401, "guess {i}");
    }
    // Now even the right key is refused, with Retry-After, on every surface.
    let (code, retry) = call("a-secret".into()).await;
    assert_eq!(code, 429);
    assert_eq!(retry.as_deref(), Some("1"));
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let mut req = tonic::Request::new(pb::ListJobsRequest::default());
    req.metadata_mut()
        .insert("authorization", "Bearer a-secret".parse().unwrap());
    let e = grpc.list_jobs(req).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let mut ui = Client::new(&app.url);
    let r = ui.sign_in("a-secret").await;
    assert_eq!(r.status, 429, "{}", r.body);
    // After the wait the right key works again; the next wrong one closes it longer.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call("a-secret".into()).await.0, 200);
    assert_eq!(call("guess-7".into()).await.0, 401);
    let (code, retry) = call("a-secret".into()).await;
    assert_eq!((code, retry.as_deref()), (429, Some("2")));
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_ends_the_job_progress_stream() {
    let slow = "[judges.sim-a.sim]\nlatency_ms = 300\n";
    let base = tribunal::config::DEFAULT_CONFIG.replace("[judges.sim-a.sim]\nseed = 1\n", "");
    let app = TestApp::spawn_with(
        &base,
        &format!("{slow}seed = 1\n[server]\njob_concurrency = 1\n{KEYS}"),
        ENV,
    )
    .await;
    let items: Vec<Value> = (0..40)
        .map(|i| case(&format!("s{i}"), &format!("slow {i}")))
        .collect();
    let job = crate::ui::api(
        &app,
        "post",
        "/v1/jobs",
        "a-secret",
        Some(Value::Array(items)),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let mut c = Client::new(&app.url);
    assert_eq!(c.sign_in("a-secret").await.status, 303);
    let cookie = c
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut stream = app
        .http
        .get(format!("{}/ui/jobs/{id}/events", app.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("progress"));
    // Sign out through the page's form.
    let page = c.get("/ui/jobs").await;
    let r = c
        .post("/ui/logout", &[("csrf", &crate::ui::csrf_of(&page.body))])
        .await;
    assert_eq!(r.status, 303);
    // The stream ends (the job itself is still running).
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(_chunk) = stream.chunk().await.unwrap() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream went on after sign-out");
    let j = crate::ui::api(&app, "get", &format!("/v1/jobs/{id}"), "a-secret", None).await;
    assert_ne!(j["state"], "done", "{j}");
    app.running.unwrap().stop().await;
}

#[test]
fn config_check_masks_credentials_in_urls() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"
[judges.a]
provider = "openai"
base_url = "https://alice:hunter2@llm.example.org/v1"
model = "gpt-4.1"
[committee]
members = ["a"]
quorum = 1
[telemetry]
otlp_endpoint = "http://otel:t0ken@collector.example.org:4318/v1/traces?key=s3cret"
"#;
    std::fs::write(dir.path().join("t.toml"), cfg).unwrap();
    let run = crate::tribunal(&["config", "check", "-c", "t.toml"], dir.path());
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for secret in ["hunter2", "alice", "t0ken", "s3cret"] {
        assert!(
            !run.stdout.contains(secret),
            "{secret} shown: {}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("https://***@llm.example.org/v1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("http://***@collector.example.org:4318/v1/traces?***"),
        "{}",
        run.stdout
    );
}
