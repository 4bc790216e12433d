//! Every example rubric validates; every invalid example fails at the expected fields,
//! both through the library and through `tribunal rubric check`.

use std::collections::BTreeMap;

use tribunal::rubric::schema::{check_schema, parse_rubric};

use crate::{root, tribunal};

fn json_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

#[test]
fn valid_examples_pass_schema_and_validation() {
    let files = json_files(&root().join("rubric-schemas/examples"));
    assert!(
        files.len() >= 3,
        "expected example rubrics, found {files:?}"
    );
    for f in files {
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        check_schema(&doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        parse_rubric(&doc).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let run = tribunal(&["rubric", "check", f.to_str().unwrap()], &root());
        assert_eq!(run.code, 0, "{}: {}", f.display(), run.stderr);
    }
}

#[test]
fn invalid_examples_fail_with_expected_fields() {
    let dir = root().join("rubric-schemas/examples/invalid");
    let expected: BTreeMap<String, Vec<String>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let files: Vec<_> = json_files(&dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "expected.json"))
        .collect();
    assert_eq!(
        files.len(),
        expected.len(),
        "every invalid example needs an entry in expected.json"
    );
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        let want = expected
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing from expected.json"));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        // The schema alone must reject it (it is the gate) ...
        assert!(
            check_schema(&doc).is_err()
                || name == "duplicate-ids.json"
                || name == "policy-mismatch.json",
            "{name}: the schema accepted it"
        );
        // ... and the full parse reports exactly the expected fields.
        let err = parse_rubric(&doc).expect_err(&name);
        let mut got: Vec<String> = err.0.iter().map(|e| e.field.clone()).collect();
        got.sort();
        let mut want = want.clone();
        want.sort();
        assert_eq!(got, want, "{name}: {err}");
        let run = tribunal(&["rubric", "check", f.to_str().unwrap()], &root());
        assert_eq!(run.code, 3, "{name}");
        for field in &want {
            assert!(
                run.stderr.contains(&format!("{field}: ")),
                "{name}: {}",
                run.stderr
            );
        }
    }
}
