//! The events follower: one thread that follows the ledger's change feed and turns
//! every committed record into an event (`events`), with the deliveries it makes.
//!
//! Its position (the next ledger seq to read) lives in the metadata (`event_feed`, one
//! row per node: nodes of a cluster sharing one PostgreSQL database each follow their
//! own ledger, and insert the same events, which are unique on the seq). For each
//! batch of records it commits, in ONE SQLite transaction, the events (idempotent:
//! unique on the ledger seq, with ids derived from it), one pending delivery per
//! matching active endpoint, and the new position; only then does it confirm the batch
//! to the feed. The feed is a holding one (`Ledger::feed_holding`, a replication slot),
//! opened before the service accepts requests: the log keeps every record from the
//! position on, so neither a restart nor a kill -9 loses an event (the records after
//! the stored position are read again), and none is invented (reading one again
//! inserts nothing).
//!
//! Descriptions: a payment's description is in `tx_meta`, and an event carries the
//! description GET shows. The request path writes a new transaction's description
//! ahead of its ledger commit and waits for that write to be durable
//! (`MetaWrite::description_ahead` in `routes::transactions::commit`), and the feed
//! yields a record only once the sequencer has applied it, so the description is
//! already committed when the follower reads the record. The only description written
//! after a commit is that of a retry whose transaction already existed (`!ahead`),
//! which makes no new record, so no event waits for it.
//!
//! A feed error or a panic does not end the follower silently: it is logged and
//! counted (`/metrics`: `portal_events_follower_errors`, `portal_events_follower_up`),
//! and the follower reopens the feed from its stored position after a pause.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::db::{Connection, OptionalExtension};
use ledger_core::{Feed, FeedError, FeedRecord, Ledger};

use crate::app::AppState;
use crate::events::{self, Event};

/// Records committed in one SQLite transaction at most.
pub const BATCH_RECORDS_MAX: usize = 512;
/// How long one wait for new records lasts before the stop flag is looked at again.
const WAIT_MS: u64 = 200;
/// The pause after an error before the follower tries again.
const RETRY_MS: u64 = 1000;

/// The running follower; [`Follower::stop`] ends it.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    /// Stops the follower after the batch it is in, and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the events follower thread panicked while stopping");
        }
    }
}

/// The `event_feed` row of this node: its id in cluster mode, 1 for a single node (a
/// single node that becomes node 1 of a cluster keeps its position).
fn feed_row(state: &AppState) -> i64 {
    state.cluster.as_ref().map_or(1, |c| i64::try_from(c.status().node_id).unwrap_or(i64::MAX))
}

/// The stored position, or on the very first start the ledger's next seq (events
/// start from then on), stored at once so a restart does not move it.
fn position(conn: &Connection, row: i64, ledger: &Ledger) -> crate::db::Result<u64> {
    let stored: Option<i64> =
        conn.query_row("SELECT next_seq FROM event_feed WHERE id = ?1", [row], |r| r.get(0)).optional()?;
    if let Some(next) = stored {
        return Ok(u64::try_from(next).unwrap_or(1));
    }
    let next = ledger.last_seq().saturating_add(1);
    store_position(conn, row, next)?;
    Ok(next)
}

fn store_position(conn: &Connection, row: i64, next_seq: u64) -> crate::db::Result<()> {
    conn.execute(
        "INSERT INTO event_feed (id, next_seq) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET next_seq = ?2",
        [row, i64::try_from(next_seq).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// Opens the holding feed at the stored position. A position below the log's start
/// is no problem (the feed reads that history from the cold tier's runs); a position
/// beyond the ledger's end (the metadata restored from a newer time than the ledger)
/// starts at its end, loudly.
fn open_feed(state: &AppState, conn: &Connection) -> Result<Feed, String> {
    let row = feed_row(state);
    let from = position(conn, row, &state.ledger).map_err(|e| format!("reading the events position: {e}"))?;
    state.webhooks.follower.set_position(from);
    match state.ledger.feed_holding(from) {
        Ok(feed) => Ok(feed),
        Err(FeedError::Ahead { requested, next }) => {
            tracing::error!(requested, next, "the events position is beyond the ledger's end: following from its end");
            store_position(conn, row, next).map_err(|e| e.to_string())?;
            state.webhooks.follower.set_position(next);
            state.ledger.feed_holding(next).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Opens the follower's connection and its holding feed (call before accepting
/// requests), and starts its thread.
pub fn start(state: &AppState) -> Result<Follower, Box<dyn std::error::Error>> {
    let conn = state.db.own_conn()?;
    let feed = open_feed(state, &conn)?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (state, stop) = (state.clone(), Arc::clone(&stop));
        std::thread::Builder::new().name("portal-events".into()).spawn(move || follow(&state, conn, feed, &stop))?
    };
    Ok(Follower { stop, thread: Some(thread) })
}

/// The thread: follows until stopped or the ledger closes; errors and panics are
/// logged, counted, and followed by a fresh start from the stored position.
fn follow(state: &AppState, mut conn: crate::db::OwnConn, feed: Feed, stop: &AtomicBool) {
    let mut feed = Some(feed);
    loop {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| follow_feed(state, &mut conn, feed.take(), stop)));
        let error = match outcome {
            Ok(Ok(Ended::Stopped)) => return,
            Ok(Ok(Ended::Replaced)) => {
                // Normal in a cluster: not an error (a short pause all the same, so
                // that a ledger replaced again and again cannot spin this thread).
                tracing::info!("the ledger's content was replaced (a snapshot was installed): following it again");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Ok(Err(e)) => e,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("panicked: {what}")
            }
        };
        state.webhooks.follower.failed();
        tracing::error!(error = %error, "the events follower failed; it starts again from its stored position");
        std::thread::sleep(Duration::from_millis(RETRY_MS));
        if stop.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Why following a feed ended without an error.
enum Ended {
    /// Stopped, or the ledger closed: the follower stops.
    Stopped,
    /// A cluster node installed a snapshot and the ledger's content was replaced: the
    /// follower starts again from its stored position, on the new content.
    Replaced,
}

/// The feed ended: the ledger closed, or its content was replaced.
fn closed(state: &AppState) -> Ended {
    if state.ledger.is_closed() { Ended::Stopped } else { Ended::Replaced }
}

/// Follows `feed` (or a new one from the stored position) until stopped, the ledger
/// closed or its content replaced, or an error.
fn follow_feed(
    state: &AppState,
    conn: &mut Connection,
    feed: Option<Feed>,
    stop: &AtomicBool,
) -> Result<Ended, String> {
    let mut feed = match feed {
        Some(feed) => feed,
        None => open_feed(state, conn)?,
    };
    state.webhooks.follower.set_running(true);
    let row = feed_row(state);
    let mut records = Vec::with_capacity(BATCH_RECORDS_MAX);
    while !stop.load(Ordering::Acquire) {
        records.clear();
        match feed.read(&mut records, BATCH_RECORDS_MAX) {
            Ok(0) => match feed.wait(Duration::from_millis(WAIT_MS)) {
                Ok(_) => continue,
                Err(FeedError::Closed) => return Ok(closed(state)),
                Err(e) => return Err(format!("waiting on the ledger's feed: {e}")),
            },
            Ok(_) => {}
            Err(FeedError::Closed) => return Ok(closed(state)),
            Err(e) => return Err(format!("reading the ledger's feed: {e}")),
        }
        let next = feed.next_seq();
        let new = commit_batch(conn, row, &records, next).map_err(|e| format!("storing events: {e}"))?;
        if let Some(last) = records.last() {
            feed.confirm(last.seq());
        }
        state.webhooks.follower.set_position(next);
        state.webhooks.published(new);
    }
    Ok(Ended::Stopped)
}

/// Stores the events of `records`, their deliveries and the position `next_seq` (in
/// `event_feed` row `row`) in one transaction; returns the events that are new.
fn commit_batch(
    conn: &mut Connection,
    row: i64,
    records: &[FeedRecord],
    next_seq: u64,
) -> crate::db::Result<Vec<Event>> {
    let tx = crate::db::write_tx(conn)?;
    let mut new = Vec::with_capacity(records.len());
    {
        let mut describe = tx.prepare_cached("SELECT description FROM tx_meta WHERE ledger_id = ?1")?;
        for record in records {
            let event = match record {
                FeedRecord::Transaction(r) => {
                    let key = r.tx.id.0.to_le_bytes().to_vec();
                    let description: Option<String> = describe.query_row([key], |row| row.get(0)).optional()?.flatten();
                    events::of_transaction(r, description.as_deref())
                }
                FeedRecord::BatchClose { seq, summary } => events::of_batch_close(*seq, summary),
            };
            if let Some(event) = events::insert(&tx, &event)? {
                new.push(event);
            }
        }
    }
    store_position(&tx, row, next_seq)?;
    tx.commit()?;
    Ok(new)
}
