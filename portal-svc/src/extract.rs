//! Request extractors that answer malformed input with the API's error body.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; a missing or malformed one is a 400 with the error body, never axum's
/// plain-text rejection.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "invalid_request_error",
                code: "body_too_large",
                message: format!("the request body exceeds {} bytes", crate::app::BODY_BYTES_MAX),
                param: None,
                retry_after_secs: None,
            }),
            Err(rejection) => Err(ApiError::invalid("invalid_json", rejection.body_text())),
        }
    }
}

/// Largest page a list returns.
pub const PAGE_MAX: usize = 100;
/// Page size when the caller names none.
pub const PAGE_DEFAULT: usize = 25;

/// Checks a list's `limit` (default [`PAGE_DEFAULT`], 1 to [`PAGE_MAX`]).
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        limit @ 1..=PAGE_MAX => Ok(limit),
        _ => Err(ApiError::invalid("invalid_limit", format!("limit is 1 to {PAGE_MAX}")).with_param("limit")),
    }
}

/// `{"data": rows[..limit], "has_more"}` from up to `limit + 1` rows.
pub fn page(mut data: Vec<serde_json::Value>, limit: usize) -> serde_json::Value {
    let has_more = data.len() > limit;
    data.truncate(limit);
    serde_json::json!({ "data": data, "has_more": has_more })
}

/// The SQL `LIMIT` that fetches one row beyond a page, to tell whether there is more.
pub fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
}

/// Path parameters; a malformed one (say, a non-numeric id) is a 400 with the error body.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid("invalid_path", rejection.body_text())),
        }
    }
}
