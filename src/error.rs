//! The crate error vocabulary: `Error` and its transport-neutral `ErrorKind`.
//! No axum or tonic imports here; transports map `ErrorKind` in their own tables.

use crate::rubric::Invalid;

/// What went wrong, independent of transport. Each transport maps every variant
/// exhaustively (no wildcard arm), so adding one forces a decision everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid; `field` says where.
    InvalidInput,
    /// A referenced thing does not exist.
    NotFound,
    /// Reading or writing a local file failed.
    Io,
    /// The committee could not reach quorum on any criterion (judges unavailable).
    Unavailable,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Io => "io",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("{what} not found: {name}")]
    NotFound { what: &'static str, name: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("judges unavailable: {0}")]
    QuorumLost(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Io { .. } => ErrorKind::Io,
            Error::QuorumLost(_) => ErrorKind::Unavailable,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The offending field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(inv) => inv.first_field(),
            Error::NotFound { .. }
            | Error::Io { .. }
            | Error::QuorumLost(_)
            | Error::Internal(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
