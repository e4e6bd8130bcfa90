//! Concurrency of the engine through its public API:
//!
//! - many threads submitting overlapping ids at once: each id is committed exactly once,
//!   every other submission of it is `Exists` (identical fields, returning the committed
//!   record) or `ExistsWithDifferentFields`, totals are exact, seqs and timestamps are
//!   strictly increasing, batches add up to the balance, and a reopen shows the same state;
//! - `submit_async` futures are driven by a minimal hand-written executor on one thread
//!   (a `std::task::Wake` waker that queues the task and unparks the thread): no thread
//!   per request, each future is polled at most twice, and the sequencer wakes them;
//! - readers running during the writes never see a group half applied (a refund without
//!   its payment refunded, a payment without the refund submitted with it, totals that
//!   disagree with the transactions of the same snapshot).

// A test fails by panicking: unwrap is the point; amounts and counts are small.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::rng::Rng;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{Thread, ThreadId};
use std::time::{Duration, Instant};

use ledger_core::{
    Balance, BatchSummary, CloseBatchError, Currency, Kind, Ledger, LedgerOptions, Reject, SubmitError, Tx, TxId,
    TxOutcome, TxRecord, TxState,
};

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn seed() -> u64 {
    std::env::var("LEDGER_CORE_CONCURRENCY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        t.as_secs() ^ u64::from(t.subsec_nanos()).rotate_left(32)
    })
}

/// Every transaction of the client, oldest first.
fn list_all(ledger: &Ledger, client: u64) -> Vec<TxRecord> {
    ledger.list(client, 0, usize::MAX)
}

/// Whether the transaction counts in a batch (sales, captures, refunds, adjustments).
fn counts(tx: &Tx) -> bool {
    match tx.kind() {
        Some(Kind::Payment) => tx.flags & Tx::AUTH_ONLY == 0,
        Some(Kind::Capture | Kind::Refund | Kind::Adjustment) => true,
        _ => false,
    }
}

/// Checks the client's batches against its transactions (recomputing every total) and
/// its balance against its batches. Returns the balance.
fn check_batches_and_balance(ledger: &Ledger, client: u64, currency: Currency, ctx: &str) -> Balance {
    let records = list_all(ledger, client);
    let batches = ledger.batches(client, 0, usize::MAX);
    let mut by_batch: BTreeMap<u64, Vec<TxRecord>> = BTreeMap::new();
    for r in &records {
        if counts(&r.tx) {
            assert_ne!(r.batch_id, 0, "{ctx}: counted transaction {r:?} is in no batch");
            by_batch.entry(r.batch_id).or_default().push(*r);
        }
    }
    let mut open = 0;
    let (mut settled, mut open_net, mut payments, mut refunds, mut adjustments) = (0i64, 0i64, 0i64, 0i64, 0i64);
    for b in &batches {
        assert_eq!((b.client_id, b.currency), (client, currency), "{ctx}: batch {b:?} of another account");
        let txs = by_batch.remove(&b.batch_id).unwrap_or_default();
        assert!(!txs.is_empty(), "{ctx}: batch {b:?} counts no transaction");
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
            ..*b
        };
        for t in &txs {
            match t.tx.kind().unwrap() {
                Kind::Payment | Kind::Capture => {
                    want.payment_count += 1;
                    want.payment_total += t.tx.amount;
                    want.net += t.tx.amount;
                }
                Kind::Refund => {
                    want.refund_count += 1;
                    want.refund_total += t.tx.amount;
                    want.net -= t.tx.amount;
                }
                Kind::Adjustment => {
                    want.adjustment_count += 1;
                    want.adjustment_total += t.tx.amount;
                    want.net += t.tx.amount;
                }
                Kind::Void => unreachable!("voids count in no batch"),
            }
        }
        assert_eq!(*b, want, "{ctx}: batch totals differ from its transactions");
        assert_eq!(ledger.batch(b.batch_id), Some(*b), "{ctx}: batch() and batches() disagree");
        payments += b.payment_total;
        refunds += b.refund_total;
        adjustments += b.adjustment_total;
        if b.is_open() {
            open += 1;
            open_net += b.net;
            assert_eq!(ledger.open_batch(client, currency), Some(*b), "{ctx}: open_batch disagrees");
        } else {
            assert!(b.closed_ns > b.opened_ns, "{ctx}: batch {b:?} closed before it opened");
            settled += b.net;
        }
    }
    assert!(by_batch.is_empty(), "{ctx}: transactions count in batches the client does not have: {by_batch:?}");
    assert!(open <= 1, "{ctx}: {open} open batches in one account");
    if open == 0 {
        assert_eq!(ledger.open_batch(client, currency), None, "{ctx}");
    }
    let balance = ledger.balance(client, currency).unwrap_or_default();
    let want = Balance {
        captured: payments,
        refunded: refunds,
        adjusted: adjustments,
        net: payments - refunds + adjustments,
        settled_net: settled,
        open_net,
    };
    assert_eq!(balance, want, "{ctx}: balance is not the sum of the client's batches");
    assert_eq!(ledger.balances(client), if batches.is_empty() { vec![] } else { vec![(currency, balance)] });
    balance
}

/// Commit order: seqs distinct and strictly increasing with timestamps.
fn check_seq_order(records: &mut [TxRecord], ctx: &str) {
    records.sort_by_key(|r| r.seq);
    for w in records.windows(2) {
        assert!(w[0].seq < w[1].seq, "{ctx}: two transactions share seq {}: {:?}", w[0].seq, w);
        assert!(w[0].timestamp_ns < w[1].timestamp_ns, "{ctx}: timestamps do not increase with seq: {w:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Overlapping ids from 8 threads

const THREADS: usize = 8;
const CALLS_PER_THREAD: usize = 120;
const CALL_TXS_MAX: u64 = 8;
/// Sale ids are 1..=SALES; each sale has two refund ids.
const SALES: u64 = 300;
const CLIENTS: u64 = 2;

fn sale_client(i: u64) -> u64 {
    1 + i % CLIENTS
}

fn sale_amount(i: u64) -> i64 {
    1_000 + ((i * 37) % 4_000) as i64
}

/// Sale `i` as submitted; a `variant` has another amount.
fn sale_tx(i: u64, variant: bool) -> Tx {
    Tx::sale(TxId(u128::from(i)), sale_client(i), sale_amount(i) + if variant { 7 } else { 0 }, usd())
}

fn refund_id(i: u64, k: u64) -> TxId {
    TxId(u128::from(SALES + 2 * i + k))
}

/// Refund `k` (0 or 1) of sale `i`. Both refunds together stay below any amount of the
/// sale (variant or not), so a refund is never `ExceedsRefAmount`.
fn refund_tx(i: u64, k: u64, variant: bool) -> Tx {
    let amount = sale_amount(i) / 4 - k as i64 + i64::from(variant);
    Tx::refund(refund_id(i, k), TxId(u128::from(i)), sale_client(i), amount, usd())
}

/// The sale a refund id belongs to.
fn sale_of_refund(id: TxId) -> u64 {
    (id.0 as u64 - SALES) / 2
}

/// One submission of one transaction and what it came to.
#[derive(Debug, Clone)]
struct Submission {
    thread: usize,
    /// The thread's call number and the position in the call.
    call: usize,
    pos: usize,
    tx: Tx,
    /// A refund submitted after its sale in the same call.
    paired: bool,
    outcome: TxOutcome,
}

/// One thread's calls: sales drawn from the shared pool (a quarter of them with another
/// amount), refunds right after their sale (paired) or on their own.
fn thread_calls(rng: &mut Rng) -> Vec<Vec<(Tx, bool)>> {
    let mut calls = Vec::new();
    for _ in 0..CALLS_PER_THREAD {
        let n = 1 + rng.below(CALL_TXS_MAX);
        let mut call = Vec::new();
        while (call.len() as u64) < n {
            let i = 1 + rng.below(SALES);
            let k = rng.below(2);
            match rng.below(4) {
                0 | 1 => call.push((sale_tx(i, rng.below(4) == 0), false)),
                2 => {
                    call.push((sale_tx(i, rng.below(4) == 0), false));
                    call.push((refund_tx(i, k, rng.below(4) == 0), true));
                }
                _ => call.push((refund_tx(i, k, rng.below(4) == 0), false)),
            }
        }
        calls.push(call);
    }
    calls
}

#[test]
fn overlapping_ids_from_many_threads_commit_once() {
    let seed = seed();
    println!("concurrency: LEDGER_CORE_CONCURRENCY_SEED={seed}");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let closes = Arc::new(Mutex::new(Vec::<BatchSummary>::new()));

    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let ledger = ledger.clone();
            let barrier = Arc::clone(&barrier);
            let closes = Arc::clone(&closes);
            let mut rng = Rng(seed ^ (thread as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            std::thread::spawn(move || {
                let calls = thread_calls(&mut rng);
                let mut out = Vec::new();
                barrier.wait();
                for (c, call) in calls.iter().enumerate() {
                    let txs: Vec<Tx> = call.iter().map(|(tx, _)| *tx).collect();
                    let outcomes = ledger.submit(&txs).unwrap();
                    assert_eq!(outcomes.len(), txs.len(), "one outcome per transaction");
                    // Within a call, commits are in order.
                    let seqs: Vec<u64> = outcomes
                        .iter()
                        .filter_map(|o| if let TxOutcome::Committed(r) = o { Some(r.seq) } else { None })
                        .collect();
                    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "a call's commits out of order: {outcomes:?}");
                    for (pos, ((tx, paired), outcome)) in call.iter().zip(outcomes).enumerate() {
                        out.push(Submission { thread, call: c, pos, tx: *tx, paired: *paired, outcome });
                    }
                    // Some batch closes race with the submissions.
                    if thread < CLIENTS as usize && c % 15 == 14 {
                        match ledger.close_batch(thread as u64 + 1, usd()) {
                            Ok(b) => closes.lock().unwrap().push(b),
                            Err(CloseBatchError::Empty) => {}
                            Err(e) => panic!("close_batch failed: {e}"),
                        }
                    }
                }
                out
            })
        })
        .collect();
    let submissions: Vec<Submission> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let elapsed_writes = started.elapsed();

    // Group by id, in each thread's order.
    let mut by_id: HashMap<TxId, Vec<&Submission>> = HashMap::new();
    for s in &submissions {
        by_id.entry(s.tx.id).or_default().push(s);
    }
    let mut committed: HashMap<TxId, TxRecord> = HashMap::new();
    let (mut exists, mut different, mut not_found) = (0u64, 0u64, 0u64);
    let mut shared_ids = 0u64;
    for (id, subs) in &by_id {
        let threads: HashSet<usize> = subs.iter().map(|s| s.thread).collect();
        shared_ids += u64::from(threads.len() > 1);
        let commits: Vec<&&Submission> = subs.iter().filter(|s| matches!(s.outcome, TxOutcome::Committed(_))).collect();
        assert!(commits.len() <= 1, "id {id:?} committed {} times: {commits:#?}", commits.len());
        let is_sale = id.0 <= u128::from(SALES);
        if is_sale {
            assert_eq!(commits.len(), 1, "sale {id:?} submitted but never committed: {subs:#?}");
        }
        let Some(winner) = commits.first() else {
            // A refund whose sale was never there when it was judged.
            for s in subs {
                assert_eq!(s.outcome, TxOutcome::Rejected(Reject::RefNotFound), "{s:?}");
                assert!(!s.paired, "a refund right after its sale was not found: {s:?}");
                not_found += 1;
            }
            continue;
        };
        let TxOutcome::Committed(record) = winner.outcome else { unreachable!() };
        assert_eq!(record.tx, winner.tx, "the committed record is not the submitted transaction");
        committed.insert(*id, record);
        for s in subs {
            match s.outcome {
                TxOutcome::Committed(_) => {}
                TxOutcome::Exists(r) => {
                    assert_eq!(s.tx, record.tx, "Exists for different fields: {s:?} vs {record:?}");
                    assert_eq!(
                        (r.tx, r.seq, r.batch_id, r.timestamp_ns),
                        (record.tx, record.seq, record.batch_id, record.timestamp_ns),
                        "Exists did not return the committed record"
                    );
                    exists += 1;
                }
                TxOutcome::Rejected(Reject::ExistsWithDifferentFields) => {
                    assert_ne!(s.tx, record.tx, "ExistsWithDifferentFields for identical fields: {s:?}");
                    different += 1;
                }
                TxOutcome::Rejected(Reject::RefNotFound) if !is_sale && !s.paired => not_found += 1,
                other => panic!("unexpected outcome {other:?} for {s:?}"),
            }
            // Before committing an id, its committer cannot have seen it exist.
            if s.thread == winner.thread && (s.call, s.pos) < (winner.call, winner.pos) {
                assert!(
                    matches!(s.outcome, TxOutcome::Rejected(Reject::RefNotFound)),
                    "thread {} saw {id:?} as {:?} before committing it",
                    s.thread,
                    s.outcome
                );
            }
        }
    }
    // A refund's sale is not found only until the thread itself has seen the sale.
    let mut seen_sales: HashMap<usize, HashSet<u64>> = HashMap::new();
    let mut ordered: Vec<&Submission> = submissions.iter().collect();
    ordered.sort_by_key(|s| (s.thread, s.call, s.pos));
    for s in ordered {
        let seen = seen_sales.entry(s.thread).or_default();
        if s.tx.kind == Kind::Payment as u32 {
            seen.insert(s.tx.id.0 as u64);
        } else if s.outcome == TxOutcome::Rejected(Reject::RefNotFound) {
            let sale = sale_of_refund(s.tx.id);
            assert!(!seen.contains(&sale), "refund {s:?} judged RefNotFound after its thread saw sale {sale}");
        }
    }
    assert!(exists > 0 && different > 0, "the run made no Exists ({exists}) or no ExistsWithDifferentFields");
    assert!(shared_ids > SALES / 2, "too few ids were submitted by several threads: {shared_ids}");

    // The final state agrees with the one Committed outcome of each id.
    let mut refunded_of: HashMap<TxId, i64> = HashMap::new();
    for r in committed.values().filter(|r| r.tx.kind == Kind::Refund as u32) {
        *refunded_of.entry(r.tx.ref_id).or_default() += r.tx.amount;
    }
    for (id, record) in &committed {
        let now = ledger.lookup(*id).unwrap_or_else(|| panic!("committed {id:?} not found"));
        if record.tx.kind == Kind::Payment as u32 {
            let refunded = refunded_of.get(id).copied().unwrap_or(0);
            let state = if refunded == 0 { TxState::Captured } else { TxState::PartiallyRefunded };
            assert_eq!(
                now,
                TxRecord { state, captured: record.tx.amount, refunded, ..*record },
                "payment differs from its commit plus its refunds"
            );
        } else {
            assert_eq!(now, *record, "refund differs from its commit");
        }
    }
    let ctx = format!("LEDGER_CORE_CONCURRENCY_SEED={seed}");
    let mut all = Vec::new();
    for client in 1..=CLIENTS {
        let listed = list_all(&ledger, client);
        for r in &listed {
            assert!(committed.contains_key(&r.tx.id), "{ctx}: {r:?} stored but no submission committed it");
        }
        let mine: Vec<&TxRecord> = committed.values().filter(|r| r.tx.client_id == client).collect();
        assert_eq!(listed.len(), mine.len(), "{ctx}: client {client} lists another number of transactions");
        let captured: i64 = mine.iter().filter(|r| r.tx.kind == Kind::Payment as u32).map(|r| r.tx.amount).sum();
        let refunded: i64 = mine.iter().filter(|r| r.tx.kind == Kind::Refund as u32).map(|r| r.tx.amount).sum();
        let balance = check_batches_and_balance(&ledger, client, usd(), &ctx);
        assert_eq!(
            (balance.captured, balance.refunded, balance.adjusted, balance.net),
            (captured, refunded, 0, captured - refunded),
            "{ctx}: client {client}'s balance is not the sum of the committed transactions"
        );
        all.extend(listed);
    }
    assert_eq!(all.len(), committed.len());
    assert_eq!(ledger.transaction_count(), committed.len());
    check_seq_order(&mut all, &ctx);
    assert!(ledger.last_seq() >= all.last().unwrap().seq);
    for b in closes.lock().unwrap().iter() {
        assert_eq!(ledger.batch(b.batch_id), Some(*b), "{ctx}: a closed batch changed after its close");
    }

    // A reopen replays the same state.
    let before: Vec<_> = (1..=CLIENTS)
        .map(|c| (list_all(&ledger, c), ledger.batches(c, 0, usize::MAX), ledger.balance(c, usd())))
        .collect();
    let last_seq = ledger.last_seq();
    ledger.close().unwrap();
    assert_eq!(ledger.submit(&[sale_tx(1, false)]), Err(SubmitError::Closed));
    drop(ledger);
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let after: Vec<_> = (1..=CLIENTS)
        .map(|c| (list_all(&ledger, c), ledger.batches(c, 0, usize::MAX), ledger.balance(c, usd())))
        .collect();
    assert!(before == after, "{ctx}: the reopened ledger differs");
    assert_eq!(ledger.last_seq(), last_seq);
    assert_eq!(ledger.open_report().transactions, committed.len() as u64);
    // Every id again: nothing changes.
    for (id, record) in &committed {
        let out = ledger.submit(&[record.tx]).unwrap();
        assert!(matches!(out[0], TxOutcome::Exists(r) if r.seq == record.seq), "{id:?} after reopen: {out:?}");
    }
    assert_eq!(ledger.last_seq(), last_seq);
    ledger.close().unwrap();
    println!(
        "concurrency: {} submissions of {} ids ({shared_ids} by several threads) from {THREADS} threads in \
         {elapsed_writes:.1?}: {} committed, {exists} Exists, {different} ExistsWithDifferentFields, {not_found} \
         RefNotFound, {} batch closes; whole test {:.1?}",
        submissions.len(),
        by_id.len(),
        committed.len(),
        closes.lock().unwrap().len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// submit_async on a hand-written single-thread executor

/// Which threads woke tasks: (id, name) -> wakes.
type WakingThreads = HashMap<(ThreadId, String), usize>;

/// The waker of task `index`: queues it and unparks the executor's thread. It also
/// records which thread woke it.
struct TaskWaker {
    index: usize,
    ready: Arc<Mutex<VecDeque<usize>>>,
    executor: Thread,
    wakers: Arc<Mutex<WakingThreads>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let me = std::thread::current();
        let key = (me.id(), me.name().unwrap_or("<unnamed>").to_owned());
        *self.wakers.lock().unwrap().entry(key).or_default() += 1;
        self.ready.lock().unwrap().push_back(self.index);
        self.executor.unpark();
    }
}

type Task<T> = Pin<Box<dyn Future<Output = T>>>;

/// Runs every task to completion on the calling thread, polling a task only when its
/// waker asked for it. Returns the outputs, how often each task was polled, and which
/// threads woke tasks.
fn block_on_all<T>(tasks: Vec<Task<T>>, deadline: Duration) -> (Vec<T>, Vec<usize>, WakingThreads) {
    let n = tasks.len();
    let ready = Arc::new(Mutex::new((0..n).collect::<VecDeque<usize>>()));
    let wakers_seen = Arc::new(Mutex::new(HashMap::new()));
    let wakers: Vec<Waker> = (0..n)
        .map(|index| {
            Waker::from(Arc::new(TaskWaker {
                index,
                ready: Arc::clone(&ready),
                executor: std::thread::current(),
                wakers: Arc::clone(&wakers_seen),
            }))
        })
        .collect();
    let mut tasks: Vec<Option<Task<T>>> = tasks.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut polls = vec![0usize; n];
    let mut left = n;
    let started = Instant::now();
    while left > 0 {
        let next = ready.lock().unwrap().pop_front();
        let Some(i) = next else {
            assert!(started.elapsed() < deadline, "{left} tasks never completed (lost wake-up?)");
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        };
        let Some(task) = tasks[i].as_mut() else { continue }; // woken after it finished
        polls[i] += 1;
        if let Poll::Ready(v) = task.as_mut().poll(&mut Context::from_waker(&wakers[i])) {
            outputs[i] = Some(v);
            tasks[i] = None;
            left -= 1;
        }
    }
    let wakers_seen = wakers_seen.lock().unwrap().clone();
    (outputs.into_iter().map(Option::unwrap).collect(), polls, wakers_seen)
}

#[test]
fn submit_async_futures_complete_on_one_thread_without_a_runtime() {
    const FUTURES: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let usd = usd();
    let started = Instant::now();

    // Plain futures: a sale and its refund per future, all in flight at once.
    let mut tasks: Vec<Task<Result<Vec<TxOutcome>, SubmitError>>> = Vec::new();
    for i in 0..FUTURES {
        let sale = Tx::sale(TxId(u128::from(1 + 2 * i)), 5, 1_000 + i as i64, usd);
        let refund = Tx::refund(TxId(u128::from(2 + 2 * i)), sale.id, 5, 100, usd);
        tasks.push(Box::pin(ledger.submit_async(vec![sale, refund])));
    }
    // Async blocks that await several submissions in turn (the second refers to the first)
    // and a batch close.
    for j in 0..20u64 {
        let ledger = ledger.clone();
        tasks.push(Box::pin(async move {
            let auth = Tx::authorization(TxId(u128::from(10_000 + 3 * j)), 6, 500, usd);
            let capture = Tx::capture(TxId(u128::from(10_001 + 3 * j)), auth.id, 6, 400, usd);
            let first = ledger.submit_async(vec![auth]).await?;
            let mut second = ledger.submit_async(vec![capture]).await?;
            if j == 19 {
                let closed = ledger.close_batch_async(6, usd).await.unwrap();
                assert!(closed.payment_count >= 1 && !closed.is_open());
            }
            second.insert(0, first[0]);
            Ok(second)
        }));
    }
    let (outputs, polls, wakers) = block_on_all(tasks, Duration::from_secs(60));
    let elapsed = started.elapsed();
    for (i, out) in outputs.iter().enumerate() {
        let out = out.as_ref().unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| matches!(o, TxOutcome::Committed(_))), "task {i}: {out:?}");
    }
    // A plain future is polled once, then once more after its single wake-up.
    for (i, &p) in polls.iter().enumerate().take(FUTURES as usize) {
        assert!((1..=2).contains(&p), "future {i} was polled {p} times: the executor was woken without need");
    }
    // The async blocks: each await is at most two polls (plus the final one that completes).
    for (i, &p) in polls.iter().enumerate().skip(FUTURES as usize) {
        assert!(p <= 4, "task {i} was polled {p} times");
    }
    // One engine thread (the sequencer) woke every task: no helper thread per request,
    // and never the executor's own thread.
    assert_eq!(wakers.len(), 1, "wakers were called from {wakers:?}");
    assert!(wakers.keys().all(|(id, _)| *id != std::thread::current().id()), "{wakers:?}");
    let balance = ledger.balance(5, usd).unwrap();
    let captured: i64 = (0..FUTURES as i64).map(|i| 1_000 + i).sum();
    assert_eq!((balance.captured, balance.refunded), (captured, 100 * FUTURES as i64));
    assert_eq!(ledger.balance(6, usd).unwrap().captured, 400 * 20);

    // A future polled with one waker and then another wakes the later one only.
    let (a, b) = (Arc::new(Counter::default()), Arc::new(Counter::default()));
    let (wa, wb) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
    let mut fut = ledger.submit_async(vec![Tx::sale(TxId(99_999), 5, 1, usd)]);
    let first = Pin::new(&mut fut).poll(&mut Context::from_waker(&wa));
    let second = Pin::new(&mut fut).poll(&mut Context::from_waker(&wb));
    if first.is_pending() && second.is_pending() {
        let t = Instant::now();
        while b.0.load(Ordering::SeqCst) == 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "the later waker was never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "the replaced waker was woken");
        let Poll::Ready(out) = Pin::new(&mut fut).poll(&mut Context::from_waker(&wb)) else {
            panic!("woken but not ready")
        };
        assert!(matches!(out.unwrap()[0], TxOutcome::Committed(_)));
    }

    // Futures dropped without being polled still commit: the request was queued when
    // the future was made.
    for i in 0..10u64 {
        drop(ledger.submit_async(vec![Tx::sale(TxId(u128::from(200_000 + i)), 5, 1, usd)]));
    }
    ledger.submit(&[Tx::sale(TxId(300_000), 5, 1, usd)]).unwrap();
    for i in 0..10u64 {
        assert!(ledger.lookup(TxId(u128::from(200_000 + i))).is_some(), "dropped future {i} did not commit");
    }
    ledger.close().unwrap();
    // After close, a future resolves at once to Closed.
    let out = block_on_all(
        vec![Box::pin(ledger.submit_async(vec![Tx::sale(TxId(400_000), 5, 1, usd)])) as Task<_>],
        Duration::from_secs(5),
    );
    assert_eq!(out.0[0], Err(SubmitError::Closed));
    println!("submit_async: {} tasks on one thread in {elapsed:.1?}; wakes by thread: {wakers:?}", outputs.len());
}

#[derive(Debug, Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------
// Readers during writes

const WRITERS: u64 = 4;
const READERS: usize = 3;
const PAIRS_PER_WRITER: u64 = 150;

/// Ids of writer `w`'s `k`-th call: a sale and its two refunds.
fn pair_ids(w: u64, k: u64) -> (TxId, TxId, TxId) {
    let base = 1_000_000 + (w << 24) + 3 * k;
    (TxId(u128::from(base)), TxId(u128::from(base + 1)), TxId(u128::from(base + 2)))
}

fn pair_client(w: u64) -> u64 {
    10 + w % 2
}

/// Writer `w`'s `k`-th call: a sale, one refund, and every third call a second refund
/// that refunds the rest.
fn pair_call(w: u64, k: u64) -> Vec<Tx> {
    let (s, r1, r2) = pair_ids(w, k);
    let client = pair_client(w);
    let amount = 500 + (k as i64 * 13) % 700;
    let mut txs = vec![Tx::sale(s, client, amount, usd()), Tx::refund(r1, s, client, amount / 3, usd())];
    if k.is_multiple_of(3) {
        txs.push(Tx::refund(r2, s, client, amount - amount / 3, usd()));
    }
    txs
}

/// Checks one `list` snapshot: every sale with its refunds, and its captured and
/// refunded amounts equal to the transactions of the same snapshot.
fn check_snapshot(records: &[TxRecord]) -> (i64, i64) {
    let ids: HashMap<TxId, &TxRecord> = records.iter().map(|r| (r.tx.id, r)).collect();
    let mut refunds: HashMap<TxId, i64> = HashMap::new();
    for w in records.windows(2) {
        assert!(w[0].seq < w[1].seq && w[0].timestamp_ns < w[1].timestamp_ns, "list out of order: {w:?}");
    }
    let (mut captured, mut refunded) = (0, 0);
    for r in records {
        if r.tx.kind == Kind::Refund as u32 {
            let sale = ids.get(&r.tx.ref_id).unwrap_or_else(|| panic!("refund {r:?} listed without its sale"));
            assert!(sale.seq < r.seq);
            *refunds.entry(r.tx.ref_id).or_default() += r.tx.amount;
            refunded += r.tx.amount;
        } else {
            captured += r.tx.amount;
        }
    }
    for r in records.iter().filter(|r| r.tx.kind == Kind::Payment as u32) {
        let sum = refunds.get(&r.tx.id).copied().unwrap_or(0);
        let state = if sum == r.captured { TxState::Refunded } else { TxState::PartiallyRefunded };
        assert!(
            sum > 0 && r.refunded == sum && r.captured == r.tx.amount && r.state == state,
            "payment {r:?} in a snapshot whose refunds of it sum to {sum}: half-applied"
        );
    }
    (captured, refunded)
}

#[test]
fn readers_never_see_a_half_applied_group() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    // Calls each writer has started (readers look at ids in flight too).
    let started_calls: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let ledger = ledger.clone();
            let done = Arc::clone(&done);
            let started_calls = Arc::clone(&started_calls);
            let mut rng = Rng(0xABCD ^ r as u64);
            std::thread::spawn(move || {
                let (mut rounds, mut refund_hits, mut sale_hits) = (0u64, 0u64, 0u64);
                while !done.load(Ordering::Acquire) {
                    rounds += 1;
                    for _ in 0..50 {
                        let w = rng.below(WRITERS);
                        let k = rng.below(started_calls[w as usize].load(Ordering::Acquire) + 1);
                        let (s, r1, r2) = pair_ids(w, k);
                        let call = pair_call(w, k);
                        // A refund seen means its payment was already refunded.
                        let refund = ledger.lookup(if rng.below(2) == 0 || call.len() < 3 { r1 } else { r2 });
                        if let Some(refund) = refund {
                            refund_hits += 1;
                            let sale = ledger.lookup(s).expect("a refund is visible without its payment");
                            assert!(
                                matches!(sale.state, TxState::PartiallyRefunded | TxState::Refunded)
                                    && sale.refunded >= refund.tx.amount,
                                "refund {refund:?} visible while its payment is {sale:?}"
                            );
                        }
                        // A payment seen means the refunds submitted with it are there too.
                        if let Some(sale) = ledger.lookup(s) {
                            sale_hits += 1;
                            let total: i64 = call[1..].iter().map(|t| t.amount).sum();
                            assert_eq!(sale.refunded, total, "payment {sale:?} visible before its refunds applied");
                            for t in &call[1..] {
                                assert!(ledger.lookup(t.id).is_some(), "payment visible without refund {:?}", t.id);
                            }
                        }
                    }
                    // Whole snapshots, bracketed by balances (each total only grows).
                    let client = 10 + rng.below(2);
                    let b1 = ledger.balance(client, usd()).unwrap_or_default();
                    let (captured, refunded) = check_snapshot(&list_all(&ledger, client));
                    let b2 = ledger.balance(client, usd()).unwrap_or_default();
                    for b in [b1, b2] {
                        assert_eq!(b.net, b.captured - b.refunded + b.adjusted, "balance torn: {b:?}");
                        assert_eq!(b.net, b.settled_net + b.open_net, "balance torn: {b:?}");
                    }
                    assert!(b1.captured <= captured && captured <= b2.captured, "{b1:?} {captured} {b2:?}");
                    assert!(b1.refunded <= refunded && refunded <= b2.refunded, "{b1:?} {refunded} {b2:?}");
                }
                (rounds, refund_hits, sale_hits)
            })
        })
        .collect();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ledger = ledger.clone();
            let started_calls = Arc::clone(&started_calls);
            std::thread::spawn(move || {
                for k in 0..PAIRS_PER_WRITER {
                    started_calls[w as usize].store(k, Ordering::Release);
                    let out = ledger.submit(&pair_call(w, k)).unwrap();
                    assert!(out.iter().all(|o| matches!(o, TxOutcome::Committed(_))), "{out:?}");
                    if k % 40 == 39 {
                        let _ = ledger.close_batch(pair_client(w), usd());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let mut totals = (0, 0, 0);
    for r in readers {
        let (a, b, c) = r.join().unwrap();
        totals = (totals.0 + a, totals.1 + b, totals.2 + c);
    }
    assert!(totals.1 > 0 && totals.2 > 0, "the readers never saw a transaction: {totals:?}");
    for client in [10, 11] {
        let listed = list_all(&ledger, client);
        check_snapshot(&listed);
        check_batches_and_balance(&ledger, client, usd(), "after the writes");
    }
    println!(
        "readers: {READERS} readers during {} calls of {WRITERS} writers, {:.1?}: {} snapshot rounds, {} refunds and \
         {} payments seen",
        WRITERS * PAIRS_PER_WRITER,
        started.elapsed(),
        totals.0,
        totals.1,
        totals.2
    );
    ledger.close().unwrap();
}

/// Submitters racing a close all get an answer: committed before the close, or
/// `Closed` after it. A submit queued while the sequencer was closing the log used to
/// stay in the queue for ever (the queue outlives the sequencer while a handle lives),
/// and its caller waited for ever. Durable, so closing takes a while; every round
/// checks that each thread returns, within a bound, with a definite answer, and that
/// what was committed is there after a reopen.
#[test]
fn submitters_racing_a_close_all_get_an_answer() {
    const ROUNDS: u64 = 30;
    const THREADS: u64 = 4;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let options = LedgerOptions { durability: ledger_core::Durability::SyncData, ..LedgerOptions::default() };
        let ledger = Ledger::open(dir.path(), options).unwrap();
        let (done, answers) = std::sync::mpsc::channel();
        for t in 0..THREADS {
            let (ledger, done) = (ledger.clone(), done.clone());
            std::thread::spawn(move || {
                let mut committed = Vec::new();
                for n in 0u64.. {
                    let id = TxId(u128::from((t << 32) | n) + 1);
                    match ledger.submit(&[Tx::sale(id, t + 1, 1_00, usd())]) {
                        Ok(out) => {
                            assert!(matches!(out[0], TxOutcome::Committed(_)), "{out:?}");
                            committed.push(id);
                        }
                        Err(SubmitError::Closed) => break,
                        Err(e) => panic!("round {round}: {e}"),
                    }
                }
                done.send(committed).unwrap();
            });
        }
        drop(done);
        std::thread::sleep(Duration::from_millis(5 + round % 7));
        ledger.close().unwrap();
        let mut committed = Vec::new();
        for _ in 0..THREADS {
            let ids = answers
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("round {round}: a submitter never got an answer after the close"));
            committed.extend(ids);
        }
        let reopened = Ledger::open(dir.path(), options).unwrap();
        for id in &committed {
            assert!(reopened.lookup(*id).is_some(), "round {round}: committed {id:?} is there after a reopen");
        }
        assert_eq!(reopened.transaction_count(), committed.len(), "round {round}: nothing else");
        reopened.close().unwrap();
    }
}
