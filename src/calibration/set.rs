//! Calibration sets: the `calibration.v1` JSONL format (a header line, then one item
//! per line with its labels) and importers for the K-QA physician CSV and the
//! HealthBench meta-eval JSONL. Every problem names its line and field.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::rubric::{FieldError, decode_at};

pub const SET_FORMAT: &str = "calibration.v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Nominal,
    Ordinal,
    Interval,
}

impl Scale {
    pub fn parse(s: &str) -> Option<Scale> {
        match s {
            "nominal" => Some(Scale::Nominal),
            "ordinal" => Some(Scale::Ordinal),
            "interval" => Some(Scale::Interval),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scale::Nominal => "nominal",
            Scale::Ordinal => "ordinal",
            Scale::Interval => "interval",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaterKind {
    Human,
    Judge,
}

/// A label: a category index (nominal / ordinal, into `CalibrationSet::categories`)
/// or a number (interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LabelValue {
    Category(usize),
    Number(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub rater: String,
    pub kind: RaterKind,
    pub value: LabelValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalItem {
    pub id: String,
    pub category: Option<String>,
    pub criterion: Option<String>,
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSet {
    pub name: String,
    pub scale: Scale,
    /// Category names in order (the order matters for ordinal scales).
    pub categories: Vec<String>,
    /// The category meaning "criterion met", when that applies.
    pub met: Option<String>,
    pub items: Vec<CalItem>,
}

impl CalibrationSet {
    /// Raters of a kind, sorted.
    pub fn raters(&self, kind: RaterKind) -> Vec<String> {
        let mut v: Vec<String> = self
            .items
            .iter()
            .flat_map(|i| i.labels.iter())
            .filter(|l| l.kind == kind)
            .map(|l| l.rater.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    id: String,
    #[serde(default)]
    category: Option<String>,
    /// The case being answered (case.v1 conversation), kept for live runs.
    #[serde(default)]
    case: Option<Value>,
    #[serde(default)]
    response: Option<String>,
    /// Inline criterion text, or `criterion_id` within `rubric` (`id@version`).
    #[serde(default)]
    criterion: Option<Value>,
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

/// A label value as a category name (booleans read as "true" / "false").
fn category_name(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
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
    let _ = h.description;
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
        let _ = (&raw.case, &raw.response, &raw.rubric);
        if let Some(first) = ids.insert(raw.id.clone(), n + 1) {
            errors.push(at(
                n,
                &FieldError::new("id", format!("\"{}\" repeats line {first}", raw.id)),
            ));
        }
        let mut labels = Vec::with_capacity(raw.labels.len());
        for (j, l) in raw.labels.into_iter().enumerate() {
            let kind = match l.kind.as_str() {
                "human" => RaterKind::Human,
                "judge" => RaterKind::Judge,
                other => {
                    errors.push(at(
                        n,
                        &FieldError::new(
                            format!("labels[{j}].kind"),
                            format!("\"{other}\" is not human or judge"),
                        ),
                    ));
                    continue;
                }
            };
            let value = match scale {
                Scale::Interval => match l.value.as_f64() {
                    Some(x) if x.is_finite() => LabelValue::Number(x),
                    _ => {
                        errors.push(at(
                            n,
                            &FieldError::new(
                                format!("labels[{j}].value"),
                                "an interval scale needs a number",
                            ),
                        ));
                        continue;
                    }
                },
                Scale::Nominal | Scale::Ordinal => {
                    match category_name(&l.value)
                        .and_then(|c| h.categories.iter().position(|x| *x == c))
                    {
                        Some(i) => LabelValue::Category(i),
                        None => {
                            errors.push(at(
                                n,
                                &FieldError::new(
                                    format!("labels[{j}].value"),
                                    format!(
                                        "{} is not one of the categories {:?}",
                                        l.value, h.categories
                                    ),
                                ),
                            ));
                            continue;
                        }
                    }
                }
            };
            labels.push(Label {
                rater: l.rater,
                kind,
                value,
            });
        }
        let criterion = raw
            .criterion
            .as_ref()
            .and_then(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .or_else(|| c.get("text").and_then(Value::as_str).map(str::to_owned))
            })
            .or(raw.criterion_id);
        items.push(CalItem {
            id: raw.id,
            category: raw.category,
            criterion,
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
            scale,
            categories: h.categories,
            met: h.met,
            items,
        })
    } else {
        Err(errors)
    }
}

/// Imports the K-QA physician file (`NLI_medical_annotator.csv`): each row is
/// (question, answer, claim) with three physicians' Entailment / Neutral /
/// Contradiction labels in `label_0..label_2`; `category_x` is Must_have / Nice_to_have.
pub fn import_kqa(csv_text: &str) -> Result<CalibrationSet, Vec<String>> {
    let categories = vec![
        "Entailment".to_owned(),
        "Neutral".to_owned(),
        "Contradiction".to_owned(),
    ];
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
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
        items.push(CalItem {
            id: format!("kqa-{}", rec.get(0).unwrap_or_default()),
            category: rec.get(category).map(str::to_owned),
            criterion: rec.get(claim).map(str::to_owned),
            labels: ls,
        });
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: "k-qa".into(),
            scale: Scale::Nominal,
            categories,
            met: Some("Entailment".into()),
            items,
        })
    } else {
        Err(errors)
    }
}

/// Imports HealthBench meta-eval rows: `binary_labels` (one per physician, aligned
/// with `anonymized_physician_ids`), `category`, `rubric` (the criterion text).
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
        items.push(CalItem {
            id: v
                .get("prompt_id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("meta-{}", n + 1), |p| format!("{p}-{}", n + 1)),
            category: v.get("category").and_then(Value::as_str).map(str::to_owned),
            criterion: v.get("rubric").and_then(Value::as_str).map(str::to_owned),
            labels: ls,
        });
    }
    if errors.is_empty() {
        Ok(CalibrationSet {
            name: "healthbench-meta-eval".into(),
            scale: Scale::Nominal,
            categories: vec!["false".into(), "true".into()],
            met: Some("true".into()),
            items,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"{"format": "calibration.v1", "name": "demo", "scale": "nominal", "categories": ["false", "true"], "met": "true"}
{"id": "a", "category": "x", "criterion": "Advises rest.", "labels": [{"rater": "h1", "kind": "human", "value": true}, {"rater": "j1", "kind": "judge", "value": false}]}
{"id": "b", "labels": [{"rater": "h1", "kind": "human", "value": "true"}]}
"#;

    #[test]
    fn parses_a_set() {
        let s = parse_set(SET).unwrap();
        assert_eq!(s.items.len(), 2);
        assert_eq!(s.items[0].labels[0].value, LabelValue::Category(1));
        assert_eq!(s.raters(RaterKind::Judge), vec!["j1"]);
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
    fn imports_kqa_rows() {
        let csv = ",Question,llm_x,answer,claim,category_x,majority_label,label_0,label_1,label_2\n0,q,gpt4,a,\"c, with comma\",Must_have,Neutral,Neutral,Entailment,Neutral\n";
        let s = import_kqa(csv).unwrap();
        assert_eq!(s.items[0].labels.len(), 3);
        assert_eq!(s.items[0].criterion.as_deref(), Some("c, with comma"));
        assert_eq!(s.items[0].labels[1].value, LabelValue::Category(0));
        assert!(import_kqa(&csv.replace("Entailment,Neutral\n", "Agree,Neutral\n")).is_err());
    }
}
