//! The audit trail: who (a user, an API key, the system) did what to which resource,
//! with what outcome, when. Configuration, identity and sign-in entries are written in
//! the same SQLite transaction as the change they record; money actions (whose change
//! is in the ledger) go through the metadata writer's group commit with the request's
//! other metadata, so they cost no fsync of their own.
//!
//! Append-only and tamper-evident: each entry carries `hash`, the BLAKE3 hash of the
//! previous entry's hash and every field of its own (id included), so an entry edited
//! or removed in the database breaks the chain at the next entry, which
//! [`verify`] reports. (Whoever can write the database and recompute every later hash
//! is not caught by the chain alone: `GET /v1/audit/verify` answers the head hash, for
//! an operator to keep elsewhere and compare.)

use crate::db::{Connection, OptionalExtension};
use crate::params;

use crate::auth::{Actor, Principal};
use crate::db::now_secs;

/// One audit entry, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `user`, `api_key` or `system`.
    pub actor_type: &'static str,
    pub actor_id: Option<i64>,
    /// How the actor is named (a user's email, `application:ID`, `system`).
    pub actor: String,
    /// The client whose log it belongs to (`None`: the platform's).
    pub client_id: Option<i64>,
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// `ok`, `refused` or `failed`.
    pub outcome: &'static str,
    /// A JSON object of particulars (amount, currency, error code, ...). Never secrets.
    pub detail: Option<String>,
    /// When it happened (Unix seconds), if not when it is appended: an entry recovered
    /// from [`pend`] at start keeps the time of its action.
    pub at: Option<i64>,
}

impl Entry {
    /// An entry by `principal` for `action` on `resource_type:resource_id`, filed under
    /// the principal's client, outcome `ok`.
    pub fn by(principal: &Principal, action: &str, resource_type: &str, resource_id: impl ToString) -> Entry {
        let (actor_type, actor_id) = match principal.actor {
            Actor::User { id, .. } => ("user", Some(id)),
            Actor::Application { id } => ("api_key", Some(id)),
        };
        Entry {
            actor_type,
            actor_id,
            actor: principal.label(),
            client_id: principal.client_id,
            action: action.to_string(),
            resource_type: Some(resource_type.to_string()),
            resource_id: Some(resource_id.to_string()).filter(|id| !id.is_empty()),
            outcome: "ok",
            detail: None,
            at: None,
        }
    }

    /// An entry with no principal behind it (sign-in attempts, the system's own acts).
    pub fn anonymous(actor_type: &'static str, actor_id: Option<i64>, actor: &str, action: &str) -> Entry {
        Entry {
            actor_type,
            actor_id,
            actor: actor.to_string(),
            client_id: None,
            action: action.to_string(),
            resource_type: None,
            resource_id: None,
            outcome: "ok",
            detail: None,
            at: None,
        }
    }

    /// The same entry on `resource_type:resource_id`.
    pub fn on(mut self, resource_type: &str, resource_id: impl ToString) -> Entry {
        self.resource_type = Some(resource_type.to_string());
        self.resource_id = Some(resource_id.to_string());
        self
    }

    /// The same entry filed under `client_id`.
    pub fn in_client(mut self, client_id: Option<i64>) -> Entry {
        self.client_id = client_id;
        self
    }

    /// The same entry with `outcome`.
    pub fn outcome(mut self, outcome: &'static str) -> Entry {
        self.outcome = outcome;
        self
    }

    /// The same entry with `detail` (a JSON object).
    pub fn detail(mut self, detail: serde_json::Value) -> Entry {
        self.detail = Some(detail.to_string());
        self
    }

    fn resource(&self) -> Option<String> {
        match (&self.resource_type, &self.resource_id) {
            (Some(t), Some(id)) => Some(format!("{t}:{id}")),
            (Some(t), None) => Some(t.clone()),
            _ => None,
        }
    }
}

/// The hash of an entry chained to `prev`: every field, each length-prefixed (or
/// tagged when absent), little-endian.
fn chain_hash(prev: &[u8], id: i64, at: i64, e: &Entry) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("portal-svc audit chain v1");
    h.update(prev);
    h.update(&id.to_le_bytes());
    h.update(&at.to_le_bytes());
    let text = |h: &mut blake3::Hasher, s: Option<&str>| match s {
        None => {
            h.update(&[0]);
        }
        Some(s) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    };
    let int = |h: &mut blake3::Hasher, v: Option<i64>| match v {
        None => {
            h.update(&[0]);
        }
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_le_bytes());
        }
    };
    text(&mut h, Some(e.actor_type));
    int(&mut h, e.actor_id);
    text(&mut h, Some(&e.actor));
    int(&mut h, e.client_id);
    text(&mut h, Some(&e.action));
    text(&mut h, e.resource_type.as_deref());
    text(&mut h, e.resource_id.as_deref());
    text(&mut h, Some(e.outcome));
    text(&mut h, e.detail.as_deref());
    *h.finalize().as_bytes()
}

/// The newest entry's `(id, hash)`; `(0, zeros)` for an empty log.
fn head(conn: &Connection) -> crate::db::Result<(i64, Vec<u8>)> {
    Ok(conn
        .prepare_cached("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")?
        .query_row([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default())))
        .optional()?
        .unwrap_or((0, vec![0; 32])))
}

/// Appends `entries` after the log's head; returns the last id. Call inside a
/// transaction that holds the write lock (or autocommit: then this takes it), so no
/// other writer can append in between.
pub fn append(conn: &Connection, entries: &[Entry]) -> crate::db::Result<i64> {
    if conn.is_autocommit() {
        return conn.in_write_tx(|conn| append(conn, entries));
    }
    let (mut id, mut prev) = head(conn)?;
    let at = now_secs();
    let mut insert = conn.prepare_cached(
        "INSERT INTO audit_log (id, client_id, actor, action, resource, at, actor_type, actor_id, resource_type,
                                resource_id, outcome, detail, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in entries {
        id += 1;
        let at = e.at.unwrap_or(at);
        let hash = chain_hash(&prev, id, at, e);
        insert.execute(params![
            id,
            e.client_id,
            e.actor,
            e.action,
            e.resource(),
            at,
            e.actor_type,
            e.actor_id,
            e.resource_type,
            e.resource_id,
            e.outcome,
            e.detail,
            hash.as_slice()
        ])?;
        prev = hash.to_vec();
    }
    Ok(id)
}

/// Records that `principal` did `action` (e.g. `device.register`) on `resource`
/// (e.g. `device:12`). Never pass secrets: the log is readable by client admins.
pub fn record(conn: &Connection, principal: &Principal, action: &str, resource: &str) -> crate::db::Result<()> {
    record_in(conn, principal, principal.client_id, action, resource)
}

/// [`record`], filed under `client_id` (a platform admin acting on a client's behalf:
/// the entry belongs to that client's log).
pub fn record_in(
    conn: &Connection,
    principal: &Principal,
    client_id: Option<i64>,
    action: &str,
    resource: &str,
) -> crate::db::Result<()> {
    let (kind, id) = resource.split_once(':').unwrap_or((resource, ""));
    append(conn, &[Entry::by(principal, action, kind, id).in_client(client_id.or(principal.client_id))]).map(|_| ())
}

/// Chains entries written before the chain existed (migration 7), oldest first, at
/// start. Returns how many.
pub fn seal_legacy(conn: &mut Connection) -> crate::db::Result<usize> {
    let tx = conn.transaction()?;
    let rows = unchained(&tx)?;
    if rows.is_empty() {
        return Ok(0);
    }
    let first = rows[0].0;
    let mut prev: Vec<u8> = tx
        .query_row("SELECT hash FROM audit_log WHERE id < ?1 ORDER BY id DESC LIMIT 1", [first], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| vec![0; 32]);
    for (id, at, entry, _) in &rows {
        let hash = chain_hash(&prev, *id, *at, entry);
        tx.execute("UPDATE audit_log SET hash = ?1 WHERE id = ?2", params![hash.as_slice(), id])?;
        prev = hash.to_vec();
    }
    tx.commit()?;
    Ok(rows.len())
}

type Row = (i64, i64, Entry, Option<Vec<u8>>);

/// Records, outside the chain, the entry a money action will have if the ledger
/// commits `ledger_id` (`entry` with outcome `ok`). It is written while the ledger
/// commits, so the request waits for the longer of the two commits rather than for
/// both in a row; the chained entry follows once the ledger answers, and [`resolve`]
/// removes this one in the same transaction. Whatever a crash leaves here is turned
/// into chained entries by [`recover_pending`] at the next start. (A table of its own,
/// `WITHOUT ROWID`: it holds only the actions in flight, one B-tree to insert into
/// and delete from.)
pub fn pend(conn: &Connection, ledger_id: &[u8], entry: &Entry) -> crate::db::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_pending (ledger_id, at, actor_type, actor_id, actor, client_id, action, resource_type,
                                    resource_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (ledger_id) DO UPDATE SET at = excluded.at, actor_type = excluded.actor_type,
             actor_id = excluded.actor_id, actor = excluded.actor, client_id = excluded.client_id,
             action = excluded.action, resource_type = excluded.resource_type, resource_id = excluded.resource_id,
             detail = excluded.detail",
    )?
    .execute(params![
        ledger_id,
        entry.at.unwrap_or_else(now_secs),
        entry.actor_type,
        entry.actor_id,
        entry.actor,
        entry.client_id,
        entry.action,
        entry.resource_type,
        entry.resource_id,
        entry.detail
    ])?;
    Ok(())
}

/// Removes what [`pend`] wrote for `ledger_id` (its chained entry is in the same
/// transaction).
pub fn resolve(conn: &Connection, ledger_id: &[u8]) -> crate::db::Result<()> {
    conn.prepare_cached("DELETE FROM audit_pending WHERE ledger_id = ?1")?.execute([ledger_id])?;
    Ok(())
}

/// Chains what a crash left pending, oldest first (by second, then ledger id), at start: an action the ledger has
/// (`committed(ledger_id)`) as `ok`, since it may have been acknowledged; any other as
/// `failed` with code `interrupted` (the service stopped before the ledger answered, so
/// nothing was acknowledged). Each keeps the time of its action. Returns how many of
/// each `(ok, failed)`.
pub fn recover_pending(conn: &mut Connection, committed: impl Fn(&[u8]) -> bool) -> crate::db::Result<(usize, usize)> {
    let tx = conn.transaction()?;
    let rows: Vec<(Vec<u8>, Entry)> = {
        let mut stmt = tx.prepare(
            "SELECT ledger_id, at, actor_type, actor_id, actor, client_id, action, resource_type, resource_id,
                    detail FROM audit_pending ORDER BY at, ledger_id",
        )?;
        let rows = stmt.query_map([], |row| {
            let entry = Entry {
                actor_type: static_of(&row.get::<_, String>(2)?, &["user", "api_key", "system"]),
                actor_id: row.get(3)?,
                actor: row.get(4)?,
                client_id: row.get(5)?,
                action: row.get(6)?,
                resource_type: row.get(7)?,
                resource_id: row.get(8)?,
                outcome: "ok",
                detail: row.get(9)?,
                at: Some(row.get(1)?),
            };
            Ok((row.get(0)?, entry))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let (mut ok, mut failed) = (0, 0);
    let mut entries = Vec::with_capacity(rows.len());
    for (ledger_id, entry) in rows {
        if committed(&ledger_id) {
            ok += 1;
            entries.push(entry);
        } else {
            failed += 1;
            let mut detail: serde_json::Value = entry
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_else(|| serde_json::json!({}));
            if let Some(object) = detail.as_object_mut() {
                object.insert("code".into(), "interrupted".into());
            }
            entries.push(entry.outcome("failed").detail(detail));
        }
    }
    if !entries.is_empty() {
        append(&tx, &entries)?;
        tx.execute("DELETE FROM audit_pending", [])?;
    }
    tx.commit()?;
    Ok((ok, failed))
}

/// The entries not chained yet, oldest first.
fn unchained(conn: &Connection) -> crate::db::Result<Vec<Row>> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor_type, actor_id, actor, client_id, action, resource_type, resource_id, outcome,
                detail, hash FROM audit_log WHERE hash IS NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], row_entry)?;
    rows.collect()
}

fn static_of(s: &str, options: &[&'static str]) -> &'static str {
    options.iter().find(|o| **o == s).copied().unwrap_or("unknown")
}

fn row_entry(row: &crate::db::Row<'_>) -> crate::db::Result<Row> {
    let entry = Entry {
        actor_type: static_of(&row.get::<_, String>(2)?, &["user", "api_key", "system"]),
        actor_id: row.get(3)?,
        actor: row.get(4)?,
        client_id: row.get(5)?,
        action: row.get(6)?,
        resource_type: row.get(7)?,
        resource_id: row.get(8)?,
        outcome: static_of(&row.get::<_, String>(9)?, &["ok", "refused", "failed"]),
        detail: row.get(10)?,
        at: None,
    };
    Ok((row.get(0)?, row.get(1)?, entry, row.get(11)?))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub entries: u64,
    /// The first entry whose hash does not follow (edited, or the one after a removal).
    pub first_bad_id: Option<i64>,
    /// The newest entry's hash, hex.
    pub head: String,
}

/// Entries [`verify`] reads per statement.
const VERIFY_PAGE: i64 = 10_000;

/// Recomputes the chain from the first entry, page by page.
pub fn verify(conn: &Connection) -> crate::db::Result<Verdict> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor_type, actor_id, actor, client_id, action, resource_type, resource_id, outcome,
                detail, hash FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let (mut after, mut prev, mut entries, mut first_bad_id) = (0i64, vec![0u8; 32], 0u64, None);
    loop {
        let page: Vec<Row> = stmt.query_map(params![after, VERIFY_PAGE], row_entry)?.collect::<Result<_, _>>()?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, at, entry, stored) in page {
            entries += 1;
            let expected = chain_hash(&prev, id, at, &entry);
            if first_bad_id.is_none() && stored.as_deref() != Some(expected.as_slice()) {
                first_bad_id = Some(id);
            }
            prev = stored.unwrap_or_default();
        }
    }
    Ok(Verdict { entries, first_bad_id, head: hex::encode(&prev) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE audit_log (id INTEGER PRIMARY KEY, client_id INTEGER, actor TEXT NOT NULL,
             action TEXT NOT NULL, resource TEXT, at INTEGER NOT NULL, actor_type TEXT NOT NULL DEFAULT 'user',
             actor_id INTEGER, resource_type TEXT, resource_id TEXT, outcome TEXT NOT NULL DEFAULT 'ok',
             detail TEXT, hash BLOB)",
        )
        .expect("schema");
        conn
    }

    const PENDING_SCHEMA: &str = "CREATE TABLE audit_pending (ledger_id BLOB PRIMARY KEY, at INTEGER NOT NULL,
        actor_type TEXT NOT NULL, actor_id INTEGER, actor TEXT NOT NULL, client_id INTEGER, action TEXT NOT NULL,
        resource_type TEXT, resource_id TEXT, detail TEXT) WITHOUT ROWID";

    fn entry(n: i64) -> Entry {
        Entry::anonymous("system", None, "system", "test.action").on("thing", n).detail(serde_json::json!({ "n": n }))
    }

    #[test]
    fn an_edited_or_removed_entry_breaks_the_chain_where_it_was() {
        let conn = db();
        append(&conn, &[entry(1), entry(2)]).expect("append");
        append(&conn, &[entry(3), entry(4), entry(5)]).expect("append");
        let good = verify(&conn).expect("verify");
        assert_eq!((good.entries, good.first_bad_id), (5, None));
        conn.execute("UPDATE audit_log SET outcome = 'refused' WHERE id = 3", []).expect("edit");
        assert_eq!(verify(&conn).expect("verify").first_bad_id, Some(3));
        conn.execute("UPDATE audit_log SET outcome = 'ok' WHERE id = 3", []).expect("restore");
        assert_eq!(verify(&conn).expect("verify").first_bad_id, None);
        conn.execute("DELETE FROM audit_log WHERE id = 2", []).expect("remove");
        assert_eq!(verify(&conn).expect("verify").first_bad_id, Some(3), "the entry after the gap");
    }

    #[test]
    fn pending_entries_are_chained_at_start_as_the_ledger_decided() {
        let mut conn = db();
        conn.execute_batch(PENDING_SCHEMA).expect("schema");
        append(&conn, &[entry(1)]).expect("append");
        let pending = |n: i64| Entry { at: Some(1_000 + n), ..entry(n) };
        for n in [2i64, 3, 4] {
            pend(&conn, &n.to_le_bytes(), &pending(n)).expect("pend");
        }
        // Resolved while running: its chained entry is written, the pending row goes.
        append(&conn, &[pending(3)]).expect("append");
        resolve(&conn, &3i64.to_le_bytes()).expect("resolve");
        // The ledger has 2 (it may have been acknowledged) but not 4.
        let committed = |id: &[u8]| id == 2i64.to_le_bytes();
        assert_eq!(recover_pending(&mut conn, committed).expect("recover"), (1, 1));
        assert_eq!(recover_pending(&mut conn, committed).expect("recover"), (0, 0), "recovered once");
        let verdict = verify(&conn).expect("verify");
        assert_eq!((verdict.entries, verdict.first_bad_id), (4, None));
        let rows: Vec<(String, String, i64, String)> = conn
            .prepare("SELECT resource_id, outcome, at, detail FROM audit_log WHERE id > 2 ORDER BY id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2), ("2", "ok", 1_002));
        assert_eq!((rows[1].0.as_str(), rows[1].1.as_str(), rows[1].2), ("4", "failed", 1_004));
        assert_eq!(rows[1].3, r#"{"code":"interrupted","n":4}"#);
    }

    #[test]
    fn legacy_entries_are_chained_once() {
        let mut conn = db();
        conn.execute("INSERT INTO audit_log (id, actor, action, at) VALUES (1, 'a@b.test', 'user.create', 5)", [])
            .expect("legacy");
        assert_eq!(verify(&conn).expect("verify").first_bad_id, Some(1));
        assert_eq!(seal_legacy(&mut conn).expect("seal"), 1);
        assert_eq!(seal_legacy(&mut conn).expect("seal"), 0);
        append(&conn, &[entry(2)]).expect("append");
        let verdict = verify(&conn).expect("verify");
        assert_eq!((verdict.entries, verdict.first_bad_id, verdict.head.len()), (2, None, 64));
    }
}
