//! HTTP handlers: extract, convert, call one `Service` method, map the result.
//! Bodies are read as bytes so size and JSON errors get tribunal's error body.

use std::convert::Infallible;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::{HttpState, body};
use crate::error::Error;
use crate::rubric::bounded::{self, Bounds};
use crate::rubric::{Invalid, RawRubric};
use crate::service::{Caller, JobList, JobStatus};

type ApiResult<T> = Result<T, ApiError>;

fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Error::TooLarge {
                what: "request body",
                detail: "over server.max_body_bytes; split the job or raise the limit".into(),
                field: None,
            })
        } else {
            ApiError(Error::Invalid(Invalid::one(
                "",
                format!("cannot read the body: {r}"),
            )))
        }
    })
}

/// A JSON body, scanned under the service's bounds (criteria, items, string sizes,
/// values) before any `Value` is built.
fn json_body(body: Result<Bytes, BytesRejection>, bounds: &Bounds) -> ApiResult<Value> {
    let bytes = body_bytes(body)?;
    bounded::read(&bytes, bounds).map_err(|e| ApiError(read_error(e)))
}

fn read_error(e: bounded::ReadError) -> Error {
    match e {
        bounded::ReadError::Syntax(e) => {
            Error::Invalid(Invalid::one("", format!("the body is not valid JSON: {e}")))
        }
        bounded::ReadError::Overrun(o) => o.into(),
    }
}

/// A typed body: JSON, then the type's decoder, with the failing field's path.
fn typed_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    bounds: &Bounds,
) -> ApiResult<T> {
    let doc = json_body(body, bounds)?;
    crate::rubric::decode_at(&doc).map_err(|e| ApiError(Error::Invalid(Invalid(vec![e]))))
}

/// The body of `POST /v1/jobs` as JSON: an array of items, or items sharing a rubric.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub enum JobSubmission {
    Items(Vec<crate::item::ItemSchema>),
    Shared(SharedRubricJob),
}

/// Items that share one stored rubric: each item's `rubric` defaults to `rubric`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub struct SharedRubricJob {
    /// `id@version` of a stored rubric.
    rubric: Option<String>,
    /// Items (case.v1 rows without `rubric`, or full items).
    #[schema(min_items = 1)]
    items: Vec<Object>,
    /// Bootstrap seed for the job summary (the `seed` query parameter wins).
    seed: Option<u64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(value_type = Object)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub struct Object(Value);

/// Grade one item (a HealthBench row plus `response`, or a case.v1 row).
#[utoipa::path(post, path = "/v1/grade", request_body = crate::item::ItemSchema,
    responses((status = 200, description = "grade_report.v1", body = crate::service::GradeReportDoc),
              (status = 400, description = "invalid input"), (status = 404, description = "the referenced rubric does not exist"),
              (status = 503, description = "judges unavailable (no quorum)"), (status = 504, description = "the grade's deadline passed")))]
pub async fn grade(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<crate::service::GradeReportDoc>> {
    let doc = json_body(body, &s.service.bounds())?;
    Ok(axum::Json(s.service.grade(&caller, &doc).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// Bootstrap seed for the job summary.
    seed: Option<u64>,
    /// Validate the items and answer (200) what grading them would cost per judge,
    /// without storing a job or calling any judge.
    dry_run: Option<bool>,
}

/// Splits a job body into item documents: a JSON array, NDJSON, or
/// `{"rubric": "id@version", "items": [...], "seed": N}`.
fn job_items(bytes: &[u8], bounds: &Bounds) -> Result<(Vec<String>, Option<u64>), Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Invalid(Invalid::one("", format!("the body is not UTF-8: {e}"))))?;
    let trimmed = text.trim_start();
    let bad = |line: usize, e: serde_json::Error| {
        Error::Invalid(Invalid::one(
            format!("items[{line}]"),
            format!("not valid JSON: {e}"),
        ))
    };
    if trimmed.starts_with('[')
        || (trimmed.starts_with('{') && !trimmed.contains('\n'))
        || trimmed.starts_with("{\"rubric\"")
    {
        let v: Value = bounded::read(text.as_bytes(), bounds).map_err(read_error)?;
        return match v {
            Value::Array(items) => Ok((items.iter().map(Value::to_string).collect(), None)),
            Value::Object(mut m) if m.contains_key("items") => {
                let seed = m.get("seed").and_then(Value::as_u64);
                let rubric = m.remove("rubric");
                let Some(Value::Array(items)) = m.remove("items") else {
                    return Err(Error::Invalid(Invalid::one(
                        "items",
                        "must be an array of items",
                    )));
                };
                let lines = items
                    .into_iter()
                    .map(|mut it| {
                        if let (Some(r), Value::Object(o)) = (&rubric, &mut it) {
                            o.entry("rubric").or_insert_with(|| r.clone());
                        }
                        it.to_string()
                    })
                    .collect();
                Ok((lines, seed))
            }
            Value::Object(_) => Ok((vec![v.to_string()], None)),
            _ => Err(Error::Invalid(Invalid::one(
                "",
                "expected a JSON array of items, NDJSON, or {\"items\": [...]}",
            ))),
        };
    }
    let mut lines = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(|e| bad(i, e))?;
        lines.push(line.to_owned());
    }
    Ok((lines, None))
}

/// Submit a batch job; returns at once with the job (202).
#[utoipa::path(post, path = "/v1/jobs", params(SubmitQuery),
    request_body(description = "A JSON array of items, `{rubric, items, seed}`, or NDJSON (one item per line)",
        content((JobSubmission = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 202, description = "job accepted", body = JobStatus), (status = 200, description = "`dry_run=true`: what the job would cost; nothing stored, no judge called", body = crate::service::JobEstimate), (status = 404, description = "a referenced rubric does not exist"), (status = 400, description = "an item is invalid; nothing stored"),
              (status = 413, description = "too many items or too large"), (status = 429, description = "quota")))]
pub async fn submit_job(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<SubmitQuery>,
    body: Body,
) -> ApiResult<Response> {
    if q.dry_run == Some(true) {
        let lines = match body::read_submission(body, s.max_body_bytes).await? {
            body::Submission::Whole(bytes) => {
                let (lines, _) = job_items(&bytes, &s.service.bounds())?;
                drop(bytes);
                futures::stream::iter(lines.into_iter().map(Ok)).boxed()
            }
            body::Submission::Lines(lines) => lines.into_stream().boxed(),
        };
        let estimate = s.service.estimate_job_stream(&caller, lines).await?;
        return Ok((StatusCode::OK, axum::Json(estimate)).into_response());
    }
    let job = match body::read_submission(body, s.max_body_bytes).await? {
        body::Submission::Whole(bytes) => {
            let (lines, seed) = job_items(&bytes, &s.service.bounds())?;
            // The split lines are all that is needed from here on.
            drop(bytes);
            s.service
                .submit_job(&caller, lines, q.seed.or(seed).unwrap_or(0))
                .await?
        }
        body::Submission::Lines(lines) => {
            s.service
                .submit_job_stream(&caller, lines.into_stream(), q.seed.unwrap_or(0))
                .await?
        }
    };
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    #[param(pattern = r"^(-?[0-9]{1,18}_[\s\S]*)?$")]
    after: Option<String>,
    /// Admins only: list one owner's (API key name's) jobs.
    owner: Option<String>,
}

/// List jobs, newest first, with cursor paging.
#[utoipa::path(get, path = "/v1/jobs", params(ListQuery), responses((status = 200, description = "the caller's jobs (an admin's: every owner's)", body = JobList)))]
pub async fn list_jobs(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<axum::Json<JobList>> {
    let jobs = s
        .service
        .list_jobs(
            &caller,
            q.after.as_deref(),
            q.limit.unwrap_or(50),
            q.owner.as_deref(),
        )
        .await?;
    Ok(axum::Json(jobs))
}

/// Job state, counts, usage and ETA.
#[utoipa::path(get, path = "/v1/jobs/{id}", responses((status = 200, description = "the job", body = JobStatus), (status = 404, description = "no such job")))]
pub async fn get_job(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<JobStatus>> {
    Ok(axum::Json(s.service.job(&caller, &id).await?))
}

/// Cancel a job: no new item or judge call of it starts; finished results stay.
#[utoipa::path(delete, path = "/v1/jobs/{id}", responses((status = 200, description = "the job: cancelling while judge calls already sent finish, cancelled once they have (or already final)", body = JobStatus), (status = 404, description = "no such job")))]
pub async fn cancel_job(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<JobStatus>> {
    Ok(axum::Json(s.service.cancel_job(&caller, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResultsQuery {
    /// Keep streaming results as they complete until the job ends.
    follow: Option<bool>,
}

/// Results as NDJSON in completion order (`?follow=true` streams until the job ends).
#[utoipa::path(get, path = "/v1/jobs/{id}/results", params(ResultsQuery),
    responses((status = 200, description = "NDJSON of grade_report.v1 (or {case_id, error})", content_type = "application/x-ndjson")))]
pub async fn job_results(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> ApiResult<Response> {
    let pages = s
        .service
        .result_stream(&caller, &id, q.follow.unwrap_or(false))
        .await?;
    // One NDJSON chunk per page; an error after the stream opened can only be
    // reported in-band, as a last line.
    let body = pages.map(|page| {
        let chunk = match page {
            Ok(rows) => {
                let mut chunk = String::new();
                for r in &rows {
                    chunk.push_str(&r.json);
                    chunk.push('\n');
                }
                chunk
            }
            Err(e) => format!(
                "{}\n",
                json!({"error": {"kind": e.kind().as_str(), "message": e.to_string()}})
            ),
        };
        Ok::<_, Infallible>(Bytes::from(chunk))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError(Error::Internal(e.to_string())))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Length-adjusted figures beside the raw ones: `professional` (HealthBench
    /// Professional) or `CENTER,PENALTY`; replaces the rubrics' own adjustment.
    #[param(
        pattern = r"^(professional|[0-9]{1,12}(\.[0-9]{1,12})?,[0-9]{1,12}(\.[0-9]{1,12})?)?$"
    )]
    length_adjustment: Option<String>,
}

/// The job's aggregate (shape of `tribunal score --format json`).
#[utoipa::path(get, path = "/v1/jobs/{id}/summary", params(SummaryQuery), responses((status = 200, description = "the figures over the finished items", body = crate::service::JobSummary), (status = 400, description = "a bad length_adjustment"), (status = 404, description = "no such job")))]
pub async fn job_summary(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> ApiResult<Response> {
    let mut summary = s
        .service
        .summary_stream(&caller, &id, q.length_adjustment.as_deref())
        .await?;
    // The first page is read before the response starts, so a job whose stored data
    // cannot be read answers with an error status, not a cut-off body.
    let first = summary.next_page().await.transpose()?;
    // One pass over the job: the per-example entries are written as they are read,
    // then the figures computed from them, so a million-item summary is never held
    // whole and never read twice. The document is the same JSON as the typed
    // `JobSummary`; only its key order differs (`examples` first).
    // The state is the summary being read, the page already read (the first), and
    // whether nothing was written yet; `None` once the document is complete (or cut
    // off by an error).
    let body = futures::stream::unfold(Some((summary, first, true)), |part| async move {
        let (mut summary, read, first) = part?;
        let mut chunk = Vec::new();
        if first {
            chunk.extend_from_slice(b"{\"examples\":[");
        }
        let page = match read {
            Some(page) => Some(Ok(page)),
            None if first => None,
            None => summary.next_page().await,
        };
        match page {
            Some(Ok(page)) => {
                chunk.reserve(page.iter().map(|e| e.len() + 1).sum());
                for (i, entry) in page.iter().enumerate() {
                    if i > 0 || !first {
                        chunk.push(b',');
                    }
                    chunk.extend_from_slice(entry.as_bytes());
                }
                Some((Ok(Bytes::from(chunk)), Some((summary, None, false))))
            }
            // An error after the first byte cannot become an error body: the stream
            // ends with it, so the client sees a cut-off document, never a valid
            // partial one.
            Some(Err(e)) => Some((Err(e), None)),
            None => {
                let tail = summary.finish().await.and_then(|head| {
                    let internal = |e: serde_json::Error| Error::Internal(e.to_string());
                    let Value::Object(mut doc) = serde_json::to_value(&head).map_err(internal)?
                    else {
                        return Err(Error::Internal("summary is not an object".into()));
                    };
                    doc.remove("examples");
                    let rest = serde_json::to_string(&Value::Object(doc)).map_err(internal)?;
                    chunk.extend_from_slice(b"]");
                    // `rest` is `{...}`: its members follow the examples.
                    if rest.len() > 2 {
                        chunk.push(b',');
                        chunk.extend_from_slice(&rest.as_bytes()[1..]);
                    } else {
                        chunk.push(b'}');
                    }
                    Ok(Bytes::from(chunk))
                });
                Some((tail, None))
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError(Error::Internal(e.to_string())))
}

/// Validate and store an immutable rubric version (201; 200 when identical).
#[utoipa::path(post, path = "/v1/rubrics", request_body = crate::rubric::RawRubric,
    responses((status = 201, description = "stored", body = RawRubric), (status = 200, description = "identical version already stored", body = RawRubric),
              (status = 400, description = "invalid rubric"), (status = 409, description = "version exists with other content")))]
pub async fn create_rubric(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let doc = json_body(body, &s.service.bounds())?;
    let (rubric, created) = s.service.create_rubric(&caller, &doc).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(rubric)).into_response())
}

/// Latest version of every rubric.
#[utoipa::path(get, path = "/v1/rubrics", responses((status = 200, description = "the latest version of every rubric", body = crate::service::RubricList)))]
pub async fn list_rubrics(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<axum::Json<crate::service::RubricList>> {
    Ok(axum::Json(s.service.rubrics(&caller).await?))
}

/// Validate a rubric without storing it: `{valid, problems, rubric}`.
#[utoipa::path(post, path = "/v1/rubrics/validate", request_body(content = Object, description = "any JSON object: the answer lists its problems as a rubric.v1"),
    responses((status = 200, description = "valid, or every problem with its field", body = crate::service::RubricValidation)))]
pub async fn validate_rubric(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<crate::service::RubricValidation>> {
    let doc = json_body(body, &s.service.bounds())?;
    if !doc.is_object() {
        return Err(ApiError(Error::Invalid(Invalid::one(
            "",
            format!(
                "expected a JSON object (a rubric.v1 document), got {}",
                crate::rubric::json_kind_of(&doc)
            ),
        ))));
    }
    Ok(axum::Json(s.service.validate_rubric(&caller, &doc)?))
}

/// The latest version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}", responses((status = 200, description = "the latest version", body = RawRubric), (status = 404, description = "no such rubric")))]
pub async fn get_rubric(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<RawRubric>> {
    Ok(axum::Json(s.service.rubric(&caller, &id, None).await?))
}

/// Every stored version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}/versions", responses((status = 200, description = "every version", body = crate::service::RubricVersions), (status = 404, description = "no such rubric")))]
pub async fn rubric_versions(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<crate::service::RubricVersions>> {
    Ok(axum::Json(s.service.rubric_versions(&caller, &id).await?))
}

/// One version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}/versions/{version}", responses((status = 200, description = "that version", body = RawRubric), (status = 404, description = "no such rubric version")))]
pub async fn get_rubric_version(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, version)): ApiPath<(String, u32)>,
) -> ApiResult<axum::Json<RawRubric>> {
    Ok(axum::Json(
        s.service.rubric(&caller, &id, Some(version)).await?,
    ))
}

/// The committee, its limits and live per-judge counters.
#[utoipa::path(get, path = "/v1/judges", responses((status = 200, description = "the committee", body = crate::service::grading::Judges)))]
pub async fn judges(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<axum::Json<crate::service::grading::Judges>> {
    Ok(axum::Json(s.service.judges(&caller)?))
}

/// Upload a calibration set (calibration.v1, K-QA CSV, HealthBench meta-eval or
/// mapped CSV in `content`); it is stored as calibration.v1 (201).
#[utoipa::path(post, path = "/v1/calibration/sets", request_body = crate::service::NewCalibrationSet,
    responses((status = 201, description = "the stored set", body = crate::service::calibration::CalibrationSetDoc), (status = 409, description = "a set with that name exists"), (status = 400, description = "invalid set; every problem listed"),
              (status = 413, description = "too large")))]
pub async fn create_calibration_set(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new = typed_body(body, &s.service.bounds())?;
    let set = s.service.create_calibration_set(&caller, &new).await?;
    Ok((StatusCode::CREATED, axum::Json(set)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnerQuery {
    /// Admins and annotators: list one owner's (API key name's) sets.
    owner: Option<String>,
}

/// Stored calibration sets, newest first.
#[utoipa::path(get, path = "/v1/calibration/sets", params(OwnerQuery), responses((status = 200, description = "the sets the caller may see", body = crate::service::calibration::CalibrationSetList)))]
pub async fn list_calibration_sets(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<OwnerQuery>,
) -> ApiResult<axum::Json<crate::service::calibration::CalibrationSetList>> {
    Ok(axum::Json(
        s.service
            .calibration_sets(&caller, q.owner.as_deref())
            .await?,
    ))
}

/// One set: scale, categories, raters, counts.
#[utoipa::path(get, path = "/v1/calibration/sets/{id}", responses((status = 200, description = "the set", body = crate::service::calibration::CalibrationSetDoc), (status = 404, description = "no such set")))]
pub async fn get_calibration_set(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<crate::service::calibration::CalibrationSetDoc>> {
    Ok(axum::Json(s.service.calibration_set(&caller, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Only this item's labels.
    item: Option<String>,
}

/// The history of labels written to a set through the API (who, when, the value
/// replaced), oldest first.
#[utoipa::path(get, path = "/v1/calibration/sets/{id}/labels", params(HistoryQuery),
    responses((status = 200, description = "the label writes, oldest first", body = crate::service::calibration::LabelHistory), (status = 404, description = "no such set")))]
pub async fn label_history(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<axum::Json<crate::service::calibration::LabelHistory>> {
    Ok(axum::Json(
        s.service
            .label_history(&caller, &id, q.item.as_deref())
            .await?,
    ))
}

/// Add or correct labels: `{"labels": [{"item", "rater", "kind", "value"}]}`; all or nothing.
#[utoipa::path(post, path = "/v1/calibration/sets/{id}/labels", request_body = crate::service::NewLabels,
    responses((status = 200, description = "what changed", body = crate::service::calibration::LabelsWritten), (status = 400, description = "a label is invalid; nothing changed"),
              (status = 404, description = "no such set")))]
pub async fn add_calibration_labels(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<crate::service::calibration::LabelsWritten>> {
    let doc = json_body(body, &s.service.bounds())?;
    Ok(axum::Json(
        s.service.add_calibration_labels(&caller, &id, &doc).await?,
    ))
}

/// Undo the caller's newest label write on a set that is not undone yet: the label
/// gets back the value it replaced (or is removed, when that write added it). Recorded
/// in the label history like any write; a second undo goes one write further back.
#[utoipa::path(post, path = "/v1/calibration/sets/{id}/labels/undo",
    responses((status = 200, description = "what was undone", body = crate::service::calibration::LabelUndone),
              (status = 404, description = "no such set"),
              (status = 409, description = "nothing to undo, or the label was changed after that write")))]
pub async fn undo_calibration_label(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<crate::service::calibration::LabelUndone>> {
    Ok(axum::Json(
        s.service.undo_calibration_label(&caller, &id).await?,
    ))
}

/// Start a calibration run (a job over the set's items): `{"set", "seed"?, "resamples"?, "confidence"?}` (202).
#[utoipa::path(post, path = "/v1/calibration/runs", request_body = crate::service::NewCalibrationRun,
    responses((status = 202, description = "the run, queued", body = crate::service::calibration::CalibrationRunDoc), (status = 400, description = "the set cannot be run"),
              (status = 404, description = "no such set"), (status = 429, description = "quota")))]
pub async fn start_calibration_run(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new = typed_body(body, &s.service.bounds())?;
    let run = s.service.start_calibration_run(&caller, &new).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

/// A run's progress and, once finished, its agreement report.
#[utoipa::path(get, path = "/v1/calibration/runs/{id}", responses((status = 200, description = "the run", body = crate::service::calibration::CalibrationRunDoc), (status = 404, description = "no such run")))]
pub async fn get_calibration_run(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<axum::Json<crate::service::calibration::CalibrationRunDoc>> {
    Ok(axum::Json(s.service.calibration_run(&caller, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DisagreementsQuery {
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    after: Option<u64>,
}

/// Items where the committee or a judge differs from the human majority, with the
/// judges' explanations (paged).
#[utoipa::path(get, path = "/v1/calibration/runs/{id}/disagreements", params(DisagreementsQuery),
    responses((status = 200, description = "a page of disagreements", body = crate::service::calibration::Disagreements), (status = 404, description = "no such run")))]
pub async fn calibration_disagreements(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DisagreementsQuery>,
) -> ApiResult<axum::Json<crate::service::calibration::Disagreements>> {
    Ok(axum::Json(
        s.service
            .calibration_disagreements(&caller, &id, q.after, q.limit.unwrap_or(50))
            .await?,
    ))
}

/// `/healthz` and `/readyz` answers.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (alive) or `ready` (the store answers).
    status: &'static str,
    /// Readiness only: the committee is simulated.
    #[serde(skip_serializing_if = "Option::is_none")]
    simulated: Option<bool>,
    /// Readiness with `[redis]` only: Redis' health. A replica stays ready while Redis
    /// is down (limits fall back to per-replica shares, the cache to local), degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    redis: Option<RedisHealth>,
}

/// Redis as `/readyz` shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RedisHealth {
    /// `up`, or `degraded` while Redis is unreachable.
    status: &'static str,
    /// The last failure, while degraded.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok",
        simulated: None,
        redis: None,
    })
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready", body = Health), (status = 503, description = "store unavailable")))]
pub async fn readyz(State(s): State<HttpState>) -> ApiResult<axum::Json<Health>> {
    let simulated = s.service.ready().await?;
    Ok(axum::Json(Health {
        status: "ready",
        simulated: Some(simulated),
        redis: s.service.shared_status().await.map(|r| RedisHealth {
            status: if r.up { "up" } else { "degraded" },
            error: r.last_error,
        }),
    }))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(State(s): State<HttpState>) -> Response {
    s.service.refresh_job_gauges().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
