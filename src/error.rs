//! The crate error vocabulary: `Error` and its transport-neutral `ErrorKind`.
//! No axum or tonic imports here; transports map `ErrorKind` in their own tables.

use crate::rubric::Invalid;

/// What went wrong, independent of transport. Each transport maps every variant
/// exhaustively (no wildcard arm), so adding one forces a decision everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The caller sent something invalid; `field` says where.
    InvalidInput,
    /// A referenced thing does not exist.
    NotFound,
    /// Reading or writing a local file failed.
    Io,
    /// The request conflicts with stored state (e.g. a rubric version with other content).
    Conflict,
    /// Missing or unknown API key.
    Unauthenticated,
    /// The caller's role may not call this operation.
    Forbidden,
    /// A quota was exceeded; retry after the given delay.
    RateLimited,
    /// A body, job or rubric exceeds a configured limit.
    TooLarge,
    /// The request's deadline passed.
    Timeout,
    /// The committee could not reach quorum on any criterion (judges unavailable).
    Unavailable,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests that prove each transport table covers them.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidInput,
        ErrorKind::NotFound,
        ErrorKind::Io,
        ErrorKind::Conflict,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::RateLimited,
        ErrorKind::TooLarge,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{what} not found: {}", clip(name, MAX_ECHO_CHARS))]
    NotFound { what: &'static str, name: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("judges unavailable: {0}")]
    QuorumLost(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("rate limited: retry after {} ms", retry_after.as_millis())]
    RateLimited { retry_after: std::time::Duration },
    #[error("{what} is too large: {detail}")]
    TooLarge {
        what: &'static str,
        detail: String,
        field: Option<String>,
    },
    #[error("deadline exceeded: {0}")]
    Timeout(String),
    #[error("storage unavailable: {0}")]
    Store(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A stored document that no longer decodes: the data needs looking at, waiting
    /// will not help (so this is `internal`, not `unavailable`).
    #[error("stored data cannot be read: {0}")]
    Corrupt(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Io { .. } => ErrorKind::Io,
            Error::QuorumLost(_) | Error::Store(_) => ErrorKind::Unavailable,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Internal(_) | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }

    /// The offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(inv) => inv.first_field(),
            Error::TooLarge { field, .. } => field.as_deref(),
            Error::NotFound { .. }
            | Error::Io { .. }
            | Error::QuorumLost(_)
            | Error::Internal(_)
            | Error::Conflict(_)
            | Error::Unauthenticated(_)
            | Error::Forbidden(_)
            | Error::Corrupt(_)
            | Error::RateLimited { .. }
            | Error::Timeout(_)
            | Error::Store(_) => None,
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::RubricConflict { .. } => Error::Conflict(e.to_string()),
            crate::store::StoreError::Db(_) => Error::Store(e.to_string()),
            crate::store::StoreError::Corrupt(_) => Error::Corrupt(e.to_string()),
        }
    }
}

/// A retry delay in whole seconds, rounded up and at least 1: the unit of HTTP's
/// `Retry-After`, used by both transports.
pub fn retry_after_secs(d: std::time::Duration) -> u64 {
    let up = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    up.max(1)
}

/// Characters of caller-sent text (an id, a name) an error message repeats at most.
pub const MAX_ECHO_CHARS: usize = 128;

/// The longest error message either transport sends (gRPC carries it in the
/// `grpc-message` header); longer ones are clipped, saying how much was left out.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// `text` cut to at most `max` characters (on a character boundary), saying how many
/// were left out: echoed caller input never makes an error message unbounded.
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((cut, _)) => {
            let left = text[cut..].chars().count();
            std::borrow::Cow::Owned(format!("{}... ({left} more characters)", &text[..cut]))
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_cuts_long_text_on_a_char_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc... (1 more characters)");
        assert_eq!(clip("ééé", 1), "é... (2 more characters)");
        let e = Error::NotFound {
            what: "job",
            name: "x".repeat(100_000),
        };
        let m = e.to_string();
        assert!(
            m.len() < 200 && m.ends_with("(99872 more characters)"),
            "{m}"
        );
    }
}
