//! The security model on every surface: one table lists every HTTP route (read from
//! the router's own OpenAPI document) and every RPC (read from the proto) with the
//! kind of operation it is; each is called as no key, a wrong key, the owning client,
//! another client, an annotator and an admin, and the outcome is checked. A route or
//! RPC missing from the table fails the test. Quotas are checked on both transports.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tonic::Code;
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

use crate::server::{TestApp, case};

const KEYS: &str = r#"
[[server.api_keys]]
name = "root"
role = "admin"
key_env = "K_ADMIN"
[[server.api_keys]]
name = "team-a"
key_env = "K_A"
[[server.api_keys]]
name = "team-b"
role = "client"
key_env = "K_B"
[[server.api_keys]]
name = "doc"
role = "annotator"
key_env = "K_DOC"
"#;

const ENV: &[(&str, &str)] = &[
    ("K_ADMIN", "admin-secret"),
    ("K_A", "a-secret"),
    ("K_B", "b-secret"),
    ("K_DOC", "doc-secret"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoKey,
    WrongKey,
    /// team-a, which owns the fixtures.
    Owner,
    /// team-b, another client.
    Other,
    Annotator,
    Admin,
}

const EVERYONE: [Who; 6] = [
    Who::NoKey,
    Who::WrongKey,
    Who::Owner,
    Who::Other,
    Who::Annotator,
    Who::Admin,
];

impl Who {
    fn key(self) -> Option<&'static str> {
        match self {
            Who::NoKey => None,
            Who::WrongKey => Some("not-a-key"),
            Who::Owner => Some("a-secret"),
            Who::Other => Some("b-secret"),
            Who::Annotator => Some("doc-secret"),
            Who::Admin => Some("admin-secret"),
        }
    }
}

/// What an operation is, which decides who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `/healthz`, `/metrics`, ...: no key needed.
    Open,
    /// Clients and admins; annotators are forbidden (grade, submit, rubric writes, ...).
    ClientOnly,
    /// Every key (rubric reads, calibration lists).
    AnyKey,
    /// team-a's job: the owner and admins; another client gets not found.
    OwnJob,
    /// Job lists: clients and admins (each sees its own).
    JobList,
    /// team-a's calibration set or run: owner, annotators and admins.
    OwnCalibration,
    /// Starting a run over team-a's set: owner and admins; annotators may not.
    RunOwnSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Unauthenticated,
    Forbidden,
    NotFound,
}

fn expected(op: Op, who: Who) -> Outcome {
    use Outcome::*;
    if op == Op::Open {
        return Ok;
    }
    if matches!(who, Who::NoKey | Who::WrongKey) {
        return Unauthenticated;
    }
    match (op, who) {
        (_, Who::Admin) | (Op::AnyKey, _) => Ok,
        (Op::ClientOnly | Op::JobList, Who::Annotator) => Forbidden,
        (Op::ClientOnly | Op::JobList, _) => Ok,
        (Op::OwnJob, Who::Owner) => Ok,
        (Op::OwnJob, Who::Other) => NotFound,
        (Op::OwnJob, _) => Forbidden,
        (Op::OwnCalibration, Who::Owner | Who::Annotator) => Ok,
        (Op::OwnCalibration, _) => NotFound,
        (Op::RunOwnSet, Who::Owner) => Ok,
        (Op::RunOwnSet, Who::Other) => NotFound,
        (Op::RunOwnSet, _) => Forbidden,
        (Op::Open, _) => Ok,
    }
}

/// What team-a owns, made before the table runs.
struct Fixtures {
    job: String,
    set: String,
    run: String,
}

fn rubric() -> Value {
    json!({"format": "rubric.v1", "id": "auth-r", "version": 1, "title": "Auth",
        "criteria": [{"id": "c1", "text": "Advises rest.", "points": 2}]})
}

fn set_upload(name: &str) -> Value {
    let text =
        std::fs::read_to_string(crate::root().join("calibration/examples/triage-live.jsonl"))
            .unwrap();
    json!({"format": "calibration.v1", "content": text, "name": name})
}

/// A human label of the caller's own: its rater is the caller's key name (a label
/// under another rater's name is refused to all but admins; see tests/it/labels.rs).
fn label(who: Who) -> Value {
    let rater = match who {
        Who::Owner => "team-a",
        Who::Other => "team-b",
        Who::Annotator => "doc",
        Who::Admin => "root",
        Who::NoKey | Who::WrongKey => "nurse-z",
    };
    json!({"labels": [{"item": "l0", "rater": rater, "kind": "human", "value": true}]})
}

/// Operations reached through a documented route with a query flag (no row of their own
/// in the OpenAPI paths): the job dry run is `POST /v1/jobs?dry_run=true`, the same
/// service call as gRPC `EstimateJob`, and must be refused to the same callers.
fn http_query_variants() -> Vec<(&'static str, &'static str, Op)> {
    vec![("post", "/v1/jobs?dry_run=true", Op::ClientOnly)]
}

/// The HTTP table: (method, route template) -> operation kind.
fn http_table() -> Vec<(&'static str, &'static str, Op)> {
    vec![
        ("get", "/healthz", Op::Open),
        ("get", "/readyz", Op::Open),
        ("get", "/metrics", Op::Open),
        ("post", "/v1/grade", Op::ClientOnly),
        ("post", "/v1/jobs", Op::ClientOnly),
        ("get", "/v1/jobs", Op::JobList),
        ("get", "/v1/jobs/{id}", Op::OwnJob),
        ("delete", "/v1/jobs/{id}", Op::OwnJob),
        ("get", "/v1/jobs/{id}/results", Op::OwnJob),
        ("get", "/v1/jobs/{id}/summary", Op::OwnJob),
        ("post", "/v1/rubrics", Op::ClientOnly),
        ("get", "/v1/rubrics", Op::AnyKey),
        ("post", "/v1/rubrics/validate", Op::AnyKey),
        ("get", "/v1/rubrics/{id}", Op::AnyKey),
        ("get", "/v1/rubrics/{id}/versions", Op::AnyKey),
        ("get", "/v1/rubrics/{id}/versions/{version}", Op::AnyKey),
        ("get", "/v1/judges", Op::ClientOnly),
        ("post", "/v1/calibration/sets", Op::ClientOnly),
        ("get", "/v1/calibration/sets", Op::AnyKey),
        ("get", "/v1/calibration/sets/{id}", Op::OwnCalibration),
        (
            "post",
            "/v1/calibration/sets/{id}/labels",
            Op::OwnCalibration,
        ),
        (
            "get",
            "/v1/calibration/sets/{id}/labels",
            Op::OwnCalibration,
        ),
        (
            "post",
            "/v1/calibration/sets/{id}/labels/undo",
            Op::OwnCalibration,
        ),
        ("post", "/v1/calibration/runs", Op::RunOwnSet),
        ("get", "/v1/calibration/runs/{id}", Op::OwnCalibration),
        (
            "get",
            "/v1/calibration/runs/{id}/disagreements",
            Op::OwnCalibration,
        ),
    ]
}

async fn http_call(
    app: &TestApp,
    fx: &Fixtures,
    method: &str,
    route: &str,
    who: Who,
    n: usize,
) -> (u16, Value) {
    let path = route
        .replace("/v1/jobs/{id}", &format!("/v1/jobs/{}", fx.job))
        .replace(
            "/v1/calibration/sets/{id}",
            &format!("/v1/calibration/sets/{}", fx.set),
        )
        .replace(
            "/v1/calibration/runs/{id}",
            &format!("/v1/calibration/runs/{}", fx.run),
        )
        .replace("/v1/rubrics/{id}", "/v1/rubrics/auth-r")
        .replace("{version}", "1");
    let body = match (method, route) {
        ("post", "/v1/grade") => Some(case(&format!("g{n}"), "Rest and drink fluids.")),
        ("post", "/v1/jobs" | "/v1/jobs?dry_run=true") => {
            Some(json!([case(&format!("j{n}"), "Rest.")]))
        }
        ("post", "/v1/rubrics" | "/v1/rubrics/validate") => Some(rubric()),
        ("post", "/v1/calibration/sets") => Some(set_upload(&format!("set-{n}"))),
        ("post", "/v1/calibration/sets/{id}/labels") => Some(label(who)),
        ("post", "/v1/calibration/runs") => Some(json!({"set": fx.set, "resamples": 10})),
        _ => None,
    };
    let url = format!("{}{path}", app.url);
    if route == "/v1/calibration/sets/{id}/labels/undo" {
        // An undo needs a write of the caller's own to undo: write one first (its
        // answer is the labels route's, checked in its own row).
        let mut w = app
            .http
            .post(format!("{}/v1/calibration/sets/{}/labels", app.url, fx.set))
            .header("content-type", "application/json")
            .body(label(who).to_string());
        if let Some(k) = who.key() {
            w = w.header("authorization", format!("Bearer {k}"));
        }
        w.send().await.unwrap();
    }
    let mut r = match method {
        "get" => app.http.get(url),
        "post" => app.http.post(url),
        "delete" => app.http.delete(url),
        other => panic!("method {other}"),
    };
    if let Some(k) = who.key() {
        r = r.header("authorization", format!("Bearer {k}"));
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn outcome_of_status(code: u16) -> Option<Outcome> {
    match code {
        200..=299 => Some(Outcome::Ok),
        401 => Some(Outcome::Unauthenticated),
        403 => Some(Outcome::Forbidden),
        404 => Some(Outcome::NotFound),
        _ => None,
    }
}

fn outcome_of_code(code: Code) -> Option<Outcome> {
    match code {
        Code::Ok => Some(Outcome::Ok),
        Code::Unauthenticated => Some(Outcome::Unauthenticated),
        Code::PermissionDenied => Some(Outcome::Forbidden),
        Code::NotFound => Some(Outcome::NotFound),
        _ => None,
    }
}

/// The RPC table: method name -> operation kind.
fn grpc_table() -> Vec<(&'static str, Op)> {
    vec![
        ("Grade", Op::ClientOnly),
        ("SubmitJob", Op::ClientOnly),
        ("SubmitJobStream", Op::ClientOnly),
        ("EstimateJob", Op::ClientOnly),
        ("GetJob", Op::OwnJob),
        ("ListJobs", Op::JobList),
        ("CancelJob", Op::OwnJob),
        ("StreamJobResults", Op::OwnJob),
        ("GetJobSummary", Op::OwnJob),
        ("CreateRubric", Op::ClientOnly),
        ("ValidateRubric", Op::AnyKey),
        ("GetRubric", Op::AnyKey),
        ("ListRubrics", Op::AnyKey),
        ("CreateCalibrationSet", Op::ClientOnly),
        ("ListCalibrationSets", Op::AnyKey),
        ("GetCalibrationSet", Op::OwnCalibration),
        ("AddCalibrationLabels", Op::OwnCalibration),
        ("StartCalibrationRun", Op::RunOwnSet),
        ("GetCalibrationRun", Op::OwnCalibration),
        ("ListCalibrationDisagreements", Op::OwnCalibration),
        ("GetLabelHistory", Op::OwnCalibration),
        ("UndoCalibrationLabel", Op::OwnCalibration),
    ]
}

fn with_key<T>(msg: T, who: Who) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(k) = who.key() {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    r
}

async fn grpc_call(
    c: &mut TribunalClient<tonic::transport::Channel>,
    fx: &Fixtures,
    rpc: &str,
    who: Who,
    n: usize,
) -> Result<(), tonic::Status> {
    let doc = |v: Value| pb::JsonDocument {
        json: v.to_string(),
    };
    match rpc {
        "Grade" => c
            .grade(with_key(
                pb::GradeRequest {
                    item_json: case(&format!("rg{n}"), "Rest.").to_string(),
                },
                who,
            ))
            .await
            .map(drop),
        "SubmitJob" => c
            .submit_job(with_key(
                pb::SubmitJobRequest {
                    items_json: vec![case(&format!("rj{n}"), "Rest.").to_string()],
                    seed: 0,
                },
                who,
            ))
            .await
            .map(drop),
        "EstimateJob" => c
            .estimate_job(with_key(
                pb::SubmitJobRequest {
                    items_json: vec![case(&format!("re{n}"), "Rest.").to_string()],
                    seed: 0,
                },
                who,
            ))
            .await
            .map(drop),
        "SubmitJobStream" => c
            .submit_job_stream(with_key(
                futures::stream::iter(vec![pb::SubmitJobChunk {
                    items_json: vec![case(&format!("rs{n}"), "Rest.").to_string()],
                    seed: 0,
                }]),
                who,
            ))
            .await
            .map(drop),
        "GetJob" => c
            .get_job(with_key(pb::GetJobRequest { id: fx.job.clone() }, who))
            .await
            .map(drop),
        "ListJobs" => c
            .list_jobs(with_key(pb::ListJobsRequest::default(), who))
            .await
            .map(drop),
        "CancelJob" => c
            .cancel_job(with_key(pb::CancelJobRequest { id: fx.job.clone() }, who))
            .await
            .map(drop),
        "StreamJobResults" => {
            let mut s = c
                .stream_job_results(with_key(
                    pb::StreamJobResultsRequest {
                        id: fx.job.clone(),
                        follow: false,
                    },
                    who,
                ))
                .await?
                .into_inner();
            while let Some(r) = tokio_stream::StreamExt::next(&mut s).await {
                r?;
            }
            Ok(())
        }
        "GetJobSummary" => c
            .get_job_summary(with_key(
                pb::GetJobSummaryRequest {
                    id: fx.job.clone(),
                    length_adjustment: String::new(),
                },
                who,
            ))
            .await
            .map(drop),
        "CreateRubric" => c
            .create_rubric(with_key(doc(rubric()), who))
            .await
            .map(drop),
        "ValidateRubric" => c
            .validate_rubric(with_key(doc(rubric()), who))
            .await
            .map(drop),
        "GetRubric" => c
            .get_rubric(with_key(
                pb::GetRubricRequest {
                    id: "auth-r".into(),
                    version: 0,
                },
                who,
            ))
            .await
            .map(drop),
        "ListRubrics" => c
            .list_rubrics(with_key(pb::ListRubricsRequest {}, who))
            .await
            .map(drop),
        "CreateCalibrationSet" => c
            .create_calibration_set(with_key(doc(set_upload(&format!("rset-{n}"))), who))
            .await
            .map(drop),
        "ListCalibrationSets" => c
            .list_calibration_sets(with_key(pb::ListCalibrationSetsRequest::default(), who))
            .await
            .map(drop),
        "GetCalibrationSet" => c
            .get_calibration_set(with_key(
                pb::GetCalibrationSetRequest { id: fx.set.clone() },
                who,
            ))
            .await
            .map(drop),
        "AddCalibrationLabels" => c
            .add_calibration_labels(with_key(
                pb::AddCalibrationLabelsRequest {
                    set_id: fx.set.clone(),
                    json: label(who).to_string(),
                },
                who,
            ))
            .await
            .map(drop),
        "StartCalibrationRun" => c
            .start_calibration_run(with_key(doc(json!({"set": fx.set, "resamples": 10})), who))
            .await
            .map(drop),
        "GetCalibrationRun" => c
            .get_calibration_run(with_key(
                pb::GetCalibrationRunRequest { id: fx.run.clone() },
                who,
            ))
            .await
            .map(drop),
        "ListCalibrationDisagreements" => c
            .list_calibration_disagreements(with_key(
                pb::ListCalibrationDisagreementsRequest {
                    id: fx.run.clone(),
                    limit: 5,
                    after: None,
                },
                who,
            ))
            .await
            .map(drop),
        "GetLabelHistory" => c
            .get_label_history(with_key(
                pb::GetLabelHistoryRequest {
                    set_id: fx.set.clone(),
                    item: None,
                },
                who,
            ))
            .await
            .map(drop),
        "UndoCalibrationLabel" => {
            // As over HTTP: the caller's own write first, then its undo.
            let _ = c
                .add_calibration_labels(with_key(
                    pb::AddCalibrationLabelsRequest {
                        set_id: fx.set.clone(),
                        json: label(who).to_string(),
                    },
                    who,
                ))
                .await;
            c.undo_calibration_label(with_key(
                pb::UndoCalibrationLabelRequest {
                    set_id: fx.set.clone(),
                },
                who,
            ))
            .await
            .map(drop)
        }
        other => panic!("RPC {other} has no call in this test: add one"),
    }
}

/// The RPC names of `service Tribunal` in the proto.
fn proto_rpcs() -> BTreeSet<String> {
    let proto =
        std::fs::read_to_string(crate::root().join("proto/tribunal/v1/tribunal.proto")).unwrap();
    proto
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|rest| rest.split('(').next().unwrap().trim().to_owned())
        .collect()
}

async fn fixtures(app: &TestApp) -> Fixtures {
    let auth = |r: reqwest::RequestBuilder| r.header("authorization", "Bearer a-secret");
    let post = |path: &str, body: Value| {
        auth(app.http.post(format!("{}{path}", app.url)))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let job: Value = post("/v1/jobs", json!([case("fx", "Rest and fluids.")]))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let set: Value = post("/v1/calibration/sets", set_upload("team-a-set"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run: Value = post(
        "/v1/calibration/runs",
        json!({"set": set["id"], "resamples": 10}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rub = post("/v1/rubrics", rubric()).await.unwrap();
    assert!(rub.status().is_success());
    let fx = Fixtures {
        job: job["id"].as_str().unwrap().to_owned(),
        set: set["id"].as_str().unwrap().to_owned(),
        run: run["id"].as_str().unwrap().to_owned(),
    };
    // Let the job and the run finish so every read has something to read.
    for id in [&fx.job, &fx.run] {
        for _ in 0..600 {
            let j: Value = auth(app.http.get(format!("{}/v1/jobs/{id}", app.url)))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if j["state"] == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    fx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_rpc_for_every_caller() {
    // Every route is called with a wrong key from one address: no guess slowdown here
    // (tests/it/hardening.rs covers it).
    let mut env = ENV.to_vec();
    env.push(("TRIBUNAL__SERVER__FAILED_KEYS_PER_ADDRESS", "0"));
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, &env).await;
    let fx = fixtures(&app).await;

    // The table covers exactly the router's routes.
    let (_, doc) = app.get("/openapi.json").await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.clone(), path.clone()));
        }
    }
    let table: BTreeSet<(String, String)> = http_table()
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, table, "every route needs a row in http_table()");

    let mut n = 0;
    let mut failures = Vec::new();
    for (method, route, op) in http_table().into_iter().chain(http_query_variants()) {
        for who in EVERYONE {
            n += 1;
            let (code, body) = http_call(&app, &fx, method, route, who, n).await;
            let want = expected(op, who);
            if outcome_of_status(code) != Some(want) {
                failures.push(format!(
                    "HTTP {method} {route} as {who:?}: {code} {body}, want {want:?}"
                ));
            } else if code >= 400 {
                // Refusals carry the JSON error body with the matching kind.
                let kind = match want {
                    Outcome::Unauthenticated => "unauthenticated",
                    Outcome::Forbidden => "forbidden",
                    Outcome::NotFound => "not_found",
                    Outcome::Ok => unreachable!(),
                };
                if body["error"]["kind"] != kind {
                    failures.push(format!("HTTP {method} {route} as {who:?}: body {body}"));
                }
            }
        }
    }

    // The RPC table covers exactly the proto's methods.
    let rpcs: BTreeSet<String> = grpc_table().iter().map(|(r, _)| (*r).to_owned()).collect();
    assert_eq!(proto_rpcs(), rpcs, "every RPC needs a row in grpc_table()");
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    for (rpc, op) in grpc_table() {
        for who in EVERYONE {
            n += 1;
            let got = grpc_call(&mut grpc, &fx, rpc, who, n).await;
            let code = got.as_ref().map_or_else(tonic::Status::code, |()| Code::Ok);
            let want = expected(op, who);
            if outcome_of_code(code) != Some(want) {
                failures.push(format!("gRPC {rpc} as {who:?}: {got:?}, want {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Lists show only the caller's own resources; admins see all and can filter.
    let list = |who: Who, path: &'static str| {
        let r = app.http.get(format!("{}{path}", app.url));
        let r = match who.key() {
            Some(k) => r.header("authorization", format!("Bearer {k}")),
            None => r,
        };
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let has =
        |v: &Value, key: &str, id: &str| v[key].as_array().unwrap().iter().any(|x| x["id"] == id);
    for (who, path, key, id, listed) in [
        (Who::Owner, "/v1/jobs?limit=500", "jobs", &fx.job, true),
        (Who::Other, "/v1/jobs?limit=500", "jobs", &fx.job, false),
        (Who::Admin, "/v1/jobs?limit=500", "jobs", &fx.job, true),
        (
            Who::Admin,
            "/v1/jobs?limit=500&owner=team-b",
            "jobs",
            &fx.job,
            false,
        ),
        (
            Who::Admin,
            "/v1/jobs?limit=500&owner=team-a",
            "jobs",
            &fx.job,
            true,
        ),
        (Who::Other, "/v1/calibration/sets", "sets", &fx.set, false),
        (
            Who::Annotator,
            "/v1/calibration/sets",
            "sets",
            &fx.set,
            true,
        ),
        (
            Who::Admin,
            "/v1/calibration/sets?owner=team-b",
            "sets",
            &fx.set,
            false,
        ),
    ] {
        let page = list(who, path).await;
        assert_eq!(has(&page, key, id), listed, "{who:?} {path}: {page}");
    }
    let other_jobs = list(Who::Other, "/v1/jobs?limit=500").await;
    assert!(
        other_jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["id"] != fx.job),
        "{other_jobs}"
    );

    // Labels record who wrote them; a correction keeps the old value. An annotator's
    // label is its own (rater = its key name, "doc").
    let history = list(Who::Admin, "/v1/calibration/sets").await;
    assert!(has(&history, "sets", &fx.set));
    let r = app
        .http
        .post(format!("{}/v1/calibration/sets/{}/labels", app.url, fx.set))
        .header("authorization", "Bearer doc-secret")
        .body(
            json!({"labels": [{"item": "l0", "rater": "doc", "kind": "human", "value": false}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h: Value = app
        .http
        .get(format!(
            "{}/v1/calibration/sets/{}/labels?item=l0",
            app.url, fx.set
        ))
        .header("authorization", "Bearer doc-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = h["history"].as_array().unwrap();
    let last = events.last().unwrap();
    assert_eq!(last["author"], "doc", "{h}");
    assert_eq!(last["value"], "false", "{h}");
    assert_eq!(last["previous"], "true", "{h}");
    assert!(last["at"].as_i64().unwrap() > 0);
    assert!(events.iter().all(|e| e["item"] == "l0"));
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_on_both_transports() {
    let keys = r#"
[[server.api_keys]]
name = "slow"
key_env = "K_SLOW"
requests_per_minute = 2
[[server.api_keys]]
name = "one-job"
key_env = "K_ONE"
max_concurrent_jobs = 1
"#;
    let slow_judges =
        tribunal::config::DEFAULT_CONFIG.replace("seed = 1\n", "seed = 1\nlatency_ms = 400\n");
    let app = TestApp::spawn_with(&slow_judges, keys, &[("K_SLOW", "s"), ("K_ONE", "o")]).await;
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let list = |key: &str| {
        let mut r = tonic::Request::new(pb::ListJobsRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        r
    };
    // The per-minute request quota is one budget across transports: one HTTP request
    // and one RPC use it up, then both refuse with a retry delay.
    let r = app
        .http
        .get(format!("{}/v1/jobs", app.url))
        .header("authorization", "Bearer s")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    grpc.list_jobs(list("s")).await.unwrap();
    let e = grpc.list_jobs(list("s")).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    let secs: u64 = e
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    let r = app
        .http
        .get(format!("{}/v1/jobs", app.url))
        .header("authorization", "Bearer s")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // The concurrent-jobs quota: a job started over HTTP fills it for gRPC too.
    let items: Vec<Value> = (0..6).map(|i| case(&format!("q{i}"), "Rest.")).collect();
    let r = app
        .http
        .post(format!("{}/v1/jobs", app.url))
        .header("authorization", "Bearer o")
        .body(Value::Array(items.clone()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut submit = tonic::Request::new(pb::SubmitJobRequest {
        items_json: items.iter().map(Value::to_string).collect(),
        seed: 0,
    });
    submit
        .metadata_mut()
        .insert("authorization", "Bearer o".parse().unwrap());
    let e = grpc.submit_job(submit).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.metadata().get("retry-after").is_some());
    app.running.unwrap().stop().await;
}
