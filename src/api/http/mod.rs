//! The HTTP API (axum) under `/v1`, plus `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json` (generated from the handler annotations). Middleware: request ids
//! (`x-request-id` in and out), metrics and tracing per route template, API-key auth
//! with per-key quotas, body size limit. Handlers only translate.

pub mod error;
mod handlers;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::ApiKeyConfig;
use crate::error::Error;
use crate::service::Service;
use error::{ApiError, REQUEST_ID};

/// Who is calling: the API key's configured name, or anonymous when auth is off.
#[derive(Debug, Clone)]
pub struct Caller(pub Option<String>);

struct Key {
    name: String,
    hash: blake3::Hash,
    limiter: Option<DefaultDirectRateLimiter>,
    max_concurrent_jobs: Option<usize>,
}

/// API keys (by blake3 hash) and their quotas.
pub struct Auth {
    keys: Vec<Key>,
}

impl Auth {
    pub fn new(keys: &[ApiKeyConfig]) -> Auth {
        Auth {
            keys: keys
                .iter()
                .filter_map(|k| {
                    Some(Key {
                        name: k.name.clone(),
                        hash: blake3::Hash::from_hex(&k.blake3).ok()?,
                        limiter: k
                            .requests_per_minute
                            .and_then(NonZeroU32::new)
                            .map(|r| RateLimiter::direct(Quota::per_minute(r))),
                        max_concurrent_jobs: k.max_concurrent_jobs,
                    })
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    fn check(&self, header: Option<&HeaderValue>) -> Result<Option<&Key>, Error> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let token = header
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Error::Unauthorized("missing `Authorization: Bearer <api key>`".into())
            })?;
        // blake3::Hash equality is constant-time.
        let hash = blake3::hash(token.trim().as_bytes());
        let key = self
            .keys
            .iter()
            .find(|k| k.hash == hash)
            .ok_or_else(|| Error::Unauthorized("unknown API key".into()))?;
        if let Some(l) = &key.limiter {
            if let Err(not_until) = l.check() {
                crate::metrics::quota_rejection(&key.name);
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                return Err(Error::RateLimited { retry_after: wait });
            }
        }
        Ok(Some(key))
    }

    /// The concurrent-jobs quota of a caller.
    pub fn max_concurrent_jobs(&self, caller: &Caller) -> Option<usize> {
        let name = caller.0.as_deref()?;
        self.keys
            .iter()
            .find(|k| k.name == name)?
            .max_concurrent_jobs
    }
}

#[derive(Clone)]
pub struct HttpState {
    pub service: Arc<Service>,
    pub auth: Arc<Auth>,
}

#[derive(OpenApi)]
#[openapi(info(
    title = "tribunal",
    description = "Grades LLM responses against rubrics with a committee of LLM judges."
))]
struct ApiDoc;

/// The router with its OpenAPI document (3.1), generated from the handlers.
pub fn router(state: HttpState, max_body_bytes: usize) -> axum::Router {
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::grade))
        .routes(routes!(handlers::submit_job, handlers::list_jobs))
        .routes(routes!(handlers::get_job, handlers::cancel_job))
        .routes(routes!(handlers::job_results))
        .routes(routes!(handlers::job_summary))
        .routes(routes!(handlers::create_rubric, handlers::list_rubrics))
        .routes(routes!(handlers::validate_rubric))
        .routes(routes!(handlers::get_rubric))
        .routes(routes!(handlers::rubric_versions))
        .routes(routes!(handlers::get_rubric_version))
        .routes(routes!(handlers::judges))
        .routes(routes!(
            handlers::create_calibration_set,
            handlers::list_calibration_sets
        ))
        .routes(routes!(handlers::get_calibration_set))
        .routes(routes!(handlers::add_calibration_labels))
        .routes(routes!(handlers::start_calibration_run))
        .routes(routes!(handlers::get_calibration_run))
        .routes(routes!(handlers::calibration_disagreements))
        .split_for_parts();
    let (open, open_doc) = OpenApiRouter::new()
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(handlers::metrics))
        .split_for_parts();
    doc.merge(open_doc);
    let doc_json = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes));
    axum::Router::new()
        .merge(api)
        .merge(open)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let body = doc_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .layer(axum::middleware::from_fn(observe))
        .with_state(state)
}

async fn authenticate(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    match state
        .auth
        .check(req.headers().get(axum::http::header::AUTHORIZATION))
    {
        Ok(key) => {
            req.extensions_mut()
                .insert(Caller(key.map(|k| k.name.clone())));
            next.run(req).await
        }
        Err(e) => axum::response::IntoResponse::into_response(ApiError(e)),
    }
}

/// Request id in and out, a tracing span, and request metrics by route template.
async fn observe(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    // Route templates (`/v1/jobs/{id}`), never raw paths, so labels stay bounded.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut resp = REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(next.run(req), span),
        )
        .await;
    crate::metrics::http_request(
        &route,
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
