//! HealthBench rows exactly as published (`prompt`, `rubrics`, `example_tags`,
//! `prompt_id`, `ideal_completions_data`, `canary`), and HealthBench Professional rows
//! as published (`id`, `conversation.messages`, `rubric_items: [{criterion_text,
//! points}]`, `use_case`, `type`, `difficulty`, `specialty`, `physician_response`,
//! `canary_string`), plus the optional `response` to grade and per-item `criteria_met`
//! for offline scoring. No hand editing is needed: criterion ids are derived from
//! content hashes.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Case, Item, RawMessage, RubricSource, SuppliedVerdicts, convert_messages, decode};
use crate::rubric::{FieldError, Invalid, RUBRIC_FORMAT, RawCriterion, RawRubric, RawScoring};

/// A HealthBench row as published (other published keys, such as `canary`, are
/// accepted and ignored), plus `response`, the text to grade.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchRow)]
pub struct HbRow {
    #[schema(min_items = 1)]
    prompt: Vec<RawMessage>,
    #[schema(min_items = 1)]
    rubrics: Vec<HbCriterion>,
    #[serde(default)]
    example_tags: Vec<String>,
    #[schema(min_length = 1)]
    prompt_id: String,
    #[serde(default)]
    ideal_completions_data: Option<HbIdeal>,
    #[serde(default)]
    response: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchIdeal)]
pub struct HbIdeal {
    #[serde(default)]
    ideal_completion: Option<String>,
    #[serde(default)]
    ideal_completions_ref_completions: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchCriterion)]
pub struct HbCriterion {
    #[schema(min_length = 1)]
    criterion: String,
    #[schema(value_type = i64, minimum = -10, maximum = 10)]
    points: f64,
    #[serde(default)]
    tags: Vec<String>,
    /// Missing stays `None`; an explicit null becomes `Some(Value::Null)` (abstained).
    #[serde(default, deserialize_with = "present")]
    criteria_met: Option<Value>,
}

/// A HealthBench Professional row as published (simple-evals
/// `--healthbench-professional-mode`; other published keys, such as `canary_string`, are
/// accepted and ignored), plus `response`, the text to grade.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchProfessionalRow)]
pub struct HbProRow {
    #[schema(min_length = 1)]
    id: String,
    conversation: HbProConversation,
    #[schema(min_items = 1)]
    rubric_items: Vec<HbProCriterion>,
    /// Example tags: each becomes `use_case:<value>` and so on.
    #[serde(default)]
    use_case: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    difficulty: Option<String>,
    #[serde(default)]
    specialty: Option<String>,
    /// The physician's answer; kept as the case's reference response.
    #[serde(default)]
    physician_response: Option<String>,
    #[serde(default)]
    response: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchProfessionalConversation)]
pub struct HbProConversation {
    #[schema(min_items = 1)]
    messages: Vec<RawMessage>,
}

/// A Professional rubric item: no per-item tags in the published rows.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = HealthBenchProfessionalCriterion)]
pub struct HbProCriterion {
    #[schema(min_length = 1)]
    criterion_text: String,
    #[schema(value_type = i64, minimum = -10, maximum = 10)]
    points: f64,
    #[serde(default, deserialize_with = "present")]
    criteria_met: Option<Value>,
}

/// The Professional example-tag fields, in the order simple-evals lists them.
const PRO_TAG_FIELDS: [&str; 4] = ["use_case", "type", "difficulty", "specialty"];

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One rubric item of either row shape, as the shared builder needs it.
struct RowCriterion<'a> {
    text: &'a str,
    points: f64,
    tags: &'a [String],
    criteria_met: Option<&'a Value>,
}

/// What both row shapes become before validation.
struct Row<'a> {
    case_id: String,
    rubric_id: String,
    title: String,
    conversation: Vec<crate::item::Message>,
    criteria: Vec<RowCriterion<'a>>,
    /// The field names of this shape, for error paths.
    criteria_field: &'static str,
    text_field: &'static str,
    id_field: &'static str,
    tags: Vec<String>,
    reference_responses: Vec<String>,
    response: Option<String>,
}

pub(super) fn parse(doc: &Value) -> Result<Item, Invalid> {
    let row: HbRow = decode(doc)?;
    let mut errs = Vec::new();
    if row.prompt_id.trim().is_empty() {
        errs.push(FieldError::new("prompt_id", "must not be empty"));
    }
    let conversation = convert_messages(row.prompt, "prompt", &mut errs);
    let mut reference_responses = Vec::new();
    if let Some(ideal) = row.ideal_completions_data {
        reference_responses.extend(ideal.ideal_completion);
        reference_responses.extend(ideal.ideal_completions_ref_completions.unwrap_or_default());
    }
    let criteria = row
        .rubrics
        .iter()
        .map(|c| RowCriterion {
            text: &c.criterion,
            points: c.points,
            tags: &c.tags,
            criteria_met: c.criteria_met.as_ref(),
        })
        .collect();
    build(
        Row {
            rubric_id: format!("healthbench:{}", row.prompt_id),
            title: format!("HealthBench {}", row.prompt_id),
            case_id: row.prompt_id,
            conversation,
            criteria,
            criteria_field: "rubrics",
            text_field: "criterion",
            id_field: "prompt_id",
            tags: row.example_tags,
            reference_responses,
            response: row.response,
        },
        errs,
    )
}

/// A HealthBench Professional row: the rubric becomes
/// `healthbench-professional:<id>@1` (policy `healthbench`; the length adjustment is
/// chosen when scoring, e.g. `tribunal score --length-adjustment professional`).
pub(super) fn parse_professional(doc: &Value) -> Result<Item, Invalid> {
    let row: HbProRow = decode(doc)?;
    let mut errs = Vec::new();
    if row.id.trim().is_empty() {
        errs.push(FieldError::new("id", "must not be empty"));
    }
    let conversation = convert_messages(
        row.conversation.messages,
        "conversation.messages",
        &mut errs,
    );
    let mut tags = Vec::new();
    for (field, value) in
        PRO_TAG_FIELDS
            .into_iter()
            .zip([&row.use_case, &row.kind, &row.difficulty, &row.specialty])
    {
        match value.as_deref() {
            None => {}
            Some(v) if v.trim().is_empty() => {
                errs.push(FieldError::new(field, "must not be empty when given"));
            }
            Some(v) => tags.push(format!("{field}:{v}")),
        }
    }
    let criteria = row
        .rubric_items
        .iter()
        .map(|c| RowCriterion {
            text: &c.criterion_text,
            points: c.points,
            tags: &[],
            criteria_met: c.criteria_met.as_ref(),
        })
        .collect();
    build(
        Row {
            rubric_id: format!("healthbench-professional:{}", row.id),
            title: format!("HealthBench Professional {}", row.id),
            case_id: row.id,
            conversation,
            criteria,
            criteria_field: "rubric_items",
            text_field: "criterion_text",
            id_field: "id",
            tags,
            reference_responses: row.physician_response.into_iter().collect(),
            response: row.response,
        },
        errs,
    )
}

/// Validates the rubric and supplied verdicts shared by both row shapes, naming fields
/// as the row spells them.
fn build(row: Row<'_>, mut errs: Vec<FieldError>) -> Result<Item, Invalid> {
    let raw = RawRubric {
        format: RUBRIC_FORMAT.to_owned(),
        id: row.rubric_id,
        version: 1,
        title: row.title,
        description: None,
        scoring: RawScoring::default(),
        consensus: None,
        criteria: row
            .criteria
            .iter()
            .map(|c| RawCriterion {
                id: None,
                text: c.text.to_owned(),
                points: Some(c.points),
                tier: None,
                tags: c.tags.to_vec(),
                veto: false,
                weight: None,
            })
            .collect(),
    };
    let rubric = match raw.validate(row.criteria_field) {
        Ok(r) => Some(r),
        Err(Invalid(es)) => {
            // The rubric model calls the criterion text `text`; the rows spell it their way.
            errs.extend(es.into_iter().map(|mut e| {
                if let Some(stem) = e.field.strip_suffix(".text") {
                    e.field = format!("{stem}.{}", row.text_field);
                }
                if e.field == "id" {
                    e.field = row.id_field.into();
                }
                e
            }));
            None
        }
    };
    let any_verdict = row.criteria.iter().any(|c| c.criteria_met.is_some());
    let mut verdicts = Vec::with_capacity(row.criteria.len());
    if any_verdict {
        for (i, c) in row.criteria.iter().enumerate() {
            let field = format!("{}[{i}].criteria_met", row.criteria_field);
            match c.criteria_met {
                None => errs.push(FieldError::new(
                    field,
                    "missing while other rubric items have one; use true, false, or null (abstained)",
                )),
                Some(v) => match super::verdict_or_abstain(v) {
                    Ok(v) => verdicts.push(v),
                    Err(m) => errs.push(FieldError::new(field, m)),
                },
            }
        }
    }
    match rubric {
        Some(rubric) if errs.is_empty() => Ok(Item {
            case: Case {
                id: row.case_id,
                conversation: row.conversation,
                tags: row.tags,
                reference_responses: row.reference_responses,
            },
            rubric: RubricSource::Inline(Arc::new(rubric)),
            response: row.response,
            verdicts: any_verdict.then_some(SuppliedVerdicts::Aligned(verdicts)),
        }),
        _ => Err(Invalid(errs)),
    }
}
