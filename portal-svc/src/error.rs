//! The one error shape every response uses:
//! `{"error": {"type", "code", "message", "param"?}}` with the status the HTTP contract
//! gives each class (400 invalid input, 401 credentials, 403 forbidden, 404 not found,
//! 409 conflict, 422 refused by the ledger, 429 rate limited, 503 unavailable).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to the caller. Internal details are logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// The offending parameter: a body field, a query parameter or a header.
    pub param: Option<std::borrow::Cow<'static, str>>,
    /// Seconds to answer in `Retry-After` (throttled answers, 429).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, code, message: message.into(), param: None, retry_after_secs: None }
    }

    /// 400: malformed or invalid input.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    /// 401: no or bad credentials.
    pub fn unauthenticated(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", code, message)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "permission_error", "forbidden", message)
    }

    /// 404: not found (also another client's object).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", "not_found", message)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(kind: &'static str, code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, kind, code, message)
    }

    /// 415: a body that is not JSON where JSON is expected.
    pub fn unsupported_media_type() -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
        )
        .with_param("Content-Type")
    }

    /// 422: a well-formed request whose content cannot be accepted (an unknown event
    /// type, a webhook url the SSRF guard refuses), with the validation errors' body.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request_error", code, message)
    }

    /// 422: a valid request that the ledger refuses.
    pub fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "ledger_error", code, message)
    }

    /// 429 with `Retry-After: retry_after_secs` (at least 1).
    pub fn throttled(code: &'static str, message: impl Into<String>, retry_after_secs: i64) -> ApiError {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", code, message);
        e.retry_after_secs = Some(u64::try_from(retry_after_secs.max(1)).unwrap_or(1));
        e
    }

    /// 503: the ledger could not commit (its outcome is unknown; never a false 2xx).
    /// The engine's detail (file paths, OS errors) goes to the log only. A node of a
    /// replicated ledger that is not (or no longer) its leader refused the write
    /// before judging it ([`ledger_core::SubmitError::NotLeader`], also inside a
    /// `CloseBatchError`): that is [`ApiError::no_leader`], nothing changed.
    pub fn ledger_unavailable(detail: impl std::fmt::Display + 'static) -> ApiError {
        let any: &dyn std::any::Any = &detail;
        let not_leader = matches!(any.downcast_ref(), Some(ledger_core::SubmitError::NotLeader))
            || matches!(
                any.downcast_ref(),
                Some(ledger_core::CloseBatchError::Submit(ledger_core::SubmitError::NotLeader))
            );
        if not_leader {
            return ApiError::no_leader();
        }
        tracing::error!(%detail, "the ledger could not commit");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "ledger_unavailable",
            "the ledger could not commit this request and its outcome is unknown; \
             retrying with the same Idempotency-Key (or transaction id) is safe",
        )
    }

    /// 503 `no_leader`: in cluster mode, no leader of the replicated ledger can be
    /// reached (an election is under way, or a majority of the nodes is down), or this
    /// node lost its leadership before it judged the write. Nothing changed; the same
    /// request may be sent again (with the same Idempotency-Key).
    pub fn no_leader() -> ApiError {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "no_leader",
            "no leader of the replicated ledger can be reached; nothing changed, retry shortly \
             (with the same Idempotency-Key)",
        );
        e.retry_after_secs = Some(1);
        e
    }

    /// 500: a bug or an unexpected failure; the detail goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error", "internal error")
    }

    /// The same error naming the offending parameter.
    pub fn with_param(mut self, param: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
        self.param = Some(param.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "type": self.kind, "code": self.code, "message": self.message });
        if let Some(param) = self.param {
            error["param"] = json!(param);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<crate::sql::Error> for ApiError {
    fn from(e: crate::sql::Error) -> ApiError {
        ApiError::internal(e)
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
