//! Runs of the cold tier are not hashed whole when a ledger opens (that would make
//! reopening cost as much as history): each chunk is verified the first time a read
//! touches it, and a background scrub verifies the rest. Damage found either way is
//! never acted upon: replay refuses to open, and a live ledger refuses the group that
//! read it and every write after, naming the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ledger_core::{Currency, Durability, Ledger, LedgerOptions, OpenError, SubmitError, Tx, TxId, TxOutcome};

const SALES: u64 = 3000;
/// Bytes of a run's header and of one of its entries (ledger-store/FORMAT.md).
const RUN_HEADER_BYTES: usize = 64;
const ENTRY_BYTES: usize = 112;
/// The byte flipped: inside the entry of the sale in the middle of the run (entries are
/// sorted by id, in the order of the sales).
const DAMAGED_AT: usize = RUN_HEADER_BYTES + 1500 * ENTRY_BYTES + 40;

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

/// Checkpoints only when asked; the hot tier's budget is far away.
fn options() -> LedgerOptions {
    LedgerOptions { durability: Durability::None, snapshot_every_records: 0, ..LedgerOptions::default() }
}

fn sale(i: u64) -> Tx {
    Tx::sale(TxId(u128::from(i)), 1 + i % 3, 1000 + i as i64, usd())
}

/// A ledger whose `SALES` sales are all in one run, written by a checkpoint.
fn ledger_with_one_run(dir: &Path) -> Ledger {
    let ledger = Ledger::open(dir, options()).expect("open");
    let sales: Vec<Tx> = (1..=SALES).map(sale).collect();
    for chunk in sales.chunks(100) {
        assert!(ledger.submit(chunk).expect("submit").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    }
    ledger.snapshot().expect("checkpoint");
    let tiers = ledger.tiers();
    assert_eq!((tiers.cold_runs, tiers.cold_entries, tiers.cold_unverified_bytes), (1, SALES, 0), "{tiers:?}");
    ledger
}

fn the_run(dir: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tbl"))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.into_iter().next().expect("one run")
}

/// Flips the byte at [`DAMAGED_AT`] (again, to repair it).
fn damage_middle_entry(run: &Path) {
    let mut bytes = std::fs::read(run).expect("read run");
    bytes[DAMAGED_AT] ^= 0x10;
    std::fs::write(run, bytes).expect("write run");
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_intact_run_is_scrubbed_in_the_background_and_judged_as_before() {
    let dir = tempfile::tempdir().expect("temp dir");
    ledger_with_one_run(dir.path()).close().expect("close");
    let ledger = Ledger::open(dir.path(), options()).expect("reopen");
    wait_for("the scrub", || (ledger.tiers().cold_unverified_bytes == 0).then_some(()));
    assert_eq!(ledger.cold_damage(), None);
    let old = sale(SALES / 2);
    assert!(matches!(ledger.submit(&[old]).expect("resubmit")[0], TxOutcome::Exists(r) if r.tx == old));
    assert!(matches!(ledger.submit(&[sale(SALES + 1)]).expect("new sale")[0], TxOutcome::Committed(_)));
    ledger.close().expect("close");
}

#[test]
fn a_damaged_run_found_after_open_stops_writes_and_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    ledger_with_one_run(dir.path()).close().expect("close");
    let run = the_run(dir.path());
    damage_middle_entry(&run);
    // Nothing to replay: the open does not read the run, and succeeds at once.
    let ledger = Ledger::open(dir.path(), options()).expect("a lazy open does not read the damaged chunk");
    let damage = wait_for("the scrub to find the damage", || ledger.cold_damage());
    let name = run.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(damage.contains(name), "{damage}");
    match ledger.submit(&[sale(SALES + 1)]) {
        Err(SubmitError::Failed(reason)) => assert!(reason.contains(name) && reason.contains("damaged"), "{reason}"),
        other => panic!("a write after the damage was found: {other:?}"),
    }
    assert!(matches!(ledger.submit(&[sale(SALES + 2)]), Err(SubmitError::Failed(_))), "refused until reopened");
    drop(ledger);
    // Nothing of the refused group was committed.
    damage_middle_entry(&run); // flipped back: repaired
    let ledger = Ledger::open(dir.path(), options()).expect("reopen after the repair");
    assert_eq!(ledger.lookup(TxId(u128::from(SALES + 1))), None, "the group that met the damage never committed");
    assert!(ledger.lookup(TxId(u128::from(SALES / 2))).is_some());
    ledger.close().expect("close");
}

#[test]
fn replay_that_reads_a_damaged_run_refuses_to_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = ledger_with_one_run(dir.path());
    // Refunds of every cold sale, after the checkpoint: replay reads every entry.
    let refunds: Vec<Tx> = (1..=SALES)
        .map(|i| Tx::refund(TxId(u128::from(100_000 + i)), TxId(u128::from(i)), 1 + i % 3, 1, usd()))
        .collect();
    for chunk in refunds.chunks(100) {
        assert!(ledger.submit(chunk).expect("refunds").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    }
    ledger.close().expect("close");
    let run = the_run(dir.path());
    damage_middle_entry(&run);
    match Ledger::open(dir.path(), options()) {
        Err(OpenError::DamagedRun(detail)) => {
            let name = run.file_name().and_then(|n| n.to_str()).expect("name");
            assert!(detail.contains(name), "{detail}");
        }
        other => panic!("replay acted on a damaged run: {other:?}"),
    }
}
