//! Liveness, the OpenAPI document and the metrics.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::error::ApiError;

/// `GET /healthz`: 200 while the service accepts connections.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /openapi.json`: the OpenAPI 3 document, built from the route table.
async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        crate::api::openapi(&crate::app::endpoints())
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}

/// `GET /metrics`: Prometheus text format. Aggregates only (requests and latencies
/// per route, ledger counters): nothing per client, nothing secret.
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
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
        Endpoint::new(Method::GET, "/healthz", Access::Public, "Liveness", get(healthz)),
        Endpoint::new(Method::GET, "/openapi.json", Access::Public, "This API's OpenAPI 3 document", get(openapi)),
        Endpoint::new(Method::GET, "/metrics", Access::Public, "Prometheus metrics (aggregates only)", get(metrics)),
    ]
}
