//! The `rubric.v1` JSON Schema (draft 2020-12), embedded from `rubric-schemas/`, and
//! the one entry point that turns a JSON document into a validated `Rubric`:
//! schema check, then typed decode, then semantic checks (unique ids, policy fit).

use std::sync::LazyLock;

use serde_json::Value;

use super::{FieldError, Invalid, RawRubric, Rubric};

/// The schema text, as shipped in `rubric-schemas/rubric.v1.schema.json`.
pub const RUBRIC_V1_SCHEMA: &str = include_str!("../../rubric-schemas/rubric.v1.schema.json");

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(RUBRIC_V1_SCHEMA).map_err(|e| e.to_string())?;
    jsonschema::draft202012::new(&schema).map_err(|e| e.to_string())
});

/// `/criteria/3/points` -> `criteria[3].points`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// Checks a document against the `rubric.v1` schema, returning every violation.
pub fn check_schema(doc: &Value) -> Result<(), Invalid> {
    let validator = match &*VALIDATOR {
        Ok(v) => v,
        Err(e) => {
            return Err(Invalid::one(
                "",
                format!("internal error: the embedded rubric schema does not compile: {e}"),
            ));
        }
    };
    let errs: Vec<FieldError> = validator
        .iter_errors(doc)
        .map(|e| FieldError::new(pointer_to_path(e.instance_path().as_str()), e.to_string()))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errs))
    }
}

/// Schema check, typed decode and semantic validation of a `rubric.v1` document.
///
/// The schema is the gate: a document it rejects is never accepted. Where the typed
/// validation also finds a problem, its message is preferred because it names the fix;
/// schema errors on other fields are kept, so nothing is lost.
pub fn parse_rubric(doc: &Value) -> Result<Rubric, Invalid> {
    let schema = check_schema(doc);
    let decoded: Result<RawRubric, Invalid> = super::decode_at(doc).map_err(|e| Invalid(vec![e]));
    match (schema, decoded) {
        (Ok(()), Ok(raw)) => raw.validate("criteria"),
        (Ok(()), Err(d)) => Err(d),
        (Err(s), Err(_)) => Err(s),
        (Err(Invalid(schema_errs)), Ok(raw)) => match raw.validate("criteria") {
            Ok(_) => Err(Invalid(schema_errs)),
            Err(Invalid(mut typed)) => {
                let overlaps = |a: &str, b: &str| {
                    a == b
                        || a.strip_prefix(b).is_some_and(|r| r.starts_with(['.', '[']))
                        || b.strip_prefix(a).is_some_and(|r| r.starts_with(['.', '[']))
                };
                let extra: Vec<FieldError> = schema_errs
                    .into_iter()
                    .filter(|s| !typed.iter().any(|t| overlaps(&t.field, &s.field)))
                    .collect();
                typed.extend(extra);
                Err(Invalid(typed))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths() {
        for (p, expected) in [
            ("", ""),
            ("/criteria/3/points", "criteria[3].points"),
            ("/scoring/weights/essential", "scoring.weights.essential"),
            ("/criteria/0/tags/1", "criteria[0].tags[1]"),
        ] {
            assert_eq!(pointer_to_path(p), expected);
        }
    }

    #[test]
    fn schema_compiles() {
        assert!(VALIDATOR.is_ok(), "{:?}", VALIDATOR.as_ref().err());
    }
}
