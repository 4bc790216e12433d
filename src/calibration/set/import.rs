//! Importers for two published physician-labelled sets: the K-QA physician CSV and the
//! HealthBench meta-eval JSONL. Both keep the judged material as the item's task, so
//! an imported set can be run live and stored as `calibration.v1`.

use serde_json::Value;

use super::jsonl::conversation;
use super::{CalItem, CalibrationSet, Label, LabelValue, RaterKind, Scale, Task, TaskCriterion};

/// Imports the K-QA physician file (`NLI_medical_annotator.csv`): each row is
/// (question, answer, claim) with three physicians' Entailment / Neutral /
/// Contradiction labels in `label_0..label_2`; `category_x` is Must_have / Nice_to_have.
/// The task asks whether the answer supports the claim; its text is also the item's
/// criterion key.
pub fn import_kqa(csv_text: &str) -> Result<CalibrationSet, Vec<String>> {
    let categories = vec![
        "Entailment".to_owned(),
        "Neutral".to_owned(),
        "Contradiction".to_owned(),
    ];
    let mut reader = ::csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| vec![format!("header: {e}")])?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let labels: Vec<(usize, String)> = (0..10)
        .filter_map(|i| col(&format!("label_{i}")).map(|c| (c, format!("physician_{i}"))))
        .collect();
    let (Some(claim), Some(category)) = (col("claim"), col("category_x")) else {
        return Err(vec![
            "header: expected the K-QA columns `claim`, `category_x` and `label_0..`".into(),
        ]);
    };
    if labels.len() < 2 {
        return Err(vec!["header: expected at least two label_N columns".into()]);
    }
    let (question, answer) = (col("Question"), col("answer"));
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let line = n + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("row {line}: {e}"));
                continue;
            }
        };
        let mut ls = Vec::new();
        for (c, rater) in &labels {
            let v = rec.get(*c).unwrap_or("").trim();
            if v.is_empty() {
                continue;
            }
            match categories.iter().position(|x| x == v) {
                Some(i) => ls.push(Label {
                    rater: rater.clone(),
                    kind: RaterKind::Human,
                    value: LabelValue::Category(i),
                }),
                None => errors.push(format!(
                    "row {line}: {}: \"{v}\" is not Entailment, Neutral or Contradiction",
                    &headers[*c]
                )),
            }
        }
        let cell = |c: Option<usize>| {
            c.and_then(|c| rec.get(c))
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
        };
        let criterion = cell(Some(claim)).map(|c| format!("The response supports this claim: {c}"));
        let task = match (cell(question), cell(answer), &criterion) {
            (Some(q), Some(response), Some(text)) => Some(Task {
                conversation: vec![crate::item::Message {
                    role: crate::item::Role::User,
                    content: q,
                }],
                response,
                criterion: TaskCriterion::Inline { text: text.clone() },
            }),
            _ => None,
        };
        items.push(CalItem {
            id: format!("kqa-{}", rec.get(0).unwrap_or_default()),
            category: rec.get(category).map(str::to_owned),
            criterion,
            task,
            labels: ls,
        });
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: "k-qa".into(),
            description: None,
            scale: Scale::Nominal,
            categories,
            met: Some("Entailment".into()),
            min_pair_items: None,
            items,
        })
    } else {
        Err(errors)
    }
}

/// Imports HealthBench meta-eval rows: `binary_labels` (one per physician, aligned
/// with `anonymized_physician_ids`), `category`, `rubric` (the criterion text) and,
/// for the task, `prompt` (the conversation) and `completion` (the response).
pub fn import_healthbench_meta(text: &str) -> Result<CalibrationSet, Vec<String>> {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("line {}: not valid JSON: {e}", n + 1));
                continue;
            }
        };
        let (Some(labels), Some(ids)) = (
            v.get("binary_labels").and_then(Value::as_array),
            v.get("anonymized_physician_ids").and_then(Value::as_array),
        ) else {
            errors.push(format!(
                "line {}: binary_labels / anonymized_physician_ids: missing",
                n + 1
            ));
            continue;
        };
        if labels.len() != ids.len() {
            errors.push(format!(
                "line {}: binary_labels: {} labels but {} physician ids",
                n + 1,
                labels.len(),
                ids.len()
            ));
            continue;
        }
        let mut ls = Vec::new();
        for (j, (l, id)) in labels.iter().zip(ids).enumerate() {
            match (l.as_bool(), id.as_str()) {
                (Some(b), Some(id)) => ls.push(Label {
                    rater: id.to_owned(),
                    kind: RaterKind::Human,
                    value: LabelValue::Category(usize::from(b)),
                }),
                _ => errors.push(format!(
                    "line {}: binary_labels[{j}]: expected a boolean and a physician id",
                    n + 1
                )),
            }
        }
        let mut text_field = |field: &str| match v.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errors.push(format!(
                    "line {}: {field}: expected a string, got {}",
                    n + 1,
                    crate::rubric::json_kind_of(other)
                ));
                None
            }
        };
        let criterion = text_field("rubric");
        let response = text_field("completion");
        let conversation = match v.get("prompt") {
            None | Some(Value::Null) => None,
            Some(p) => match conversation(p, "prompt") {
                Ok(c) => Some(c),
                Err(es) => {
                    errors.extend(es.iter().map(|e| format!("line {}: {e}", n + 1)));
                    None
                }
            },
        };
        let task = match (conversation, response, &criterion) {
            (Some(conversation), Some(response), Some(text)) => Some(Task {
                conversation,
                response,
                criterion: TaskCriterion::Inline { text: text.clone() },
            }),
            _ => None,
        };
        items.push(CalItem {
            id: v
                .get("prompt_id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("meta-{}", n + 1), |p| format!("{p}-{}", n + 1)),
            category: v.get("category").and_then(Value::as_str).map(str::to_owned),
            criterion,
            task,
            labels: ls,
        });
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: "healthbench-meta-eval".into(),
            description: None,
            scale: Scale::Nominal,
            categories: vec!["false".into(), "true".into()],
            met: Some("true".into()),
            min_pair_items: None,
            items,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_set;
    use super::*;
    use crate::item::{Message, Role};

    const KQA: &str = ",Question,llm_x,answer,claim,category_x,majority_label,label_0,label_1,label_2\n0,q,gpt4,a,\"c, with comma\",Must_have,Neutral,Neutral,Entailment,Neutral\n1,\"q2\nsecond line\",gpt4,\"a \"\"quoted\"\"\",c2,Nice_to_have,Entailment,Entailment,,Entailment\n";

    #[test]
    fn imports_kqa_rows() {
        let s = import_kqa(KQA).unwrap();
        assert_eq!(s.items[0].labels.len(), 3);
        assert_eq!(
            s.items[0].criterion.as_deref(),
            Some("The response supports this claim: c, with comma")
        );
        assert_eq!(s.items[0].labels[1].value, LabelValue::Category(0));
        assert_eq!(
            s.items[0].task,
            Some(Task {
                conversation: vec![Message {
                    role: Role::User,
                    content: "q".into()
                }],
                response: "a".into(),
                criterion: TaskCriterion::Inline {
                    text: "The response supports this claim: c, with comma".into()
                },
            })
        );
        assert_eq!(
            s.items[1].labels.len(),
            2,
            "an empty cell is a missing label"
        );
        assert!(import_kqa(&KQA.replace("Entailment,Neutral\n", "Agree,Neutral\n")).is_err());
    }

    #[test]
    fn kqa_without_question_and_answer_columns_has_no_tasks() {
        let csv = ",claim,category_x,label_0,label_1\n0,c,Must_have,Neutral,Entailment\n";
        let s = import_kqa(csv).unwrap();
        assert_eq!(s.items[0].task, None);
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    #[test]
    fn kqa_import_round_trips() {
        let s = import_kqa(KQA).unwrap();
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    /// The real K-QA physician file, when `../shared/data` holds it (as for the
    /// integration tests): every row gets a task, and the set survives storage.
    #[test]
    fn the_real_kqa_file_round_trips() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/k-qa/NLI_medical_annotator.csv");
        let Ok(text) = std::fs::read_to_string(&path) else {
            println!("skipped: {} is absent", path.display());
            return;
        };
        let s = import_kqa(&text).unwrap();
        assert!(s.items.iter().all(|i| i.task.is_some()));
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    const META: &str = r#"{"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], "completion": "c", "rubric": "Advises rest.", "category": "cluster:a", "binary_labels": [true, false], "anonymized_physician_ids": ["p1", "p2"], "prompt_id": "x"}
{"rubric": "Asks duration.", "binary_labels": [false], "anonymized_physician_ids": ["p1"]}
"#;

    #[test]
    fn imports_healthbench_meta_rows_with_tasks() {
        let s = import_healthbench_meta(META).unwrap();
        assert_eq!(s.items[0].id, "x-1");
        assert_eq!(s.items[0].labels[0].value, LabelValue::Category(1));
        let task = s.items[0].task.as_ref().unwrap();
        assert_eq!(task.conversation.len(), 2);
        assert_eq!(task.conversation[0].role, Role::System);
        assert_eq!(task.response, "c");
        assert_eq!(
            task.criterion,
            TaskCriterion::Inline {
                text: "Advises rest.".into()
            }
        );
        assert_eq!(s.items[1].task, None, "no prompt or completion: no task");
        assert_eq!(s.items[1].criterion.as_deref(), Some("Asks duration."));
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    #[test]
    fn healthbench_meta_malformed_task_fields_are_errors() {
        let bad = META
            .replace(r#""role": "system""#, r#""role": "doctor""#)
            .replace(r#""completion": "c""#, r#""completion": 3"#);
        let errs = import_healthbench_meta(&bad).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("line 1: prompt[0].role: unknown role")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("line 1: completion: expected a string")),
            "{errs:?}"
        );
    }
}
