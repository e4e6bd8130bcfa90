//! A replica applies its leader's raw records: every record is judged again and must
//! commit as it did on the leader, and the replica's log then holds the same payloads
//! at the same seqs; its state (transactions, batches, balances) equals the leader's.
//! Records out of order, malformed, or that do not reproduce are refused.

use ledger_core::{
    Currency, CutoverPolicy, Durability, FeedRecord, Ledger, LedgerOptions, RawRecord, ReplicateError, Tx, TxId,
    TxOutcome,
};

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

fn eur() -> Currency {
    Currency::from_code("EUR").expect("EUR")
}

fn options(cutover: CutoverPolicy) -> LedgerOptions {
    LedgerOptions { durability: Durability::None, segment_bytes: 64 << 10, cutover, ..LedgerOptions::default() }
}

/// Every kind of record, closes by the leader's own cut-over policy and asked for.
fn history(leader: &Ledger) {
    let mut next = 0u128;
    let mut id = || {
        next += 1;
        TxId(next)
    };
    for round in 0..40u64 {
        let mut txs = Vec::new();
        for client in 1..=3u64 {
            let (sale, auth, auth2) = (id(), id(), id());
            txs.push(Tx::sale(sale, client, 10_00 + round as i64, usd()));
            txs.push(Tx::authorization(auth, client, 5_00, usd()));
            txs.push(Tx::authorization(auth2, client, 7_00, eur()));
            txs.push(Tx::capture(id(), auth, client, 4_00, usd()));
            txs.push(Tx::void(id(), auth2, client, eur()));
            txs.push(Tx::refund(id(), sale, client, 1_00, usd()));
            txs.push(Tx::adjustment(id(), client, -25, eur()).with_device(round).with_user_data(round));
        }
        // A rejected one makes no record.
        txs.push(Tx::refund(id(), TxId(999_999), 1, 1, usd()));
        for chunk in txs.chunks(5) {
            leader.submit(chunk).expect("submit");
        }
        if round % 5 == 0 {
            leader.close_batch(2, usd()).expect("close");
        }
    }
}

fn all_raw(ledger: &Ledger) -> Vec<RawRecord> {
    ledger.read_raw(1, usize::MAX).expect("raw records")
}

fn feed(ledger: &Ledger) -> Vec<FeedRecord> {
    let mut feed = ledger.feed(1).expect("feed");
    let mut out = Vec::new();
    while feed.read(&mut out, 1000).expect("read") > 0 {}
    out
}

/// Ships the leader's records to the replica in chunks of varying size.
fn ship(leader: &Ledger, replica: &Ledger) -> u64 {
    let mut size = 1;
    loop {
        let raw = leader.read_raw(replica.last_seq() + 1, size).expect("read");
        if raw.is_empty() {
            return replica.last_seq();
        }
        let last = raw.last().map(|r| r.seq);
        assert_eq!(replica.apply_replicated(raw).map(Some), Ok(last));
        size = size % 97 + 13;
    }
}

#[test]
fn a_replica_holds_the_leaders_records_and_state() {
    let (ldir, rdir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let cutover = CutoverPolicy { transactions_max: Some(7), age_max: None };
    let leader = Ledger::open(ldir.path(), options(cutover)).expect("leader");
    let replica = Ledger::open(rdir.path(), options(CutoverPolicy::default())).expect("replica");
    history(&leader);
    let last = ship(&leader, &replica);
    assert_eq!(last, leader.last_seq());
    let raw = all_raw(&leader);
    assert!(raw.len() > 800);
    assert_eq!(all_raw(&replica), raw, "the same payloads at the same seqs");
    let records = feed(&leader);
    assert!(records.iter().filter(|r| matches!(r, FeedRecord::BatchClose { .. })).count() > 20);
    assert_eq!(feed(&replica), records);
    for client in 1..=3 {
        assert_eq!(replica.balances(client), leader.balances(client), "client {client}");
        assert_eq!(replica.batches(client, 0, 10_000), leader.batches(client, 0, 10_000), "client {client}");
    }
    for seq in [1u64, 2, 50, 400] {
        if let Some(FeedRecord::Transaction(r)) = records.iter().find(|r| r.seq() == seq) {
            assert_eq!(replica.lookup(r.tx.id), leader.lookup(r.tx.id));
        }
    }
    replica.check_consistency().expect("the replica's books hang together");

    // Applying the same records again, or with a gap, changes nothing.
    let again = leader.read_raw(last - 3, 4).expect("read");
    assert_eq!(replica.apply_replicated(again), Err(ReplicateError::NotNext { expected: last + 1, first: last - 3 }));
    // A malformed payload changes nothing, and the replica goes on.
    leader.submit(&[Tx::sale(TxId(5_000_000), 1, 1_00, usd())]).expect("submit");
    let mut next = leader.read_raw(last + 1, 1).expect("read");
    let mut bad = next.clone();
    bad[0].payload.truncate(8);
    assert!(matches!(replica.apply_replicated(bad), Err(ReplicateError::Malformed { .. })));
    assert_eq!(replica.last_seq(), last);
    assert_eq!(replica.apply_replicated(next.split_off(0)), Ok(last + 1));
    leader.close().expect("close");
    replica.close().expect("close");

    // After a reopen (replayed from the replica's own log) it is the same.
    let replica = Ledger::open(rdir.path(), options(CutoverPolicy::default())).expect("reopen");
    assert_eq!(replica.last_seq(), last + 1);
    assert_eq!(&feed(&replica)[..records.len()], &records[..]);
    replica.close().expect("close");
}

#[test]
fn a_record_that_does_not_reproduce_stops_the_replica() {
    let (ldir, rdir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let leader = Ledger::open(ldir.path(), options(CutoverPolicy::default())).expect("leader");
    leader.submit(&[Tx::sale(TxId(1), 1, 10_00, usd()), Tx::refund(TxId(2), TxId(1), 1, 2_00, usd())]).expect("submit");
    let raw = all_raw(&leader);
    // The refund alone, as if it were the first record: this replica has no sale to refund.
    let lone = vec![RawRecord { seq: 1, ..raw[1].clone() }];
    let replica = Ledger::open(rdir.path(), options(CutoverPolicy::default())).expect("replica");
    assert!(matches!(replica.apply_replicated(lone), Err(ReplicateError::Diverged { seq: 1, .. })));
    assert_eq!(replica.last_seq(), 0, "nothing of it was applied");
    // It refuses everything from then on: its state cannot be trusted to follow.
    assert!(matches!(replica.apply_replicated(raw.clone()), Err(ReplicateError::Submit(_))));
    assert!(replica.submit(&[Tx::sale(TxId(9), 1, 1, usd())]).is_err());
    drop(replica);

    // A ledger that runs its own cut-over is no replica.
    let other = tempfile::tempdir().expect("dir");
    let own =
        Ledger::open(other.path(), options(CutoverPolicy { transactions_max: Some(3), age_max: None })).expect("open");
    assert_eq!(own.apply_replicated(raw), Err(ReplicateError::OwnCutover));
    assert!(matches!(own.submit(&[Tx::sale(TxId(3), 1, 1, usd())]).expect("submit")[0], TxOutcome::Committed(_)));
}
