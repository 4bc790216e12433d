//! The published scoring methods (HealthBench Professional length-adjusted, QuarkMedBench
//! Eq. 2-4, LiveMedBench) on every distinct real HealthBench row in
//! ../shared/data/healthbench with seeded verdicts, checked against
//! tests/scoring_reference.py, an independent restatement of each publication. Prints
//! `skipped` when the data or python3 is absent, and fails instead under `CI=true`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{root, shared_data, tribunal};

const SEED: &str = "20260517";

/// A missing input is a skip on a laptop and a failure in CI.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {why}"
    );
    println!("skipped: {why}");
}

/// Runs the reference for `method`; returns the rows file's directory and the expected
/// figures, or `None` (after `skip`) when the data or python3 is missing.
fn reference(method: &str) -> Option<(tempfile::TempDir, std::path::PathBuf, Value)> {
    let Some(data) = shared_data("healthbench") else {
        skip("../shared/data/healthbench is absent");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join(format!("{method}.jsonl"));
    let py = std::process::Command::new("python3")
        .arg(root().join("tests/scoring_reference.py"))
        .arg(method)
        .arg(&data)
        .arg(&rows)
        .arg(SEED)
        .output();
    let py = match py {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "reference script failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            skip(&format!("python3 not runnable ({e})"));
            return None;
        }
    };
    let expected: Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        expected["n_rows"], 642,
        "the shared data should hold 642 distinct prompt_ids"
    );
    Some((dir, rows, expected))
}

fn score(rows: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["score", rows.to_str().unwrap(), "--seed", "11"];
    args.extend_from_slice(extra);
    let run = tribunal(&args, &root());
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// One figure: the same `n` and the same score to 1e-9.
fn same_figure(name: &str, got: &Value, want: &Value) {
    assert_eq!(got["n"], want["n"], "{name}: {got} vs {want}");
    assert!(
        (f(&got["score"]) - f(&want["score"])).abs() < 1e-9,
        "{name}: {got} vs {want}"
    );
}

/// Every tag figure, and no tag on one side only.
fn same_tags(got: &Value, want: &Value) {
    let (g, w) = (got.as_object().unwrap(), want.as_object().unwrap());
    assert_eq!(
        g.keys().collect::<BTreeSet<_>>(),
        w.keys().collect::<BTreeSet<_>>()
    );
    for (tag, e) in w {
        same_figure(tag, &g[tag], e);
    }
}

/// Per-example `key` (score or length_adjusted_score) against the reference's map;
/// null for an undefined example on both sides.
fn same_examples(got: &Value, want: &Value, key: &str) {
    let want = want.as_object().unwrap();
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for e in got {
        let id = e["prompt_id"].as_str().unwrap();
        match (&e[key], &want[id]) {
            (Value::Null, Value::Null) => {}
            (g, w) => assert!((f(g) - f(w)).abs() < 1e-9, "{id}: {key} {g} vs {w}"),
        }
    }
}

/// Bootstrap std: different RNG streams, same estimator; agree within 15%.
fn close_std(got: &Value, want: &Value) {
    let (g, e) = (f(got), f(want));
    assert!(
        (g - e).abs() / e < 0.15,
        "bootstrap std {g} vs reference {e}"
    );
}

#[test]
fn healthbench_professional_length_adjusted_matches_the_reference() {
    let Some((_dir, rows, want)) = reference("professional") else {
        return;
    };
    let got = score(&rows, &["--length-adjustment", "professional"]);
    // The raw figure is unchanged beside the adjusted one.
    same_figure("overall", &got["overall"], &want["overall"]);
    same_tags(&got["tags"], &want["tags"]);
    same_figure(
        "overall_length_adjusted",
        &got["overall_length_adjusted"],
        &want["overall_length_adjusted"],
    );
    same_tags(&got["tags_length_adjusted"], &want["tags_length_adjusted"]);
    same_examples(&got["examples"], &want["examples"], "score");
    same_examples(
        &got["examples"],
        &want["adjusted_examples"],
        "length_adjusted_score",
    );
    assert_eq!(
        got["length_adjustment"],
        serde_json::json!({"center": 2000.0, "penalty_per_500_chars": 0.0147})
    );
    assert_eq!(got["missing_response_length"], 0);
    close_std(
        &got["overall_length_adjusted"]["bootstrap_std"],
        &want["bootstrap_std"],
    );
    // Without the flag the rows carry no adjustment (off by default).
    let plain = score(&rows, &[]);
    assert_eq!(plain["overall_length_adjusted"], Value::Null);
    same_figure("overall", &plain["overall"], &want["overall"]);
    println!(
        "professional: raw {:.6}, length-adjusted {:.6} (n={})",
        f(&got["overall"]["score"]),
        f(&got["overall_length_adjusted"]["score"]),
        got["overall"]["n"]
    );
}

#[test]
fn quarkmed_on_converted_rubrics_matches_the_reference() {
    let Some((_dir, rows, want)) = reference("quarkmed") else {
        return;
    };
    let got = score(&rows, &[]);
    same_figure("overall", &got["overall"], &want["overall"]);
    same_tags(&got["tags"], &want["tags"]);
    same_examples(&got["examples"], &want["examples"], "score");
    assert_eq!(got["excluded"]["undefined"], want["undefined"]);
    close_std(&got["overall"]["bootstrap_std"], &want["bootstrap_std"]);
    println!(
        "quarkmed: {:.6} (n={}, {} undefined without essentials)",
        f(&got["overall"]["score"]),
        got["overall"]["n"],
        got["excluded"]["undefined"]
    );
}

#[test]
fn livemedbench_matches_the_reference() {
    let Some((_dir, rows, want)) = reference("livemedbench") else {
        return;
    };
    let got = score(
        &rows,
        &["--policy", "livemedbench", "--on-abstention", "as_not_met"],
    );
    same_figure("overall", &got["overall"], &want["overall"]);
    same_tags(&got["tags"], &want["tags"]);
    same_examples(&got["examples"], &want["examples"], "score");
    close_std(&got["overall"]["bootstrap_std"], &want["bootstrap_std"]);
    // The opt-in is flagged in the summary and on every example.
    assert_eq!(got["abstentions_as_not_met"]["criteria"], want["abstained"]);
    assert_eq!(got["abstentions_as_not_met"]["examples"], 642);
    assert!(
        got["examples"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["abstentions_as_not_met"] == true)
    );
    // By default the same rows keep abstentions out: those examples are incomplete.
    let default = score(&rows, &["--policy", "livemedbench"]);
    assert!(f(&default["excluded"]["incomplete"]) > 0.0);
    assert_eq!(default["abstentions_as_not_met"]["criteria"], 0);
}

/// Jobs get the rubric's length adjustment and abstention rule with no extra option:
/// the per-example inputs live in each stored report's `score` object, which the job
/// summary reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_summaries_carry_the_rubric_parameters() {
    let app = crate::server::TestApp::spawn("").await;
    let responses = [
        "See a doctor.",
        "Drink fluids and see a clinician \u{1f642}.",
    ];
    let items: Vec<Value> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut c = crate::server::case(&format!("la{i}"), r);
            c["rubric"]["id"] = serde_json::json!("fever-professional");
            c["rubric"]["scoring"] = serde_json::json!({
                "length_adjustment": {"center": 2000, "penalty_per_500_chars": 0.0147},
                "on_abstention": "as_not_met"
            });
            c
        })
        .collect();
    let (code, job) = app.post("/v1/jobs?seed=3", &Value::Array(items)).await;
    assert_eq!(code, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    app.wait_job(&id).await;
    let (code, summary) = app.get(&format!("/v1/jobs/{id}/summary")).await;
    assert_eq!(code, 200, "{summary}");
    let adjusted = &summary["overall_length_adjusted"];
    assert_eq!(adjusted["n"], summary["overall"]["n"], "{summary}");
    // Every example records its length in code points and the adjusted score.
    for (i, r) in responses.iter().enumerate() {
        let e = crate::summary_example(&summary, &format!("la{i}"));
        let chars = r.chars().count() as f64;
        assert_eq!(f(&e["response_chars"]), chars);
        assert!(e["abstentions_as_not_met"] == true, "{e}");
        let want = f(&e["final_score"]) - 0.0147 * (chars - 2000.0) / 500.0;
        assert!((f(&e["length_adjusted_score"]) - want).abs() < 1e-12, "{e}");
    }
}
