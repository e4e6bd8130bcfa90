//! Settlement batches and balances, scoped to the caller's client.

use axum::Json;
use axum::extract::State;
use ledger_core::money::format_minor;
use ledger_core::{BatchSummary, CloseBatchError, Currency};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, page_limit};
use axum::http::Method;
use axum::routing;

/// Whether a batch takes transactions still.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Open,
    Closed,
}

/// The batch summary object of the HTTP contract; every answer that shows a batch is
/// serialized from it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Batch {
    pub id: u64,
    /// Always `batch`.
    pub object: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
    pub status: BatchStatus,
    /// Its counts and totals, as the ledger keeps them.
    #[serde(flatten)]
    pub totals: BatchTotals,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Unix seconds.
    pub opened_at: u64,
    /// Unix seconds; `null` while open.
    pub closed_at: Option<u64>,
}

/// The batch object of a ledger summary.
pub fn batch(b: &BatchSummary) -> Batch {
    let money = |v: i64| format_minor(v, b.currency);
    Batch {
        id: b.batch_id,
        object: "batch".to_string(),
        currency: b.currency.code().to_string(),
        status: if b.is_open() { BatchStatus::Open } else { BatchStatus::Closed },
        totals: BatchTotals {
            payment_count: b.payment_count,
            payment_total: money(b.payment_total),
            refund_count: b.refund_count,
            refund_total: money(b.refund_total),
            adjustment_count: b.adjustment_count,
            adjustment_total: money(b.adjustment_total),
            net: money(b.net),
        },
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        opened_at: b.opened_ns / 1_000_000_000,
        closed_at: (!b.is_open()).then_some(b.closed_ns / 1_000_000_000),
    }
}

/// [`batch`] as a JSON value (for answers that embed it).
pub fn batch_json(b: &BatchSummary) -> Value {
    serde_json::to_value(batch(b)).unwrap_or(Value::Null)
}

/// A page of batches.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BatchList {
    pub data: Vec<Batch>,
    pub has_more: bool,
    /// Where the next page starts when `has_more`.
    pub next_starting_after: Option<u64>,
}

/// A batch's counts and totals: part of every [`Batch`], and what a reconciliation
/// recomputes from the batch's transactions. Amounts are decimals in major units.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BatchTotals {
    pub payment_count: u64,
    pub payment_total: String,
    pub refund_count: u64,
    pub refund_total: String,
    pub adjustment_count: u64,
    pub adjustment_total: String,
    /// Payments less refunds plus adjustments.
    pub net: String,
}

/// A batch's totals against the sum of its transactions.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    /// Always `reconciliation`.
    pub object: String,
    pub batch: Batch,
    pub transactions: BatchTotals,
    /// Whether every count and total agrees.
    pub matches: bool,
}

/// One currency's balance.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CurrencyBalance {
    /// ISO 4217 code.
    pub currency: String,
    pub captured: String,
    pub refunded: String,
    pub adjusted: String,
    pub net: String,
    /// The net of closed batches.
    pub settled_net: String,
    /// The net of the open batch.
    pub open_net: String,
}

/// The client's balances, one per currency it has used.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Balance {
    /// Always `balance`.
    pub object: String,
    pub data: Vec<CurrencyBalance>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    #[schema(schema_with = crate::schema::currency)]
    currency: String,
}

/// `POST /v1/batches/close`: closes the open batch in a currency; 404 when it is empty.
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<CloseRequest>,
) -> ApiResult<Json<Batch>> {
    principal.require(Role::Operator)?;
    let client_id = principal.ledger_client()?;
    let currency = Currency::from_code(&req.currency).ok_or_else(|| {
        ApiError::invalid("invalid_currency", "currency must be an upper-case ISO 4217 code").with_param("currency")
    })?;
    let entry = |outcome: &'static str, detail: Value| {
        crate::audit::Entry::by(&principal, "batch.close", "batch", "").outcome(outcome).detail(detail)
    };
    let (result, audit) = match state.ledger.close_batch_async(client_id, currency).await {
        Ok(summary) => {
            let body = batch(&summary);
            let audit =
                entry("ok", json!({ "currency": body.currency, "net": body.totals.net })).on("batch", summary.batch_id);
            (Ok(Json(body)), audit)
        }
        Err(CloseBatchError::Empty) => (
            Err(ApiError::not_found("the open batch holds no transaction")),
            entry("refused", json!({ "currency": currency.code(), "code": "not_found" })),
        ),
        Err(e) => (
            Err(ApiError::ledger_unavailable(e)),
            entry("failed", json!({ "currency": currency.code(), "code": "ledger_unavailable" })),
        ),
    };
    let written = state.db.write_meta(crate::db::MetaWrite { audit: Some(audit), ..Default::default() }).await;
    if result.is_ok() {
        written?;
    }
    result
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    starting_after: Option<u64>,
    /// `open` (one per currency in use) or `closed`.
    status: Option<String>,
}

/// Batches a `status=closed` list reads at most per request (then `has_more` and
/// `next_starting_after` say where to resume).
const LIST_SCAN_MAX: usize = 100_000;

/// `GET /v1/batches?limit=&starting_after=&status=`: oldest first.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<ListQuery>,
) -> ApiResult<Json<BatchList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    let limit = page_limit(query.limit)?;
    if let Some(after) = query.starting_after
        && state.ledger.batch(after).is_none_or(|b| b.client_id != client_id)
    {
        return Err(crate::extract::unknown_cursor());
    }
    let after = query.starting_after.unwrap_or(0);
    let (mut batches, exhausted, mut last_read) = match query.status.as_deref() {
        None => (state.ledger.batches(client_id, after, limit + 1), true, None),
        Some("open") => {
            let mut open: Vec<BatchSummary> = state
                .ledger
                .balances(client_id)
                .into_iter()
                .filter_map(|(currency, _)| state.ledger.open_batch(client_id, currency))
                .filter(|b| b.batch_id > after)
                .collect();
            open.sort_unstable_by_key(|b| b.batch_id);
            (open, true, None)
        }
        Some("closed") => {
            let (mut found, mut cursor, mut scanned, mut exhausted) = (Vec::new(), after, 0usize, false);
            while found.len() <= limit && scanned < LIST_SCAN_MAX {
                let page = state.ledger.batches(client_id, cursor, 1024);
                let Some(last) = page.last() else {
                    exhausted = true;
                    break;
                };
                cursor = last.batch_id;
                scanned += page.len();
                found.extend(page.into_iter().filter(|b| !b.is_open()));
            }
            (found, exhausted, Some(cursor))
        }
        Some(_) => return Err(ApiError::invalid("invalid_status", "status is open or closed").with_param("status")),
    };
    let has_more = batches.len() > limit || !exhausted;
    batches.truncate(limit);
    if batches.len() == limit {
        last_read = batches.last().map(|b| b.batch_id);
    }
    let next_starting_after = if has_more { last_read.or_else(|| batches.last().map(|b| b.batch_id)) } else { None };
    Ok(Json(BatchList { data: batches.iter().map(batch).collect(), has_more, next_starting_after }))
}

fn own_batch(state: &AppState, client_id: u64, id: u64) -> Result<BatchSummary, ApiError> {
    state.ledger.batch(id).filter(|b| b.client_id == client_id).ok_or_else(|| ApiError::not_found("no such batch"))
}

/// `GET /v1/batches/{id}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Batch>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    Ok(Json(batch(&own_batch(&state, client_id, id)?)))
}

/// `GET /v1/batches/{id}/reconciliation`: the batch's totals against the sum of the
/// transactions that count in it, recomputed from the ledger's records.
pub async fn reconciliation(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<Reconciliation>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    let summary = own_batch(&state, client_id, id)?;
    let (mut counts, mut totals) = ([0u64; 3], [0i128; 3]);
    let mut after = summary.first_seq.saturating_sub(1);
    loop {
        let page = state.ledger.list(client_id, after, 1000);
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in page.iter().filter(|r| r.batch_id == id && r.seq <= summary.last_seq) {
            let slot = match r.tx.kind() {
                Some(ledger_core::Kind::Payment | ledger_core::Kind::Capture) => 0,
                Some(ledger_core::Kind::Refund) => 1,
                Some(ledger_core::Kind::Adjustment) => 2,
                _ => continue,
            };
            // A captured authorization carries the capture's batch; the capture counts.
            if r.tx.flags != 0 {
                continue;
            }
            counts[slot] += 1;
            totals[slot] += i128::from(r.tx.amount);
        }
        if after >= summary.last_seq {
            break;
        }
    }
    let net = totals[0] - totals[1] + totals[2];
    let matches = counts == [summary.payment_count, summary.refund_count, summary.adjustment_count]
        && totals
            == [
                i128::from(summary.payment_total),
                i128::from(summary.refund_total),
                i128::from(summary.adjustment_total),
            ]
        && net == i128::from(summary.net);
    let money = |v: i128| crate::routes::reports::format_minor_wide(v, summary.currency);
    Ok(Json(Reconciliation {
        object: "reconciliation".to_string(),
        batch: batch(&summary),
        transactions: BatchTotals {
            payment_count: counts[0],
            payment_total: money(totals[0]),
            refund_count: counts[1],
            refund_total: money(totals[1]),
            adjustment_count: counts[2],
            adjustment_total: money(totals[2]),
            net: money(net),
        },
        matches,
    }))
}

/// `GET /v1/balance`: one entry per currency the client has used.
pub async fn balance(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Balance>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    let data = state
        .ledger
        .balances(client_id)
        .into_iter()
        .map(|(currency, b)| {
            let money = |v: i64| format_minor(v, currency);
            CurrencyBalance {
                currency: currency.code().to_string(),
                captured: money(b.captured),
                refunded: money(b.refunded),
                adjusted: money(b.adjusted),
                net: money(b.net),
                settled_net: money(b.settled_net),
                open_net: money(b.open_net),
            }
        })
        .collect();
    Ok(Json(Balance { object: "balance".to_string(), data }))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/batches/close",
            Access::member(Role::Operator),
            "Close the open batch of a currency",
            routing::post(close),
        )
        .answers(200)
        .body::<CloseRequest>()
        .returns::<Batch>()
        .errors(&[(400, "invalid_currency"), (404, "not_found")])
        .link("GetBatch", "get /v1/batches/{id}", &[("id", "$response.body#/id")])
        .link("BatchReconciliation", "get /v1/batches/{id}/reconciliation", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/batches",
            Access::member(Role::Viewer),
            "List batches, oldest first, optionally only the open (one per currency) or the closed ones",
            routing::get(list),
        )
        .returns::<BatchList>()
        .errors(&[(400, "invalid_status")])
        .query(&["limit", "starting_after", "status"]),
        Endpoint::new(
            Method::GET,
            "/v1/batches/{id}",
            Access::member(Role::Viewer),
            "Get a batch summary",
            routing::get(get),
        )
        .returns::<Batch>(),
        Endpoint::new(
            Method::GET,
            "/v1/batches/{id}/reconciliation",
            Access::member(Role::Viewer),
            "A batch's totals against the sum of its transactions",
            routing::get(reconciliation),
        )
        .returns::<Reconciliation>(),
        Endpoint::new(
            Method::GET,
            "/v1/balance",
            Access::member(Role::Viewer),
            "Balances per currency",
            routing::get(balance),
        )
        .returns::<Balance>(),
    ]
}
