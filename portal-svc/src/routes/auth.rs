//! Signing in: `POST /v1/auth/login` (a session token for API clients), the browser's
//! cookie session (`/v1/auth/session`, `/v1/auth/logout`), `GET /v1/users/me`, and
//! TOTP enrolment with its QR code.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
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

/// The request's source address as the throttle counts it.
fn source(peer: Option<Extension<auth::PeerAddr>>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |Extension(auth::PeerAddr(ip))| ip.to_string())
}

/// Checks the credentials (and second factor) and opens a session.
async fn sign_in(state: &AppState, addr: String, req: LoginRequest) -> ApiResult<auth::SignedIn> {
    if req.email.is_empty() || req.password.is_empty() {
        return Err(ApiError::invalid("missing_field", "email and password are required").with_param("email"));
    }
    let ring = std::sync::Arc::clone(&state.keyring);
    let (session_secs, addr_failures_max) = (state.session_secs, state.addr_failures_max);
    state
        .db
        .call(move |conn| {
            let attempt = auth::Attempt {
                email: &req.email,
                password: &req.password,
                otp: req.otp.as_deref(),
                addr,
                session_secs,
                addr_failures_max,
            };
            auth::login(conn, &ring, &attempt)
        })
        .await
}

/// Exchanges credentials for a session token.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<auth::PeerAddr>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Value>> {
    let signed_in = sign_in(&state, source(peer), req).await?;
    Ok(Json(json!({
        "token": signed_in.token,
        "expires_at": signed_in.expires_at,
        "restriction": signed_in.restriction.map(auth::Restriction::as_str),
    })))
}

/// `POST /v1/auth/session`: the same sign-in as [`login`], for a browser. The session
/// token goes into an `HttpOnly; SameSite=Strict` cookie only, never into the body;
/// the body carries the session's CSRF token, which requests that change something
/// send back in `X-CSRF-Token`. (A cross-site form cannot post here: the body must
/// be JSON, which only a same-origin script can send without a CORS preflight, and
/// the service answers none.)
pub async fn open_session(
    State(state): State<AppState>,
    peer: Option<Extension<auth::PeerAddr>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let signed_in = sign_in(&state, source(peer), req).await?;
    let cookie = auth::session_cookie(&signed_in.token, state.session_secs);
    let body = json!({
        "csrf_token": auth::csrf_token(&signed_in.token),
        "expires_at": signed_in.expires_at,
        "restriction": signed_in.restriction.map(auth::Restriction::as_str),
    });
    Ok(([(header::SET_COOKIE, cookie), (header::CACHE_CONTROL, "no-store".to_string())], Json(body)).into_response())
}

/// `GET /v1/auth/session`: the caller's session (its CSRF token and end) and who the
/// caller is; how a page reloaded in the browser picks up its CSRF token again.
async fn current_session(
    State(state): State<AppState>,
    principal: Principal,
    session: Option<Extension<auth::Session>>,
) -> ApiResult<Response> {
    let Some(Extension(session)) = session else {
        return Err(ApiError::forbidden("only a signed-in user has a session"));
    };
    let user = me_json(&state, &principal).await?;
    let body = json!({
        "object": "session",
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at,
        "via_cookie": session.via_cookie,
        "restriction": session.restriction.map(auth::Restriction::as_str),
        "user": user,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// `POST /v1/auth/logout`: ends the request's session, whether it came as a bearer
/// token or the cookie (which then needs the CSRF token, like any change), and clears
/// the cookie. Answers 200 when there was no session, so signing out twice is fine.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: axum::body::Bytes,
) -> ApiResult<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let token = match (bearer, auth::cookie_token(&headers)) {
        (Some(token), _) if token.starts_with(auth::API_KEY_PREFIX) => {
            return Err(ApiError::invalid(
                "not_a_session",
                "an API key has no session to end; revoke its application instead",
            ));
        }
        (Some(token), _) => Some(token.to_string()),
        (None, Some(token)) => {
            auth::check_csrf(&headers, token)?;
            Some(token.to_string())
        }
        (None, None) => None,
    };
    if let Some(token) = token {
        state.db.call(move |conn| auth::end_session(conn, &token)).await?;
    }
    Ok((
        [(header::SET_COOKIE, auth::cleared_session_cookie()), (header::CACHE_CONTROL, "no-store".to_string())],
        Json(json!({ "object": "session", "signed_out": true })),
    )
        .into_response())
}

/// Who the caller is: the signed-in user, or the application of an API key.
pub async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Value>> {
    me_json(&state, &principal).await.map(Json)
}

/// The caller as `GET /v1/users/me` shows it; a user's `mfa_enabled` too.
async fn me_json(state: &AppState, principal: &Principal) -> ApiResult<Value> {
    let (kind, id, email) = match &principal.actor {
        Actor::User { id, email } => ("user", *id, Some(email.clone())),
        Actor::Application { id } => ("application", *id, None),
    };
    let mfa_enabled = match principal.actor {
        Actor::User { id, .. } => Some(state.db.call(move |conn| Ok(mfa::state(conn, id)?.1)).await?),
        Actor::Application { .. } => None,
    };
    Ok(json!({
        "object": kind,
        "id": id,
        "email": email,
        "role": principal.role.as_str(),
        "client_id": principal.client_id,
        "mfa_enabled": mfa_enabled,
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
async fn mfa_enrol(
    State(state): State<AppState>,
    principal: Principal,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let (user_id, email) = signed_in_user(&principal)?;
    let ring = std::sync::Arc::clone(&state.keyring);
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
                params![ring.seal(user_id, &secret), user_id],
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
            let url = mfa::otpauth_url(&secret, &email)?;
            Ok(json!({
                "secret": secret,
                "qr_svg": qr_svg(&url)?,
                "otpauth_url": url,
                "recovery_codes": codes,
            }))
        })
        .await?;
    Ok(Json(response))
}

/// The `otpauth://` URL as a QR code in SVG, for an authenticator app to scan off the
/// screen (drawn here, so the page needs no script or image library for it).
fn qr_svg(url: &str) -> Result<String, ApiError> {
    let code =
        qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M).map_err(ApiError::internal)?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build())
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
    let ring = std::sync::Arc::clone(&state.keyring);
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
            if !is_totp || !mfa::accept(&tx, &ring, user_id, &email, &otp)? {
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
            Method::POST,
            "/v1/auth/session",
            Access::Public,
            "Sign in a browser: the session goes into an HttpOnly SameSite=Strict cookie; answers the CSRF token",
            routing::post(open_session),
        )
        .answers(200)
        .body::<LoginRequest>(),
        Endpoint::new(
            Method::GET,
            "/v1/auth/session",
            Access::platform(Role::Viewer),
            "The caller's session: its CSRF token, its end, and who is signed in",
            routing::get(current_session),
        ),
        Endpoint::new(
            Method::POST,
            "/v1/auth/logout",
            Access::Public,
            "End the request's session (bearer token, or cookie with X-CSRF-Token) and clear the cookie",
            routing::post(logout),
        )
        .answers(200),
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
            "Start TOTP enrolment: secret, otpauth URL (and its QR code as SVG) and recovery codes",
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
