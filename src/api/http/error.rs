//! `ErrorKind` -> HTTP status, in one exhaustive table, and the JSON error body
//! `{"error": {"kind", "message", "field", "request_id"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind};

/// The error body every failed request gets.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub kind: ErrorKind,
    pub message: String,
    /// The offending field's path (`items[2].response`), when the error is about one.
    pub field: Option<String>,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: Option<String>,
}

pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Io => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

tokio::task_local! {
    /// The current request's id, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error on its way to the client. Logged once, here, at the edge.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl From<crate::rubric::Invalid> for ApiError {
    fn from(e: crate::rubric::Invalid) -> Self {
        ApiError(Error::Invalid(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let kind = e.kind();
        let code = status(kind);
        let request_id = current_request_id();
        if code.is_server_error() {
            // The request span carries `request_id`; repeating it here printed it twice.
            tracing::error!(kind = kind.as_str(), error = %e, "request failed");
        } else {
            tracing::debug!(kind = kind.as_str(), error = %e, "request rejected");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                kind,
                message: crate::error::clip(&e.to_string(), crate::error::MAX_MESSAGE_CHARS)
                    .into_owned(),
                field: e.field().map(str::to_owned),
                request_id,
            },
        };
        let mut resp = (code, axum::Json(body)).into_response();
        match &e {
            Error::RateLimited { retry_after } => {
                let secs = crate::error::retry_after_secs(*retry_after);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Error::Unauthenticated(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::config::LogFormat;

    /// A log sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    /// A failed request's log line names its request id once (from the request
    /// span), in both formats, and has no colour codes when not at a terminal.
    #[test]
    fn a_failed_request_logs_its_id_once_without_colour() {
        for format in [LogFormat::Pretty, LogFormat::Json] {
            let sink = Sink::default();
            let subscriber = tracing_subscriber::registry().with(crate::telemetry::log_layer(
                format,
                sink.clone(),
                false,
            ));
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!(
                    "request",
                    request_id = "req-7f3a",
                    method = "POST",
                    route = "/v1/grade"
                );
                let _entered = span.enter();
                let _ = ApiError(Error::Internal("boom".into())).into_response();
            });
            let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            assert!(out.contains("request failed"), "{format:?}: {out}");
            assert_eq!(out.matches("req-7f3a").count(), 1, "{format:?}: {out}");
            assert!(!out.contains('\u{1b}'), "{format:?}: {out}");
        }
    }
}
