//! A user's lifecycle. By an administrator (a platform admin: anyone; a client admin:
//! its client's users, never a platform admin): deactivate and reactivate, set a
//! temporary password, reset MFA, unlock, list and end sessions. By the user: change
//! the password. Each change is audited in the same SQLite transaction.

use crate::db::OptionalExtension;
use crate::params;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::routing;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit::{self, Entry};
use crate::auth::{self, Actor, Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use crate::routes::clients::User;

/// What a lifecycle change needs to know of its target.
#[derive(Debug)]
pub struct Target {
    pub id: i64,
    pub email: String,
    pub client_id: Option<i64>,
}

/// The user `id` if `principal` manages it (404 otherwise, as for any other client's
/// object; a client admin never manages a platform admin).
pub fn managed(conn: &crate::db::Conn, principal: &Principal, id: i64) -> Result<Target, ApiError> {
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

/// The user object with its lifecycle state (never a hash or secret): the same columns
/// and JSON as the users list (`clients::user_json`).
pub fn user_json(conn: &crate::db::Conn, id: i64) -> Result<User, ApiError> {
    Ok(crate::routes::clients::user_by_id(conn, id)?)
}

/// `POST /v1/users/{id}/unlock`: ends the account's lock and its count of failures;
/// the right password works at once.
async fn unlock(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: Bytes,
) -> ApiResult<Json<User>> {
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

/// The caller's own user id (403 for an API key).
fn own_id(principal: &Principal) -> Result<i64, ApiError> {
    match principal.actor {
        Actor::User { id, .. } => Ok(id),
        Actor::Application { .. } => Err(ApiError::forbidden("API keys cannot do this; sign in as a user")),
    }
}

/// Runs `change` on a user the caller manages, audits `action` and answers the user.
async fn lifecycle(
    state: &AppState,
    principal: Principal,
    id: i64,
    action: &'static str,
    change: impl FnOnce(&crate::db::Transaction<'_>, &Target) -> Result<Option<Value>, ApiError> + Send + 'static,
) -> ApiResult<Json<User>> {
    principal.require_user(Role::ClientAdmin)?;
    let user = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let target = managed(&tx, &principal, id)?;
            let detail = change(&tx, &target)?;
            let mut entry = Entry::by(&principal, action, "user", id).in_client(target.client_id);
            if let Some(detail) = detail {
                entry = entry.detail(detail);
            }
            audit::append(&tx, &[entry])?;
            let user = user_json(&tx, id)?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

/// 409 when an administrator acts on its own account where that would lock it out.
fn not_self(principal: &Principal, id: i64) -> Result<(), ApiError> {
    if matches!(principal.actor, Actor::User { id: own, .. } if own == id) {
        return Err(ApiError::conflict(
            "invalid_request_error",
            "own_account",
            "nobody does this to their own account; ask another administrator",
        ));
    }
    Ok(())
}

/// `POST /v1/users/{id}/deactivate`: sign-in and every session refused from the next
/// request (the sessions are deleted).
async fn deactivate(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: Bytes,
) -> ApiResult<Json<User>> {
    not_self(&principal, id)?;
    lifecycle(&state, principal, id, "user.deactivate", move |tx, _| {
        tx.execute("UPDATE users SET active = 0 WHERE id = ?1", [id])?;
        let ended = tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(Some(json!({ "sessions_ended": ended })))
    })
    .await
}

/// `POST /v1/users/{id}/reactivate`.
async fn reactivate(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: Bytes,
) -> ApiResult<Json<User>> {
    not_self(&principal, id)?;
    lifecycle(&state, principal, id, "user.reactivate", move |tx, _| {
        tx.execute("UPDATE users SET active = 1 WHERE id = ?1", [id])?;
        Ok(None)
    })
    .await
}

/// `POST /v1/users/{id}/mfa/reset`: MFA off, its secret and recovery codes gone (the
/// user enrols again).
async fn mfa_reset(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: Bytes,
) -> ApiResult<Json<User>> {
    lifecycle(&state, principal, id, "mfa.reset", move |tx, _| {
        tx.execute("UPDATE users SET mfa_secret = NULL, mfa_enabled = 0, mfa_last_step = NULL WHERE id = ?1", [id])?;
        tx.execute("DELETE FROM mfa_recovery_codes WHERE user_id = ?1", [id])?;
        Ok(None)
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemporaryPassword {
    /// Given to the user out of band; it must be changed at the next sign-in.
    #[schema(schema_with = crate::schema::password)]
    password: String,
}

/// `POST /v1/users/{id}/password`: an administrator sets a temporary password; the
/// user's sessions end and the next one may do nothing but change it.
async fn set_password(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<TemporaryPassword>,
) -> ApiResult<Json<User>> {
    not_self(&principal, id)?;
    crate::password::check(&req.password)?;
    let hash = auth::hash_password(&req.password)?;
    lifecycle(&state, principal, id, "user.password_reset", move |tx, _| {
        tx.execute(
            "UPDATE users SET password_hash = ?1, must_change_password = 1, failed_logins = 0, locked_until = NULL
             WHERE id = ?2",
            params![hash, id],
        )?;
        let ended = tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(Some(json!({ "sessions_ended": ended })))
    })
    .await
}

/// A session as listed: an id (the first 16 hex digits of its token's hash, which
/// reveal nothing of the token), when it began and ends.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserSession {
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub id: String,
    /// Always `session`.
    pub object: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A user's sessions that have not ended, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserSessionList {
    pub data: Vec<UserSession>,
    pub has_more: bool,
}

fn session_json(row: &crate::db::Row<'_>) -> crate::db::Result<UserSession> {
    let hash: Vec<u8> = row.get(0)?;
    Ok(UserSession {
        id: hex::encode(hash.get(..8).unwrap_or_default()),
        object: "session".to_string(),
        created_at: row.get(1)?,
        expires_at: row.get(2)?,
    })
}

/// `GET /v1/users/{id}/sessions`: the user's sessions that have not ended.
async fn list_sessions(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<UserSessionList>> {
    principal.require_user(Role::ClientAdmin)?;
    let data = state
        .db
        .call(move |conn| {
            managed(conn, &principal, id)?;
            let mut stmt = conn.prepare(
                "SELECT token_hash, created_at, expires_at FROM sessions WHERE user_id = ?1 AND expires_at > ?2
                 ORDER BY created_at DESC LIMIT 1000",
            )?;
            let rows = stmt.query_map(params![id, crate::db::now_secs()], session_json)?;
            Ok(rows.collect::<Result<Vec<UserSession>, _>>()?)
        })
        .await?;
    Ok(Json(UserSessionList { data, has_more: false }))
}

/// `DELETE /v1/users/{id}/sessions`: ends every session of the user.
async fn revoke_sessions(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: Bytes,
) -> ApiResult<Json<User>> {
    lifecycle(&state, principal, id, "user.sessions_revoke", move |tx, _| {
        let ended = tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(Some(json!({ "sessions_ended": ended })))
    })
    .await
}

/// `DELETE /v1/users/{id}/sessions/{session_id}`: ends one session (404 if none).
async fn revoke_session(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, session)): ApiPath<(i64, String)>,
    _body: Bytes,
) -> ApiResult<Json<User>> {
    // The first 8 bytes of the token's hash, compared as bytes (SQL both backends
    // accept: PostgreSQL has no hex() of a blob).
    let prefix = match hex::decode(&session) {
        Ok(prefix) if prefix.len() == 8 => prefix,
        _ => return Err(ApiError::not_found("no such session")),
    };
    lifecycle(&state, principal, id, "user.session_revoke", move |tx, _| {
        let ended = tx.execute(
            "DELETE FROM sessions WHERE user_id = ?1 AND substr(token_hash, 1, 8) = ?2",
            params![id, prefix],
        )?;
        if ended == 0 {
            return Err(ApiError::not_found("no such session"));
        }
        Ok(Some(json!({ "session": session.to_ascii_lowercase() })))
    })
    .await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(schema_with = crate::schema::required_text)]
    current_password: String,
    #[schema(schema_with = crate::schema::password)]
    new_password: String,
}

/// `POST /v1/users/me/password`: the current password is required (a wrong one is a
/// failed sign-in attempt: 401, counted towards the lock); the new one must pass the
/// policy (400 `weak_password`); every other session of the user ends.
async fn change_own_password(
    State(state): State<AppState>,
    principal: Principal,
    session: Option<axum::Extension<auth::Session>>,
    peer: Option<axum::Extension<auth::PeerAddr>>,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<Json<User>> {
    let id = own_id(&principal)?;
    let Some(axum::Extension(session)) = session else {
        return Err(ApiError::forbidden("only a signed-in user has a password"));
    };
    let addr = peer.map_or_else(|| "unknown".to_string(), |axum::Extension(auth::PeerAddr(ip))| ip.to_string());
    let new_hash = match crate::password::check(&req.new_password) {
        Ok(()) if req.new_password == req.current_password => {
            return Err(ApiError::invalid("weak_password", "the new password must differ from the current one")
                .with_param("new_password"));
        }
        Ok(()) => auth::hash_password(&req.new_password)?,
        Err(e) => return Err(e.with_param("new_password")),
    };
    let user = state
        .db
        .call(move |conn| {
            let (email, stored, client_id): (String, String, Option<i64>) =
                conn.query_row("SELECT email, password_hash, client_id FROM users WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
            let verified = auth::verify_password(&req.current_password, &stored);
            let tx = crate::db::write_tx(conn)?;
            if !verified {
                auth::record_failure(tx, &email, &addr, Some((id, client_id)), "wrong_current_password")?;
                return Err(ApiError::unauthenticated("invalid_credentials", "the current password is wrong")
                    .with_param("current_password"));
            }
            tx.execute(
                "UPDATE users SET password_hash = ?1, must_change_password = 0, failed_logins = 0 WHERE id = ?2",
                params![new_hash, id],
            )?;
            let ended = tx.execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND token_hash != ?2",
                params![id, session.token_hash],
            )?;
            audit::append(
                &tx,
                &[Entry::by(&principal, "user.password_change", "user", id)
                    .detail(json!({ "other_sessions_ended": ended }))],
            )?;
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
        .answers(200)
        .returns::<User>(),
        Endpoint::new(
            Method::POST,
            "/v1/users/{id}/deactivate",
            Access::platform(Role::ClientAdmin),
            "Deactivate a user: sign-in and every session refused from the next request",
            routing::post(deactivate),
        )
        .answers(200)
        .returns::<User>()
        .errors(&[(409, "own_account")]),
        Endpoint::new(
            Method::POST,
            "/v1/users/{id}/reactivate",
            Access::platform(Role::ClientAdmin),
            "Reactivate a deactivated user",
            routing::post(reactivate),
        )
        .answers(200)
        .returns::<User>()
        .errors(&[(409, "own_account")]),
        Endpoint::new(
            Method::POST,
            "/v1/users/{id}/mfa/reset",
            Access::platform(Role::ClientAdmin),
            "Turn a user's MFA off (lost authenticator); the user enrols again",
            routing::post(mfa_reset),
        )
        .answers(200)
        .returns::<User>(),
        Endpoint::new(
            Method::POST,
            "/v1/users/{id}/password",
            Access::platform(Role::ClientAdmin),
            "Set a temporary password, to be changed at the next sign-in; the user's sessions end",
            routing::post(set_password),
        )
        .answers(200)
        .body::<TemporaryPassword>()
        .returns::<User>()
        .errors(&[(400, "weak_password"), (409, "own_account")]),
        Endpoint::new(
            Method::GET,
            "/v1/users/{id}/sessions",
            Access::platform(Role::ClientAdmin),
            "A user's open sessions",
            routing::get(list_sessions),
        )
        .returns::<UserSessionList>(),
        Endpoint::new(
            Method::DELETE,
            "/v1/users/{id}/sessions",
            Access::platform(Role::ClientAdmin),
            "End every session of a user",
            routing::delete(revoke_sessions),
        )
        .returns::<User>(),
        Endpoint::new(
            Method::DELETE,
            "/v1/users/{id}/sessions/{session_id}",
            Access::platform(Role::ClientAdmin),
            "End one session of a user",
            routing::delete(revoke_session),
        )
        .returns::<User>(),
        Endpoint::new(
            Method::POST,
            "/v1/users/me/password",
            Access::platform(Role::Viewer),
            "Change one's own password (the current one required); every other session ends",
            routing::post(change_own_password),
        )
        .answers(200)
        .body::<PasswordChange>()
        .returns::<User>()
        .errors(&[(400, "weak_password"), (401, "invalid_credentials")]),
    ]
}
