//! Transactions: payments (sale or authorization) and adjustments, captures, voids and
//! refunds, lookups and lists, all scoped to the caller's client and committed durably
//! through `ledger-core` before a 2xx is answered.

use std::future::IntoFuture;

use crate::db::OptionalExtension;
use crate::params;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger_core::money::{format_minor, parse_minor};
use ledger_core::{Currency, HistoryQuery, Kind, Reject, Tx, TxId, TxOutcome, TxRecord, TxState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit::Entry;
use crate::auth::{Principal, Role};
use crate::db::MetaWrite;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, page_limit};
use crate::idempotency;
use axum::http::Method;
use axum::routing;

/// Longest description kept with a transaction.
const DESCRIPTION_CHARS_MAX: usize = 1000;
/// `tx_` + the 128-bit ledger id in hex.
pub fn tx_id_string(id: TxId) -> String {
    format!("tx_{:032x}", id.0)
}

fn parse_tx_id(s: &str) -> Result<TxId, ApiError> {
    s.strip_prefix("tx_")
        .filter(|h| h.len() == 32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .filter(|&v| v != 0)
        .map(TxId)
        .ok_or_else(|| ApiError::not_found("no such transaction"))
}

pub fn kind_name(kind: u32) -> &'static str {
    match Kind::from_code(kind) {
        Some(Kind::Payment) => "payment",
        Some(Kind::Capture) => "capture",
        Some(Kind::Void) => "void",
        Some(Kind::Refund) => "refund",
        Some(Kind::Adjustment) | None => "adjustment",
    }
}

/// What capture, void and refund share in the document: the errors a follow-up of a
/// payment can answer, and links from the answer to it, its payment and the history.
trait FollowUp {
    fn follow_up(self) -> Self;
}

impl FollowUp for Endpoint {
    fn follow_up(self) -> Self {
        self.errors(&[
            (400, "invalid_amount"),
            (404, "not_found"),
            (422, "payment_not_authorized"),
            (422, "payment_not_captured"),
            (422, "payment_not_voidable"),
            (422, "capture_exceeds_authorized"),
            (422, "refund_exceeds_captured"),
            (422, "currency_mismatch"),
            (422, "amount_out_of_range"),
        ])
        .link("GetTransaction", "get /v1/transactions/{id}", &[("id", "$response.body#/id")])
        .link("GetPayment", "get /v1/transactions/{id}", &[("id", "$response.body#/ref_id")])
        .link("PaymentHistory", "get /v1/transactions/{id}/history", &[("id", "$response.body#/ref_id")])
    }
}

/// A transaction's state, as the API names it (the engine's own names).
pub fn state_name(state: TxState) -> &'static str {
    state.name()
}

/// A transaction's kind, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Payment,
    Capture,
    Void,
    Refund,
    Adjustment,
}

/// A transaction's status, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Voided,
    Applied,
}

/// The transaction object of the HTTP contract; every answer that shows a
/// transaction is serialized from this type, which the OpenAPI document names.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Transaction {
    /// `tx_` and the 128-bit ledger id in hex.
    #[schema(pattern = "^tx_[0-9a-f]{32}$")]
    pub id: String,
    /// Always `transaction`.
    #[schema(example = "transaction")]
    pub object: String,
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    /// Decimal in major units with exactly the currency's minor digits (`"10.00"`).
    #[schema(example = "12.34")]
    pub amount: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: Option<String>,
    /// Of a payment: how much of it is captured.
    pub captured: String,
    /// Of a payment: how much of it is refunded.
    pub refunded: String,
    /// The payment a capture, void or refund belongs to.
    #[schema(pattern = "^tx_[0-9a-f]{32}$")]
    pub ref_id: Option<String>,
    pub device_id: Option<u64>,
    pub batch_id: Option<u64>,
    /// Its position in the ledger.
    pub seq: u64,
    /// Unix seconds of its commit.
    pub created_at: u64,
    pub description: Option<String>,
}

/// The transaction object of a ledger record.
pub fn transaction(r: &TxRecord, description: Option<&str>) -> Transaction {
    let currency = r.tx.currency();
    let money = |v: i64| currency.map_or_else(|| v.to_string(), |c| format_minor(v, c));
    let kind = match Kind::from_code(r.tx.kind) {
        Some(Kind::Payment) => TransactionKind::Payment,
        Some(Kind::Capture) => TransactionKind::Capture,
        Some(Kind::Void) => TransactionKind::Void,
        Some(Kind::Refund) => TransactionKind::Refund,
        Some(Kind::Adjustment) | None => TransactionKind::Adjustment,
    };
    let status = match r.state {
        TxState::Authorized => TransactionStatus::Authorized,
        TxState::Captured => TransactionStatus::Captured,
        TxState::PartiallyRefunded => TransactionStatus::PartiallyRefunded,
        TxState::Refunded => TransactionStatus::Refunded,
        TxState::Voided => TransactionStatus::Voided,
        TxState::Applied => TransactionStatus::Applied,
    };
    Transaction {
        id: tx_id_string(r.tx.id),
        object: "transaction".to_string(),
        kind,
        status,
        amount: money(r.tx.amount),
        currency: currency.map(|c| c.code().to_string()),
        captured: money(r.captured),
        refunded: money(r.refunded),
        ref_id: (!r.tx.ref_id.is_none()).then(|| tx_id_string(r.tx.ref_id)),
        device_id: (r.tx.device_id != 0).then_some(r.tx.device_id),
        batch_id: (r.batch_id != 0).then_some(r.batch_id),
        seq: r.seq,
        created_at: r.timestamp_ns / 1_000_000_000,
        description: description.map(str::to_string),
    }
}

/// [`transaction`] as a JSON value (for answers that embed it).
pub fn tx_json(r: &TxRecord, description: Option<&str>) -> Value {
    serde_json::to_value(transaction(r, description)).unwrap_or(Value::Null)
}

/// A page of transactions.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TransactionList {
    pub data: Vec<Transaction>,
    pub has_more: bool,
    /// Where the next page starts (the last transaction read) when `has_more`.
    #[schema(pattern = "^tx_[0-9a-f]{32}$")]
    pub next_starting_after: Option<String>,
}

/// A payment with its captures, voids and refunds, and the notes on any of them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TransactionHistory {
    /// Always `transaction_history`.
    pub object: String,
    /// The transaction asked for.
    pub transaction: String,
    pub payment: Option<Transaction>,
    /// The payment, then its follow-ups in commit order.
    pub events: Vec<Transaction>,
    /// The notes on any of them, oldest first.
    pub notes: Vec<crate::routes::notes::Note>,
}

fn ledger_reject(reject: Reject, kind: Kind) -> ApiError {
    match (reject, kind) {
        (Reject::ExistsWithDifferentFields, _) => ApiError::conflict(
            "idempotency_error",
            "idempotency_conflict",
            "this Idempotency-Key was used with a different request",
        ),
        (Reject::RefNotFound, _) => ApiError::not_found("no such transaction"),
        (Reject::ExceedsRefAmount, Kind::Refund) => {
            ApiError::refused("refund_exceeds_captured", "refunds would exceed the captured amount")
        }
        (Reject::ExceedsRefAmount, _) => {
            ApiError::refused("capture_exceeds_authorized", "the capture exceeds the authorized amount")
        }
        (Reject::RefWrongState, Kind::Refund) => {
            ApiError::refused("payment_not_captured", "only a captured payment can be refunded")
        }
        (Reject::RefWrongState, Kind::Capture) => {
            ApiError::refused("payment_not_authorized", "only an uncaptured authorization can be captured")
        }
        (Reject::RefWrongState, _) => {
            ApiError::refused("payment_not_voidable", "only an uncaptured authorization can be voided")
        }
        (Reject::CurrencyMismatch, _) => {
            ApiError::refused("currency_mismatch", "the currency differs from the payment's")
        }
        (Reject::InvalidAmount, _) => {
            ApiError::refused("amount_out_of_range", "a total would leave the representable range")
        }
        (Reject::InvalidCurrency, _) => {
            ApiError::invalid("invalid_currency", "unknown currency").with_param("currency")
        }
        (Reject::InvalidKind, _) => ApiError::invalid("invalid_request", "the transaction is malformed"),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    crate::extract::json_object(body)
}

fn currency_arg(code: &str) -> Result<Currency, ApiError> {
    Currency::from_code(code).ok_or_else(|| {
        ApiError::invalid("invalid_currency", "currency must be an upper-case ISO 4217 code").with_param("currency")
    })
}

fn amount_arg(text: &str, currency: Currency) -> Result<i64, ApiError> {
    parse_minor(text, currency).map_err(|e| ApiError::invalid("invalid_amount", e.to_string()).with_param("amount"))
}

/// The audit entry of a money action by `principal`: `transaction.KIND` on the new
/// transaction (or, refused, on the payment it refers to), with amount and currency.
fn money_entry(principal: &Principal, tx: &Tx, on: Option<TxId>, outcome: &'static str, code: Option<&str>) -> Entry {
    let kind = kind_name(tx.kind);
    let currency = tx.currency();
    let mut detail = json!({
        "amount": currency.map_or_else(|| tx.amount.to_string(), |c| format_minor(tx.amount, c)),
        "currency": currency.map(|c| c.code().to_string()),
    });
    if !tx.ref_id.is_none() {
        detail["ref_id"] = json!(tx_id_string(tx.ref_id));
    }
    if let Some(code) = code {
        detail["code"] = json!(code);
    }
    let entry = Entry::by(principal, &format!("transaction.{kind}"), "transaction", "").outcome(outcome).detail(detail);
    match on {
        Some(id) => entry.on("transaction", tx_id_string(id)),
        None => Entry { resource_id: None, ..entry },
    }
}

/// Submits one transaction and answers, applying the Idempotency-Key rules. Every
/// outcome but a replay is audited through the metadata writer's group commit: the
/// new transaction, a refusal by the ledger (422, 404, 409) as `refused`, a ledger
/// that could not commit as `failed`.
#[allow(clippy::too_many_arguments)] // each is one part of the request
async fn commit(
    state: &AppState,
    principal: &Principal,
    client_id: u64,
    headers: &HeaderMap,
    fingerprint: idempotency::Fingerprint,
    make: impl FnOnce(TxId) -> Tx,
    description: Option<String>,
) -> ApiResult<Response> {
    let key = match headers.get("Idempotency-Key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| {
                    ApiError::invalid("invalid_idempotency_key", "Idempotency-Key must be printable ASCII")
                        .with_param("Idempotency-Key")
                })?
                .to_string();
            idempotency::validate_key(&key)?;
            Some(key)
        }
    };
    let client = i64::try_from(client_id).map_err(ApiError::internal)?;
    let _guard = match &key {
        Some(k) => Some(state.key_locks.lock(client, k).await),
        None => None,
    };
    // Only an id the ledger holds can have a stored response or a fingerprint to
    // compare (a response is stored after its commit, a refusal stores none, a row
    // written ahead of an attempt the ledger lacks is judged afresh): a new key goes
    // to the ledger without reading the database first.
    let held =
        key.as_deref().map(|k| idempotency::ledger_id(client, k)).filter(|id| state.ledger.lookup(*id).is_some());
    if let (Some(k), Some(key_id)) = (&key, held) {
        let k = k.clone();
        let stored: Option<(Vec<u8>, u16, String)> = state
            .db
            .call(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT fingerprint, status, response FROM idempotency WHERE client_id = ?1 AND key = ?2",
                    )?
                    .query_row(params![client, k], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .optional()?)
            })
            .await?;
        match stored {
            Some((stored_fingerprint, status, response)) if status != idempotency::AHEAD_STATUS => {
                if !fingerprint.matches(&stored_fingerprint) {
                    return Err(ledger_reject(Reject::ExistsWithDifferentFields, Kind::Payment));
                }
                return Ok(replayed(status, response));
            }
            // Written ahead, its response not (yet) stored: if the ledger committed that
            // attempt, its record as committed is the answer it got.
            Some((stored_fingerprint, _, _)) => {
                if let Some(record) = state.ledger.lookup(key_id) {
                    if !fingerprint.matches(&stored_fingerprint) {
                        return Err(ledger_reject(Reject::ExistsWithDifferentFields, Kind::Payment));
                    }
                    let answer = transaction(&record.as_committed(), description.as_deref());
                    return Ok(replayed(201, serde_json::to_string(&answer).map_err(ApiError::internal)?));
                }
            }
            None => {}
        }
    }
    let id = key.as_deref().map_or_else(idempotency::random_id, |k| idempotency::ledger_id(client, k));
    // A key's fingerprint is written ahead only for a transaction the ledger does not
    // hold yet, so a row written ahead always belongs to the attempt the ledger has. A
    // random id (no key) is new: 128 random bits.
    let fresh = held.is_none();
    let tx = make(id);
    let kind = tx.kind().unwrap_or(Kind::Payment);
    let on_ref = (!tx.ref_id.is_none()).then_some(tx.ref_id);
    let ledger_key = id.0.to_le_bytes().to_vec();
    // The entry this action will have if the ledger commits it, made durable while the
    // ledger commits (audit::pend): the request waits for the longer of the two
    // commits, not for both in a row, and a crash after the answer still finds it.
    let pending = MetaWrite {
        pending_audit: Some((ledger_key.clone(), money_entry(principal, &tx, Some(id), "ok", None))),
        idempotency_ahead: key.as_ref().filter(|_| fresh).map(|k| (client, k.clone(), fingerprint.canonical.clone())),
        ..MetaWrite::default()
    };
    // The description goes to disk before the ledger commit, so a crash between the
    // commit and its answer keeps it (it was lost: issue 15). Not over an existing
    // transaction's: a retry with another body is refused by the ledger below.
    let (ahead, pended) = match &description {
        Some(d) if fresh => {
            let write = MetaWrite { description_ahead: Some((ledger_key.clone(), client, d.clone())), ..pending };
            state.db.write_meta(write).await?;
            (true, state.ledger.submit_async(vec![tx]).await.map(|outcome| (Ok(()), outcome)))
        }
        _ => {
            let pended = state.db.start_meta(pending);
            let (pended, outcome) = tokio::join!(pended.into_future(), state.ledger.submit_async(vec![tx]));
            (false, outcome.map(|outcome| (pended, outcome)))
        }
    };
    // Without a durable pending entry, the chained one is waited for below.
    let (pended, outcome) = match pended {
        Ok((pended, outcome)) => (pended.is_ok(), outcome),
        Err(e) => {
            // Best effort: the storage that failed may be the database's too.
            let entry = money_entry(principal, &tx, on_ref, "failed", Some("ledger_unavailable"));
            let write = MetaWrite { audit: Some(entry), resolved_audit: Some(ledger_key), ..MetaWrite::default() };
            let _ = state.db.write_meta(write).await;
            return Err(ApiError::ledger_unavailable(e));
        }
    };
    let (record, was_there) = match outcome.first() {
        Some(TxOutcome::Committed(r)) => (*r, false),
        // The transaction was committed before, but its response (and audit entry) was
        // not stored (a crash in between): answer from the ledger, which is the truth.
        Some(TxOutcome::Exists(r)) => (*r, true),
        Some(TxOutcome::Rejected(reject)) => {
            // A refusal is answered only once its entry is durable.
            let error = ledger_reject(*reject, kind);
            let entry = money_entry(principal, &tx, on_ref, "refused", Some(error.code));
            let forget = (ahead && *reject != Reject::ExistsWithDifferentFields).then(|| ledger_key.clone());
            let write = MetaWrite {
                audit: Some(entry),
                forget_description: forget,
                forget_idempotency: key.filter(|_| fresh).map(|k| (client, k)),
                resolved_audit: Some(ledger_key),
                ..MetaWrite::default()
            };
            state.db.write_meta(write).await?;
            return Err(error);
        }
        None => return Err(ApiError::internal("the ledger returned no outcome")),
    };
    // A transaction committed before answers as it stood then (a later capture or refund
    // does not change what its creation answered).
    let record = if was_there { record.as_committed() } else { record };
    let body = serde_json::to_string(&transaction(&record, description.as_deref())).map_err(ApiError::internal)?;
    let (stored_body, ledger_id) = (body.clone(), record.tx.id.0.to_le_bytes().to_vec());
    // The answer waits for this write only when it holds what the answer promises: a
    // description not written ahead, or what was written ahead did not commit (the
    // audit entry's pending form, a key's fingerprint). A key's response is not
    // waited for: until it is stored, its row written ahead and the ledger's record
    // answer a replay with the same bytes.
    let wait = (description.is_some() && !ahead) || !pended;
    let write = MetaWrite {
        description: description.map(|d| (ledger_id.clone(), client, d)),
        idempotency: key.map(|k| (client, k, fingerprint.canonical, 201, stored_body)),
        audit: Some(money_entry(principal, &record.tx, Some(record.tx.id), "ok", None)),
        resolved_audit: Some(ledger_id),
        ..MetaWrite::default()
    };
    if wait {
        state.db.write_meta(write).await?;
    } else {
        state.db.write_meta_later(write);
    }
    Ok(if was_there { replayed(201, body) } else { (StatusCode::CREATED, json_response(body)).into_response() })
}

fn json_response(body: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn replayed(status: u16, body: String) -> Response {
    let mut response = json_response(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
    response.headers_mut().insert("Idempotent-Replayed", HeaderValue::from_static("true"));
    response
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTransaction {
    #[schema(schema_with = crate::schema::new_transaction_kind)]
    kind: String,
    #[schema(schema_with = crate::schema::amount)]
    amount: String,
    #[schema(schema_with = crate::schema::currency)]
    currency: String,
    capture: Option<bool>,
    #[schema(minimum = 1)]
    device_id: Option<u64>,
    #[schema(schema_with = crate::schema::description)]
    description: Option<String>,
}

fn description_arg(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d {
        Some(d) if d.chars().count() > DESCRIPTION_CHARS_MAX => Err(ApiError::invalid(
            "invalid_description",
            format!("description is at most {DESCRIPTION_CHARS_MAX} characters"),
        )
        .with_param("description")),
        other => Ok(other),
    }
}

/// Checks that `device` is a registered terminal of the caller's client (404 naming
/// `device_id` otherwise), so reports by device only ever show the client's own.
async fn own_device(state: &AppState, client_id: u64, device: u64) -> ApiResult<()> {
    let not_found = || ApiError::not_found("no such device").with_param("device_id");
    let (client, device) =
        (i64::try_from(client_id).map_err(ApiError::internal)?, i64::try_from(device).map_err(|_| not_found())?);
    let known = state
        .db
        .call(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM devices WHERE id = ?1 AND client_id = ?2")?
                .query_row(params![device, client], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await?;
    if known { Ok(()) } else { Err(not_found()) }
}

/// `POST /v1/transactions`: a payment (sale, or authorization with `capture: false`) or
/// an adjustment.
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    principal.require(Role::Operator)?;
    let client_id = principal.ledger_client()?;
    let req: NewTransaction = json_body(&body)?;
    let currency = currency_arg(&req.currency)?;
    let client = i64::try_from(client_id).map_err(ApiError::internal)?;
    crate::settings::of(&state, client).await?.check_currency(currency)?;
    let amount = amount_arg(&req.amount, currency)?;
    let description = description_arg(req.description)?;
    let device_id = req.device_id.unwrap_or(0);
    if let Some(device) = req.device_id {
        own_device(&state, client_id, device).await?;
    }
    let make: Box<dyn FnOnce(TxId) -> Tx + Send> = match req.kind.as_str() {
        "payment" => {
            if amount <= 0 {
                return Err(
                    ApiError::invalid("invalid_amount", "a payment's amount must be positive").with_param("amount")
                );
            }
            if req.capture.unwrap_or(true) {
                Box::new(move |id| Tx::sale(id, client_id, amount, currency).with_device(device_id))
            } else {
                Box::new(move |id| Tx::authorization(id, client_id, amount, currency).with_device(device_id))
            }
        }
        "adjustment" => {
            if amount == 0 {
                return Err(
                    ApiError::invalid("invalid_amount", "an adjustment's amount must not be zero").with_param("amount")
                );
            }
            if req.capture.is_some() {
                return Err(
                    ApiError::invalid("invalid_request", "capture applies to payments only").with_param("capture")
                );
            }
            Box::new(move |id| Tx::adjustment(id, client_id, amount, currency).with_device(device_id))
        }
        _ => return Err(ApiError::invalid("invalid_kind", "kind is payment or adjustment").with_param("kind")),
    };
    let fingerprint = idempotency::fingerprint("POST", "/v1/transactions", &body);
    commit(&state, &principal, client_id, &headers, fingerprint, make, description).await
}

/// The caller's transaction `id`, as it stands (another client's is not found).
pub fn own_transaction(state: &AppState, client_id: u64, id: &str) -> Result<TxRecord, ApiError> {
    let id = parse_tx_id(id)?;
    state
        .ledger
        .lookup(id)
        .filter(|r| r.tx.client_id == client_id)
        .ok_or_else(|| ApiError::not_found("no such transaction"))
}

/// The body of a capture or a refund; both may be empty (`{}` or nothing): a capture
/// of the whole authorization, a refund of all that is left.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AmountBody {
    /// Decimal in major units; positive.
    #[schema(schema_with = crate::schema::amount)]
    amount: Option<String>,
}

/// `amount` when positive; a zero or negative capture or refund is 400
/// `invalid_amount` (both alike: a zero capture was 422 `amount_out_of_range`).
fn positive(amount: i64, what: &str) -> Result<i64, ApiError> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(ApiError::invalid("invalid_amount", format!("a {what}'s amount must be positive")).with_param("amount"))
    }
}

/// `POST /v1/transactions/{id}/capture`.
async fn capture(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    follow_up(&state, &principal, id, "capture", &headers, body).await
}

/// `POST /v1/transactions/{id}/void`.
async fn void(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    follow_up(&state, &principal, id, "void", &headers, body).await
}

/// `POST /v1/transactions/{id}/refunds`.
async fn refund(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    follow_up(&state, &principal, id, "refunds", &headers, body).await
}

/// A capture, void or refund of the caller's payment `id`.
async fn follow_up(
    state: &AppState,
    principal: &Principal,
    id: String,
    action: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    principal.require(Role::Operator)?;
    let client_id = principal.ledger_client()?;
    let payment = own_transaction(state, client_id, &id)?;
    let currency = payment.tx.currency().ok_or_else(|| ApiError::internal("a stored payment has a currency"))?;
    let req: AmountBody = json_body(&body)?;
    let amount = req.amount.as_deref().map(|a| amount_arg(a, currency)).transpose()?;
    let payment_id = payment.tx.id;
    let make: Box<dyn FnOnce(TxId) -> Tx + Send> = match action {
        "capture" => {
            let amount = positive(amount.unwrap_or(payment.tx.amount), "capture")?;
            Box::new(move |id| Tx::capture(id, payment_id, client_id, amount, currency))
        }
        "void" => {
            if amount.is_some() {
                return Err(ApiError::invalid("invalid_request", "a void carries no amount").with_param("amount"));
            }
            Box::new(move |id| Tx::void(id, payment_id, client_id, currency))
        }
        "refunds" => {
            // Without an amount: all that is left to refund. When nothing is (not
            // captured, or refunded already), the ledger is asked for the payment's
            // amount, so it refuses with its own code and the refusal is audited.
            let left = payment.captured.saturating_sub(payment.refunded);
            let amount = match amount {
                Some(amount) => positive(amount, "refund")?,
                None if left > 0 => left,
                None => payment.tx.amount.max(1),
            };
            Box::new(move |id| Tx::refund(id, payment_id, client_id, amount, currency))
        }
        _ => return Err(ApiError::not_found("no such route")),
    };
    let path = format!("/v1/transactions/{id}/{action}");
    commit(state, principal, client_id, headers, idempotency::fingerprint("POST", &path, &body), make, None).await
}

async fn description_of(state: &AppState, id: TxId) -> ApiResult<Option<String>> {
    let key = id.0.to_le_bytes().to_vec();
    state
        .db
        .call(move |conn| {
            Ok(conn
                .query_row("SELECT description FROM tx_meta WHERE ledger_id = ?1", [key], |row| row.get(0))
                .optional()?
                .flatten())
        })
        .await
}

/// `GET /v1/transactions/{id}`.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Transaction>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    let record = own_transaction(&state, client_id, &id)?;
    let description = description_of(&state, record.tx.id).await?;
    Ok(Json(transaction(&record, description.as_deref())))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    starting_after: Option<String>,
    /// `newest` (the default) or `oldest` first.
    order: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    device_id: Option<u64>,
    currency: Option<String>,
    /// A date (`2026-11-26`, UTC), an RFC 3339 time or Unix seconds; inclusive.
    from: Option<String>,
    /// Exclusive, except that a date includes that whole day.
    to: Option<String>,
    /// Decimal amounts in `currency`, inclusive.
    amount_min: Option<String>,
    amount_max: Option<String>,
}

/// Records a filtered list reads at most per request: a rare match over a long history
/// answers a short page with `has_more` and a `next_starting_after` to resume from,
/// rather than scanning everything in one request.
pub const LIST_SCAN_MAX: usize = 100_000;
/// Records read from the ledger per step of a list's scan.
const LIST_SCAN_PAGE: usize = 1024;

/// What a list keeps.
#[derive(Debug, Default)]
struct ListFilter {
    status: Option<TxState>,
    kind: Option<u32>,
    device_id: Option<u64>,
    currency: Option<Currency>,
    from_ns: u64,
    to_ns: Option<u64>,
    amount_min: Option<i64>,
    amount_max: Option<i64>,
}

impl ListFilter {
    fn parse(q: &ListQuery) -> Result<ListFilter, ApiError> {
        const STATES: [TxState; 6] = [
            TxState::Authorized,
            TxState::Captured,
            TxState::PartiallyRefunded,
            TxState::Refunded,
            TxState::Voided,
            TxState::Applied,
        ];
        const KINDS: [Kind; 5] = [Kind::Payment, Kind::Capture, Kind::Void, Kind::Refund, Kind::Adjustment];
        let status = q
            .status
            .as_deref()
            .map(|s| {
                STATES.into_iter().find(|st| state_name(*st) == s).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_status",
                        "status is authorized, captured, partially_refunded, refunded, voided or applied",
                    )
                    .with_param("status")
                })
            })
            .transpose()?;
        let kind = q
            .kind
            .as_deref()
            .map(|k| {
                KINDS.into_iter().find(|kind| kind_name(*kind as u32) == k).map(|kind| kind as u32).ok_or_else(|| {
                    ApiError::invalid("invalid_kind", "kind is payment, capture, void, refund or adjustment")
                        .with_param("kind")
                })
            })
            .transpose()?;
        let currency = q.currency.as_deref().map(currency_arg).transpose()?;
        let amount = |text: &Option<String>, param: &'static str| -> Result<Option<i64>, ApiError> {
            let Some(text) = text.as_deref() else { return Ok(None) };
            let currency = currency.ok_or_else(|| {
                ApiError::invalid("missing_field", format!("{param} needs currency")).with_param("currency")
            })?;
            parse_minor(text, currency)
                .map(Some)
                .map_err(|e| ApiError::invalid("invalid_amount", e.to_string()).with_param(param))
        };
        let secs_to_ns = |secs: i64| u64::try_from(secs.max(0)).unwrap_or(0).saturating_mul(1_000_000_000);
        let from = q.from.as_deref().map(|f| crate::routes::reports::parse_moment(f, false, "from")).transpose()?;
        let to = q.to.as_deref().map(|t| crate::routes::reports::parse_moment(t, true, "to")).transpose()?;
        // As the reports answer it: an empty or reversed period is a mistake, not a list.
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(ApiError::invalid("invalid_period", "from must be before to").with_param("from"));
        }
        Ok(ListFilter {
            status,
            kind,
            device_id: q.device_id,
            currency,
            from_ns: from.map_or(0, secs_to_ns),
            to_ns: to.map(secs_to_ns),
            amount_min: amount(&q.amount_min, "amount_min")?,
            amount_max: amount(&q.amount_max, "amount_max")?,
        })
    }

    fn keeps(&self, r: &TxRecord) -> bool {
        self.status.is_none_or(|s| r.state == s)
            && self.kind.is_none_or(|k| r.tx.kind == k)
            && self.device_id.is_none_or(|d| r.tx.device_id == d)
            && self.currency.is_none_or(|c| r.tx.currency() == Some(c))
            && r.timestamp_ns >= self.from_ns
            && self.amount_min.is_none_or(|min| r.tx.amount >= min)
            && self.amount_max.is_none_or(|max| r.tx.amount <= max)
    }
}

/// `GET /v1/transactions?limit=&starting_after=&order=&status=&kind=&device_id=&currency=&from=&to=&amount_min=&amount_max=`:
/// newest first (`order=oldest` for oldest first). The period is paged by the engine
/// (`Ledger::history` by commit time), so a list of last week reads last week only.
/// `next_starting_after` is where the next page starts when `has_more` (the last
/// transaction read, which a filtered page may not show).
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<ListQuery>,
) -> ApiResult<Json<TransactionList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.ledger_client()?;
    let limit = page_limit(query.limit)?;
    let newest_first = match query.order.as_deref() {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(_) => {
            return Err(ApiError::invalid("invalid_order", "order is newest or oldest").with_param("order"));
        }
    };
    let filter = ListFilter::parse(&query)?;
    // The cursor: seqs after it in the list's order.
    let mut cursor = match query.starting_after.as_deref() {
        None => None,
        Some(id) => Some(own_transaction(&state, client_id, id).map_err(|e| e.with_param("starting_after"))?.seq),
    };
    let times = filter.from_ns..filter.to_ns.unwrap_or(u64::MAX);
    let (mut records, mut scanned, mut last_read, mut exhausted) = (Vec::new(), 0usize, None, false);
    'scan: while records.len() <= limit {
        if scanned >= LIST_SCAN_MAX {
            break;
        }
        let seqs = match (newest_first, cursor) {
            (true, Some(before)) => 1..before,
            (true, None) => 1..u64::MAX,
            (false, Some(after)) => after.saturating_add(1)..u64::MAX,
            (false, None) => 1..u64::MAX,
        };
        let page_limit = LIST_SCAN_PAGE.min(LIST_SCAN_MAX - scanned);
        let page = state
            .ledger
            .history(client_id, &HistoryQuery { seqs, times: times.clone(), newest_first, limit: page_limit });
        let Some(last) = page.last() else {
            exhausted = true;
            break;
        };
        cursor = Some(last.seq);
        for r in page {
            scanned += 1;
            if filter.keeps(&r) {
                records.push(r);
                if records.len() > limit {
                    break 'scan;
                }
            }
            last_read = Some(r.tx.id);
        }
    }
    let has_more = records.len() > limit || !exhausted;
    records.truncate(limit);
    let next = match (has_more, records.len() == limit) {
        (false, _) => None,
        (true, true) => records.last().map(|r| r.tx.id),
        (true, false) => last_read,
    };
    let mut data = Vec::with_capacity(records.len());
    for r in &records {
        data.push(transaction(r, description_of(&state, r.tx.id).await?.as_deref()));
    }
    Ok(Json(TransactionList { data, has_more, next_starting_after: next.map(tx_id_string) }))
}

/// The captures, voids and refunds of `payment`, in commit order: from the engine's
/// index of refs (`Ledger::follow_ups`), so a payment from long ago costs what its own
/// follow-ups cost, not a scan of everything after it.
pub fn follow_ups(state: &AppState, payment: &TxRecord) -> Vec<TxRecord> {
    state.ledger.follow_ups(payment.tx.id)
}

/// `GET /v1/transactions/{id}/history`: the payment the transaction belongs to, its
/// captures, voids and refunds in commit order, and the notes on any of them.
async fn history(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TransactionHistory>> {
    let client_id = principal.ledger_client()?;
    let record = own_transaction(&state, client_id, &id)?;
    let payment = if record.tx.ref_id.is_none() {
        record
    } else {
        state.ledger.lookup(record.tx.ref_id).ok_or_else(|| ApiError::internal("a follow-up without its payment"))?
    };
    let mut family = vec![payment];
    if Kind::from_code(payment.tx.kind) == Some(Kind::Payment) {
        family.extend(follow_ups(&state, &payment));
    }
    let ids: Vec<String> = family.iter().map(|r| tx_id_string(r.tx.id)).collect();
    let keys: Vec<Vec<u8>> = family.iter().map(|r| r.tx.id.0.to_le_bytes().to_vec()).collect();
    let client = i64::try_from(client_id).map_err(ApiError::internal)?;
    let (descriptions, notes) = state
        .db
        .call(move |conn| {
            let mut descriptions = Vec::with_capacity(keys.len());
            for key in &keys {
                descriptions.push(
                    conn.query_row("SELECT description FROM tx_meta WHERE ledger_id = ?1", [key], |row| {
                        row.get::<_, Option<String>>(0)
                    })
                    .optional()?
                    .flatten(),
                );
            }
            let mut notes = Vec::new();
            for id in ids {
                let resource = crate::routes::notes::Resource { kind: "transaction", id };
                notes.extend(crate::routes::notes::notes_of(conn, client, &resource, 0, 1000)?);
            }
            notes.sort_by_key(|n| n.id);
            Ok((descriptions, notes))
        })
        .await?;
    let events: Vec<Transaction> =
        family.iter().zip(&descriptions).map(|(r, d)| transaction(r, d.as_deref())).collect();
    Ok(Json(TransactionHistory {
        object: "transaction_history".to_string(),
        transaction: tx_id_string(record.tx.id),
        payment: events.first().cloned(),
        events,
        notes,
    }))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/transactions",
            Access::member(Role::Operator),
            "Create a payment (sale or authorization) or an adjustment; Idempotency-Key makes it idempotent",
            routing::post(create),
        )
        .body::<NewTransaction>()
        .idempotent()
        .returns::<Transaction>()
        .errors(&[
            (400, "invalid_amount"),
            (400, "invalid_currency"),
            (400, "currency_not_allowed"),
            (400, "invalid_kind"),
            (400, "invalid_description"),
            (400, "missing_field"),
            (404, "not_found"),
            (422, "amount_out_of_range"),
        ])
        .link("GetTransaction", "get /v1/transactions/{id}", &[("id", "$response.body#/id")])
        .link("CaptureTransaction", "post /v1/transactions/{id}/capture", &[("id", "$response.body#/id")])
        .link("VoidTransaction", "post /v1/transactions/{id}/void", &[("id", "$response.body#/id")])
        .link("RefundTransaction", "post /v1/transactions/{id}/refunds", &[("id", "$response.body#/id")])
        .link("TransactionHistory", "get /v1/transactions/{id}/history", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/transactions",
            Access::member(Role::Viewer),
            "List transactions, newest first (order=oldest for oldest first), filtered by status, kind, device, currency, period and amount",
            routing::get(list),
        )
        .returns::<TransactionList>()
        .errors(&[
            (400, "invalid_status"),
            (400, "invalid_kind"),
            (400, "invalid_currency"),
            (400, "invalid_amount"),
            (400, "invalid_period"),
            (400, "invalid_order"),
        ])
        .query(&[
            "limit",
            "starting_after",
            "order",
            "status",
            "kind",
            "device_id",
            "currency",
            "from",
            "to",
            "amount_min",
            "amount_max",
        ]),
        Endpoint::new(
            Method::GET,
            "/v1/transactions/{id}",
            Access::member(Role::Viewer),
            "Get a transaction",
            routing::get(get),
        )
        .returns::<Transaction>(),
        Endpoint::new(
            Method::GET,
            "/v1/transactions/{id}/history",
            Access::member(Role::Viewer),
            "A payment with its captures, voids, refunds and notes",
            routing::get(history),
        )
        .returns::<TransactionHistory>(),
        Endpoint::new(
            Method::POST,
            "/v1/transactions/{id}/capture",
            Access::member(Role::Operator),
            "Capture an authorization (all of it unless amount is given)",
            routing::post(capture),
        )
        .optional_body::<AmountBody>()
        .idempotent()
        .returns::<Transaction>()
        .follow_up(),
        Endpoint::new(
            Method::POST,
            "/v1/transactions/{id}/void",
            Access::member(Role::Operator),
            "Void an uncaptured authorization",
            routing::post(void),
        )
        .idempotent()
        .returns::<Transaction>()
        .follow_up(),
        Endpoint::new(
            Method::POST,
            "/v1/transactions/{id}/refunds",
            Access::member(Role::Operator),
            "Refund part or all of a captured payment (all that is left unless amount is given)",
            routing::post(refund),
        )
        .optional_body::<AmountBody>()
        .idempotent()
        .returns::<Transaction>()
        .follow_up(),
    ]
}
