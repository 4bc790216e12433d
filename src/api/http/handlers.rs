//! HTTP handlers: extract, convert, call one `Service` method, map the result.
//! Bodies are read as bytes so size and JSON errors get tribunal's error body.

use std::convert::Infallible;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{Caller, HttpState};
use crate::error::Error;
use crate::rubric::Invalid;
use crate::service::job_json;

/// Any JSON document in one of tribunal's documented formats (see README).
#[derive(utoipa::ToSchema)]
#[schema(value_type = Object)]
#[expect(dead_code, reason = "documents the OpenAPI schema only")]
pub struct JsonDoc(Value);

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

fn json_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Value> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError(Error::Invalid(Invalid::one(
            "",
            format!("the body is not valid JSON: {e}"),
        )))
    })
}

/// Grade one item (a HealthBench row plus `response`, or a case.v1 row).
#[utoipa::path(post, path = "/v1/grade", request_body = JsonDoc,
    responses((status = 200, description = "grade_report.v1", body = JsonDoc),
              (status = 400, description = "invalid input"), (status = 503, description = "judges unavailable")))]
pub async fn grade(
    State(s): State<HttpState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<Value>> {
    let doc = json_body(body)?;
    Ok(axum::Json(s.service.grade(&doc).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct SubmitQuery {
    /// Bootstrap seed for the job summary.
    seed: Option<u64>,
}

/// Splits a job body into item documents: a JSON array, NDJSON, or
/// `{"rubric": "id@version", "items": [...], "seed": N}`.
fn job_items(bytes: &[u8]) -> Result<(Vec<String>, Option<u64>), Error> {
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
        let v: Value = serde_json::from_str(text).map_err(|e| {
            Error::Invalid(Invalid::one("", format!("the body is not valid JSON: {e}")))
        })?;
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

/// The caller's concurrent-jobs quota (calibration runs are jobs too).
async fn check_job_quota(s: &HttpState, caller: &Caller) -> ApiResult<()> {
    if let (Some(max), Some(owner)) = (s.auth.max_concurrent_jobs(caller), caller.0.as_deref()) {
        let active = s
            .service
            .store
            .active_jobs(owner)
            .await
            .map_err(Error::from)?;
        if usize::try_from(active).unwrap_or(usize::MAX) >= max {
            crate::metrics::quota_rejection(owner);
            return Err(ApiError(Error::RateLimited {
                retry_after: std::time::Duration::from_secs(30),
            }));
        }
    }
    Ok(())
}

/// Submit a batch job; returns at once with the job (202).
#[utoipa::path(post, path = "/v1/jobs", params(SubmitQuery), request_body(content = JsonDoc, description = "JSON array, NDJSON, or {rubric, items, seed}"),
    responses((status = 202, description = "job accepted", body = JsonDoc), (status = 400, description = "an item is invalid; nothing stored"),
              (status = 413, description = "too many items or too large"), (status = 429, description = "quota")))]
pub async fn submit_job(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SubmitQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body)?;
    let (lines, seed) = job_items(&bytes)?;
    // The split lines are all that is needed from here on.
    drop(bytes);
    check_job_quota(&s, &caller).await?;
    let job = s
        .service
        .submit_job(lines, q.seed.or(seed).unwrap_or(0), caller.0.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job_json(&job))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    after: Option<String>,
}

/// List jobs, newest first, with cursor paging.
#[utoipa::path(get, path = "/v1/jobs", params(ListQuery), responses((status = 200, description = "{jobs, next}", body = JsonDoc)))]
pub async fn list_jobs(
    State(s): State<HttpState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let (jobs, next) = s
        .service
        .list_jobs(q.after.as_deref(), q.limit.unwrap_or(50))
        .await?;
    Ok(axum::Json(
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>(), "next": next}),
    ))
}

/// Job state, counts, usage and ETA.
#[utoipa::path(get, path = "/v1/jobs/{id}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such job")))]
pub async fn get_job(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(job_json(&s.service.job(&id).await?)))
}

/// Cancel a job: no new items start; finished results stay.
#[utoipa::path(delete, path = "/v1/jobs/{id}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such job")))]
pub async fn cancel_job(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(job_json(&s.service.cancel_job(&id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ResultsQuery {
    /// Keep streaming results as they complete until the job ends.
    follow: Option<bool>,
}

/// Results as NDJSON in completion order (`?follow=true` streams until the job ends).
#[utoipa::path(get, path = "/v1/jobs/{id}/results", params(ResultsQuery),
    responses((status = 200, description = "NDJSON of grade_report.v1 (or {case_id, error})", content_type = "application/x-ndjson")))]
pub async fn job_results(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<ResultsQuery>,
) -> ApiResult<Response> {
    s.service.job(&id).await?;
    let follow = q.follow.unwrap_or(false);
    let service = s.service.clone();
    let stream = futures::stream::unfold(
        (0u64, false, service.jobs.subscribe()),
        move |(after, ended, mut rx)| {
            let service = service.clone();
            let id = id.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    let page = match service.results(&id, after, 500).await {
                        Ok(p) => p.rows,
                        Err(e) => {
                            let line = format!(
                                "{}\n",
                                json!({"error": {"kind": e.kind().as_str(), "message": e.to_string()}})
                            );
                            return Some((
                                Ok::<_, Infallible>(Bytes::from(line)),
                                (after, true, rx),
                            ));
                        }
                    };
                    if let Some(last) = page.last().map(|r| r.0) {
                        let mut chunk = String::new();
                        for (_, _, text) in &page {
                            chunk.push_str(text);
                            chunk.push('\n');
                        }
                        return Some((Ok(Bytes::from(chunk)), (last, false, rx)));
                    }
                    let finished = match service.job(&id).await {
                        Ok(j) => j.state.is_final() || j.pending() == 0,
                        Err(_) => true,
                    };
                    if !follow || finished {
                        // One more look: results may have landed between the two queries.
                        if let Ok(p) = service.results(&id, after, 1).await {
                            if !p.rows.is_empty() {
                                continue;
                            }
                        }
                        return None;
                    }
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError(Error::Internal(e.to_string())))
}

/// The job's aggregate (shape of `tribunal score --format json`).
#[utoipa::path(get, path = "/v1/jobs/{id}/summary", responses((status = 200, body = JsonDoc), (status = 404, description = "no such job")))]
pub async fn job_summary(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.summary(&id).await?))
}

/// Validate and store an immutable rubric version (201; 200 when identical).
#[utoipa::path(post, path = "/v1/rubrics", request_body = JsonDoc,
    responses((status = 201, body = JsonDoc), (status = 200, description = "identical version already stored"),
              (status = 400, description = "invalid rubric"), (status = 409, description = "version exists with other content")))]
pub async fn create_rubric(
    State(s): State<HttpState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let doc = json_body(body)?;
    let (rubric, created) = s.service.create_rubric(&doc).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(rubric)).into_response())
}

/// Latest version of every rubric.
#[utoipa::path(get, path = "/v1/rubrics", responses((status = 200, body = JsonDoc)))]
pub async fn list_rubrics(State(s): State<HttpState>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.rubrics().await?))
}

/// Validate a rubric without storing it: `{valid, problems, rubric}`.
#[utoipa::path(post, path = "/v1/rubrics/validate", request_body = JsonDoc, responses((status = 200, body = JsonDoc)))]
pub async fn validate_rubric(
    State(s): State<HttpState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<Value>> {
    let doc = json_body(body)?;
    Ok(axum::Json(match s.service.validate_rubric(&doc) {
        Ok(r) => json!({"valid": true, "problems": [], "rubric": r}),
        Err(Invalid(p)) => {
            json!({"valid": false, "problems": p.iter().map(|e| json!({"field": e.field, "message": e.message})).collect::<Vec<_>>()})
        }
    }))
}

/// The latest version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such rubric")))]
pub async fn get_rubric(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.rubric(&id, None).await?))
}

/// Every stored version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}/versions", responses((status = 200, body = JsonDoc), (status = 404, description = "no such rubric")))]
pub async fn rubric_versions(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.rubric_versions(&id).await?))
}

/// One version of a rubric.
#[utoipa::path(get, path = "/v1/rubrics/{id}/versions/{version}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such rubric version")))]
pub async fn get_rubric_version(
    State(s): State<HttpState>,
    Path((id, version)): Path<(String, u32)>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.rubric(&id, Some(version)).await?))
}

/// The committee, its limits and live per-judge counters.
#[utoipa::path(get, path = "/v1/judges", responses((status = 200, body = JsonDoc)))]
pub async fn judges(State(s): State<HttpState>) -> axum::Json<Value> {
    axum::Json(s.service.judges())
}

/// Upload a calibration set (calibration.v1, K-QA CSV, HealthBench meta-eval or
/// mapped CSV in `content`); it is stored as calibration.v1 (201).
#[utoipa::path(post, path = "/v1/calibration/sets", request_body(content = JsonDoc, description = "{format, content, name?, csv?: {map, scale?, categories?, met?}}"),
    responses((status = 201, description = "the stored set", body = JsonDoc), (status = 400, description = "invalid set; every problem listed"),
              (status = 413, description = "too large")))]
pub async fn create_calibration_set(
    State(s): State<HttpState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let doc = json_body(body)?;
    let set = s.service.create_calibration_set(&doc).await?;
    Ok((StatusCode::CREATED, axum::Json(set)).into_response())
}

/// Stored calibration sets, newest first.
#[utoipa::path(get, path = "/v1/calibration/sets", responses((status = 200, description = "{sets}", body = JsonDoc)))]
pub async fn list_calibration_sets(State(s): State<HttpState>) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.calibration_sets().await?))
}

/// One set: scale, categories, raters, counts.
#[utoipa::path(get, path = "/v1/calibration/sets/{id}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such set")))]
pub async fn get_calibration_set(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.calibration_set(&id).await?))
}

/// Add or correct labels: `{"labels": [{"item", "rater", "kind", "value"}]}`; all or nothing.
#[utoipa::path(post, path = "/v1/calibration/sets/{id}/labels", request_body = JsonDoc,
    responses((status = 200, description = "{added, replaced, set}", body = JsonDoc), (status = 400, description = "a label is invalid; nothing changed"),
              (status = 404, description = "no such set")))]
pub async fn add_calibration_labels(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<Value>> {
    let doc = json_body(body)?;
    Ok(axum::Json(
        s.service.add_calibration_labels(&id, &doc).await?,
    ))
}

/// Start a calibration run (a job over the set's items): `{"set", "seed"?, "resamples"?, "confidence"?}` (202).
#[utoipa::path(post, path = "/v1/calibration/runs", request_body = JsonDoc,
    responses((status = 202, description = "the run, queued", body = JsonDoc), (status = 400, description = "the set cannot be run"),
              (status = 404, description = "no such set"), (status = 429, description = "quota")))]
pub async fn start_calibration_run(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let doc = json_body(body)?;
    check_job_quota(&s, &caller).await?;
    let run = s
        .service
        .start_calibration_run(&doc, caller.0.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(run)).into_response())
}

/// A run's progress and, once finished, its agreement report.
#[utoipa::path(get, path = "/v1/calibration/runs/{id}", responses((status = 200, body = JsonDoc), (status = 404, description = "no such run")))]
pub async fn get_calibration_run(
    State(s): State<HttpState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(s.service.calibration_run(&id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct DisagreementsQuery {
    limit: Option<u32>,
    /// Cursor from the previous page's `next`.
    after: Option<u64>,
}

/// Items where the committee or a judge differs from the human majority, with the
/// judges' explanations (paged).
#[utoipa::path(get, path = "/v1/calibration/runs/{id}/disagreements", params(DisagreementsQuery),
    responses((status = 200, description = "{items, next}", body = JsonDoc), (status = 404, description = "no such run")))]
pub async fn calibration_disagreements(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    Query(q): Query<DisagreementsQuery>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        s.service
            .calibration_disagreements(&id, q.after, q.limit.unwrap_or(50))
            .await?,
    ))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
pub async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "store unavailable")))]
pub async fn readyz(State(s): State<HttpState>) -> ApiResult<axum::Json<Value>> {
    s.service.store.ping().await.map_err(Error::from)?;
    Ok(axum::Json(
        json!({"status": "ready", "simulated": s.service.grader.simulated()}),
    ))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus metrics", content_type = "text/plain")))]
pub async fn metrics(State(s): State<HttpState>) -> Response {
    if let Ok((by_state, pending)) = s.service.store.job_counts().await {
        let states: Vec<(&'static str, i64)> = by_state
            .into_iter()
            .map(|(st, n)| (st.as_str(), n))
            .collect();
        crate::metrics::jobs(&states, pending);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}
