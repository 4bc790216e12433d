//! Conversions between proto messages and the documents and records the service
//! facade takes and returns. Pure functions; no service calls and no IO.

use serde_json::Value;

use super::error::{invalid_field, status};
use super::pb;
use crate::service::JobStatus;

/// Reads a request field that carries a JSON document. A syntax error names the field.
///
/// The text is scanned under the service's bounds (criteria, items, string sizes,
/// values) before any `Value` is built; an overrun names the field inside the document.
pub fn parse_json(
    field: &str,
    text: &str,
    bounds: &crate::rubric::bounded::Bounds,
) -> Result<Value, tonic::Status> {
    use crate::rubric::bounded::{ReadError, read};
    read(text.as_bytes(), bounds).map_err(|e| match e {
        ReadError::Syntax(e) => invalid_field(field, format!("not valid JSON: {e}")),
        ReadError::Overrun(o) => status(&o.into()),
    })
}

/// Reads a typed request document from a JSON string field; a problem names the
/// field inside the document (as HTTP's error body does).
pub fn parse_typed<T: serde::de::DeserializeOwned>(
    field: &str,
    text: &str,
    bounds: &crate::rubric::bounded::Bounds,
) -> Result<T, tonic::Status> {
    let doc = parse_json(field, text, bounds)?;
    crate::rubric::decode_at(&doc)
        .map_err(|e| status(&crate::Error::Invalid(crate::rubric::Invalid(vec![e]))))
}

/// Writes a document the service returned, compactly, as the HTTP API does.
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String, tonic::Status> {
    serde_json::to_string(v).map_err(|e| status(&crate::Error::Internal(e.to_string())))
}

/// A response carrying one JSON document.
pub fn document<T: serde::Serialize>(v: &T) -> Result<pb::JsonDocument, tonic::Status> {
    Ok(pb::JsonDocument { json: to_json(v)? })
}

/// The job status message: the typed job status, in the proto's shape.
pub fn job(status: JobStatus) -> pb::Job {
    let JobStatus {
        id,
        state,
        total,
        done,
        abstained,
        failed,
        pending,
        calls,
        input_tokens,
        cached_input_tokens,
        output_tokens,
        reasoning_tokens,
        cost_usd,
        eta_seconds,
        created_at,
        started_at,
        finished_at,
        batches,
        simulated,
        judge_failures,
    } = status;
    pb::Job {
        id,
        state: state.as_str().to_owned(),
        total,
        done,
        abstained,
        failed,
        pending,
        calls,
        input_tokens,
        cached_input_tokens,
        output_tokens,
        reasoning_tokens,
        cost_usd,
        eta_seconds,
        created_at,
        started_at,
        finished_at,
        batches: batches.map(|b| pb::JobBatches {
            submitted: b.submitted,
            completed: b.completed,
            failed: b.failed,
        }),
        simulated,
        judge_failures: judge_failures.map(|f| pb::JudgeFailures {
            scanned_items: f.scanned_items,
            by_reason: f.by_reason.into_iter().collect(),
            example: f.example.unwrap_or_default(),
            failed_items: f.failed_items,
            failed_example: f.failed_example.unwrap_or_default(),
        }),
    }
}

/// The answer of `ValidateRubric`: invalid rubrics are a normal answer, not an error.
pub fn validation(result: crate::service::RubricValidation) -> pb::ValidateRubricResponse {
    pb::ValidateRubricResponse {
        valid: result.valid,
        problems: result
            .problems
            .into_iter()
            .map(|e| pb::FieldProblem {
                field: e.field,
                message: e.message,
            })
            .collect(),
    }
}

/// `GetRubric`'s version: 0 means the latest.
pub fn rubric_version(v: u32) -> Option<u32> {
    (v != 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_carries_every_field() {
        let status = JobStatus {
            id: "j1".into(),
            state: crate::service::JobState::Running,
            total: 10,
            done: 3,
            abstained: 2,
            failed: 1,
            pending: 6,
            calls: 40,
            input_tokens: 1_234,
            cached_input_tokens: 1_024,
            output_tokens: 56,
            reasoning_tokens: 12,
            cost_usd: 0.25,
            eta_seconds: Some(12.0),
            created_at: 1_000,
            started_at: Some(1_000),
            finished_at: None,
            batches: Some(crate::judge::batch::BatchCounts {
                submitted: 3,
                completed: 2,
                failed: 1,
            }),
            simulated: true,
            judge_failures: Some(crate::service::JudgeFailures {
                scanned_items: 4,
                by_reason: [("client_error".to_owned(), 3)].into_iter().collect(),
                example: Some("judge a: client_error: HTTP 404".into()),
                failed_items: 1,
                failed_example: None,
            }),
        };
        assert_eq!(
            job(status),
            pb::Job {
                id: "j1".into(),
                state: "running".into(),
                total: 10,
                done: 3,
                abstained: 2,
                failed: 1,
                pending: 6,
                calls: 40,
                input_tokens: 1_234,
                cached_input_tokens: 1_024,
                output_tokens: 56,
                reasoning_tokens: 12,
                cost_usd: 0.25,
                eta_seconds: Some(12.0),
                created_at: 1_000,
                started_at: Some(1_000),
                finished_at: None,
                batches: Some(pb::JobBatches {
                    submitted: 3,
                    completed: 2,
                    failed: 1,
                }),
                simulated: true,
                judge_failures: Some(pb::JudgeFailures {
                    scanned_items: 4,
                    by_reason: [("client_error".to_owned(), 3)].into_iter().collect(),
                    example: "judge a: client_error: HTTP 404".into(),
                    failed_items: 1,
                    failed_example: String::new(),
                }),
            }
        );
    }

    #[test]
    fn json_syntax_errors_name_the_field() {
        let b = crate::rubric::bounded::Bounds {
            max_criteria: 10,
            max_items: 10,
            max_string_bytes: 100,
            max_values: 100,
        };
        let e = parse_json("item_json", "{", &b).err();
        let e = e.as_ref().map(|s| {
            (
                s.code(),
                s.message().starts_with("item_json: not valid JSON: "),
            )
        });
        assert_eq!(e, Some((tonic::Code::InvalidArgument, true)));
        assert_eq!(
            parse_json("item_json", r#"{"a":1}"#, &b).ok(),
            Some(serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn documents_are_compact_and_keep_key_order() {
        let v = serde_json::json!({"z": 1, "a": [true, null]});
        assert_eq!(
            document(&v).map(|d| d.json).ok().as_deref(),
            Some(r#"{"z":1,"a":[true,null]}"#)
        );
    }

    #[test]
    fn validation_lists_problems() {
        use crate::service::{Problem, RubricValidation};
        let ok = validation(RubricValidation {
            valid: true,
            problems: Vec::new(),
            rubric: None,
        });
        assert!(ok.valid && ok.problems.is_empty());
        let bad = validation(RubricValidation {
            valid: false,
            problems: vec![
                Problem {
                    field: "id".into(),
                    message: "missing".into(),
                },
                Problem {
                    field: "criteria[1].points".into(),
                    message: "must be a number".into(),
                },
            ],
            rubric: None,
        });
        assert!(!bad.valid);
        assert_eq!(
            bad.problems,
            vec![
                pb::FieldProblem {
                    field: "id".into(),
                    message: "missing".into()
                },
                pb::FieldProblem {
                    field: "criteria[1].points".into(),
                    message: "must be a number".into()
                },
            ]
        );
    }

    #[test]
    fn version_zero_is_latest() {
        assert_eq!(rubric_version(0), None);
        assert_eq!(rubric_version(3), Some(3));
    }
}
