//! The HTTP API (axum) under `/v1`, plus `/healthz`, `/readyz`, `/metrics` and
//! `/openapi.json` (generated from the handler annotations). Middleware: request ids
//! (`x-request-id` in and out), metrics and tracing per route template, the caller
//! (`service::auth`, the same check gRPC makes), body size limit, a JSON 404 for
//! unknown routes. Handlers only translate.

mod body;
pub mod error;
mod extract;
mod guard;
mod handlers;
mod openapi;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::Error;
use crate::service::Service;
use error::{ApiError, REQUEST_ID};
pub use guard::{ACCEPTED_TYPES, EdgeRules};

#[derive(Clone)]
pub struct HttpState {
    pub service: Arc<Service>,
    /// `server.max_body_bytes`: the largest body read whole (and, for NDJSON job
    /// submissions, the longest line).
    pub max_body_bytes: usize,
    /// Host names served and the body idle timeout (`guard`).
    pub edge: EdgeRules,
}

#[derive(OpenApi)]
#[openapi(
    components(schemas(error::ErrorBody)),
    info(
        title = "tribunal",
        description = "Grades LLM responses against rubrics with a committee of LLM judges."
    )
)]
struct ApiDoc;

/// The router with its OpenAPI document (3.1), generated from the handlers.
pub fn router(state: HttpState) -> axum::Router {
    let max_body_bytes = state.max_body_bytes;
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
        .routes(routes!(
            handlers::add_calibration_labels,
            handlers::label_history
        ))
        .routes(routes!(handlers::undo_calibration_label))
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
    let auth = state.service.auth_enabled();
    let doc_json = serde_json::to_value(&doc)
        .map(|d| openapi::finish(d, auth))
        .and_then(|d| serde_json::to_string_pretty(&d))
        .unwrap_or_else(|_| "{}".to_owned());
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
        .merge(crate::api::ui::router(state.service.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn(observe))
        .with_state(state)
}

/// Turns the `Authorization` header into the `Caller` every `/v1` handler receives,
/// through the service's one transport-neutral check.
async fn authenticate(State(state): State<HttpState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|h| h.to_str().unwrap_or_default());
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let authenticated = state.service.authenticate_from(header, peer).await;
    match authenticated {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => axum::response::IntoResponse::into_response(ApiError(e)),
    }
}

/// A known route called with a method it does not have (axum adds `Allow`).
async fn wrong_method(req: Request) -> Response {
    let mut resp = axum::response::IntoResponse::into_response(ApiError(Error::Invalid(
        crate::rubric::Invalid::one(
            "",
            format!(
                "{} is not a method of {}; see /openapi.json",
                req.method(),
                req.uri().path()
            ),
        ),
    )));
    *resp.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    resp
}

/// Unknown routes get the JSON error body too.
async fn no_route(req: Request) -> ApiError {
    ApiError(Error::NotFound {
        what: "route",
        name: format!("{} {}; see /openapi.json", req.method(), req.uri().path()),
    })
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

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown` is cancelled, then lets the
/// open connections finish. Unlike `axum::serve` it bounds how long a request's
/// headers may take to arrive (`server.header_read_timeout_ms`): a client that sends
/// half a request and stalls is cut off instead of holding its connection forever.
/// Each request carries its peer's `ConnectInfo<SocketAddr>` (failed key guesses are
/// counted per address).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), req)
            });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
                    }
                    return;
                }
                () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
