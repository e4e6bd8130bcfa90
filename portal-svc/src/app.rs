//! The application: shared state, the router, and start-up (bootstrap admin).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger_core::Ledger;

use crate::api::{self, Endpoint, Metrics};
use crate::auth;
use crate::db::{Db, now_secs};
use crate::error::ApiError;
use crate::routes;

/// Largest request body accepted: far above any legitimate request.
pub const BODY_BYTES_MAX: usize = 64 << 10;
/// Longest a client may take to send a request's head, and so also how long an idle
/// keep-alive connection is kept: a connection that sends nothing, or its head a byte
/// at a time, is closed after it (`main.rs` gives hyper this limit and its timer).
pub const HEAD_SECS_MAX: u64 = 10;
/// Longest a request body may take to arrive, from when its head was read: a body
/// trickled in a byte at a time (slow loris) would otherwise hold its connection and
/// task forever. [`BODY_BYTES_MAX`] in this time is 6.4 KB/s, below any real link.
pub const BODY_SECS_MAX: u64 = 10;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub ledger: Ledger,
    /// Serializes requests that share an Idempotency-Key.
    pub key_locks: crate::idempotency::KeyLocks,
    pub metrics: Arc<Metrics>,
    /// Verified API keys (see [`auth::KeyCache`]).
    pub key_cache: Arc<auth::KeyCache>,
    /// How long a new session lasts (`--session-secs`, [`auth::SESSION_SECS`] unless set).
    pub session_secs: i64,
    /// The key that encrypts secrets at rest (a random one unless `main` loads the
    /// data directory's; see [`crate::secrets`]).
    pub keyring: Arc<crate::secrets::Keyring>,
    /// Failed sign-ins per source address per window (`--login-failures-per-address`).
    pub addr_failures_max: i64,
    /// The BLAKE3 hash of the token `GET /metrics` requires (`PORTAL_METRICS_TOKEN`);
    /// `None`: metrics are off.
    pub metrics_token: Option<[u8; 32]>,
    /// Clients' settings already read (see [`crate::settings::SettingsCache`]).
    pub settings: Arc<crate::settings::SettingsCache>,
    /// Webhook configuration, the delivery worker's wake-up, the event stream and the
    /// events follower's health (see [`crate::webhooks`]).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// In cluster mode, this node of the replicated ledger (`ledger` is its ledger);
    /// `None` for a single node.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AppState {
    pub fn new(db: Db, ledger: Ledger) -> AppState {
        AppState {
            db,
            ledger,
            key_locks: Default::default(),
            metrics: Arc::default(),
            key_cache: Arc::default(),
            session_secs: auth::SESSION_SECS,
            keyring: Arc::new(crate::secrets::Keyring::random()),
            addr_failures_max: auth::ADDR_FAILURES_MAX,
            metrics_token: None,
            settings: Arc::default(),
            webhooks: Arc::default(),
            cluster: None,
        }
    }
}

/// Every endpoint of the service, in the order the OpenAPI document lists them.
pub fn endpoints() -> Vec<Endpoint> {
    [
        routes::health::endpoints(),
        routes::auth::endpoints(),
        routes::clients::endpoints(),
        routes::users::endpoints(),
        routes::audit::endpoints(),
        routes::transactions::endpoints(),
        routes::batches::endpoints(),
        routes::reports::endpoints(),
        routes::devices::endpoints(),
        routes::tickets::endpoints(),
        routes::notes::endpoints(),
        routes::web::endpoints(),
        // Last, so the route indices of the fuzz target's seeds keep their meaning.
        routes::events::endpoints(),
        routes::webhooks::endpoints(),
        routes::cluster::endpoints(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The service: every endpoint behind its access check, JSON errors for unknown
/// routes, and a cap on request bodies.
pub fn router(state: AppState) -> Router {
    api::router(endpoints(), &state)
        .fallback(|| async { ApiError::not_found("no such route") })
        // In cluster mode a write on a follower goes to the leader (inside the body
        // deadline, outside every route's access check: the leader checks).
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::cluster::forward))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(body_deadline))
        .layer(axum::middleware::map_response(error_body))
        .layer(axum::middleware::map_response(no_store))
        .with_state(state)
}

/// `Cache-Control: no-store` on every answer that does not set its own: no API answer
/// is for a cache to keep, and some show a secret once (a new API key, an MFA secret,
/// a session token). The web portal's files keep theirs (`no-cache` with an ETag).
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().entry(header::CACHE_CONTROL).or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}

/// Ends the request body at [`BODY_SECS_MAX`] after the head: the body stream then
/// fails, so whichever extractor was reading it gives up, and the answer is 408
/// `body_timeout` whatever that extractor made of the failure. Found by
/// `tests/security.rs` (`a_slow_body_is_cut_off`): before, a body sent a byte a second
/// was waited for without end.
async fn body_deadline(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::body::HttpBody;
    use futures_util::StreamExt;
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(BODY_SECS_MAX);
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let timed = futures_util::stream::unfold(
        (body.into_data_stream(), Some(Arc::clone(&expired))),
        move |(mut stream, expired)| async move {
            let flag = expired?;
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(frame)) => Some((frame, (stream, Some(flag)))),
                Ok(None) => None,
                Err(_) => {
                    // Relaxed: read after `next.run` completes, which awaited this stream.
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    Some((Err(axum::Error::new("the request body took too long")), (stream, None)))
                }
            }
        },
    );
    let response = next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(timed))).await;
    if expired.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            kind: "invalid_request_error",
            code: "body_timeout",
            message: format!("the request body did not arrive within {BODY_SECS_MAX} seconds"),
            param: None,
            retry_after_secs: None,
        }
        .into_response();
    }
    response
}

/// Gives the error body to the errors axum answers by itself, which come as plain text
/// or empty: 405 for a known path called with another method, 413 from a body
/// extractor (`Bytes`, `String`) past [`BODY_BYTES_MAX`], and any other rejection of a
/// built-in extractor. Their headers (`Allow`, ...) are kept. Errors that already carry
/// a body of another type (the error body's JSON, a page's HTML) pass unchanged.
async fn error_body(response: Response) -> Response {
    let status = response.status();
    let plain = response.headers().get(header::CONTENT_TYPE).is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, BODY_BYTES_MAX).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let reason = status.canonical_reason().unwrap_or("error").to_lowercase();
    let (kind, code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("invalid_request_error", "method_not_allowed", "this route does not take this method".to_string())
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("invalid_request_error", "body_too_large", format!("the request body exceeds {BODY_BYTES_MAX} bytes"))
        }
        _ if status.is_client_error() => {
            ("invalid_request_error", "invalid_request", if text.is_empty() { reason } else { text })
        }
        _ => {
            tracing::error!(%status, detail = %text, "a plain-text server error");
            ("api_error", "internal_error", "internal error".to_string())
        }
    };
    let mut answer = ApiError { status, kind, code, message, param: None, retry_after_secs: None }.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// On an empty database, creates the platform admin: from `PORTAL_ADMIN_EMAIL` and
/// `PORTAL_ADMIN_PASSWORD` when both are set, else `admin@localhost` with a random
/// password that is returned (to be printed once) and never stored in clear.
pub fn bootstrap_admin(db: &Db) -> Result<Option<(String, String)>, ApiError> {
    db.call_blocking(|conn| {
        let users: i64 = conn.query_row("SELECT count(*) FROM users", [], |row| row.get(0))?;
        if users > 0 {
            return Ok(None);
        }
        let (email, password, generated) =
            match (std::env::var("PORTAL_ADMIN_EMAIL"), std::env::var("PORTAL_ADMIN_PASSWORD")) {
                (Ok(email), Ok(password)) if !email.is_empty() && !password.is_empty() => (email, password, false),
                _ => ("admin@localhost".to_string(), auth::random_secret(12), true),
            };
        conn.execute(
            "INSERT INTO users (email, password_hash, role, client_id, created_at) VALUES (?1, ?2, 'admin', NULL, ?3)",
            crate::params![email, auth::hash_password(&password)?, now_secs()],
        )?;
        Ok(generated.then_some((email, password)))
    })?
}
