//! HealthBench rows exactly as published (`prompt`, `rubrics`, `example_tags`,
//! `prompt_id`, `ideal_completions_data`, `canary`), plus the optional `response` to
//! grade and per-item `criteria_met` for offline scoring. No hand editing is needed:
//! criterion ids are derived from content hashes.

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

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

pub(super) fn parse(doc: &Value) -> Result<Item, Invalid> {
    let row: HbRow = decode(doc)?;
    let mut errs = Vec::new();
    if row.prompt_id.trim().is_empty() {
        errs.push(FieldError::new("prompt_id", "must not be empty"));
    }
    let conversation = convert_messages(row.prompt, "prompt", &mut errs);
    let raw = RawRubric {
        format: RUBRIC_FORMAT.to_owned(),
        id: format!("healthbench:{}", row.prompt_id),
        version: 1,
        title: format!("HealthBench {}", row.prompt_id),
        description: None,
        scoring: RawScoring::default(),
        consensus: None,
        criteria: row
            .rubrics
            .iter()
            .map(|c| RawCriterion {
                id: None,
                text: c.criterion.clone(),
                points: Some(c.points),
                tier: None,
                tags: c.tags.clone(),
                veto: false,
                weight: None,
            })
            .collect(),
    };
    let rubric = match raw.validate("rubrics") {
        Ok(r) => Some(r),
        Err(Invalid(es)) => {
            // The rubric model calls the criterion text `text`; HealthBench calls it `criterion`.
            errs.extend(es.into_iter().map(|mut e| {
                if let Some(stem) = e.field.strip_suffix(".text") {
                    e.field = format!("{stem}.criterion");
                }
                if e.field == "id" {
                    e.field = "prompt_id".into();
                }
                e
            }));
            None
        }
    };
    let any_verdict = row.rubrics.iter().any(|c| c.criteria_met.is_some());
    let mut verdicts = Vec::with_capacity(row.rubrics.len());
    if any_verdict {
        for (i, c) in row.rubrics.iter().enumerate() {
            match &c.criteria_met {
                None => errs.push(FieldError::new(
                    format!("rubrics[{i}].criteria_met"),
                    "missing while other rubric items have one; use true, false, or null (abstained)",
                )),
                Some(v) => match super::verdict_or_abstain(v) {
                    Ok(v) => verdicts.push(v),
                    Err(m) => errs.push(FieldError::new(format!("rubrics[{i}].criteria_met"), m)),
                },
            }
        }
    }
    let mut reference_responses = Vec::new();
    if let Some(ideal) = row.ideal_completions_data {
        reference_responses.extend(ideal.ideal_completion);
        reference_responses.extend(ideal.ideal_completions_ref_completions.unwrap_or_default());
    }
    match rubric {
        Some(rubric) if errs.is_empty() => Ok(Item {
            case: Case {
                id: row.prompt_id,
                conversation,
                tags: row.example_tags,
                reference_responses,
            },
            rubric: RubricSource::Inline(Arc::new(rubric)),
            response: row.response,
            verdicts: any_verdict.then_some(SuppliedVerdicts::Aligned(verdicts)),
        }),
        _ => Err(Invalid(errs)),
    }
}
