//! SQLite through rusqlite doing the engine's work, tuned as far as it reasonably goes
//! while keeping the same guarantee (every call durable when it returns):
//!
//! - WAL with `synchronous=FULL` (the WAL is synced at every commit), `locking_mode=
//!   EXCLUSIVE` (one writer, as the engine; no shared-memory wal-index), a page cache
//!   large enough to hold the whole database (`--sqlite-cache-mib`), temp store in memory;
//! - `WITHOUT ROWID` tables keyed by what is looked up (the 16-byte id; client and
//!   currency), so each lookup or upsert is one B-tree descent;
//! - statements prepared once and reused; one `BEGIN IMMEDIATE .. COMMIT` per call;
//! - judging in Rust between the statements, in the engine's order of checks, so the
//!   outcomes are the engine's: an id seen before is `Exists` if its stored fields are
//!   the same and rejected otherwise; a refund needs a sale of the same client in the
//!   same currency, and the refunds of a sale may not exceed its captured amount;
//!   every counting transaction is added to the account's open batch (opened on
//!   demand) and its balance (an upsert); a cut-over closes every open batch and adds
//!   its net to the settled balance, in one transaction.
//!
//! It keeps no per-client index of transactions (the engine keeps one, for listing a
//! client's transactions): that would cost SQLite another B-tree insert per commit.

use std::collections::VecDeque;
use std::path::Path;

use indicatif::ProgressBar;
use ledger_core::{Kind, Reject, Tx};
use rusqlite::{Connection, OptionalExtension, Statement, params};
use serde_json::Value;

use crate::run::{self, End, Sent, System};
use crate::workload::{CURRENCIES, Call, Workload};

/// ISO 4217 numeric codes, how the currency is stored.
const ISO_NUMERIC: [(&str, i64); 4] = [("USD", 840), ("EUR", 978), ("GBP", 826), ("JPY", 392)];
const _: () = assert!(ISO_NUMERIC.len() == CURRENCIES.len());

const SCHEMA: &str = "
CREATE TABLE transactions (
    id BLOB PRIMARY KEY NOT NULL, -- 16 bytes, little-endian
    client INTEGER NOT NULL,
    currency INTEGER NOT NULL,    -- ISO 4217 numeric
    kind INTEGER NOT NULL,        -- the C ABI's kind code
    amount INTEGER NOT NULL,      -- minor units
    ref_id BLOB,                  -- refunds: the sale
    refunded INTEGER NOT NULL,    -- sales: sum of their refunds
    batch INTEGER NOT NULL,
    created_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    client INTEGER NOT NULL,
    currency INTEGER NOT NULL,
    opened_ns INTEGER NOT NULL,
    closed_ns INTEGER NOT NULL,   -- 0 while open
    payment_count INTEGER NOT NULL,
    payment_total INTEGER NOT NULL,
    refund_count INTEGER NOT NULL,
    refund_total INTEGER NOT NULL,
    net INTEGER NOT NULL
);
CREATE TABLE balances (
    client INTEGER NOT NULL,
    currency INTEGER NOT NULL,
    captured INTEGER NOT NULL,
    refunded INTEGER NOT NULL,
    settled INTEGER NOT NULL,     -- net of the closed batches
    open_batch INTEGER NOT NULL,  -- 0: none
    PRIMARY KEY (client, currency)
) WITHOUT ROWID;
";

const COMMITTED: u32 = 0;
const EXISTS: u32 = 1;

fn sql(e: rusqlite::Error) -> String {
    format!("sqlite: {e}")
}

fn numeric(currency: [u8; 4]) -> Option<i64> {
    ISO_NUMERIC.iter().find(|(code, _)| code.as_bytes() == &currency[..3] && currency[3] == 0).map(|&(_, n)| n)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

struct Statements<'c> {
    begin: Statement<'c>,
    commit: Statement<'c>,
    find: Statement<'c>,
    insert: Statement<'c>,
    set_refunded: Statement<'c>,
    balance: Statement<'c>,
    put_balance: Statement<'c>,
    new_batch: Statement<'c>,
    add_to_batch: Statement<'c>,
    close_batches: Statement<'c>,
    settle: Statement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Statements<'c>> {
        Ok(Statements {
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            commit: conn.prepare("COMMIT")?,
            find: conn.prepare("SELECT client, currency, kind, amount, ref_id, refunded FROM transactions WHERE id = ?1")?,
            insert: conn.prepare(
                "INSERT INTO transactions (id, client, currency, kind, amount, ref_id, refunded, batch, created_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
            )?,
            set_refunded: conn.prepare("UPDATE transactions SET refunded = ?2 WHERE id = ?1")?,
            balance: conn
                .prepare("SELECT captured, refunded, open_batch FROM balances WHERE client = ?1 AND currency = ?2")?,
            put_balance: conn.prepare(
                "INSERT INTO balances (client, currency, captured, refunded, settled, open_batch) \
                 VALUES (?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT (client, currency) DO UPDATE SET \
                 captured = excluded.captured, refunded = excluded.refunded, open_batch = excluded.open_batch",
            )?,
            new_batch: conn.prepare(
                "INSERT INTO batches (client, currency, opened_ns, closed_ns, payment_count, payment_total, \
                 refund_count, refund_total, net) VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8)",
            )?,
            add_to_batch: conn.prepare(
                "UPDATE batches SET payment_count = payment_count + ?2, payment_total = payment_total + ?3, \
                 refund_count = refund_count + ?4, refund_total = refund_total + ?5, net = net + ?6 WHERE id = ?1",
            )?,
            close_batches: conn.prepare(
                "UPDATE batches SET closed_ns = ?1 WHERE id IN (SELECT open_batch FROM balances WHERE open_batch != 0)",
            )?,
            settle: conn.prepare(
                "UPDATE balances SET settled = settled + (SELECT net FROM batches WHERE batches.id = balances.open_batch), \
                 open_batch = 0 WHERE open_batch != 0",
            )?,
        })
    }
}

/// A stored transaction, as judging needs it.
struct Found {
    client: i64,
    currency: i64,
    kind: i64,
    amount: i64,
    ref_id: Option<[u8; 16]>,
    refunded: i64,
}

struct Sqlite<'c> {
    s: Statements<'c>,
    sent: VecDeque<Sent>,
}

impl Sqlite<'_> {
    fn find(&mut self, id: &[u8; 16]) -> Result<Option<Found>, String> {
        self.s
            .find
            .query_row([&id[..]], |r| {
                Ok(Found {
                    client: r.get(0)?,
                    currency: r.get(1)?,
                    kind: r.get(2)?,
                    amount: r.get(3)?,
                    ref_id: r.get(4)?,
                    refunded: r.get(5)?,
                })
            })
            .optional()
            .map_err(sql)
    }

    /// Judges one transaction as the engine does and, if accepted, writes its effects.
    fn one(&mut self, tx: &Tx, now: i64) -> Result<u32, String> {
        if tx.id.is_none() || tx.client_id == 0 {
            return Ok(Reject::InvalidKind as u32);
        }
        let client = i64::try_from(tx.client_id).map_err(|_| "client id above i64")?;
        let id = tx.id.0.to_le_bytes();
        let ref_id = (!tx.ref_id.is_none()).then(|| tx.ref_id.0.to_le_bytes());
        if let Some(found) = self.find(&id)? {
            // Device, flags and user data are zero throughout the workload.
            let same = found.client == client
                && Some(found.currency) == numeric(tx.currency)
                && found.kind == i64::from(tx.kind)
                && found.amount == tx.amount
                && found.ref_id == ref_id;
            return Ok(if same { EXISTS } else { Reject::ExistsWithDifferentFields as u32 });
        }
        let Some(kind) = tx.kind() else { return Ok(Reject::InvalidKind as u32) };
        if tx.flags != 0 || kind.has_ref() == ref_id.is_none() {
            return Ok(Reject::InvalidKind as u32);
        }
        let Some(currency) = numeric(tx.currency) else { return Ok(Reject::InvalidCurrency as u32) };
        if !matches!(kind, Kind::Payment | Kind::Refund) {
            return Err(format!("the SQLite side runs sales and refunds only, not {kind:?}"));
        }
        if tx.amount <= 0 {
            return Ok(Reject::InvalidAmount as u32);
        }
        let mut refund = None;
        if let Some(ref_id) = ref_id {
            let Some(sale) = self.find(&ref_id)?.filter(|p| p.client == client) else {
                return Ok(Reject::RefNotFound as u32);
            };
            if sale.kind != Kind::Payment as i64 {
                return Ok(Reject::RefWrongState as u32);
            }
            if sale.currency != currency {
                return Ok(Reject::CurrencyMismatch as u32);
            }
            let Some(refunded) = sale.refunded.checked_add(tx.amount) else { return Ok(Reject::InvalidAmount as u32) };
            if refunded > sale.amount {
                return Ok(Reject::ExceedsRefAmount as u32);
            }
            refund = Some((ref_id, refunded));
        }
        let (captured, refunded, open_batch): (i64, i64, i64) = self
            .s
            .balance
            .query_row(params![client, currency], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(sql)?
            .unwrap_or((0, 0, 0));
        // Overflow is a rejection. A batch's sums are bounded by the balance's.
        let sums = match refund {
            None => captured.checked_add(tx.amount).map(|c| (c, refunded)),
            Some(_) => refunded.checked_add(tx.amount).map(|r| (captured, r)),
        };
        let Some((captured, refunded)) = sums else { return Ok(Reject::InvalidAmount as u32) };
        let (payments, payment_total, refunds, refund_total, net) = match refund {
            None => (1, tx.amount, 0, 0, tx.amount),
            Some(_) => (0, 0, 1, tx.amount, -tx.amount),
        };
        let batch = if open_batch == 0 {
            let p = params![client, currency, now, payments, payment_total, refunds, refund_total, net];
            self.s.new_batch.insert(p).map_err(sql)?
        } else {
            let p = params![open_batch, payments, payment_total, refunds, refund_total, net];
            self.s.add_to_batch.execute(p).map_err(sql)?;
            open_batch
        };
        self.s.put_balance.execute(params![client, currency, captured, refunded, batch]).map_err(sql)?;
        if let Some((sale, refunded)) = refund {
            self.s.set_refunded.execute(params![&sale[..], refunded]).map_err(sql)?;
        }
        let ref_blob = ref_id.as_ref().map(|r| &r[..]);
        let p = params![&id[..], client, currency, tx.kind, tx.amount, ref_blob, batch, now];
        self.s.insert.execute(p).map_err(sql)?;
        Ok(COMMITTED)
    }
}

impl System for Sqlite<'_> {
    fn sent(&mut self) -> &mut VecDeque<Sent> {
        &mut self.sent
    }

    fn submit(&mut self, txs: Vec<Tx>) -> Result<Vec<u32>, String> {
        self.s.begin.execute([]).map_err(sql)?;
        let now = now_ns();
        let mut outcomes = Vec::with_capacity(txs.len());
        for (tx, at) in txs.iter().zip(now..) {
            outcomes.push(self.one(tx, at)?);
        }
        self.s.commit.execute([]).map_err(sql)?;
        Ok(outcomes)
    }

    fn close_all(&mut self) -> Result<u64, String> {
        self.s.begin.execute([]).map_err(sql)?;
        let closed = self.s.close_batches.execute([now_ns()]).map_err(sql)?;
        self.s.settle.execute([]).map_err(sql)?;
        self.s.commit.execute([]).map_err(sql)?;
        Ok(u64::try_from(closed).unwrap_or(u64::MAX))
    }
}

/// Totals from SQL: balances per currency and batch counts.
fn check(conn: &Connection) -> Result<Value, String> {
    let mut per = std::collections::BTreeMap::new();
    let mut open = 0u64;
    let mut stmt = conn
        .prepare(
            "SELECT currency, SUM(captured), SUM(refunded), SUM(settled), SUM(open_batch != 0) \
             FROM balances GROUP BY currency",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?)))
        .map_err(sql)?;
    for row in rows {
        let (currency, captured, refunded, settled, opened): (i64, i64, i64, i64, i64) = row.map_err(sql)?;
        let code = ISO_NUMERIC.iter().find(|(_, n)| *n == currency).map_or("???", |(c, _)| c);
        per.insert(code.to_string(), [captured, refunded, settled, captured - refunded]);
        open += u64::try_from(opened).unwrap_or(0);
    }
    let batches: i64 = conn.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0)).map_err(sql)?;
    Ok(crate::check_json(per, u64::try_from(batches).unwrap_or(0), open))
}

/// The knobs of the SQLite run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Page cache, MiB.
    pub(crate) cache_mib: u64,
    /// `page_size`, bytes.
    pub(crate) page_size: u64,
    /// `wal_autocheckpoint`, pages.
    pub(crate) checkpoint_pages: u64,
}

pub(crate) fn run(
    name: &str,
    tuning: Tuning,
    workload: &Workload,
    calls: &[Call],
    dir: &Path,
    bar: &ProgressBar,
) -> Result<Value, String> {
    let conn = Connection::open(dir.join("ledger.db")).map_err(sql)?;
    let Tuning { cache_mib, page_size, checkpoint_pages } = tuning;
    conn.pragma_update(None, "page_size", i64::try_from(page_size).unwrap_or(4096)).map_err(sql)?;
    // Exclusive locking before WAL: SQLite then never creates the shared-memory index.
    let mode: String = conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| r.get(0)).map_err(sql)?;
    let journal: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("exclusive") || !journal.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite: locking_mode {mode}, journal_mode {journal}"));
    }
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    let cache_kib = i64::try_from(cache_mib.saturating_mul(1024)).unwrap_or(i64::MAX);
    conn.pragma_update(None, "cache_size", -cache_kib).map_err(sql)?;
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(sql)?;
    conn.pragma_update(None, "wal_autocheckpoint", i64::try_from(checkpoint_pages).unwrap_or(1000)).map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    let (measured, check, used_bytes) = {
        let mut sqlite = Sqlite { s: Statements::prepare(&conn).map_err(sql)?, sent: VecDeque::new() };
        let measured = run::drive(&mut sqlite, workload, calls, 1, bar)?;
        bar.finish_and_clear();
        let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0)).map_err(sql)?;
        let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0)).map_err(sql)?;
        let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(sql)?;
        (measured, check(&conn)?, u64::try_from((pages - free) * page).unwrap_or(0))
    };
    conn.close().map_err(|(_, e)| sql(e))?; // checkpoints the WAL into the database
    let peak_rss_kib = run::status_kib("VmHWM:").unwrap_or(0);
    let disk = run::disk_usage(dir)?;
    let notes = format!(
        "SQLite {} (rusqlite, bundled): WAL, synchronous=FULL, locking_mode=EXCLUSIVE, page_size {page}, \
         cache_size {cache_mib} MiB, wal_autocheckpoint {checkpoint_pages} pages, temp_store=MEMORY, WITHOUT ROWID tables, statements prepared once, one BEGIN IMMEDIATE..COMMIT per call",
        rusqlite::version(),
        page = page_size,
    );
    Ok(run::report(name, &measured, End { check, peak_rss_kib, disk, used_bytes, log_bytes: None, notes }))
}
