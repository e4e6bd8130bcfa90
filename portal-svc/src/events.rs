//! Events (issue 17): what happened to a client's money and objects, in one order per
//! service (`seq`, the events table's own sequence), delivered to webhook endpoints
//! (`webhooks`), listed by `GET /v1/events` and streamed to the web portal.
//!
//! Money events come from the ledger's change feed (`follower`): one per ledger record,
//! its id derived from the ledger seq ([`ledger_event_id`]) and the row unique on that
//! seq, so reading the feed again after a crash inserts nothing new and never a second
//! id for the same change. Other events (`ticket.updated`, `rollout.completed`) are
//! inserted in the SQLite transaction of the change that causes them, with a random id.
//! Either way the deliveries to the client's matching endpoints are queued in the same
//! transaction as the event ([`insert`]).

use crate::db::{Connection, OptionalExtension, Row};
use crate::params;
use ledger_core::{BatchSummary, Kind, TxRecord};
use serde_json::Value;

/// Every event type, in the order the contract lists them.
pub const TYPES: [&str; 9] = [
    "payment.created",
    "payment.captured",
    "payment.voided",
    "refund.created",
    "adjustment.created",
    "batch.closed",
    "device.offline",
    "rollout.completed",
    "ticket.updated",
];

/// An event as the API shows it and a webhook delivers it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// `evt_` and 24 hex digits; the same change always has the same id.
    #[schema(pattern = "^evt_[0-9a-f]{24}$")]
    pub id: String,
    /// Always `event`.
    pub object: String,
    /// One of the event types (`payment.created`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds: a money event's commit time, else when it happened.
    pub created_at: i64,
    pub client_id: i64,
    /// The event's position among the service's events (a client's events arrive in
    /// this order on first delivery). A transaction inside carries its ledger `seq`.
    pub seq: i64,
    pub data: EventData,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EventData {
    /// The transaction, batch, device, rollout or ticket as its GET returns it (a
    /// transaction as it stood right after the commit).
    #[schema(value_type = Object)]
    pub object: Value,
}

/// A page of events, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EventList {
    pub data: Vec<Event>,
    pub has_more: bool,
}

/// An event before it is numbered.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub client_id: i64,
    pub kind: &'static str,
    /// The ledger record it comes from (money events only).
    pub ledger_seq: Option<i64>,
    pub created_at: i64,
    pub object: Value,
}

/// The id of the event of ledger record `ledger_seq`: `evt_` and 24 hex digits of a
/// BLAKE3 derivation of the seq, so it is the same whenever the record is read.
pub fn ledger_event_id(ledger_seq: u64) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("portal-svc ledger event id v1");
    hasher.update(&ledger_seq.to_le_bytes());
    format!("evt_{}", hex::encode(&hasher.finalize().as_bytes()[..12]))
}

/// A new random event id (events that do not come from the ledger).
pub fn random_event_id() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 12];
    rand_core::OsRng.fill_bytes(&mut bytes);
    format!("evt_{}", hex::encode(bytes))
}

/// The event type of a committed transaction.
pub fn money_type(record: &TxRecord) -> &'static str {
    match Kind::from_code(record.tx.kind) {
        Some(Kind::Payment) => "payment.created",
        Some(Kind::Capture) => "payment.captured",
        Some(Kind::Void) => "payment.voided",
        Some(Kind::Refund) => "refund.created",
        Some(Kind::Adjustment) | None => "adjustment.created",
    }
}

/// The event of a committed transaction, with the description its request stored.
pub fn of_transaction(record: &TxRecord, description: Option<&str>) -> NewEvent {
    NewEvent {
        id: ledger_event_id(record.seq),
        client_id: i64::try_from(record.tx.client_id).unwrap_or(i64::MAX),
        kind: money_type(record),
        ledger_seq: i64::try_from(record.seq).ok(),
        created_at: i64::try_from(record.timestamp_ns / 1_000_000_000).unwrap_or(i64::MAX),
        object: crate::routes::transactions::tx_json(record, description),
    }
}

/// The event of a batch close at ledger position `seq`.
pub fn of_batch_close(seq: u64, summary: &BatchSummary) -> NewEvent {
    NewEvent {
        id: ledger_event_id(seq),
        client_id: i64::try_from(summary.client_id).unwrap_or(i64::MAX),
        kind: "batch.closed",
        ledger_seq: i64::try_from(seq).ok(),
        created_at: i64::try_from(summary.closed_ns / 1_000_000_000).unwrap_or(i64::MAX),
        object: crate::routes::batches::batch_json(summary),
    }
}

/// A non-ledger event of `client_id` about `object`, now.
pub fn of_change(client_id: i64, kind: &'static str, object: Value) -> NewEvent {
    NewEvent { id: random_event_id(), client_id, kind, ledger_seq: None, created_at: crate::db::now_secs(), object }
}

/// Inserts `event` unless an event of the same id or ledger seq is there, and queues a
/// delivery of it to each active endpoint of its client subscribed to its type, in the
/// caller's transaction. Returns the event when it is new.
pub fn insert(conn: &Connection, event: &NewEvent) -> crate::db::Result<Option<Event>> {
    let object = event.object.to_string();
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO events (id, client_id, type, ledger_seq, created_at, object)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING RETURNING seq",
        )?
        .query_row(params![event.id, event.client_id, event.kind, event.ledger_seq, event.created_at, object], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(seq) = inserted else {
        return Ok(None);
    };
    let now = crate::db::now_secs();
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq, redelivery, status, attempts, next_attempt_ms,
                                         created_at, updated_at)
         SELECT id, ?1, 0, 'pending', 0, 0, ?2, ?2 FROM webhook_endpoints
         WHERE client_id = ?3 AND active = 1 AND instr(',' || events || ',', ',' || ?4 || ',') > 0
         ORDER BY id",
    )?
    .execute(params![seq, now, event.client_id, event.kind])?;
    Ok(Some(Event {
        id: event.id.clone(),
        object: "event".to_string(),
        kind: event.kind.to_string(),
        created_at: event.created_at,
        client_id: event.client_id,
        seq,
        data: EventData { object: event.object.clone() },
    }))
}

/// The columns [`event_row`] reads.
pub const EVENT_COLUMNS: &str = "seq, id, client_id, type, created_at, object";

/// An event from a row of [`EVENT_COLUMNS`].
pub fn event_row(row: &Row<'_>) -> crate::db::Result<Event> {
    let object: String = row.get(5)?;
    Ok(Event {
        seq: row.get(0)?,
        id: row.get(1)?,
        object: "event".to_string(),
        client_id: row.get(2)?,
        kind: row.get(3)?,
        created_at: row.get(4)?,
        data: EventData { object: serde_json::from_str(&object).unwrap_or(Value::Null) },
    })
}

/// The event at `seq`.
pub fn load(conn: &Connection, seq: i64) -> crate::db::Result<Option<Event>> {
    conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"))?
        .query_row([seq], event_row)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_event_ids_are_stable_and_distinct() {
        assert_eq!(ledger_event_id(7), ledger_event_id(7));
        assert_ne!(ledger_event_id(7), ledger_event_id(8));
        let id = ledger_event_id(1);
        assert!(id.starts_with("evt_") && id.len() == 28, "{id}");
        assert!(id[4..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let random = random_event_id();
        assert!(random.starts_with("evt_") && random.len() == 28 && random != random_event_id());
    }
}
