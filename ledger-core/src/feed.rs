//! The change feed: a resumable cursor over committed records, for consumers outside
//! the sequencer (webhooks, change data capture, replicas).
//!
//! A feed reads the log through `ledger_store`'s lock-free reader, straight from the
//! mapping: it takes no lock the sequencer takes, so however many feeds read and however
//! slowly, the sequencer never waits for one. It returns a record only once the
//! sequencer has applied it to the state queries read (never just once it is in the
//! log), so a consumer that saw seq `s` finds, in `Ledger::lookup` and friends, a state
//! at least as new as `s`.
//!
//! Transactions come as they were right after their commit (a sale `captured`, an
//! authorization `authorized`, a follow-up `applied`): the record and its state at that
//! moment are exactly what the log holds, whatever happened to the payment since. Batch
//! closes come with the closed batch's summary (closed batches never change).
//!
//! The log holds history from the oldest kept checkpoint on; older records are read
//! from the cold tier's runs, the same files queries read ([`ColdRange`]): a merge, by
//! seq, of each run's per-client index, with the batch closes (which no run holds) put
//! back into the seqs no transaction has, from the books. So a feed can start anywhere
//! in history; the log is simply the fast path. A consumer that wants to stay on it
//! opens a *holding* feed: while it lives, log retention keeps every segment from its
//! last confirmed seq on, as a PostgreSQL replication slot keeps WAL.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ledger_store::{Cursor, LogReader, ReadError};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::codec::{self, Record};
use crate::cold::Run;
use crate::model::{BatchSummary, Tx, TxRecord, TxState};
use crate::records::Stored;
use crate::state::State;

/// One committed record, as a feed returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRecord {
    /// A committed transaction, its `state`, `captured` and `refunded` as they were
    /// right after its commit.
    Transaction(TxRecord),
    /// A batch close at log position `seq`, with the closed batch's summary.
    BatchClose {
        /// The close's own seq (the batch's `last_seq` is its last transaction's).
        seq: u64,
        /// The closed batch.
        summary: BatchSummary,
    },
}

impl FeedRecord {
    /// The record's log position.
    pub fn seq(&self) -> u64 {
        match self {
            FeedRecord::Transaction(r) => r.seq,
            FeedRecord::BatchClose { seq, .. } => *seq,
        }
    }
}

/// A committed record as the log holds it: its seq, frame kind and payload bytes. A
/// replica applies a leader's raw records ([`Ledger::apply_replicated`](crate::Ledger::apply_replicated)),
/// and its log then holds the same payloads at the same seqs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Its log position.
    pub seq: u64,
    /// The frame kind.
    pub kind: u16,
    /// The archived record.
    pub payload: Vec<u8>,
}

/// Why a feed cannot be opened or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// `requested` lies beyond the next record to be committed: a position saved
    /// against another ledger, or one restored from an older backup.
    #[error("seq {requested} is ahead of the ledger, whose next record will be seq {next}")]
    Ahead {
        /// The seq asked for.
        requested: u64,
        /// The seq the next committed record will have.
        next: u64,
    },
    /// The ledger was closed and every committed record has been read.
    #[error("the ledger is closed")]
    Closed,
    /// A committed record no longer reads back: the log or a run was changed behind the
    /// ledger's back (`ledger verify` checks the directory).
    #[error("a committed record does not read back: {0}")]
    Damaged(String),
}

/// What the sequencer shares with feeds: how far it has applied, whether it stopped,
/// who waits, and which seqs holding feeds still need.
#[derive(Debug, Default)]
pub(crate) struct FeedShared {
    applied: AtomicU64,
    closed: AtomicBool,
    /// Threads asleep on `ready` plus wakers registered in `wakers`: the sequencer
    /// takes the lock to wake them only when this is non-zero.
    waiting: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
    ready: Condvar,
    /// Holding feeds: id -> the first seq the log must keep for it.
    holds: Mutex<BTreeMap<u64, u64>>,
    next_hold: AtomicU64,
}

impl FeedShared {
    pub(crate) fn new(applied: u64) -> Arc<FeedShared> {
        let shared = FeedShared::default();
        shared.applied.store(applied, Ordering::SeqCst);
        Arc::new(shared)
    }

    /// The sequencer applied everything through `seq`: wakes waiting feeds. One atomic
    /// load when nobody waits.
    pub(crate) fn publish(&self, seq: u64) {
        // SeqCst pairs with the waiters' increment of `waiting` and re-check of
        // `applied`: either this load sees the waiter, or the waiter sees `seq`.
        self.applied.store(seq, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }

    /// The sequencer stopped: feeds return what is left, then [`FeedError::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.lock());
        self.waiting.fetch_sub(wakers.len(), Ordering::SeqCst);
        for waker in wakers {
            waker.wake();
        }
        // Taken so that a sleeper between its check and its wait is not missed.
        let guard = self.wakers.lock();
        self.ready.notify_all();
        drop(guard);
    }

    /// The oldest seq a holding feed still needs, if any.
    pub(crate) fn held_from(&self) -> Option<u64> {
        self.holds.lock().values().copied().min()
    }

    pub(crate) fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Waits until the sequencer applied `seq` (true), `timeout` passed or the ledger
    /// closed (false).
    pub(crate) fn wait_applied(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.wakers.lock();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let reached = loop {
            if self.applied() >= seq {
                break true;
            }
            if self.closed.load(Ordering::SeqCst) || self.ready.wait_until(&mut guard, deadline).timed_out() {
                break self.applied() >= seq;
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        reached
    }
}

/// A cursor over committed records from a chosen seq: see the module documentation.
/// `Send`, not `Sync`: one consumer reads it.
pub struct Feed {
    reader: LogReader,
    /// The log from `next_seq` on, once the feed reads the log.
    cursor: Option<Cursor>,
    /// History below the log's start, while the feed reads it.
    cold: Option<ColdRange>,
    shared: Arc<FeedShared>,
    state: Arc<RwLock<State>>,
    next_seq: u64,
    /// A record read from the log but not yet applied by the sequencer.
    pending: Option<(u64, Record)>,
    hold: Option<u64>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("next_seq", &self.next_seq).field("hold", &self.hold).finish_non_exhaustive()
    }
}

impl Feed {
    pub(crate) fn open(
        reader: &LogReader,
        shared: &Arc<FeedShared>,
        state: &Arc<RwLock<State>>,
        from_seq: u64,
        holding: bool,
    ) -> Result<Feed, FeedError> {
        let from_seq = from_seq.max(1);
        let next = shared.applied() + 1;
        if from_seq > next {
            return Err(FeedError::Ahead { requested: from_seq, next });
        }
        // The hold goes in before the feed looks at the log, so retention either sees it
        // or has already removed what the feed then reads from the runs.
        let hold = holding.then(|| {
            let id = shared.next_hold.fetch_add(1, Ordering::SeqCst);
            shared.holds.lock().insert(id, from_seq);
            id
        });
        Ok(Feed {
            reader: reader.clone(),
            cursor: None,
            cold: None,
            shared: Arc::clone(shared),
            state: Arc::clone(state),
            next_seq: from_seq,
            pending: None,
            hold,
        })
    }

    /// The seq of the next record this feed returns.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether this feed holds the log (see [`Feed::confirm`]).
    pub fn is_holding(&self) -> bool {
        self.hold.is_some()
    }

    /// Appends up to `max` records that are available now to `out`, without blocking,
    /// and returns how many. 0 means the feed has caught up with the sequencer.
    pub fn read(&mut self, out: &mut Vec<FeedRecord>, max: usize) -> Result<usize, FeedError> {
        let applied = self.shared.applied();
        let mut n = 0;
        while n < max && self.next_seq <= applied {
            if let Some(cold) = &mut self.cold {
                match cold.next()? {
                    Some(record) => {
                        debug_assert_eq!(record.seq(), self.next_seq);
                        out.push(record);
                        self.next_seq += 1;
                        n += 1;
                        continue;
                    }
                    None => self.cold = None,
                }
            }
            let cursor = match &mut self.cursor {
                Some(cursor) => cursor,
                None => match self.reader.cursor(self.next_seq) {
                    Ok(cursor) => self.cursor.insert(cursor),
                    Err(ReadError::Removed { first, .. }) => {
                        // Below the log's start: from the runs, up to where the log begins.
                        self.cold = Some(ColdRange::new(&self.state, self.next_seq, first)?);
                        continue;
                    }
                    Err(e) => return Err(FeedError::Damaged(e.to_string())),
                },
            };
            let (seq, record) = match self.pending.take() {
                Some(p) => p,
                None => match cursor.next() {
                    None => break,
                    Some(Err(e)) => return Err(FeedError::Damaged(e.to_string())),
                    Some(Ok(frame)) => {
                        let record = codec::decode(frame.kind, frame.payload)
                            .map_err(|e| FeedError::Damaged(format!("record {}: {e}", frame.seq)))?;
                        (frame.seq, record)
                    }
                },
            };
            if seq > applied {
                self.pending = Some((seq, record));
                break;
            }
            out.push(self.record(seq, record)?);
            self.next_seq = seq + 1;
            n += 1;
        }
        Ok(n)
    }

    fn record(&self, seq: u64, record: Record) -> Result<FeedRecord, FeedError> {
        Ok(match record {
            Record::Tx { tx, timestamp_ns, batch_id } => {
                FeedRecord::Transaction(as_committed(tx, seq, batch_id, timestamp_ns))
            }
            Record::Close { batch_id, .. } => {
                // Applied (seq <= applied), and a closed batch never changes again.
                let summary = self.state.read().batch(batch_id).ok_or_else(|| {
                    FeedError::Damaged(format!("record {seq} closes batch {batch_id}, which the ledger does not know"))
                })?;
                FeedRecord::BatchClose { seq, summary }
            }
        })
    }

    /// True when the next record has been applied (or the ledger is closed, so a
    /// read finds out what is left).
    fn available(&self) -> bool {
        self.shared.applied() >= self.next_seq || self.shared.closed.load(Ordering::SeqCst)
    }

    fn closed_and_drained(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) && self.shared.applied() < self.next_seq
    }

    /// Blocks until a record is available (`Ok(true)`) or `timeout` passes
    /// (`Ok(false)`). [`FeedError::Closed`] once the ledger is closed and every
    /// committed record was read.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, FeedError> {
        let deadline = Instant::now() + timeout;
        let shared = &*self.shared;
        let mut guard = shared.wakers.lock();
        shared.waiting.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            if self.closed_and_drained() {
                break Err(FeedError::Closed);
            }
            if self.available() {
                break Ok(true);
            }
            if shared.ready.wait_until(&mut guard, deadline).timed_out() {
                break Ok(self.available() && !self.closed_and_drained());
            }
        };
        shared.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Resolves when a record is available; runtime-agnostic (a waker is woken by the
    /// sequencer's thread). [`FeedError::Closed`] as for [`Feed::wait`].
    pub fn wait_async(&mut self) -> impl Future<Output = Result<(), FeedError>> + Send + '_ {
        Ready { feed: self }
    }

    /// The consumer has durably processed every record through `seq`: a holding feed
    /// lets retention remove the log below `seq + 1`. Never moves the hold back, nor
    /// past what this feed has returned.
    pub fn confirm(&mut self, seq: u64) {
        let Some(id) = self.hold else { return };
        let keep_from = seq.saturating_add(1).min(self.next_seq);
        if let Some(held) = self.shared.holds.lock().get_mut(&id) {
            *held = (*held).max(keep_from);
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(id) = self.hold {
            self.shared.holds.lock().remove(&id);
        }
    }
}

struct Ready<'a> {
    feed: &'a mut Feed,
}

impl Future for Ready<'_> {
    type Output = Result<(), FeedError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let feed = &*self.feed;
        let check = |feed: &Feed| {
            if feed.closed_and_drained() {
                Some(Err(FeedError::Closed))
            } else if feed.available() {
                Some(Ok(()))
            } else {
                None
            }
        };
        if let Some(done) = check(feed) {
            return Poll::Ready(done);
        }
        let shared = &*feed.shared;
        let mut wakers = shared.wakers.lock();
        // Registered before the re-check: a publish after it sees `waiting` and wakes us.
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
            shared.waiting.fetch_add(1, Ordering::SeqCst);
        }
        drop(wakers);
        match check(feed) {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }
}

/// The records of seqs `[from, to)` read from the cold tier's runs: each run's client
/// index (client, seq, time, id) is sorted by client and seq, so the range is a merge
/// by seq of one stretch per client and run, through a heap. A transaction promoted
/// into a newer run appears in both: the second copy is skipped (same seq). The seqs no
/// transaction has are batch closes: no run holds those, but each closed batch's
/// summary carries its close's commit time, and commit times increase with seq, so the
/// k closes after a transaction committed at `t` are the k batches closed first after
/// `t`.
struct ColdRange {
    runs: Vec<Arc<Run>>,
    /// (seq, run, position, end of the stretch) of each stretch's next entry.
    heads: BinaryHeap<Reverse<(u64, usize, usize, usize)>>,
    /// Closed batches by close time: (closed_ns, batch).
    closes: Vec<(u64, BatchSummary)>,
    /// The next close after the last transaction returned.
    next_close: usize,
    next_seq: u64,
    end: u64,
    /// A transaction taken from the heap, held while the closes before it go out.
    ahead: Option<TxRecord>,
}

impl ColdRange {
    fn new(state: &RwLock<State>, from: u64, to: u64) -> Result<ColdRange, FeedError> {
        let (runs, mut closes) = {
            let state = state.read();
            let closes: Vec<(u64, BatchSummary)> =
                state.batches.iter().filter(|b| !b.is_open()).map(|b| (b.closed_ns, *b)).collect();
            (state.cold.runs.clone(), closes)
        };
        closes.sort_unstable_by_key(|&(at, _)| at);
        let mut heads = BinaryHeap::new();
        // The newest transaction below `from`: the closes after it come first.
        let mut before: (u64, u64) = (0, 0);
        for (r, run) in runs.iter().enumerate() {
            let table = &run.table;
            let index_len = table.secondary_len() - table.second_len();
            let mut pos = 0;
            while pos < index_len {
                let (client, ..) = table.secondary_at(pos);
                let all = table.secondary_bounds(client, 0..u64::MAX, 0..u64::MAX);
                let stretch = table.secondary_bounds(client, from..to, 0..u64::MAX);
                if stretch.start > all.start {
                    let (_, seq, time, _) = table.secondary_at(stretch.start - 1);
                    before = before.max((seq, time));
                }
                if !stretch.is_empty() {
                    let (_, seq, ..) = table.secondary_at(stretch.start);
                    heads.push(Reverse((seq, r, stretch.start, stretch.end)));
                }
                pos = all.end.max(pos + 1);
            }
            if let Some(damage) = table.damage() {
                return Err(FeedError::Damaged(damage.to_string()));
            }
        }
        // The seqs between that transaction and `from` are closes too: skip them.
        let skip = usize::try_from(from - before.0 - 1).unwrap_or(usize::MAX);
        let next_close = closes.partition_point(|&(at, _)| at <= before.1).saturating_add(skip);
        Ok(ColdRange { runs, heads, closes, next_close, next_seq: from, end: to, ahead: None })
    }

    /// The transaction with the next seq in the runs at or after `self.next_seq`.
    fn next_transaction(&mut self) -> Result<Option<TxRecord>, FeedError> {
        while let Some(Reverse((seq, r, pos, end))) = self.heads.pop() {
            if pos + 1 < end {
                let (_, next, ..) = self.runs[r].table.secondary_at(pos + 1);
                self.heads.push(Reverse((next, r, pos + 1, end)));
            }
            if seq < self.next_seq {
                continue; // a promoted copy of one already returned
            }
            let run = &self.runs[r];
            let (.., key) = run.table.secondary_at(pos);
            let row = run.table.find(&key).map(|at| run.row(at));
            if let Some(damage) = run.table.damage() {
                return Err(FeedError::Damaged(damage.to_string()));
            }
            let row: Stored = row.ok_or_else(|| {
                FeedError::Damaged(format!(
                    "{}: the client index names an id the run lacks",
                    run.table.path().display()
                ))
            })?;
            let r = row.unpack();
            return Ok(Some(as_committed(r.tx, r.seq, r.batch_id, r.timestamp_ns)));
        }
        Ok(None)
    }

    fn next(&mut self) -> Result<Option<FeedRecord>, FeedError> {
        if self.next_seq >= self.end {
            return Ok(None);
        }
        if self.ahead.is_none() {
            self.ahead = self.next_transaction()?.filter(|t| t.seq < self.end);
        }
        let record = match self.ahead {
            Some(t) if t.seq == self.next_seq => {
                self.ahead = None;
                // Closes after this one come after its commit.
                self.next_close = self.next_close.max(self.closes.partition_point(|&(at, _)| at <= t.timestamp_ns));
                FeedRecord::Transaction(t)
            }
            _ => {
                // No transaction has this seq: it is the next batch close.
                let (_, summary) = *self.closes.get(self.next_close).ok_or_else(|| {
                    FeedError::Damaged(format!(
                        "seq {} is neither a transaction in the runs nor a batch close in the books",
                        self.next_seq
                    ))
                })?;
                self.next_close += 1;
                FeedRecord::BatchClose { seq: self.next_seq, summary }
            }
        };
        self.next_seq += 1;
        Ok(Some(record))
    }
}

/// The record as it stood right after its commit (see [`TxRecord::as_committed`]).
fn as_committed(tx: Tx, seq: u64, batch_id: u64, timestamp_ns: u64) -> TxRecord {
    TxRecord { tx, seq, batch_id, timestamp_ns, state: TxState::Applied, captured: 0, refunded: 0 }.as_committed()
}
