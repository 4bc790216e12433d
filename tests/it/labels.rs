//! Labels name their writer, and annotators label blind, on every surface: a human
//! label's rater is the caller's key name (only an admin imports on behalf of other
//! raters, and the history records it), judge labels come from admins and the set's
//! owner only, and an annotator reading the API or gRPC sees another rater's labels or
//! a judge's verdict on an item only once it has labelled that item.

use serde_json::{Value, json};
use tribunal::api::grpc::pb;
use tribunal::api::grpc::pb::tribunal_client::TribunalClient;

use crate::server::TestApp;
use crate::ui::{ENV, KEYS, api, api_status, live_set, wait_done};

fn one(item: &str, rater: &str, kind: &str, value: bool) -> Value {
    json!({"labels": [{"item": item, "rater": rater, "kind": kind, "value": value}]})
}

async fn grpc(app: &TestApp) -> TribunalClient<tonic::transport::Channel> {
    TribunalClient::connect(app.grpc_url.clone()).await.unwrap()
}

fn keyed<T>(msg: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

async fn upload(app: &TestApp, name: &str, n: usize) -> String {
    let set = api(
        app,
        "post",
        "/v1/calibration/sets",
        "a-secret",
        Some(json!({"content": live_set(name, n)})),
    )
    .await;
    set["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_written_under_the_callers_name() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let id = upload(&app, "writers", 3).await;
    let labels = format!("/v1/calibration/sets/{id}/labels");
    let before = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{id}"),
        "a-secret",
        None,
    )
    .await;

    // An annotator cannot overwrite another human's label, nor add a judge label.
    let (code, body) = api_status(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(one("x0", "nurse-other", "human", false)),
    )
    .await;
    assert_eq!(
        (code, body["error"]["kind"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("labels[0].rater: \"nurse-other\" is not you"),
        "{msg}"
    );
    assert!(
        msg.contains("\"rater\": \"doc\""),
        "says what to send: {msg}"
    );
    let (code, body) = api_status(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(one("x0", "judge-fake", "judge", true)),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("labels[0].kind: only an admin or the set's owner"),
        "{body}"
    );
    // Nothing changed.
    let after = api(
        &app,
        "get",
        &format!("/v1/calibration/sets/{id}"),
        "a-secret",
        None,
    )
    .await;
    assert_eq!(after["labels"], before["labels"]);
    assert!(
        api(&app, "get", &labels, "admin-secret", None).await["history"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The same over gRPC.
    let mut c = grpc(&app).await;
    for (body, field) in [
        (one("x0", "nurse-other", "human", false), "labels[0].rater"),
        (one("x0", "judge-fake", "judge", true), "labels[0].kind"),
    ] {
        let err = c
            .add_calibration_labels(keyed(
                pb::AddCalibrationLabelsRequest {
                    set_id: id.clone(),
                    json: body.to_string(),
                },
                "doc-secret",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(field), "{err:?}");
    }

    // Its own label, under its own name, is written.
    let w = api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(one("x0", "doc", "human", true)),
    )
    .await;
    assert_eq!(w["added"], 1);
    // The owner (a client) may add judge labels to its set, but not write as a human
    // other than itself.
    api(
        &app,
        "post",
        &labels,
        "a-secret",
        Some(one("x0", "judge-new", "judge", true)),
    )
    .await;
    let (code, _) = api_status(
        &app,
        "post",
        &labels,
        "a-secret",
        Some(one("x0", "doc", "human", false)),
    )
    .await;
    assert_eq!(code, 403);

    // An admin imports on behalf of a named rater: written, and recorded as an import.
    let w = api(
        &app,
        "post",
        &labels,
        "admin-secret",
        Some(one("x1", "nurse-other", "human", true)),
    )
    .await;
    assert_eq!(w["replaced"], 1);
    let h = api(&app, "get", &labels, "admin-secret", None).await;
    let h = h["history"].as_array().unwrap();
    let who: Vec<(&str, &str, &str, Option<&str>)> = h
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap(),
                e["rater"].as_str().unwrap(),
                e["author"].as_str().unwrap(),
                e["imported_by"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("x0", "doc", "doc", None),
            ("x0", "judge-new", "team-a", None),
            ("x1", "nurse-other", "root", Some("root")),
        ]
    );
    // gRPC shows the same history document.
    let doc: Value = serde_json::from_str(
        &c.get_label_history(keyed(
            pb::GetLabelHistoryRequest {
                set_id: id.clone(),
                item: Some("x1".into()),
            },
            "admin-secret",
        ))
        .await
        .unwrap()
        .into_inner()
        .json,
    )
    .unwrap();
    assert_eq!(doc["history"][0]["imported_by"], "root");
    assert_eq!(
        doc["history"][0]["previous"],
        json!("true"),
        "nurse-other's uploaded label"
    );
}

async fn grpc_disagreements(app: &TestApp, run: &str, key: &str) -> Value {
    let doc = grpc(app)
        .await
        .list_calibration_disagreements(keyed(
            pb::ListCalibrationDisagreementsRequest {
                id: run.to_owned(),
                limit: 100,
                after: None,
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner()
        .json;
    serde_json::from_str(&doc).unwrap()
}

/// The item ids of a disagreements page.
fn items(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["item"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotators_read_blind_over_the_api() {
    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let n = 12;
    let id = upload(&app, "blind", n).await;
    let labels = format!("/v1/calibration/sets/{id}/labels");
    // Someone else's write, so the history has another rater's label in it.
    api(
        &app,
        "post",
        &labels,
        "admin-secret",
        Some(one("x0", "nurse-other", "human", false)),
    )
    .await;
    let run = api(
        &app,
        "post",
        "/v1/calibration/runs",
        "a-secret",
        Some(json!({"set": id, "resamples": 10})),
    )
    .await;
    let run = run["id"].as_str().unwrap().to_owned();
    wait_done(&app, &run, "a-secret").await;
    let disagreements = format!("/v1/calibration/runs/{run}/disagreements?limit=100");
    let owner_view = api(&app, "get", &disagreements, "a-secret", None).await;
    let all = items(&owner_view);
    assert!(
        !all.is_empty(),
        "the fixture must disagree somewhere: {owner_view}"
    );
    assert_eq!(
        items(&api(&app, "get", &disagreements, "admin-secret", None).await),
        all
    );

    // Before labelling: no other rater's labels, no verdicts, over HTTP and gRPC.
    let blind = api(&app, "get", &disagreements, "doc-secret", None).await;
    assert!(items(&blind).is_empty(), "{blind}");
    let history = api(&app, "get", &labels, "doc-secret", None).await;
    assert!(
        history["history"].as_array().unwrap().is_empty(),
        "{history}"
    );
    assert_eq!(
        api(&app, "get", &labels, "a-secret", None).await["history"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the owner sees every write"
    );
    let mut c = grpc(&app).await;
    assert!(items(&grpc_disagreements(&app, &run, "doc-secret").await).is_empty());
    let h: Value = serde_json::from_str(
        &c.get_label_history(keyed(
            pb::GetLabelHistoryRequest {
                set_id: id.clone(),
                item: None,
            },
            "doc-secret",
        ))
        .await
        .unwrap()
        .into_inner()
        .json,
    )
    .unwrap();
    assert!(h["history"].as_array().unwrap().is_empty(), "{h}");

    // After labelling one disagreement item: that item (with everyone's labels and the
    // verdicts) and nothing else.
    // doc agrees with the item's human majority, so the item stays a disagreement.
    let first = all[0].clone();
    let full = &owner_view["items"][0];
    let agree = full["human_majority"] == "true";
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(one(&first, "doc", "human", agree)),
    )
    .await;
    let seen = api(&app, "get", &disagreements, "doc-secret", None).await;
    assert_eq!(items(&seen), std::slice::from_ref(&first));
    let mine = &seen["items"][0];
    assert_eq!(
        mine["judges"], full["judges"],
        "the verdicts, once labelled"
    );
    assert!(
        mine["humans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["rater"] == "nurse-other"),
        "other raters' labels, once labelled: {mine}"
    );
    assert_eq!(
        items(&grpc_disagreements(&app, &run, "doc-secret").await),
        std::slice::from_ref(&first)
    );

    // After labelling everything: the owner's view.
    let rest: Vec<Value> = (0..n)
        .map(|i| json!({"item": format!("x{i}"), "rater": "doc", "kind": "human", "value": true}))
        .collect();
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(json!({"labels": rest})),
    )
    .await;
    let owner_now = items(&api(&app, "get", &disagreements, "a-secret", None).await);
    assert_eq!(
        items(&api(&app, "get", &disagreements, "doc-secret", None).await),
        owner_now
    );
    let history = api(&app, "get", &labels, "doc-secret", None).await;
    assert_eq!(
        history["history"].as_array().unwrap().len(),
        2 + n,
        "the admin's write on x0 and doc's own writes"
    );
}
