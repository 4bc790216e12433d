//! Query and path extractors whose rejections are tribunal's JSON error body (400
//! naming the parameter) instead of axum's plain-text answers.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::error::Error;
use crate::rubric::Invalid;

/// `Query<T>` with a JSON 400 on a malformed query string.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|r| {
                ApiError(Error::Invalid(Invalid::one(
                    "query",
                    format!("{}; see the parameters in /openapi.json", r.body_text()),
                )))
            })
    }
}

/// `Path<T>` with a JSON 400 on a path segment of the wrong type.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|r| ApiError(Error::Invalid(Invalid::one("path", r.body_text()))))
    }
}
