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
