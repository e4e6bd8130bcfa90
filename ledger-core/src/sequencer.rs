//! The single sequencer: drains what producers published, judges every command in
//! order, appends the accepted ones to the log, makes the group durable with one sync
//! (group commit), applies it to the state readers see, and completes every waiter.
//!
//! The single-writer, drain-what-is-published loop follows the LMAX Disruptor's
//! batching effect: under load one pass takes many requests, so the cost of a sync is
//! shared by all of them; with no load a lone request is committed at once.
//!
//! One turn of the loop is [`Sequencer::drain`] then [`Sequencer::run_group`], and the
//! clock is a [`Clock`], so the simulation (`crate::sim`) can step the very same code
//! from a test's thread with a clock it sets, and one seed decides every grouping.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use ledger_store::Log;
use parking_lot::{Mutex, RwLock};
use rkyv::util::AlignedVec;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::checkpoint::{self, Book, Books, Job};
use crate::codec::{self, CloseFrame, FRAME_BATCH_CLOSE, FRAME_TX, Record, TxFrame};
use crate::cold::{self, Ahead};
use crate::completion::{self, Completer};
use crate::currency::Currency;
use crate::error::{CloseBatchError, ReplicateError, SnapshotError, SubmitError};
use crate::feed::{FeedShared, RawRecord};
use crate::model::{BatchSummary, Tx, TxOutcome};
use crate::state::{Changes, Group, State};

/// Stop draining more requests into a group once it holds this many commands (a single
/// request is never split, so a group can exceed it by one request).
pub(crate) const GROUP_COMMANDS_MAX: usize = 8190;

/// Work sent to the sequencer.
#[derive(Debug)]
pub(crate) enum Request {
    Submit {
        txs: Vec<Tx>,
        done: Completer<Result<Vec<TxOutcome>, SubmitError>>,
    },
    CloseBatch {
        client_id: u64,
        currency: Currency,
        done: Completer<Result<BatchSummary, CloseBatchError>>,
    },
    /// Apply records another ledger committed (a replica following its leader).
    Replicate {
        records: Vec<RawRecord>,
        done: Completer<Result<u64, ReplicateError>>,
    },
    /// A replicated ledger's node became its leader (a proposer) or stopped being it.
    SetProposer {
        proposer: Option<Arc<dyn Proposer>>,
        ledger: Weak<crate::ledger::Inner>,
    },
    /// The group proposed from `first_seq` on will not be committed by this proposal.
    ProposalFailed {
        first_seq: u64,
        reason: String,
    },
    /// The proposer's answer to confirmation `token` ([`Proposer::confirm`]).
    Confirmed {
        token: u64,
        result: Result<(), String>,
    },
    /// Write a checkpoint of the state now; replies with the seq it covers.
    Snapshot {
        done: Completer<Result<u64, SnapshotError>>,
    },
    /// Sync, close the log and stop; later requests find the queue closed.
    Shutdown {
        done: Completer<Result<(), SubmitError>>,
    },
}

impl Request {
    fn commands(&self) -> usize {
        match self {
            Request::Submit { txs, .. } => txs.len(),
            Request::Replicate { records, .. } => records.len().max(1),
            Request::CloseBatch { .. }
            | Request::Snapshot { .. }
            | Request::Shutdown { .. }
            | Request::SetProposer { .. }
            | Request::ProposalFailed { .. }
            | Request::Confirmed { .. } => 1,
        }
    }
}

/// When to close a batch without being asked. Each close is a record in the log like
/// an explicit one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CutoverPolicy {
    /// Close an account's open batch once it counts this many transactions.
    pub transactions_max: Option<u64>,
    /// Close an account's open batch once its first transaction is this old (checked
    /// at least every quarter of it, and at most every [`AGE_CHECK_INTERVAL_MAX`]).
    pub age_max: Option<Duration>,
}

/// Upper bound on how long an aged batch can stay open past its `age_max`.
pub const AGE_CHECK_INTERVAL_MAX: Duration = Duration::from_secs(1);

/// Where the sequencer reads the time for commit timestamps and the age cut-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The wall clock ([`now_ns`]): every ledger that runs its own thread.
    Wall,
    /// A time the caller sets (Unix nanoseconds): the deterministic simulation, where
    /// one seed must decide every timestamp.
    Fixed(u64),
}

impl Clock {
    fn now_ns(self) -> u64 {
        match self {
            Clock::Wall => now_ns(),
            Clock::Fixed(ns) => ns,
        }
    }
}

/// What one request's commands came to, before the group is durable.
#[derive(Debug)]
enum Reply {
    Submit(Vec<TxOutcome>),
    Replicate(Result<u64, ReplicateError>),
    CloseBatch(Result<BatchSummary, CloseBatchError>),
    /// Taken once the group is durable and applied.
    Snapshot,
}

/// Replicates a leader's groups: the Raft layer of a replicated ledger implements it
/// (see `Ledger::set_proposer`).
pub trait Proposer: Send + Sync + std::fmt::Debug {
    /// Starts replicating `records`, a group the leader judged (their seqs follow the
    /// ledger's last); must not block. If a majority commits them, they come back to
    /// every node, this one included, through `Ledger::apply_replicated`, and the
    /// callers are answered then. When it is known that this proposal will not be
    /// committed (no longer the leader, ...), call [`ProposalFailed::fail`].
    fn propose(&self, records: Vec<RawRecord>, failed: ProposalFailed);

    /// Confirms, for a group with nothing to commit (its transactions all refused,
    /// ids already answered, ...), that its answers can be given: that this node still
    /// leads with a quorum, in the term it was handed this proposer for, and has
    /// applied everything committed up to now (Raft's read index; openraft's
    /// `ensure_linearizable`). Then `confirmation.done(Ok(()))`, otherwise
    /// `done(Err(why))`; must not block. Without it a deposed leader, cut off from its
    /// majority, would answer from a state that misses what the new leader committed:
    /// "referenced payment not found" for a payment already acknowledged elsewhere.
    fn confirm(&self, confirmation: Confirmation);
}

/// Answers a [`Proposer::confirm`].
#[derive(Debug)]
pub struct Confirmation {
    ledger: Weak<crate::ledger::Inner>,
    token: u64,
}

impl Confirmation {
    /// `Ok(())`: this node led, with a quorum, in the proposer's term, and has applied
    /// all that was committed; `Err(why)`: it could not be confirmed.
    pub fn done(self, result: Result<(), String>) {
        if let Some(inner) = self.ledger.upgrade() {
            let _ = inner.send(Request::Confirmed { token: self.token, result });
        }
    }
}

/// Tells the ledger a proposal failed (its callers are told their outcome is unknown).
#[derive(Debug)]
pub struct ProposalFailed {
    ledger: Weak<crate::ledger::Inner>,
    first_seq: u64,
}

impl ProposalFailed {
    /// The proposal will not be committed: `reason` says why.
    pub fn fail(self, reason: impl Into<String>) {
        if let Some(inner) = self.ledger.upgrade() {
            let _ = inner.send(Request::ProposalFailed { first_seq: self.first_seq, reason: reason.into() });
        }
    }
}

/// A leader's group proposed and not yet come back, or one with nothing to commit
/// waiting for its answers to be confirmed.
#[derive(Debug)]
struct InFlight {
    records: Vec<RawRecord>,
    waiters: Vec<(Request, Reply)>,
    /// A group with nothing to commit: the confirmation asked for, and the ledger's
    /// next seq when it was judged (if it moved meanwhile, the group is judged again).
    confirming: Option<Confirming>,
}

#[derive(Debug, Clone, Copy)]
struct Confirming {
    token: u64,
    judged_at: u64,
}

pub(crate) struct Sequencer {
    pub(crate) log: Log,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) requests: Receiver<Request>,
    pub(crate) cutover: CutoverPolicy,
    pub(crate) clock: Clock,
    /// Start a checkpoint after this many records since the last one (0: never by
    /// itself), or once the hot tier's estimated heap reaches half of
    /// `hot_bytes_max` (the frozen tier, as large, lives beside it while it is written).
    checkpoint_every_records: u64,
    hot_bytes_max: usize,
    records_since_checkpoint: u64,
    /// The checkpoint being written in the background, if any.
    checkpoint_job: Option<JoinHandle<Result<u64, checkpoint::Failed>>>,
    /// `LedgerOptions::keep_whole_log`: no log segment is ever removed.
    pub(crate) keep_whole_log: bool,
    /// A checkpoint that failed, to be tried again when the next one comes due.
    checkpoint_retry: Option<Job>,
    pub(crate) book: Arc<Mutex<Book>>,
    /// The merger thread, its wake-up channel and its stop flag.
    merger: Option<(Sender<()>, JoinHandle<()>)>,
    merger_stop: Arc<AtomicBool>,
    buf: AlignedVec,
    /// Set after a failed append or sync: the log's state on disk is unknown.
    failed: Option<String>,
    /// Feeds: told what is applied, and holding the log they have not confirmed.
    pub(crate) feed: Arc<FeedShared>,
    /// `LedgerOptions::replicated`: a node of a replicated ledger. Its log takes only
    /// groups a majority committed (`apply_replicated`); it judges submits only while
    /// it is the leader, proposing them instead of committing them.
    pub(crate) replicated: bool,
    proposer: Option<Arc<dyn Proposer>>,
    ledger: Weak<crate::ledger::Inner>,
    in_flight: Option<InFlight>,
    /// Submits and closes waiting for the group in flight to come back.
    held: VecDeque<Request>,
    /// The last confirmation token handed out.
    confirm_token: u64,
    /// Set as the thread stops, before its last look at the queue (`Inner::send`).
    pub(crate) stopped: Arc<AtomicBool>,
    /// While judging a proposal: its records, instead of the log.
    sink: Option<Vec<RawRecord>>,
}

impl Sequencer {
    pub(crate) fn new(
        log: Log,
        state: Arc<RwLock<State>>,
        requests: Receiver<Request>,
        cutover: CutoverPolicy,
        checkpoint_every_records: u64,
        hot_bytes_max: usize,
        book: Arc<Mutex<Book>>,
    ) -> Self {
        let merger_stop = Arc::new(AtomicBool::new(false));
        let m = checkpoint::Merger {
            dir: log.snapshot_writer().dir().to_path_buf(),
            storage: log.snapshot_writer().storage().clone(),
            state: Arc::clone(&state),
            book: Arc::clone(&book),
            stop: Arc::clone(&merger_stop),
        };
        let (wake, woken) = crossbeam::channel::bounded(1);
        let merger = std::thread::Builder::new()
            .name("ledger-merger".into())
            .spawn(move || {
                // Best effort (see ledger_store::background): merges yield to the sequencer.
                let _ = ledger_store::background::lower_priority();
                checkpoint::merger(&m, &woken)
            })
            .map(|thread| (wake.clone(), thread));
        let merger = match merger {
            Ok(merger) => {
                let _ = wake.try_send(()); // runs a checkpoint left unmerged
                Some(merger)
            }
            Err(e) => {
                let mut b = book.lock();
                b.stats.merge_failures += 1;
                b.stats.last_merge_error = Some(format!("starting the merger thread: {e}"));
                None
            }
        };
        Sequencer {
            merger,
            merger_stop,
            log,
            state,
            requests,
            cutover,
            clock: Clock::Wall,
            checkpoint_every_records,
            hot_bytes_max,
            records_since_checkpoint: 0,
            checkpoint_job: None,
            keep_whole_log: false,
            checkpoint_retry: None,
            book,
            buf: AlignedVec::new(),
            failed: None,
            feed: FeedShared::new(0),
            replicated: false,
            proposer: None,
            ledger: Weak::new(),
            in_flight: None,
            held: VecDeque::new(),
            confirm_token: 0,
            stopped: Arc::new(AtomicBool::new(false)),
            sink: None,
        }
    }

    /// Runs until a shutdown request or until every handle is gone.
    pub(crate) fn run(mut self) {
        self.serve();
        // Whatever was queued after the last group (while the log was being closed,
        // say) is refused: dropped, its waiter sees the ledger closed. Senders look at
        // `stopped` after queuing, so one that queues after this last look drops its
        // request itself.
        self.stopped.store(true, Ordering::SeqCst);
        while let Ok(request) = self.requests.try_recv() {
            drop(request);
        }
    }

    /// Takes groups from the queue until a shutdown or until every handle is gone.
    fn serve(&mut self) {
        let mut batch = Vec::new();
        let tick = self.cutover.age_max.map(|age| (age / 4).clamp(Duration::from_millis(1), AGE_CHECK_INTERVAL_MAX));
        let mut next_age_check = tick.map(|t| Instant::now() + t);
        loop {
            if let (Some(due), Some(tick)) = (next_age_check, tick)
                && Instant::now() >= due
            {
                self.close_aged_batches();
                next_age_check = Some(Instant::now() + tick);
            }
            let first = match next_age_check {
                Some(due) => match self.requests.recv_deadline(due) {
                    Ok(first) => first,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.requests.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                },
            };
            let commands = first.commands();
            batch.push(first);
            self.drain(&mut batch, commands, usize::MAX);
            if !self.run_group(std::mem::take(&mut batch)) {
                return;
            }
        }
        let _ = self.finish();
    }

    /// Moves what is published into `batch` (holding `commands` commands so far) until
    /// the queue is empty, the group reaches [`GROUP_COMMANDS_MAX`] commands, or it
    /// holds `requests_max` requests.
    pub(crate) fn drain(&self, batch: &mut Vec<Request>, mut commands: usize, requests_max: usize) {
        while commands < GROUP_COMMANDS_MAX && batch.len() < requests_max {
            match self.requests.try_recv() {
                Ok(next) => {
                    commands += next.commands();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
    }

    /// Commits one group taken from the queue. A shutdown ends the group: what came
    /// before it is committed, then the log is closed; returns false once stopped.
    pub(crate) fn run_group(&mut self, mut batch: Vec<Request>) -> bool {
        let shutdown = batch.iter().position(|r| matches!(r, Request::Shutdown { .. }));
        let rest = shutdown.map(|at| batch.split_off(at));
        if self.replicated {
            self.process_replicated(batch);
        } else {
            // A leader's controls mean nothing to a ledger that is not replicated.
            batch.retain(|r| {
                !matches!(r, Request::SetProposer { .. } | Request::ProposalFailed { .. } | Request::Confirmed { .. })
            });
            self.process(batch);
        }
        if let Some(mut rest) = rest {
            let Request::Shutdown { done } = rest.remove(0) else { unreachable!("split at the shutdown") };
            // Anything queued after the shutdown is refused: drop it (its waiters see Closed).
            drop(rest);
            self.abandon_in_flight("the ledger closed");
            done.complete(self.finish());
            return false;
        }
        true
    }

    /// Closes every open batch whose first transaction is older than the policy's age.
    pub(crate) fn close_aged_batches(&mut self) {
        let Some(age) = self.cutover.age_max else { return };
        let cutoff = self.clock.now_ns().saturating_sub(u64::try_from(age.as_nanos()).unwrap_or(u64::MAX));
        let aged = self.state.read().open_batches_opened_before(cutoff);
        if aged.is_empty() {
            return;
        }
        // Nobody waits for these: the completions are simply dropped.
        let requests = aged
            .into_iter()
            .map(|(client_id, currency)| Request::CloseBatch { client_id, currency, done: completion::pair().0 })
            .collect();
        if self.replicated {
            // Only the leader closes batches; its closes reach every node as records.
            if self.proposer.is_some() {
                self.process_replicated(requests);
            }
        } else {
            self.process(requests);
        }
    }

    pub(crate) fn finish(&mut self) -> Result<(), SubmitError> {
        if let Some(job) = self.checkpoint_job.take() {
            let _ = job.join(); // the log must stay open while a checkpoint is written
        }
        self.stop_merger();
        if let Some(reason) = &self.failed {
            return Err(SubmitError::Failed(reason.clone()));
        }
        self.log.sync().map(|_| ()).map_err(|e| SubmitError::Failed(e.to_string()))
    }

    fn process(&mut self, requests: Vec<Request>) {
        if let Some(reason) = &self.failed {
            let err = SubmitError::Failed(reason.clone());
            for request in requests {
                fail(request, err.clone());
            }
            return;
        }
        let state = Arc::clone(&self.state);
        let (replies, changes, error, committed_group) = {
            let committed = state.read();
            let (replies, changes, mut error) = self.judge(&committed, &requests);
            if error.is_none()
                && let Some(damage) = committed.cold.damage()
            {
                // What the group read from a damaged run cannot be trusted: its
                // appended frames are never committed, and the ledger stops here.
                error = Some(format!("a cold-tier run is damaged: {damage} (`ledger verify` checks the directory)"));
            }
            let mut committed_group = None;
            if error.is_none() {
                let records = self.log.next_seq() - 1 - self.log.committed_seq();
                let started = std::time::Instant::now();
                match self.log.commit() {
                    Ok(_) => committed_group = Some((records, started.elapsed())),
                    Err(e) => error = Some(e.to_string()),
                }
            }
            (replies, changes, error, committed_group)
        };
        // Counted once the state's read lock is released: the checkpoint and merger
        // threads take the book's lock before the state's, never the other way round.
        if let Some((records, took)) = committed_group
            && records > 0
        {
            self.book.lock().commits.record(records, took);
        }
        if let Some(reason) = error {
            // Nothing of this group is acknowledged or applied; the log refuses writes.
            self.failed = Some(reason.clone());
            let mut replies = replies.into_iter();
            for request in requests {
                match (request, replies.next()) {
                    // The replica that diverged is told so precisely.
                    (
                        Request::Replicate { done, .. },
                        Some(Reply::Replicate(Err(e @ ReplicateError::Diverged { .. }))),
                    ) => {
                        done.complete(Err(e));
                    }
                    (request, _) => fail(request, SubmitError::Failed(reason.clone())),
                }
            }
            return;
        }
        let (records, hot_bytes, applied) = {
            let mut committed = state.write();
            let before = committed.last_seq();
            committed.apply(changes);
            (committed.last_seq() - before, committed.records.heap_bytes(), committed.last_seq())
        };
        self.feed.publish(applied);
        self.records_since_checkpoint += records;
        let due = (self.checkpoint_every_records > 0 && self.records_since_checkpoint >= self.checkpoint_every_records)
            || (self.hot_bytes_max > 0 && hot_bytes >= self.hot_bytes_max / 2);
        let mut asked = Vec::new();
        for (request, reply) in requests.into_iter().zip(replies) {
            match (request, reply) {
                (Request::Submit { done, .. }, Reply::Submit(outcomes)) => done.complete(Ok(outcomes)),
                (Request::CloseBatch { done, .. }, Reply::CloseBatch(result)) => done.complete(result),
                (Request::Replicate { done, .. }, Reply::Replicate(result)) => done.complete(result),
                (Request::Snapshot { done }, Reply::Snapshot) => asked.push(done),
                _ => unreachable!("replies follow requests"),
            }
        }
        if !asked.is_empty() || due {
            if self.hot_bytes_max > 0 && hot_bytes >= self.hot_bytes_max {
                // Back-pressure: the hot tier is at its budget while the previous
                // checkpoint still writes; wait for it, so memory stays bounded (at most
                // the budget in the hot tier plus half of it frozen).
                self.settle_snapshot();
            }
            self.start_checkpoint(asked);
        }
    }

    /// Judges a group's requests in order against `committed` and appends the accepted
    /// records to the log, without committing them: the replies, the overlay to apply
    /// once the group is durable, and the first append error (which ends the group).
    fn judge(&mut self, committed: &State, requests: &[Request]) -> (Vec<Reply>, Changes, Option<String>) {
        let txs = requests.iter().flat_map(|r| match r {
            Request::Submit { txs, .. } => txs.as_slice(),
            _ => &[],
        });
        let ahead: Vec<Ahead> = txs.clone().map(|tx| cold::ahead(tx.id, tx.ref_id)).collect();
        committed.warm(txs.map(|tx| tx.id));
        let mut group = committed.group(requests.iter().map(Request::commands).sum());
        let now = self.clock.now_ns();
        let mut replies = Vec::with_capacity(requests.len());
        let mut error = None;
        let mut judging = 0;
        for request in requests {
            let reply = match request {
                Request::Submit { txs, .. } => {
                    let mut outcomes = Vec::with_capacity(txs.len());
                    for tx in txs {
                        committed.prefetch(&ahead, judging);
                        judging += 1;
                        match self.submit_one(&mut group, tx, now) {
                            Ok(outcome) => outcomes.push(outcome),
                            Err(e) => {
                                error.get_or_insert(e);
                                break;
                            }
                        }
                    }
                    Reply::Submit(outcomes)
                }
                Request::CloseBatch { client_id, currency, .. } => {
                    match self.close_one(&mut group, *client_id, *currency, now) {
                        Ok(result) => Reply::CloseBatch(result),
                        Err(e) => {
                            error.get_or_insert(e);
                            Reply::CloseBatch(Err(CloseBatchError::Empty))
                        }
                    }
                }
                Request::Replicate { records, .. } => match self.replicate(&mut group, records) {
                    Ok(reply) => Reply::Replicate(reply),
                    Err((seq, detail)) => {
                        error.get_or_insert(format!("replicated record {seq} does not reproduce: {detail}"));
                        Reply::Replicate(Err(ReplicateError::Diverged { seq, detail }))
                    }
                },
                Request::Snapshot { .. } => Reply::Snapshot,
                Request::Shutdown { .. } => unreachable!("shutdown is split off before processing"),
                Request::SetProposer { .. } | Request::ProposalFailed { .. } | Request::Confirmed { .. } => {
                    unreachable!("a replicated ledger's requests are sorted before judging")
                }
            };
            replies.push(reply);
            if error.is_some() {
                break;
            }
        }
        (replies, group.into_changes(), error)
    }

    /// Starts a checkpoint: freezes the hot tier and copies the books (memory-speed,
    /// under the write lock, between groups); a background thread writes the run, merges
    /// runs, writes the checkpoint file and installs the result while commits go on.
    /// One runs at a time: an automatic one that comes due while another runs waits for
    /// the next group; an asked-for one waits for the running one to finish first. A
    /// failed one is retried (with the same frozen tier) when the next one comes due.
    fn start_checkpoint(&mut self, asked: Vec<Completer<Result<u64, SnapshotError>>>) {
        if let Some(job) = self.checkpoint_job.take_if(|job| job.is_finished() || !asked.is_empty()) {
            // The thread never panics (the job catches it): a join error cannot happen.
            match job.join() {
                Ok(Err(failed)) => self.checkpoint_retry = Some(failed.0),
                Ok(Ok(_)) => self.retain_log(),
                Err(_) => {}
            }
        }
        if self.checkpoint_job.is_some() {
            return; // automatic, and one is still running
        }
        let cx = checkpoint::Context {
            writer: self.log.snapshot_writer(),
            state: Arc::clone(&self.state),
            book: Arc::clone(&self.book),
            merger: self.merger.as_ref().map(|(wake, _)| wake.clone()),
        };
        if !asked.is_empty()
            && let Some(job) = self.checkpoint_retry.take()
        {
            // An asked-for checkpoint covers the state now: the one that failed goes
            // first, here, and if it fails again so does the asked one.
            if let Err(failed) = checkpoint::run(job, &cx, Vec::new()) {
                let (failed, e) = *failed;
                self.checkpoint_retry = Some(failed);
                for done in asked {
                    done.complete(Err(SnapshotError::Write(e.clone())));
                }
                return;
            }
        }
        let job = match self.checkpoint_retry.take() {
            Some(job) => job,
            None => {
                let mut state = self.state.write();
                let mut fresh = state.records.new_like();
                // Room for as many as the tier being frozen: the index is not rebuilt
                // doubling by doubling on the sequencer (measured: 1.6% of its time);
                // untouched room costs address space, not memory.
                fresh.reserve(state.records.len());
                let frozen = Arc::new(std::mem::replace(&mut state.records, fresh));
                state.frozen = Some(Arc::clone(&frozen));
                Job { frozen, books: Books::of(&state) }
            }
        };
        self.records_since_checkpoint = 0;
        let spare = job.clone();
        let spawned = std::thread::Builder::new().name("ledger-checkpoint".into()).spawn(move || {
            // Best effort (see ledger_store::background): the checkpoint yields to
            // the sequencer, which waits for it anyway once the hot tier is full.
            let _ = ledger_store::background::lower_priority();
            checkpoint::run(job, &cx, asked)
        });
        match spawned {
            Ok(handle) => self.checkpoint_job = Some(handle),
            Err(e) => {
                // No thread: keep the job for the next try (the log holds everything).
                let mut book = self.book.lock();
                book.stats.failures += 1;
                book.stats.last_error = Some(format!("starting the checkpoint thread: {e}"));
                self.checkpoint_retry = Some(spare);
            }
        }
    }

    /// Removes the log's segments whose frames the oldest kept checkpoint covers: no
    /// recovery starts before a kept checkpoint, and the runs hold every transaction,
    /// so reopening verifies and replays only the log since that checkpoint, whatever
    /// the history. The log is synced first (with `Durability::None` frames may still be
    /// only in the page cache): a power loss can then never leave a kept checkpoint
    /// beyond the log, which would make it stale and leave nothing to start from. A
    /// failure is counted and reported; the next checkpoint tries again.
    fn retain_log(&mut self) {
        if self.keep_whole_log {
            return;
        }
        let Some(checkpoint) = self.book.lock().kept.front().map(|(seq, _)| *seq) else { return };
        // A holding feed keeps the log from its first unconfirmed record on.
        let oldest = self.feed.held_from().map_or(checkpoint, |keep_from| checkpoint.min(keep_from.saturating_sub(1)));
        if oldest < self.log.first_seq() {
            return;
        }
        let removed =
            self.log.sync().map_err(|e| format!("syncing the log before removing segments: {e}")).and_then(|_| {
                self.log.remove_segments_before(oldest + 1).map_err(|e| format!("removing log segments: {e}"))
            });
        let mut book = self.book.lock();
        match removed {
            Ok(n) => book.stats.segments_removed += n as u64,
            Err(e) => {
                book.stats.cleanup_failures += 1;
                book.stats.last_cleanup_error = Some(e);
            }
        }
    }

    /// A replicated ledger's node takes a group of requests: records a majority
    /// committed are applied (and answer the callers of the group this node proposed,
    /// if they are its records); submits and closes are judged into a proposal while
    /// this node is the leader, one group in flight at a time, and refused otherwise.
    fn process_replicated(&mut self, requests: Vec<Request>) {
        for request in requests {
            match request {
                Request::Submit { .. } | Request::CloseBatch { .. } => {
                    if self.proposer.is_some() && self.failed.is_none() {
                        self.held.push_back(request);
                    } else if let Some(reason) = &self.failed {
                        let reason = reason.clone();
                        fail(request, SubmitError::Failed(reason));
                    } else {
                        fail(request, SubmitError::NotLeader);
                    }
                }
                Request::SetProposer { proposer, ledger } => {
                    self.ledger = ledger;
                    if proposer.is_none() {
                        self.abandon_in_flight("this node is no longer the leader");
                        for request in std::mem::take(&mut self.held) {
                            fail(request, SubmitError::NotLeader);
                        }
                    }
                    self.proposer = proposer;
                }
                Request::ProposalFailed { first_seq, reason } => {
                    if self.in_flight.as_ref().and_then(|f| f.records.first()).is_some_and(|r| r.seq == first_seq) {
                        self.abandon_in_flight(&reason);
                    }
                }
                Request::Confirmed { token, result } => self.confirmed(token, result),
                Request::Replicate { records, done } => {
                    let ours = !records.is_empty() && self.in_flight.as_ref().is_some_and(|f| f.records == records);
                    let first = records.first().map(|r| r.seq);
                    let (reply, pending) = completion::pair();
                    self.process(vec![Request::Replicate { records, done: reply }]);
                    let result = pending.wait().unwrap_or(Err(ReplicateError::Submit(SubmitError::Closed)));
                    let applied = result.is_ok() && first.is_some();
                    if ours && applied {
                        if let Some(in_flight) = self.in_flight.take() {
                            complete(in_flight.waiters);
                        }
                    } else if let Some(start) = self.in_flight.as_ref().and_then(|f| f.records.first()).map(|r| r.seq)
                        && self.log.next_seq() > start
                    {
                        // Other records took the seqs this group was judged for.
                        self.abandon_in_flight("another group was committed at its seqs");
                    }
                    done.complete(result);
                }
                other => self.process(vec![other]),
            }
        }
        self.propose_held();
    }

    /// Judges the held submits and closes into a proposal, when none is in flight.
    fn propose_held(&mut self) {
        while self.in_flight.is_none() && !self.held.is_empty() && self.failed.is_none() {
            let Some(proposer) = self.proposer.clone() else { return };
            let mut requests = Vec::new();
            let mut commands = 0;
            while let Some(next) = self.held.front() {
                if commands > 0 && commands + next.commands() > GROUP_COMMANDS_MAX {
                    break;
                }
                commands += next.commands();
                requests.extend(self.held.pop_front());
            }
            let state = Arc::clone(&self.state);
            self.sink = Some(Vec::new());
            let (replies, _overlay, error) = {
                let committed = state.read();
                self.judge(&committed, &requests)
            };
            let records = self.sink.take().unwrap_or_default();
            if let Some(reason) = error {
                for request in requests {
                    fail(request, SubmitError::Failed(reason.clone()));
                }
                continue;
            }
            let waiters: Vec<(Request, Reply)> = requests.into_iter().zip(replies).collect();
            let Some(first_seq) = records.first().map(|r| r.seq) else {
                // Nothing to commit (ids that exist, refusals, empty batches): answered
                // once the proposer confirms this node still leads and missed nothing.
                // Held like a proposal meanwhile, so that nothing of this node's own
                // lands between the judging and the answer.
                self.confirm_token += 1;
                let confirming = Confirming { token: self.confirm_token, judged_at: self.log.next_seq() };
                self.in_flight = Some(InFlight { records, waiters, confirming: Some(confirming) });
                proposer.confirm(Confirmation { ledger: self.ledger.clone(), token: confirming.token });
                continue;
            };
            let failed = ProposalFailed { ledger: self.ledger.clone(), first_seq };
            self.in_flight = Some(InFlight { records: records.clone(), waiters, confirming: None });
            proposer.propose(records, failed);
        }
    }

    /// The proposer answered confirmation `token`: the group waiting for it is
    /// answered as judged if the ledger did not move since (nothing was applied in
    /// between), judged again (first in line) if it did, and refused with `NotLeader`
    /// (nothing was proposed: a definite outcome) if this node could not be confirmed.
    fn confirmed(&mut self, token: u64, result: Result<(), String>) {
        let Some(Confirming { judged_at, .. }) =
            self.in_flight.as_ref().and_then(|f| f.confirming).filter(|c| c.token == token)
        else {
            return; // a confirmation already given up (a new proposer, a new term)
        };
        let Some(in_flight) = self.in_flight.take() else { return };
        match result {
            Ok(()) if self.log.next_seq() == judged_at => complete(in_flight.waiters),
            Ok(()) => {
                for (request, _) in in_flight.waiters.into_iter().rev() {
                    self.held.push_front(request);
                }
            }
            Err(_) => {
                for (request, _) in in_flight.waiters {
                    fail(request, SubmitError::NotLeader);
                }
            }
        }
    }

    /// The group in flight will not come back as proposed: its callers learn that its
    /// outcome is unknown (it may still be committed; resubmitting the same ids is safe).
    /// A group waiting for a confirmation proposed nothing: its callers are told this
    /// node is not the leader.
    fn abandon_in_flight(&mut self, reason: &str) {
        if let Some(in_flight) = self.in_flight.take() {
            for (request, _) in in_flight.waiters {
                let err = match in_flight.confirming {
                    Some(_) => SubmitError::NotLeader,
                    None => SubmitError::Failed(format!("the outcome is unknown: {reason}")),
                };
                fail(request, err);
            }
        }
    }

    /// Simulation of a crash inside a group: judges and appends `requests` as
    /// [`Sequencer::process`] would, then stops before the sync returned (`commit`
    /// false: the frames are written but not marked as a whole group) or just after it
    /// (`commit` true: durable, but nobody was told). Nothing is applied and every
    /// waiter sees its request dropped; the caller then drops the sequencer unclosed.
    pub(crate) fn abandon_group(&mut self, requests: Vec<Request>, commit: bool) {
        if self.failed.is_some() {
            return;
        }
        let state = Arc::clone(&self.state);
        let committed = state.read();
        let (_, _, error) = self.judge(&committed, &requests);
        if commit && error.is_none() {
            let _ = self.log.commit();
        }
    }

    /// Waits for the checkpoint being written in the background, if any, so that what
    /// is on disk after a step does not depend on thread timing (simulation).
    pub(crate) fn settle_snapshot(&mut self) {
        if let Some(job) = self.checkpoint_job.take()
            && let Ok(Err(failed)) = job.join()
        {
            self.checkpoint_retry = Some(failed.0);
        }
    }

    /// Judges one transaction; appends its record when accepted (and a batch close
    /// when the cut-over policy says so).
    /// The seq the next record judged gets: the log's next, or after a proposal's.
    fn next_seq(&self) -> u64 {
        self.log.next_seq() + self.sink.as_ref().map_or(0, |s| s.len() as u64)
    }

    fn submit_one(&mut self, group: &mut Group<'_>, tx: &Tx, now: u64) -> Result<TxOutcome, String> {
        let seq = self.next_seq();
        let outcome = group.submit(tx, seq, now).map_err(|e| e.to_string())?;
        if let TxOutcome::Committed(record) = &outcome {
            let frame = TxFrame::new(&record.tx, record.timestamp_ns, record.batch_id);
            let appended = match &mut self.sink {
                Some(sink) => {
                    let mut payload = AlignedVec::<16>::new();
                    payload.resize(codec::TX_FRAME_BYTES, 0);
                    codec::encode_tx_into(&frame, &mut payload);
                    sink.push(RawRecord { seq, kind: FRAME_TX, payload: payload.to_vec() });
                    seq
                }
                None => self
                    .log
                    .append_in_place(FRAME_TX, codec::TX_FRAME_BYTES, |out| codec::encode_tx_into(&frame, out))
                    .map_err(|e| e.to_string())?,
            };
            assert_eq!(appended, seq, "the log assigns the seq the group judged with");
            if record.batch_id != 0
                && let (Some(max), Some(currency)) = (self.cutover.transactions_max, tx.currency())
            {
                let full = group
                    .open_batch(tx.client_id, currency)
                    .is_some_and(|b| b.payment_count + b.refund_count + b.adjustment_count >= max);
                if full {
                    self.close_one(group, tx.client_id, currency, now)?.map_err(|_| "cut-over found no batch")?;
                }
            }
        }
        Ok(outcome)
    }

    /// Judges and appends a leader's records as replay does: each must commit here
    /// exactly as it did there (same batch, same time), and its payload goes into this
    /// log unchanged at the same seq. `Ok(Err)`: refused before anything was appended;
    /// `Err((seq, what))`: record `seq` diverged (the group then fails and the ledger
    /// refuses writes: its state is not the leader's).
    fn replicate(
        &mut self,
        group: &mut Group<'_>,
        records: &[RawRecord],
    ) -> Result<Result<u64, ReplicateError>, (u64, String)> {
        let expected = self.log.next_seq();
        let Some(first) = records.first() else { return Ok(Ok(expected - 1)) };
        if !self.replicated && self.cutover != CutoverPolicy::default() {
            return Ok(Err(ReplicateError::OwnCutover));
        }
        if first.seq != expected {
            return Ok(Err(ReplicateError::NotNext { expected, first: first.seq }));
        }
        let mut decoded = Vec::with_capacity(records.len());
        for (i, raw) in records.iter().enumerate() {
            let seq = expected + i as u64;
            if raw.seq != seq {
                return Ok(Err(ReplicateError::Malformed { seq: raw.seq, detail: format!("expected seq {seq}") }));
            }
            match codec::decode(raw.kind, &raw.payload) {
                Ok(record) => decoded.push(record),
                Err(e) => return Ok(Err(ReplicateError::Malformed { seq, detail: e.to_string() })),
            }
        }
        for (raw, record) in records.iter().zip(decoded) {
            let seq = raw.seq;
            match record {
                Record::Tx { tx, timestamp_ns, batch_id } => match group.submit(&tx, seq, timestamp_ns) {
                    Ok(TxOutcome::Committed(r)) if r.timestamp_ns == timestamp_ns && r.batch_id == batch_id => {}
                    other => {
                        return Err((
                            seq,
                            format!("expected a commit in batch {batch_id} at {timestamp_ns}, got {other:?}"),
                        ));
                    }
                },
                Record::Close { client_id, currency, batch_id, timestamp_ns } => {
                    match group.close_batch(client_id, currency, seq, timestamp_ns) {
                        Ok(Ok(b)) if b.batch_id == batch_id && b.closed_ns == timestamp_ns => {}
                        other => return Err((seq, format!("expected batch {batch_id} to close, got {other:?}"))),
                    }
                }
            }
            let appended = self.log.append(raw.kind, &raw.payload).map_err(|e| (seq, e.to_string()))?;
            assert_eq!(appended, seq, "the log assigns the seq the group judged with");
        }
        Ok(Ok(self.log.next_seq() - 1))
    }

    fn close_one(
        &mut self,
        group: &mut Group<'_>,
        client_id: u64,
        currency: Currency,
        now: u64,
    ) -> Result<Result<BatchSummary, CloseBatchError>, String> {
        let seq = self.next_seq();
        let Ok(summary) = group.close_batch(client_id, currency, seq, now).map_err(|e| e.to_string())? else {
            return Ok(Err(CloseBatchError::Empty));
        };
        let frame = CloseFrame {
            client_id,
            currency: currency.c_bytes(),
            batch_id: summary.batch_id,
            timestamp_ns: summary.closed_ns,
        };
        self.buf = codec::encode_close(&frame, std::mem::take(&mut self.buf));
        let appended = match &mut self.sink {
            Some(sink) => {
                sink.push(RawRecord { seq, kind: FRAME_BATCH_CLOSE, payload: self.buf.to_vec() });
                seq
            }
            None => self.log.append(FRAME_BATCH_CLOSE, &self.buf).map_err(|e| e.to_string())?,
        };
        assert_eq!(appended, seq, "the log assigns the seq the group judged with");
        Ok(Ok(summary))
    }
}

impl Sequencer {
    /// Stops the merger (a merge in progress gives up and removes its unfinished file)
    /// and waits for it.
    fn stop_merger(&mut self) {
        self.merger_stop.store(true, Ordering::Release);
        if let Some((wake, thread)) = self.merger.take() {
            drop(wake);
            let _ = thread.join();
        }
    }
}

impl Drop for Sequencer {
    fn drop(&mut self) {
        // Also when the sequencer is dropped without a shutdown (a simulated crash): no
        // thread of this instance may still write into the directory after it.
        if let Some(job) = self.checkpoint_job.take() {
            let _ = job.join();
        }
        self.stop_merger();
        // Feeds return what was committed, then report the ledger closed.
        self.feed.close();
    }
}

fn fail(request: Request, err: SubmitError) {
    match request {
        Request::Submit { done, .. } => done.complete(Err(err)),
        Request::CloseBatch { done, .. } => done.complete(Err(CloseBatchError::Submit(err))),
        Request::Replicate { done, .. } => done.complete(Err(ReplicateError::Submit(err))),
        Request::SetProposer { .. } | Request::ProposalFailed { .. } | Request::Confirmed { .. } => {}
        Request::Snapshot { done } => done.complete(Err(SnapshotError::Submit(err))),
        Request::Shutdown { done } => done.complete(Err(err)),
    }
}

/// Answers the callers of a group with what judging it said.
fn complete(waiters: Vec<(Request, Reply)>) {
    for (request, reply) in waiters {
        match (request, reply) {
            (Request::Submit { done, .. }, Reply::Submit(outcomes)) => done.complete(Ok(outcomes)),
            (Request::CloseBatch { done, .. }, Reply::CloseBatch(result)) => done.complete(result),
            (request, _) => fail(request, SubmitError::Failed("a proposal held an unexpected request".into())),
        }
    }
}

/// Wall-clock time in Unix nanoseconds (commit times are made strictly increasing on
/// top of it, so a clock step backwards never reorders them).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
