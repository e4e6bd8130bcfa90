//! Fault injection under the engine: the log's file-system calls go through a
//! `fault::SimulatedDisk` (`Ledger::open_with_storage`), which fails chosen calls with
//! EIO or ENOSPC and, after each cycle, simulates a power loss (every byte no
//! successful sync covered is lost, cleanly or per sector at random).
//!
//! Each cycle opens the ledger on the same directory with one or two faults planted at
//! random calls of random operations (a commit's write or data sync, a roll-over's file creation,
//! fill, sync, rename or directory sync, a snapshot's write, ...), and in one cycle of
//! three a power cut at a random call while the producers run; it runs several
//! producer threads submitting sales, refunds and adjustments (one to three per call),
//! closing batches and asking for snapshots (automatic snapshots and cut-overs run
//! too), then cuts the power and reopens. Checked after every reopen:
//!
//! - every call answered `Ok` is there: each transaction with the seq, batch and
//!   timestamp it was acknowledged with, each batch close with its totals;
//! - every call that failed is there whole or not at all (its group is atomic), and
//!   stays as found in later cycles;
//! - a failure fails the whole call with `SubmitError::Failed` and the engine refuses
//!   writes until reopened; a failed snapshot write is only a `SnapshotError::Write`;
//! - invariants: each batch's totals are the sum of its transactions, each balance the
//!   sum of its batches, seqs are gapless (transactions + closes = last seq), and no
//!   snapshot is damaged.
//!
//! Knobs: `LEDGER_CORE_FAULT_SEED` (printed), `LEDGER_CORE_FAULT_CYCLES` (default 40;
//! the long run: `LEDGER_CORE_FAULT_CYCLES=300 cargo test -p ledger-core --release
//! --test fault_injection`). A fresh directory every 25 cycles keeps cycles equally
//! cheap. Which calls a seed's faults hit also depends on thread timing.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small values

mod common;

use common::rng::Rng;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ledger_core::fault::{Fault, PowerLoss, SimulatedDisk};
use ledger_core::{
    Balance, BatchSummary, CloseBatchError, Currency, CutoverPolicy, Kind, Ledger, LedgerOptions, OpenError,
    SnapshotError, Storage, StorageOp, SubmitError, Tx, TxId, TxOutcome, TxRecord,
};

const SEED_ENV: &str = "LEDGER_CORE_FAULT_SEED";
const CYCLES_ENV: &str = "LEDGER_CORE_FAULT_CYCLES";
const CYCLES_DEFAULT: u64 = 40;
const THREADS: u64 = 3;
const CALLS_PER_THREAD: u64 = 24;
const CLIENTS: u64 = 2;
const TXS_PER_CALL_MAX: u64 = 3;
const AMOUNT_MAX: u64 = 10_000;
/// Small segments: roll-overs happen every few dozen records.
const SEGMENT_BYTES: usize = 16 << 10;
const SNAPSHOT_EVERY_RECORDS: u64 = 40;
const CUTOVER_TRANSACTIONS_MAX: u64 = 16;
/// A fresh directory after this many cycles, so that a long run's cycles cost the same
/// (each attaches to and replays the whole log).
const CYCLES_PER_DIR: u64 = 25;

fn options() -> LedgerOptions {
    LedgerOptions {
        segment_bytes: SEGMENT_BYTES,
        snapshot_every_records: SNAPSHOT_EVERY_RECORDS,
        cutover: CutoverPolicy { transactions_max: Some(CUTOVER_TRANSACTIONS_MAX), age_max: None },
        ..LedgerOptions::default()
    }
}

fn currencies() -> [Currency; 2] {
    [Currency::from_code("USD").unwrap(), Currency::from_code("EUR").unwrap()]
}

fn seed() -> u64 {
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("{SEED_ENV}={seed}");
    seed
}

/// What one producer thread did.
#[derive(Debug, Default)]
struct Done {
    /// Calls answered `Ok`, with their outcomes.
    acked: Vec<(Vec<Tx>, Vec<TxOutcome>)>,
    /// Calls that failed: outcome unknown.
    failed: Vec<Vec<Tx>>,
    closes: Vec<BatchSummary>,
    close_failures: u64,
    snapshot_write_failures: u64,
    /// Calls refused because the ledger had failed earlier.
    refusals: u64,
}

/// A sale this thread acknowledged and may refund, with what is left to refund.
#[derive(Debug, Clone, Copy)]
struct Refundable {
    id: TxId,
    client: u64,
    currency: Currency,
    left: i64,
}

/// One producer: sales, refunds of its own acknowledged sales, adjustments, batch
/// closes and snapshots. Every transaction it submits is acceptable, so an `Ok` call
/// commits all of them and a failed call is all or nothing after a reopen.
fn produce(ledger: &Ledger, rng: &mut Rng, id_base: u128) -> Done {
    let mut done = Done::default();
    let mut refundable: Vec<Refundable> = Vec::new();
    let mut next_id = id_base;
    let mut failed_before = false;
    for _ in 0..CALLS_PER_THREAD {
        let client = 1 + rng.below(CLIENTS);
        let currency = currencies()[rng.below(2) as usize];
        match rng.below(10) {
            0 => match ledger.close_batch(client, currency) {
                Ok(b) => done.closes.push(b),
                Err(CloseBatchError::Empty) => {}
                Err(CloseBatchError::Submit(SubmitError::Failed(_))) => {
                    done.close_failures += 1;
                    failed_before = true;
                }
                Err(e) => panic!("unexpected close error: {e}"),
            },
            1 => match ledger.snapshot() {
                Ok(_) => {}
                Err(SnapshotError::Write(_)) => done.snapshot_write_failures += 1,
                Err(SnapshotError::Submit(SubmitError::Failed(_))) => failed_before = true,
                Err(e) => panic!("unexpected snapshot error: {e}"),
            },
            _ => {
                let mut txs = Vec::new();
                let mut refunding = Vec::new();
                for _ in 0..=rng.below(TXS_PER_CALL_MAX) {
                    next_id += 1;
                    let id = TxId(next_id);
                    let amount = 1 + rng.below(AMOUNT_MAX) as i64;
                    let pick = rng.below(refundable.len() as u64 + 4) as usize;
                    let tx = if let Some(r) = refundable.get_mut(pick).filter(|r| r.left > 0) {
                        let part = 1 + (amount % r.left);
                        r.left -= part;
                        refunding.push(pick);
                        Tx::refund(id, r.id, r.client, part, r.currency)
                    } else if pick.is_multiple_of(4) {
                        Tx::adjustment(id, client, amount, currency)
                    } else {
                        Tx::sale(id, client, amount, currency)
                    };
                    txs.push(tx);
                }
                match ledger.submit(&txs) {
                    Ok(outcomes) => {
                        assert!(!failed_before, "the engine refuses writes after a failure, until reopened");
                        for (tx, outcome) in txs.iter().zip(&outcomes) {
                            assert!(matches!(outcome, TxOutcome::Committed(_)), "{tx:?} is acceptable: {outcome:?}");
                            if tx.kind() == Some(Kind::Payment) {
                                let currency = tx.currency().unwrap();
                                refundable.push(Refundable {
                                    id: tx.id,
                                    client: tx.client_id,
                                    currency,
                                    left: tx.amount,
                                });
                            }
                        }
                        done.acked.push((txs, outcomes));
                    }
                    Err(SubmitError::Failed(_)) => {
                        // A refund whose outcome is unknown: never refund that sale again.
                        for i in refunding {
                            refundable[i].left = 0;
                        }
                        if failed_before {
                            done.refusals += 1;
                        }
                        failed_before = true;
                        done.failed.push(txs);
                    }
                    Err(e) => panic!("unexpected submit error: {e}"),
                }
            }
        }
    }
    done
}

/// What earlier cycles established: every transaction that must be there, as first
/// found, and every failed one found absent (it must stay absent).
#[derive(Debug, Default)]
struct Known {
    present: HashMap<TxId, TxRecord>,
    absent: Vec<TxId>,
    closes: Vec<BatchSummary>,
}

#[derive(Debug, Default)]
struct Totals {
    faults: u64,
    failed_opens: u64,
    acked_calls: u64,
    failed_calls_kept: u64,
    failed_calls_lost: u64,
    refusals: u64,
    closes: u64,
    close_failures: u64,
    snapshot_write_failures: u64,
    sectors_lost: u64,
    power_cuts: u64,
}

/// Plants one or two faults at random calls of random operations (none in one cycle
/// out of five: a power loss alone), and in one cycle out of three a power cut at a
/// random call, while the producers run.
fn plant_faults(disk: &SimulatedDisk, rng: &mut Rng) {
    if rng.below(3) == 0 {
        let op = StorageOp::ALL[rng.below(StorageOp::ALL.len() as u64) as usize];
        disk.crash_at(
            op,
            1 + rng.below(if matches!(op, StorageOp::SyncRange | StorageOp::WriteFrames) { 60 } else { 8 }),
        );
    }
    if rng.below(5) == 0 {
        return;
    }
    for _ in 0..=rng.below(2) {
        let op = StorageOp::ALL[rng.below(StorageOp::ALL.len() as u64) as usize];
        // A cycle makes a few dozen commits and a handful of everything else.
        let calls = if matches!(op, StorageOp::SyncRange | StorageOp::WriteFrames) { 60 } else { 12 };
        let nth = 1 + rng.below(calls);
        let fault = if rng.below(2) == 0 { Fault::Eio } else { Fault::Enospc };
        if rng.below(4) == 0 {
            disk.fail_from(op, nth, fault);
        } else {
            disk.fail_nth(op, nth, fault);
        }
    }
}

/// Opens through `disk`; after a fault while opening, heals the disk and opens again
/// (unless the power failed: then there is no ledger this cycle).
fn open_through(dir: &Path, disk: &Arc<SimulatedDisk>, totals: &mut Totals) -> Option<Ledger> {
    let storage = Storage::with_injector(Arc::clone(disk) as _);
    match Ledger::open_with_storage(dir, options(), storage.clone()) {
        Ok(ledger) => Some(ledger),
        Err(e) => {
            assert!(matches!(e, OpenError::Store(_)), "a fault while opening is the log's error: {e}");
            totals.failed_opens += 1;
            if disk.crashed() {
                return None;
            }
            disk.heal();
            let ledger = Ledger::open_with_storage(dir, options(), storage);
            Some(ledger.unwrap_or_else(|e| panic!("open after the fault: {e}")))
        }
    }
}

#[test]
fn random_faults_with_power_loss_keep_every_acknowledged_call() {
    let seed = seed();
    let cycles = std::env::var(CYCLES_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(CYCLES_DEFAULT);
    let started = Instant::now();
    let mut dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut known = Known::default();
    let mut totals = Totals::default();
    for cycle in 0..cycles {
        if cycle > 0 && cycle % CYCLES_PER_DIR == 0 {
            dir = tempfile::tempdir().unwrap();
            known = Known::default();
        }
        let ctx = format!("{SEED_ENV}={seed}, cycle {cycle}");
        let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
        plant_faults(&disk, &mut rng);
        let Some(ledger) = open_through(dir.path(), &disk, &mut totals) else {
            totals.power_cuts += 1;
            disk.power_loss(PowerLoss::Clean).unwrap();
            continue;
        };
        let dones: Vec<Done> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let ledger = ledger.clone();
                    let mut rng = Rng(rng.next());
                    let id_base = (u128::from(cycle) << 64) | (u128::from(t) << 48);
                    s.spawn(move || produce(&ledger, &mut rng, id_base))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // A failed checkpoint or merge is reported and retried, never a panic caught
        // on its thread (which would leave a checkpoint that can never install).
        let stats = ledger.checkpoint_stats();
        for error in [&stats.last_error, &stats.last_merge_error, &stats.last_cleanup_error].into_iter().flatten() {
            assert!(!error.contains("panicked"), "{ctx}: {error}");
        }
        // The power goes: nothing more reaches the disk, not even the close's sync.
        totals.power_cuts += u64::from(disk.crashed());
        disk.crash();
        drop(ledger);
        let mode = if cycle % 2 == 0 { PowerLoss::Clean } else { PowerLoss::Torn { seed: rng.next() } };
        totals.sectors_lost += disk.power_loss(mode).unwrap().sectors_lost;
        totals.faults += disk.faults_injected();

        let ledger = Ledger::open(dir.path(), options()).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        let report = ledger.open_report();
        assert!(report.snapshot_warnings.is_empty(), "{ctx}: {:?}", report.snapshot_warnings);
        for done in &dones {
            check_calls(&ledger, done, &mut known, &mut totals, &ctx);
        }
        check_known(&ledger, &known, &ctx);
        check_invariants(&ledger, &ctx);
        ledger.close().unwrap();
    }
    println!(
        "fault_injection: {SEED_ENV}={seed}: {cycles} cycles in {:.1?}, {} faults injected, {} failed opens, \
         {} calls acknowledged, failed calls kept whole {} / lost {}, {} refused after a failure, {} batch closes \
         ({} failed), {} snapshot writes failed, {} power cuts mid-run, {} sectors lost to power cuts",
        started.elapsed(),
        totals.faults,
        totals.failed_opens,
        totals.acked_calls,
        totals.failed_calls_kept,
        totals.failed_calls_lost,
        totals.refusals,
        totals.closes,
        totals.close_failures,
        totals.snapshot_write_failures,
        totals.power_cuts,
        totals.sectors_lost,
    );
}

fn check_calls(ledger: &Ledger, done: &Done, known: &mut Known, totals: &mut Totals, ctx: &str) {
    for (txs, outcomes) in &done.acked {
        for (tx, outcome) in txs.iter().zip(outcomes) {
            let acked = outcome.record().unwrap();
            let found = ledger.lookup(tx.id).unwrap_or_else(|| panic!("{ctx}: acknowledged {tx:?} is lost"));
            assert_eq!(
                (found.tx, found.seq, found.batch_id, found.timestamp_ns),
                (acked.tx, acked.seq, acked.batch_id, acked.timestamp_ns),
                "{ctx}: acknowledged {tx:?} differs"
            );
            known.present.insert(tx.id, found);
        }
    }
    totals.acked_calls += done.acked.len() as u64;
    for txs in &done.failed {
        let found: Vec<Option<TxRecord>> = txs.iter().map(|tx| ledger.lookup(tx.id)).collect();
        let present = found.iter().filter(|f| f.is_some()).count();
        assert!(present == 0 || present == txs.len(), "{ctx}: a failed call is half there: {txs:?} -> {found:?}");
        if present == 0 {
            totals.failed_calls_lost += 1;
            known.absent.extend(txs.iter().map(|tx| tx.id));
        } else {
            totals.failed_calls_kept += 1;
            for (tx, record) in txs.iter().zip(found) {
                let record = record.unwrap();
                assert_eq!(record.tx, *tx, "{ctx}: a failed call's transaction is there as submitted");
                known.present.insert(tx.id, record);
            }
        }
    }
    for b in &done.closes {
        assert_eq!(ledger.batch(b.batch_id).as_ref(), Some(b), "{ctx}: acknowledged close of batch {}", b.batch_id);
        known.closes.push(*b);
    }
    totals.closes += done.closes.len() as u64;
    totals.close_failures += done.close_failures;
    totals.snapshot_write_failures += done.snapshot_write_failures;
    totals.refusals += done.refusals;
}

fn check_known(ledger: &Ledger, known: &Known, ctx: &str) {
    for (id, was) in &known.present {
        let now = ledger.lookup(*id).unwrap_or_else(|| panic!("{ctx}: {id:?}, found in an earlier cycle, is lost"));
        assert_eq!((now.tx, now.seq, now.batch_id), (was.tx, was.seq, was.batch_id), "{ctx}: {id:?} changed");
    }
    for id in &known.absent {
        assert_eq!(ledger.lookup(*id), None, "{ctx}: {id:?}, absent in an earlier cycle, appeared");
    }
    for b in &known.closes {
        assert_eq!(ledger.batch(b.batch_id).as_ref(), Some(b), "{ctx}: batch {} changed after its close", b.batch_id);
    }
}

/// Batch totals are the sums of their transactions, balances the sums of the batches,
/// and seqs gapless: every record is a transaction or a batch close.
fn check_invariants(ledger: &Ledger, ctx: &str) {
    let mut records_total = 0u64;
    let mut closed_total = 0u64;
    for client in 1..=CLIENTS {
        let records = ledger.list(client, 0, usize::MAX);
        records_total += records.len() as u64;
        let mut by_batch: BTreeMap<u64, Vec<&TxRecord>> = BTreeMap::new();
        for r in &records {
            by_batch.entry(r.batch_id).or_default().push(r);
        }
        let batches = ledger.batches(client, 0, usize::MAX);
        for currency in currencies() {
            let (mut settled, mut open_net, mut captured, mut refunded, mut adjusted) = (0i64, 0i64, 0i64, 0i64, 0i64);
            for b in batches.iter().filter(|b| b.currency == currency) {
                let txs = by_batch.remove(&b.batch_id).unwrap_or_default();
                let sum = |kind: Kind| -> (u64, i64) {
                    let of: Vec<_> = txs.iter().filter(|r| r.tx.kind() == Some(kind)).collect();
                    (of.len() as u64, of.iter().map(|r| r.tx.amount).sum())
                };
                let (pc, pt) = sum(Kind::Payment);
                let (rc, rt) = sum(Kind::Refund);
                let (ac, at) = sum(Kind::Adjustment);
                assert_eq!(
                    (b.payment_count, b.payment_total, b.refund_count, b.refund_total, b.adjustment_count),
                    (pc, pt, rc, rt, ac),
                    "{ctx}: batch {b:?} is not the sum of its transactions"
                );
                assert_eq!((b.adjustment_total, b.net), (at, pt - rt + at), "{ctx}: batch {b:?}");
                captured += pt;
                refunded += rt;
                adjusted += at;
                if b.is_open() {
                    open_net += b.net;
                } else {
                    settled += b.net;
                    closed_total += 1;
                }
            }
            let want = Balance {
                captured,
                refunded,
                adjusted,
                net: captured - refunded + adjusted,
                settled_net: settled,
                open_net,
            };
            match ledger.balance(client, currency) {
                Some(balance) => assert_eq!(balance, want, "{ctx}: client {client} {currency} balance"),
                None => assert_eq!(want, Balance::default(), "{ctx}: client {client} {currency} has no balance"),
            }
        }
        assert!(by_batch.is_empty(), "{ctx}: transactions outside every batch: {by_batch:?}");
    }
    assert_eq!(records_total + closed_total, ledger.last_seq(), "{ctx}: seqs are gapless");
}

fn sale(id: u128, amount: i64) -> Tx {
    Tx::sale(TxId(id), 1, amount, currencies()[0])
}

#[test]
fn a_failed_sync_fails_the_group_and_refuses_writes_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let quiet = LedgerOptions { snapshot_every_records: 0, ..options() };
    let ledger = Ledger::open_with_storage(dir.path(), quiet, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    ledger.submit(&[sale(1, 100)]).unwrap();
    disk.fail_nth(StorageOp::SyncRange, disk.calls(StorageOp::SyncRange) + 1, Fault::Eio);
    let err = ledger.submit(&[sale(2, 200), sale(3, 300)]).unwrap_err();
    assert!(matches!(err, SubmitError::Failed(_)), "{err}");
    assert_eq!(ledger.lookup(TxId(2)), None, "readers never see a group that failed");
    assert_eq!(ledger.balance(1, currencies()[0]).unwrap().net, 100);
    // The next sync would succeed, but the engine does not try: it refuses.
    assert!(matches!(ledger.submit(&[sale(4, 400)]), Err(SubmitError::Failed(_))));
    assert!(matches!(ledger.close_batch(1, currencies()[0]), Err(CloseBatchError::Submit(SubmitError::Failed(_)))));
    assert!(matches!(ledger.snapshot(), Err(SnapshotError::Submit(SubmitError::Failed(_)))));
    assert!(matches!(ledger.close(), Err(SubmitError::Failed(_))));
    drop(ledger);
    // No power loss: the failed group's pages may well have reached the disk; its
    // outcome is unknown, but it is whole or absent. Then resubmitting is safe.
    let ledger = Ledger::open(dir.path(), quiet).unwrap();
    let kept = [2, 3].map(|id| ledger.lookup(TxId(id)).is_some());
    assert!(kept[0] == kept[1], "the failed call is whole or absent: {kept:?}");
    let again = ledger.submit(&[sale(2, 200), sale(3, 300), sale(4, 400)]).unwrap();
    assert_eq!(again[0].code() == 0, !kept[0], "a resubmitted id commits once: {again:?}");
    assert_eq!(ledger.balance(1, currencies()[0]).unwrap().net, 1000);
}

#[test]
fn a_full_disk_at_roll_over_fails_the_call_and_a_reopen_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let quiet = LedgerOptions { snapshot_every_records: 0, ..options() };
    let ledger = Ledger::open_with_storage(dir.path(), quiet, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    // The disk is full from now on: no new segment file can be filled.
    disk.fail_from(StorageOp::WriteFile, disk.calls(StorageOp::WriteFile) + 1, Fault::Enospc);
    let mut acked = Vec::new();
    let failed = loop {
        let id = acked.len() as u128 + 1;
        match ledger.submit(&[sale(id * 10, 1), sale(id * 10 + 1, 1)]) {
            Ok(_) => acked.push(id),
            Err(SubmitError::Failed(reason)) => {
                assert!(reason.contains("No space left"), "{reason}");
                break id;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(acked.len() < 1000, "the segment never filled");
    };
    assert!(!acked.is_empty());
    assert!(matches!(ledger.submit(&[sale(1, 1)]), Err(SubmitError::Failed(_))), "refuses until reopened");
    drop(ledger);
    // Space is freed; a reopen resumes writing.
    disk.heal();
    let ledger = Ledger::open_with_storage(dir.path(), quiet, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    for id in &acked {
        assert!(ledger.lookup(TxId(id * 10)).is_some() && ledger.lookup(TxId(id * 10 + 1)).is_some());
    }
    assert_eq!(ledger.lookup(TxId(failed * 10)), None, "the failed call never got its group end");
    assert_eq!(ledger.lookup(TxId(failed * 10 + 1)), None);
    let outcomes = ledger.submit(&[sale(failed * 10, 1), sale(failed * 10 + 1, 1)]).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    for id in 0..200 {
        ledger.submit(&[sale(1_000_000 + id, 1)]).unwrap();
    }
    assert!(ledger.last_seq() > 200, "writing goes on across new segments");
    ledger.close().unwrap();
}

#[test]
fn a_failed_snapshot_write_is_only_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let quiet = LedgerOptions { snapshot_every_records: 0, ..options() };
    let ledger = Ledger::open_with_storage(dir.path(), quiet, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    ledger.submit(&[sale(1, 100)]).unwrap();
    // Each file operation of a checkpoint fails once: the run's create, write, sync,
    // rename and directory sync, then the checkpoint file's. Each failure is an error
    // for the caller who asked, counted in the stats, and the next try succeeds.
    let ops = [StorageOp::CreateFile, StorageOp::WriteFile, StorageOp::SyncFile, StorageOp::Rename, StorageOp::SyncDir];
    for (i, op) in ops.into_iter().enumerate() {
        disk.fail_nth(op, disk.calls(op) + 1, Fault::Enospc);
        assert!(matches!(ledger.snapshot(), Err(SnapshotError::Write(_))), "{op:?}");
        assert_eq!(ledger.checkpoint_stats().failures, i as u64 + 1, "{op:?} is counted");
        assert!(ledger.checkpoint_stats().last_error.is_some(), "{op:?} is reported");
        ledger.submit(&[sale(u128::from(disk.calls(StorageOp::SyncRange)) + 100, 1)]).unwrap();
    }
    let seq = ledger.snapshot().unwrap();
    assert_eq!(seq, ledger.last_seq());
    assert_eq!(ledger.checkpoint_stats().last_error, None, "a success clears the error");
    // Removing old runs fails after a checkpoint installed: reported, not a failure.
    ledger.submit(&[sale(7_000, 1)]).unwrap();
    ledger.snapshot().unwrap();
    ledger.submit(&[sale(7_001, 1)]).unwrap();
    disk.fail_nth(StorageOp::RemoveFile, disk.calls(StorageOp::RemoveFile) + 1, Fault::Eio);
    let seq = ledger.snapshot().unwrap();
    assert_eq!(seq, ledger.last_seq());
    ledger.close().unwrap();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "failed snapshots leave no temp file: {names:?}");
    let ledger = Ledger::open(dir.path(), quiet).unwrap();
    assert_eq!(ledger.open_report().snapshot_seq, Some(seq));
    assert_eq!(ledger.transaction_count(), 8);
    assert_eq!(ledger.tiers().hot_transactions, 0, "nothing replayed: every transaction is in the cold tier");
    assert_eq!(ledger.check_consistency(), Ok(8));
    // Runs the failed tries left (a run named before its directory sync failed) and
    // runs merged away are gone: only those a kept checkpoint names remain.
    let runs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_str().is_some_and(|n| n.starts_with("run-")));
    assert!(runs.count() <= 2 * ledger.tiers().cold_runs as usize + 2, "stale runs removed");
}
