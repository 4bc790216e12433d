//! Live calibration: `tribunal calibrate` without `--offline`, and the server's
//! `/v1/calibration/*` routes (sets, labels, runs as jobs, reports, disagreements,
//! agreement gauges) with the gRPC equivalents returning the same documents.

use std::time::Duration;

use serde_json::{Value, json};

use crate::server::TestApp;
use crate::{root, tribunal};

fn live_set() -> String {
    std::fs::read_to_string(root().join("calibration/examples/triage-live.jsonl")).unwrap()
}

fn judge<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"] == name)
        .unwrap_or_else(|| panic!("no judge {name} in {report}"))
}

#[test]
fn cli_live_run_labels_items_with_the_committee() {
    let dir = tempfile::tempdir().unwrap();
    let run = tribunal(
        &[
            "calibrate",
            root()
                .join("calibration/examples/triage-live.jsonl")
                .to_str()
                .unwrap(),
            "--resamples",
            "200",
        ],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("SIMULATED"), "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["run"]["items_run"], 36);
    assert_eq!(report["run"]["items_failed"], 0);
    let with_majority = report["humans"]["majority"]["items"].as_u64().unwrap();
    for name in ["sim-a", "sim-b", "sim-c", "committee"] {
        let j = judge(&report, name);
        // Every item has a human majority (three raters, two categories) and every sim
        // judge answers, so each judge is compared on every item.
        assert_eq!(j["vs_human_majority"]["n"], with_majority, "{name}");
        assert_eq!(j["vs_human_majority"]["cohen_kappa"]["n"], with_majority);
    }
    // The simulated judges agree with their reference (the human majority) 90% of the
    // time, so kappa is high; a swapped met/not-met mapping would make it negative.
    let k = judge(&report, "committee")["vs_human_majority"]["cohen_kappa"]["value"]
        .as_f64()
        .unwrap();
    assert!(k > 0.6, "committee kappa {k}");
}

#[test]
fn cli_live_run_explains_sets_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("labels-only.jsonl");
    std::fs::write(
        &set,
        r#"{"format": "calibration.v1", "name": "t", "scale": "nominal", "categories": ["false", "true"], "met": "true"}
{"id": "a", "criterion": "Advises rest.", "labels": [{"rater": "h1", "kind": "human", "value": true}]}
"#,
    )
    .unwrap();
    let run = tribunal(&["calibrate", set.to_str().unwrap()], dir.path());
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("nothing to run"), "{}", run.stderr);
}

async fn wait_run(app: &TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let (code, r) = app.get(&format!("/v1/calibration/runs/{id}")).await;
        assert_eq!(code, 200, "{r}");
        if r["state"] == "done" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("calibration run {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sets_labels_runs_and_disagreements() {
    let app = TestApp::spawn("").await;

    // Upload: errors name the field; a good set is stored as calibration.v1.
    let (code, err) = app
        .post("/v1/calibration/sets", &json!({"format": "calibration.v1"}))
        .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["field"], "content");
    let (code, err) = app
        .post(
            "/v1/calibration/sets",
            &json!({"format": "calibration.v1", "content": live_set().replace("\"value\": true", "\"value\": \"maybe\"")}),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("maybe"),
        "{err}"
    );
    let (code, set) = app
        .post(
            "/v1/calibration/sets",
            &json!({"format": "calibration.v1", "content": live_set()}),
        )
        .await;
    assert_eq!(code, 201, "{set}");
    let set_id = set["id"].as_str().unwrap().to_owned();
    assert_eq!(set["items"], 36);
    assert_eq!(set["runnable_items"], 36);
    assert_eq!(
        set["raters"]["humans"],
        json!(["doctor-c", "nurse-a", "nurse-b"])
    );
    let (code, dup) = app
        .post(
            "/v1/calibration/sets",
            &json!({"format": "calibration.v1", "content": live_set()}),
        )
        .await;
    assert_eq!(code, 409, "set names are unique: {dup}");
    assert!(dup["error"]["message"].as_str().unwrap().contains(&set_id));
    let (code, list) = app.get("/v1/calibration/sets").await;
    assert_eq!(code, 200);
    assert_eq!(list["sets"][0]["id"], set_id.as_str());

    // Labels: all or nothing, named fields; a second label by the same rater replaces.
    let labels = |v: Value| json!({"labels": v});
    let (code, err) = app
        .post(
            &format!("/v1/calibration/sets/{set_id}/labels"),
            &labels(json!([
                {"item": "l0", "rater": "nurse-d", "kind": "human", "value": true},
                {"item": "nope", "rater": "nurse-d", "kind": "human", "value": true},
            ])),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("nope"),
        "{err}"
    );
    let (_, unchanged) = app.get(&format!("/v1/calibration/sets/{set_id}")).await;
    assert_eq!(unchanged["labels"], set["labels"]);
    let (code, added) = app
        .post(
            &format!("/v1/calibration/sets/{set_id}/labels"),
            &labels(json!([
                {"item": "l0", "rater": "nurse-a", "kind": "human", "value": false},
                {"item": "l1", "rater": "nurse-d", "kind": "human", "value": true},
            ])),
        )
        .await;
    assert_eq!(code, 200, "{added}");
    assert_eq!(added["added"], 1);
    assert_eq!(added["replaced"], 1);
    assert_eq!(
        added["set"]["labels"].as_u64(),
        set["labels"].as_u64().map(|n| n + 1)
    );
    let (code, _) = app
        .get("/v1/calibration/sets/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(code, 404);

    // A run is a job; its report appears when the job is done.
    let (code, err) = app
        .post(
            "/v1/calibration/runs",
            &json!({"set": set_id, "confidence": 2}),
        )
        .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(err["error"]["field"], "confidence");
    let (code, run) = app
        .post(
            "/v1/calibration/runs",
            &json!({"set": set_id, "resamples": 200, "seed": 7}),
        )
        .await;
    assert_eq!(code, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let done = wait_run(&app, &run_id).await;
    let report = &done["report"];
    assert_eq!(done["job"]["total"], 36);
    assert_eq!(report["run"]["items_run"], 36);
    assert_eq!(report["seed"], 7);
    for name in ["sim-a", "sim-b", "sim-c", "committee"] {
        let j = judge(report, name);
        assert!(j["vs_human_majority"]["n"].as_u64().unwrap() >= 30, "{j}");
        assert!(j["vs_human_majority"]["cohen_kappa"]["ci_low"].is_number());
    }
    assert!(report["humans"]["krippendorff_alpha"]["value"].is_number());
    // nurse-d labelled one item: their pairs have too few items (min_pair_items), so
    // they stay out of the band and of Fleiss, which keeps all 36 items (35 before).
    assert_eq!(report["humans"]["fleiss_kappa"]["n"], 36);
    for p in report["humans"]["pairwise"].as_array().unwrap() {
        let with_d = p["a"] == "nurse-d" || p["b"] == "nurse-d";
        assert_eq!(p.get("too_few_items").is_some(), with_d, "{p}");
    }
    assert!(report["humans"]["fleiss_kappa"]["value"].is_number());

    // Disagreements: items where someone differs from the human majority, paged.
    let mut seen = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let q = after.map_or(String::new(), |a| format!("&after={a}"));
        let (code, page) = app
            .get(&format!(
                "/v1/calibration/runs/{run_id}/disagreements?limit=3{q}"
            ))
            .await;
        assert_eq!(code, 200, "{page}");
        for it in page["items"].as_array().unwrap() {
            let majority = it["human_majority"].as_str().unwrap();
            let differs = it["committee"].as_str().is_some_and(|c| c != majority)
                || it["judges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|j| j["agrees"] == false);
            assert!(differs, "{it}");
            assert!(it["response"].is_string() && it["criterion"].is_string());
            seen.push(it["item"].as_str().unwrap().to_owned());
        }
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert!(
        !seen.is_empty(),
        "90%-accurate sim judges disagree somewhere"
    );
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "pages must not repeat items");

    // Gauges, named in metrics.rs, labelled by set id (never the free-text name:
    // `/metrics` is unauthenticated) and rater.
    let (_, metrics) = app.get("/metrics").await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains(&format!(
            "tribunal_agreement_kappa{{rater=\"committee\",set_id=\"{set_id}\"}}"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "tribunal_agreement_alpha{{rater=\"humans\",set_id=\"{set_id}\"}}"
    )));
    assert!(
        !text.contains("triage-live"),
        "no set name in /metrics: {text}"
    );

    // gRPC returns the same run document.
    let mut client =
        tribunal::api::grpc::pb::tribunal_client::TribunalClient::connect(app.grpc_url.clone())
            .await
            .unwrap();
    let got = client
        .get_calibration_run(tribunal::api::grpc::pb::GetCalibrationRunRequest {
            id: run_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let grpc: Value = serde_json::from_str(&got.json).unwrap();
    assert_eq!(grpc["report"], done["report"]);
    let listed = client
        .list_calibration_sets(tribunal::api::grpc::pb::ListCalibrationSetsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let (_, http_list) = app.get("/v1/calibration/sets").await;
    assert_eq!(
        serde_json::from_str::<Value>(&listed.json).unwrap(),
        http_list
    );
    let bad = client
        .create_calibration_set(tribunal::api::grpc::pb::JsonDocument {
            json: json!({"format": "nope", "content": ""}).to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let missing = client
        .get_calibration_run(tribunal::api::grpc::pb::GetCalibrationRunRequest {
            id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

/// A saved live report feeds the committee: `weights_from` sets member weights,
/// `reliability` drives the `dawid_skene` consensus; bad files are named errors.
#[test]
fn saved_reports_configure_weights_and_dawid_skene() {
    let dir = tempfile::tempdir().unwrap();
    let set = root().join("calibration/examples/triage-live.jsonl");
    let run = tribunal(
        &["calibrate", set.to_str().unwrap(), "--resamples", "50"],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let ds = &report["dawid_skene"];
    assert_eq!(ds["seeded_from"], "human_majority", "{ds}");
    assert_eq!(ds["classes"], json!(["false", "true"]));
    assert!(ds["reliability"]["confusion"]["sim-a"].is_array(), "{ds}");
    assert!(ds["reliability"]["confusion"].get("committee").is_none());
    let w = report["suggested_weights"]["sim-b"]["weight"]
        .as_f64()
        .unwrap();
    assert!(w > 0.5, "a 90%-accurate judge earns a real weight: {w}");
    std::fs::write(dir.path().join("report.json"), &run.stdout).unwrap();

    let base = tribunal::config::DEFAULT_CONFIG
        .replace("consensus = \"majority\"", "consensus = \"weighted\"");
    std::fs::write(
        dir.path().join("weighted.toml"),
        format!("{base}weights_from = \"report.json\"\n"),
    )
    .unwrap();
    let check = tribunal(&["config", "check", "-c", "weighted.toml"], dir.path());
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check
            .stdout
            .contains(&format!("judge = \"sim-b\"\nweight = {w}\n")),
        "{}",
        check.stdout
    );

    let ds_cfg = tribunal::config::DEFAULT_CONFIG
        .replace("consensus = \"majority\"", "consensus = \"dawid_skene\"");
    std::fs::write(
        dir.path().join("ds.toml"),
        format!("{ds_cfg}reliability = \"report.json\"\n"),
    )
    .unwrap();
    let check = tribunal(&["config", "check", "-c", "ds.toml"], dir.path());
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check
            .stdout
            .contains("reliability (dawid_skene): 2 classes"),
        "{}",
        check.stdout
    );
    // The dawid_skene committee grades a live calibration run end to end.
    let run = tribunal(
        &[
            "calibrate",
            set.to_str().unwrap(),
            "-c",
            "ds.toml",
            "--resamples",
            "50",
        ],
        dir.path(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let again: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        judge(&again, "committee")["vs_human_majority"]["cohen_kappa"]["value"]
            .as_f64()
            .unwrap()
            > 0.6
    );

    // Wrong files and wrong rules are config errors naming the key.
    std::fs::write(dir.path().join("junk.json"), "{\"x\": 1}").unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        format!(
            "{}weights_from = \"report.json\"\nreliability = \"junk.json\"\n",
            tribunal::config::DEFAULT_CONFIG
        ),
    )
    .unwrap();
    let check = tribunal(&["config", "check", "-c", "bad.toml"], dir.path());
    assert_eq!(check.code, 3, "{}", check.stderr);
    assert!(
        check.stderr.contains("committee.weights_from"),
        "{}",
        check.stderr
    );
    assert!(
        check.stderr.contains("committee.reliability"),
        "{}",
        check.stderr
    );
}

/// `run::finish` writes a run's report once from its stored results (also after a
/// restart, when the job runner calls it again), and refuses non-calibration jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_report_is_written_once_from_stored_results() {
    use tribunal::calibration::{live, run, set::parse_set};
    use tribunal::store::{
        CalibrationRunRecord, CalibrationSetRecord, ItemOutcome, SqliteStore, Store,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let text = live_set();
    let set = parse_set(&text).unwrap();
    // Stored as the service stores it: the items in the document, the labels as rows.
    let mut items_only = set.clone();
    let rows: Vec<tribunal::store::LabelRow> = items_only
        .take_labels()
        .into_iter()
        .map(|(i, l)| tribunal::store::LabelRow {
            item: set.items[i].id.clone(),
            rater: l.rater,
            kind: l.kind.as_str().to_owned(),
            value: match l.value {
                tribunal::calibration::LabelValue::Category(c) => json!(set.categories[c]),
                tribunal::calibration::LabelValue::Number(x) => json!(x),
            },
        })
        .collect();
    assert_eq!(rows.len(), 108);
    store
        .put_calibration_set(
            &CalibrationSetRecord {
                id: "s1".into(),
                name: set.name.clone(),
                owner: None,
                document: items_only.to_jsonl(),
                items: 36,
                labels: 108,
                created_at: 0,
                updated_at: 0,
            },
            &rows,
        )
        .await
        .unwrap();
    let plan = live::plan(&set, &Default::default(), false).unwrap();
    let opts = run::RunOptions::from_plan(&plan, &Default::default());
    store
        .create_calibration_run(
            &CalibrationRunRecord {
                id: "r1".into(),
                set_id: "s1".into(),
                options: serde_json::to_string(&opts).unwrap(),
                report: None,
                finished_at: None,
            },
            0,
            None,
            &plan.rows,
        )
        .await
        .unwrap();
    // Every judge says "met": the committee agrees with the human majority exactly where
    // the majority is "true".
    for seq in 0..36u64 {
        let report = json!({"criteria": [{"id": "criterion", "verdict": true, "ballots": [{"judge": "j", "verdict": true}]}]});
        let outcome = ItemOutcome {
            failed: false,
            result: report.to_string(),
            facts: None,
            abstained: false,
            calls: 1,
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            reasoning_tokens: 0,
            cost_usd: 0.0,
        };
        assert!(store.finish_item("r1", seq, &outcome).await.unwrap());
    }
    assert!(run::finish(&store, "r1").await.unwrap());
    assert!(!run::finish(&store, "r1").await.unwrap(), "written once");
    assert!(!run::finish(&store, "not-a-run").await.unwrap());
    let stored: Value = serde_json::from_str(
        &store
            .calibration_run("r1")
            .await
            .unwrap()
            .unwrap()
            .report
            .unwrap(),
    )
    .unwrap();
    let trues = set
        .items
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            tribunal::calibration::agreement::majority::human_majority(&set, *i) == Some(1)
        })
        .count() as f64;
    let agreement = judge(&stored, "j")["vs_human_majority"]["percent_agreement"]["value"]
        .as_f64()
        .unwrap();
    assert!((agreement - trues / 36.0).abs() < 1e-12, "{agreement}");
    assert_eq!(stored["run"]["items_run"], 36);
}

/// The shipped live example repeats no item: no two items share a case and a
/// response (15 of its 36 items were copies of others).
#[test]
fn the_live_example_set_has_no_repeated_items() {
    let text =
        std::fs::read_to_string(root().join("calibration/examples/triage-live.jsonl")).unwrap();
    let items: Vec<serde_json::Value> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(items.len(), 36);
    let distinct: std::collections::HashSet<String> = items
        .iter()
        .map(|i| format!("{}\u{1f}{}", i["case"], i["response"]))
        .collect();
    assert_eq!(distinct.len(), items.len());
}
