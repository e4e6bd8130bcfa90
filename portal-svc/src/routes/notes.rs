//! Notes on transactions, devices and tickets. A note can only be attached to, and
//! listed for, a resource of the caller's client: anything else is 404.

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::db::now_secs;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, page_limit};
use crate::routes::transactions;

const BODY_CHARS_MAX: usize = 10_000;
/// What a note can be attached to.
pub const RESOURCE_TYPES: [&str; 3] = ["transaction", "device", "ticket"];

/// A resource of the caller's client, checked to exist; its id in canonical form.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: &'static str,
    pub id: String,
}

fn resource_kind(kind: &str) -> Result<&'static str, ApiError> {
    RESOURCE_TYPES.into_iter().find(|k| *k == kind).ok_or_else(|| {
        ApiError::invalid("invalid_resource_type", "resource_type is transaction, device or ticket")
            .with_param("resource_type")
    })
}

/// Resolves `(kind, id)` to a resource of `client_id`, or 404.
pub fn resolve(state: &AppState, client_id: i64, kind: &str, id: &Value) -> Result<Resource, ApiError> {
    let kind = resource_kind(kind)?;
    let not_found = || ApiError::not_found(format!("no such {kind}")).with_param("resource_id");
    let id = match id {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ApiError::invalid("invalid_resource_id", "resource_id is a string or an integer")
                .with_param("resource_id"));
        }
    };
    match kind {
        "transaction" => {
            let ledger_client = u64::try_from(client_id).map_err(|_| not_found())?;
            let record = transactions::own_transaction(state, ledger_client, &id).map_err(|_| not_found())?;
            Ok(Resource { kind, id: transactions::tx_id_string(record.tx.id) })
        }
        _ => {
            let number: i64 = id.parse().map_err(|_| not_found())?;
            Ok(Resource { kind, id: number.to_string() })
        }
    }
}

/// Checks that a device or ticket resource belongs to `client_id` (transactions are
/// checked against the ledger in [`resolve`]).
fn check_owned(conn: &Connection, client_id: i64, resource: &Resource) -> Result<(), ApiError> {
    let table = match resource.kind {
        "device" => "devices",
        "ticket" => "tickets",
        _ => return Ok(()),
    };
    conn.query_row(
        &format!("SELECT 1 FROM {table} WHERE id = ?1 AND client_id = ?2"),
        params![resource.id, client_id],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found(format!("no such {}", resource.kind)).with_param("resource_id"))
}

/// What a note is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoteResource {
    Transaction,
    Device,
    Ticket,
}

/// A note on a transaction, device or ticket.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Note {
    pub id: i64,
    /// Always `note`.
    pub object: String,
    pub resource_type: NoteResource,
    /// The resource's id as its own API names it (`tx_...`, or a number as text).
    pub resource_id: String,
    pub body: String,
    /// Who wrote it (a user's email, `application:ID`).
    pub author: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A page of notes, oldest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NoteList {
    pub data: Vec<Note>,
    pub has_more: bool,
}

fn note_row(row: &Row<'_>) -> crate::db::Result<Note> {
    let resource_type = match row.get::<_, String>(1)?.as_str() {
        "device" => NoteResource::Device,
        "ticket" => NoteResource::Ticket,
        _ => NoteResource::Transaction,
    };
    Ok(Note {
        id: row.get(0)?,
        object: "note".to_string(),
        resource_type,
        resource_id: row.get(2)?,
        body: row.get(3)?,
        author: row.get(4)?,
        created_at: row.get(5)?,
    })
}

const NOTE_COLUMNS: &str = "id, resource_type, resource_id, body, author, created_at";

/// The notes of a resource, oldest first, after note `after` (for pagination).
pub fn notes_of(
    conn: &Connection,
    client_id: i64,
    resource: &Resource,
    after: i64,
    limit: usize,
) -> Result<Vec<Note>, ApiError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {NOTE_COLUMNS} FROM notes WHERE client_id = ?1 AND resource_type = ?2 AND resource_id = ?3 AND id > ?4
         ORDER BY id LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![client_id, resource.kind, resource.id, after, i64::try_from(limit).unwrap_or(i64::MAX)],
        note_row,
    )?;
    Ok(rows.collect::<Result<Vec<Note>, _>>()?)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// `transaction`, `device` or `ticket`.
    #[schema(schema_with = crate::schema::note_resource_type)]
    resource_type: String,
    /// The resource's id: `tx_...` for a transaction, the number of a device or ticket.
    #[schema(schema_with = crate::schema::required_text)]
    resource_id: Value,
    #[schema(schema_with = crate::schema::name_10000)]
    body: String,
}

/// `POST /v1/notes` (operator+).
async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<NewNote>,
) -> ApiResult<(StatusCode, Json<Note>)> {
    let client_id = principal.own_client()?;
    let body = req.body.trim().to_string();
    if body.is_empty() || body.chars().count() > BODY_CHARS_MAX {
        return Err(ApiError::invalid("invalid_text", format!("body must be 1 to {BODY_CHARS_MAX} characters"))
            .with_param("body"));
    }
    let resource = resolve(&state, client_id, &req.resource_type, &req.resource_id)?;
    let author = principal.label();
    let note = state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            check_owned(&tx, client_id, &resource)?;
            let id: i64 = tx.query_row(
                "INSERT INTO notes (client_id, resource_type, resource_id, body, author, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 RETURNING id",
                params![client_id, resource.kind, resource.id, body, author, now_secs()],
                |row| row.get(0),
            )?;
            audit::record(&tx, &principal, "note.create", &format!("{}:{}", resource.kind, resource.id))?;
            let note = tx.query_row(&format!("SELECT {NOTE_COLUMNS} FROM notes WHERE id = ?1"), [id], note_row)?;
            tx.commit()?;
            Ok(note)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(note)))
}

#[derive(Debug, Deserialize)]
pub struct NotesQuery {
    resource_type: Option<String>,
    resource_id: Option<String>,
    limit: Option<usize>,
    starting_after: Option<i64>,
}

/// `GET /v1/notes?resource_type=&resource_id=` (viewer+): oldest first.
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ApiQuery(query): crate::extract::ApiQuery<NotesQuery>,
) -> ApiResult<Json<NoteList>> {
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    let (Some(kind), Some(id)) = (query.resource_type, query.resource_id) else {
        return Err(ApiError::invalid("missing_field", "resource_type and resource_id are required")
            .with_param("resource_type"));
    };
    let resource = resolve(&state, client_id, &kind, &Value::String(id))?;
    let after = query.starting_after.unwrap_or(0);
    let data = state
        .db
        .call(move |conn| {
            check_owned(conn, client_id, &resource)?;
            if let Some(after) = query.starting_after {
                crate::extract::cursor_exists(conn, crate::extract::CursorList::Notes, after, Some(client_id))?;
            }
            notes_of(conn, client_id, &resource, after, limit + 1)
        })
        .await?;
    let has_more = data.len() > limit;
    let mut data = data;
    data.truncate(limit);
    Ok(Json(NoteList { data, has_more }))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::POST,
            "/v1/notes",
            Access::member(Role::Operator),
            "Attach a note to a transaction, device or ticket",
            routing::post(create),
        )
        .body::<NewNote>()
        .returns::<Note>()
        .errors(&[
            (400, "invalid_resource_type"),
            (400, "invalid_resource_id"),
            (400, "missing_field"),
            (404, "not_found"),
        ]),
        Endpoint::new(
            Method::GET,
            "/v1/notes",
            Access::member(Role::Viewer),
            "The notes of a transaction, device or ticket, oldest first",
            routing::get(list),
        )
        .query(&["resource_type", "resource_id", "limit", "starting_after"])
        .required_query(&["resource_type", "resource_id"])
        .returns::<NoteList>()
        .errors(&[
            (400, "invalid_resource_type"),
            (400, "invalid_resource_id"),
            (400, "missing_field"),
            (404, "not_found"),
        ]),
    ]
}
