//! Calibration sets: the validated in-memory set (items, their labels and, for live
//! runs, the judged task) and its readers and writer. `jsonl` reads and writes the
//! `calibration.v1` JSONL format, `import` reads the K-QA physician CSV and the
//! HealthBench meta-eval JSONL, `csv` reads any CSV through a column mapping, and
//! `labels` adds annotators' labels to a set. Every problem names its line (or row)
//! and field. Pure: parses given text, never reads files, calls judges or stores.

mod csv;
mod import;
mod jsonl;
mod labels;

use serde_json::Value;

use crate::item::Message;

pub use csv::{CsvMapping, import_csv, parse_csv_mapping};
pub use import::{import_healthbench_meta, import_kqa};
pub use jsonl::{SET_FORMAT, parse_set};
pub use labels::{LabelsAdded, NewLabel, parse_new_labels};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaterKind {
    Human,
    Judge,
}

impl RaterKind {
    pub fn parse(s: &str) -> Option<RaterKind> {
        match s {
            "human" => Some(RaterKind::Human),
            "judge" => Some(RaterKind::Judge),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RaterKind::Human => "human",
            RaterKind::Judge => "judge",
        }
    }
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

/// What a judge is asked about an item in a live run: the conversation, the response
/// under test and the criterion.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub conversation: Vec<Message>,
    pub response: String,
    pub criterion: TaskCriterion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCriterion {
    /// The criterion text itself.
    Inline { text: String },
    /// A criterion of a stored rubric; `rubric` is `id@version`, or `id` for the latest.
    Reference {
        rubric: String,
        criterion_id: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalItem {
    pub id: String,
    pub category: Option<String>,
    /// The key for per-criterion breakdowns: the inline criterion text, or the
    /// `criterion_id` of a rubric reference. When `task` is present this is derived
    /// from its criterion (the writer stores only the task's criterion).
    pub criterion: Option<String>,
    /// The judged material; `None` when the set does not give all of case, response
    /// and criterion (offline sets need none of it).
    pub task: Option<Task>,
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationSet {
    pub name: String,
    pub description: Option<String>,
    pub scale: Scale,
    /// Category names in order (the order matters for ordinal scales).
    pub categories: Vec<String>,
    /// The category meaning "criterion met", when that applies.
    pub met: Option<String>,
    /// The fewest shared items a human pair needs to count in the human band (the
    /// header's `min_pair_items`; a run's setting wins; default 20).
    pub min_pair_items: Option<usize>,
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

/// Reads one label value on a set's scale: a declared category name (booleans read as
/// `"true"` / `"false"`) or, on an interval scale, a finite number. The error says what
/// to send instead.
pub(crate) fn label_value(
    scale: Scale,
    categories: &[String],
    v: &Value,
) -> Result<LabelValue, String> {
    match scale {
        Scale::Interval => match v.as_f64() {
            Some(x) if x.is_finite() => Ok(LabelValue::Number(x)),
            _ => Err(format!(
                "an interval scale needs a finite number, got {}",
                shown(v)
            )),
        },
        Scale::Nominal | Scale::Ordinal => {
            let name = match v {
                Value::Bool(b) => Some(b.to_string()),
                Value::String(s) => Some(s.clone()),
                _ => None,
            };
            name.and_then(|c| categories.iter().position(|x| *x == c))
                .map(LabelValue::Category)
                .ok_or_else(|| {
                    format!(
                        "{} is not one of the categories {}; use one of them",
                        shown(v),
                        categories.join(", ")
                    )
                })
        }
    }
}

/// A JSON value for an error message, shortened so a pasted document cannot flood it.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}
