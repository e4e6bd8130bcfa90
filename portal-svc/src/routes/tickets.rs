//! Support tickets with a status state machine, assignment and comments, scoped to the
//! caller's client.

use crate::db::{OptionalExtension, Row};
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, fetch_limit, page_limit};
use axum::http::Method;
use axum::routing;

const SUBJECT_CHARS_MAX: usize = 200;
const BODY_CHARS_MAX: usize = 20_000;
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
/// Every status, in workflow order.
pub const STATUSES: [&str; 5] = ["open", "in_progress", "waiting", "resolved", "closed"];

/// Whether a ticket may go from `from` to `to`. Staying put is not a transition; a
/// closed ticket is final; a resolved one can be reopened or closed.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("open", "in_progress" | "waiting" | "resolved" | "closed")
            | ("in_progress", "open" | "waiting" | "resolved")
            | ("waiting", "open" | "in_progress" | "resolved")
            | ("resolved", "open" | "closed")
    )
}

fn text_arg(text: &str, param: &'static str, max: usize) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(
            ApiError::invalid("invalid_text", format!("{param} must be 1 to {max} characters")).with_param(param)
        );
    }
    Ok(text.to_string())
}

/// A ticket's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketPriority {
    Low,
    Normal,
    High,
    Urgent,
}

/// Where a ticket stands (transitions in `transition_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    InProgress,
    Waiting,
    Resolved,
    Closed,
}

impl TicketStatus {
    fn parse(s: &str) -> TicketStatus {
        match s {
            "in_progress" => TicketStatus::InProgress,
            "waiting" => TicketStatus::Waiting,
            "resolved" => TicketStatus::Resolved,
            "closed" => TicketStatus::Closed,
            _ => TicketStatus::Open,
        }
    }

    /// Its name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::InProgress => "in_progress",
            TicketStatus::Waiting => "waiting",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }
}

/// A comment on a ticket.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Comment {
    pub id: i64,
    /// Always `comment`.
    pub object: String,
    pub ticket_id: i64,
    /// Who wrote it (a user's email, `application:ID`).
    pub author: String,
    pub body: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A support ticket; `GET /v1/tickets/{id}` adds its comments.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub id: i64,
    /// Always `ticket`.
    pub object: String,
    pub subject: String,
    pub body: String,
    pub priority: TicketPriority,
    pub status: TicketStatus,
    /// A user of the same client.
    pub assignee_id: Option<i64>,
    /// The assignee by id and email (users have no other name); `null`: nobody.
    pub assignee: Option<Assignee>,
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// Oldest first; only when one ticket is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comments: Option<Vec<Comment>>,
}

/// A user a ticket is (or may be) assigned to.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Assignee {
    pub id: i64,
    pub email: String,
}

/// Who a ticket may be assigned to: the client's active users, by email.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AssigneeList {
    pub data: Vec<Assignee>,
    pub has_more: bool,
}

/// Users listed as possible assignees at most.
const ASSIGNEES_MAX: usize = 1000;

/// A page of tickets, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TicketList {
    pub data: Vec<Ticket>,
    pub has_more: bool,
}

fn ticket_row(row: &Row<'_>) -> crate::db::Result<Ticket> {
    let priority = match row.get::<_, String>(3)?.as_str() {
        "low" => TicketPriority::Low,
        "high" => TicketPriority::High,
        "urgent" => TicketPriority::Urgent,
        _ => TicketPriority::Normal,
    };
    Ok(Ticket {
        id: row.get(0)?,
        object: "ticket".to_string(),
        subject: row.get(1)?,
        body: row.get(2)?,
        priority,
        status: TicketStatus::parse(&row.get::<_, String>(4)?),
        assignee_id: row.get(5)?,
        assignee: match (row.get(5)?, row.get(9)?) {
            (Some(id), Some(email)) => Some(Assignee { id, email }),
            _ => None,
        },
        created_by: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        comments: None,
    })
}

/// The assignee's email is looked up within the ticket's client only.
const TICKET_COLUMNS: &str = "id, subject, body, priority, status, assignee_id, created_by, created_at, updated_at,
    (SELECT email FROM users WHERE users.id = tickets.assignee_id AND users.client_id = tickets.client_id)";

fn load(conn: &crate::db::Conn, client_id: i64, id: i64) -> Result<Ticket, ApiError> {
    conn.query_row(
        &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1 AND client_id = ?2"),
        params![id, client_id],
        ticket_row,
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found("no such ticket"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    #[schema(schema_with = crate::schema::name_200)]
    subject: String,
    #[schema(schema_with = crate::schema::name_20000)]
    body: String,
    #[schema(value_type = Option<TicketPriority>)]
    priority: Option<String>,
}

/// `POST /v1/tickets` (operator+).
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewTicket>,
) -> ApiResult<(StatusCode, Json<Ticket>)> {
    principal.require(Role::Operator)?;
    let client_id = principal.own_client()?;
    let subject = text_arg(&req.subject, "subject", SUBJECT_CHARS_MAX)?;
    let body = text_arg(&req.body, "body", BODY_CHARS_MAX)?;
    let priority = req.priority.unwrap_or_else(|| "normal".into());
    if !PRIORITIES.contains(&priority.as_str()) {
        return Err(
            ApiError::invalid("invalid_priority", "priority is low, normal, high or urgent").with_param("priority")
        );
    }
    let created_by = principal.label();
    let ticket = state
        .db
        .call(move |conn| {
            let now = now_secs();
            let id: i64 = conn.query_row(
                "INSERT INTO tickets (client_id, subject, body, priority, status, created_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5, ?6, ?6)
                 RETURNING id",
                params![client_id, subject, body, priority, created_by, now],
                |row| row.get(0),
            )?;
            audit::record(conn, &principal, "ticket.create", &format!("ticket:{id}"))?;
            load(conn, client_id, id)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(ticket)))
}

/// `GET /v1/tickets/assignees` (operator+): the client's active users, by email.
pub async fn assignees(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<AssigneeList>> {
    principal.require(Role::Operator)?;
    let client_id = principal.own_client()?;
    let (data, has_more) = state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, email FROM users WHERE client_id = ?1 AND active = 1 ORDER BY email LIMIT ?2",
            )?;
            let limit = i64::try_from(ASSIGNEES_MAX + 1).unwrap_or(i64::MAX);
            let rows =
                stmt.query_map(params![client_id, limit], |r| Ok(Assignee { id: r.get(0)?, email: r.get(1)? }))?;
            let mut data = rows.collect::<Result<Vec<_>, _>>()?;
            let has_more = data.len() > ASSIGNEES_MAX;
            data.truncate(ASSIGNEES_MAX);
            Ok((data, has_more))
        })
        .await?;
    Ok(Json(AssigneeList { data, has_more }))
}

#[derive(Debug, Deserialize)]
pub struct TicketQuery {
    limit: Option<usize>,
    /// A ticket id: the page continues with older tickets.
    starting_after: Option<i64>,
    status: Option<String>,
}

/// `GET /v1/tickets?limit=&starting_after=&status=` (viewer+): newest first.
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<TicketQuery>,
) -> ApiResult<Json<TicketList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    if let Some(status) = &query.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid("invalid_status", "status is open, in_progress, waiting, resolved or closed")
            .with_param("status"));
    }
    let before = query.starting_after.unwrap_or(i64::MAX);
    let data = state
        .db
        .call(move |conn| {
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Tickets, after, Some(client_id))?;
            }
            let mut stmt = conn.prepare(&format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE client_id = ?1 AND id < ?2 AND (status = ?3 OR ?3 IS NULL)
                 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![client_id, before, query.status, fetch_limit(limit)], ticket_row)?;
            Ok(rows.collect::<Result<Vec<Ticket>, _>>()?)
        })
        .await?;
    let has_more = data.len() > limit;
    let mut data = data;
    data.truncate(limit);
    Ok(Json(TicketList { data, has_more }))
}

/// `GET /v1/tickets/{id}` (viewer+), with its comments.
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Ticket>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let ticket = state
        .db
        .call(move |conn| {
            let mut ticket = load(conn, client_id, id)?;
            let mut stmt = conn
                .prepare("SELECT id, author, body, created_at FROM ticket_comments WHERE ticket_id = ?1 ORDER BY id")?;
            let comments = stmt
                .query_map([id], |row| {
                    Ok(Comment {
                        id: row.get(0)?,
                        object: "comment".to_string(),
                        ticket_id: id,
                        author: row.get(1)?,
                        body: row.get(2)?,
                        created_at: row.get(3)?,
                    })
                })?
                .collect::<Result<Vec<Comment>, _>>()?;
            ticket.comments = Some(comments);
            Ok(ticket)
        })
        .await?;
    Ok(Json(ticket))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketChange {
    #[schema(value_type = Option<TicketStatus>)]
    status: Option<String>,
    /// A user of the same client; `null` unassigns.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    assignee_id: Option<Option<i64>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// `PATCH /v1/tickets/{id}` (operator+): status (illegal transitions are 409) and
/// assignment.
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<TicketChange>,
) -> ApiResult<Json<Ticket>> {
    principal.require(Role::Operator)?;
    let client_id = principal.own_client()?;
    if let Some(status) = &req.status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::invalid("invalid_status", "status is open, in_progress, waiting, resolved or closed")
            .with_param("status"));
    }
    let ticket = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            let current = load(&tx, client_id, id)?;
            let from = current.status.as_str().to_string();
            if let Some(to) = &req.status
                && *to != from
                && !transition_allowed(&from, to)
            {
                return Err(ApiError::conflict(
                    "invalid_request_error",
                    "illegal_transition",
                    format!("a ticket cannot go from {from} to {to}"),
                )
                .with_param("status"));
            }
            if let Some(Some(assignee)) = req.assignee_id {
                let same_client: bool = tx.query_row(
                    "SELECT EXISTS(SELECT 1 FROM users WHERE id = ?1 AND client_id = ?2)",
                    params![assignee, client_id],
                    |r| r.get(0),
                )?;
                if !same_client {
                    return Err(ApiError::not_found("no such user").with_param("assignee_id"));
                }
            }
            let now = now_secs();
            if let Some(to) = &req.status {
                tx.execute("UPDATE tickets SET status = ?1, updated_at = ?2 WHERE id = ?3", params![to, now, id])?;
            }
            if let Some(assignee) = req.assignee_id {
                tx.execute(
                    "UPDATE tickets SET assignee_id = ?1, updated_at = ?2 WHERE id = ?3",
                    params![assignee, now, id],
                )?;
            }
            let ticket = load(&tx, client_id, id)?;
            audit::record(&tx, &principal, "ticket.update", &format!("ticket:{id}"))?;
            // The event is committed with the change it announces (issue 17).
            let event = if req.status.is_some() || req.assignee_id.is_some() {
                let object = serde_json::to_value(&ticket).map_err(ApiError::internal)?;
                crate::events::insert(&tx, &crate::events::of_change(client_id, "ticket.updated", object))?
            } else {
                None
            };
            tx.commit()?;
            Ok((ticket, event))
        })
        .await?;
    let (ticket, event) = ticket;
    state.webhooks.published(event);
    Ok(Json(ticket))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    #[schema(schema_with = crate::schema::name_20000)]
    body: String,
}

/// `POST /v1/tickets/{id}/comments` (operator+).
pub async fn comment(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<NewComment>,
) -> ApiResult<(StatusCode, Json<Comment>)> {
    principal.require(Role::Operator)?;
    let client_id = principal.own_client()?;
    let body = text_arg(&req.body, "body", BODY_CHARS_MAX)?;
    let by = principal.label();
    let comment = state
        .db
        .call(move |conn| {
            load(conn, client_id, id)?;
            let now = now_secs();
            let tx = crate::db::write_tx(conn)?;
            // Read before the audit entry is inserted, which would be the last row then
            // (the answer carried the audit entry's id: issue 15).
            let comment_id: i64 = tx.query_row(
                "INSERT INTO ticket_comments (ticket_id, author, body, created_at) VALUES (?1, ?2, ?3, ?4)
                 RETURNING id",
                params![id, by, body, now],
                |row| row.get(0),
            )?;
            audit::record(&tx, &principal, "ticket.comment", &format!("ticket:{id}"))?;
            tx.commit()?;
            Ok(Comment {
                id: comment_id,
                object: "comment".to_string(),
                ticket_id: id,
                author: by,
                body,
                created_at: now,
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(comment)))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/tickets",
            Access::member(Role::Operator),
            "Open a support ticket",
            routing::post(create),
        )
        .body::<NewTicket>()
        .returns::<Ticket>()
        .errors(&[(400, "invalid_priority")])
        .link("GetTicket", "get /v1/tickets/{id}", &[("id", "$response.body#/id")])
        .link("UpdateTicket", "patch /v1/tickets/{id}", &[("id", "$response.body#/id")])
        .link("CommentTicket", "post /v1/tickets/{id}/comments", &[("id", "$response.body#/id")]),
        Endpoint::new(
            Method::GET,
            "/v1/tickets",
            Access::member(Role::Viewer),
            "List support tickets",
            routing::get(list),
        )
        .returns::<TicketList>()
        .errors(&[(400, "invalid_status")])
        .query(&["limit", "starting_after", "status"]),
        Endpoint::new(
            Method::GET,
            "/v1/tickets/assignees",
            Access::member(Role::Operator),
            "List who a ticket may be assigned to",
            routing::get(assignees),
        )
        .returns::<AssigneeList>(),
        Endpoint::new(
            Method::GET,
            "/v1/tickets/{id}",
            Access::member(Role::Viewer),
            "Get a ticket with its comments",
            routing::get(get),
        )
        .returns::<Ticket>(),
        Endpoint::new(
            Method::PATCH,
            "/v1/tickets/{id}",
            Access::member(Role::Operator),
            "Change a ticket's status or assignee",
            routing::patch(update),
        )
        .optional_body::<TicketChange>()
        .returns::<Ticket>()
        .errors(&[(400, "invalid_status"), (404, "not_found"), (409, "illegal_transition")]),
        Endpoint::new(
            Method::POST,
            "/v1/tickets/{id}/comments",
            Access::member(Role::Operator),
            "Comment on a ticket",
            routing::post(comment),
        )
        .body::<NewComment>()
        .returns::<Comment>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine() {
        assert!(transition_allowed("open", "in_progress"));
        assert!(transition_allowed("resolved", "open"), "reopen");
        assert!(transition_allowed("resolved", "closed"));
        for to in STATUSES {
            assert!(!transition_allowed("closed", to), "closed is final ({to})");
            assert!(!transition_allowed(to, to), "staying is not a transition ({to})");
        }
        assert!(!transition_allowed("in_progress", "closed"), "close only once resolved or from open");
        assert!(!transition_allowed("open", "bogus"));
    }
}
