//! HTTP and gRPC give the same answers: the same item graded on two fresh servers with
//! identically seeded simulated committees yields the same report over both
//! transports (timings aside), and the same job gives the same results and summary.

use serde_json::Value;
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

use crate::server::{TestApp, case};

/// Drops the fields that measure time, which legitimately differ between runs.
fn strip_timing(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("elapsed_ms");
    }
    if let Some(criteria) = v["criteria"].as_array_mut() {
        for c in criteria {
            for b in c["ballots"].as_array_mut().into_iter().flatten() {
                if let Some(o) = b.as_object_mut() {
                    o.remove("latency_ms");
                }
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_give_the_same_reports() {
    let over_http = TestApp::spawn("").await;
    let over_grpc = TestApp::spawn("").await;
    let mut grpc = TribunalClient::connect(over_grpc.grpc_url.clone())
        .await
        .unwrap();
    for i in 0..5 {
        let item = case(
            &format!("p{i}"),
            &format!("Response {i}: see a doctor, drink fluids."),
        );
        let (code, http_report) = over_http.post("/v1/grade", &item).await;
        assert_eq!(code, 200);
        let reply = grpc
            .grade(pb::GradeRequest {
                item_json: item.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        let grpc_report: Value = serde_json::from_str(&reply.report_json).unwrap();
        assert_eq!(
            strip_timing(http_report),
            strip_timing(grpc_report),
            "item {i}"
        );
    }

    // Errors map to the same kind on both transports.
    let mut bad = case("bad", "x");
    bad["rubric"]["criteria"][0]["points"] = serde_json::json!(0);
    let (code, body) = over_http.post("/v1/grade", &bad).await;
    assert_eq!(code, 400);
    let status = grpc
        .grade(pb::GradeRequest {
            item_json: bad.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        status.metadata().get("x-tribunal-kind").unwrap(),
        "invalid_input"
    );
    assert_eq!(
        status
            .metadata()
            .get("x-tribunal-field")
            .unwrap()
            .to_str()
            .unwrap(),
        body["error"]["field"].as_str().unwrap()
    );

    // The same job over both: same results (by case id) and the same summary.
    let items: Vec<Value> = (0..8)
        .map(|i| case(&format!("j{i}"), &format!("job answer {i}")))
        .collect();
    let (_, job) = over_http
        .post("/v1/jobs?seed=9", &Value::Array(items.clone()))
        .await;
    let http_id = job["id"].as_str().unwrap().to_owned();
    over_http.wait_job(&http_id).await;
    let submitted = grpc
        .submit_job(pb::SubmitJobRequest {
            items_json: items.iter().map(Value::to_string).collect(),
            seed: 9,
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = grpc
        .stream_job_results(pb::StreamJobResultsRequest {
            id: submitted.id.clone(),
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut grpc_results = std::collections::BTreeMap::new();
    while let Some(r) = stream.message().await.unwrap() {
        let v: Value = serde_json::from_str(&r.json).unwrap();
        grpc_results.insert(v["case_id"].as_str().unwrap().to_owned(), strip_timing(v));
    }
    let text = over_http
        .http
        .get(format!("{}/v1/jobs/{http_id}/results", over_http.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let http_results: std::collections::BTreeMap<String, Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["case_id"].as_str().unwrap().to_owned(), strip_timing(v))
        })
        .collect();
    assert_eq!(http_results.len(), 8);
    assert_eq!(http_results, grpc_results);
    let grpc_job = grpc
        .get_job(pb::GetJobRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc_job.state, "done");
    assert_eq!(grpc_job.done, 8);
    let grpc_summary: Value = serde_json::from_str(
        &grpc
            .get_job_summary(pb::GetJobSummaryRequest {
                id: submitted.id,
                length_adjustment: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    let (_, http_summary) = over_http.get(&format!("/v1/jobs/{http_id}/summary")).await;
    // The HTTP summary is streamed (figures, then entries) and gRPC's is one
    // document: the same keys and values, all but the job's own id.
    let keys = |v: &Value| -> std::collections::BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&http_summary), keys(&grpc_summary));
    assert_eq!(http_summary["examples"].as_array().unwrap().len(), 8);
    for key in keys(&grpc_summary) {
        if key != "job" {
            assert_eq!(http_summary[&key], grpc_summary[&key], "{key}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_rpc_answers() {
    let slow =
        tribunal::config::DEFAULT_CONFIG.replace("seed = 1\n", "seed = 1\nlatency_ms = 200\n");
    let app = TestApp::spawn_with(&slow, "[server]\njob_concurrency = 1\n", &[]).await;
    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let rubric = case("x", "y")["rubric"].clone();
    // CreateRubric / GetRubric (latest and by version) / ListRubrics / ValidateRubric.
    let created: Value = serde_json::from_str(
        &grpc
            .create_rubric(pb::JsonDocument {
                json: rubric.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(created["id"], "fever");
    let got: Value = serde_json::from_str(
        &grpc
            .get_rubric(pb::GetRubricRequest {
                id: "fever".into(),
                version: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(got, created);
    let missing = grpc
        .get_rubric(pb::GetRubricRequest {
            id: "fever".into(),
            version: 7,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let listed: Value = serde_json::from_str(
        &grpc
            .list_rubrics(pb::ListRubricsRequest {})
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(listed["rubrics"][0]["id"], "fever");
    let mut bad = rubric.clone();
    bad["criteria"] = serde_json::json!([]);
    let v = grpc
        .validate_rubric(pb::JsonDocument {
            json: bad.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.valid);
    assert_eq!(v.problems[0].field, "criteria");
    let conflict = {
        let mut other = rubric.clone();
        other["title"] = serde_json::json!("Other");
        grpc.create_rubric(pb::JsonDocument {
            json: other.to_string(),
        })
        .await
        .unwrap_err()
    };
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists);
    // SubmitJob / ListJobs / CancelJob on a slow job.
    let items: Vec<String> = (0..20)
        .map(|i| case(&format!("c{i}"), &format!("slow {i}")).to_string())
        .collect();
    let job = grpc
        .submit_job(pb::SubmitJobRequest {
            items_json: items,
            seed: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let jobs = grpc
        .list_jobs(pb::ListJobsRequest {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jobs.jobs[0].id, job.id);
    let cancelled = grpc
        .cancel_job(pb::CancelJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    // `cancelling` while the items in flight let go, then `cancelled`.
    assert!(
        matches!(cancelled.state.as_str(), "cancelling" | "cancelled"),
        "{cancelled:?}"
    );
    let unknown = grpc
        .cancel_job(pb::CancelJobRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let bad_json = grpc
        .grade(pb::GradeRequest {
            item_json: "{".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_json.code(), tonic::Code::InvalidArgument);
    assert!(
        bad_json.message().starts_with("item_json"),
        "{}",
        bad_json.message()
    );
}
