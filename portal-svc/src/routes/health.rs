//! Liveness, the OpenAPI document and the metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use subtle::ConstantTimeEq;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::error::ApiError;

/// `GET /healthz`'s answer: the text `ok`.
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = "ok")]
pub struct Health(pub String);

/// The OpenAPI 3 document (`GET /openapi.json`).
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = Object)]
pub struct OpenApiDocument(pub serde_json::Value);

/// The metrics in the OpenMetrics text format.
#[derive(Debug, utoipa::ToSchema)]
pub struct MetricsText(pub String);

/// `GET /healthz`: 200 while the service accepts connections.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /openapi.json`: the OpenAPI 3 document, built from the route table.
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        serde_json::to_string_pretty(&crate::api::openapi_json(&crate::app::endpoints()))
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}

/// The environment variable that holds the token `GET /metrics` requires.
pub const METRICS_TOKEN_ENV: &str = "PORTAL_METRICS_TOKEN";
/// Shortest metrics token accepted (a guessable one would make the protection moot).
pub const METRICS_TOKEN_CHARS_MIN: usize = 16;

/// `GET /metrics`: Prometheus text format. Aggregates only (requests and latencies
/// per route, ledger counters): nothing per client, nothing secret; still platform-wide
/// volumes, so only for operators: it needs `Authorization: Bearer` with the token of
/// [`METRICS_TOKEN_ENV`] (compared in constant time; a user's token or API key is not
/// it), and without one configured it is off (404).
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    let Some(expected) = state.metrics_token.as_ref() else {
        return Err(ApiError::not_found(format!("metrics are off: start the service with {METRICS_TOKEN_ENV} set")));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token)
        .unwrap_or_default();
    if !bool::from(blake3::hash(sent.as_bytes()).as_bytes().ct_eq(expected.as_slice())) {
        return Err(ApiError::unauthenticated("invalid_metrics_token", "send Authorization: Bearer METRICS_TOKEN"));
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode_registry(&mut text, &state.metrics.registry)
        .map_err(ApiError::internal)?;
    let ledger = [
        (
            "portal_ledger_last_seq",
            "gauge",
            "Sequence number of the newest committed ledger record",
            state.ledger.last_seq(),
        ),
        (
            "portal_ledger_transactions",
            "gauge",
            "Transactions held by the ledger",
            u64::try_from(state.ledger.transaction_count()).unwrap_or(u64::MAX),
        ),
    ];
    for (name, kind, help, value) in ledger {
        text.push_str(&format!("# HELP {name} {help}.\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    prometheus_client::encoding::text::encode_eof(&mut text).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/healthz", Access::Public, "Liveness", get(healthz))
            .returns_as::<Health>("text/plain"),
        Endpoint::new(Method::GET, "/openapi.json", Access::Public, "This API's OpenAPI 3 document", get(openapi))
            .returns::<OpenApiDocument>(),
        Endpoint::new(
            Method::GET,
            "/metrics",
            Access::Public,
            "Prometheus metrics (aggregates only), with the metrics token as Bearer",
            get(metrics),
        )
        .returns_as::<MetricsText>("application/openmetrics-text")
        .errors(&[(401, "invalid_metrics_token"), (404, "not_found")]),
    ]
}
