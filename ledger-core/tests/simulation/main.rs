//! Deterministic simulation of the sequencer: one seed decides everything.
//!
//! The engine runs without its thread ([`SimLedger`]): a seeded scheduler decides at
//! each action which of N logical producers publishes how many requests (sales,
//! authorizations, captures, voids, refunds and over-refunds, adjustments, malformed
//! ones, ids resubmitted with the same and with different fields, batch closes,
//! snapshots), when the sequencer takes a group and how many queued requests it takes,
//! how the simulated clock moves (backwards too) and when the age cut-over runs, and
//! when the engine crashes: between groups, inside a group before its sync, or just
//! after it before anyone was told, optionally tearing the unsynced tail of the last
//! segment at a seeded byte offset past the last acknowledged frame. It then reopens.
//! With `Durability::None` it also loses power: any page written since the last sync
//! (a clean close or an open) may be lost, and the log must come back at a group's end
//! at or after that point.
//!
//! The reference model (`common/model.rs`) judges every request of every group in the
//! same order and must agree on every outcome, record and timestamp; after every reopen
//! every acknowledged transaction is there and an unacknowledged group is there whole
//! or not at all; invariants are checked from the engine's own answers too (batch
//! totals are the sum of their transactions, balances the sum of their batches, seq
//! gapless, timestamps strictly increasing).
//!
//! The whole trace (every outcome, every reopen, the final state) is folded into a
//! digest: running a seed twice must give the same one.
//!
//! - `LEDGER_SIM_SEED=N` replays one seed (a failing run prints this line).
//! - `LEDGER_SIM_SEEDS=N` runs N seeds (default 20) from a random first seed, printed
//!   (or from `LEDGER_SIM_SEED`);
//!   `LEDGER_SIM_ACTIONS=N` sets the actions per seed (default 400). A long run:
//!   `LEDGER_SIM_SEEDS=2000 cargo test --release -p ledger-core --test simulation -- --nocapture`
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code, small values

#[path = "../common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use check::{same_batch, same_record};
use common::model::{MBatch, MTx, Model};
use ledger_core::sim::{SimLedger, SimReply};
use ledger_core::{
    BatchSummary, CloseBatchError, Currency, CutoverPolicy, Durability, LedgerOptions, SnapshotError, SubmitError,
    SubmitFuture, Tx, TxOutcome,
};
use trace::{Rng, Stats, Trace};

/// Requests the scheduler lets wait in the queue before it forces a step.
const QUEUE_DEPTH_MAX: usize = 48;
/// Producers pick references among this many of the newest payments.
const RECENT_PAYMENTS: usize = 48;
const SEEDS_DEFAULT: u64 = 20;
const ACTIONS_DEFAULT: usize = 400;
/// What a power loss loses or keeps: whole pages of the page cache.
const PAGE_BYTES: usize = 4096;
/// Trace lines kept to print when a seed fails.
const TRACE_TAIL_LINES: usize = 40;

macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! check_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err(format!("{}: engine {:?} != model {:?}", format!($($fmt)+), l, r));
        }
    }};
}

// After the macros, which they use.
mod check;
mod crash;
mod producers;
mod trace;

/// A request in the queue, as the producer published it.
enum Published {
    Submit { producer: usize, txs: Vec<Tx>, reply: SubmitFuture },
    Close { client: u64, currency: Currency, reply: SimReply<Result<BatchSummary, CloseBatchError>> },
    Snapshot { reply: SimReply<Result<u64, SnapshotError>> },
    Shutdown { reply: SimReply<Result<(), SubmitError>> },
}

impl Published {
    /// Whether the engine answered this request (it must not have, when it was dropped).
    fn answered(self) -> bool {
        match self {
            Published::Submit { reply, .. } => !matches!(reply.wait(), Err(SubmitError::Closed)),
            Published::Close { reply, .. } => reply.wait().is_some(),
            Published::Snapshot { reply } => reply.wait().is_some(),
            Published::Shutdown { reply } => reply.wait().is_some(),
        }
    }
}

/// What the model says a request comes to.
enum Expect {
    Submit(Vec<(u32, Option<MTx>)>),
    Close(Option<(u64, MBatch)>),
    Snapshot,
    /// Ends the group; nothing after it is judged.
    Shutdown,
}

/// What one seed chose for the whole run.
#[derive(Debug, Clone, Copy)]
struct Setup {
    producers: usize,
    clients: u64,
    options: LedgerOptions,
}

impl Setup {
    fn from(rng: &mut Rng) -> Setup {
        let durability = if rng.percent(50) { Durability::SyncData } else { Durability::None };
        let cutover = CutoverPolicy {
            transactions_max: rng.percent(40).then(|| rng.range(1, 12)),
            age_max: rng.percent(40).then(|| Duration::from_millis(rng.range(1, 100))),
        };
        let options = LedgerOptions {
            durability,
            segment_bytes: (rng.range(2, 16) as usize) * 4096,
            cutover,
            snapshot_every_records: if rng.percent(50) { 0 } else { rng.range(8, 120) },
            transactions_hint: 0,
            // A tiny memory budget half the time: checkpoints every few transactions, so
            // judging against frozen and cold payments, promotions and run merges
            // happen in nearly every seed.
            hot_bytes_max: if rng.percent(50) { rng.range(2, 60) as usize * 260 } else { 0 },
            // Mostly the default: segments the oldest kept checkpoint covers are removed.
            keep_whole_log: rng.percent(30),
            // Replication has its own tests (tests/replicated.rs).
            replicated: false,
        };
        Setup { producers: rng.range(1, 5) as usize, clients: rng.range(1, 3), options }
    }
}

struct Sim {
    rng: Rng,
    setup: Setup,
    dir: tempfile::TempDir,
    engine: Option<SimLedger>,
    model: Model,
    now: u64,
    queue: VecDeque<Published>,
    /// Requests behind a shutdown, answered (refused) when the engine is dropped.
    refused: Vec<Published>,
    /// With `Durability::None`: the model after every group since the last sync, by
    /// last seq; a power loss may take the log back to any of them, never further.
    unsynced: BTreeMap<u64, Model>,
    /// The last seq made durable by a sync, and where its frames end on disk.
    synced: (u64, Option<(PathBuf, usize)>),
    /// Next id number of each producer.
    counters: Vec<u64>,
    /// Every transaction published, for resubmissions.
    history: Vec<Tx>,
    /// Every sale and authorization published, for references.
    payments: Vec<Tx>,
    /// Every id published.
    ids: BTreeSet<u128>,
    trace: Trace,
    stats: Stats,
}

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn jpy() -> Currency {
    Currency::from_code("JPY").unwrap()
}

impl Sim {
    fn new(seed: u64) -> Result<Sim, String> {
        let mut rng = Rng(seed);
        let setup = Setup::from(&mut rng);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let now = 1_700_000_000_000_000_000 + rng.below(1 << 40);
        let mut trace = Trace::default();
        trace.event(format!("seed {seed}: {setup:?}"));
        let engine = SimLedger::open(dir.path(), setup.options, now).map_err(|e| format!("open: {e}"))?;
        let model = Model { transactions_max: setup.options.cutover.transactions_max, ..Model::default() };
        let mut sim = Sim {
            rng,
            setup,
            dir,
            engine: Some(engine),
            model,
            now,
            queue: VecDeque::new(),
            refused: Vec::new(),
            unsynced: BTreeMap::new(),
            synced: (0, None),
            counters: vec![0; setup.producers],
            history: Vec::new(),
            payments: Vec::new(),
            ids: BTreeSet::new(),
            trace,
            stats: Stats { seeds: 1, ..Stats::default() },
        };
        sim.unsynced.insert(0, sim.model.clone());
        Ok(sim)
    }

    fn engine(&self) -> &SimLedger {
        self.engine.as_ref().expect("the engine is open between actions")
    }

    fn engine_mut(&mut self) -> &mut SimLedger {
        self.engine.as_mut().expect("the engine is open between actions")
    }

    fn run(&mut self, actions: usize) -> Result<(), String> {
        for action in 0..actions {
            self.stats.actions += 1;
            self.action(action)?;
        }
        // Commit what is still queued, then compare everything, close cleanly, check
        // the log itself, and compare once more after a replay from scratch.
        while !self.queue.is_empty() {
            self.step(usize::MAX)?;
        }
        self.check_state()?;
        self.reopen_clean()?;
        let state = self.state_dump();
        self.trace.event(state);
        Ok(())
    }

    fn action(&mut self, action: usize) -> Result<(), String> {
        if self.queue.len() >= QUEUE_DEPTH_MAX {
            let n = self.group_size();
            return self.step(n);
        }
        match self.rng.below(100) {
            0..=44 => self.publish(),
            45..=79 if !self.queue.is_empty() => {
                let n = self.group_size();
                self.step(n)?;
                if action.is_multiple_of(16) {
                    self.check_state()?;
                }
                Ok(())
            }
            45..=79 => self.publish(),
            80..=89 => {
                self.advance_clock();
                Ok(())
            }
            90..=94 => self.check_age(),
            95..=97 if self.setup.options.durability == Durability::None && self.rng.percent(40) => self.power_loss(),
            95..=97 => self.crash(),
            _ => self.reopen_clean(),
        }
    }

    /// How many queued requests the next group takes: one, all, or anything between.
    fn group_size(&mut self) -> usize {
        let queued = self.queue.len() as u64;
        match self.rng.below(10) {
            0..=3 => 1,
            4..=6 => usize::MAX,
            _ => self.rng.range(1, queued.max(1)) as usize,
        }
    }

    fn advance_clock(&mut self) {
        let age_ns = self.setup.options.cutover.age_max.map_or(5_000_000, |a| a.as_nanos() as u64);
        if self.rng.percent(5) {
            // The wall clock stepped backwards: commit times must still increase.
            self.now -= self.rng.below(2 * age_ns);
        } else {
            self.now += self.rng.below(2 * age_ns);
        }
        let now = self.now;
        self.engine_mut().set_now_ns(now);
        self.trace.event(format!("clock {now}"));
    }

    /// Remembers the state after a group, while a power loss could still undo it.
    fn group_ended(&mut self) {
        if self.setup.options.durability == Durability::None {
            self.unsynced.insert(self.model.last_seq, self.model.clone());
        }
    }

    // ----- the sequencer -----------------------------------------------------------

    fn judge(model: &mut Model, published: &Published, now: u64) -> Expect {
        match published {
            Published::Submit { txs, .. } => Expect::Submit(txs.iter().map(|tx| model.submit_at(*tx, now)).collect()),
            Published::Close { client, currency, .. } => {
                Expect::Close(model.close_at(*client, currency.c_bytes(), now))
            }
            Published::Snapshot { .. } => Expect::Snapshot,
            Published::Shutdown { .. } => Expect::Shutdown,
        }
    }

    /// One group of at most `requests_max` requests: the engine and the model judge it,
    /// and every answer must agree.
    fn step(&mut self, requests_max: usize) -> Result<(), String> {
        let queued = self.queue.len();
        check_eq!(self.engine().queued(), queued, "queued requests");
        let taken = self.engine_mut().step(requests_max);
        check_eq!(taken, requests_max.min(queued).max(usize::from(queued > 0)), "requests taken into the group");
        self.stats.groups += 1;
        self.stats.requests += taken as u64;
        let now = self.now;
        let mut line = format!("group of {taken} at {now}:");
        let mut snapshots = Vec::new();
        let mut stopped = false;
        for _ in 0..taken {
            let published = self.queue.pop_front().expect("counted above");
            if stopped {
                self.refused.push(published);
                continue;
            }
            let expect = Sim::judge(&mut self.model, &published, now);
            match (published, expect) {
                (Published::Submit { producer, txs, reply }, Expect::Submit(expect)) => {
                    let outcomes = reply.wait().map_err(|e| format!("submit of producer {producer} failed: {e}"))?;
                    check_eq!(outcomes.len(), txs.len(), "outcomes of producer {producer}");
                    for ((tx, outcome), (code, m)) in txs.iter().zip(&outcomes).zip(expect) {
                        self.stats.transactions += 1;
                        self.stats.codes[code as usize] += 1;
                        check_eq!(outcome.code(), code, "outcome of {tx:?} (producer {producer})");
                        if let (TxOutcome::Committed(r) | TxOutcome::Exists(r), Some(m)) = (outcome, m) {
                            same_record(r, &m).map_err(|e| format!("outcome of {tx:?}: {e}"))?;
                        }
                    }
                    let _ = write!(line, " p{producer}{:?}", outcomes);
                }
                (Published::Close { client, currency, reply }, Expect::Close(expect)) => {
                    let got = reply.wait().ok_or("a close was dropped unanswered")?;
                    match (&got, expect) {
                        (Ok(b), Some((id, m))) => {
                            self.stats.explicit_closes += 1;
                            check_eq!(b.batch_id, id, "batch closed for {client} {currency:?}");
                            same_batch(b, &m)?;
                        }
                        (Err(CloseBatchError::Empty), None) => self.stats.empty_closes += 1,
                        (got, expect) => {
                            return Err(format!("close of {client} {currency:?}: engine {got:?}, model {expect:?}"));
                        }
                    }
                    let _ = write!(line, " close{got:?}");
                }
                (Published::Snapshot { reply }, Expect::Snapshot) => {
                    self.stats.snapshots_asked += 1;
                    snapshots.push(reply);
                }
                (Published::Shutdown { reply }, Expect::Shutdown) => {
                    let got = reply.wait().ok_or("a shutdown was dropped unanswered")?;
                    check!(got.is_ok(), "shutdown: {got:?}");
                    stopped = true;
                    let _ = write!(line, " shutdown");
                }
                _ => unreachable!("judge answers in kind"),
            }
        }
        check_eq!(self.engine().is_stopped(), stopped, "stopped after a shutdown");
        if stopped {
            // What was published after it is refused (seen once the engine is gone).
            self.refused.extend(self.queue.drain(..));
        }
        // A snapshot covers the whole group it was asked in.
        for reply in snapshots {
            let got = reply.wait().ok_or("a snapshot was dropped unanswered")?;
            check_eq!(got.as_ref().ok(), Some(&self.model.last_seq), "snapshot asked in the group: {got:?}");
            let _ = write!(line, " snapshot{got:?}");
        }
        check_eq!(self.engine().ledger().last_seq(), self.model.last_seq, "last seq after the group");
        self.trace.event(line);
        self.group_ended();
        Ok(())
    }

    fn check_age(&mut self) -> Result<(), String> {
        let Some(age) = self.setup.options.cutover.age_max else {
            return self.publish();
        };
        self.stats.age_checks += 1;
        let cutoff = self.now.saturating_sub(age.as_nanos() as u64);
        let closed = self.model.close_aged(cutoff, self.now);
        self.engine_mut().check_age();
        self.stats.aged_closes += closed.len() as u64;
        for &id in &closed {
            let b = self.engine().ledger().batch(id).ok_or_else(|| format!("aged batch {id} missing"))?;
            same_batch(&b, &self.model.batches[id as usize - 1])?;
        }
        check_eq!(self.engine().ledger().last_seq(), self.model.last_seq, "last seq after the age check");
        self.trace.event(format!("age check at {}: closed {closed:?}", self.now));
        self.group_ended();
        Ok(())
    }
}

// ----- the tests -----------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn actions() -> usize {
    env_u64("LEDGER_SIM_ACTIONS").map_or(ACTIONS_DEFAULT, |n| n as usize)
}

/// Runs one seed; on failure, panics with the seed, the replay command and the
/// newest trace lines. Returns the trace digest and the counters.
fn run_seed(seed: u64, actions: usize) -> (u64, Stats) {
    let mut tail = VecDeque::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(seed)?;
        let result = sim.run(actions);
        tail = std::mem::take(&mut sim.trace.tail);
        result.map(|()| (sim.trace.digest, std::mem::take(&mut sim.stats)))
    }));
    let message = match result {
        Ok(Ok(done)) => return done,
        Ok(Err(message)) => message,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "panic".into()),
    };
    let tail: Vec<String> = tail.into_iter().collect();
    panic!(
        "simulation failed at seed {seed}: {message}\nreplay: LEDGER_SIM_SEED={seed} cargo test -p ledger-core --test \
         simulation -- --nocapture\nlast events:\n  {}",
        tail.join("\n  ")
    );
}

fn first_seed() -> u64 {
    env_u64("LEDGER_SIM_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    })
}

#[test]
fn seeded_schedules_agree_with_the_model_across_crashes() {
    let first = first_seed();
    let one = if std::env::var("LEDGER_SIM_SEED").is_ok() { 1 } else { SEEDS_DEFAULT };
    let seeds = env_u64("LEDGER_SIM_SEEDS").unwrap_or(one);
    let actions = actions();
    println!(
        "simulation: seeds {first}.. ({seeds} of them, {actions} actions each); replay one with LEDGER_SIM_SEED=N"
    );
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in first..first.wrapping_add(seeds) {
        let (digest, stats) = run_seed(seed, actions);
        if seeds == 1 {
            // To compare a replay in another process or build.
            println!("seed {seed}: trace digest {digest:#018x}");
        }
        total.add(&stats);
    }
    println!("simulation: {total:?} in {:.1?}", started.elapsed());
    // The schedules must reach what they are for, or the test proves little.
    assert!(total.groups > 0 && total.transactions > 0);
    if seeds >= SEEDS_DEFAULT {
        assert!(total.codes.iter().all(|&n| n > 0), "every outcome code occurs: {:?}", total.codes);
        assert!(total.crashes_before_sync > 0 && total.crashes_after_sync > 0 && total.tears > 0, "{total:?}");
        assert!(total.unacked_groups_kept > 0 && total.unacked_groups_dropped > 0, "{total:?}");
        assert!(total.aged_closes > 0 && total.snapshot_loads > 0, "{total:?}");
        assert!(total.shutdowns > 0 && total.refused_after_shutdown > 0, "{total:?}");
        assert!(total.power_losses > 0, "{total:?}");
    }
}

#[test]
fn a_seed_replays_to_the_same_trace() {
    let seed = first_seed();
    let actions = actions();
    let (first, stats) = run_seed(seed, actions);
    let (again, _) = run_seed(seed, actions);
    assert_eq!(first, again, "seed {seed} gave two different traces (replay: LEDGER_SIM_SEED={seed})");
    // And the digest does see the schedule: another seed gives another trace.
    let (other, _) = run_seed(seed.wrapping_add(1), actions);
    assert_ne!(first, other, "seeds {seed} and {} gave the same trace", seed.wrapping_add(1));
    println!(
        "seed {seed}: trace digest {first:#018x} twice; {} groups, {} transactions",
        stats.groups, stats.transactions
    );
}
