//! Webhook endpoints of the caller's client (client admins): create (the signing
//! secret shown once), list, get, disable, rotate the secret, the delivery log with
//! every attempt, and manual redelivery. The deliveries themselves are made by
//! `webhooks::delivery`, off the request path.

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing;
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::{now_ms, now_secs};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, fetch_limit, page_limit};
use crate::webhooks::{address, new_secret, secret_aad};

/// Endpoints one client may have (active or not): bounds the deliveries one event
/// makes and the worker's lanes.
pub const ENDPOINTS_PER_CLIENT_MAX: i64 = 16;
/// Attempts listed with each delivery of the log, newest last.
const ATTEMPTS_LISTED_MAX: i64 = 50;

/// A webhook endpoint.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    pub id: i64,
    /// Always `webhook_endpoint`.
    pub object: String,
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// `false` once disabled (`DELETE`): nothing more is delivered to it.
    pub active: bool,
    /// The signing secret (`whsec_...`): only in the answers of its creation and of a
    /// rotation, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A page of endpoints, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
    pub has_more: bool,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet delivered: waiting for its turn or for its next attempt.
    Pending,
    /// A 2xx answered.
    Succeeded,
    /// Every attempt failed.
    Failed,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    /// Unix milliseconds when it ended.
    pub at_ms: i64,
    /// The receiver's HTTP status; `null` when there was none.
    pub status_code: Option<u16>,
    /// Why there was no status (a timeout, a refused address, a connection error).
    pub error: Option<String>,
    pub latency_ms: i64,
}

/// A delivery of one event to one endpoint, with its attempts.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// Always `webhook_delivery`.
    pub object: String,
    pub endpoint_id: i64,
    #[schema(pattern = "^evt_[0-9a-f]{24}$")]
    pub event_id: String,
    pub event_type: String,
    pub event_seq: i64,
    /// Whether a manual redelivery made it.
    pub redelivery: bool,
    pub status: DeliveryStatus,
    pub attempt_count: i64,
    /// Unix milliseconds of the next attempt while pending.
    pub next_attempt_ms: Option<i64>,
    /// The attempts, oldest first (the latest 50).
    pub attempts: Vec<DeliveryAttempt>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A page of deliveries, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookDeliveryList {
    pub data: Vec<WebhookDelivery>,
    pub has_more: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// Where events are POSTed: http or https; loopback and private addresses are
    /// refused unless the service runs with `--allow-private-webhooks`.
    #[schema(schema_with = crate::schema::webhook_url)]
    url: String,
    /// Event types to receive.
    #[schema(schema_with = crate::schema::event_types)]
    events: Vec<String>,
}

const ENDPOINT_COLUMNS: &str = "id, url, events, active, created_at, updated_at";

fn endpoint_row(row: &Row<'_>) -> crate::db::Result<WebhookEndpoint> {
    let events: String = row.get(2)?;
    Ok(WebhookEndpoint {
        id: row.get(0)?,
        object: "webhook_endpoint".to_string(),
        url: row.get(1)?,
        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_string).collect(),
        active: row.get(3)?,
        secret: None,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

/// The client's endpoint `id` (another client's is not found).
fn load(conn: &Connection, client_id: i64, id: i64) -> Result<WebhookEndpoint, ApiError> {
    conn.query_row(
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?1 AND client_id = ?2"),
        params![id, client_id],
        endpoint_row,
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found("no such webhook endpoint"))
}

/// The event types asked for, each known, without repeats, in the contract's order.
fn event_types_arg(events: &[String]) -> Result<Vec<&'static str>, ApiError> {
    if events.is_empty() {
        return Err(
            ApiError::unprocessable("invalid_event_type", "events needs at least one event type").with_param("events")
        );
    }
    if let Some(unknown) = events.iter().find(|e| !crate::events::TYPES.contains(&e.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::unprocessable(
            "invalid_event_type",
            format!("unknown event type {shown:?}; the types are {}", crate::events::TYPES.join(", ")),
        )
        .with_param("events"));
    }
    Ok(crate::events::TYPES.into_iter().filter(|t| events.iter().any(|e| e == t)).collect())
}

/// `url` as an endpoint may have it, or the 400/422 that says why not.
fn url_arg(url: &str, allow_private: bool) -> Result<String, ApiError> {
    match address::check_url(url.trim(), allow_private) {
        Ok(parsed) => Ok(parsed.to_string()),
        Err(address::UrlError::Malformed) => Err(ApiError::invalid(
            "invalid_url",
            format!("url must be an absolute http or https url of at most {} characters", address::URL_CHARS_MAX),
        )
        .with_param("url")),
        Err(e) => Err(ApiError::unprocessable("url_not_allowed", e.to_string()).with_param("url")),
    }
}

/// Seals a new secret for endpoint `id` and stores it; returns the secret in clear.
fn store_new_secret(conn: &Connection, state: &AppState, id: i64) -> Result<String, ApiError> {
    let secret = new_secret();
    let sealed = state.keyring.seal_with(&secret_aad(id), &secret);
    conn.execute(
        "UPDATE webhook_endpoints SET secret = ?1, updated_at = ?2 WHERE id = ?3",
        params![sealed, now_secs(), id],
    )?;
    Ok(secret)
}

/// `POST /v1/webhook-endpoints` (client admins): 201 with the secret, shown only here.
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewWebhookEndpoint>,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let url = url_arg(&req.url, state.webhooks.config.allow_private)?;
    let events = event_types_arg(&req.events)?.join(",");
    let db_state = state.clone();
    let endpoint = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let count: i64 =
                tx.query_row("SELECT count(*) FROM webhook_endpoints WHERE client_id = ?1", [client_id], |row| {
                    row.get(0)
                })?;
            if count >= ENDPOINTS_PER_CLIENT_MAX {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "too_many_endpoints",
                    format!("a client has at most {ENDPOINTS_PER_CLIENT_MAX} webhook endpoints"),
                ));
            }
            let now = now_secs();
            // The secret is sealed under the row's id, known once the row exists: the
            // placeholder never leaves this transaction.
            let id: i64 = tx.query_row(
                "INSERT INTO webhook_endpoints (client_id, url, events, secret, active, created_at, updated_at)
                 VALUES (?1, ?2, ?3, '', 1, ?4, ?4)
                 RETURNING id",
                params![client_id, url, events, now],
                |row| row.get(0),
            )?;
            let secret = store_new_secret(&tx, &db_state, id)?;
            audit::append(
                &tx,
                &[audit::Entry::by(&principal, "webhook_endpoint.create", "webhook_endpoint", id)
                    .detail(serde_json::json!({ "url": url, "events": events }))],
            )?;
            let mut endpoint = load(&tx, client_id, id)?;
            tx.commit()?;
            endpoint.secret = Some(secret);
            Ok(endpoint)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(endpoint)))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
}

/// `GET /v1/webhook-endpoints` (client admins): newest first.
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<WebhookEndpointList>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = query.starting_after {
                load(conn, client_id, after).map_err(|_| crate::extract::unknown_cursor())?;
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE client_id = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![client_id, query.starting_after.unwrap_or(i64::MAX), fetch_limit(limit)],
                endpoint_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    let (data, has_more) = crate::extract::page(data, limit);
    Ok(Json(WebhookEndpointList { data, has_more }))
}

/// `GET /v1/webhook-endpoints/{id}` (client admins).
async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WebhookEndpoint>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    Ok(Json(state.db.call(move |conn| load(conn, client_id, id)).await?))
}

/// `DELETE /v1/webhook-endpoints/{id}` (client admins): disables it. Nothing more is
/// delivered to it, pending deliveries included; the endpoint and its delivery log
/// stay readable.
async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WebhookEndpoint>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let endpoint = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let before = load(&tx, client_id, id)?;
            if before.active {
                tx.execute(
                    "UPDATE webhook_endpoints SET active = 0, updated_at = ?1 WHERE id = ?2",
                    params![now_secs(), id],
                )?;
                audit::record(&tx, &principal, "webhook_endpoint.delete", &format!("webhook_endpoint:{id}"))?;
            }
            let endpoint = load(&tx, client_id, id)?;
            tx.commit()?;
            Ok(endpoint)
        })
        .await?;
    state.webhooks.wake.notify_one();
    Ok(Json(endpoint))
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret` (client admins): a new secret,
/// shown only in this answer; deliveries from now on are signed with it.
async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<WebhookEndpoint>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let db_state = state.clone();
    let endpoint = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            load(&tx, client_id, id)?;
            let secret = store_new_secret(&tx, &db_state, id)?;
            audit::record(&tx, &principal, "webhook_endpoint.rotate_secret", &format!("webhook_endpoint:{id}"))?;
            let mut endpoint = load(&tx, client_id, id)?;
            tx.commit()?;
            endpoint.secret = Some(secret);
            Ok(endpoint)
        })
        .await?;
    Ok(Json(endpoint))
}

#[derive(Debug, Deserialize)]
pub struct DeliveryQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
    status: Option<String>,
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, ev.id, ev.type, d.event_seq, d.redelivery, d.status, d.attempts,
     d.next_attempt_ms, d.created_at, d.updated_at";

fn delivery_row(row: &Row<'_>) -> crate::db::Result<WebhookDelivery> {
    let status = match row.get::<_, String>(6)?.as_str() {
        "succeeded" => DeliveryStatus::Succeeded,
        "failed" => DeliveryStatus::Failed,
        _ => DeliveryStatus::Pending,
    };
    Ok(WebhookDelivery {
        id: row.get(0)?,
        object: "webhook_delivery".to_string(),
        endpoint_id: row.get(1)?,
        event_id: row.get(2)?,
        event_type: row.get(3)?,
        event_seq: row.get(4)?,
        redelivery: row.get(5)?,
        status,
        attempt_count: row.get(7)?,
        next_attempt_ms: (status == DeliveryStatus::Pending).then_some(row.get(8)?),
        attempts: Vec::new(),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

/// Fills in each delivery's attempts.
fn with_attempts(conn: &Connection, deliveries: &mut [WebhookDelivery]) -> crate::db::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, status_code, error, latency_ms FROM (
             SELECT id, at_ms, status_code, error, latency_ms FROM webhook_attempts WHERE delivery_id = ?1
             ORDER BY id DESC LIMIT ?2) AS newest ORDER BY id",
    )?;
    for delivery in deliveries {
        delivery.attempts = stmt
            .query_map(params![delivery.id, ATTEMPTS_LISTED_MAX], |row| {
                Ok(DeliveryAttempt {
                    at_ms: row.get(0)?,
                    status_code: row.get(1)?,
                    error: row.get(2)?,
                    latency_ms: row.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

fn load_delivery(conn: &Connection, endpoint_id: i64, id: i64) -> Result<WebhookDelivery, ApiError> {
    let mut delivery = conn
        .query_row(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events ev ON ev.seq = d.event_seq
                 WHERE d.id = ?1 AND d.endpoint_id = ?2"
            ),
            params![id, endpoint_id],
            delivery_row,
        )
        .optional()?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    with_attempts(conn, std::slice::from_mut(&mut delivery))?;
    Ok(delivery)
}

/// `GET /v1/webhook-endpoints/{id}/deliveries?limit=&starting_after=&status=` (client
/// admins): the delivery log, newest first, each with its attempts.
async fn deliveries(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    if let Some(status) = &query.status
        && !["pending", "succeeded", "failed"].contains(&status.as_str())
    {
        return Err(ApiError::invalid("invalid_status", "status is pending, succeeded or failed").with_param("status"));
    }
    let data = state
        .db
        .call(move |conn| {
            load(conn, client_id, id)?;
            if let Some(after) = query.starting_after {
                load_delivery(conn, id, after).map_err(|_| crate::extract::unknown_cursor())?;
            }
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events ev ON ev.seq = d.event_seq
                 WHERE d.endpoint_id = ?1 AND d.id < ?2 AND (d.status = ?3 OR ?3 IS NULL)
                 ORDER BY d.id DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![id, query.starting_after.unwrap_or(i64::MAX), query.status, fetch_limit(limit)],
                delivery_row,
            )?;
            let mut data = rows.collect::<Result<Vec<_>, _>>()?;
            with_attempts(conn, &mut data)?;
            Ok(data)
        })
        .await?;
    let (data, has_more) = crate::extract::page(data, limit);
    Ok(Json(WebhookDeliveryList { data, has_more }))
}

/// `POST /v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver` (client
/// admins): sends the delivery's event to the endpoint again, the same event id, as a
/// new delivery (with its own attempts and retries) that does not wait for the
/// endpoint's first deliveries. 409 `endpoint_disabled` for a disabled endpoint.
async fn redeliver(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, delivery_id)): ApiPath<(i64, i64)>,
) -> ApiResult<(StatusCode, Json<WebhookDelivery>)> {
    principal.require_user(Role::ClientAdmin)?;
    let client_id = principal.own_client()?;
    let delivery = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let endpoint = load(&tx, client_id, id)?;
            let original = load_delivery(&tx, id, delivery_id)?;
            if !endpoint.active {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "endpoint_disabled",
                    "the webhook endpoint is disabled",
                ));
            }
            let now = now_secs();
            let new_id: i64 = tx.query_row(
                "INSERT INTO webhook_deliveries (endpoint_id, event_seq, redelivery, status, attempts, next_attempt_ms,
                                                 created_at, updated_at)
                 VALUES (?1, ?2, 1, 'pending', 0, ?3, ?4, ?4)
                 RETURNING id",
                params![id, original.event_seq, now_ms(), now],
                |row| row.get(0),
            )?;
            audit::append(
                &tx,
                &[audit::Entry::by(&principal, "webhook_delivery.redeliver", "webhook_delivery", new_id)
                    .detail(serde_json::json!({ "endpoint_id": id, "of": delivery_id, "event": original.event_id }))],
            )?;
            let delivery = load_delivery(&tx, id, new_id)?;
            tx.commit()?;
            Ok(delivery)
        })
        .await?;
    state.webhooks.wake.notify_one();
    Ok((StatusCode::CREATED, Json(delivery)))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    let admins = Access::users(Role::ClientAdmin);
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/webhook-endpoints",
            admins,
            "Create a webhook endpoint; its signing secret is shown only in this answer",
            routing::post(create),
        )
        .body::<NewWebhookEndpoint>()
        .returns::<WebhookEndpoint>()
        .errors(&[
            (400, "invalid_url"),
            (422, "invalid_event_type"),
            (422, "url_not_allowed"),
            (409, "too_many_endpoints"),
        ])
        .link("GetWebhookEndpoint", "get /v1/webhook-endpoints/{id}", &[("id", "$response.body#/id")])
        .link(
            "WebhookDeliveries",
            "get /v1/webhook-endpoints/{id}/deliveries",
            &[("id", "$response.body#/id")],
        ),
        Endpoint::new(
            Method::GET,
            "/v1/webhook-endpoints",
            admins,
            "List the client's webhook endpoints, newest first",
            routing::get(list),
        )
        .returns::<WebhookEndpointList>()
        .query(&["limit", "starting_after"]),
        Endpoint::new(Method::GET, "/v1/webhook-endpoints/{id}", admins, "Get a webhook endpoint", routing::get(get))
            .returns::<WebhookEndpoint>(),
        Endpoint::new(
            Method::DELETE,
            "/v1/webhook-endpoints/{id}",
            admins,
            "Disable a webhook endpoint: nothing more is delivered to it; it and its log stay readable",
            routing::delete(disable),
        )
        .returns::<WebhookEndpoint>(),
        Endpoint::new(
            Method::POST,
            "/v1/webhook-endpoints/{id}/rotate-secret",
            admins,
            "Replace the endpoint's signing secret; the new one is shown only in this answer",
            routing::post(rotate_secret),
        )
        .answers(200)
        .returns::<WebhookEndpoint>(),
        Endpoint::new(
            Method::GET,
            "/v1/webhook-endpoints/{id}/deliveries",
            admins,
            "The endpoint's delivery log, newest first, with every attempt (time, status code or error, latency)",
            routing::get(deliveries),
        )
        .returns::<WebhookDeliveryList>()
        .errors(&[(400, "invalid_status")])
        .query(&["limit", "starting_after", "status"]),
        Endpoint::new(
            Method::POST,
            "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/redeliver",
            admins,
            "Send the delivery's event to the endpoint again (same event id), as a new delivery",
            routing::post(redeliver),
        )
        .returns::<WebhookDelivery>()
        .errors(&[(409, "endpoint_disabled")]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_checked_and_ordered() {
        let asked = vec!["refund.created".to_string(), "payment.created".to_string(), "refund.created".to_string()];
        assert_eq!(event_types_arg(&asked).expect("known"), vec!["payment.created", "refund.created"]);
        let unknown = event_types_arg(&["payment.exploded".to_string()]).expect_err("unknown");
        assert_eq!((unknown.status.as_u16(), unknown.code), (422, "invalid_event_type"));
        assert_eq!(event_types_arg(&[]).expect_err("none").status.as_u16(), 422);
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(url_arg("ftp://example.com/", false).expect_err("scheme").code, "url_not_allowed");
        assert_eq!(url_arg("http://127.0.0.1:1/", false).expect_err("loopback").code, "url_not_allowed");
        assert!(url_arg("http://127.0.0.1:1/", true).is_ok());
        assert_eq!(url_arg("nonsense", false).expect_err("malformed").code, "invalid_url");
    }
}
