//! Deterministic simulation hooks (hidden, for tests): a ledger whose sequencer does
//! not run on its own thread but is stepped by the caller, with a clock the caller
//! sets, and crashes at chosen points of a group.
//!
//! With a thread, timing decides which requests share a group (and so the timestamps
//! and every cut-over), so a failing concurrent run cannot be replayed. Here the
//! caller decides: it publishes requests through [`SimLedger::ledger`] and the
//! `publish_*` methods, then [`SimLedger::step`] takes a group of a chosen size off
//! the queue and commits it exactly as the thread would (the same `run_group`). A
//! seeded scheduler on top of this (see `tests/simulation/`) makes one seed decide
//! everything. [`Ledger::open`] opens the same way and then runs the same loop on its
//! thread; nothing here is on its path.

use std::path::Path;

use crate::completion::{self, Pending};
use crate::currency::Currency;
use crate::error::{CloseBatchError, OpenError, SnapshotError, SubmitError};
use crate::ledger::{Ledger, LedgerOptions, QUEUE_REQUESTS_MAX};
use crate::model::BatchSummary;
use crate::sequencer::{Clock, Request, Sequencer};

/// An answer the sequencer has not necessarily given yet.
#[derive(Debug)]
pub struct SimReply<T> {
    pending: Pending<T>,
}

impl<T> SimReply<T> {
    /// The answer; `None` when the request was dropped unanswered (the engine crashed
    /// or stopped before committing it). Blocks until answered or dropped: call it
    /// only after the step that took the request, or after a crash.
    pub fn wait(self) -> Option<T> {
        self.pending.wait()
    }
}

/// Where a simulated crash stops the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Between groups: whatever is queued is lost unanswered.
    Idle,
    /// Inside the next group of at most `requests_max` queued requests: its records are
    /// appended (in the page cache, like a write the disk may or may not have got) but
    /// the group was never marked whole nor synced.
    BeforeSync {
        /// Requests taken into the group.
        requests_max: usize,
    },
    /// Inside the next group, just after its sync returned but before anyone was told:
    /// durable, unacknowledged.
    AfterSync {
        /// Requests taken into the group.
        requests_max: usize,
    },
}

/// A ledger whose sequencer the caller steps; see the module documentation.
///
/// The [`Ledger`] handle from [`SimLedger::ledger`] answers queries and accepts
/// [`Ledger::submit_async`]; its blocking writes (`submit`, `close_batch`, `snapshot`,
/// `close`) would wait for a step that never comes, so use the `publish_*` methods.
pub struct SimLedger {
    ledger: Ledger,
    sequencer: Sequencer,
    stopped: bool,
}

impl std::fmt::Debug for SimLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimLedger")
            .field("ledger", &self.ledger)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl SimLedger {
    /// Opens the ledger in `dir` as [`Ledger::open`] does (recovery, snapshot, replay)
    /// without starting the sequencer thread; its clock reads `now_ns`.
    pub fn open(dir: impl AsRef<Path>, options: LedgerOptions, now_ns: u64) -> Result<SimLedger, OpenError> {
        let (ledger, mut sequencer) = Ledger::open_unstarted(dir.as_ref(), options, ledger_store::Storage::os())?;
        sequencer.clock = Clock::Fixed(now_ns);
        Ok(SimLedger { ledger, sequencer, stopped: false })
    }

    /// The handle for queries and `submit_async`.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sets the time the next groups are committed at (Unix nanoseconds).
    pub fn set_now_ns(&mut self, now_ns: u64) {
        self.sequencer.clock = Clock::Fixed(now_ns);
    }

    /// Requests published and not yet taken by a step.
    pub fn queued(&self) -> usize {
        self.sequencer.requests.len()
    }

    fn publish(&self, request: Request) -> Result<(), SubmitError> {
        // A full queue would block this thread forever: it is the one that steps.
        assert!(self.queued() < QUEUE_REQUESTS_MAX, "the simulation's queue is full: step before publishing more");
        self.ledger.send(request)
    }

    /// Publishes a batch close (as [`Ledger::close_batch`], without waiting).
    ///
    /// # Panics
    /// When [`QUEUE_REQUESTS_MAX`] requests are queued already.
    pub fn publish_close(
        &self,
        client_id: u64,
        currency: Currency,
    ) -> Result<SimReply<Result<BatchSummary, CloseBatchError>>, SubmitError> {
        let (done, pending) = completion::pair();
        self.publish(Request::CloseBatch { client_id, currency, done })?;
        Ok(SimReply { pending })
    }

    /// Publishes a snapshot request (as [`Ledger::snapshot`], without waiting).
    ///
    /// # Panics
    /// When [`QUEUE_REQUESTS_MAX`] requests are queued already.
    pub fn publish_snapshot(&self) -> Result<SimReply<Result<u64, SnapshotError>>, SubmitError> {
        let (done, pending) = completion::pair();
        self.publish(Request::Snapshot { done })?;
        Ok(SimReply { pending })
    }

    /// Publishes a shutdown (as [`Ledger::close`], without waiting): the group that
    /// takes it commits what came before it, then the log is synced and closed and
    /// every later request is refused.
    ///
    /// # Panics
    /// When [`QUEUE_REQUESTS_MAX`] requests are queued already.
    pub fn publish_shutdown(&self) -> Result<SimReply<Result<(), SubmitError>>, SubmitError> {
        let (done, pending) = completion::pair();
        self.publish(Request::Shutdown { done })?;
        Ok(SimReply { pending })
    }

    /// Whether a shutdown was committed: steps do nothing any more.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Takes at most `requests_max` queued requests (at least one when any is queued)
    /// as one group and commits it as the sequencer thread would, then waits for a
    /// snapshot the group started. Returns how many requests it took.
    pub fn step(&mut self, requests_max: usize) -> usize {
        if self.stopped {
            return 0;
        }
        let mut batch = Vec::new();
        self.sequencer.drain(&mut batch, 0, requests_max.max(1));
        let taken = batch.len();
        if taken > 0 {
            self.stopped = !self.sequencer.run_group(batch);
            self.sequencer.settle_snapshot();
        }
        taken
    }

    /// Runs the age cut-over check now, as the thread does on its timer.
    pub fn check_age(&mut self) {
        if !self.stopped {
            self.sequencer.close_aged_batches();
            self.sequencer.settle_snapshot();
        }
    }

    /// Stops the engine as a crash would at `at`: no close, no final sync, queued
    /// requests dropped unanswered. The caller may then damage the unsynced tail of the
    /// files before reopening.
    pub fn crash(mut self, at: Crash) {
        let (requests_max, commit) = match at {
            Crash::Idle => return,
            Crash::BeforeSync { requests_max } => (requests_max, false),
            Crash::AfterSync { requests_max } => (requests_max, true),
        };
        if self.stopped {
            return;
        }
        let mut batch = Vec::new();
        self.sequencer.drain(&mut batch, 0, requests_max.max(1));
        // A shutdown in the group ends it, as in `run_group`; it is never answered.
        if let Some(at) = batch.iter().position(|r| matches!(r, Request::Shutdown { .. })) {
            batch.truncate(at);
        }
        self.sequencer.abandon_group(batch, commit);
    }

    /// Commits everything queued, syncs and closes, as [`Ledger::close`] does.
    pub fn close(mut self) -> Result<(), SubmitError> {
        while self.step(usize::MAX) > 0 {}
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.sequencer.finish()
    }
}

/// Decodes a checkpoint's payload (covering `seq`) and checks its books as opening
/// would, without its runs: for fuzzing the decoder. `Ok` says what it holds.
pub fn decode_checkpoint(payload: &[u8], seq: u64) -> Result<String, String> {
    let decoded = crate::checkpoint::decode(payload, seq)?;
    let summary = format!("{} runs, {} batches", decoded.runs.len(), decoded.books.batches.len());
    let empty = tempfile_free_dir();
    let decoded = crate::checkpoint::Decoded { runs: Vec::new(), ..decoded };
    crate::checkpoint::load(decoded, &empty, &crate::cold::Filters::new(0))?;
    Ok(summary)
}

/// A directory no run is looked up in (a checkpoint without runs opens none).
fn tempfile_free_dir() -> std::path::PathBuf {
    std::path::PathBuf::from("/nonexistent-ledger-runs")
}

/// A checkpoint payload with these books and runs (for fuzz seeds).
pub fn encode_checkpoint(last_seq: u64, last_ts: u64, runs: &[(u64, u64)], next_run_id: u64) -> Vec<u8> {
    let books = crate::checkpoint::Books { last_seq, last_ts, ..Default::default() };
    let ids: Vec<u64> = runs.iter().map(|r| r.0).collect();
    let entries: Vec<u64> = runs.iter().map(|r| r.1).collect();
    crate::checkpoint::encode(&books, &ids, &entries, next_run_id)
}
