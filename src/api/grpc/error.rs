//! The `ErrorKind -> gRPC code` table and the metadata that carries an error's kind
//! and field. This is the only place gRPC status codes are chosen for domain errors;
//! it must not decide anything about HTTP.

use tonic::Code;
use tonic::metadata::MetadataValue;

use crate::{Error, ErrorKind};

/// Metadata key naming the offending request field, when there is one.
pub const FIELD_KEY: &str = "x-tribunal-field";
/// Metadata key carrying `ErrorKind::as_str`.
pub const KIND_KEY: &str = "x-tribunal-kind";
/// Metadata key carrying the whole seconds to wait after RESOURCE_EXHAUSTED (as HTTP's
/// `Retry-After`).
pub const RETRY_AFTER_KEY: &str = "retry-after";

/// The gRPC code for an error kind. Exhaustive on purpose: a new kind must be
/// mapped here before the crate compiles.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Io => Code::Internal,
        ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::RateLimited => Code::ResourceExhausted,
        // A job or rubric over a configured size limit is a request the caller must
        // change, not a value outside a valid iteration range (OutOfRange is meant
        // for reads past the end, where retrying later might succeed). Clients
        // that tell limits from other bad input read `x-tribunal-kind`.
        ErrorKind::TooLarge => Code::InvalidArgument,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a transport returns for a domain error: the mapped code, the error's
/// display text, and its kind and field as metadata.
pub fn status(e: &Error) -> tonic::Status {
    let kind = e.kind();
    let message = e.to_string();
    let mut status = tonic::Status::new(
        code(kind),
        crate::error::clip(&message, crate::error::MAX_MESSAGE_CHARS),
    );
    let md = status.metadata_mut();
    md.insert(KIND_KEY, MetadataValue::from_static(kind.as_str()));
    // A field path with characters that are not valid in a header value is dropped
    // from the metadata; it still appears in the message.
    if let Some(field) = e.field() {
        if let Ok(v) = MetadataValue::try_from(&*crate::error::clip(field, 256)) {
            md.insert(FIELD_KEY, v);
        }
    }
    if let Error::RateLimited { retry_after } = e {
        md.insert(
            RETRY_AFTER_KEY,
            MetadataValue::from(crate::error::retry_after_secs(*retry_after)),
        );
    }
    status
}

/// An `InvalidArgument` status for a request field whose content cannot be read,
/// with the same metadata as domain errors.
pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> tonic::Status {
    let text = format!("{field}: {message}");
    let mut status =
        tonic::Status::invalid_argument(crate::error::clip(&text, crate::error::MAX_MESSAGE_CHARS));
    let md = status.metadata_mut();
    md.insert(
        KIND_KEY,
        MetadataValue::from_static(ErrorKind::InvalidInput.as_str()),
    );
    if let Ok(v) = MetadataValue::try_from(field) {
        md.insert(FIELD_KEY, v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rubric::Invalid;

    fn one_per_kind() -> Vec<(Error, ErrorKind, Code)> {
        vec![
            (
                Error::Invalid(Invalid::one("criteria[0].points", "must be a number")),
                ErrorKind::InvalidInput,
                Code::InvalidArgument,
            ),
            (
                Error::NotFound {
                    what: "job",
                    name: "j1".into(),
                },
                ErrorKind::NotFound,
                Code::NotFound,
            ),
            (
                Error::Io {
                    path: "x.jsonl".into(),
                    source: std::io::Error::other("disk gone"),
                },
                ErrorKind::Io,
                Code::Internal,
            ),
            (
                Error::Conflict("rubric r@1 exists with other content".into()),
                ErrorKind::Conflict,
                Code::AlreadyExists,
            ),
            (
                Error::Unauthenticated("missing API key".into()),
                ErrorKind::Unauthenticated,
                Code::Unauthenticated,
            ),
            (
                Error::Forbidden("annotators may not grade".into()),
                ErrorKind::Forbidden,
                Code::PermissionDenied,
            ),
            (
                Error::Corrupt("stored report r1".into()),
                ErrorKind::Internal,
                Code::Internal,
            ),
            (
                Error::RateLimited {
                    retry_after: std::time::Duration::from_millis(250),
                },
                ErrorKind::RateLimited,
                Code::ResourceExhausted,
            ),
            (
                Error::TooLarge {
                    what: "job",
                    detail: "3 items; the limit is 2".into(),
                    field: Some("items".into()),
                },
                ErrorKind::TooLarge,
                Code::InvalidArgument,
            ),
            (
                Error::Timeout("grade".into()),
                ErrorKind::Timeout,
                Code::DeadlineExceeded,
            ),
            (
                Error::QuorumLost("2 of 3 judges failed".into()),
                ErrorKind::Unavailable,
                Code::Unavailable,
            ),
            (
                Error::Store("database is locked".into()),
                ErrorKind::Unavailable,
                Code::Unavailable,
            ),
            (
                Error::Internal("bug".into()),
                ErrorKind::Internal,
                Code::Internal,
            ),
        ]
    }

    #[test]
    fn every_kind_maps_to_its_code() {
        let cases = one_per_kind();
        for (e, kind, expected) in &cases {
            assert_eq!(e.kind(), *kind, "{e}");
            let s = status(e);
            assert_eq!(s.code(), *expected, "{kind:?}");
            assert_eq!(s.message(), e.to_string());
            assert_eq!(
                s.metadata().get(KIND_KEY).and_then(|v| v.to_str().ok()),
                Some(kind.as_str())
            );
            assert_eq!(
                s.metadata().get(FIELD_KEY).and_then(|v| v.to_str().ok()),
                e.field()
            );
        }
        // Every kind is covered by at least one case.
        for kind in ErrorKind::ALL {
            assert!(cases.iter().any(|(_, k, _)| *k == kind), "{kind:?}");
        }
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        use std::time::Duration;
        for (wait, secs) in [
            (Duration::from_millis(1), "1"),
            (Duration::from_millis(250), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1500), "2"),
            (Duration::from_secs(30), "30"),
        ] {
            let s = status(&Error::RateLimited { retry_after: wait });
            assert_eq!(
                s.metadata()
                    .get(RETRY_AFTER_KEY)
                    .and_then(|v| v.to_str().ok()),
                Some(secs),
                "{wait:?}"
            );
        }
        assert!(
            status(&Error::Internal("x".into()))
                .metadata()
                .get(RETRY_AFTER_KEY)
                .is_none()
        );
    }

    #[test]
    fn field_travels_as_metadata() {
        let s = status(&Error::Invalid(Invalid::one(
            "items[2].response",
            "missing",
        )));
        assert_eq!(
            s.metadata().get(FIELD_KEY).and_then(|v| v.to_str().ok()),
            Some("items[2].response")
        );
        let s = status(&Error::Internal("bug".into()));
        assert!(s.metadata().get(FIELD_KEY).is_none());
    }

    #[test]
    fn invalid_field_names_the_field() {
        let s = invalid_field("item_json", "not valid JSON: EOF");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "item_json: not valid JSON: EOF");
        assert_eq!(
            s.metadata().get(FIELD_KEY).and_then(|v| v.to_str().ok()),
            Some("item_json")
        );
    }
}
