//! The audit trail over HTTP: `GET /v1/audit` (a client admin its client's entries, a
//! platform admin everyone's), newest first, and `GET /v1/audit/verify` (platform
//! admins), which recomputes the hash chain.

use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::extract::{fetch_limit, page_limit};

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
    starting_after: Option<i64>,
    /// One action (`transaction.refund`), or a family with a trailing dot (`auth.`).
    action: Option<String>,
    /// `ok`, `refused` or `failed`.
    outcome: Option<String>,
    actor_type: Option<String>,
    actor_id: Option<i64>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    /// Unix seconds, inclusive.
    from: Option<i64>,
    /// Unix seconds, exclusive.
    to: Option<i64>,
    /// Platform admins: one client's entries.
    client_id: Option<i64>,
    /// `json` (default) or `csv` (the page's entries, with a header line).
    format: Option<String>,
}

/// Who an entry's actor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ApiKey,
    System,
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Refused,
    Failed,
}

/// One audit entry as the API shows it (the HTTP contract's fields).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Always `audit_entry`.
    pub object: String,
    /// Unix seconds.
    pub at: i64,
    pub actor_type: ActorType,
    pub actor_id: Option<i64>,
    /// How the actor is named (a user's email, `application:ID`, `system`).
    pub actor: String,
    pub client_id: Option<i64>,
    /// `transaction.payment`, `auth.login`, ...
    #[schema(example = "transaction.refund")]
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    /// Particulars (amount, currency, error code, ...).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// A page of audit entries, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntryList {
    pub data: Vec<AuditEntry>,
    pub has_more: bool,
}

/// What recomputing the chain found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditVerification {
    /// Always `audit_verification`.
    pub object: String,
    pub ok: bool,
    pub entries: u64,
    /// The first entry whose hash does not follow (edited, or the one after a removal).
    pub first_bad_id: Option<i64>,
    /// The newest entry's hash, hex: keep it elsewhere now and then and compare.
    pub head: String,
}

/// One entry as the API shows it.
fn entry_row(row: &crate::db::Row<'_>) -> crate::db::Result<AuditEntry> {
    let detail: Option<String> = row.get(9)?;
    let actor_type = match row.get::<_, String>(2)?.as_str() {
        "api_key" => ActorType::ApiKey,
        "system" => ActorType::System,
        _ => ActorType::User,
    };
    let outcome = match row.get::<_, String>(10)?.as_str() {
        "refused" => Outcome::Refused,
        "failed" => Outcome::Failed,
        _ => Outcome::Ok,
    };
    Ok(AuditEntry {
        id: row.get(0)?,
        object: "audit_entry".to_string(),
        at: row.get(1)?,
        actor_type,
        actor_id: row.get(3)?,
        actor: row.get(4)?,
        client_id: row.get(5)?,
        action: row.get(6)?,
        resource_type: row.get(7)?,
        resource_id: row.get(8)?,
        outcome,
        detail: detail.and_then(|d| serde_json::from_str::<Value>(&d).ok()),
    })
}

/// `GET /v1/audit?limit=&starting_after=&action=&outcome=&actor_type=&actor_id=&resource_type=&resource_id=&from=&to=&client_id=`.
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<AuditQuery>,
) -> ApiResult<Response> {
    principal.require_user(Role::ClientAdmin)?;
    let q = query;
    let limit = page_limit(q.limit)?;
    let scope = match (principal.client_id, q.client_id) {
        (Some(own), Some(asked)) if own != asked => {
            return Err(ApiError::not_found("no such client").with_param("client_id"));
        }
        (Some(own), _) => Some(own),
        (None, asked) => asked,
    };
    if let (Some(from), Some(to)) = (q.from, q.to)
        && from >= to
    {
        return Err(ApiError::invalid("invalid_period", "from must be before to").with_param("from"));
    }
    if let Some(outcome) = q.outcome.as_deref()
        && !["ok", "refused", "failed"].contains(&outcome)
    {
        return Err(ApiError::invalid("invalid_outcome", "outcome is ok, refused or failed").with_param("outcome"));
    }
    // An unknown actor type matched nothing (200 and empty); it is refused like an
    // unknown outcome (found by Schemathesis: `actor_type=null`).
    if let Some(actor_type) = q.actor_type.as_deref()
        && !["user", "api_key", "system"].contains(&actor_type)
    {
        return Err(
            ApiError::invalid("invalid_actor_type", "actor_type is user, api_key or system").with_param("actor_type")
        );
    }
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::invalid("invalid_format", "format is json or csv").with_param("format")),
    };
    let (action, family) = match q.action {
        Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
        other => (other, None),
    };
    // Entries of answered money actions may still be queued: list them too.
    state.db.settle().await?;
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = q.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Audit, after, scope)?;
            }
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor_type, actor_id, actor, client_id, action, resource_type, resource_id, detail,
                        outcome
                 FROM audit_log
                 WHERE id < ?1 AND (client_id = ?2 OR ?2 IS NULL) AND (action = ?3 OR ?3 IS NULL)
                   AND (action LIKE ?4 OR ?4 IS NULL) AND (outcome = ?5 OR ?5 IS NULL)
                   AND (actor_type = ?6 OR ?6 IS NULL) AND (actor_id = ?7 OR ?7 IS NULL)
                   AND (resource_type = ?8 OR ?8 IS NULL) AND (resource_id = ?9 OR ?9 IS NULL)
                   AND (at >= ?10 OR ?10 IS NULL) AND (at < ?11 OR ?11 IS NULL)
                 ORDER BY id DESC LIMIT ?12",
            )?;
            let rows = stmt.query_map(
                params![
                    q.starting_after.unwrap_or(i64::MAX),
                    scope,
                    action,
                    family,
                    q.outcome,
                    q.actor_type,
                    q.actor_id,
                    q.resource_type,
                    q.resource_id,
                    q.from,
                    q.to,
                    fetch_limit(limit)
                ],
                entry_row,
            )?;
            Ok(rows.collect::<Result<Vec<AuditEntry>, _>>()?)
        })
        .await?;
    if csv {
        let values: Vec<Value> = data.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], to_csv(&values, limit)).into_response());
    }
    let has_more = data.len() > limit;
    let mut data = data;
    data.truncate(limit);
    Ok(Json(AuditEntryList { data, has_more }).into_response())
}

/// Entries as CSV: a header line, then one line per entry (at most `limit`), every
/// text field quoted as needed and kept from being read as a spreadsheet formula.
fn to_csv(data: &[Value], limit: usize) -> String {
    const COLUMNS: [&str; 11] = [
        "id",
        "at",
        "actor_type",
        "actor_id",
        "actor",
        "client_id",
        "action",
        "resource_type",
        "resource_id",
        "outcome",
        "detail",
    ];
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for entry in data.iter().take(limit) {
        let fields: Vec<String> = COLUMNS
            .iter()
            .map(|c| match &entry[*c] {
                Value::Null => String::new(),
                Value::String(s) => crate::routes::reports::csv_field(s),
                Value::Object(_) => crate::routes::reports::csv_field(&entry[*c].to_string()),
                other => other.to_string(),
            })
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// `GET /v1/audit/verify`: `{ok, entries, first_bad_id, head}`. Reads on a connection
/// of its own, so a long log does not hold up other requests.
async fn verify(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<AuditVerification>> {
    principal.require_user(Role::Admin)?;
    state.db.settle().await?;
    let verdict = state.db.call_own(|conn| Ok(crate::audit::verify(conn)?)).await?;
    Ok(Json(AuditVerification {
        object: "audit_verification".to_string(),
        ok: verdict.first_bad_id.is_none(),
        entries: verdict.entries,
        first_bad_id: verdict.first_bad_id,
        head: verdict.head,
    }))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::GET,
            "/v1/audit",
            Access::platform(Role::ClientAdmin),
            "The audit trail, newest first (a client admin: its client's)",
            routing::get(list),
        )
        .returns::<AuditEntryList>()
        .returns_as::<crate::routes::reports::CsvText>("text/csv")
        .errors(&[
            (400, "invalid_outcome"),
            (400, "invalid_actor_type"),
            (400, "invalid_period"),
            (400, "invalid_format"),
        ])
        .query(&[
            "limit",
            "starting_after",
            "action",
            "outcome",
            "actor_type",
            "actor_id",
            "resource_type",
            "resource_id",
            "from",
            "to",
            "client_id",
            "format",
        ]),
        Endpoint::new(
            Method::GET,
            "/v1/audit/verify",
            Access::platform(Role::Admin),
            "Recompute the audit trail's hash chain: the first edited or removed entry",
            routing::get(verify),
        )
        .returns::<AuditVerification>(),
    ]
}
