//! Batch cut-over: every sale, capture, refund and adjustment counts in the open batch
//! of its (client, currency) at commit; a close is a record in the log, ordered with
//! the transactions around it; a new batch opens with the next counted transaction.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::collections::HashMap;

use common::{committed, eur, usd};
use ledger_core::{CloseBatchError, CutoverPolicy, Ledger, LedgerOptions, Tx, TxId};

#[test]
fn a_close_splits_transactions_by_commit_order() {
    let (_dir, ledger) = common::open();
    assert_eq!(ledger.close_batch(1, usd()).unwrap_err(), CloseBatchError::Empty, "nothing to close yet");
    let s1 = committed(&ledger.submit(&[Tx::sale(TxId(1), 1, 1000, usd())]).unwrap()[0]);
    let r1 = committed(&ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 100, usd())]).unwrap()[0]);
    let a1 = committed(&ledger.submit(&[Tx::adjustment(TxId(3), 1, -5, usd())]).unwrap()[0]);
    let closed = ledger.close_batch(1, usd()).unwrap();
    assert_eq!(closed.batch_id, s1.batch_id);
    assert!(!closed.is_open() && closed.closed_ns > a1.timestamp_ns);
    assert_eq!((closed.first_seq, closed.last_seq), (s1.seq, a1.seq));
    assert_eq!((closed.payment_count, closed.payment_total), (1, 1000));
    assert_eq!((closed.refund_count, closed.refund_total), (1, 100));
    assert_eq!((closed.adjustment_count, closed.adjustment_total), (1, -5));
    assert_eq!(closed.net, 895);
    assert_eq!(r1.batch_id, closed.batch_id);
    assert_eq!(ledger.close_batch(1, usd()).unwrap_err(), CloseBatchError::Empty, "the new batch is empty");

    // A refund of a payment from the closed batch counts in the new batch.
    let r2 = committed(&ledger.submit(&[Tx::refund(TxId(4), TxId(1), 1, 50, usd())]).unwrap()[0]);
    assert!(r2.batch_id > closed.batch_id);
    assert!(r2.seq > ledger.last_seq() - 1);
    let open = ledger.open_batch(1, usd()).unwrap();
    assert_eq!((open.batch_id, open.refund_total, open.net, open.first_seq), (r2.batch_id, 50, -50, r2.seq));
    assert_eq!(ledger.batch(closed.batch_id).unwrap(), closed, "a closed batch never changes");
}

#[test]
fn batches_are_per_client_and_currency() {
    let (_dir, ledger) = common::open();
    let out = ledger
        .submit(&[
            Tx::sale(TxId(1), 1, 100, usd()),
            Tx::sale(TxId(2), 1, 200, eur()),
            Tx::sale(TxId(3), 2, 300, usd()),
            Tx::sale(TxId(4), 1, 400, usd()),
        ])
        .unwrap();
    let ids: Vec<u64> = out.iter().map(|o| committed(o).batch_id).collect();
    assert_eq!(ids[0], ids[3]);
    assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
    assert_eq!(ledger.close_batch(1, usd()).unwrap().payment_total, 500);
    assert_eq!(ledger.open_batch(1, eur()).unwrap().payment_total, 200, "other accounts' batches stay open");
    assert_eq!(ledger.batches(1, 0, 10).len(), 2);
    assert_eq!(ledger.batches(2, 0, 10).len(), 1);
}

#[test]
fn closes_interleaved_with_concurrent_submits_count_every_transaction_once() {
    let (_dir, ledger) = common::open();
    let producers: Vec<_> = (0..4u128)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                for i in 0..500u128 {
                    let id = TxId(t * 1_000_000 + i + 1);
                    committed(&ledger.submit(&[Tx::sale(id, 1, 1 + (i % 7) as i64, usd())]).unwrap()[0]);
                }
            })
        })
        .collect();
    let mut closes = 0;
    while !producers.iter().all(|p| p.is_finished()) {
        if ledger.close_batch(1, usd()).is_ok() {
            closes += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    let _ = ledger.close_batch(1, usd());
    // Recompute every batch from the transactions themselves.
    let txs = ledger.list(1, 0, usize::MAX);
    assert_eq!(txs.len(), 2000);
    let mut sums: HashMap<u64, (u64, i64)> = HashMap::new();
    for tx in &txs {
        assert_ne!(tx.batch_id, 0, "every sale counts in a batch");
        let s = sums.entry(tx.batch_id).or_default();
        s.0 += 1;
        s.1 += tx.tx.amount;
    }
    let batches = ledger.batches(1, 0, usize::MAX);
    assert!(batches.len() > 1, "closes happened during the run ({closes})");
    for b in &batches {
        assert!(!b.is_open());
        assert_eq!((b.payment_count, b.payment_total), sums[&b.batch_id], "batch {}", b.batch_id);
        let members: Vec<u64> = txs.iter().filter(|t| t.batch_id == b.batch_id).map(|t| t.seq).collect();
        assert_eq!((b.first_seq, b.last_seq), (members[0], *members.last().unwrap()));
    }
    let total: i64 = txs.iter().map(|t| t.tx.amount).sum();
    let bal = ledger.balance(1, usd()).unwrap();
    assert_eq!((bal.captured, bal.settled_net, bal.open_net), (total, total, 0));
}

#[test]
fn the_count_policy_closes_batches_by_itself_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = LedgerOptions {
        cutover: CutoverPolicy { transactions_max: Some(3), ..CutoverPolicy::default() },
        ..common::options()
    };
    let ledger = Ledger::open(dir.path(), options).unwrap();
    let txs: Vec<Tx> = (1..=8).map(|i| Tx::sale(TxId(i), 1, 10, usd())).collect();
    ledger.submit(&txs).unwrap();
    let batches = ledger.batches(1, 0, 10);
    let shape: Vec<(u64, bool)> = batches.iter().map(|b| (b.payment_count, b.is_open())).collect();
    assert_eq!(shape, vec![(3, false), (3, false), (2, true)]);
    let before = (ledger.batches(1, 0, 10), ledger.balance(1, usd()));
    ledger.close().unwrap();
    drop(ledger);
    let ledger = Ledger::open(dir.path(), options).unwrap();
    assert_eq!((ledger.batches(1, 0, 10), ledger.balance(1, usd())), before);
}

#[test]
fn the_age_policy_closes_batches_that_grew_old() {
    let dir = tempfile::tempdir().unwrap();
    let age = std::time::Duration::from_millis(150);
    let options = LedgerOptions {
        cutover: CutoverPolicy { age_max: Some(age), ..CutoverPolicy::default() },
        ..common::options()
    };
    let ledger = Ledger::open(dir.path(), options).unwrap();
    let sale = committed(&ledger.submit(&[Tx::sale(TxId(1), 1, 10, usd())]).unwrap()[0]);
    assert!(ledger.open_batch(1, usd()).is_some());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ledger.open_batch(1, usd()).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let closed = ledger.batch(sale.batch_id).unwrap();
    assert!(!closed.is_open(), "the batch closed by itself");
    let open_for = closed.closed_ns - closed.opened_ns;
    assert!(open_for >= age.as_nanos() as u64, "closed after {open_for} ns, before its age");
    assert!(
        open_for < (age + ledger_core::AGE_CHECK_INTERVAL_MAX).as_nanos() as u64 * 2,
        "closed {open_for} ns after opening"
    );
    // The close is in the log: it survives reopen, and a new sale opens a new batch.
    let next = committed(&ledger.submit(&[Tx::sale(TxId(2), 1, 10, usd())]).unwrap()[0]);
    assert!(next.batch_id > sale.batch_id);
    ledger.close().unwrap();
    drop(ledger);
    let ledger = Ledger::open(dir.path(), common::options()).unwrap();
    assert_eq!(ledger.batch(sale.batch_id).unwrap(), closed);
}
