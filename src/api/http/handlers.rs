//! HTTP handlers: extract, convert, call one `Service` method, map the result.
//! Bodies are read as bytes so size and JSON errors get tribunal's error body.

use std::convert::Infallible;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
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

/// What a body's `Content-Type` says it holds.
#[derive(Debug, PartialEq, Eq)]
enum MediaType {
    Json,
    Ndjson,
    Csv,
    /// No `Content-Type`: the form is sniffed (as before the header was honoured).
    Unstated,
    Other(String),
}

fn media_type(headers: &HeaderMap) -> MediaType {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return MediaType::Unstated;
    };
    let Ok(v) = v.to_str() else {
        return MediaType::Other("(a non-text content-type)".into());
    };
    let essence = v
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" => MediaType::Unstated,
        "application/json" => MediaType::Json,
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines"
        | "application/jsonlines" => MediaType::Ndjson,
        "text/csv" => MediaType::Csv,
        e if e.ends_with("+json") => MediaType::Json,
        _ => MediaType::Other(essence),
    }
}

/// 415 with the usual error body (`kind: invalid_input`, `field: content-type`),
/// naming the forms the route takes.
fn unsupported(got: &str, accepted: &str) -> Response {
    let mut r = ApiError(Error::Invalid(Invalid::one(
        "content-type",
        format!("{got} is not accepted here; send {accepted}"),
    )))
    .into_response();
    *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    r
}

const JOB_FORMS: &str = "content-type: application/json (a JSON array of items, {\"rubric\", \"items\", \"seed\"}, or one item object) or application/x-ndjson (one item per line)";

/// A job body that says it is JSON: one document, an array of items, the
/// `{"rubric", "items", "seed"}` envelope, or one item object, pretty-printed or not.
fn job_document(bytes: &[u8], bounds: &Bounds) -> Result<(Vec<String>, Option<u64>), Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::Invalid(Invalid::one("", format!("the body is not UTF-8: {e}"))))?;
    let v: Value = bounded::read(text.as_bytes(), bounds).map_err(|e| {
        let e = match e {
            bounded::ReadError::Overrun(o) => return o.into(),
            bounded::ReadError::Syntax(e) => e,
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let ndjson = lines.len() > 1
            && lines
                .iter()
                .all(|l| serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok());
        let hint = if ndjson {
            "this is NDJSON (one item per line): send it with content-type: application/x-ndjson"
        } else {
            "content-type: application/json takes one JSON document: an array of items, {\"rubric\", \"items\", \"seed\"}, or one item object"
        };
        Error::Invalid(Invalid::one(
            "",
            format!("the body is not valid JSON: {e}; {hint}"),
        ))
    })?;
    split_document(v)
}

/// Splits a job body into item documents: a JSON array, NDJSON, or
/// `{"rubric": "id@version", "items": [...], "seed": N}`. For a body without a
/// `Content-Type`: a body that is one JSON document (an item spread over several
/// lines, say) is that document, anything else NDJSON.
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
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        match bounded::read(text.as_bytes(), bounds) {
            Ok(v) => return split_document(v),
            Err(bounded::ReadError::Overrun(o)) => return Err(o.into()),
            Err(e) if trimmed.starts_with('[') || !trimmed.contains('\n') => {
                return Err(read_error(e));
            }
            Err(_) => {}
        }
    }
    let mut lines = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        serde_json::from_str::<serde::de::IgnoredAny>(line).map_err(|e| bad(i, e))?;
        lines.push(line.to_owned());
    }
    Ok((lines, None))
}

/// One JSON job document as item texts (and the envelope's seed).
fn split_document(v: Value) -> Result<(Vec<String>, Option<u64>), Error> {
    match v {
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
    }
}

/// Submit a batch job; returns at once with the job (202).
#[utoipa::path(post, path = "/v1/jobs", params(SubmitQuery),
    request_body(description = "`application/json`: a JSON array of items, `{rubric, items, seed}`, or one item object (pretty-printed or not); `application/x-ndjson`: one item per line, streamed (no size limit, only `server.max_items_per_job`). Without a Content-Type the form is sniffed; any other type is 415.",
        content((JobSubmission = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 202, description = "job accepted", body = JobStatus), (status = 200, description = "`dry_run=true`: what the job would cost; nothing stored, no judge called", body = crate::service::JobEstimate), (status = 404, description = "a referenced rubric does not exist"), (status = 400, description = "an item is invalid; nothing stored"),
              (status = 413, description = "too many items or too large"), (status = 415, description = "a Content-Type other than application/json or application/x-ndjson"), (status = 429, description = "quota")))]
pub async fn submit_job(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<SubmitQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let intake = match job_intake(&headers, body, s.max_body_bytes, &s.service.bounds()).await? {
        Ok(intake) => intake,
        Err(unsupported) => return Ok(unsupported),
    };
    if q.dry_run == Some(true) {
        let lines = match intake {
            Intake::Items(lines, _) => futures::stream::iter(lines.into_iter().map(Ok)).boxed(),
            Intake::Lines(lines) => lines.into_stream().boxed(),
        };
        let estimate = s.service.estimate_job_stream(&caller, lines).await?;
        return Ok((StatusCode::OK, axum::Json(estimate)).into_response());
    }
    let job = match intake {
        Intake::Items(lines, seed) => {
            s.service
                .submit_job(&caller, lines, q.seed.or(seed).unwrap_or(0))
                .await?
        }
        Intake::Lines(lines) => {
            s.service
                .submit_job_stream(&caller, lines.into_stream(), q.seed.unwrap_or(0))
                .await?
        }
    };
    Ok((StatusCode::ACCEPTED, axum::Json(job)).into_response())
}

/// A job body, split into items or streaming as NDJSON lines.
enum Intake {
    Items(Vec<String>, Option<u64>),
    Lines(body::LineStream),
}

/// Reads a job body as its `Content-Type` says: `application/json` one document,
/// `application/x-ndjson` lines as they arrive, none sniffed; any other type is the
/// inner `Err`, a 415 naming the accepted forms.
async fn job_intake(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    bounds: &Bounds,
) -> ApiResult<Result<Intake, Response>> {
    Ok(Ok(match media_type(headers) {
        MediaType::Json => {
            let bytes = body::read_whole(
                body,
                max_bytes,
                "send NDJSON (content-type: application/x-ndjson, one item per line), which has no size limit, or raise the limit",
            )
            .await?;
            let (lines, seed) = job_document(&bytes, bounds)?;
            Intake::Items(lines, seed)
        }
        MediaType::Ndjson => Intake::Lines(body::ndjson_lines(body, max_bytes)),
        MediaType::Unstated => match body::read_submission(body, max_bytes).await? {
            body::Submission::Whole(bytes) => {
                let (lines, seed) = job_items(&bytes, bounds)?;
                Intake::Items(lines, seed)
            }
            body::Submission::Lines(lines) => Intake::Lines(lines),
        },
        MediaType::Csv => return Ok(Err(unsupported("text/csv", JOB_FORMS))),
        MediaType::Other(t) => return Ok(Err(unsupported(&t, JOB_FORMS))),
    }))
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SetFileQuery {
    /// A file sent as it is: the set's name (replaces the name its header gives).
    name: Option<String>,
    /// A file sent as it is: `calibration.v1` or `healthbench-meta` for
    /// `application/x-ndjson` (default `calibration.v1`), `csv` or `kqa` for `text/csv`
    /// (default `csv`).
    format: Option<crate::service::SetFormat>,
    /// `text/csv` with `format=csv`: the column mapping, e.g.
    /// `id=row_id,human:alice=label_a,judge:gpt=gpt_label`.
    map: Option<String>,
    /// `text/csv`: `nominal`, `ordinal` or `interval`.
    scale: Option<crate::service::ScaleName>,
    /// `text/csv`: the categories, comma-separated (in order, for an ordinal scale).
    categories: Option<String>,
    /// `text/csv`: the category that means "criterion met".
    met: Option<String>,
}

const SET_FORMS: &str = "content-type: application/json ({\"format\", \"content\", \"name\"?, \"csv\"?}), application/x-ndjson (a calibration.v1 or healthbench-meta file as it is) or text/csv (a CSV file as it is, with ?map=... or ?format=kqa)";

/// Upload a calibration set: the `{format, content}` document (calibration.v1, K-QA
/// CSV, HealthBench meta-eval or mapped CSV in `content`), or the file as it is
/// (`application/x-ndjson`, `text/csv`, options as query parameters); it is stored as
/// calibration.v1 (201).
#[utoipa::path(post, path = "/v1/calibration/sets", params(SetFileQuery),
    request_body(description = "`application/json`: `{format, content, name?, csv?}`. `application/x-ndjson`: a calibration.v1 (or `?format=healthbench-meta`) file as it is; the name comes from its header or `?name=`. `text/csv`: a CSV file as it is, read through `?map=` (or `?format=kqa`) with `?scale=`, `?categories=`, `?met=`, `?name=`.",
        content((crate::service::NewCalibrationSet = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 201, description = "the stored set", body = crate::service::calibration::CalibrationSetDoc), (status = 409, description = "a set with that name exists"), (status = 400, description = "invalid set; every problem listed"),
              (status = 413, description = "too large"), (status = 415, description = "a Content-Type other than the three accepted")))]
pub async fn create_calibration_set(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<SetFileQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    use crate::service::{CsvUpload, NewCalibrationSet, SetFormat};
    let name = q.name.clone();
    let file = |body, format: SetFormat, csv: Option<CsvUpload>| -> ApiResult<NewCalibrationSet> {
        let bytes = body_bytes(body)?;
        let content = String::from_utf8(bytes.to_vec())
            .map_err(|e| Error::Invalid(Invalid::one("", format!("the file is not UTF-8: {e}"))))?;
        Ok(NewCalibrationSet {
            format,
            content,
            name: name.clone(),
            csv,
        })
    };
    let new = match media_type(&headers) {
        MediaType::Json | MediaType::Unstated => set_document(body, &s.service.bounds())?,
        MediaType::Ndjson => match q.format.unwrap_or(SetFormat::CalibrationV1) {
            f @ (SetFormat::CalibrationV1 | SetFormat::HealthbenchMeta) => file(body, f, None)?,
            SetFormat::Kqa | SetFormat::Csv => {
                return Err(ApiError(Error::Invalid(Invalid::one(
                    "format",
                    "a CSV format with content-type application/x-ndjson; send the CSV as text/csv, or ?format=calibration.v1 / healthbench-meta",
                ))));
            }
        },
        MediaType::Csv => match q.format.unwrap_or(SetFormat::Csv) {
            SetFormat::Kqa => file(body, SetFormat::Kqa, None)?,
            SetFormat::Csv => {
                let Some(map) = q.map.clone() else {
                    return Err(ApiError(Error::Invalid(Invalid::one(
                        "map",
                        "missing: a CSV file needs its column mapping, e.g. ?map=id=row_id,human:alice=label_a,judge:gpt=gpt_label (or ?format=kqa for the K-QA file)",
                    ))));
                };
                let categories = q.categories.as_deref().map(|c| {
                    c.split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                });
                let csv = CsvUpload {
                    map,
                    scale: q.scale,
                    categories,
                    met: q.met.clone(),
                    name: None,
                };
                file(body, SetFormat::Csv, Some(csv))?
            }
            SetFormat::CalibrationV1 | SetFormat::HealthbenchMeta => {
                return Err(ApiError(Error::Invalid(Invalid::one(
                    "format",
                    "a JSON Lines format with content-type text/csv; send the file as application/x-ndjson, or ?format=csv / kqa",
                ))));
            }
        },
        MediaType::Other(t) => return Ok(unsupported(&t, SET_FORMS)),
    };
    let set = s.service.create_calibration_set(&caller, &new).await?;
    Ok((StatusCode::CREATED, axum::Json(set)).into_response())
}

/// The `{format, content}` document; a set file sent as it is instead gets the
/// hint how to send it, beside the JSON error.
fn set_document(
    body: Result<Bytes, BytesRejection>,
    bounds: &Bounds,
) -> ApiResult<crate::service::NewCalibrationSet> {
    let bytes = body_bytes(body)?;
    let text = String::from_utf8_lossy(&bytes);
    let hinted = |e: String| {
        if crate::service::calibration::is_unwrapped_set_file(&text) {
            let hint = crate::service::calibration::UNWRAPPED_SET_HINT;
            ApiError(Error::Invalid(Invalid::one("", format!("{e}; {hint}"))))
        } else {
            ApiError(Error::Invalid(Invalid::one("", e)))
        }
    };
    let doc: Value = bounded::read(&bytes, bounds).map_err(|e| match e {
        bounded::ReadError::Overrun(o) => ApiError(o.into()),
        bounded::ReadError::Syntax(e) => hinted(format!("the body is not valid JSON: {e}")),
    })?;
    crate::rubric::decode_at(&doc).map_err(|mut e: crate::rubric::FieldError| {
        if crate::service::calibration::is_unwrapped_set_file(&text) {
            let hint = crate::service::calibration::UNWRAPPED_SET_HINT;
            e.message = format!("{}; {hint}", e.message);
        }
        ApiError(Error::Invalid(Invalid(vec![e])))
    })
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
