//! Scores every distinct real HealthBench row in ../shared/data/healthbench with seeded
//! verdicts and checks the figures against tests/healthbench_reference.py, an
//! independent implementation of the published formula. Prints `skipped` when the data
//! or python3 is absent.

use serde_json::Value;

use crate::{root, shared_data, tribunal};

#[test]
fn real_rows_match_the_independent_reference() {
    let Some(data) = shared_data("healthbench") else {
        println!("skipped: ../shared/data/healthbench is absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("verdicts.jsonl");
    let py = std::process::Command::new("python3")
        .arg(root().join("tests/healthbench_reference.py"))
        .arg(&data)
        .arg(&rows)
        .arg("20251122")
        .output();
    let py = match py {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "reference script failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            println!("skipped: python3 not runnable ({e})");
            return;
        }
    };
    let expected: Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(
        expected["n_rows"], 642,
        "the shared data should hold 642 distinct prompt_ids"
    );

    let run = tribunal(&["score", rows.to_str().unwrap(), "--seed", "11"], &root());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: Value = serde_json::from_str(&run.stdout).unwrap();

    let f = |v: &Value| v.as_f64().unwrap();
    assert_eq!(got["overall"]["n"], expected["overall"]["n"]);
    assert!((f(&got["overall"]["score"]) - f(&expected["overall"]["score"])).abs() < 1e-9);

    let exp_tags = expected["tags"].as_object().unwrap();
    let got_tags = got["tags"].as_object().unwrap();
    assert_eq!(
        got_tags.keys().collect::<std::collections::BTreeSet<_>>(),
        exp_tags.keys().collect::<std::collections::BTreeSet<_>>()
    );
    for (tag, e) in exp_tags {
        let g = &got_tags[tag];
        assert_eq!(g["n"], e["n"], "{tag}");
        assert!(
            (f(&g["score"]) - f(&e["score"])).abs() < 1e-9,
            "{tag}: {g} vs {e}"
        );
    }
    for axis in [
        "axis:accuracy",
        "axis:completeness",
        "axis:communication_quality",
        "axis:context_awareness",
        "axis:instruction_following",
    ] {
        assert!(got_tags.contains_key(axis), "{axis} missing");
    }
    let exp_examples = expected["examples"].as_object().unwrap();
    let got_examples = got["examples"].as_array().unwrap();
    assert_eq!(got_examples.len(), exp_examples.len());
    for e in got_examples {
        let id = e["prompt_id"].as_str().unwrap();
        assert!((f(&e["score"]) - f(&exp_examples[id])).abs() < 1e-9, "{id}");
    }
    // Bootstrap std: different RNG streams, same estimator; agree within 15%.
    let (g, e) = (
        f(&got["overall"]["bootstrap_std"]),
        f(&expected["bootstrap_std"]),
    );
    assert!(
        (g - e).abs() / e < 0.15,
        "bootstrap std {g} vs reference {e}"
    );
    println!(
        "healthbench real rows: n={} overall={:.6} std={:.6} (reference std {:.6}), {} tags",
        got["overall"]["n"],
        f(&got["overall"]["score"]),
        g,
        e,
        got_tags.len()
    );
}
