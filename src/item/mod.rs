//! The graded item: a `Case` (conversation, example tags, reference answers), the
//! response under test, its rubric (inline or by reference) and, for offline scoring,
//! verdicts. Owns reading the two accepted input shapes, HealthBench rows and
//! `case.v1` rows, into validated types. Pure: no IO; must not call judges or stores.

mod case_v1;
mod healthbench;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::rubric::{FieldError, Invalid, Rubric, Verdict};

pub(crate) use case_v1::parse_reference as parse_rubric_reference;
pub use case_v1::{CASE_FORMAT, RawCase};
pub use healthbench::{HbCriterion, HbIdeal, HbProConversation, HbProCriterion, HbProRow, HbRow};

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// The situation a response answers: the conversation so far and example-level tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub id: String,
    pub conversation: Vec<Message>,
    /// Example-level tags (`theme:*`, `physician_agreed_category:*`); they receive the
    /// example's score in tag breakdowns.
    pub tags: Vec<String>,
    /// Reference answers shipped with the case (HealthBench ideal completions), best first.
    pub reference_responses: Vec<String>,
}

/// Where an item's rubric comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RubricSource {
    Inline(Arc<Rubric>),
    /// `id@version`, or `id` for the latest version; resolved by the store.
    Reference {
        id: String,
        version: Option<u32>,
    },
}

/// Verdicts supplied with an item for offline scoring.
#[derive(Debug, Clone, PartialEq)]
pub enum SuppliedVerdicts {
    /// One per criterion in rubric order (HealthBench `criteria_met`); `None` = abstained.
    Aligned(Vec<Option<Verdict>>),
    /// By criterion id (`case.v1` `verdicts`); a JSON null = abstained.
    ById(BTreeMap<String, Option<Verdict>>),
}

/// One validated input line.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub case: Case,
    pub rubric: RubricSource,
    pub response: Option<String>,
    pub verdicts: Option<SuppliedVerdicts>,
}

/// Which shape a row was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    HealthBench,
    CaseV1,
}

/// Parses one JSON document (one JSONL line) in either accepted shape.
pub fn parse_item(doc: &Value) -> Result<(Shape, Item), Invalid> {
    let Value::Object(map) = doc else {
        return Err(Invalid::one(
            "",
            format!(
                "expected a JSON object, got {}",
                crate::rubric::json_kind_of(doc)
            ),
        ));
    };
    if map.contains_key("rubrics") {
        healthbench::parse(doc).map(|i| (Shape::HealthBench, i))
    } else if map.contains_key("rubric_items") {
        healthbench::parse_professional(doc).map(|i| (Shape::HealthBench, i))
    } else if map.contains_key("rubric") || map.contains_key("format") {
        case_v1::parse(doc).map(|i| (Shape::CaseV1, i))
    } else {
        Err(Invalid::one(
            "",
            "unrecognised row: expected a HealthBench row (with `prompt` and `rubrics`), a HealthBench Professional row (with `conversation` and `rubric_items`) or a case.v1 row (with `rubric`)",
        ))
    }
}

/// Parses one line of text; the error for a line that is not JSON says so plainly.
pub fn parse_line(line: &str) -> Result<(Shape, Item), Invalid> {
    let doc: Value = serde_json::from_str(line).map_err(|e| {
        let hint = if line.trim_start().starts_with('[') {
            " (this looks like a JSON array; input must be JSON Lines: one object per line)"
        } else {
            ""
        };
        Invalid::one("", format!("not valid JSON: {e}{hint}"))
    })?;
    parse_item(&doc)
}

impl Item {
    /// The verdicts aligned to `rubric.criteria`, checked against each criterion's scale.
    /// Every criterion needs an entry (null for an abstention); unknown ids are errors,
    /// so no verdict is silently dropped.
    pub fn aligned_verdicts(&self, rubric: &Rubric) -> Result<Vec<Option<Verdict>>, Invalid> {
        let Some(supplied) = &self.verdicts else {
            return Err(Invalid::one(
                "verdicts",
                "no verdicts supplied; offline scoring needs `criteria_met` on every rubric item (HealthBench rows) or a `verdicts` object (case.v1 rows)",
            ));
        };
        let mut errs = Vec::new();
        let out = match supplied {
            SuppliedVerdicts::Aligned(v) => {
                for (i, (c, verdict)) in rubric.criteria.iter().zip(v).enumerate() {
                    if let Some(verdict) = verdict {
                        if let Err(m) = c.accept(*verdict) {
                            errs.push(FieldError::new(format!("rubrics[{i}].criteria_met"), m));
                        }
                    }
                }
                rubric
                    .criteria
                    .iter()
                    .zip(v)
                    .map(|(c, v)| v.and_then(|v| c.accept(v).ok()))
                    .collect()
            }
            SuppliedVerdicts::ById(map) => {
                for id in map.keys() {
                    if rubric.criterion(id).is_none() {
                        errs.push(FieldError::new(
                            format!("verdicts.{id}"),
                            format!("no criterion \"{id}\" in rubric {}", rubric.reference()),
                        ));
                    }
                }
                let mut out = Vec::with_capacity(rubric.criteria.len());
                for c in &rubric.criteria {
                    match map.get(&c.id.0) {
                        None => {
                            errs.push(FieldError::new(
                                format!("verdicts.{}", c.id),
                                "missing; give a verdict, or null for an abstention",
                            ));
                            out.push(None);
                        }
                        Some(None) => out.push(None),
                        Some(Some(v)) => match c.accept(*v) {
                            Ok(v) => out.push(Some(v)),
                            Err(m) => {
                                errs.push(FieldError::new(format!("verdicts.{}", c.id), m));
                                out.push(None);
                            }
                        },
                    }
                }
                out
            }
        };
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(Invalid(errs))
        }
    }

    /// The inline rubric, or an error explaining that a reference needs the server's store.
    pub fn inline_rubric(&self) -> Result<&Arc<Rubric>, Invalid> {
        match &self.rubric {
            RubricSource::Inline(r) => Ok(r),
            RubricSource::Reference { id, .. } => Err(Invalid::one(
                "rubric",
                format!(
                    "rubric reference \"{id}\" needs a rubric store; inline the rubric document for offline use"
                ),
            )),
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Message)]
pub struct RawMessage {
    #[schema(value_type = MessageRole)]
    role: String,
    content: String,
}

/// Who said a turn.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum MessageRole {
    System,
    Developer,
    User,
    Assistant,
}

/// One item to grade, in either accepted shape (the schema of `POST /v1/grade` and of
/// each job item). Decoding goes through `parse_item`, which picks the shape by its
/// keys (`rubrics`: HealthBench; `rubric_items`: HealthBench Professional; `rubric` or
/// `format`: case.v1).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = Item)]
pub enum ItemSchema {
    Case(RawCase),
    HealthBench(HbRow),
    HealthBenchProfessional(HbProRow),
}

fn convert_messages(raw: Vec<RawMessage>, field: &str, errs: &mut Vec<FieldError>) -> Vec<Message> {
    if raw.is_empty() {
        errs.push(FieldError::new(
            field,
            "the conversation needs at least one turn",
        ));
    }
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" => Role::System,
                "developer" => Role::Developer,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    errs.push(FieldError::new(
                        format!("{field}[{i}].role"),
                        format!(
                            "unknown role \"{other}\"; use system, developer, user or assistant"
                        ),
                    ));
                    return None;
                }
            };
            Some(Message {
                role,
                content: m.content,
            })
        })
        .collect()
}

/// Reads a verdict value where JSON null means "abstained".
fn verdict_or_abstain(v: &Value) -> Result<Option<Verdict>, String> {
    if v.is_null() {
        Ok(None)
    } else {
        Verdict::from_json(v).map(Some)
    }
}

fn decode<T: serde::de::DeserializeOwned>(doc: &Value) -> Result<T, Invalid> {
    crate::rubric::decode_at(doc).map_err(|e| Invalid(vec![e]))
}

#[cfg(test)]
mod tests;
