//! Regressions at the service boundary: limits that hold for jobs as for single
//! grades, the JSON error body on unknown routes, and stored data that no longer
//! decodes reported as `internal` (look at the data), not `unavailable` (wait).

use serde_json::{Value, json};
use tonic::Code;
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

use crate::server::{TestApp, case};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteria_limit_holds_for_jobs_on_both_transports() {
    let app = TestApp::spawn("[server]\nmax_criteria_per_rubric = 2\n").await;
    // The fixture rubric has 3 criteria: one grade and one job line are both refused.
    let (code, body) = app.post("/v1/grade", &case("g", "Rest.")).await;
    assert_eq!(code, 413, "{body}");
    let two = {
        let mut c = case("ok", "Rest.");
        c["rubric"]["criteria"].as_array_mut().unwrap().pop();
        c
    };
    let (code, body) = app
        .post("/v1/jobs", &json!([two, case("big", "Rest.")]))
        .await;
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"]["kind"], "too_large");
    assert_eq!(body["error"]["field"], "items[1].rubric.criteria", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_criteria_per_rubric"),
        "{body}"
    );
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 0, "nothing stored");

    let mut grpc = TribunalClient::connect(app.grpc_url.clone()).await.unwrap();
    let e = grpc
        .submit_job(pb::SubmitJobRequest {
            items_json: vec![two.to_string(), case("big", "Rest.").to_string()],
            seed: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let md = |k: &str| e.metadata().get(k).unwrap().to_str().unwrap().to_owned();
    assert_eq!(md("x-tribunal-kind"), "too_large");
    assert_eq!(md("x-tribunal-field"), "items[1].rubric.criteria");
    // The limit is met, so this job is accepted.
    let (code, _) = app.post("/v1/jobs", &json!([two])).await;
    assert_eq!(code, 202);
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_the_json_error_body() {
    let app = TestApp::spawn("").await;
    for path in ["/v1/nope", "/nothing/here", "/v1/jobs/x/y/z"] {
        let (code, body) = app.get(path).await;
        assert_eq!(code, 404, "{path}");
        assert_eq!(body["error"]["kind"], "not_found", "{path}: {body}");
        assert!(body["error"]["request_id"].is_string(), "{body}");
    }
    app.running.unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_stored_documents_are_internal() {
    let app = TestApp::spawn("").await;
    let text =
        std::fs::read_to_string(crate::root().join("calibration/examples/triage-live.jsonl"))
            .unwrap();
    let (code, set) = app
        .post(
            "/v1/calibration/sets",
            &json!({"format": "calibration.v1", "content": text}),
        )
        .await;
    assert_eq!(code, 201, "{set}");
    let id = set["id"].as_str().unwrap();
    let (code, job) = app.post("/v1/jobs", &json!([case("c", "Rest.")])).await;
    assert_eq!(code, 202);
    let job_id = job["id"].as_str().unwrap().to_owned();
    app.wait_job(&job_id).await;

    // Damage both documents behind the server's back.
    let url = format!("sqlite://{}", app.db_path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE calibration_sets SET document = 'not a set' WHERE id = ?")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    for table in ["job_items SET result", "job_item_facts SET facts"] {
        sqlx::query(&format!("UPDATE {table} = '{{broken' WHERE job_id = ?"))
            .bind(&job_id)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;

    for path in [
        format!("/v1/calibration/sets/{id}"),
        format!("/v1/jobs/{job_id}/summary"),
    ] {
        let (code, body): (u16, Value) = app.get(&path).await;
        assert_eq!(code, 500, "{path}: {body}");
        assert_eq!(body["error"]["kind"], "internal", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stored data cannot be read"),
            "{body}"
        );
    }
    app.running.unwrap().stop().await;
}
