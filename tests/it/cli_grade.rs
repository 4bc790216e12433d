//! `tribunal grade` end to end: real HealthBench rows with the simulated committee
//! (skipped without ../shared/data), a mock OpenAI endpoint, and `--resume`.

use serde_json::Value;

use crate::mock_openai::{met, spawn};
use crate::{root, shared_data, summary_example, tribunal};

#[test]
fn grades_real_healthbench_rows_with_the_sim_committee() {
    let Some(data) = shared_data("healthbench") else {
        println!("skipped: ../shared/data/healthbench is absent");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports.jsonl");
    let input = data.join("hard_subset50.jsonl");
    let args = [
        "grade",
        input.to_str().unwrap(),
        "--use-reference",
        "-o",
        out.to_str().unwrap(),
        "--seed",
        "5",
    ];
    let run = tribunal(&args, &root());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("SIMULATED"), "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    let reports: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Rows without a reference completion are skipped and said so.
    let graded = reports.len();
    assert!(graded > 30 && graded <= 50, "{graded}");
    assert!(
        run.stderr.contains("skipped without a response"),
        "{}",
        run.stderr
    );
    assert!(
        reports
            .iter()
            .all(|r| r["simulated"] == true && r["format"] == "grade_report.v1")
    );
    assert_eq!(summary["overall"]["n"].as_u64().unwrap() as usize, graded);
    assert!(summary["tags"]["axis:accuracy"]["n"].as_u64().unwrap() > 0);
    // Resume: nothing is re-graded, the summary is identical.
    let again = tribunal(&[&args[..], &["--resume"]].concat(), &root());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        graded
    );
    assert_eq!(again.stdout, run.stdout);
    println!(
        "graded {graded} real HealthBench rows with the sim committee: overall {}",
        summary["overall"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grades_against_a_mock_openai_endpoint() {
    let (mock, url) = spawn(met(true)).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tribunal.toml");
    std::fs::write(
        &cfg,
        format!(
            "[judges.a]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\nprice_input_per_mtok = 2.0\nprice_output_per_mtok = 8.0\n\n[committee]\nmembers = [\"a\"]\nquorum = 1\n"
        ),
    )
    .unwrap();
    let input = root().join("tests/fixtures/grade-small.jsonl");
    let out = dir.path().join("out.jsonl");
    let args: Vec<String> = vec![
        "grade".into(),
        input.to_string_lossy().into_owned(),
        "-c".into(),
        cfg.to_string_lossy().into_owned(),
        "-o".into(),
        out.to_string_lossy().into_owned(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        tribunal(&a, &root())
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("SIMULATED"));
    let reports: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(reports.len(), 2);
    // Every criterion met by the mock: fixture 1 (points 6, 4, -3) scores (6+4-3)/10.
    assert!(
        (reports[0]["score"]["score"].as_f64().unwrap() - 0.7).abs() < 1e-9,
        "{}",
        reports[0]
    );
    // 100 input + 20 output tokens per call at $2 / $8 per million.
    let cost = reports[0]["usage"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - 3.0 * (100.0 * 2.0 + 20.0 * 8.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(mock.calls(), 3 + 2);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["overall"]["n"], 2);
}

#[test]
fn resume_summary_keeps_the_undefined_reason() {
    // undef-fx-1's rubric has only negative points: its score is undefined.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reports.jsonl");
    let input = root().join("tests/fixtures/grade-undefined.jsonl");
    let args = [
        "grade",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    let run = tribunal(&args, &root());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first: Value = serde_json::from_str(&run.stdout).unwrap();
    let again = tribunal(&[&args[..], &["--resume"]].concat(), &root());
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("2 already done"), "{}", again.stderr);
    let resumed: Value = serde_json::from_str(&again.stdout).unwrap();
    for (name, summary) in [("grade", &first), ("grade --resume", &resumed)] {
        let cases = [
            ("undef-fx-1", Value::from("no_positive_points")),
            ("undef-fx-2", Value::Null),
        ];
        for (id, reason) in cases {
            assert_eq!(
                summary_example(summary, id)["undefined_reason"],
                reason,
                "{name}: {id}: {summary}"
            );
        }
        assert_eq!(summary["excluded"]["undefined"], 1, "{name}: {summary}");
    }
    // The report line agrees, and the resumed summary is the first one, key for key.
    let report: Value = serde_json::from_str(
        std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["score"]["undefined_reason"], "no_positive_points");
    assert_eq!(resumed, first);
}
