//! Signing in: `POST /v1/auth/login` (a session token for API clients), the browser's
//! cookie session (`/v1/auth/session`, `/v1/auth/logout`), `GET /v1/users/me`, and
//! TOTP enrolment with its QR code.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::Role;
use crate::auth::{self, Actor, Principal};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::params;
use crate::{audit, mfa};
use axum::http::Method;
use axum::routing;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(schema_with = crate::schema::required_text)]
    email: String,
    #[schema(schema_with = crate::schema::required_text)]
    password: String,
    /// The TOTP code or a recovery code, when the account has MFA on.
    #[schema(schema_with = crate::schema::optional_text)]
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

/// What a session must do before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionRestriction {
    /// Change the temporary password an administrator set.
    PasswordChange,
    /// Enrol in MFA, which the client requires.
    MfaEnrollment,
}

fn restriction(r: Option<auth::Restriction>) -> Option<SessionRestriction> {
    r.map(|r| match r {
        auth::Restriction::PasswordChange => SessionRestriction::PasswordChange,
        auth::Restriction::MfaEnrollment => SessionRestriction::MfaEnrollment,
    })
}

/// A session token from `POST /v1/auth/login`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LoginAnswer {
    /// Send as `Authorization: Bearer TOKEN`; shown only here.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub restriction: Option<SessionRestriction>,
}

/// A browser's session from `POST /v1/auth/session` (the token is in the cookie).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BrowserSession {
    /// Send as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub restriction: Option<SessionRestriction>,
}

/// Who the caller is: a user, or the application of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    User,
    Application,
}

/// The caller as `GET /v1/users/me` shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    /// `user` or `application`.
    pub object: CallerKind,
    pub id: i64,
    /// A user's.
    pub email: Option<String>,
    /// `admin`, `client_admin`, `operator` or `viewer` (an API key: `operator`).
    pub role: String,
    pub client_id: Option<i64>,
    /// A user's.
    pub mfa_enabled: Option<bool>,
}

/// The caller's session and who the caller is.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Always `session`.
    pub object: String,
    pub csrf_token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Whether the session came in the cookie.
    pub via_cookie: bool,
    pub restriction: Option<SessionRestriction>,
    pub user: Me,
}

/// The answer to signing out.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SignedOut {
    /// Always `session`.
    pub object: String,
    pub signed_out: bool,
}

/// TOTP enrolment: shown once; MFA is on only after `POST /v1/users/me/mfa/verify`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MfaEnrolment {
    /// Base32 (RFC 4648, no padding).
    pub secret: String,
    /// The `otpauth://` URL as a QR code, SVG.
    pub qr_svg: String,
    pub otpauth_url: String,
    /// One-time codes for when the authenticator is lost.
    pub recovery_codes: Vec<String>,
}

/// MFA's state after a verified code.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct MfaState {
    pub mfa_enabled: bool,
}

/// Exchanges credentials for a session token.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<auth::PeerAddr>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<LoginAnswer>> {
    let signed_in = sign_in(&state, source(peer), req).await?;
    Ok(Json(LoginAnswer {
        token: signed_in.token,
        expires_at: signed_in.expires_at,
        restriction: restriction(signed_in.restriction),
    }))
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
    let body = BrowserSession {
        csrf_token: auth::csrf_token(&signed_in.token),
        expires_at: signed_in.expires_at,
        restriction: restriction(signed_in.restriction),
    };
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
    let body = SessionInfo {
        object: "session".to_string(),
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
        via_cookie: session.via_cookie,
        restriction: restriction(session.restriction),
        user,
    };
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
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(auth::bearer_token);
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
        Json(SignedOut { object: "session".to_string(), signed_out: true }),
    )
        .into_response())
}

/// Who the caller is: the signed-in user, or the application of an API key.
pub async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Me>> {
    me_json(&state, &principal).await.map(Json)
}

/// The caller as `GET /v1/users/me` shows it; a user's `mfa_enabled` too.
async fn me_json(state: &AppState, principal: &Principal) -> ApiResult<Me> {
    let (kind, id, email) = match &principal.actor {
        Actor::User { id, email } => (CallerKind::User, *id, Some(email.clone())),
        Actor::Application { id } => (CallerKind::Application, *id, None),
    };
    let mfa_enabled = match principal.actor {
        Actor::User { id, .. } => Some(state.db.call(move |conn| Ok(mfa::state(conn, id)?.1)).await?),
        Actor::Application { .. } => None,
    };
    Ok(Me {
        object: kind,
        id,
        email,
        role: principal.role.as_str().to_string(),
        client_id: principal.client_id,
        mfa_enabled,
    })
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
) -> ApiResult<Json<MfaEnrolment>> {
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
            Ok(MfaEnrolment { secret, qr_svg: qr_svg(&url)?, otpauth_url: url, recovery_codes: codes })
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
    #[schema(schema_with = crate::schema::text)]
    otp: String,
}

/// `POST /v1/users/me/mfa/verify`: a right code turns MFA on; a wrong (or reused) one
/// is 401 `invalid_otp`.
async fn mfa_verify(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<OtpRequest>,
) -> ApiResult<Json<MfaState>> {
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
    Ok(Json(MfaState { mfa_enabled: true }))
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
        .body::<LoginRequest>()
        .returns::<LoginAnswer>()
        .errors(&[
            (401, "invalid_credentials"),
            (401, "mfa_required"),
            (401, "invalid_otp"),
            (429, "too_many_login_attempts"),
        ]),
        Endpoint::new(
            Method::POST,
            "/v1/auth/session",
            Access::Public,
            "Sign in a browser: the session goes into an HttpOnly SameSite=Strict cookie; answers the CSRF token",
            routing::post(open_session),
        )
        .answers(200)
        .body::<LoginRequest>()
        .returns::<BrowserSession>()
        .errors(&[
            (401, "invalid_credentials"),
            (401, "mfa_required"),
            (401, "invalid_otp"),
            (429, "too_many_login_attempts"),
        ]),
        Endpoint::new(
            Method::GET,
            "/v1/auth/session",
            Access::platform(Role::Viewer),
            "The caller's session: its CSRF token, its end, and who is signed in",
            routing::get(current_session),
        )
        .returns::<SessionInfo>(),
        Endpoint::new(
            Method::POST,
            "/v1/auth/logout",
            Access::Public,
            "End the request's session (bearer token, or cookie with X-CSRF-Token) and clear the cookie",
            routing::post(logout),
        )
        .answers(200)
        .returns::<SignedOut>()
        .errors(&[(400, "not_a_session"), (403, "csrf_failed")]),
        Endpoint::new(
            Method::GET,
            "/v1/users/me",
            Access::Member { role: Role::Viewer, keys: true, admins: true },
            "Who the caller is",
            routing::get(me),
        )
        .returns::<Me>(),
        Endpoint::new(
            Method::POST,
            "/v1/users/me/mfa",
            Access::platform(Role::Viewer),
            "Start TOTP enrolment: secret, otpauth URL (and its QR code as SVG) and recovery codes",
            routing::post(mfa_enrol),
        )
        .answers(200)
        .returns::<MfaEnrolment>()
        .errors(&[(409, "mfa_already_enabled")]),
        Endpoint::new(
            Method::POST,
            "/v1/users/me/mfa/verify",
            Access::platform(Role::Viewer),
            "Verify a TOTP code and turn MFA on",
            routing::post(mfa_verify),
        )
        .answers(200)
        .body::<OtpRequest>()
        .returns::<MfaState>()
        .errors(&[(401, "invalid_otp"), (409, "mfa_not_enrolled")]),
    ]
}
