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
    engine_metrics(&state.ledger, &mut text);
    events_metrics(&state, &mut text).await?;
    prometheus_client::encoding::text::encode_eof(&mut text).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}

/// The events follower and the webhook deliveries, read at scrape time: how far the
/// follower is behind the ledger, whether it runs, its errors, and the deliveries
/// waiting (attempts by outcome and their latency are in the registry).
async fn events_metrics(state: &AppState, text: &mut String) -> Result<(), ApiError> {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering;
    let pending: i64 = state
        .db
        .call(|conn| {
            Ok(conn
                .query_row("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'", [], |row| row.get(0))?)
        })
        .await?;
    let follower = &state.webhooks.follower;
    let lag = state.ledger.last_seq().saturating_add(1).saturating_sub(follower.position());
    let gauges = [
        ("portal_events_feed_lag_records", "Ledger records committed that the events follower has not stored", lag),
        ("portal_events_follower_up", "1 while the events follower follows the ledger, 0 after an error", {
            u64::from(follower.running.load(Ordering::Relaxed))
        }),
        ("portal_webhook_deliveries_pending", "Webhook deliveries not yet succeeded or failed", {
            u64::try_from(pending).unwrap_or(0)
        }),
    ];
    for (name, help, value) in gauges {
        let _ = write!(text, "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}\n");
    }
    let (name, errors) = ("portal_events_follower_errors", follower.errors.load(Ordering::Relaxed));
    let _ = write!(
        text,
        "# HELP {name} Errors and panics of the events follower (each followed by a retry).\n\
         # TYPE {name} counter\n{name}_total {errors}\n"
    );
    Ok(())
}

/// The engine's own metrics, read at scrape time: group commits (how many, their sizes,
/// a histogram of how long each write and sync took), the submission queue, the tiers'
/// sizes and the checkpoints (how many, how far behind the newest committed record the
/// newest one is, how long it took, merges, log segments removed).
fn engine_metrics(ledger: &ledger_core::Ledger, text: &mut String) {
    use std::fmt::Write as _;
    let commits = ledger.commit_stats();
    let tiers = ledger.tiers();
    let checkpoints = ledger.checkpoint_stats();
    let last_seq = ledger.last_seq();
    let counters = [
        ("portal_ledger_commit_groups", "Group commits of the ledger's log since the service started", commits.groups),
        ("portal_ledger_commit_records", "Records those group commits held", commits.records),
        ("portal_ledger_checkpoints", "Checkpoints written since the service started", checkpoints.written),
        ("portal_ledger_checkpoint_failures", "Checkpoints that failed (each retried)", checkpoints.failures),
        ("portal_ledger_merges", "Merges of cold-tier runs", checkpoints.merges),
        ("portal_ledger_merge_failures", "Merges that failed (each retried)", checkpoints.merge_failures),
        (
            "portal_ledger_log_segments_removed",
            "Log segments removed once a kept checkpoint covered them",
            checkpoints.segments_removed,
        ),
    ];
    for (name, help, value) in counters {
        let _ = write!(text, "# HELP {name} {help}.\n# TYPE {name} counter\n{name}_total {value}\n");
    }
    let gauges = [
        ("portal_ledger_commit_group_records_max", "Most records one group commit held", commits.group_records_max),
        ("portal_ledger_queue_depth", "Requests waiting for the ledger's sequencer", ledger.queue_depth() as u64),
        ("portal_ledger_hot_transactions", "Transactions in the ledger's hot tier (memory)", tiers.hot_transactions),
        ("portal_ledger_hot_bytes", "Estimated heap bytes of the hot tier", tiers.hot_heap_bytes),
        (
            "portal_ledger_frozen_transactions",
            "Transactions a running checkpoint is writing out",
            tiers.frozen_transactions,
        ),
        ("portal_ledger_cold_runs", "Runs of the cold tier (files)", tiers.cold_runs),
        ("portal_ledger_cold_entries", "Entries in the cold tier's runs", tiers.cold_entries),
        ("portal_ledger_cold_bytes", "Bytes of the cold tier's runs", tiers.cold_bytes),
        ("portal_ledger_cold_filter_bytes", "Memory the runs' Bloom filters hold", tiers.cold_filter_bytes),
        (
            "portal_ledger_cold_id_filter_bytes",
            "Memory the Bloom filter over all runs' ids holds",
            tiers.cold_id_filter_bytes,
        ),
        (
            "portal_ledger_cold_unverified_bytes",
            "Bytes of runs not yet verified since open",
            tiers.cold_unverified_bytes,
        ),
        ("portal_ledger_checkpoint_seq", "Sequence number the newest checkpoint covers", checkpoints.seq),
        (
            "portal_ledger_checkpoint_age_records",
            "Records committed since the newest checkpoint",
            last_seq.saturating_sub(checkpoints.seq),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = write!(text, "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}\n");
    }
    let name = "portal_ledger_checkpoint_duration_seconds";
    let _ = write!(
        text,
        "# HELP {name} How long the newest checkpoint took on its thread.\n# TYPE {name} gauge\n{name} {}\n",
        checkpoints.duration.as_secs_f64()
    );
    let name = "portal_ledger_commit_seconds";
    let _ = write!(
        text,
        "# HELP {name} How long each group commit took to write and sync the log.\n# TYPE {name} histogram\n"
    );
    let mut cumulative = 0;
    for (bound, count) in ledger_core::SYNC_BUCKET_BOUNDS.iter().zip(&commits.sync_buckets) {
        cumulative += count;
        let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = write!(
        text,
        "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_count {}\n{name}_sum {}\n",
        commits.groups, commits.groups, commits.sync_seconds
    );
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
