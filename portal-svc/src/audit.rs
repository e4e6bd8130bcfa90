//! The audit log: who did what to which resource, when. Written in the same SQLite
//! transaction as the change it records, so the log and the data cannot disagree.
//! Money movements are not repeated here: the ledger is their record.

use rusqlite::{Connection, params};

use crate::auth::Principal;
use crate::db::now_secs;

/// Records that `principal` did `action` (e.g. `device.register`) on `resource`
/// (e.g. `device:12`). Never pass secrets: the log is readable by client admins.
pub fn record(conn: &Connection, principal: &Principal, action: &str, resource: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_log (client_id, actor, action, resource, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![principal.client_id, principal.label(), action, resource, now_secs()],
    )?;
    Ok(())
}

/// [`record`], filed under `client_id` (a platform admin acting on a client's behalf:
/// the entry belongs to that client's log).
pub fn record_in(
    conn: &Connection,
    principal: &Principal,
    client_id: Option<i64>,
    action: &str,
    resource: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit_log (client_id, actor, action, resource, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![client_id.or(principal.client_id), principal.label(), action, resource, now_secs()],
    )?;
    Ok(())
}
