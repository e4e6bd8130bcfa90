//! Snapshot + tail replay: opening loads the newest good snapshot and replays only the
//! log after it; a damaged snapshot is skipped with a warning, never trusted.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::fs;

use common::usd;
use ledger_core::{Ledger, LedgerOptions, Tx, TxId};

fn options() -> LedgerOptions {
    LedgerOptions { segment_bytes: 64 << 10, snapshot_every_records: 0, ..LedgerOptions::default() }
}

fn state(
    ledger: &Ledger,
) -> (Vec<ledger_core::TxRecord>, Vec<ledger_core::BatchSummary>, Option<ledger_core::Balance>, u64) {
    (ledger.list(1, 0, usize::MAX), ledger.batches(1, 0, usize::MAX), ledger.balance(1, usd()), ledger.last_seq())
}

fn submit_range(ledger: &Ledger, ids: std::ops::Range<u128>) {
    for id in ids {
        let out = ledger
            .submit(&[Tx::sale(TxId(id * 2), 1, 100, usd()), Tx::refund(TxId(id * 2 + 1), TxId(id * 2), 1, 30, usd())])
            .unwrap();
        assert!(out.iter().all(|o| o.code() == 0));
        if id % 40 == 0 {
            ledger.close_batch(1, usd()).unwrap();
        }
    }
}

#[test]
fn open_replays_only_the_tail_after_the_newest_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    submit_range(&ledger, 1..200);
    let first = ledger.snapshot().unwrap();
    assert_eq!(first, ledger.last_seq());
    submit_range(&ledger, 200..300);
    let second = ledger.snapshot().unwrap();
    submit_range(&ledger, 300..350); // the tail after the newest snapshot
    let before = state(&ledger);
    ledger.close().unwrap();
    drop(ledger);

    let ledger = Ledger::open(dir.path(), options()).unwrap();
    let report = ledger.open_report().clone();
    assert_eq!(report.snapshot_seq, Some(second));
    assert!(report.snapshot_warnings.is_empty(), "{:?}", report.snapshot_warnings);
    assert_eq!(report.transactions, 100, "only the 50 sales and 50 refunds after the snapshot were replayed");
    assert_eq!(state(&ledger), before);
    // Idempotency spans the snapshot boundary too.
    assert_eq!(ledger.submit(&[Tx::sale(TxId(2), 1, 100, usd())]).unwrap()[0].code(), 1);
    assert_eq!(ledger.submit(&[Tx::sale(TxId(2), 1, 101, usd())]).unwrap()[0].code(), 2);
    drop(ledger);

    // Damage the newest snapshot: it is skipped with a warning, the older one is used,
    // and the longer tail replays to the same state.
    let newest = dir.path().join(format!("snapshot-{second:020}.snap"));
    let mut bytes = fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    fs::write(&newest, bytes).unwrap();
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    let report = ledger.open_report().clone();
    assert_eq!(report.snapshot_seq, Some(first));
    assert_eq!(report.snapshot_warnings.len(), 1);
    assert!(report.snapshot_warnings[0].contains("damaged"), "{:?}", report.snapshot_warnings);
    assert_eq!(state(&ledger), before);
    drop(ledger);

    // With every snapshot damaged, the whole log replays.
    let older = dir.path().join(format!("snapshot-{first:020}.snap"));
    fs::write(&older, b"not a snapshot").unwrap();
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    assert_eq!(ledger.open_report().snapshot_seq, None);
    assert_eq!(ledger.open_report().snapshot_warnings.len(), 2);
    assert_eq!(state(&ledger), before);
}

#[test]
fn automatic_snapshots_follow_the_record_count() {
    let dir = tempfile::tempdir().unwrap();
    let options = LedgerOptions { snapshot_every_records: 100, ..options() };
    let ledger = Ledger::open(dir.path(), options).unwrap();
    submit_range(&ledger, 1..120); // 238 records and 2 closes
    let before = state(&ledger);
    drop(ledger);
    let snapshots: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    assert_eq!(snapshots.len(), 2, "two snapshots kept: {snapshots:?}");
    let ledger = Ledger::open(dir.path(), options).unwrap();
    let report = ledger.open_report();
    assert!(report.snapshot_seq.is_some_and(|s| s >= 200));
    assert!(report.transactions < 100);
    assert_eq!(state(&ledger), before);
}
