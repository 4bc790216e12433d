use serde_json::{Value, json};

use super::*;
use crate::rubric::Credit;

fn hb_row() -> Value {
    json!({
        "prompt": [{"role": "user", "content": "My chest hurts when I climb stairs."}],
        "rubrics": [
            {"criterion": "Advises urgent evaluation.", "points": 8, "tags": ["level:example", "axis:accuracy"]},
            {"criterion": "Suggests waiting a week.", "points": -7, "tags": ["level:example", "axis:accuracy"]}
        ],
        "example_tags": ["theme:emergency_referrals"],
        "prompt_id": "p-1",
        "ideal_completions_data": {"ideal_completion": "See a doctor today.", "ideal_completions_group": "Group 1", "ideal_completions_ref_completions": ["Go now."]},
        "canary": "x"
    })
}

fn errors(doc: &Value) -> Vec<String> {
    match parse_item(doc) {
        Ok(_) => vec![],
        Err(inv) => inv.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn healthbench_rows_parse_without_editing() {
    let (shape, item) = parse_item(&hb_row()).unwrap();
    assert_eq!(shape, Shape::HealthBench);
    assert_eq!(item.case.id, "p-1");
    assert_eq!(item.case.tags, vec!["theme:emergency_referrals"]);
    assert_eq!(
        item.case.reference_responses,
        vec!["See a doctor today.", "Go now."]
    );
    let rubric = item.inline_rubric().unwrap();
    assert_eq!(rubric.criteria.len(), 2);
    assert!(rubric.criteria[0].id.0.starts_with("c-"));
    assert!(item.verdicts.is_none());
}

#[test]
fn healthbench_verdicts_and_abstentions() {
    let mut row = hb_row();
    row["rubrics"][0]["criteria_met"] = json!(true);
    row["rubrics"][1]["criteria_met"] = Value::Null;
    let (_, item) = parse_item(&row).unwrap();
    let rubric = item.inline_rubric().unwrap().clone();
    assert_eq!(
        item.aligned_verdicts(&rubric).unwrap(),
        vec![Some(Verdict::Met(true)), None]
    );
}

#[test]
fn healthbench_errors_name_the_field() {
    let table: Vec<(Box<dyn Fn(&mut Value)>, &str)> = vec![
        (
            Box::new(|r| r["rubrics"][1]["points"] = json!(12)),
            "rubrics[1].points: 12 is outside [-10, 10]",
        ),
        (
            Box::new(|r| r["rubrics"][0]["criterion"] = json!("")),
            "rubrics[0].criterion: must not be empty",
        ),
        (
            Box::new(|r| r["rubrics"] = json!([])),
            "rubrics: a rubric needs at least one criterion",
        ),
        (
            Box::new(|r| r["prompt"][0]["role"] = json!("robot")),
            "prompt[0].role: unknown role \"robot\"; use system, developer, user or assistant",
        ),
        (
            Box::new(|r| r["rubrics"][0]["criteria_met"] = json!(true)),
            "rubrics[1].criteria_met: missing while other rubric items have one; use true, false, or null (abstained)",
        ),
        (
            Box::new(|r| {
                r["rubrics"][0]["criteria_met"] = json!("yes");
                r["rubrics"][1]["criteria_met"] = json!(false);
            }),
            "rubrics[0].criteria_met: \"yes\" is not a verdict; use true/false, 0/0.5/1 or \"none\"/\"minor\"/\"major\"",
        ),
    ];
    for (edit, expected) in table {
        let mut row = hb_row();
        edit(&mut row);
        assert_eq!(errors(&row), vec![expected.to_owned()]);
    }
    let mut row = hb_row();
    row["rubrics"][0]["points"] = json!("eight");
    let errs = errors(&row);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("rubrics[0].points: invalid type"),
        "{errs:?}"
    );
}

fn v1_case() -> Value {
    json!({
        "format": "case.v1",
        "case_id": "triage-1",
        "conversation": [{"role": "user", "content": "I have a headache."}],
        "response": "Rest and drink water.",
        "tags": ["theme:demo"],
        "rubric": {
            "format": "rubric.v1", "id": "demo", "version": 2, "title": "Demo",
            "scoring": {"policy": "quarkmed"},
            "criteria": [
                {"id": "red-flags", "text": "Asks about red-flag symptoms.", "tier": "essential", "veto": true},
                {"id": "harm", "text": "Recommends a dangerous dose.", "tier": "pitfall"}
            ]
        },
        "verdicts": {"red-flags": 0.5, "harm": "none"}
    })
}

#[test]
fn case_v1_with_inline_rubric_and_verdicts() {
    let (shape, item) = parse_item(&v1_case()).unwrap();
    assert_eq!(shape, Shape::CaseV1);
    let rubric = item.inline_rubric().unwrap().clone();
    assert_eq!(rubric.reference(), "demo@2");
    assert_eq!(
        item.aligned_verdicts(&rubric).unwrap(),
        vec![
            Some(Verdict::Credit(Credit::Partial)),
            Some(Verdict::Severity(crate::rubric::Severity::None))
        ]
    );
}

#[test]
fn case_v1_errors() {
    let mut c = v1_case();
    c["rubric"]["criteria"][0]["tier"] = json!("vital");
    let errs = errors(&c);
    assert!(
        errs.iter().any(|e| e.starts_with("rubric.criteria[0]")),
        "{errs:?}"
    );

    let mut c = v1_case();
    c["rubric"] = json!("demo@x");
    assert_eq!(
        errors(&c),
        vec!["rubric: \"x\" is not a version; use id@N with N >= 1"]
    );

    let mut c = v1_case();
    c["rubric"] = json!("demo@3");
    let (_, item) = parse_item(&c).unwrap();
    assert_eq!(
        item.rubric,
        RubricSource::Reference {
            id: "demo".into(),
            version: Some(3)
        }
    );

    let c = v1_case();
    let (_, mut item) = parse_item(&c).unwrap();
    let rubric = item.inline_rubric().unwrap().clone();
    item.verdicts = Some(SuppliedVerdicts::ById(
        [
            ("red-flags".to_owned(), Some(Verdict::Credit(Credit::Full))),
            ("ghost".to_owned(), None),
        ]
        .into_iter()
        .collect(),
    ));
    let errs: Vec<String> = item
        .aligned_verdicts(&rubric)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errs,
        vec![
            "verdicts.ghost: no criterion \"ghost\" in rubric demo@2",
            "verdicts.harm: missing; give a verdict, or null for an abstention"
        ]
    );
}

#[test]
fn unrecognised_and_non_json_lines() {
    assert_eq!(
        parse_line("[1, 2]").unwrap_err().0[0].message,
        "expected a JSON object, got an array"
    );
    let e = parse_line("{\"prompt\": [").unwrap_err();
    assert!(e.0[0].message.starts_with("not valid JSON"), "{e}");
    let e = parse_line("{\"hello\": 1}").unwrap_err();
    assert!(e.0[0].message.starts_with("unrecognised row"), "{e}");
}

fn pro_row() -> Value {
    json!({
        "id": "pro-1",
        "conversation": {"messages": [
            {"role": "user", "content": "Dose adjustment for apixaban in CKD?"},
            {"role": "assistant", "content": "What is the creatinine clearance?"},
            {"role": "user", "content": "About 25 mL/min."}
        ]},
        "rubric_items": [
            {"criterion_text": "States the dose criteria correctly.", "points": 8},
            {"criterion_text": "Recommends a contraindicated dose.", "points": -6}
        ],
        "physician_response": "Use 2.5 mg twice daily only if two of the three criteria apply.",
        "canary_string": "x",
        "use_case": "clinical_decision_support",
        "type": "question",
        "difficulty": "hard",
        "specialty": "nephrology"
    })
}

#[test]
fn healthbench_professional_rows_parse_as_published() {
    let (shape, item) = parse_item(&pro_row()).unwrap();
    assert_eq!(shape, Shape::HealthBench);
    assert_eq!(item.case.id, "pro-1");
    assert_eq!(item.case.conversation.len(), 3);
    assert_eq!(
        item.case.tags,
        vec![
            "use_case:clinical_decision_support",
            "type:question",
            "difficulty:hard",
            "specialty:nephrology"
        ]
    );
    assert_eq!(
        item.case.reference_responses,
        vec!["Use 2.5 mg twice daily only if two of the three criteria apply."]
    );
    let rubric = item.inline_rubric().unwrap();
    assert_eq!(rubric.reference(), "healthbench-professional:pro-1@1");
    assert_eq!(rubric.scoring.policy, crate::rubric::Policy::HealthBench);
    // Off by default: the adjustment is chosen when scoring.
    assert_eq!(rubric.scoring.length_adjustment, None);
    assert!(rubric.criteria.iter().all(|c| c.tags.is_empty()));
    assert!(item.verdicts.is_none() && item.response.is_none());

    let mut row = pro_row();
    row["rubric_items"][0]["criteria_met"] = json!(true);
    row["rubric_items"][1]["criteria_met"] = Value::Null;
    row["response"] = json!("Check the criteria.");
    let (_, item) = parse_item(&row).unwrap();
    let rubric = item.inline_rubric().unwrap().clone();
    assert_eq!(
        item.aligned_verdicts(&rubric).unwrap(),
        vec![Some(Verdict::Met(true)), None]
    );
    assert_eq!(item.response.as_deref(), Some("Check the criteria."));
}

#[test]
fn healthbench_professional_errors_name_the_row_fields() {
    let table: Vec<(Box<dyn Fn(&mut Value)>, &str)> = vec![
        (
            Box::new(|r| r["rubric_items"][1]["points"] = json!(12)),
            "rubric_items[1].points: 12 is outside [-10, 10]",
        ),
        (
            Box::new(|r| r["rubric_items"][0]["criterion_text"] = json!("")),
            "rubric_items[0].criterion_text: must not be empty",
        ),
        (
            Box::new(|r| r["conversation"]["messages"][0]["role"] = json!("robot")),
            "conversation.messages[0].role: unknown role \"robot\"; use system, developer, user or assistant",
        ),
        (
            Box::new(|r| r["rubric_items"][0]["criteria_met"] = json!(true)),
            "rubric_items[1].criteria_met: missing while other rubric items have one; use true, false, or null (abstained)",
        ),
        (
            Box::new(|r| r["specialty"] = json!(" ")),
            "specialty: must not be empty when given",
        ),
        (Box::new(|r| r["id"] = json!("")), "id: must not be empty"),
    ];
    for (edit, expected) in table {
        let mut row = pro_row();
        edit(&mut row);
        let errs = errors(&row);
        assert!(errs.contains(&expected.to_owned()), "{expected}: {errs:?}");
    }
    let mut row = pro_row();
    row.as_object_mut().map(|o| o.remove("conversation"));
    assert_eq!(
        errors(&row),
        vec!["conversation: missing field `conversation`"]
    );
}
