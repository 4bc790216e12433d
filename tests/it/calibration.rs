//! `tribunal calibrate --offline`: every coefficient against an independent Python
//! implementation (scikit-learn, statsmodels, krippendorff) to 1e-9, on the real K-QA
//! physician labels (skipped when ../shared/data is absent) and on a seeded synthetic
//! ordinal set with judge labels. Skipped when python3 or those packages are missing
//! (`.ci/run` installs them).

use serde_json::Value;

use crate::{root, shared_data, tribunal};

fn reference(args: &[&str]) -> Option<Value> {
    let out = std::process::Command::new("python3")
        .arg(root().join("tests/calibration_reference.py"))
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("ModuleNotFoundError") {
            println!(
                "skipped: python packages missing ({})",
                err.lines().last().unwrap_or("")
            );
            return None;
        }
        panic!("reference failed: {err}");
    }
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn close(a: &Value, b: &Value, what: &str) {
    let (x, y) = (
        a.as_f64().unwrap_or(f64::NAN),
        b.as_f64().unwrap_or(f64::NAN),
    );
    assert!(
        (x - y).abs() < 1e-9,
        "{what}: tribunal {x} vs reference {y}"
    );
}

#[test]
fn kqa_physician_agreement_matches_the_reference() {
    let Some(dir) = shared_data("k-qa") else {
        println!("skipped: ../shared/data/k-qa is absent");
        return;
    };
    let csv = dir.join("NLI_medical_annotator.csv");
    let Some(expected) = reference(&["kqa", csv.to_str().unwrap()]) else {
        return;
    };
    let run = tribunal(
        &[
            "calibrate",
            csv.to_str().unwrap(),
            "--offline",
            "--input",
            "kqa",
            "--resamples",
            "200",
        ],
        &root(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    close(
        &r["humans"]["fleiss_kappa"]["value"],
        &expected["fleiss"],
        "fleiss",
    );
    close(
        &r["humans"]["krippendorff_alpha"]["value"],
        &expected["alpha"],
        "alpha",
    );
    let pairs = r["humans"]["pairwise"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    for p in pairs {
        let key = format!("{}|{}", p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        close(
            &p["cohen_kappa"]["value"],
            &expected["pairwise"][&key],
            &key,
        );
        assert_eq!(p["n"], 399);
        let (lo, hi) = (
            p["cohen_kappa"]["ci_low"].as_f64().unwrap(),
            p["cohen_kappa"]["ci_high"].as_f64().unwrap(),
        );
        assert!(
            lo <= p["cohen_kappa"]["value"].as_f64().unwrap() && hi >= lo,
            "{p}"
        );
    }
    println!(
        "K-QA: Fleiss {} alpha {}",
        r["humans"]["fleiss_kappa"]["value"], r["humans"]["krippendorff_alpha"]["value"]
    );
}

#[test]
fn synthetic_set_with_judges_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("syn.jsonl");
    let Some(expected) = reference(&["synthetic", set.to_str().unwrap(), "11", "600"]) else {
        return;
    };
    let started = std::time::Instant::now();
    let run = tribunal(
        &[
            "calibrate",
            set.to_str().unwrap(),
            "--offline",
            "--resamples",
            "200",
        ],
        &root(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(r["scale"], "ordinal");
    close(
        &r["humans"]["fleiss_kappa"]["value"],
        &expected["fleiss"],
        "fleiss",
    );
    close(
        &r["humans"]["krippendorff_alpha"]["value"],
        &expected["alpha_ordinal"],
        "ordinal alpha",
    );
    for p in r["humans"]["pairwise"].as_array().unwrap() {
        let key = format!("{}|{}", p["a"].as_str().unwrap(), p["b"].as_str().unwrap());
        close(
            &p["cohen_kappa"]["value"],
            &expected["pairwise"][&key],
            &key,
        );
        if key == "h1|h2" {
            close(
                &p["weighted_kappa_linear"]["value"],
                &expected["weighted"]["linear"],
                "linear",
            );
            close(
                &p["weighted_kappa_quadratic"]["value"],
                &expected["weighted"]["quadratic"],
                "quadratic",
            );
        }
    }
    let judges = r["judges"].as_array().unwrap();
    assert_eq!(judges.len(), 2);
    for j in judges {
        let name = j["judge"].as_str().unwrap();
        let e = &expected["judges"][name];
        close(
            &j["vs_human_majority"]["cohen_kappa"]["value"],
            &e["vs_majority"],
            name,
        );
        assert_eq!(
            j["vs_human_majority"]["cohen_kappa"]["n"],
            e["vs_majority_n"]
        );
        close(
            &j["vs_human_majority"]["macro_f1"]["value"],
            &e["vs_majority_macro_f1"],
            "macro-F1 vs majority",
        );
        for h in j["vs_each_human"].as_array().unwrap() {
            close(
                &h["cohen_kappa"]["value"],
                &e["vs_each"][h["human"].as_str().unwrap()],
                name,
            );
            close(
                &h["macro_f1"]["value"],
                &e["vs_each_macro_f1"][h["human"].as_str().unwrap()],
                "macro-F1 vs each human",
            );
        }
        // The HealthBench meta-eval figure (every human label in turn) against sklearn.
        let pooled = &j["vs_human_labels"];
        assert_eq!(pooled["n"], e["pooled_n"]);
        close(
            &pooled["macro_f1"]["value"],
            &e["pooled_macro_f1"],
            "pooled macro-F1",
        );
        close(
            &pooled["percent_agreement"]["value"],
            &e["pooled_agreement"],
            "pooled agreement",
        );
    }
    // The stronger judge sits above the human band, the weaker one within or below it.
    let pos = |n: &str| {
        judges.iter().find(|j| j["judge"] == n).unwrap()["human_band_position"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(pos("judge-a"), "above");
    assert_ne!(pos("judge-b"), "above");
    assert!(r["by_category"]["even"]["items"].as_u64().unwrap() > 0);
    println!("synthetic 600 items: {:?}", started.elapsed());
}

#[test]
fn bad_sets_and_live_mode_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.jsonl");
    std::fs::write(&p, "{\"format\": \"calibration.v1\", \"name\": \"x\", \"scale\": \"nominal\", \"categories\": [\"no\", \"yes\"]}\n{\"id\": \"a\", \"labels\": [{\"rater\": \"h\", \"kind\": \"human\", \"value\": \"maybe\"}]}\n").unwrap();
    let run = tribunal(&["calibrate", p.to_str().unwrap(), "--offline"], &root());
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("line 2: labels[0].value"),
        "{}",
        run.stderr
    );
    // Live mode validates the set first, too.
    let run = tribunal(&["calibrate", p.to_str().unwrap()], &root());
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("line 2: labels[0].value"),
        "{}",
        run.stderr
    );
    let example = root().join("calibration/examples/triage-small.jsonl");
    let run = tribunal(
        &[
            "calibrate",
            example.to_str().unwrap(),
            "--offline",
            "--format",
            "table",
        ],
        &root(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Fleiss kappa"), "{}", run.stdout);
}

/// Undo of a label write over HTTP and gRPC: the caller's newest write that is not
/// undone yet gets its previous value back (or is removed), each undo is kept in the
/// history, a second undo goes one write further back, and the rules are those of
/// adding labels (own writes only, sets the caller sees, a changed label is a
/// conflict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_restores_the_previous_label_on_every_surface() {
    use crate::server::TestApp;
    use crate::ui::{ENV, KEYS, api, api_status, live_set};
    use serde_json::json;

    let app = TestApp::spawn_with(tribunal::config::DEFAULT_CONFIG, KEYS, ENV).await;
    let set = api(
        &app,
        "post",
        "/v1/calibration/sets",
        "a-secret",
        Some(json!({"content": live_set("undo", 3)})),
    )
    .await;
    let id = set["id"].as_str().unwrap().to_owned();
    let labels = format!("/v1/calibration/sets/{id}/labels");
    let undo = format!("{labels}/undo");
    let write = |item: &'static str, rater: &'static str, value: bool| json!({"labels": [{"item": item, "rater": rater, "kind": "human", "value": value}]});
    let count = |v: &Value| v["set"]["labels"].as_u64().unwrap();
    let base = set["labels"].as_u64().unwrap();

    // doc: x0 new (true), x0 corrected (false), x1 new (true).
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(write("x0", "doc", true)),
    )
    .await;
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(write("x0", "doc", false)),
    )
    .await;
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(write("x1", "doc", true)),
    )
    .await;

    // 1: x1's label was new, so it is removed.
    let u = api(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(u["undone"]["item"], "x1");
    assert_eq!(
        (&u["event"]["value"], &u["event"]["previous"]),
        (&Value::Null, &json!("true"))
    );
    assert_eq!(count(&u), base + 1);
    // 2: x0's correction is undone: back to true.
    let u = api(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(u["undone"]["item"], "x0");
    assert_eq!(
        (&u["event"]["value"], &u["event"]["previous"]),
        (&json!("true"), &json!("false"))
    );
    assert_eq!(u["event"]["author"], "doc");
    assert_eq!(count(&u), base + 1);
    // 3: x0's first write is undone: removed.
    let u = api(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(
        (&u["undone"]["item"], &u["event"]["value"]),
        (&json!("x0"), &Value::Null)
    );
    assert_eq!(count(&u), base);
    // 4: nothing left.
    let (code, body) = api_status(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(
        (code, body["error"]["kind"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing to undo")
    );

    // The history keeps all six writes, undos included, with who and the old value.
    let h = api(&app, "get", &labels, "doc-secret", None).await;
    let h: Vec<(String, Value, Value)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["author"], "doc");
            (
                e["item"].as_str().unwrap().to_owned(),
                e["value"].clone(),
                e["previous"].clone(),
            )
        })
        .collect();
    assert_eq!(
        h,
        vec![
            ("x0".into(), json!("true"), Value::Null),
            ("x0".into(), json!("false"), json!("true")),
            ("x1".into(), json!("true"), Value::Null),
            ("x1".into(), Value::Null, json!("true")),
            ("x0".into(), json!("true"), json!("false")),
            ("x0".into(), Value::Null, json!("true")),
        ]
    );

    // Only the caller's own writes: the admin's write is not doc's to undo.
    api(
        &app,
        "post",
        &labels,
        "admin-secret",
        Some(write("x2", "root", true)),
    )
    .await;
    let (code, _) = api_status(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(code, 409);
    // A label changed after the write is a conflict, and nothing changes.
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(write("x2", "doc", true)),
    )
    .await;
    api(
        &app,
        "post",
        &labels,
        "admin-secret",
        Some(write("x2", "doc", false)),
    )
    .await;
    let (code, body) = api_status(&app, "post", &undo, "doc-secret", None).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was changed"),
        "{body}"
    );
    // The admin's own newest write (doc's label set to false) is the admin's to undo.
    let u = api(&app, "post", &undo, "admin-secret", None).await;
    assert_eq!(
        (&u["undone"]["rater"], &u["event"]["value"]),
        (&json!("doc"), &json!("true"))
    );

    // A client that does not own the set: not found; a key without the right: refused.
    let (code, _) = api_status(&app, "post", &undo, "b-secret", None).await;
    assert_eq!(code, 404);
    let (code, _) = api_status(&app, "post", &undo, "wrong", None).await;
    assert_eq!(code, 401);

    // gRPC: the same operation and document.
    use tribunal::api::grpc::pb;
    api(
        &app,
        "post",
        &labels,
        "doc-secret",
        Some(write("x1", "doc", false)),
    )
    .await;
    let mut grpc = pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let mut req = tonic::Request::new(pb::UndoCalibrationLabelRequest { set_id: id.clone() });
    req.metadata_mut()
        .insert("authorization", "Bearer doc-secret".parse().unwrap());
    let doc: Value = serde_json::from_str(
        &grpc
            .undo_calibration_label(req)
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    assert_eq!(
        (&doc["undone"]["item"], &doc["event"]["value"]),
        (&json!("x1"), &Value::Null)
    );
    let mut req = tonic::Request::new(pb::UndoCalibrationLabelRequest { set_id: id.clone() });
    req.metadata_mut()
        .insert("authorization", "Bearer b-secret".parse().unwrap());
    let err = grpc.undo_calibration_label(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
