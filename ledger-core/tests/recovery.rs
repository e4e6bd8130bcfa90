//! Recovery after reopen: the state rebuilt by replaying the log equals the state
//! before, whether the ledger was closed cleanly or its handles just dropped, and
//! writing continues where it stopped.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use common::{eur, usd};
use ledger_core::{Ledger, LedgerOptions, Tx, TxId, TxRecord};

fn small_segments() -> LedgerOptions {
    LedgerOptions { segment_bytes: 64 << 10, ..common::options() }
}

fn workload(ledger: &Ledger, base: u128) {
    let mut txs = Vec::new();
    for i in 0..300u128 {
        let id = base + i * 10;
        let cur = if i % 3 == 0 { eur() } else { usd() };
        let client = 1 + (i % 4) as u64;
        txs.push(Tx::sale(TxId(id + 1), client, 100 + i as i64, cur));
        txs.push(Tx::authorization(TxId(id + 2), client, 500, cur));
        if i % 2 == 0 {
            txs.push(Tx::capture(TxId(id + 3), TxId(id + 2), client, 300, cur));
            txs.push(Tx::refund(TxId(id + 4), TxId(id + 1), client, 7, cur));
        } else {
            txs.push(Tx::void(TxId(id + 3), TxId(id + 2), client, cur));
        }
        if i % 50 == 49 {
            ledger.submit(&txs).unwrap();
            txs.clear();
            ledger.close_batch(client, cur).unwrap();
        }
    }
    ledger.submit(&txs).unwrap();
}

type Snapshot = (
    Vec<Vec<TxRecord>>,
    Vec<Vec<ledger_core::BatchSummary>>,
    Vec<Vec<(ledger_core::Currency, ledger_core::Balance)>>,
    u64,
);

fn snapshot(ledger: &Ledger) -> Snapshot {
    let clients = 1..=4u64;
    (
        clients.clone().map(|c| ledger.list(c, 0, usize::MAX)).collect(),
        clients.clone().map(|c| ledger.batches(c, 0, usize::MAX)).collect(),
        clients.map(|c| ledger.balances(c)).collect(),
        ledger.last_seq(),
    )
}

#[test]
fn reopen_after_close_rebuilds_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), small_segments()).unwrap();
    workload(&ledger, 0);
    let before = snapshot(&ledger);
    ledger.close().unwrap();
    assert!(ledger.submit(&[Tx::sale(TxId(9), 1, 1, usd())]).is_err(), "a closed ledger refuses work");
    drop(ledger);

    let ledger = Ledger::open(dir.path(), small_segments()).unwrap();
    let report = ledger.open_report().clone();
    assert!(report.log.segments > 1, "the log spans segments");
    assert_eq!(report.transactions, before.0.iter().map(Vec::len).sum::<usize>() as u64);
    assert_eq!(snapshot(&ledger), before);

    // Writing continues after the replayed records.
    workload(&ledger, 10_000_000);
    let after = snapshot(&ledger);
    assert!(after.3 > before.3);
    drop(ledger);
    let ledger = Ledger::open(dir.path(), common::options()).unwrap();
    assert_eq!(snapshot(&ledger), after);
}

#[test]
fn dropping_every_handle_commits_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let ledger = Ledger::open(dir.path(), common::options()).unwrap();
        let clone = ledger.clone();
        workload(&clone, 0);
        snapshot(&ledger)
    };
    let ledger = Ledger::open(dir.path(), common::options()).unwrap();
    assert_eq!(snapshot(&ledger), before);
}

#[test]
fn a_second_open_of_an_open_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _ledger = Ledger::open(dir.path(), common::options()).unwrap();
    let err = Ledger::open(dir.path(), common::options()).unwrap_err();
    assert!(matches!(err, ledger_core::OpenError::Store(ledger_store::OpenError::Locked { .. })), "{err}");
}
