//! Balances per (client, currency): captured, refunded, adjusted and net over every
//! committed transaction; settled (closed batches) plus open (the open batch) is net,
//! and the balance equals the sum of the client's batches.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use common::{eur, usd};
use ledger_core::{Balance, Tx, TxId};

#[test]
fn balances_follow_every_kind_and_equal_the_sum_of_batches() {
    let (_dir, ledger) = common::open();
    ledger
        .submit(&[
            Tx::sale(TxId(1), 1, 10_00, usd()),
            Tx::authorization(TxId(2), 1, 50_00, usd()),
            Tx::capture(TxId(3), TxId(2), 1, 40_00, usd()),
            Tx::refund(TxId(4), TxId(1), 1, 2_50, usd()),
            Tx::adjustment(TxId(5), 1, -1_00, usd()),
            Tx::sale(TxId(6), 1, 7_00, eur()),
        ])
        .unwrap();
    let b = ledger.balance(1, usd()).unwrap();
    assert_eq!(
        b,
        Balance { captured: 50_00, refunded: 2_50, adjusted: -1_00, net: 46_50, settled_net: 0, open_net: 46_50 }
    );
    ledger.close_batch(1, usd()).unwrap();
    ledger.submit(&[Tx::refund(TxId(7), TxId(2), 1, 5_00, usd())]).unwrap();
    let b = ledger.balance(1, usd()).unwrap();
    assert_eq!((b.net, b.settled_net, b.open_net), (41_50, 46_50, -5_00));
    assert_eq!(b.settled_net + b.open_net, b.net);

    let batches = ledger.batches(1, 0, 100);
    let usd_batches = batches.iter().filter(|x| x.currency == usd());
    let (mut captured, mut refunded, mut adjusted, mut settled) = (0, 0, 0, 0);
    for x in usd_batches {
        captured += x.payment_total;
        refunded += x.refund_total;
        adjusted += x.adjustment_total;
        if !x.is_open() {
            settled += x.net;
        }
    }
    assert_eq!((captured, refunded, adjusted, settled), (b.captured, b.refunded, b.adjusted, b.settled_net));
    let all = ledger.balances(1);
    assert_eq!(all.iter().map(|(c, _)| c.code()).collect::<Vec<_>>(), vec!["EUR", "USD"]);
    assert_eq!(all[0].1.captured, 7_00);
    assert!(ledger.balance(2, usd()).is_none());
}
