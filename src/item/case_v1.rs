//! `case.v1` rows: a conversation, the response under test, and a `rubric.v1` rubric
//! given inline or by `id@version` reference, with optional verdicts by criterion id.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::{Case, Item, RawMessage, RubricSource, SuppliedVerdicts, convert_messages, decode};
use crate::rubric::{FieldError, Invalid, schema::parse_rubric, valid_identifier};

pub const CASE_FORMAT: &str = "case.v1";

/// A `case.v1` row: a conversation, the response to grade, and its rubric inline or
/// as an `id@version` reference.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseRow)]
pub struct RawCase {
    #[serde(default)]
    #[schema(value_type = Option<CaseFormat>)]
    format: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$")]
    case_id: String,
    #[schema(min_items = 1)]
    conversation: Vec<RawMessage>,
    /// The text to grade (required to grade; optional for offline scoring with `verdicts`).
    #[serde(default)]
    response: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[schema(schema_with = rubric_or_reference)]
    rubric: Value,
    /// Offline scoring: a verdict (true, false, a number in [0, 1]) or null (abstained)
    /// per criterion id.
    #[serde(default)]
    verdicts: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    reference_responses: Vec<String>,
    /// Free-form caller data, carried but never interpreted.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "accepted so callers can attach their own bookkeeping"
    )]
    metadata: Option<Value>,
}

/// The format name of a case row.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum CaseFormat {
    #[schema(rename = "case.v1")]
    CaseV1,
}

/// `rubric`: an inline `rubric.v1` document or an `id@version` (or `id`) reference.
fn rubric_or_reference() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Ref, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(Ref::from_schema_name("Rubric"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[A-Za-z0-9._:-]{1,128}(@[1-9][0-9]{0,9})?$"))
                .description(Some(
                    "a stored rubric: `id@version`, or `id` for the latest",
                )),
        )
        .build();
    Schema::OneOf(one_of)
}

/// Parses `id@version` or `id`.
pub(crate) fn parse_reference(s: &str) -> Result<(String, Option<u32>), String> {
    let (id, version) = match s.split_once('@') {
        Some((id, v)) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => (id, Some(n)),
            _ => return Err(format!("\"{v}\" is not a version; use id@N with N >= 1")),
        },
        None => (s, None),
    };
    if !valid_identifier(id) {
        return Err(format!(
            "\"{id}\" is not a valid rubric id; use 1-128 letters, digits or . _ : -"
        ));
    }
    Ok((id.to_owned(), version))
}

pub(super) fn parse(doc: &Value) -> Result<Item, Invalid> {
    let raw: RawCase = decode(doc)?;
    let mut errs = Vec::new();
    match raw.format.as_deref() {
        None | Some(CASE_FORMAT) => {}
        Some(other) => errs.push(FieldError::new(
            "format",
            format!("\"{other}\" is not supported; use \"{CASE_FORMAT}\""),
        )),
    }
    if !valid_identifier(&raw.case_id) {
        errs.push(FieldError::new(
            "case_id",
            format!(
                "\"{}\" is not a valid id; use 1-128 letters, digits or . _ : -",
                raw.case_id
            ),
        ));
    }
    let conversation = convert_messages(raw.conversation, "conversation", &mut errs);
    let rubric = match &raw.rubric {
        Value::String(s) => match parse_reference(s) {
            Ok((id, version)) => Some(RubricSource::Reference { id, version }),
            Err(m) => {
                errs.push(FieldError::new("rubric", m));
                None
            }
        },
        Value::Object(_) => match parse_rubric(&raw.rubric) {
            Ok(r) => Some(RubricSource::Inline(Arc::new(r))),
            Err(inv) => {
                errs.extend(inv.under("rubric").0);
                None
            }
        },
        other => {
            errs.push(FieldError::new(
                "rubric",
                format!(
                    "expected a rubric.v1 object or an \"id@version\" string, got {}",
                    crate::rubric::json_kind_of(other)
                ),
            ));
            None
        }
    };
    let verdicts = match raw.verdicts {
        None => None,
        Some(map) => {
            let mut out = BTreeMap::new();
            for (id, v) in map {
                match super::verdict_or_abstain(&v) {
                    Ok(v) => {
                        out.insert(id, v);
                    }
                    Err(m) => errs.push(FieldError::new(format!("verdicts.{id}"), m)),
                }
            }
            Some(SuppliedVerdicts::ById(out))
        }
    };
    match rubric {
        Some(rubric) if errs.is_empty() => Ok(Item {
            case: Case {
                id: raw.case_id,
                conversation,
                tags: raw.tags,
                reference_responses: raw.reference_responses,
            },
            rubric,
            response: raw.response,
            verdicts,
        }),
        _ => Err(Invalid(errs)),
    }
}
