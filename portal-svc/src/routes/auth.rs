//! `POST /v1/auth/login` and `GET /v1/users/me`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::Role;
use crate::auth::{self, Actor, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::{audit, mfa};
use axum::http::Method;
use axum::routing;
use rusqlite::params;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// The TOTP code or a recovery code, when the account has MFA on.
    otp: Option<String>,
}

/// Exchanges credentials for a session token.
pub async fn login(State(state): State<AppState>, ApiJson(req): ApiJson<LoginRequest>) -> ApiResult<Json<Value>> {
    if req.email.is_empty() || req.password.is_empty() {
        return Err(ApiError::invalid("missing_field", "email and password are required").with_param("email"));
    }
    let (token, expires_at) =
        state.db.call(move |conn| auth::login(conn, &req.email, &req.password, req.otp.as_deref())).await?;
    Ok(Json(json!({ "token": token, "expires_at": expires_at })))
}

/// Who the caller is: the signed-in user, or the application of an API key.
pub async fn me(principal: Principal) -> Json<Value> {
    let (kind, id, email) = match &principal.actor {
        Actor::User { id, email } => ("user", *id, Some(email.clone())),
        Actor::Application { id } => ("application", *id, None),
    };
    Json(json!({
        "object": kind,
        "id": id,
        "email": email,
        "role": principal.role.as_str(),
        "client_id": principal.client_id,
    }))
}

fn signed_in_user(principal: &Principal) -> Result<(i64, String), ApiError> {
    match &principal.actor {
        Actor::User { id, email } => Ok((*id, email.clone())),
        Actor::Application { .. } => Err(ApiError::forbidden("API keys have no MFA; sign in as a user")),
    }
}

/// `POST /v1/users/me/mfa`: starts (or restarts) TOTP enrolment. MFA is enforced only
/// once a code is verified; while it is on, enrolment again is a 409.
async fn mfa_enrol(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Value>> {
    let (user_id, email) = signed_in_user(&principal)?;
    let response = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let (_, enabled, _) = mfa::state(&tx, user_id)?;
            if enabled {
                return Err(ApiError::conflict("invalid_request_error", "mfa_already_enabled", "MFA is already on"));
            }
            let secret = mfa::new_secret();
            let codes = mfa::new_recovery_codes();
            tx.execute(
                "UPDATE users SET mfa_secret = ?1, mfa_last_step = NULL WHERE id = ?2",
                params![secret, user_id],
            )?;
            tx.execute("DELETE FROM mfa_recovery_codes WHERE user_id = ?1", [user_id])?;
            for code in &codes {
                tx.execute(
                    "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
                    params![user_id, mfa::recovery_hash(code)],
                )?;
            }
            audit::record(&tx, &principal, "mfa.enrol", &format!("user:{user_id}"))?;
            tx.commit()?;
            Ok(json!({
                "secret": secret,
                "otpauth_url": mfa::otpauth_url(&secret, &email)?,
                "recovery_codes": codes,
            }))
        })
        .await?;
    Ok(Json(response))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OtpRequest {
    otp: String,
}

/// `POST /v1/users/me/mfa/verify`: a right code turns MFA on; a wrong (or reused) one
/// is 401 `invalid_otp`.
async fn mfa_verify(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<OtpRequest>,
) -> ApiResult<Json<Value>> {
    let (user_id, email) = signed_in_user(&principal)?;
    let otp = req.otp;
    state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let (secret, enabled, _) = mfa::state(&tx, user_id)?;
            if secret.is_none() {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "mfa_not_enrolled",
                    "enrol first: POST /v1/users/me/mfa",
                ));
            }
            // Only a TOTP code proves the authenticator works; recovery codes don't count here.
            let is_totp = otp.len() == mfa::DIGITS && otp.bytes().all(|b| b.is_ascii_digit());
            if !is_totp || !mfa::accept(&tx, user_id, &email, &otp)? {
                return Err(ApiError::unauthenticated("invalid_otp", "the one-time code is wrong or was already used")
                    .with_param("otp"));
            }
            tx.execute("UPDATE users SET mfa_enabled = 1 WHERE id = ?1", [user_id])?;
            if !enabled {
                audit::record(&tx, &principal, "mfa.enable", &format!("user:{user_id}"))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(Json(json!({ "mfa_enabled": true })))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/auth/login",
            Access::Public,
            "Exchange credentials for a session token",
            routing::post(login),
        )
        .answers(200)
        .body::<LoginRequest>(),
        Endpoint::new(
            Method::GET,
            "/v1/users/me",
            Access::Member { role: Role::Viewer, keys: true, admins: true },
            "Who the caller is",
            routing::get(me),
        ),
        Endpoint::new(
            Method::POST,
            "/v1/users/me/mfa",
            Access::platform(Role::Viewer),
            "Start TOTP enrolment: secret, otpauth URL and recovery codes",
            routing::post(mfa_enrol),
        )
        .answers(200),
        Endpoint::new(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Access::platform(Role::Viewer),
            "Verify a TOTP code and turn MFA on",
            routing::post(mfa_verify),
        )
        .answers(200)
        .body::<OtpRequest>(),
    ]
}
