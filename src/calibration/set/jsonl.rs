//! The `calibration.v1` JSONL format: `parse_set` reads it (a header line, then one
//! item per line with its labels and, optionally, the judged task) and
//! `CalibrationSet::to_jsonl` writes it back canonically, so that
//! `parse_set(&s.to_jsonl()) == Ok(s)`. Owns the conversation reader the importers share.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{CalItem, CalibrationSet, Label, LabelValue, RaterKind, Scale, Task, TaskCriterion};
use crate::item::{Message, Role};
use crate::rubric::{FieldError, RawCriterion, decode_at, json_kind_of, valid_identifier};

pub const SET_FORMAT: &str = "calibration.v1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    format: String,
    name: String,
    scale: String,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    met: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    min_pair_items: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    #[serde(default)]
    category: Option<String>,
    /// The conversation: one user turn as a string, or `{role, content}` messages.
    #[serde(default)]
    case: Option<Value>,
    #[serde(default)]
    response: Option<String>,
    /// Inline criterion: its text, or an object with `text` (a rubric.v1 criterion).
    #[serde(default)]
    criterion: Option<Value>,
    /// With `criterion_id`, a criterion of a stored rubric (`id@version` or `id`).
    #[serde(default)]
    rubric: Option<String>,
    #[serde(default)]
    criterion_id: Option<String>,
    labels: Vec<RawLabel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    rater: String,
    kind: String,
    value: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    content: String,
}

/// Reads a conversation: a string is one user turn; an array holds `{role, content}`
/// messages with roles system, developer, user or assistant. Errors are located under
/// `field` (`case[2].role`).
pub(super) fn conversation(v: &Value, field: &str) -> Result<Vec<Message>, Vec<FieldError>> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err(vec![FieldError::new(
            field,
            "empty; give the user's message, or leave the field out",
        )]),
        Value::String(s) => Ok(vec![Message {
            role: Role::User,
            content: s.clone(),
        }]),
        Value::Array(turns) if turns.is_empty() => Err(vec![FieldError::new(
            field,
            "the conversation needs at least one turn",
        )]),
        Value::Array(turns) => {
            let mut errs = Vec::new();
            let mut out = Vec::with_capacity(turns.len());
            for (i, t) in turns.iter().enumerate() {
                let at = format!("{field}[{i}]");
                let m: RawMessage = match decode_at(t) {
                    Ok(m) => m,
                    Err(e) => {
                        errs.push(e.under(&at));
                        continue;
                    }
                };
                let role = match m.role.as_str() {
                    "system" => Role::System,
                    "developer" => Role::Developer,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => {
                        errs.push(FieldError::new(
                            format!("{at}.role"),
                            format!(
                                "unknown role \"{other}\"; use system, developer, user or assistant"
                            ),
                        ));
                        continue;
                    }
                };
                out.push(Message {
                    role,
                    content: m.content,
                });
            }
            if errs.is_empty() { Ok(out) } else { Err(errs) }
        }
        other => Err(vec![FieldError::new(
            field,
            format!(
                "expected the user's message as a string or an array of {{\"role\", \"content\"}} messages, got {}",
                json_kind_of(other)
            ),
        )]),
    }
}

/// Checks a rubric reference the way `case.v1` does: `id` or `id@N`, N >= 1.
fn check_rubric_reference(s: &str) -> Result<(), String> {
    let id = match s.split_once('@') {
        Some((id, v)) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => id,
            _ => return Err(format!("\"{v}\" is not a version; use id@N with N >= 1")),
        },
        None => s,
    };
    if id.is_empty() {
        return Err("empty rubric reference; use \"id@version\" or \"id\"".into());
    }
    if !valid_identifier(id) {
        return Err(format!(
            "\"{id}\" is not a valid rubric id; use 1-128 letters, digits or . _ : -"
        ));
    }
    Ok(())
}

/// The item's criterion: the breakdown key and, when complete, the task's criterion.
fn item_criterion(
    raw: &RawItem,
    errs: &mut Vec<FieldError>,
) -> (Option<String>, Option<TaskCriterion>) {
    let inline = match &raw.criterion {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(obj @ Value::Object(_)) => match decode_at::<_, RawCriterion>(obj) {
            Ok(c) => Some(c.text),
            Err(e) => {
                errs.push(e.under("criterion"));
                return (None, None);
            }
        },
        Some(other) => {
            errs.push(FieldError::new(
                "criterion",
                format!(
                    "expected the criterion text or an object with `text`, got {}",
                    json_kind_of(other)
                ),
            ));
            return (None, None);
        }
    };
    if let Some(text) = inline {
        if raw.rubric.is_some() || raw.criterion_id.is_some() {
            errs.push(FieldError::new(
                "criterion",
                "give the criterion inline (`criterion`) or by reference (`rubric` + `criterion_id`), not both",
            ));
            return (None, None);
        }
        if text.trim().is_empty() {
            errs.push(FieldError::new(
                "criterion",
                "empty; give the criterion text, or leave `criterion` out",
            ));
            return (None, None);
        }
        return (Some(text.clone()), Some(TaskCriterion::Inline { text }));
    }
    match (&raw.rubric, &raw.criterion_id) {
        (None, None) => (None, None),
        (None, Some(id)) if id.trim().is_empty() => {
            errs.push(FieldError::new(
                "criterion_id",
                "empty; give the criterion's id, or leave `criterion_id` out",
            ));
            (None, None)
        }
        // Without a rubric the id is only a breakdown key, as it always was.
        (None, Some(id)) => (Some(id.clone()), None),
        (Some(_), None) => {
            errs.push(FieldError::new(
                "criterion_id",
                "missing; `rubric` needs the id of the criterion within it",
            ));
            (None, None)
        }
        (Some(rubric), Some(id)) => {
            let mut ok = true;
            if let Err(m) = check_rubric_reference(rubric) {
                errs.push(FieldError::new("rubric", m));
                ok = false;
            }
            if !valid_identifier(id) {
                errs.push(FieldError::new(
                    "criterion_id",
                    format!(
                        "\"{id}\" is not a valid criterion id; use 1-128 letters, digits or . _ : -"
                    ),
                ));
                ok = false;
            }
            if ok {
                (
                    Some(id.clone()),
                    Some(TaskCriterion::Reference {
                        rubric: rubric.clone(),
                        criterion_id: id.clone(),
                    }),
                )
            } else {
                (None, None)
            }
        }
    }
}

/// Parses a `calibration.v1` JSONL text. Errors are `line N: field: message`.
pub fn parse_set(text: &str) -> Result<CalibrationSet, Vec<String>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((hn, header)) = lines.next() else {
        return Err(vec![
            "the set is empty: expected a header line then items".into(),
        ]);
    };
    let mut errors = Vec::new();
    let at = |n: usize, e: &FieldError| format!("line {}: {e}", n + 1);
    let header: Value = serde_json::from_str(header)
        .map_err(|e| vec![format!("line {}: not valid JSON: {e}", hn + 1)])?;
    let h: RawHeader = decode_at(&header).map_err(|e| vec![at(hn, &e)])?;
    if h.format != SET_FORMAT {
        errors.push(at(
            hn,
            &FieldError::new(
                "format",
                format!("\"{}\" is not supported; use \"{SET_FORMAT}\"", h.format),
            ),
        ));
    }
    let scale = Scale::parse(&h.scale).unwrap_or_else(|| {
        errors.push(at(
            hn,
            &FieldError::new(
                "scale",
                format!(
                    "unknown scale \"{}\"; use nominal, ordinal or interval",
                    h.scale
                ),
            ),
        ));
        Scale::Nominal
    });
    if scale != Scale::Interval && h.categories.len() < 2 {
        errors.push(at(
            hn,
            &FieldError::new(
                "categories",
                "list at least two categories (in order, for ordinal scales)",
            ),
        ));
    }
    if let Some(m) = &h.met {
        if !h.categories.contains(m) {
            errors.push(at(
                hn,
                &FieldError::new("met", format!("\"{m}\" is not one of the categories")),
            ));
        }
    }
    let mut items = Vec::new();
    let mut ids = BTreeMap::new();
    for (n, line) in lines {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("line {}: not valid JSON: {e}", n + 1));
                continue;
            }
        };
        let raw: RawItem = match decode_at(&v) {
            Ok(r) => r,
            Err(e) => {
                errors.push(at(n, &e));
                continue;
            }
        };
        if let Some(first) = ids.insert(raw.id.clone(), n + 1) {
            errors.push(at(
                n,
                &FieldError::new("id", format!("\"{}\" repeats line {first}", raw.id)),
            ));
        }
        let mut errs = Vec::new();
        let conversation = match raw.case.as_ref().map(|c| conversation(c, "case")) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(es)) => {
                errs.extend(es);
                None
            }
        };
        let (criterion, task_criterion) = item_criterion(&raw, &mut errs);
        let task = match (conversation, raw.response, task_criterion) {
            (Some(conversation), Some(response), Some(criterion)) => Some(Task {
                conversation,
                response,
                criterion,
            }),
            _ => None,
        };
        let mut labels = Vec::with_capacity(raw.labels.len());
        for (j, l) in raw.labels.into_iter().enumerate() {
            let Some(kind) = RaterKind::parse(&l.kind) else {
                errs.push(FieldError::new(
                    format!("labels[{j}].kind"),
                    format!("\"{}\" is not human or judge", l.kind),
                ));
                continue;
            };
            match super::label_value(scale, &h.categories, &l.value) {
                Ok(value) => labels.push(Label {
                    rater: l.rater,
                    kind,
                    value,
                }),
                Err(m) => errs.push(FieldError::new(format!("labels[{j}].value"), m)),
            }
        }
        errors.extend(errs.iter().map(|e| at(n, e)));
        items.push(CalItem {
            id: raw.id,
            category: raw.category,
            criterion,
            task,
            labels,
        });
        if errors.len() > 100 {
            break;
        }
    }
    if items.is_empty() && errors.is_empty() {
        errors.push("the set has a header but no items".into());
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: h.name,
            description: h.description,
            scale,
            categories: h.categories,
            met: h.met,
            min_pair_items: h.min_pair_items,
            items,
        })
    } else {
        Err(errors)
    }
}

impl CalibrationSet {
    /// Writes the set as canonical `calibration.v1` JSONL (header, then one item per
    /// line, each ending in a newline), so that `parse_set(&s.to_jsonl()) == Ok(s)` for
    /// every set the readers produce. The server stores sets in this form whatever
    /// format they were uploaded in.
    ///
    /// An item's task is written as `case` (a string when the conversation is one user
    /// turn, else messages), `response` and either `criterion` or `rubric` +
    /// `criterion_id`; an item without a task keeps its breakdown key as `criterion`.
    /// Labels must be finite numbers or indices into `categories`, as the readers
    /// guarantee.
    pub fn to_jsonl(&self) -> String {
        let mut header = Map::new();
        header.insert("format".into(), SET_FORMAT.into());
        header.insert("name".into(), self.name.as_str().into());
        if let Some(d) = &self.description {
            header.insert("description".into(), d.as_str().into());
        }
        header.insert("scale".into(), self.scale.as_str().into());
        if !self.categories.is_empty() {
            header.insert("categories".into(), json!(self.categories));
        }
        if let Some(m) = &self.met {
            header.insert("met".into(), m.as_str().into());
        }
        if let Some(n) = self.min_pair_items {
            header.insert("min_pair_items".into(), n.into());
        }
        let mut out = Value::Object(header).to_string();
        out.push('\n');
        for item in &self.items {
            out.push_str(&self.item_json(item).to_string());
            out.push('\n');
        }
        out
    }

    fn item_json(&self, item: &CalItem) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), item.id.as_str().into());
        if let Some(c) = &item.category {
            m.insert("category".into(), c.as_str().into());
        }
        match &item.task {
            Some(task) => {
                let case = match task.conversation.as_slice() {
                    // A blank message stays an array: the string form must not be blank.
                    [only] if only.role == Role::User && !only.content.trim().is_empty() => {
                        only.content.as_str().into()
                    }
                    turns => Value::Array(
                        turns
                            .iter()
                            .map(|t| json!({"role": t.role.as_str(), "content": t.content}))
                            .collect(),
                    ),
                };
                m.insert("case".into(), case);
                m.insert("response".into(), task.response.as_str().into());
                match &task.criterion {
                    TaskCriterion::Inline { text } => {
                        m.insert("criterion".into(), text.as_str().into());
                    }
                    TaskCriterion::Reference {
                        rubric,
                        criterion_id,
                    } => {
                        m.insert("rubric".into(), rubric.as_str().into());
                        m.insert("criterion_id".into(), criterion_id.as_str().into());
                    }
                }
            }
            None => {
                if let Some(c) = &item.criterion {
                    m.insert("criterion".into(), c.as_str().into());
                }
            }
        }
        let labels = item
            .labels
            .iter()
            .map(|l| {
                let value = match l.value {
                    LabelValue::Category(i) => json!(self.categories.get(i)),
                    LabelValue::Number(x) => json!(x),
                };
                json!({"rater": l.rater, "kind": l.kind.as_str(), "value": value})
            })
            .collect();
        m.insert("labels".into(), Value::Array(labels));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SET: &str = r#"{"format": "calibration.v1", "name": "demo", "scale": "nominal", "categories": ["false", "true"], "met": "true"}
{"id": "a", "category": "x", "criterion": "Advises rest.", "labels": [{"rater": "h1", "kind": "human", "value": true}, {"rater": "j1", "kind": "judge", "value": false}]}
{"id": "b", "labels": [{"rater": "h1", "kind": "human", "value": "true"}]}
"#;

    const HEADER: &str = r#"{"format": "calibration.v1", "name": "demo", "scale": "nominal", "categories": ["false", "true"]}"#;

    /// Parses a header plus one item line.
    fn one(item: &str) -> Result<CalItem, Vec<String>> {
        parse_set(&format!("{HEADER}\n{item}\n")).map(|mut s| s.items.remove(0))
    }

    fn user(s: &str) -> Vec<Message> {
        vec![Message {
            role: Role::User,
            content: s.into(),
        }]
    }

    #[test]
    fn parses_a_set() {
        let s = parse_set(SET).unwrap();
        assert_eq!(s.items.len(), 2);
        assert_eq!(s.items[0].labels[0].value, LabelValue::Category(1));
        assert_eq!(s.raters(RaterKind::Judge), vec!["j1"]);
        assert_eq!(s.items[0].task, None);
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = SET
            .replace(r#""value": false}"#, r#""value": "maybe"}"#)
            .replace(r#""id": "b""#, r#""id": "a""#);
        let errs = parse_set(&bad).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("line 2: labels[1].value")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("line 3: id: \"a\" repeats line 2")),
            "{errs:?}"
        );
        assert!(parse_set("").is_err());
    }

    #[test]
    fn reads_tasks() {
        let labels = r#""labels": []"#;
        let cases: &[(&str, Option<Task>, Option<&str>)] = &[
            (
                r#""case": "Is rest enough?", "response": "Yes.", "criterion": "Advises rest.""#,
                Some(Task {
                    conversation: user("Is rest enough?"),
                    response: "Yes.".into(),
                    criterion: TaskCriterion::Inline {
                        text: "Advises rest.".into(),
                    },
                }),
                Some("Advises rest."),
            ),
            (
                r#""case": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "response": "Hello.", "criterion": {"text": "Greets.", "points": 2}"#,
                Some(Task {
                    conversation: vec![
                        Message {
                            role: Role::System,
                            content: "Be brief.".into(),
                        },
                        Message {
                            role: Role::User,
                            content: "Hi".into(),
                        },
                    ],
                    response: "Hello.".into(),
                    criterion: TaskCriterion::Inline {
                        text: "Greets.".into(),
                    },
                }),
                Some("Greets."),
            ),
            (
                r#""case": "q", "response": "r", "rubric": "triage@2", "criterion_id": "urgent-care""#,
                Some(Task {
                    conversation: user("q"),
                    response: "r".into(),
                    criterion: TaskCriterion::Reference {
                        rubric: "triage@2".into(),
                        criterion_id: "urgent-care".into(),
                    },
                }),
                Some("urgent-care"),
            ),
            // Partial tasks are not errors: offline sets need none of it.
            (r#""case": "q", "criterion": "c""#, None, Some("c")),
            (r#""response": "r", "criterion": "c""#, None, Some("c")),
            (r#""case": "q", "response": "r""#, None, None),
            (r#""criterion_id": "c1""#, None, Some("c1")),
        ];
        for (fields, task, key) in cases {
            let item = one(&format!(r#"{{"id": "a", {fields}, {labels}}}"#))
                .unwrap_or_else(|e| panic!("{fields}: {e:?}"));
            assert_eq!(&item.task, task, "{fields}");
            assert_eq!(item.criterion.as_deref(), *key, "{fields}");
        }
    }

    #[test]
    fn malformed_tasks_are_errors_naming_line_and_field() {
        let cases: &[(&str, &str)] = &[
            (r#""case": 3"#, "line 2: case: expected the user's message"),
            (r#""case": """#, "line 2: case: empty"),
            (r#""case": []"#, "line 2: case: the conversation needs"),
            (
                r#""case": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]"#,
                "line 2: case[1].role: unknown role \"robot\"",
            ),
            (
                r#""case": [{"role": "user", "text": "a"}]"#,
                "line 2: case[0].text: unknown field",
            ),
            (r#""response": 7"#, "line 2: response: invalid type"),
            (
                r#""criterion": 7"#,
                "line 2: criterion: expected the criterion text",
            ),
            (
                r#""criterion": {"id": "x"}"#,
                "line 2: criterion.text: missing field `text`",
            ),
            (r#""criterion": """#, "line 2: criterion: empty"),
            (
                r#""criterion": "c", "criterion_id": "c1""#,
                "line 2: criterion: give",
            ),
            (r#""rubric": "triage""#, "line 2: criterion_id: missing"),
            (
                r#""rubric": "", "criterion_id": "c1""#,
                "line 2: rubric: empty rubric reference",
            ),
            (
                r#""rubric": "triage@0", "criterion_id": "c1""#,
                "line 2: rubric: \"0\" is not a version",
            ),
            (
                r#""rubric": "triage", "criterion_id": "a b""#,
                "line 2: criterion_id: \"a b\" is not a valid",
            ),
        ];
        for (fields, expected) in cases {
            let errs = one(&format!(r#"{{"id": "a", {fields}, "labels": []}}"#)).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "{fields}: expected {expected:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn canonical_output_round_trips() {
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            r#"{"id": "a", "case": [{"role": "developer", "content": "d"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}, {"role": "user", "content": "q2"}], "response": "r", "rubric": "triage", "criterion_id": "c1", "labels": [{"rater": "h", "kind": "human", "value": true}]}"#,
            r#"{"id": "b", "case": "q", "criterion": {"text": "c"}, "labels": []}"#,
        );
        let s = parse_set(&text).unwrap();
        let out = s.to_jsonl();
        assert_eq!(parse_set(&out), Ok(s.clone()));
        assert_eq!(
            out,
            parse_set(&out).unwrap().to_jsonl(),
            "writing is canonical"
        );
        let with_description =
            parse_set(&SET.replace(r#""met": "true""#, r#""met": "true", "description": "d""#))
                .unwrap();
        assert_eq!(with_description.description.as_deref(), Some("d"));
        assert_eq!(
            parse_set(&with_description.to_jsonl()),
            Ok(with_description)
        );
    }

    fn example_set() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("calibration/examples/triage-small.jsonl"),
        )
        .unwrap()
    }

    #[test]
    fn the_example_set_round_trips() {
        let s = parse_set(&example_set()).unwrap();
        assert!(
            s.items.iter().all(|i| i.task.is_some()),
            "the example has complete tasks"
        );
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    /// Every line `to_jsonl` writes validates against the published JSON Schema, and so
    /// does every line of the example set.
    #[test]
    fn written_lines_match_the_json_schema() {
        let schema: Value = serde_json::from_str(include_str!(
            "../../../calibration/calibration.v1.schema.json"
        ))
        .unwrap();
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let example = example_set();
        let s = parse_set(&example).unwrap();
        for text in [example.as_str(), &s.to_jsonl()] {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).unwrap();
                let errs: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
                assert!(errs.is_empty(), "{line}: {errs:?}");
            }
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, newlines and non-ASCII test the JSON escaping.
        "[a-z\"\\\\\n é✓]{1,8}".prop_filter("not blank", |s| !s.trim().is_empty())
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::System),
            Just(Role::Developer),
            Just(Role::User),
            Just(Role::Assistant)
        ]
    }

    fn criterion() -> impl Strategy<Value = TaskCriterion> {
        prop_oneof![
            text().prop_map(|text| TaskCriterion::Inline { text }),
            (
                "[a-z][a-z0-9._:-]{0,6}",
                proptest::option::of(1u32..50),
                "[a-z0-9][a-z0-9_-]{0,6}"
            )
                .prop_map(|(id, v, criterion_id)| TaskCriterion::Reference {
                    rubric: v.map_or(id.clone(), |v| format!("{id}@{v}")),
                    criterion_id,
                }),
        ]
    }

    /// An item as the readers produce it: the breakdown key follows the task's criterion.
    fn item(scale: Scale, k: usize) -> impl Strategy<Value = CalItem> {
        let value = match scale {
            Scale::Interval => any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(LabelValue::Number)
                .boxed(),
            Scale::Nominal | Scale::Ordinal => (0..k).prop_map(LabelValue::Category).boxed(),
        };
        let label = (
            "[a-z]{1,3}",
            prop_oneof![Just(RaterKind::Human), Just(RaterKind::Judge)],
            value,
        )
            .prop_map(|(rater, kind, value)| Label { rater, kind, value });
        let task = (
            proptest::collection::vec((role(), text()), 1..4),
            "[a-z \n\"]{0,8}",
            criterion(),
        )
            .prop_map(|(turns, response, criterion)| Task {
                conversation: turns
                    .into_iter()
                    .map(|(role, content)| Message { role, content })
                    .collect(),
                response,
                criterion,
            });
        (
            proptest::option::of(text()),
            proptest::option::of(task),
            proptest::option::of(text()),
            proptest::collection::vec(label, 0..4),
        )
            .prop_map(|(category, task, key, labels)| {
                let criterion = match &task {
                    Some(Task {
                        criterion: TaskCriterion::Inline { text },
                        ..
                    }) => Some(text.clone()),
                    Some(Task {
                        criterion: TaskCriterion::Reference { criterion_id, .. },
                        ..
                    }) => Some(criterion_id.clone()),
                    None => key,
                };
                CalItem {
                    id: String::new(),
                    category,
                    criterion,
                    task,
                    labels,
                }
            })
    }

    fn small_set() -> impl Strategy<Value = CalibrationSet> {
        (
            prop_oneof![
                Just(Scale::Nominal),
                Just(Scale::Ordinal),
                Just(Scale::Interval)
            ],
            2usize..5,
        )
            .prop_flat_map(|(scale, k)| {
                let categories: Vec<String> = (0..k).map(|i| format!("c{i}")).collect();
                (
                    Just(scale),
                    if scale == Scale::Interval {
                        Just(Vec::new())
                    } else {
                        Just(categories)
                    },
                    proptest::option::of(0..k),
                    proptest::option::of(text()),
                    proptest::collection::vec(item(scale, k), 1..6),
                )
            })
            .prop_map(|(scale, categories, met, description, mut items)| {
                for (n, it) in items.iter_mut().enumerate() {
                    it.id = format!("i{n}");
                }
                let met = met.and_then(|m| categories.get(m).cloned());
                CalibrationSet {
                    name: "random".into(),
                    description,
                    scale,
                    categories,
                    met,
                    min_pair_items: None,
                    items,
                }
            })
    }

    proptest! {
        #[test]
        fn any_small_set_round_trips(s in small_set()) {
            prop_assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
        }
    }
}
