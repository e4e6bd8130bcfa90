//! What the engine reports about its group commits and queue, for operators.

use ledger_core::{Currency, Ledger, LedgerOptions, SYNC_BUCKET_BOUNDS, Tx, TxId, TxOutcome};

#[test]
fn group_commits_are_counted_with_their_records_and_sync_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("open");
    assert_eq!(ledger.commit_stats().groups, 0);
    let usd = Currency::from_code("USD").expect("USD");
    let mut committed = 0;
    for call in 0..5u128 {
        let txs: Vec<Tx> = (0..10).map(|i| Tx::sale(TxId(call * 100 + i + 1), 1, 100, usd)).collect();
        let out = ledger.submit(&txs).expect("submit");
        committed += out.iter().filter(|o| matches!(o, TxOutcome::Committed(_))).count() as u64;
    }
    // A resubmitted id commits nothing: no record, and a group with none is not counted.
    let before = ledger.commit_stats();
    ledger.submit(&[Tx::sale(TxId(1), 1, 100, usd)]).expect("resubmit");
    let stats = ledger.commit_stats();
    assert_eq!(stats, before, "nothing committed, nothing counted");
    assert_eq!(stats.records, committed);
    assert!((1..=5).contains(&stats.groups) && stats.group_records_max >= 10, "{stats:?}");
    assert_eq!(stats.sync_buckets.len(), SYNC_BUCKET_BOUNDS.len() + 1);
    assert_eq!(stats.sync_buckets.iter().sum::<u64>(), stats.groups, "every group in one bucket");
    assert!(stats.sync_seconds > 0.0, "a durable commit takes time: {stats:?}");
    assert_eq!(ledger.queue_depth(), 0, "nothing waits once the calls returned");
    ledger.close().expect("close");
}
