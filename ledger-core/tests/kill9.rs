//! Crash test of the engine: a child process opens the `Ledger` (default durability,
//! `SyncData`; 256 KiB segments so the log rolls over; a snapshot every 256 records and
//! automatic batch cut-over by count and age, so that kills also land while snapshots are
//! written and among automatic closes) and submits from a few threads a deterministic mix
//! of sales, authorizations, captures, voids, refunds, adjustments and batch closes,
//! printing a line for every acknowledged transaction and batch close. The parent kills
//! it with SIGKILL at a random moment, over and over on the same directory, and after
//! each kill reopens the ledger and checks:
//!
//! - every acknowledged transaction is there, with the fields, seq, batch and commit time
//!   it was acknowledged with; every acknowledged batch close is there, unchanged; every
//!   transaction a check saw is still there at the next one;
//! - no transaction is there that the child never submitted (each child's calls are a
//!   deterministic function of the seed, its generation and its thread, so the parent
//!   regenerates them up to the last call the child announced before submitting it);
//! - payments: `0 <= refunded <= captured <= amount`, voided => nothing captured, the
//!   state, captured and refunded amounts agree with the captures, voids and refunds that
//!   refer to the payment;
//! - every counted transaction (sale, capture, refund, adjustment) is in exactly one
//!   batch of its account, each batch's totals are the sums of its transactions
//!   (recomputed from `list`), batches of an account follow each other;
//! - each balance is the sum of the account's batches (`settled_net` = closed batches,
//!   `open_net` = the open batch);
//! - seqs are distinct and strictly increasing with commit times;
//! - the state loaded from the newest snapshot plus the log after it is exactly the state
//!   a replay of the whole log gives (the same directory opened without its snapshots);
//! - the next child opens the same state (same replay counts, last seq, snapshot, torn tail).
//!
//! Each child first resubmits the calls the previous child had in flight when it was
//! killed (as a client retrying after a crash would): each transaction is then either
//! committed by the retry or `Exists`, and it is never committed twice.
//!
//! The parent checks a byte-for-byte copy of the directory, so that the crash state itself
//! is left for the next child, whose open recovers it (kills also land there). It opens
//! its copies without cut-over, so that no automatic close changes them while it checks.
//!
//! Knobs: `LEDGER_CORE_KILL9_SEED` (printed at the start; kill timing still depends on
//! the machine), `LEDGER_CORE_KILL9_CYCLES` (default 20).

// A test fails by panicking: unwrap is the point; amounts and counts are small.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::rng::{Rng, mix};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ledger_core::{
    Balance, BatchSummary, CloseBatchError, Currency, CutoverPolicy, Durability, Kind, Ledger, LedgerOptions, Reject,
    Tx, TxId, TxOutcome, TxRecord, TxState,
};

const CHILD_TEST_NAME: &str = "kill9_child";
/// Set in the child: the ledger directory.
const CHILD_DIR_ENV: &str = "LEDGER_CORE_KILL9_CHILD_DIR";
/// Set in the child: the run's seed.
const CHILD_SEED_ENV: &str = "LEDGER_CORE_KILL9_CHILD_SEED";
/// Set in the child: its generation (the cycle number), part of every id it makes.
const CHILD_GENERATION_ENV: &str = "LEDGER_CORE_KILL9_CHILD_GENERATION";
/// Set in the child: the calls to resubmit first, `generation:thread:call` separated by commas.
const CHILD_RETRY_ENV: &str = "LEDGER_CORE_KILL9_CHILD_RETRY";
const SEED_ENV: &str = "LEDGER_CORE_KILL9_SEED";
const CYCLES_ENV: &str = "LEDGER_CORE_KILL9_CYCLES";
const CYCLES_DEFAULT: u64 = 20;

const SEGMENT_BYTES: usize = 256 << 10;
const CHILD_THREADS: u64 = 3;
const CLIENTS: u64 = 3;
const CALL_TXS_MAX: u64 = 6;
/// Most kills land this long after the child reports it opened the ledger, drawn from `[0, max)`.
const KILL_AFTER_OPEN_MAX_MS: u64 = 120;
/// A snapshot every this many records (a child commits several hundred), so that kills
/// also land while one is written and opens load one and replay the log after it.
const SNAPSHOT_EVERY_RECORDS: u64 = 256;
/// Batches also close by themselves (after this many transactions, or this old), so that
/// kills land among automatic closes too and replay has to reproduce them.
const CUTOVER: CutoverPolicy = CutoverPolicy { transactions_max: Some(50), age_max: Some(Duration::from_millis(30)) };

#[allow(clippy::needless_update)] // every field is set today; options added later keep their defaults
fn options() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::SyncData,
        segment_bytes: SEGMENT_BYTES,
        snapshot_every_records: SNAPSHOT_EVERY_RECORDS,
        cutover: CUTOVER,
        // A small memory budget: checkpoints (a run each) and merges run all the time,
        // so kills land while a run or a merge is half written.
        hot_bytes_max: 400 * 130,
        // The parent compares the state loaded from a checkpoint with a replay of the
        // whole log, so the log is kept whole (the simulation covers its removal).
        keep_whole_log: true,
        ..LedgerOptions::default()
    }
}

/// The parent's: no automatic closes, so that the state holds still while it is checked.
fn check_options() -> LedgerOptions {
    LedgerOptions { cutover: CutoverPolicy::default(), ..options() }
}

fn currencies() -> [Currency; 2] {
    [Currency::from_code("EUR").unwrap(), Currency::from_code("USD").unwrap()]
}

// ---------------------------------------------------------------------------------------
// What a child submits: a deterministic stream of calls per (seed, generation, thread)

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Submit(Vec<Tx>),
    Close(u64, Currency),
}

/// A payment the stream made, that later transactions may refer to.
#[derive(Debug, Clone, Copy)]
struct Payment {
    id: TxId,
    client: u64,
    currency: Currency,
    amount: i64,
}

#[derive(Debug)]
struct Stream {
    rng: Rng,
    generation: u64,
    thread: u64,
    next_tx: u64,
    payments: Vec<Payment>,
}

impl Stream {
    fn new(seed: u64, generation: u64, thread: u64) -> Stream {
        let rng = Rng(mix(seed ^ mix(generation.wrapping_add(1))) ^ mix(thread.wrapping_add(0x5151)));
        Stream { rng, generation, thread, next_tx: 0, payments: Vec::new() }
    }

    /// Ids: the generation (plus one) in the high half, the thread and a counter in the low.
    fn fresh_id(&mut self) -> TxId {
        self.next_tx += 1;
        TxId((u128::from(self.generation + 1) << 64) | (u128::from(self.thread) << 40) | u128::from(self.next_tx))
    }

    fn next_call(&mut self) -> Call {
        if self.rng.below(25) == 0 {
            let client = 1 + self.rng.below(CLIENTS);
            return Call::Close(client, currencies()[self.rng.below(2) as usize]);
        }
        let n = 1 + self.rng.below(CALL_TXS_MAX);
        Call::Submit((0..n).map(|_| self.next_tx()).collect())
    }

    /// One of the last payments made (the sale or authorization a later transaction refers to).
    fn pick(&mut self) -> Option<Payment> {
        let n = self.payments.len() as u64;
        (n > 0).then(|| self.payments[(n - 1 - self.rng.below(n.min(12))) as usize])
    }

    fn next_tx(&mut self) -> Tx {
        let roll = self.rng.below(100);
        let device = self.rng.below(4);
        let user_data = self.rng.next();
        let client = 1 + self.rng.below(CLIENTS);
        let currency = currencies()[self.rng.below(2) as usize];
        let id = self.fresh_id();
        let picked = if (45..90).contains(&roll) { self.pick() } else { None };
        let tx = match (roll, picked) {
            (45..60, Some(p)) => {
                // A capture; one in ten above the authorization (rejected).
                let over = self.rng.below(10) == 0;
                let amount = if over { p.amount + 1 } else { self.rng.range_i64(1, p.amount) };
                Tx::capture(id, p.id, p.client, amount, p.currency)
            }
            (60..65, Some(p)) => Tx::void(id, p.id, p.client, p.currency),
            (65..90, Some(p)) => {
                Tx::refund(id, p.id, p.client, self.rng.range_i64(1, (p.amount / 3).max(1)), p.currency)
            }
            (90.., _) => {
                let amount = self.rng.range_i64(1, 5_000);
                Tx::adjustment(id, client, if self.rng.below(2) == 0 { amount } else { -amount }, currency)
            }
            (r, _) => {
                let amount = self.rng.range_i64(1, 100_000);
                let tx = if r % 3 == 0 {
                    Tx::authorization(id, client, amount, currency)
                } else {
                    Tx::sale(id, client, amount, currency)
                };
                self.payments.push(Payment { id, client, currency, amount });
                if self.payments.len() > 64 {
                    self.payments.drain(..32);
                }
                tx
            }
        };
        tx.with_device(device).with_user_data(user_data)
    }
}

/// The thread's calls `0..=last`.
fn calls_up_to(seed: u64, generation: u64, thread: u64, last: u64) -> Vec<Call> {
    let mut stream = Stream::new(seed, generation, thread);
    (0..=last).map(|_| stream.next_call()).collect()
}

// ---------------------------------------------------------------------------------------
// The child

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// `generation:thread:call` triples.
fn parse_retry(s: &str) -> Vec<(u64, u64, u64)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let v: Vec<u64> = p.split(':').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

fn ack_line(out: &mut impl Write, outcome: &TxOutcome) {
    match outcome {
        TxOutcome::Committed(r) => writeln!(out, "ACK {} {} {} {}", r.tx.id.0, r.seq, r.batch_id, r.timestamp_ns),
        TxOutcome::Exists(r) => writeln!(out, "EXISTS {} {}", r.tx.id.0, r.seq),
        TxOutcome::Rejected(_) => Ok(()),
    }
    .unwrap();
}

fn close_line(out: &mut impl Write, b: &BatchSummary) {
    writeln!(
        out,
        "CLOSE {} {} {} {} {} {} {} {} {} {} {} {} {} {}",
        b.batch_id,
        b.client_id,
        b.currency,
        b.first_seq,
        b.last_seq,
        b.opened_ns,
        b.closed_ns,
        b.payment_count,
        b.payment_total,
        b.refund_count,
        b.refund_total,
        b.adjustment_count,
        b.adjustment_total,
        b.net
    )
    .unwrap();
}

/// What may come of a transaction the stream made. `retry`: it may have been committed
/// before the crash.
fn check_outcome(tx: &Tx, outcome: &TxOutcome, retry: bool) {
    let ok = match (tx.kind().unwrap(), outcome) {
        (_, TxOutcome::Committed(r)) => r.tx == *tx,
        (_, TxOutcome::Exists(r)) => retry && r.tx == *tx,
        (Kind::Payment | Kind::Adjustment, TxOutcome::Rejected(_)) => false,
        (Kind::Capture | Kind::Refund, TxOutcome::Rejected(r)) => {
            matches!(r, Reject::RefWrongState | Reject::ExceedsRefAmount)
        }
        (Kind::Void, TxOutcome::Rejected(r)) => *r == Reject::RefWrongState,
    };
    assert!(ok, "unexpected outcome {outcome:?} of {tx:?} (retry: {retry})");
}

/// The child: opens the ledger (recovering what the last kill left), reports how it
/// opened, resubmits what the previous child had in flight, then submits from
/// `CHILD_THREADS` threads forever. Only runs when re-executed by `kill9_crash_cycles`.
#[test]
#[ignore = "child process of kill9_crash_cycles; does nothing unless LEDGER_CORE_KILL9_CHILD_DIR is set"]
fn kill9_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else { return };
    // A panic on any thread ends the process at once, so the parent sees it (and not a kill).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    let seed = env_u64(CHILD_SEED_ENV);
    let generation = env_u64(CHILD_GENERATION_ENV);
    let retry = parse_retry(&std::env::var(CHILD_RETRY_ENV).unwrap_or_default());
    {
        // libtest has printed "test kill9_child ... " without a newline: start a fresh line.
        let mut out = std::io::stdout().lock();
        writeln!(out).unwrap();
        out.flush().unwrap();
    }
    let ledger = Ledger::open(&dir, options()).unwrap();
    {
        let report = ledger.open_report();
        let mut out = std::io::stdout().lock();
        let torn = u8::from(report.log.torn_tail.is_some());
        let snapshot = report.snapshot_seq.unwrap_or(0);
        let (transactions, closes, last_seq) = (report.transactions, report.batch_closes, ledger.last_seq());
        writeln!(out, "OPEN {transactions} {closes} {last_seq} {torn} {snapshot}").unwrap();
        out.flush().unwrap();
    }
    for &(g, t, c) in &retry {
        let Call::Submit(txs) = calls_up_to(seed, g, t, c).pop().unwrap() else { continue };
        let outcomes = ledger.submit(&txs).unwrap();
        let mut out = std::io::stdout().lock();
        for (tx, outcome) in txs.iter().zip(&outcomes) {
            check_outcome(tx, outcome, true);
            ack_line(&mut out, outcome);
        }
        out.flush().unwrap();
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "RETRIED {}", retry.len()).unwrap();
        out.flush().unwrap();
    }
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut stream = Stream::new(seed, generation, t);
                for c in 0u64.. {
                    let call = stream.next_call();
                    {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "TRY {t} {c}").unwrap();
                        out.flush().unwrap();
                    }
                    match call {
                        Call::Submit(txs) => {
                            let outcomes = ledger.submit(&txs).unwrap();
                            assert_eq!(outcomes.len(), txs.len());
                            let mut out = std::io::stdout().lock();
                            for (tx, outcome) in txs.iter().zip(&outcomes) {
                                check_outcome(tx, outcome, false);
                                ack_line(&mut out, outcome);
                            }
                            writeln!(out, "DONE {t} {c}").unwrap();
                            out.flush().unwrap();
                        }
                        Call::Close(client, currency) => {
                            let closed = ledger.close_batch(client, currency);
                            let mut out = std::io::stdout().lock();
                            match closed {
                                Ok(b) => close_line(&mut out, &b),
                                Err(CloseBatchError::Empty) => {}
                                Err(e) => panic!("close_batch failed: {e}"),
                            }
                            writeln!(out, "DONE {t} {c}").unwrap();
                            out.flush().unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The parent

/// An acknowledged commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    seq: u64,
    batch_id: u64,
    timestamp_ns: u64,
}

/// What the parent learnt from one child's stdout.
#[derive(Debug, Default)]
struct ChildReport {
    /// How the child opened the ledger, if it got that far.
    open: Option<Opened>,
    retried: bool,
    /// Per thread: the last call announced, and the last call finished.
    tried: BTreeMap<u64, u64>,
    done: BTreeMap<u64, u64>,
    acks: Vec<(TxId, Ack)>,
    exists: Vec<(TxId, u64)>,
    closes: Vec<BatchSummary>,
}

/// Reads the child's protocol lines until EOF, signalling `opened` when the child has
/// opened the ledger. A line cut by the kill (no newline) and libtest's own lines are ignored.
fn read_protocol(stdout: impl Read, opened: &mpsc::Sender<()>) -> ChildReport {
    let mut report = ChildReport::default();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Some(line) = line.strip_suffix('\n') else { break };
        let mut words = line.split(' ');
        let tag = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        let n = |i: usize| -> u64 { rest[i].parse().unwrap_or_else(|_| panic!("bad line from child: {line:?}")) };
        match tag {
            "OPEN" => {
                report.open = Some(Opened {
                    replayed_transactions: n(0),
                    replayed_closes: n(1),
                    last_seq: n(2),
                    torn: n(3) != 0,
                    snapshot_seq: Some(n(4)).filter(|&s| s != 0),
                });
                let _ = opened.send(());
            }
            "RETRIED" => report.retried = true,
            "TRY" => {
                let prev = report.tried.insert(n(0), n(1));
                assert_eq!(prev.map_or(0, |p| p + 1), n(1), "calls announced out of order: {line:?}");
            }
            "DONE" => {
                assert_eq!(report.tried.get(&n(0)), Some(&n(1)), "finished a call it never announced: {line:?}");
                report.done.insert(n(0), n(1));
            }
            "ACK" => {
                let id = TxId(rest[0].parse().unwrap());
                report.acks.push((id, Ack { seq: n(1), batch_id: n(2), timestamp_ns: n(3) }));
            }
            "EXISTS" => report.exists.push((TxId(rest[0].parse().unwrap()), n(1))),
            "CLOSE" => report.closes.push(BatchSummary {
                batch_id: n(0),
                client_id: n(1),
                currency: Currency::from_code(rest[2]).unwrap(),
                first_seq: n(3),
                last_seq: n(4),
                opened_ns: n(5),
                closed_ns: n(6),
                payment_count: n(7),
                payment_total: rest[8].parse().unwrap(),
                refund_count: n(9),
                refund_total: rest[10].parse().unwrap(),
                adjustment_count: n(11),
                adjustment_total: rest[12].parse().unwrap(),
                net: rest[13].parse().unwrap(),
            }),
            _ => {}
        }
    }
    report
}

/// Everything the parent knows across cycles.
#[derive(Debug, Default)]
struct Known {
    /// Every transaction a child submitted (or may have: announced before the call).
    tried: HashMap<TxId, Tx>,
    /// Every acknowledged commit; an id is acknowledged at most once over the whole run.
    acked: HashMap<TxId, Ack>,
    /// `Exists` answers to retries: the seq they reported.
    exists: Vec<(TxId, u64)>,
    /// Every acknowledged batch close.
    closes: HashMap<u64, BatchSummary>,
    /// What the last check found.
    seen: HashMap<TxId, TxRecord>,
}

/// How a ledger opened: what `Ledger::open_report` says.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Opened {
    /// Transactions and batch closes replayed from the log (after the snapshot).
    replayed_transactions: u64,
    replayed_closes: u64,
    last_seq: u64,
    torn: bool,
    snapshot_seq: Option<u64>,
}

/// What one check found.
#[derive(Debug, Default, Clone, Copy)]
struct View {
    opened: Opened,
    transactions: u64,
    batches: u64,
    closed_batches: u64,
}

/// Everything a reader can see of the ledger, for comparing two opens.
type FullState = (Vec<(Vec<TxRecord>, Vec<BatchSummary>, Vec<(Currency, Balance)>)>, u64, usize);

fn full_state(ledger: &Ledger) -> FullState {
    let clients = (1..=CLIENTS)
        .map(|c| (ledger.list(c, 0, usize::MAX), ledger.batches(c, 0, usize::MAX), ledger.balances(c)))
        .collect();
    (clients, ledger.last_seq(), ledger.transaction_count())
}

fn is_auth(tx: &Tx) -> bool {
    tx.kind == Kind::Payment as u32 && tx.flags & Tx::AUTH_ONLY != 0
}

/// Whether the transaction counts in a batch (sales, captures, refunds, adjustments).
fn counts(tx: &Tx) -> bool {
    match tx.kind() {
        Some(Kind::Payment) => !is_auth(tx),
        Some(Kind::Capture | Kind::Refund | Kind::Adjustment) => true,
        _ => false,
    }
}

/// Payments against the captures, voids and refunds that refer to them.
fn check_payments(all: &HashMap<TxId, TxRecord>, ctx: &str) {
    let mut refs: HashMap<TxId, Vec<&TxRecord>> = HashMap::new();
    for r in all.values() {
        let kind = r.tx.kind().unwrap_or_else(|| panic!("{ctx}: unknown kind in {r:?}"));
        if kind == Kind::Payment {
            continue;
        }
        assert_eq!((r.state, r.captured, r.refunded), (TxState::Applied, 0, 0), "{ctx}: {r:?}");
        assert_eq!(r.batch_id == 0, kind == Kind::Void, "{ctx}: batch of {r:?}");
        if kind.has_ref() {
            let p = all.get(&r.tx.ref_id).unwrap_or_else(|| panic!("{ctx}: {r:?} refers to a missing payment"));
            assert!(p.tx.kind == Kind::Payment as u32, "{ctx}: {r:?} refers to {p:?}");
            assert_eq!((p.tx.client_id, p.tx.currency), (r.tx.client_id, r.tx.currency), "{ctx}: {r:?} vs {p:?}");
            assert!(p.seq < r.seq, "{ctx}: {r:?} committed before its payment {p:?}");
            refs.entry(r.tx.ref_id).or_default().push(r);
        }
    }
    for p in all.values().filter(|r| r.tx.kind == Kind::Payment as u32) {
        let ctx = format!("{ctx}: payment {p:?}");
        assert!(0 <= p.refunded && p.refunded <= p.captured && p.captured <= p.tx.amount, "{ctx}: amounts");
        let mut mine = refs.remove(&p.tx.id).unwrap_or_default();
        mine.sort_by_key(|r| r.seq);
        let of = |k: Kind| mine.iter().filter(move |r| r.tx.kind == k as u32).copied().collect::<Vec<_>>();
        let (captures, voids, refunds) = (of(Kind::Capture), of(Kind::Void), of(Kind::Refund));
        assert_eq!(p.refunded, refunds.iter().map(|r| r.tx.amount).sum::<i64>(), "{ctx}: refunded != its refunds");
        if is_auth(&p.tx) {
            assert!(captures.len() + voids.len() <= 1, "{ctx}: captured or voided twice: {mine:?}");
            if let Some(c) = captures.first() {
                assert_eq!((p.captured, p.batch_id), (c.tx.amount, c.batch_id), "{ctx}: vs its capture {c:?}");
                assert!(refunds.iter().all(|r| r.seq > c.seq), "{ctx}: refunded before captured");
            } else {
                assert!(refunds.is_empty(), "{ctx}: refunded but never captured");
                assert_eq!((p.captured, p.batch_id), (0, 0), "{ctx}: uncaptured");
                let want = if voids.is_empty() { TxState::Authorized } else { TxState::Voided };
                assert_eq!(p.state, want, "{ctx}");
            }
        } else {
            assert!(captures.is_empty() && voids.is_empty(), "{ctx}: a sale captured or voided: {mine:?}");
            assert_eq!(p.captured, p.tx.amount, "{ctx}: a sale is captured in full");
            assert_ne!(p.batch_id, 0, "{ctx}: a sale in no batch");
        }
        if p.state == TxState::Voided {
            assert_eq!(p.captured, 0, "{ctx}: voided but captured");
        }
        if p.captured > 0 {
            let want = match p.refunded {
                0 => TxState::Captured,
                r if r < p.captured => TxState::PartiallyRefunded,
                _ => TxState::Refunded,
            };
            assert_eq!(p.state, want, "{ctx}");
        }
    }
}

/// The client's batches against its transactions (recomputing every total), and its
/// balances against its batches. Returns (batches, closed batches).
fn check_batches_and_balances(ledger: &Ledger, client: u64, records: &[TxRecord], ctx: &str) -> (u64, u64) {
    let batches = ledger.batches(client, 0, usize::MAX);
    let mut by_batch: BTreeMap<u64, Vec<TxRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| counts(&r.tx)) {
        by_batch.entry(r.batch_id).or_default().push(*r);
    }
    let mut balances = Vec::new();
    let mut closed = 0;
    for currency in currencies() {
        let mine: Vec<&BatchSummary> = batches.iter().filter(|b| b.currency == currency).collect();
        let (mut settled, mut open_net, mut payments, mut refunds, mut adjustments) = (0i64, 0, 0, 0, 0);
        for (i, b) in mine.iter().enumerate() {
            let ctx = format!("{ctx}: batch {b:?}");
            assert_eq!(b.client_id, client, "{ctx}");
            let mut txs = by_batch.remove(&b.batch_id).unwrap_or_default();
            txs.sort_by_key(|r| r.seq);
            assert!(!txs.is_empty(), "{ctx}: counts no transaction");
            assert!(
                txs.iter().all(|r| r.tx.currency == currency.c_bytes()),
                "{ctx}: a transaction in another currency"
            );
            let mut want = BatchSummary {
                first_seq: txs[0].seq,
                last_seq: txs[txs.len() - 1].seq,
                opened_ns: txs[0].timestamp_ns,
                payment_count: 0,
                payment_total: 0,
                refund_count: 0,
                refund_total: 0,
                adjustment_count: 0,
                adjustment_total: 0,
                net: 0,
                ..**b
            };
            for t in &txs {
                let a = t.tx.amount;
                match t.tx.kind().unwrap() {
                    Kind::Payment | Kind::Capture => {
                        want.payment_count += 1;
                        want.payment_total += a;
                    }
                    Kind::Refund => {
                        want.refund_count += 1;
                        want.refund_total += a;
                    }
                    Kind::Adjustment => {
                        want.adjustment_count += 1;
                        want.adjustment_total += a;
                    }
                    Kind::Void => unreachable!("voids count in no batch"),
                }
            }
            want.net = want.payment_total - want.refund_total + want.adjustment_total;
            assert_eq!(**b, want, "{ctx}: totals differ from its transactions");
            assert_eq!(ledger.batch(b.batch_id), Some(**b), "{ctx}: batch() and batches() disagree");
            payments += b.payment_total;
            refunds += b.refund_total;
            adjustments += b.adjustment_total;
            if b.is_open() {
                assert_eq!(i, mine.len() - 1, "{ctx}: an open batch that is not the account's last");
                assert_eq!(ledger.open_batch(client, currency), Some(**b), "{ctx}");
                open_net = b.net;
            } else {
                closed += 1;
                assert!(b.closed_ns > txs[txs.len() - 1].timestamp_ns, "{ctx}: closed before its last transaction");
                settled += b.net;
            }
            if let Some(next) = mine.get(i + 1) {
                assert!(b.last_seq < next.first_seq && b.closed_ns < next.opened_ns, "{ctx}: overlaps {next:?}");
            }
        }
        if mine.last().is_none_or(|b| !b.is_open()) {
            assert_eq!(ledger.open_batch(client, currency), None, "{ctx}: an open batch batches() does not list");
        }
        let balance = ledger.balance(client, currency);
        if mine.is_empty() {
            assert_eq!(balance, None, "{ctx}: a balance without batches");
            continue;
        }
        let want = Balance {
            captured: payments,
            refunded: refunds,
            adjusted: adjustments,
            net: payments - refunds + adjustments,
            settled_net: settled,
            open_net,
        };
        assert_eq!(balance, Some(want), "{ctx}: {currency} balance is not the sum of the batches");
        balances.push((currency, want));
    }
    assert!(by_batch.is_empty(), "{ctx}: transactions in batches the client does not have: {by_batch:?}");
    assert_eq!(ledger.balances(client), balances, "{ctx}: balances()");
    (batches.len() as u64, closed)
}

/// Checks the reopened ledger against what the children did and said.
fn verify(ledger: &Ledger, known: &mut Known, ctx: &str) -> View {
    let report = ledger.open_report();
    assert!(report.snapshot_warnings.is_empty(), "{ctx}: a snapshot was damaged: {:?}", report.snapshot_warnings);
    let mut records: Vec<TxRecord> = Vec::new();
    let mut per_client = Vec::new();
    for client in 1..=CLIENTS {
        let listed = ledger.list(client, 0, usize::MAX);
        records.extend_from_slice(&listed);
        per_client.push(listed);
    }
    assert_eq!(records.len(), ledger.transaction_count(), "{ctx}: transactions of clients no child used");
    let all: HashMap<TxId, TxRecord> = records.iter().map(|r| (r.tx.id, *r)).collect();
    assert_eq!(all.len(), records.len(), "{ctx}: an id listed twice");

    // Nothing the children never submitted; every transaction as submitted.
    for r in &records {
        let tried = known.tried.get(&r.tx.id).unwrap_or_else(|| panic!("{ctx}: {r:?} was never submitted"));
        assert_eq!(r.tx, *tried, "{ctx}: stored fields differ from the submitted ones");
        assert_eq!(ledger.lookup(r.tx.id), Some(*r), "{ctx}: lookup and list disagree");
    }
    // Every acknowledged commit, as acknowledged.
    for (id, ack) in &known.acked {
        let r = all.get(id).unwrap_or_else(|| panic!("{ctx}: acknowledged {id:?} {ack:?} is lost"));
        let batch_id = if is_auth(&r.tx) { 0 } else { r.batch_id }; // a capture moves an authorization into its batch
        assert_eq!(Ack { seq: r.seq, batch_id, timestamp_ns: r.timestamp_ns }, *ack, "{ctx}: {r:?}");
    }
    for (id, seq) in &known.exists {
        assert_eq!(all.get(id).map(|r| r.seq), Some(*seq), "{ctx}: {id:?} answered Exists at seq {seq}");
    }
    for b in known.closes.values() {
        assert_eq!(ledger.batch(b.batch_id), Some(*b), "{ctx}: an acknowledged batch close changed or is lost");
    }
    // What the last check saw stays (payments only move forward).
    for (id, before) in &known.seen {
        let r = all.get(id).unwrap_or_else(|| panic!("{ctx}: {before:?}, seen by the last check, is gone"));
        assert_eq!((r.tx, r.seq, r.timestamp_ns), (before.tx, before.seq, before.timestamp_ns), "{ctx}");
        assert!(r.captured >= before.captured && r.refunded >= before.refunded, "{ctx}: {before:?} -> {r:?}");
        if before.batch_id != 0 {
            assert_eq!(r.batch_id, before.batch_id, "{ctx}: {before:?} moved to another batch");
        }
    }
    // Commit order.
    records.sort_by_key(|r| r.seq);
    for w in records.windows(2) {
        assert!(w[0].seq < w[1].seq && w[0].timestamp_ns < w[1].timestamp_ns, "{ctx}: commit order: {w:?}");
    }
    let last_seq = ledger.last_seq();
    assert!(records.last().is_none_or(|r| r.seq <= last_seq), "{ctx}: last_seq {last_seq}");
    check_payments(&all, ctx);
    let (mut batches, mut closed) = (0, 0);
    for (i, listed) in per_client.iter().enumerate() {
        let (b, c) = check_batches_and_balances(ledger, i as u64 + 1, listed, ctx);
        batches += b;
        closed += c;
    }
    assert_eq!(ledger.batch(batches + 1), None, "{ctx}: a batch of no client");
    let opened = Opened {
        replayed_transactions: report.transactions,
        replayed_closes: report.batch_closes,
        last_seq,
        torn: report.log.torn_tail.is_some(),
        snapshot_seq: report.snapshot_seq,
    };
    match opened.snapshot_seq {
        None => assert_eq!(
            (opened.replayed_transactions, opened.replayed_closes),
            (records.len() as u64, closed),
            "{ctx}: without a snapshot, open replays everything"
        ),
        Some(seq) => assert!(
            seq <= last_seq && opened.replayed_transactions <= records.len() as u64 && opened.replayed_closes <= closed,
            "{ctx}: {opened:?}"
        ),
    }
    known.seen = all;
    View { opened, transactions: records.len() as u64, batches, closed_batches: closed }
}

/// Copies the files of `from` (all of them, or only the log's segments) into a fresh
/// `to`. Returns how many segments it copied.
fn copy_dir(from: &Path, to: &Path, segments_only: bool) -> usize {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    let mut segments = 0;
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let segment = name.to_string_lossy().contains(".seg");
        if entry.file_type().unwrap().is_file() && (segment || !segments_only) {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
            segments += usize::from(segment);
        }
    }
    segments
}

#[derive(Debug, Default)]
struct Totals {
    acked: u64,
    closes: u64,
    retried_calls: u64,
    retry_commits: u64,
    retry_exists: u64,
    torn_tails: u64,
    early_kills: u64,
    killed_before_open: u64,
    killed_mid_roll: u64,
    parent_check_max: Duration,
    snapshot_opens: u64,
    child_open_max: Duration,
}

#[test]
fn kill9_crash_cycles() {
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_secs() ^ u64::from(t.subsec_nanos()).rotate_left(32)
    });
    let cycles: u64 = std::env::var(CYCLES_ENV).ok().map_or(CYCLES_DEFAULT, |s| s.parse().unwrap());
    // Printed on both streams: stdout is shown by libtest when the test fails.
    println!("kill9: {SEED_ENV}={seed} {CYCLES_ENV}={cycles}");
    eprintln!("kill9: {SEED_ENV}={seed} {CYCLES_ENV}={cycles}");

    let exe = std::env::current_exe().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let copy = tmp.path().join("copy");
    let log_only = tmp.path().join("log-only");
    let mut rng = Rng(seed);
    let mut known = Known::default();
    let mut totals = Totals::default();
    let mut view = View::default();
    let mut retry: Vec<(u64, u64, u64)> = Vec::new();
    let mut startup = Duration::from_millis(50);
    let mut segments = 0;
    let started = Instant::now();

    for cycle in 0..cycles {
        let early = rng.below(5) == 0;
        let delay_ms = if early {
            rng.below((startup.as_millis() as u64 * 3 / 2).max(1))
        } else {
            rng.below(KILL_AFTER_OPEN_MAX_MS)
        };
        let ctx = format!(
            "{SEED_ENV}={seed}, cycle {cycle}, kill {delay_ms} ms after {}",
            if early { "spawn" } else { "open" }
        );
        let retry_env: Vec<String> = retry.iter().map(|(g, t, c)| format!("{g}:{t}:{c}")).collect();

        let spawned = Instant::now();
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST_NAME, "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_SEED_ENV, seed.to_string())
            .env(CHILD_GENERATION_ENV, cycle.to_string())
            .env(CHILD_RETRY_ENV, retry_env.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (opened_tx, opened_rx) = mpsc::channel();
        let out_thread = std::thread::spawn(move || read_protocol(stdout, &opened_tx));
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        if early {
            totals.early_kills += 1;
            std::thread::sleep(Duration::from_millis(delay_ms));
        } else if opened_rx.recv_timeout(Duration::from_secs(30)).is_ok() {
            // Err: the child closed stdout without opening, i.e. it died; the status check says why.
            startup = spawned.elapsed();
            totals.child_open_max = totals.child_open_max.max(startup);
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let report = out_thread.join().unwrap();
        let stderr = err_thread.join().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "{ctx}: the child was not killed but ended by itself ({status}):\n{stderr}"
        );

        // The child recovered the ledger as the parent's last check of the same bytes did.
        match report.open {
            None => totals.killed_before_open += 1,
            Some(opened) => {
                assert_eq!(opened, view.opened, "{ctx}: the child opened another state than the parent's check found");
            }
        }
        // What this child submitted (or was about to: announced before the call).
        for (&t, &last) in &report.tried {
            for call in calls_up_to(seed, cycle, t, last) {
                if let Call::Submit(txs) = call {
                    known.tried.extend(txs.iter().map(|tx| (tx.id, *tx)));
                }
            }
        }
        for (id, ack) in &report.acks {
            assert!(known.tried.contains_key(id), "{ctx}: acknowledged {id:?}, which it never submitted");
            let before = known.acked.insert(*id, *ack);
            assert!(before.is_none(), "{ctx}: {id:?} committed twice: {before:?}, then {ack:?}");
            totals.retry_commits += u64::from(id.hi() != cycle + 1); // an id of an earlier child: a retry
        }
        totals.acked += report.acks.len() as u64;
        totals.retry_exists += report.exists.len() as u64;
        known.exists.extend_from_slice(&report.exists);
        for b in &report.closes {
            assert!(known.closes.insert(b.batch_id, *b).is_none(), "{ctx}: batch {} closed twice", b.batch_id);
        }
        totals.closes += report.closes.len() as u64;
        if report.retried {
            totals.retried_calls += retry.len() as u64;
            // The calls this child had in flight, for the next one to resubmit.
            retry = report
                .tried
                .iter()
                .filter(|&(t, c)| report.done.get(t) != Some(c))
                .map(|(&t, &c)| (cycle, t, c))
                .collect();
        }
        let mid_roll = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".seg.tmp")))
            .unwrap_or(false);
        totals.killed_mid_roll += u64::from(mid_roll);

        if dir.exists() {
            segments = copy_dir(&dir, &copy, false);
            let checked = Instant::now();
            let ledger =
                Ledger::open(&copy, check_options()).unwrap_or_else(|e| panic!("{ctx}: reopen after kill failed: {e}"));
            view = verify(&ledger, &mut known, &ctx);
            totals.parent_check_max = totals.parent_check_max.max(checked.elapsed());
            totals.torn_tails += u64::from(view.opened.torn);
            if view.opened.snapshot_seq.is_some() {
                // The snapshot plus the log after it is the state a replay of the whole log gives.
                totals.snapshot_opens += 1;
                copy_dir(&dir, &log_only, true);
                let replayed = Ledger::open(&log_only, check_options()).unwrap();
                assert_eq!(replayed.open_report().snapshot_seq, None);
                assert!(
                    full_state(&ledger) == full_state(&replayed),
                    "{ctx}: the state loaded from snapshot {:?} differs from a replay of the whole log",
                    view.opened.snapshot_seq
                );
                replayed.close().unwrap();
            }
            ledger.close().unwrap();
        } else {
            assert!(known.acked.is_empty(), "{ctx}: the ledger directory vanished");
        }
    }

    let summary = format!(
        "kill9 summary: {SEED_ENV}={seed}, {cycles} cycles in {:.1?}: {} transactions acknowledged ({} by retries, \
         {} retries answered Exists, {} calls retried), {} batch closes acknowledged; the ledger holds {} \
         transactions, {} batches ({} closed), last seq {}, in {segments} segments of {} KiB; torn tails {}; kills: \
         {} timed from spawn, {} before open, {} leaving an unfinished segment file; slowest child start {:.1?}, slowest \
         parent check {:.1?}; {} checks loaded a snapshot (each compared with a replay of the whole log)",
        started.elapsed(),
        totals.acked,
        totals.retry_commits,
        totals.retry_exists,
        totals.retried_calls,
        totals.closes,
        view.transactions,
        view.batches,
        view.closed_batches,
        view.opened.last_seq,
        SEGMENT_BYTES >> 10,
        totals.torn_tails,
        totals.early_kills,
        totals.killed_before_open,
        totals.killed_mid_roll,
        totals.child_open_max,
        totals.parent_check_max,
        totals.snapshot_opens,
    );
    println!("{summary}");
    eprintln!("{summary}");
    assert!(totals.acked > 0, "no child ever acknowledged a transaction: the test exercised nothing");
}
