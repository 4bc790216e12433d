//! Adding labels to a set: annotators label items after upload, and correct themselves.
//! A batch is validated as a whole against the set (item ids, categories or numbers,
//! raters) and applied only when every label is valid; a label for an existing
//! (item, rater, kind) replaces it.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::{CalibrationSet, Label, RaterKind};
use crate::rubric::{FieldError, decode_at};

/// One label to add, as sent by a client; `value` is checked against the set's scale.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLabel {
    pub item: String,
    pub rater: String,
    pub kind: RaterKind,
    pub value: Value,
}

/// What `add_labels` changed: labels new to the set, and labels that replaced an earlier
/// label by the same rater (and kind) on the same item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelsAdded {
    pub added: usize,
    pub replaced: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBody {
    labels: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNewLabel {
    item: String,
    rater: String,
    kind: String,
    value: Value,
}

/// Reads the body `{"labels": [{"item", "rater", "kind", "value"}, ...]}`. Every
/// problem is reported, each as `path: message` (`labels[3].kind: ...`).
pub fn parse_new_labels(v: &Value) -> Result<Vec<NewLabel>, Vec<String>> {
    if !v.is_object() {
        return Err(vec![format!(
            "expected an object {{\"labels\": [...]}}, got {}",
            crate::rubric::json_kind_of(v)
        )]);
    }
    let body: RawBody = decode_at(v).map_err(|e| vec![e.to_string()])?;
    if body.labels.is_empty() {
        return Err(vec![
            "labels: empty; send at least one {\"item\", \"rater\", \"kind\", \"value\"}".into(),
        ]);
    }
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(body.labels.len());
    for (i, l) in body.labels.iter().enumerate() {
        let at = format!("labels[{i}]");
        let raw: RawNewLabel = match decode_at(l) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e.under(&at).to_string());
                continue;
            }
        };
        let Some(kind) = RaterKind::parse(&raw.kind) else {
            errors.push(
                FieldError::new(
                    format!("{at}.kind"),
                    format!("\"{}\" is not a rater kind; use human or judge", raw.kind),
                )
                .to_string(),
            );
            continue;
        };
        out.push(NewLabel {
            item: raw.item,
            rater: raw.rater,
            kind,
            value: raw.value,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

impl CalibrationSet {
    /// Adds labels, replacing any earlier label by the same rater and kind on the same
    /// item. Validates the whole batch first and changes nothing if any label is
    /// invalid; errors are `labels[i].field: problem; fix`.
    pub fn add_labels(&mut self, labels: &[NewLabel]) -> Result<LabelsAdded, Vec<String>> {
        let valid = self.check_labels(labels)?;
        Ok(self.apply_labels(valid))
    }

    /// Validates a batch of labels against the set (`add_labels` without the change):
    /// each valid label with its item's index, or every problem.
    pub fn check_labels(&self, labels: &[NewLabel]) -> Result<Vec<(usize, Label)>, Vec<String>> {
        let index: HashMap<&str, usize> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.as_str(), i))
            .collect();
        self.check_labels_in(labels, |id| index.get(id).copied())
    }

    /// `check_labels` with the item index given (`find`: an item id's position), so a
    /// caller that keeps one does not rebuild it for every write to a large set.
    pub fn check_labels_in(
        &self,
        labels: &[NewLabel],
        find: impl Fn(&str) -> Option<usize>,
    ) -> Result<Vec<(usize, Label)>, Vec<String>> {
        let mut errors = Vec::new();
        let mut valid = Vec::with_capacity(labels.len());
        let mut seen: HashMap<(usize, &str, RaterKind), usize> = HashMap::new();
        for (i, l) in labels.iter().enumerate() {
            let err = |field: &str, m: String| format!("labels[{i}].{field}: {m}");
            let item = find(l.item.as_str());
            if item.is_none() {
                errors.push(err(
                    "item",
                    format!(
                        "no item \"{}\" in set \"{}\"; use the id of one of its {} items",
                        l.item,
                        self.name,
                        self.items.len()
                    ),
                ));
            }
            let rater_ok = if l.rater.trim().is_empty() {
                errors.push(err(
                    "rater",
                    "empty; name the annotator or judge who gave the label".into(),
                ));
                false
            } else if l.rater.trim() != l.rater {
                errors.push(err(
                    "rater",
                    format!(
                        "\"{}\" has surrounding spaces; send the name without them",
                        l.rater
                    ),
                ));
                false
            } else {
                true
            };
            let value = super::label_value(self.scale, &self.categories, &l.value)
                .map_err(|m| errors.push(err("value", m)))
                .ok();
            if let (Some(item), true) = (item, rater_ok) {
                if let Some(first) = seen.insert((item, l.rater.as_str(), l.kind), i) {
                    errors.push(format!(
                        "labels[{i}]: repeats labels[{first}] (same item, rater and kind); send one label per item, rater and kind"
                    ));
                }
            }
            if let (Some(item), true, Some(value)) = (item, rater_ok, value) {
                valid.push((
                    item,
                    Label {
                        rater: l.rater.clone(),
                        kind: l.kind,
                        value,
                    },
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(valid)
    }

    /// Applies labels `check_labels` accepted.
    pub fn apply_labels(&mut self, valid: Vec<(usize, Label)>) -> LabelsAdded {
        let mut out = LabelsAdded {
            added: 0,
            replaced: 0,
        };
        for (item, label) in valid {
            let existing = &mut self.items[item].labels;
            let (rater, kind) = (label.rater.clone(), label.kind);
            let same = |l: &Label| l.rater == rater && l.kind == kind;
            match existing.iter().position(same) {
                Some(p) => {
                    // Replace in place, so the item's label order stays stable, and drop
                    // any later label by the same rater that an import let through.
                    existing[p] = label;
                    let rest: Vec<Label> = existing.drain(p + 1..).filter(|l| !same(l)).collect();
                    existing.extend(rest);
                    out.replaced += 1;
                }
                None => {
                    existing.push(label);
                    out.added += 1;
                }
            }
        }
        out
    }

    /// Removes the label of `rater` and `kind` on item `item` (an index), if any.
    pub fn remove_label(&mut self, item: usize, rater: &str, kind: RaterKind) {
        if let Some(it) = self.items.get_mut(item) {
            it.labels.retain(|l| !(l.rater == rater && l.kind == kind));
        }
    }

    /// Attaches stored label rows (`(item, rater, kind, value)`, in their stored
    /// order) to a set read without labels. A row naming no item of the set, or a
    /// value off the set's scale, is an error naming it.
    pub fn attach_labels<'a>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str, &'a Value)>,
    ) -> Result<(), String> {
        let index: HashMap<&str, usize> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, it)| (it.id.as_str(), i))
            .collect();
        let mut placed = Vec::new();
        for (item, rater, kind, value) in rows {
            let at = index.get(item).copied().ok_or_else(|| {
                format!("a label of item \"{item}\", which the set does not have")
            })?;
            let kind = RaterKind::parse(kind)
                .ok_or_else(|| format!("item \"{item}\": rater kind \"{kind}\""))?;
            let value = super::label_value(self.scale, &self.categories, value)
                .map_err(|m| format!("item \"{item}\", rater \"{rater}\": {m}"))?;
            placed.push((
                at,
                Label {
                    rater: rater.to_owned(),
                    kind,
                    value,
                },
            ));
        }
        for (at, label) in placed {
            self.items[at].labels.push(label);
        }
        Ok(())
    }

    /// Takes every label out of the set (items keep their order), in item order.
    pub fn take_labels(&mut self) -> Vec<(usize, Label)> {
        let mut out = Vec::new();
        for (i, it) in self.items.iter_mut().enumerate() {
            out.extend(std::mem::take(&mut it.labels).into_iter().map(|l| (i, l)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{LabelValue, parse_set};
    use super::*;

    const SET: &str = r#"{"format": "calibration.v1", "name": "demo", "scale": "ordinal", "categories": ["poor", "fair", "good"]}
{"id": "a", "labels": [{"rater": "h1", "kind": "human", "value": "fair"}, {"rater": "h1", "kind": "judge", "value": "good"}]}
{"id": "b", "labels": []}
"#;

    fn label(item: &str, rater: &str, kind: RaterKind, value: Value) -> NewLabel {
        NewLabel {
            item: item.into(),
            rater: rater.into(),
            kind,
            value,
        }
    }

    #[test]
    fn adds_and_replaces() {
        let mut s = parse_set(SET).unwrap();
        let r = s
            .add_labels(&[
                label("a", "h1", RaterKind::Human, json!("good")),
                label("a", "h2", RaterKind::Human, json!("poor")),
                label("b", "h1", RaterKind::Human, json!("fair")),
            ])
            .unwrap();
        assert_eq!(
            r,
            LabelsAdded {
                added: 2,
                replaced: 1
            }
        );
        let a = &s.items[0].labels;
        assert_eq!(a.len(), 3);
        assert_eq!(
            (a[0].rater.as_str(), a[0].value),
            ("h1", LabelValue::Category(2))
        );
        assert_eq!(
            a[1].kind,
            RaterKind::Judge,
            "the judge's label by the same name is kept"
        );
        assert_eq!(s.items[1].labels[0].value, LabelValue::Category(1));
        assert_eq!(parse_set(&s.to_jsonl()), Ok(s));
    }

    #[test]
    fn one_bad_label_changes_nothing() {
        let mut s = parse_set(SET).unwrap();
        let before = s.clone();
        let errs = s
            .add_labels(&[
                label("a", "h2", RaterKind::Human, json!("good")),
                label("zzz", "h2", RaterKind::Human, json!("good")),
                label("a", "", RaterKind::Human, json!("good")),
                label("a", "h3", RaterKind::Human, json!("great")),
                label("b", " h4", RaterKind::Human, json!("good")),
                label("a", "h2", RaterKind::Human, json!("poor")),
            ])
            .unwrap_err();
        assert_eq!(s, before);
        let expected = [
            "labels[1].item: no item \"zzz\" in set \"demo\"; use the id of one of its 2 items",
            "labels[2].rater: empty",
            "labels[3].value: \"great\" is not one of the categories poor, fair, good; use one of them",
            "labels[4].rater: \" h4\" has surrounding spaces",
            "labels[5]: repeats labels[0]",
        ];
        assert_eq!(errs.len(), expected.len(), "{errs:?}");
        for (e, x) in errs.iter().zip(expected) {
            assert!(e.starts_with(x), "{e:?} should start with {x:?}");
        }
    }

    #[test]
    fn interval_sets_take_finite_numbers() {
        let mut s = parse_set(
            "{\"format\": \"calibration.v1\", \"name\": \"n\", \"scale\": \"interval\"}\n{\"id\": \"a\", \"labels\": []}\n",
        )
        .unwrap();
        let errs = s
            .add_labels(&[label("a", "h", RaterKind::Human, json!("3"))])
            .unwrap_err();
        assert!(errs[0].starts_with("labels[0].value: an interval scale needs a finite number"));
        s.add_labels(&[label("a", "h", RaterKind::Human, json!(2.5))])
            .unwrap();
        assert_eq!(s.items[0].labels[0].value, LabelValue::Number(2.5));
    }

    #[test]
    fn parses_label_bodies() {
        let ok = parse_new_labels(
            &json!({"labels": [{"item": "a", "rater": "h", "kind": "judge", "value": true}]}),
        )
        .unwrap();
        assert_eq!(ok, vec![label("a", "h", RaterKind::Judge, json!(true))]);
        let cases: &[(Value, &str)] = &[
            (json!({"labels": []}), "labels: empty"),
            (json!({"labels": [], "set": "x"}), "set: unknown field"),
            (
                json!({"items": []}),
                "items: unknown field `items`, expected `labels`",
            ),
            (
                json!([]),
                "expected an object {\"labels\": [...]}, got an array",
            ),
            (
                json!({"labels": [{"item": "a", "rater": "h", "kind": "judge", "value": 1}, {"item": "a", "rater": "h", "kind": "robot", "value": 1}]}),
                "labels[1].kind: \"robot\" is not a rater kind; use human or judge",
            ),
            (
                json!({"labels": [{"item": "a", "rater": "h", "kind": "human"}]}),
                "labels[0].value: missing field `value`",
            ),
            (
                json!({"labels": [{"item": "a", "rater": "h", "kind": "human", "value": 1, "note": "x"}]}),
                "labels[0].note: unknown field",
            ),
            (
                json!({"labels": [{"item": 3, "rater": "h", "kind": "human", "value": 1}]}),
                "labels[0].item: invalid type",
            ),
        ];
        for (body, expected) in cases {
            let errs = parse_new_labels(body).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "{body}: expected {expected:?}, got {errs:?}"
            );
        }
    }
}
