//! A user's lifecycle, by an administrator (a platform admin: anyone; a client admin:
//! its client's users, never a platform admin): unlocking a locked account.
//! Each change is audited in its own SQLite transaction.

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;

/// What a lifecycle change needs to know of its target.
#[derive(Debug)]
pub struct Target {
    pub id: i64,
    pub email: String,
    pub client_id: Option<i64>,
}

/// The user `id` if `principal` manages it (404 otherwise, as for any other client's
/// object; a client admin never manages a platform admin).
pub fn managed(conn: &rusqlite::Connection, principal: &Principal, id: i64) -> Result<Target, ApiError> {
    let row: Option<(String, String, Option<i64>)> = conn
        .query_row("SELECT email, role, client_id FROM users WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match row {
        Some((email, role, client_id))
            if principal.role == Role::Admin || (role != "admin" && client_id == principal.client_id) =>
        {
            Ok(Target { id, email, client_id })
        }
        _ => Err(ApiError::not_found("no such user")),
    }
}

/// The user object with its lifecycle state (never a hash or secret).
pub fn user_json(conn: &rusqlite::Connection, id: i64) -> Result<Value, ApiError> {
    let now = crate::db::now_secs();
    Ok(conn.query_row(
        "SELECT id, email, role, client_id, mfa_enabled, created_at, active, must_change_password, locked_until
         FROM users WHERE id = ?1",
        [id],
        |row| {
            Ok(json!({
                "id": row.get::<_, i64>(0)?,
                "object": "user",
                "email": row.get::<_, String>(1)?,
                "role": row.get::<_, String>(2)?,
                "client_id": row.get::<_, Option<i64>>(3)?,
                "mfa_enabled": row.get::<_, i64>(4)? != 0,
                "created_at": row.get::<_, i64>(5)?,
                "active": row.get::<_, i64>(6)? != 0,
                "password_change_required": row.get::<_, i64>(7)? != 0,
                "locked": row.get::<_, Option<i64>>(8)?.is_some_and(|until| until > now),
            }))
        },
    )?)
}

/// `POST /v1/users/{id}/unlock`: ends the account's lock and its count of failures;
/// the right password works at once.
async fn unlock(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Value>> {
    principal.require_user(Role::ClientAdmin)?;
    let user = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let target = managed(&tx, &principal, id)?;
            tx.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM login_failures WHERE email = ?1", params![target.email])?;
            audit::append(&tx, &[Entry::by(&principal, "user.unlock", "user", id).in_client(target.client_id)])?;
            let user = user_json(&tx, id)?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/users/{id}/unlock",
            Access::platform(Role::ClientAdmin),
            "Unlock an account locked by failed sign-ins",
            routing::post(unlock),
        )
        .answers(200),
    ]
}
