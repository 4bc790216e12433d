//! Uploads honour their Content-Type: `POST /v1/jobs` takes JSON (an array, the
//! `{rubric, items}` envelope or one item, pretty-printed or not) and NDJSON, and
//! names the accepted forms for anything else (415); `POST /v1/calibration/sets`
//! takes the `{format, content}` document or the file as it is (JSONL, CSV), and a
//! file sent where the document was expected gets the hint how to send it (HTTP and
//! gRPC).

use serde_json::{Value, json};

use crate::root;
use crate::server::{TestApp, case};

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_uploads_follow_their_content_type() {
    let app = TestApp::spawn("").await;
    let json_type = "application/json";

    // One item, pretty-printed, as application/json: one job of one item (this was
    // sniffed as NDJSON and failed with `items[0]: not valid JSON: EOF ...`).
    let pretty = serde_json::to_string_pretty(&case("p1", "Rest and fluids.")).unwrap();
    assert!(pretty.lines().count() > 5);
    let (code, job) = app.post_as("/v1/jobs", json_type, pretty.clone()).await;
    assert_eq!(code, 202, "{job}");
    assert_eq!(job["total"], 1, "{job}");
    // The same without a Content-Type: a keyless server refuses it (a cross-site page
    // can send an untyped body; README "Security"); a server with keys sniffs it as one
    // document, not NDJSON.
    let r = app
        .http
        .post(format!("{}/v1/jobs", app.url))
        .body(pretty.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let keyed = TestApp::spawn_with(
        tribunal::config::DEFAULT_CONFIG,
        "[[server.api_keys]]\nname = \"team\"\nkey_env = \"K_UPLOAD\"\n",
        &[("K_UPLOAD", "upload-secret")],
    )
    .await;
    let r = keyed
        .http
        .post(format!("{}/v1/jobs", keyed.url))
        .header("authorization", "Bearer upload-secret")
        .body(pretty)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["total"], 1, "{job}");

    // One item on one line, as application/json.
    let (code, job) = app
        .post_as("/v1/jobs", json_type, case("p2", "Rest.").to_string())
        .await;
    assert_eq!((code, job["total"].as_u64()), (202, Some(1)), "{job}");

    // A pretty-printed array, and the pretty-printed envelope with its seed.
    let array = json!([case("a1", "Rest."), case("a2", "Fluids.")]);
    let (code, job) = app
        .post_as(
            "/v1/jobs",
            json_type,
            serde_json::to_string_pretty(&array).unwrap(),
        )
        .await;
    assert_eq!((code, job["total"].as_u64()), (202, Some(2)), "{job}");
    app.post("/v1/rubrics", &case("x", "x")["rubric"]).await;
    let mut bare = case("e1", "Rest.");
    bare.as_object_mut().unwrap().remove("rubric");
    let envelope = json!({"rubric": "fever@1", "items": [bare], "seed": 7});
    let (code, job) = app
        .post_as(
            "/v1/jobs",
            "application/json; charset=utf-8",
            serde_json::to_string_pretty(&envelope).unwrap(),
        )
        .await;
    assert_eq!((code, job["total"].as_u64()), (202, Some(1)), "{job}");

    // NDJSON as application/x-ndjson; the same lines as application/json get a 400
    // that says to send them as NDJSON.
    let ndjson = format!(
        "{}\n{}\n",
        case("n1", "Rest."),
        case("n2", "Fluids and rest.")
    );
    let (code, job) = app
        .post_as("/v1/jobs", "application/x-ndjson", ndjson.clone())
        .await;
    assert_eq!((code, job["total"].as_u64()), (202, Some(2)), "{job}");
    let (code, body) = app.post_as("/v1/jobs", json_type, ndjson).await;
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("application/x-ndjson"), "{body}");

    // Anything else: 415 naming the accepted forms (curl -d sends a form type).
    for other in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "text/csv",
    ] {
        let (code, body) = app
            .post_as("/v1/jobs", other, case("o", "Rest.").to_string())
            .await;
        assert_eq!(code, 415, "{other}: {body}");
        assert_eq!(body["error"]["field"], "content-type", "{body}");
        let m = message(&body);
        assert!(
            m.contains("application/json") && m.contains("application/x-ndjson"),
            "{m}"
        );
    }
    // gRPC SubmitJob takes each item as its own document: pretty-printed is fine.
    use tribunal::api::grpc::pb;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let job = grpc
        .submit_job(pb::SubmitJobRequest {
            items_json: vec![serde_json::to_string_pretty(&case("g1", "Rest.")).unwrap()],
            seed: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.total, 1);

    // A dry run reads the body the same way.
    let pretty = serde_json::to_string_pretty(&case("d1", "Rest.")).unwrap();
    let (code, estimate) = app
        .post_as("/v1/jobs?dry_run=true", json_type, pretty)
        .await;
    assert_eq!(code, 200, "{estimate}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calibration_sets_upload_as_files() {
    let app = TestApp::spawn("").await;
    let file =
        std::fs::read_to_string(root().join("calibration/examples/triage-small.jsonl")).unwrap();
    let items = file.lines().filter(|l| !l.trim().is_empty()).count() - 1;

    // The file as it is, as JSONL: the name comes from its header, or from ?name=.
    let (code, set) = app
        .post_as("/v1/calibration/sets", "application/x-ndjson", file.clone())
        .await;
    assert_eq!(code, 201, "{set}");
    assert_eq!(set["name"], "triage-small", "{set}");
    assert_eq!(set["items"].as_u64(), Some(items as u64), "{set}");
    let (code, set) = app
        .post_as(
            "/v1/calibration/sets?name=triage-copy",
            "application/x-ndjson",
            file.clone(),
        )
        .await;
    assert_eq!((code, set["name"].as_str()), (201, Some("triage-copy")));

    // The same file where the {format, content} document was expected: a 400 that
    // says how to send it (it was `trailing characters at line 2 column 1` alone).
    let (code, body) = app
        .post_as("/v1/calibration/sets", "application/json", file.clone())
        .await;
    assert_eq!(code, 400, "{body}");
    let m = message(&body);
    assert!(
        m.contains("trailing characters")
            && m.contains("application/x-ndjson")
            && m.contains("\"content\""),
        "{m}"
    );

    // A CSV file as it is, its import options as query parameters.
    let csv =
        std::fs::read_to_string(root().join("calibration/examples/sleep-advice.csv")).unwrap();
    let q = "map=id%3Drow_id%2Ccategory%3Dtopic%2Chuman%3Aalice%3Dlabel_a%2Chuman%3Abob%3Dlabel_b%2Cjudge%3Agpt%3Dgpt_label\
             &scale=ordinal&categories=no,partly,yes&met=yes&name=sleep";
    let (code, set) = app
        .post_as(
            &format!("/v1/calibration/sets?{q}"),
            "text/csv",
            csv.clone(),
        )
        .await;
    assert_eq!(code, 201, "{set}");
    assert_eq!(set["name"], "sleep", "{set}");
    assert_eq!(set["items"], 10, "{set}");
    assert_eq!(set["scale"], "ordinal", "{set}");
    assert_eq!(set["categories"], json!(["no", "partly", "yes"]), "{set}");
    // Without the mapping: the error names `map` and shows one.
    let (code, body) = app
        .post_as("/v1/calibration/sets?name=s2", "text/csv", csv)
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["field"], "map", "{body}");
    assert!(message(&body).contains("?map="), "{body}");

    // Any other type: 415 naming the three forms.
    let (code, body) = app
        .post_as("/v1/calibration/sets", "text/plain", file.clone())
        .await;
    assert_eq!(code, 415, "{body}");
    let m = message(&body);
    assert!(
        m.contains("application/json")
            && m.contains("application/x-ndjson")
            && m.contains("text/csv"),
        "{m}"
    );

    // gRPC CreateCalibrationSet takes the JSON document; the file as it is gets the
    // same hint.
    use tribunal::api::grpc::pb;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let err = grpc
        .create_calibration_set(pb::JsonDocument { json: file })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("application/x-ndjson") && err.message().contains("\"content\""),
        "{}",
        err.message()
    );
}
