//! The edge rules every HTTP request passes before routing, in one place:
//! - `Host` must name this server (loopback, or `server.allowed_hosts`): on a keyless
//!   server always, with keys once `allowed_hosts` is set (`service::auth::host_allowed`,
//!   the check gRPC makes on `:authority`). Blocks DNS rebinding.
//! - On a keyless server a `/v1` POST must say it carries JSON, NDJSON or CSV
//!   (`Content-Type`), none of which a cross-site page can send without a CORS
//!   preflight, which this server never grants; a body-less POST (an undo) must not
//!   come from another site's page (`Origin`). PUT, PATCH and DELETE always need a
//!   preflight. The UI's forms keep their CSRF token.
//! - A declared `Content-Length` over `server.max_body_bytes` is refused from the
//!   header, before any of the body is read (streamed uploads excepted).
//! - A request body that pauses longer than `server.body_idle_timeout_ms` fails.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::error::ApiError;
use crate::error::Error;
use crate::rubric::Invalid;

/// What the guard needs from the config.
#[derive(Clone, Debug)]
pub struct EdgeRules {
    /// `server.allowed_hosts`.
    pub allowed_hosts: Arc<[String]>,
    /// `server.body_idle_timeout_ms`.
    pub body_idle_timeout: Duration,
}

impl Default for EdgeRules {
    fn default() -> Self {
        EdgeRules {
            allowed_hosts: Arc::from(Vec::new()),
            body_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The body types a keyless server's `/v1` writes accept (parameters such as
/// `charset` allowed).
pub const ACCEPTED_TYPES: [&str; 3] = ["application/json", "application/x-ndjson", "text/csv"];

/// Types whose bodies are read as they arrive, line by line, rather than whole.
const STREAMED_TYPES: [&str; 2] = ["application/x-ndjson", "text/csv"];

/// Probes that must answer whatever name a load balancer or orchestrator uses.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// Whether the request says it has no body: no `Transfer-Encoding`, and a
/// `Content-Length` of 0 or none.
fn declares_no_body(headers: &header::HeaderMap) -> bool {
    !headers.contains_key(header::TRANSFER_ENCODING)
        && headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == "0"))
}

/// Refuses a request whose `Origin` is not this server's own (`http(s)://` + `Host`);
/// a request without `Origin` (not from a browser page) passes.
fn same_origin(headers: &header::HeaderMap) -> Result<(), Box<Response>> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let own = !host.is_empty()
        && (origin.strip_prefix("http://") == Some(host)
            || origin.strip_prefix("https://") == Some(host));
    if own {
        return Ok(());
    }
    Err(Box::new(
        ApiError(Error::Forbidden(format!(
            "a cross-site request (Origin {}) to a server without API keys is refused; configure API keys to serve other sites' pages",
            crate::error::clip(origin, 64)
        )))
        .into_response(),
    ))
}

/// `type/subtype` of a `Content-Type` value, lower-cased, without parameters.
fn essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub async fn guard(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    match check(&state, &req) {
        Ok(()) => {}
        Err(resp) => return *resp,
    }
    let idle = state.edge.body_idle_timeout;
    let req = req.map(|b| Body::new(tower_http::timeout::TimeoutBody::new(idle, b)));
    next.run(req).await
}

fn check(state: &HttpState, req: &Request) -> Result<(), Box<Response>> {
    let path = req.uri().path();
    let keyless = !state.service.auth_enabled();
    if !OPEN_PATHS.contains(&path) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        crate::service::auth::host_allowed(host, keyless, &state.edge.allowed_hosts)
            .map_err(|e| Box::new(ApiError(e).into_response()))?;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| essence(v.to_str().unwrap_or_default()));
    let streamed = (req.method() == Method::POST && path == "/v1/jobs")
        || content_type
            .as_deref()
            .is_some_and(|t| STREAMED_TYPES.contains(&t));
    if !streamed {
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            let max = state.max_body_bytes;
            if len > u64::try_from(max).unwrap_or(u64::MAX) {
                return Err(Box::new(
                    ApiError(Error::TooLarge {
                        what: "request body",
                        detail: format!(
                            "Content-Length {len} is over server.max_body_bytes ({max}); send less, or NDJSON to POST /v1/jobs"
                        ),
                        field: None,
                    })
                    .into_response(),
                ));
            }
        }
    }
    // POST is the one write a cross-site page can send without a CORS preflight (PUT,
    // PATCH and DELETE always need one, which this server never grants); a method the
    // route does not have gets its 405 from the router.
    if keyless && req.method() == Method::POST && path.starts_with("/v1/") {
        if content_type.is_none() && declares_no_body(req.headers()) {
            // A body-less action (an undo): no type to check, so a browser's request
            // must come from this server's own pages (browsers send `Origin` on
            // every POST; tools send none).
            return same_origin(req.headers());
        }
        let ok = content_type
            .as_deref()
            .is_some_and(|t| ACCEPTED_TYPES.contains(&t));
        if !ok {
            let sent = content_type.map_or_else(
                || "no Content-Type".to_owned(),
                |t| format!("Content-Type {}", crate::error::clip(&t, 64)),
            );
            let mut resp = ApiError(Error::Invalid(Invalid::one(
                "content-type",
                format!(
                    "{sent}: a server without API keys takes {} bodies only (so that a web page cannot send it requests); set the Content-Type header",
                    ACCEPTED_TYPES.join(", ")
                ),
            )))
            .into_response();
            *resp.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Err(Box::new(resp));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::essence;

    #[test]
    fn content_type_essence() {
        for (value, expected) in [
            ("application/json", "application/json"),
            ("Application/JSON; charset=utf-8", "application/json"),
            (" text/csv ;header=present", "text/csv"),
            ("", ""),
        ] {
            assert_eq!(essence(value), expected, "{value}");
        }
    }
}
