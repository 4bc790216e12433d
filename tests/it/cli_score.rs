//! `tribunal score`: output shape and values on a hand-checked fixture, and clear
//! errors with line, field and exit code 3 for bad input.

use serde_json::Value;

use crate::{root, tribunal};

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

#[test]
fn scores_the_fixture_as_computed_by_hand() {
    let run = tribunal(
        &["score", "tests/fixtures/score-small.jsonl", "--seed", "3"],
        &root(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    // fx-1: (7 + 10 - 6) / 22 = 0.5; fx-2 abstained (excluded); fx-3 quarkmed
    // (2*1 + 1*0.5) / (2 + 1); fx-4: 0.
    let fx3 = 2.5 / 3.0;
    assert!(
        close(&out["overall"]["score"], (0.5 + fx3 + 0.0) / 3.0),
        "{out}"
    );
    assert_eq!(out["overall"]["n"], 3);
    assert_eq!(out["excluded"]["incomplete"], 1);
    assert!(close(&out["tags"]["theme:a"]["score"], 0.25));
    assert_eq!(out["tags"]["theme:a"]["n"], 2);
    assert!(close(&out["tags"]["axis:accuracy"]["score"], 1.0 / 7.0));
    assert!(close(
        &out["tags"]["axis:completeness"]["score"],
        10.0 / 15.0
    ));
    let ex = out["examples"].as_array().unwrap();
    assert_eq!(ex.len(), 4);
    assert_eq!(ex[1]["prompt_id"], "fx-2");
    assert_eq!(ex[1]["incomplete"], true);
    assert_eq!(ex[1]["vetoed_by"], Value::Array(vec![]));
    for key in [
        "prompt_id",
        "score",
        "final_score",
        "vetoed_by",
        "incomplete",
    ] {
        assert!(ex[0].get(key).is_some(), "examples[0] lacks {key}");
    }
    // Same seed, same output; another seed moves only the bootstrap.
    let again = tribunal(
        &["score", "tests/fixtures/score-small.jsonl", "--seed", "3"],
        &root(),
    );
    assert_eq!(again.stdout, run.stdout);
    let other: Value = serde_json::from_str(
        &tribunal(
            &["score", "tests/fixtures/score-small.jsonl", "--seed", "4"],
            &root(),
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(other["overall"]["score"], out["overall"]["score"]);
    assert_ne!(
        other["overall"]["bootstrap_std"],
        out["overall"]["bootstrap_std"]
    );
}

#[test]
fn table_format_and_policy_override() {
    let run = tribunal(
        &[
            "score",
            "tests/fixtures/score-small.jsonl",
            "--format",
            "table",
        ],
        &root(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("overall"), "{}", run.stdout);
    assert!(
        run.stdout.contains("4 examples, 3 included"),
        "{}",
        run.stdout
    );
    // The quarkmed row cannot be scored by points: a clear error, not a wrong number.
    let run = tribunal(
        &[
            "score",
            "tests/fixtures/score-small.jsonl",
            "--policy",
            "healthbench",
        ],
        &root(),
    );
    assert_eq!(run.code, 3);
    assert!(
        run.stderr
            .contains("line 3: criteria[0].tier: the healthbench policy scores `points`"),
        "{}",
        run.stderr
    );
}

fn hb(points: &str, met: &str) -> String {
    let pts: Vec<&str> = points.split(',').collect();
    let mets: Vec<&str> = met.split(',').collect();
    let rubrics: Vec<String> = pts
        .iter()
        .zip(&mets)
        .enumerate()
        .map(|(i, (p, m))| {
            format!(r#"{{"criterion": "c{i}", "points": {p}, "tags": [], "criteria_met": {m}}}"#)
        })
        .collect();
    format!(
        r#"{{"prompt": [{{"role": "user", "content": "q"}}], "rubrics": [{}], "example_tags": [], "prompt_id": "x", "canary": "c"}}"#,
        rubrics.join(", ")
    )
}

#[test]
fn bad_input_is_a_clear_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ok = hb("5,3", "true,false");
    let dup_ids = r#"{"case_id": "d", "conversation": [{"role": "user", "content": "q"}], "rubric": {"format": "rubric.v1", "id": "r", "version": 1, "title": "t", "criteria": [{"id": "a", "text": "x", "points": 1}, {"id": "a", "text": "y", "points": 2}]}, "verdicts": {"a": true}}"#;
    let table: Vec<(&str, String, &str)> = vec![
        (
            "malformed",
            format!("{ok}\n{{\"prompt\": [\n"),
            "line 2: not valid JSON",
        ),
        (
            "points",
            format!("{ok}\n{}", hb("5,12", "true,true")),
            "line 2: rubrics[1].points: 12 is outside [-10, 10]",
        ),
        (
            "dup ids",
            dup_ids.to_owned(),
            "line 1: rubric.criteria[1].id: duplicate criterion id \"a\"",
        ),
        (
            "empty rubric",
            r#"{"prompt": [{"role": "user", "content": "q"}], "rubrics": [], "prompt_id": "e"}"#
                .to_owned(),
            "line 1: rubrics: a rubric needs at least one criterion",
        ),
        (
            "unknown tier",
            dup_ids
                .replace(r#""points": 2"#, r#""tier": "vital""#)
                .replace(r#""id": "a", "text": "y""#, r#""id": "b", "text": "y""#),
            "rubric.criteria[1].tier: unknown tier \"vital\"",
        ),
        (
            "not jsonl",
            "[\n  {\"prompt_id\": \"x\"}\n]\n".to_owned(),
            "line 1: not valid JSON",
        ),
        (
            "array line",
            "[1, 2, 3]\n".to_owned(),
            "line 1: expected a JSON object, got an array",
        ),
        (
            "no verdicts",
            hb("5,3", "true,false")
                .replace(r#", "criteria_met": true"#, "")
                .replace(r#", "criteria_met": false"#, ""),
            "line 1: verdicts: no verdicts supplied",
        ),
        (
            "bad verdict",
            hb("5,3", "true,\"perhaps\""),
            "line 1: rubrics[1].criteria_met: \"perhaps\" is not a verdict",
        ),
        ("empty file", String::new(), "no rows to score"),
        (
            "binary",
            "\u{0}\u{1}garbage\n".to_owned(),
            "line 1: not valid JSON",
        ),
    ];
    for (name, content, expected) in table {
        let path = dir.path().join(format!("{}.jsonl", name.replace(' ', "_")));
        std::fs::write(&path, content).unwrap();
        let run = tribunal(&["score", path.to_str().unwrap()], &root());
        assert_eq!(
            run.code, 3,
            "{name}: stdout {} stderr {}",
            run.stdout, run.stderr
        );
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{name}");
        assert!(
            run.stdout.is_empty(),
            "{name}: nothing on stdout when input is bad"
        );
    }
    let missing = tribunal(&["score", "no/such/file.jsonl"], &root());
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot open no/such/file.jsonl"),
        "{}",
        missing.stderr
    );
    let invalid_utf8 = dir.path().join("latin1.jsonl");
    std::fs::write(&invalid_utf8, b"{\"prompt_id\": \"caf\xe9\"}\n").unwrap();
    let run = tribunal(&["score", invalid_utf8.to_str().unwrap()], &root());
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("line 1: not UTF-8 text"),
        "{}",
        run.stderr
    );
}
