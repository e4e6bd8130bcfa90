//! Clients (tenants), their users, and their applications with API keys.
//!
//! Every query is scoped: a caller sees its own client only (platform admins see all),
//! and another client's object is answered 404, never 403, so ids reveal nothing.

use crate::db::OptionalExtension;
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{self, Principal, Role};
use crate::db::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, fetch_limit, page};
use axum::http::Method;
use axum::routing;

/// Shortest password accepted for a new user (see [`crate::password`]).
pub const PASSWORD_CHARS_MIN: usize = crate::password::PASSWORD_CHARS_MIN;
/// Longest name accepted for clients and applications.
const NAME_CHARS_MAX: usize = 200;

fn name_arg(name: &str, param: &'static str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
        return Err(ApiError::invalid("invalid_name", format!("{param} must be 1 to {NAME_CHARS_MAX} characters"))
            .with_param(param));
    }
    Ok(name.to_string())
}

/// A client (tenant) with its settings, as every answer that shows one has it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Client {
    pub id: i64,
    /// Always `client`.
    pub object: String,
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(flatten)]
    pub settings: crate::settings::SettingsView,
    /// In a platform admin's list only: how many users the client has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_count: Option<i64>,
    /// In a platform admin's list only: the client's volume per currency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<Vec<ClientVolume>>,
}

/// A client's volume in one currency (the platform's cross-client view).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ClientVolume {
    /// ISO 4217 code.
    pub currency: String,
    pub captured: String,
    pub net: String,
}

/// The clients the caller sees.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClientList {
    pub data: Vec<Client>,
    pub has_more: bool,
}

fn client_with(id: i64, name: &str, created_at: i64, settings: &crate::settings::Settings) -> Client {
    Client {
        id,
        object: "client".to_string(),
        name: name.to_string(),
        created_at,
        settings: settings.view(),
        user_count: None,
        volume: None,
    }
}

/// A client row (`id, name, created_at`) with its settings, as the API shows it.
fn client_row(conn: &crate::db::Conn, row: (i64, String, i64)) -> Result<Client, ApiError> {
    Ok(client_with(row.0, &row.1, row.2, &crate::settings::load(conn, row.0)?.unwrap_or_default()))
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// Every user of the client must enrol in MFA before doing anything else.
    mfa_required: Option<bool>,
    /// An IANA time zone name (`Europe/Paris`, `America/New_York`, `UTC`) or a fixed UTC
    /// offset (`+HH:MM`, `-HH:MM`). Reports' and the dashboard's days and the cut-over
    /// follow it, daylight saving time included.
    #[schema(schema_with = crate::schema::time_zone)]
    time_zone: Option<String>,
    /// `HH:MM` local time at which open batches close by themselves each day; `null`: never.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::schema::cutover)]
    settlement_cutover: Option<Value>,
    /// ISO 4217 codes payments may use; `null`: all.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::schema::currencies)]
    allowed_currencies: Option<Value>,
}

/// `PATCH /v1/clients/{id}`: the client's settings (its client admins, or a platform
/// admin). Takes effect on each user's next request.
pub async fn update_client(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ClientSettings>,
) -> ApiResult<Json<Client>> {
    if !principal.sees_client(id) {
        return Err(ApiError::not_found("no such client"));
    }
    principal.require_user(Role::ClientAdmin)?;
    let zone = req.time_zone.as_deref().map(crate::settings::Zone::parse).transpose()?;
    let cutover = match &req.settlement_cutover {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(text)) => {
            let (h, m) = crate::settings::parse_cutover(text)?;
            Some(Some(format!("{h:02}:{m:02}")))
        }
        Some(_) => return Err(crate::settings::parse_cutover("").err().unwrap_or_else(|| ApiError::internal("parse"))),
    };
    let currencies = match &req.allowed_currencies {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Array(codes)) => {
            let codes: Vec<String> = codes.iter().map(|c| c.as_str().unwrap_or_default().to_string()).collect();
            let parsed = crate::settings::parse_currencies(&codes)?;
            Some(Some(parsed.iter().map(|c| c.code()).collect::<Vec<_>>().join(",")))
        }
        Some(_) => {
            return Err(crate::settings::parse_currencies(&[]).err().unwrap_or_else(|| ApiError::internal("parse")));
        }
    };
    let cache = std::sync::Arc::clone(&state.settings);
    let client = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let row: Option<(i64, String, i64)> = tx
                .query_row("SELECT id, name, created_at FROM clients WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let row = row.ok_or_else(|| ApiError::not_found("no such client"))?;
            if let Some(required) = req.mfa_required {
                tx.execute("UPDATE clients SET mfa_required = ?1 WHERE id = ?2", params![required, id])?;
            }
            if let Some(zone) = &zone {
                let (offset_minutes, name) = match zone {
                    crate::settings::Zone::Offset(minutes) => (*minutes, None),
                    named => {
                        let offset = named.offset_secs_at(now_secs()) / 60;
                        (i32::try_from(offset).unwrap_or(0), Some(named.name()))
                    }
                };
                tx.execute(
                    "UPDATE clients SET utc_offset_minutes = ?1, time_zone_name = ?2 WHERE id = ?3",
                    params![offset_minutes, name, id],
                )?;
            }
            if let Some(cutover) = &cutover {
                // A new cut-over time applies from today on.
                tx.execute(
                    "UPDATE clients SET settlement_cutover = ?1, cutover_done_day = NULL WHERE id = ?2",
                    params![cutover, id],
                )?;
            }
            if let Some(currencies) = &currencies {
                tx.execute("UPDATE clients SET allowed_currencies = ?1 WHERE id = ?2", params![currencies, id])?;
            }
            let settings = crate::settings::load(&tx, id)?.unwrap_or_default();
            audit::append(
                &tx,
                &[audit::Entry::by(&principal, "client.settings", "client", id)
                    .in_client(Some(id))
                    .detail(settings.json())],
            )?;
            let client = client_row(&tx, row)?;
            tx.commit()?;
            cache.put(id, settings);
            Ok(client)
        })
        .await?;
    Ok(Json(client))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    #[schema(schema_with = crate::schema::name_200)]
    name: String,
}

/// `POST /v1/clients`: platform admins only.
pub async fn create_client(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewClient>,
) -> ApiResult<(StatusCode, Json<Client>)> {
    principal.require_user(Role::Admin)?;
    let name = name_arg(&req.name, "name")?;
    let now = now_secs();
    let id = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let id: i64 = tx.query_row(
                "INSERT INTO clients (name, created_at) VALUES (?1, ?2) RETURNING id",
                params![name, now],
                |row| row.get(0),
            )?;
            audit::record_in(&tx, &principal, Some(id), "client.create", &format!("client:{id}"))?;
            tx.commit()?;
            Ok(id)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(client_with(id, req.name.trim(), now, &crate::settings::Settings::default()))))
}

/// `GET /v1/clients`: the clients the caller may see.
pub async fn list_clients(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<ClientList>> {
    let platform = principal.role == Role::Admin;
    let mut data: Vec<Client> = state
        .db
        .call(move |conn| {
            let mut stmt =
                conn.prepare("SELECT id, name, created_at FROM clients WHERE ?1 OR id = ?2 ORDER BY id LIMIT 1000")?;
            let rows = stmt
                .query_map(params![principal.role == Role::Admin, principal.client_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<(i64, String, i64)>, _>>()?;
            let mut clients = rows.into_iter().map(|row| client_row(conn, row)).collect::<Result<Vec<Client>, _>>()?;
            if platform {
                // The platform's cross-client view: how many users each client has.
                for client in &mut clients {
                    let users: i64 =
                        conn.query_row("SELECT count(*) FROM users WHERE client_id = ?1", [client.id], |r| r.get(0))?;
                    client.user_count = Some(users);
                }
            }
            Ok(clients)
        })
        .await?;
    if platform {
        // And its volume per currency, from the ledger's balances (in memory).
        for client in &mut data {
            let id = u64::try_from(client.id).unwrap_or_default();
            let volume: Vec<ClientVolume> = state
                .ledger
                .balances(id)
                .into_iter()
                .map(|(currency, b)| ClientVolume {
                    currency: currency.code().to_string(),
                    captured: ledger_core::money::format_minor(b.captured, currency),
                    net: ledger_core::money::format_minor(b.net, currency),
                })
                .collect();
            client.volume = Some(volume);
        }
    }
    Ok(Json(ClientList { data, has_more: false }))
}

/// `GET /v1/clients/{id}`.
pub async fn get_client(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Client>> {
    if !principal.sees_client(id) {
        return Err(ApiError::not_found("no such client"));
    }
    let client = state
        .db
        .call(move |conn| {
            let row: Option<(i64, String, i64)> = conn
                .query_row("SELECT id, name, created_at FROM clients WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            row.map(|row| client_row(conn, row)).transpose()
        })
        .await?;
    client.map(Json).ok_or_else(|| ApiError::not_found("no such client"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(schema_with = crate::schema::email)]
    email: String,
    #[schema(schema_with = crate::schema::password)]
    password: String,
    #[schema(value_type = Role)]
    role: String,
    #[schema(minimum = 1)]
    client_id: Option<i64>,
}

/// `POST /v1/users`: admins create anyone; a client_admin creates users of its own
/// client (not admins).
pub async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserIdentity>)> {
    principal.require_user(Role::ClientAdmin)?;
    let role = Role::parse(&req.role).ok_or_else(|| {
        ApiError::invalid("invalid_role", "role is admin, client_admin, operator or viewer").with_param("role")
    })?;
    let email = req.email.trim().to_string();
    if !is_email(&email) {
        return Err(ApiError::invalid("invalid_email", "email is not an email address").with_param("email"));
    }
    crate::password::check(&req.password)?;
    let client_id = match (principal.role, role) {
        (Role::Admin, Role::Admin) if req.client_id.is_some() => {
            return Err(
                ApiError::invalid("invalid_client", "platform admins belong to no client").with_param("client_id")
            );
        }
        (Role::Admin, Role::Admin) => None,
        (Role::Admin, _) => Some(req.client_id.ok_or_else(|| {
            ApiError::invalid("missing_field", "client_id is required for this role").with_param("client_id")
        })?),
        (_, Role::Admin) => return Err(ApiError::forbidden("only platform admins create platform admins")),
        (_, _) => {
            let own = principal.client_id;
            match req.client_id {
                Some(id) if Some(id) != own => return Err(ApiError::not_found("no such client")),
                _ => own,
            }
        }
    };
    let hash = auth::hash_password(&req.password)?;
    let now = now_secs();
    let stored_email = email.clone();
    let id = state
        .db
        .call(move |conn| {
            if let Some(client) = client_id {
                let exists: bool =
                    conn.query_row("SELECT EXISTS(SELECT 1 FROM clients WHERE id = ?1)", [client], |r| r.get(0))?;
                if !exists {
                    return Err(ApiError::not_found("no such client"));
                }
            }
            let taken: bool =
                conn.query_row("SELECT EXISTS(SELECT 1 FROM users WHERE email = ?1)", [&stored_email], |r| r.get(0))?;
            if taken {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "email_taken",
                    "a user with this email exists",
                )
                .with_param("email"));
            }
            let id: i64 = conn.query_row(
                "INSERT INTO users (email, password_hash, role, client_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 RETURNING id",
                params![stored_email, hash, role.as_str(), client_id, now],
                |row| row.get(0),
            )?;
            audit::record_in(conn, &principal, client_id, "user.create", &format!("user:{id}"))?;
            Ok(id)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserIdentity { id, object: "user".to_string(), email, role, client_id, created_at: now }),
    ))
}

/// Who a user is: what creating one answers, and the first half of [`User`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserIdentity {
    pub id: i64,
    /// Always `user`.
    pub object: String,
    pub email: String,
    pub role: Role,
    /// `null` for a platform admin.
    pub client_id: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A user with its lifecycle state (never a hash or secret), as every answer that
/// shows an existing user has it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct User {
    #[serde(flatten)]
    pub identity: UserIdentity,
    pub mfa_enabled: bool,
    /// `false` once deactivated: sign-in and sessions refused.
    pub active: bool,
    /// A temporary password set by an administrator is to be changed first.
    pub password_change_required: bool,
    /// Locked by failed sign-ins (until unlocked or the lock ends).
    pub locked: bool,
}

/// A page of users.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserList {
    pub data: Vec<User>,
    pub has_more: bool,
}

fn user_json(row: &crate::db::Row<'_>) -> crate::db::Result<User> {
    let role: String = row.get(2)?;
    let role = Role::parse(&role).ok_or_else(|| crate::db::Error::conversion(2, format!("role {role:?}")))?;
    Ok(User {
        identity: UserIdentity {
            id: row.get(0)?,
            object: "user".to_string(),
            email: row.get(1)?,
            role,
            client_id: row.get(3)?,
            created_at: row.get(5)?,
        },
        mfa_enabled: row.get::<_, i64>(4)? != 0,
        active: row.get::<_, i64>(6)? != 0,
        password_change_required: row.get::<_, i64>(7)? != 0,
        locked: row.get::<_, Option<i64>>(8)?.is_some_and(|until| until > now_secs()),
    })
}

/// The user with this id as the API shows it (no hash or secret).
pub(crate) fn user_by_id(conn: &crate::db::Conn, id: i64) -> crate::db::Result<User> {
    conn.query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id], user_json)
}

const USER_COLUMNS: &str =
    "id, email, role, client_id, mfa_enabled, created_at, active, must_change_password, locked_until";

#[derive(Debug, Deserialize)]
pub struct UserListQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
    /// Platform admins: one client's users (default: everyone); others see their own.
    client_id: Option<i64>,
}

/// `GET /v1/users?client_id=&limit=&starting_after=`: the users the caller manages,
/// oldest first: a client_admin its client's, a platform admin everyone's (or one
/// client's). Never a password hash or an MFA secret.
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<UserListQuery>,
) -> ApiResult<Json<UserList>> {
    principal.require_user(Role::ClientAdmin)?;
    let limit = crate::extract::page_limit(query.limit)?;
    let scope = match (principal.client_id, query.client_id) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::not_found("no such client").with_param("client_id"));
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Users, after, scope)?;
            }
            let mut stmt = conn.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id > ?1 AND (client_id = ?2 OR ?2 IS NULL) ORDER BY id LIMIT ?3"
            ))?;
            let rows =
                stmt.query_map(params![query.starting_after.unwrap_or(0), scope, fetch_limit(limit)], user_json)?;
            Ok(rows.collect::<Result<Vec<User>, _>>()?)
        })
        .await?;
    let (data, has_more) = page(data, limit);
    Ok(Json(UserList { data, has_more }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// `client_admin`, `operator` or `viewer`: a client's user stays a client's user.
    #[schema(schema_with = crate::schema::client_role)]
    role: String,
}

/// `PATCH /v1/users/{id}`: changes a client user's role (a client_admin, its own
/// client's users; a platform admin, anyone's). Nobody changes their own role, so a
/// client never loses its last administrator by accident; platform admins' roles do
/// not change here. Takes effect on the user's next request (sessions read the role).
pub async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<UserChange>,
) -> ApiResult<Json<User>> {
    principal.require_user(Role::ClientAdmin)?;
    let role = match Role::parse(&req.role) {
        Some(role @ (Role::ClientAdmin | Role::Operator | Role::Viewer)) => role,
        _ => {
            return Err(
                ApiError::invalid("invalid_role", "role is client_admin, operator or viewer").with_param("role")
            );
        }
    };
    let own_id = match principal.actor {
        crate::auth::Actor::User { id, .. } => id,
        crate::auth::Actor::Application { .. } => return Err(ApiError::forbidden("API keys cannot do this")),
    };
    let user = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let current: Option<(String, Option<i64>)> = tx
                .query_row("SELECT role, client_id FROM users WHERE id = ?1", [id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            let Some((current_role, client_id)) = current.filter(|(_, client)| {
                client.is_some_and(|c| principal.sees_client(c)) || principal.role == Role::Admin
            }) else {
                return Err(ApiError::not_found("no such user"));
            };
            if id == own_id {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "own_role",
                    "nobody changes their own role; ask another administrator",
                ));
            }
            if current_role == Role::Admin.as_str() {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "platform_admin_role",
                    "a platform admin's role does not change",
                ));
            }
            if current_role != role.as_str() {
                tx.execute("UPDATE users SET role = ?1 WHERE id = ?2", params![role.as_str(), id])?;
                audit::record_in(&tx, &principal, client_id, "user.role", &format!("user:{id}"))?;
            }
            let user = user_by_id(&tx, id)?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    Ok(Json(user))
}

/// Admins, and the client_admins of that client, manage its applications.
fn may_manage_applications(principal: &Principal, client_id: i64) -> Result<(), ApiError> {
    if !principal.sees_client(client_id) {
        return Err(ApiError::not_found("no such client"));
    }
    principal.require_user(Role::ClientAdmin)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApplication {
    #[schema(schema_with = crate::schema::name_200)]
    name: String,
}

/// A client application as listed: its key only as a hint.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Application {
    pub id: i64,
    /// Always `application`.
    pub object: String,
    pub client_id: i64,
    pub name: String,
    /// `sk_` and the first characters of the key's lookup part: enough to tell keys apart.
    pub key_hint: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `null` while the key works.
    pub revoked_at: Option<i64>,
}

/// A new application with its API key, shown only in this answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NewApplicationAnswer {
    pub id: i64,
    /// Always `application`.
    pub object: String,
    pub client_id: i64,
    pub name: String,
    /// `sk_...`: send as `Authorization: Bearer`; stored only as a hash.
    pub api_key: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A client's applications.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApplicationList {
    pub data: Vec<Application>,
    pub has_more: bool,
}

/// A revoked application: its key is refused from now on.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RevokedApplication {
    pub id: i64,
    /// Always `application`.
    pub object: String,
    pub client_id: i64,
    pub revoked: bool,
}

/// `POST /v1/clients/{id}/applications`: the API key is in this response only.
pub async fn create_application(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(client_id): ApiPath<i64>,
    ApiJson(req): ApiJson<NewApplication>,
) -> ApiResult<(StatusCode, Json<NewApplicationAnswer>)> {
    may_manage_applications(&principal, client_id)?;
    let name = name_arg(&req.name, "name")?;
    let (key, lookup, hash) = auth::new_api_key();
    let now = now_secs();
    let stored_name = name.clone();
    let id = state
        .db
        .call(move |conn| {
            let exists: bool = conn.query_row("SELECT EXISTS(SELECT 1 FROM clients WHERE id = ?1)", [client_id], |r| r.get(0))?;
            if !exists {
                return Err(ApiError::not_found("no such client"));
            }
            let id: i64 = conn.query_row(
                "INSERT INTO applications (client_id, name, key_lookup, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 RETURNING id",
                params![client_id, stored_name, lookup, hash, now],
                |row| row.get(0),
            )?;
            audit::record_in(conn, &principal, Some(client_id), "application.create", &format!("application:{id}"))?;
            Ok(id)
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(NewApplicationAnswer {
            id,
            object: "application".to_string(),
            client_id,
            name,
            api_key: key,
            created_at: now,
        }),
    ))
}

/// `GET /v1/clients/{id}/applications`: the client's applications, revoked ones too,
/// oldest first. A key is never shown again: only `key_hint`, the first characters
/// that tell keys apart.
pub async fn list_applications(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(client_id): ApiPath<i64>,
) -> ApiResult<Json<ApplicationList>> {
    may_manage_applications(&principal, client_id)?;
    let data = state
        .db
        .call(move |conn| {
            let exists: bool =
                conn.query_row("SELECT EXISTS(SELECT 1 FROM clients WHERE id = ?1)", [client_id], |r| r.get(0))?;
            if !exists {
                return Err(ApiError::not_found("no such client"));
            }
            let mut stmt = conn.prepare(
                "SELECT id, name, key_lookup, created_at, revoked_at FROM applications WHERE client_id = ?1
                 ORDER BY id LIMIT 1000",
            )?;
            let rows = stmt.query_map([client_id], |row| {
                let lookup: String = row.get(2)?;
                Ok(Application {
                    id: row.get(0)?,
                    object: "application".to_string(),
                    client_id,
                    name: row.get(1)?,
                    key_hint: format!("{}{}", auth::API_KEY_PREFIX, lookup.get(..8).unwrap_or_default()),
                    created_at: row.get(3)?,
                    revoked_at: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<Application>, _>>()?)
        })
        .await?;
    Ok(Json(ApplicationList { data, has_more: false }))
}

/// `DELETE /v1/clients/{id}/applications/{app_id}`: the key is refused from then on.
pub async fn revoke_application(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((client_id, app_id)): ApiPath<(i64, i64)>,
    // Read so the connection stays usable (an unread body makes hyper close it).
    _body: axum::body::Bytes,
) -> ApiResult<Json<RevokedApplication>> {
    may_manage_applications(&principal, client_id)?;
    let now = now_secs();
    let changed = state
        .db
        .call(move |conn| {
            let changed = conn.execute(
                "UPDATE applications SET revoked_at = coalesce(revoked_at, ?3) WHERE id = ?1 AND client_id = ?2",
                params![app_id, client_id, now],
            )?;
            if changed > 0 {
                audit::record_in(
                    conn,
                    &principal,
                    Some(client_id),
                    "application.revoke",
                    &format!("application:{app_id}"),
                )?;
            }
            Ok(changed)
        })
        .await?;
    if changed == 0 {
        return Err(ApiError::not_found("no such application"));
    }
    state.key_cache.forget_application(app_id);
    Ok(Json(RevokedApplication { id: app_id, object: "application".to_string(), client_id, revoked: true }))
}

/// Whether `email` is an address: a dot-atom local part (RFC 5322: letters, digits and
/// ``!#$%&'*+-/=?^_`{|}~``, dots between them; no quoted forms) of at most 64 bytes, `@`,
/// and a host name (labels of letters, digits and inner hyphens, at least two of them,
/// or `localhost`), 254 bytes in all. `"><img src=x>@x.test` is not one.
pub fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    let atom = |part: &str| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    };
    let label = |part: &str| {
        (1..=63).contains(&part.len())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    email.len() <= 254
        && local.len() <= 64
        && local.split('.').all(atom)
        && (domain.eq_ignore_ascii_case("localhost")
            || (domain.split('.').count() >= 2 && domain.split('.').all(label)))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/clients",
            Access::platform(Role::Admin),
            "Create a client (tenant)",
            routing::post(create_client),
        )
        .body::<NewClient>()
        .returns::<Client>()
        .errors(&[(400, "invalid_name")])
        .link("GetClient", "get /v1/clients/{id}", &[("id", "$response.body#/id")])
        .link("ListApplications", "get /v1/clients/{id}/applications", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/clients",
            Access::Member { role: Role::Viewer, keys: true, admins: true },
            "List the clients the caller sees",
            routing::get(list_clients),
        )
        .returns::<ClientList>(),
        Endpoint::new(
            Method::GET,
            "/v1/clients/{id}",
            Access::Member { role: Role::Viewer, keys: true, admins: true },
            "Get a client",
            routing::get(get_client),
        )
        .returns::<Client>(),
        Endpoint::new(
            Method::PATCH,
            "/v1/clients/{id}",
            Access::platform(Role::ClientAdmin),
            "Change a client's settings: mfa_required, time_zone, settlement_cutover, allowed_currencies",
            routing::patch(update_client),
        )
        .optional_body::<ClientSettings>()
        .returns::<Client>()
        .errors(&[(400, "invalid_time_zone"), (400, "invalid_cutover"), (400, "invalid_currency")]),
        Endpoint::new(
            Method::POST,
            "/v1/users",
            Access::platform(Role::ClientAdmin),
            "Create a user",
            routing::post(create_user),
        )
        .body::<NewUser>()
        .returns::<UserIdentity>()
        .errors(&[
            (400, "invalid_role"),
            (400, "invalid_email"),
            (400, "weak_password"),
            (400, "invalid_client"),
            (400, "missing_field"),
            (404, "not_found"),
            (409, "email_taken"),
        ])
        .link("UpdateUser", "patch /v1/users/{id}", &[("id", "$response.body#/id")])
        .link("ListSessions", "get /v1/users/{id}/sessions", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/users",
            Access::platform(Role::ClientAdmin),
            "List the users the caller manages (a client_admin: its client's)",
            routing::get(list_users),
        )
        .query(&["limit", "starting_after", "client_id"])
        .returns::<UserList>(),
        Endpoint::new(
            Method::PATCH,
            "/v1/users/{id}",
            Access::platform(Role::ClientAdmin),
            "Change a client user's role (not one's own)",
            routing::patch(update_user),
        )
        .body::<UserChange>()
        .returns::<User>()
        .errors(&[(400, "invalid_role"), (409, "own_role"), (409, "platform_admin_role")]),
        Endpoint::new(
            Method::GET,
            "/v1/clients/{id}/applications",
            Access::platform(Role::ClientAdmin),
            "List a client's applications (never their keys)",
            routing::get(list_applications),
        )
        .returns::<ApplicationList>(),
        Endpoint::new(
            Method::POST,
            "/v1/clients/{id}/applications",
            Access::platform(Role::ClientAdmin),
            "Create a client application and its API key (shown once)",
            routing::post(create_application),
        )
        .body::<NewApplication>()
        .returns::<NewApplicationAnswer>()
        .errors(&[(400, "invalid_name")])
        .link(
            "RevokeApplication",
            "delete /v1/clients/{id}/applications/{app_id}",
            &[("id", "$response.body#/client_id"), ("app_id", "$response.body#/id")],
        ),
        Endpoint::new(
            Method::DELETE,
            "/v1/clients/{id}/applications/{app_id}",
            Access::platform(Role::ClientAdmin),
            "Revoke a client application's API key",
            routing::delete(revoke_application),
        )
        .returns::<RevokedApplication>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::is_email;

    #[test]
    fn emails_are_addresses() {
        for good in ["a@b.test", "first.last+tag@mail.example.com", "o'brien@x.io", "admin@localhost", "A_B@x-y.z9"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "\"><img src=x>@x.test",
            "a b@x.test",
            "@x.test",
            "a@",
            "a@x",
            "a@@x.test",
            "a@x..test",
            ".a@x.test",
            "a.@x.test",
            "a..b@x.test",
            "a@-x.test",
            "a@x_y.test",
            "a@x.test\u{202e}",
            "a\u{0}@x.test",
            "",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(!is_email(&format!("{}@x.test", "a".repeat(65))));
    }
}
