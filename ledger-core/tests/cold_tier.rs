//! The bounded-memory tiers: transactions that left memory are judged exactly as
//! before (resubmissions, refunds and captures of old payments), across checkpoints,
//! run merges and reopens, and history pages come out right from every tier.

use ledger_core::{
    Currency, Durability, HistoryQuery, Kind, Ledger, LedgerOptions, Reject, Tx, TxId, TxOutcome, TxRecord, TxState,
};

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

/// A budget of a few dozen transactions in memory: a checkpoint every ~20.
fn tiny() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: 256 << 10,
        snapshot_every_records: 0,
        hot_bytes_max: 40 * 130,
        ..LedgerOptions::default()
    }
}

fn committed(outcome: &TxOutcome) -> TxRecord {
    match outcome {
        TxOutcome::Committed(r) => *r,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn old_payments_are_judged_exactly_after_they_leave_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), tiny()).expect("open");
    let sales: Vec<Tx> =
        (1..=3000u64).map(|i| Tx::sale(TxId(u128::from(i)), 1 + i % 3, 1000 + i as i64, usd())).collect();
    for chunk in sales.chunks(7) {
        assert!(ledger.submit(chunk).expect("submit").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    }
    let auth = Tx::authorization(TxId(9001), 2, 5000, usd());
    committed(&ledger.submit(&[auth]).expect("auth")[0]);
    for i in 0..200u128 {
        ledger.submit(&[Tx::sale(TxId(10_000 + i), 3, 1, usd())]).expect("filler");
    }
    let tiers = ledger.tiers();
    assert!(tiers.cold_runs >= 1 && tiers.cold_entries >= 3000, "{tiers:?}");
    assert!(tiers.hot_transactions < 100, "the hot tier stays within its budget: {tiers:?}");
    // Filters in memory within half the budget: the small newer runs' fit, the merged
    // run's does not (it is read from its file), and both kinds judge alike below.
    let budget = (tiny().hot_bytes_max / 2) as u64;
    assert!(tiers.cold_filter_bytes > 0 && tiers.cold_filter_bytes <= budget, "{tiers:?}");
    assert!(tiers.cold_entries * 12 / 8 > budget, "some run's filter cannot fit: {tiers:?}");
    let stats = ledger.checkpoint_stats();
    assert!(stats.written > 50 && stats.merges > 0 && stats.failures == 0, "{stats:?}");

    // The first payment is long cold: a resubmission is Exists, a changed one is refused.
    assert!(matches!(ledger.submit(&[sales[0]]).expect("resubmit")[0], TxOutcome::Exists(r) if r.tx == sales[0]));
    let changed = Tx { amount: 1, ..sales[0] };
    assert_eq!(ledger.submit(&[changed]).expect("changed")[0], TxOutcome::Rejected(Reject::ExistsWithDifferentFields));
    // Refunded twice across checkpoints, then refused past what was captured.
    let captured = sales[0].amount;
    committed(&ledger.submit(&[Tx::refund(TxId(20_001), TxId(1), 2, 400, usd())]).expect("refund")[0]);
    for i in 0..100u128 {
        ledger.submit(&[Tx::sale(TxId(30_000 + i), 3, 1, usd())]).expect("filler");
    }
    let second = Tx::refund(TxId(20_002), TxId(1), 2, captured - 400, usd());
    committed(&ledger.submit(&[second]).expect("refund")[0]);
    let over = Tx::refund(TxId(20_003), TxId(1), 2, 1, usd());
    assert_eq!(ledger.submit(&[over]).expect("over-refund")[0], TxOutcome::Rejected(Reject::ExceedsRefAmount));
    let first = ledger.lookup(TxId(1)).expect("first payment");
    assert_eq!((first.state, first.refunded), (TxState::Refunded, captured));
    // Another client's old payment does not exist for this one.
    let foreign = Tx::refund(TxId(20_004), TxId(2), 1, 1, usd());
    assert_eq!(ledger.submit(&[foreign]).expect("foreign")[0], TxOutcome::Rejected(Reject::RefNotFound));
    // An authorization from before many checkpoints is captured once, then refused.
    let capture = Tx::capture(TxId(20_005), TxId(9001), 2, 4000, usd());
    assert_eq!(committed(&ledger.submit(&[capture]).expect("capture")[0]).tx.kind, Kind::Capture as u32);
    let again = Tx::capture(TxId(20_006), TxId(9001), 2, 100, usd());
    assert_eq!(ledger.submit(&[again]).expect("capture twice")[0], TxOutcome::Rejected(Reject::RefWrongState));
    // A payment's follow-ups come from the runs' ref index and the tiers in memory.
    let ids = |v: Vec<TxRecord>| v.iter().map(|r| r.tx.id).collect::<Vec<_>>();
    assert_eq!(ids(ledger.follow_ups(TxId(1))), [TxId(20_001), TxId(20_002)]);
    assert_eq!(ids(ledger.follow_ups(TxId(9001))), [TxId(20_005)]);
    assert!(ledger.follow_ups(TxId(3)).is_empty() && ledger.follow_ups(TxId(424_242)).is_empty());
    let count = ledger.transaction_count() as u64;
    assert_eq!(ledger.check_consistency(), Ok(count));
    let before: Vec<TxRecord> = (1..=3).flat_map(|c| ledger.list(c, 0, usize::MAX)).collect();
    ledger.close().expect("close");

    // Reopened: the newest checkpoint and the log after it; the same answers.
    let ledger = Ledger::open(dir.path(), tiny()).expect("reopen");
    let report = ledger.open_report();
    assert!(report.snapshot_seq.is_some() && report.snapshot_warnings.is_empty(), "{report:?}");
    assert!(report.transactions < 100, "replayed only the log after the checkpoint: {report:?}");
    assert_eq!(ledger.check_consistency(), Ok(count));
    let after: Vec<TxRecord> = (1..=3).flat_map(|c| ledger.list(c, 0, usize::MAX)).collect();
    assert_eq!(after, before);
    assert!(matches!(ledger.submit(&[sales[1]]).expect("resubmit")[0], TxOutcome::Exists(_)));
    let ids = |v: Vec<TxRecord>| v.iter().map(|r| r.tx.id).collect::<Vec<_>>();
    assert_eq!(ids(ledger.follow_ups(TxId(1))), [TxId(20_001), TxId(20_002)], "after the reopen");
    committed(&ledger.submit(&[Tx::refund(TxId(20_007), TxId(2), 3, 1, usd())]).expect("refund after reopen")[0]);
    ledger.close().expect("close");
}

#[test]
fn history_pages_from_every_tier_match_the_whole_list() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), tiny()).expect("open");
    for i in 1..=1500u64 {
        let client = 1 + (i * 7 % 4);
        let id = u128::from(i);
        let tx = if i % 5 == 0 && i > 10 {
            Tx::refund(TxId(100_000 + id), TxId(id - 4 * (id % 3 + 1)), client, 1, usd())
        } else {
            Tx::sale(TxId(id), client, 100, usd())
        };
        ledger.submit(&[tx]).expect("submit"); // refunds of another client's payment are refused: fine
    }
    for client in 1..=4u64 {
        let all = ledger.list(client, 0, usize::MAX);
        assert!(all.len() > 200 && all.windows(2).all(|w| w[0].seq < w[1].seq));
        // Oldest first in pages of 17 by seq cursor.
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = ledger.list(client, after, 17);
            let Some(last) = page.last() else { break };
            after = last.seq;
            paged.extend(page);
        }
        assert_eq!(paged, all, "client {client}: oldest-first pages");
        // Newest first in pages of 13.
        let mut newest = Vec::new();
        let mut before = u64::MAX;
        loop {
            let page = ledger.history(client, &HistoryQuery { seqs: 1..before, ..HistoryQuery::newest_first(13) });
            let Some(last) = page.last() else { break };
            before = last.seq;
            newest.extend(page);
        }
        newest.reverse();
        assert_eq!(newest, all, "client {client}: newest-first pages");
        // A time range: exactly the transactions committed in it, either order.
        let (from, to) = (all[all.len() / 3].timestamp_ns, all[2 * all.len() / 3].timestamp_ns);
        let want: Vec<TxRecord> = all.iter().filter(|r| (from..to).contains(&r.timestamp_ns)).copied().collect();
        let query = HistoryQuery { times: from..to, ..HistoryQuery::oldest_first(usize::MAX) };
        assert_eq!(ledger.history(client, &query), want, "client {client}: by time");
        let query = HistoryQuery { times: from..to, ..HistoryQuery::newest_first(5) };
        let want_newest: Vec<TxRecord> = want.iter().rev().take(5).copied().collect();
        assert_eq!(ledger.history(client, &query), want_newest, "client {client}: by time, newest first");
    }
    // Every payment's follow-ups, from the ref indexes, are exactly those a scan finds.
    let everything: Vec<TxRecord> = (1..=4).flat_map(|c| ledger.list(c, 0, usize::MAX)).collect();
    for p in everything.iter().filter(|r| r.tx.ref_id.is_none()) {
        let mut want: Vec<TxRecord> = everything.iter().filter(|r| r.tx.ref_id == p.tx.id).copied().collect();
        want.sort_unstable_by_key(|r| r.seq);
        assert_eq!(ledger.follow_ups(p.tx.id), want, "follow-ups of {:?}", p.tx.id);
    }
    assert!(ledger.tiers().cold_runs >= 1);
    ledger.close().expect("close");
}

/// A checkpoint asked for twice at the same seq is one file on disk; the checkpoint
/// before it is still on disk too, and must still find its runs should the newest
/// become unusable (found by the simulation: the same-seq checkpoint was counted
/// twice, and the older checkpoint's runs were removed while its file stayed).
#[test]
fn the_checkpoint_before_a_repeated_one_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { hot_bytes_max: 0, snapshot_every_records: 0, ..tiny() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    // Eight checkpoints, a run each: enough for a merge.
    for round in 0..8u128 {
        let sales: Vec<Tx> = (0..10u128)
            .map(|i| Tx::sale(TxId(1 + round * 100 + i), 1, 100 + i64::try_from(i).expect("small"), usd()))
            .collect();
        ledger.submit(&sales).expect("submit");
        ledger.snapshot().expect("checkpoint");
    }
    let waited = std::time::Instant::now();
    while ledger.checkpoint_stats().merges == 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "no merge: {:?}", ledger.checkpoint_stats());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The same seq twice more: the merged run replaces the ones the checkpoint before
    // names, and that checkpoint's file is still one of the two on disk.
    let seq = ledger.snapshot().expect("the same seq again");
    assert_eq!(ledger.snapshot().expect("and again"), seq);
    let count = ledger.transaction_count() as u64;
    ledger.close().expect("close");

    // The newest checkpoint file goes (as a stale one would after a power loss): the
    // one before it loads, with every run it names.
    let mut snapshots: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    snapshots.sort();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    std::fs::remove_file(snapshots.last().expect("newest")).expect("remove the newest");
    let ledger = Ledger::open(dir.path(), options).expect("reopen");
    let report = ledger.open_report();
    assert!(report.snapshot_seq.is_some() && report.snapshot_warnings.is_empty(), "{report:?}");
    assert_eq!(ledger.check_consistency(), Ok(count));
    ledger.close().expect("close");
}

/// The Bloom filter over every run's ids (one probe for a new id, however many runs)
/// is rebuilt larger as the runs double, while checkpoints and merges go on, and built
/// again after a reopen: through all of it, every id ever committed is found (a missed
/// one would be committed twice), and it is in use (its memory shows in the tiers).
#[test]
fn the_filter_over_all_ids_grows_with_the_runs_and_misses_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    // About 500 transactions in memory; the filters' half of the budget holds some
    // 21 k ids, so the filter is built at about a thousand and rebuilt a few times.
    let options = LedgerOptions { hot_bytes_max: 64 << 10, ..tiny() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let sale = |id: u128| Tx::sale(TxId(id), 1 + (id % 7) as u64, 100 + (id % 1000) as i64, usd());
    let exists = |ledger: &Ledger, ids: &[u128]| {
        let txs: Vec<Tx> = ids.iter().map(|&id| sale(id)).collect();
        for (outcome, id) in ledger.submit(&txs).expect("resubmit").iter().zip(ids) {
            assert!(matches!(outcome, TxOutcome::Exists(r) if r.tx.id == TxId(*id)), "id {id}: {outcome:?}");
        }
    };
    let mut next = 1u128;
    for round in 0..160u128 {
        let sales: Vec<Tx> = (next..next + 100).map(sale).collect();
        assert!(ledger.submit(&sales).expect("submit").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
        next += 100;
        // Earlier ids, spread over every tier and run, while filters are being built.
        let earlier: Vec<u128> = (0..25u128).map(|k| 1 + (round * 7919 + k * 104_729) % (next - 1)).collect();
        exists(&ledger, &earlier);
    }
    let waited = std::time::Instant::now();
    while ledger.checkpoint_stats().id_filter_builds < 3 || ledger.tiers().cold_id_filter_bytes == 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "{:?}", ledger.checkpoint_stats());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats = ledger.checkpoint_stats();
    assert!(stats.merge_failures == 0 && stats.failures == 0, "{stats:?}");
    let all: Vec<u128> = (1..next).collect();
    for chunk in all.chunks(1000) {
        exists(&ledger, chunk);
    }
    // New ids are still new: the filter lets most through at once, the rest are
    // searched and not found.
    let fresh: Vec<Tx> = (next..next + 1000).map(sale).collect();
    assert!(ledger.submit(&fresh).expect("fresh").iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    next += 1000;
    ledger.close().expect("close");

    // Reopened: judged through the runs' own filters until the filter is built again,
    // then through it; the same answers either way.
    let ledger = Ledger::open(dir.path(), options).expect("reopen");
    exists(&ledger, &(1..500).collect::<Vec<_>>());
    let waited = std::time::Instant::now();
    while ledger.tiers().cold_id_filter_bytes == 0 {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "{:?}", ledger.checkpoint_stats());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let all: Vec<u128> = (1..next).collect();
    for chunk in all.chunks(1000) {
        exists(&ledger, chunk);
    }
    ledger.close().expect("close");
}
