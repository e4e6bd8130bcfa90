//! The application: shared state, the router, and start-up (bootstrap admin).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use ledger_core::Ledger;

use crate::auth;
use crate::db::{Db, now_secs};
use crate::error::ApiError;
use crate::routes;

/// Largest request body accepted: far above any legitimate request.
pub const BODY_BYTES_MAX: usize = 64 << 10;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub ledger: Ledger,
    /// Serializes requests that share an Idempotency-Key.
    pub key_locks: crate::idempotency::KeyLocks,
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/v1/auth/login", post(routes::auth::login))
        .route("/v1/users/me", get(routes::auth::me))
        .route("/v1/users", post(routes::clients::create_user))
        .route("/v1/clients", post(routes::clients::create_client).get(routes::clients::list_clients))
        .route("/v1/clients/{id}", get(routes::clients::get_client))
        .route("/v1/clients/{id}/applications", post(routes::clients::create_application))
        .route("/v1/clients/{id}/applications/{app_id}", delete(routes::clients::revoke_application))
        .route("/v1/transactions", post(routes::transactions::create).get(routes::transactions::list))
        .route("/v1/transactions/{id}", get(routes::transactions::get))
        .route("/v1/transactions/{id}/{action}", post(routes::transactions::follow_up))
        .route("/v1/batches", get(routes::batches::list))
        .route("/v1/batches/close", post(routes::batches::close))
        .route("/v1/batches/{id}", get(routes::batches::get))
        .route("/v1/batches/{id}/reconciliation", get(routes::batches::reconciliation))
        .route("/v1/balance", get(routes::batches::balance))
        .route("/v1/tickets", post(routes::tickets::create).get(routes::tickets::list))
        .route("/v1/tickets/{id}", get(routes::tickets::get).patch(routes::tickets::update))
        .route("/v1/tickets/{id}/comments", post(routes::tickets::comment))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
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
            rusqlite::params![email, auth::hash_password(&password)?, now_secs()],
        )?;
        Ok(generated.then_some((email, password)))
    })?
}
