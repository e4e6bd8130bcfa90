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
use axum::http::Method;
use axum::routing;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    #[allow(dead_code)] // verified once MFA enrolment lands (issue 5, next increment)
    otp: Option<String>,
}

/// Exchanges credentials for a session token.
pub async fn login(State(state): State<AppState>, ApiJson(req): ApiJson<LoginRequest>) -> ApiResult<Json<Value>> {
    if req.email.is_empty() || req.password.is_empty() {
        return Err(ApiError::invalid("missing_field", "email and password are required").with_param("email"));
    }
    let (token, expires_at) = state.db.call(move |conn| auth::login(conn, &req.email, &req.password)).await?;
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
        .body::<LoginRequest>(),
        Endpoint::new(Method::GET, "/v1/users/me", Access::member(Role::Viewer), "Who the caller is", routing::get(me)),
    ]
}
