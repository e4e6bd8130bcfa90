//! The caller's client's events: `GET /v1/events` (newest first) and
//! `GET /v1/events/stream`, a server-sent event stream of new ones, which the web
//! portal's transactions and devices pages follow to refresh live.

use std::time::Duration;

use crate::db::OptionalExtension;
use crate::params;
use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing;
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, ApiResult};
use crate::events::{EventList, event_row};
use crate::extract::{ApiQuery, fetch_limit, page_limit};

/// How long one stream lasts: a browser's `EventSource` reconnects by itself, and so
/// its credentials are checked again (a session ended meanwhile is refused then).
pub const STREAM_SECS_MAX: u64 = 900;
/// Seconds between keep-alive comments on a quiet stream.
const KEEP_ALIVE_SECS: u64 = 15;

#[derive(Debug, Deserialize)]
pub struct EventQuery {
    limit: Option<usize>,
    /// An event id: the page continues with older events.
    starting_after: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

const LIST_COLUMNS: &str = "seq, id, client_id, type, created_at, object";

/// `GET /v1/events?type=&limit=&starting_after=` (viewer+, API keys): newest first.
async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> ApiResult<Json<EventList>> {
    principal.require(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let limit = page_limit(query.limit)?;
    if let Some(kind) = &query.kind
        && !crate::events::TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::invalid("invalid_type", format!("type is one of {}", crate::events::TYPES.join(", ")))
            .with_param("type"));
    }
    let data = state
        .db
        .call(move |conn| {
            let before = match &query.starting_after {
                None => i64::MAX,
                Some(id) => conn
                    .prepare_cached("SELECT seq FROM events WHERE id = ?1 AND client_id = ?2")?
                    .query_row(params![id, client_id], |row| row.get(0))
                    .optional()?
                    .ok_or_else(crate::extract::unknown_cursor)?,
            };
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LIST_COLUMNS} FROM events WHERE client_id = ?1 AND seq < ?2 AND (type = ?3 OR ?3 IS NULL)
                 ORDER BY seq DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![client_id, before, query.kind, fetch_limit(limit)], event_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    let (data, has_more) = crate::extract::page(data, limit);
    Ok(Json(EventList { data, has_more }))
}

/// The stream's media type in the document.
#[derive(Debug, utoipa::ToSchema)]
pub struct EventStream(pub String);

/// `GET /v1/events/stream` (signed-in users, viewer+): `text/event-stream` of the
/// client's new events, each as `event: TYPE`, `id: EVENT_ID`, `data: EVENT_JSON`; an
/// `event: lagged` says some were missed (reload the list). Ends after
/// [`STREAM_SECS_MAX`] (the browser reconnects) and when the service stops.
async fn stream(State(state): State<AppState>, principal: Principal) -> ApiResult<impl axum::response::IntoResponse> {
    use futures_util::StreamExt;
    principal.require_user(Role::Viewer)?;
    let client_id = principal.own_client()?;
    let receiver = state.webhooks.stream.subscribe();
    let mut closing = state.webhooks.closing();
    if *closing.borrow_and_update() {
        return Err(ApiError::internal("the service is stopping"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(STREAM_SECS_MAX);
    let events = futures_util::stream::unfold((receiver, closing), move |(mut receiver, mut closing)| async move {
        loop {
            let next = tokio::select! {
                next = receiver.recv() => next,
                () = tokio::time::sleep_until(deadline) => return None,
                _ = closing.wait_for(|closed| *closed) => return None,
            };
            let sse = match next {
                Ok(event) if event.client_id == client_id => {
                    let data = serde_json::to_string(&*event).unwrap_or_default();
                    SseEvent::default().event(event.kind.as_str()).id(event.id.as_str()).data(data)
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    SseEvent::default().event("lagged").data(format!("{{\"missed\":{missed}}}"))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            return Some((Ok::<_, std::convert::Infallible>(sse), (receiver, closing)));
        }
    });
    Ok(Sse::new(events.boxed()).keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_SECS))))
}

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::GET,
            "/v1/events",
            Access::member(Role::Viewer),
            "List the client's events, newest first, optionally of one type",
            routing::get(list),
        )
        .returns::<EventList>()
        .errors(&[(400, "invalid_type")])
        .query(&["limit", "starting_after", "type"]),
        Endpoint::new(
            Method::GET,
            "/v1/events/stream",
            Access::users(Role::Viewer),
            "Server-sent events: the client's new events as they happen (event: TYPE, id: EVENT_ID, data: the event)",
            routing::get(stream),
        )
        .returns_as::<EventStream>("text/event-stream"),
    ]
}
