//! The log's oldest segments go once the oldest kept checkpoint covers them (the runs
//! hold every transaction), so a reopen verifies and replays only the log since that
//! checkpoint; `keep_whole_log` keeps every segment.

use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId, TxOutcome, TxState};
use ledger_store::{Log, LogOptions};

const SEGMENT_BYTES: usize = 64 << 10;

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

fn options(keep_whole_log: bool) -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: SEGMENT_BYTES,
        snapshot_every_records: 500,
        keep_whole_log,
        ..LedgerOptions::default()
    }
}

/// 6000 sales (about a dozen segments, several checkpoints), then a refund of the first.
fn fill(ledger: &Ledger) {
    let sales: Vec<Tx> = (1..=6000u64).map(|i| Tx::sale(TxId(u128::from(i)), 1, 100 + i as i64, usd())).collect();
    for chunk in sales.chunks(50) {
        assert!(ledger.submit(chunk).expect("submit").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    }
    let refund = Tx::refund(TxId(9_000_001), TxId(1), 1, 40, usd());
    assert!(matches!(ledger.submit(&[refund]).expect("refund")[0], TxOutcome::Committed(_)));
}

fn log_first_seq(dir: &std::path::Path) -> u64 {
    Log::open(dir, LogOptions::new().segment_bytes(SEGMENT_BYTES)).expect("log").first_seq()
}

#[test]
fn segments_a_kept_checkpoint_covers_are_removed_and_history_stays_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), options(false)).expect("open");
    fill(&ledger);
    let stats = ledger.checkpoint_stats();
    assert!(stats.written >= 3 && stats.segments_removed > 0, "{stats:?}");
    assert_eq!((stats.cleanup_failures, stats.last_cleanup_error), (0, None));
    ledger.close().expect("close");

    let first = log_first_seq(dir.path());
    assert!(first > 1000, "the log starts at {first}: its oldest segments were removed");
    let ledger = Ledger::open(dir.path(), options(false)).expect("reopen");
    let report = ledger.open_report().clone();
    let from = report.snapshot_seq.expect("opened from a checkpoint");
    assert!(from + 1 >= first, "the checkpoint loaded ({from}) is within the log kept (from {first})");
    assert!(report.log.frames < 6001 - 1000, "recovery verified only the log kept: {:?}", report.log);
    // Every transaction is still there, the first one too, refundable by what is left.
    assert_eq!(ledger.transaction_count(), 6001);
    let old = ledger.lookup(TxId(1)).expect("the first sale");
    assert_eq!((old.state, old.refunded), (TxState::PartiallyRefunded, 40));
    let rest = Tx::refund(TxId(9_000_002), TxId(1), 1, 101 - 40, usd());
    assert!(matches!(ledger.submit(&[rest]).expect("refund the rest")[0], TxOutcome::Committed(_)));
    assert!(matches!(ledger.submit(&[Tx::sale(TxId(1), 1, 101, usd())]).expect("resubmit")[0], TxOutcome::Exists(_)));
    ledger.close().expect("close");
}

#[test]
fn keep_whole_log_removes_no_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), options(true)).expect("open");
    fill(&ledger);
    assert_eq!(ledger.checkpoint_stats().segments_removed, 0);
    ledger.close().expect("close");
    assert_eq!(log_first_seq(dir.path()), 1);
    let ledger = Ledger::open(dir.path(), options(true)).expect("reopen");
    assert_eq!(ledger.transaction_count(), 6001);
    ledger.close().expect("close");
}
