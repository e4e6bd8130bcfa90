//! Refunds: of a captured payment of the same client and currency, summing to at most
//! the captured amount; the payment's state follows.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use common::{committed, eur, rejected, usd};
use ledger_core::{Reject, Tx, TxId, TxState};

#[test]
fn partial_refunds_up_to_the_captured_amount() {
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::sale(TxId(1), 1, 1000, usd())]).unwrap();
    let r = ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 300, usd())]).unwrap();
    let refund = committed(&r[0]);
    assert_eq!((refund.state, refund.captured, refund.refunded), (TxState::Applied, 0, 0));
    let p = ledger.lookup(TxId(1)).unwrap();
    assert_eq!((p.state, p.captured, p.refunded), (TxState::PartiallyRefunded, 1000, 300));

    let over = ledger.submit(&[Tx::refund(TxId(3), TxId(1), 1, 701, usd())]).unwrap();
    assert_eq!(rejected(&over[0]), Reject::ExceedsRefAmount);
    committed(&ledger.submit(&[Tx::refund(TxId(3), TxId(1), 1, 700, usd())]).unwrap()[0]);
    let p = ledger.lookup(TxId(1)).unwrap();
    assert_eq!((p.state, p.refunded), (TxState::Refunded, 1000));
    assert_eq!(
        rejected(&ledger.submit(&[Tx::refund(TxId(4), TxId(1), 1, 1, usd())]).unwrap()[0]),
        Reject::ExceedsRefAmount
    );
    let b = ledger.balance(1, usd()).unwrap();
    assert_eq!((b.captured, b.refunded, b.net), (1000, 1000, 0));
}

#[test]
fn refund_of_an_authorization_follows_its_capture() {
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::authorization(TxId(1), 1, 1000, usd())]).unwrap();
    let early = ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 100, usd())]).unwrap();
    assert_eq!(rejected(&early[0]), Reject::RefWrongState, "an uncaptured payment has nothing to refund");
    ledger.submit(&[Tx::capture(TxId(3), TxId(1), 1, 600, usd())]).unwrap();
    assert_eq!(
        rejected(&ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 601, usd())]).unwrap()[0]),
        Reject::ExceedsRefAmount,
        "refunds are bounded by the captured amount, not the authorized one"
    );
    committed(&ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 600, usd())]).unwrap()[0]);
}

#[test]
fn refund_refs_must_be_this_clients_payment_in_its_currency() {
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::sale(TxId(1), 1, 1000, usd()), Tx::adjustment(TxId(5), 1, 10, usd())]).unwrap();
    let cases = [
        (Tx::refund(TxId(2), TxId(99), 1, 10, usd()), Reject::RefNotFound),
        (Tx::refund(TxId(2), TxId(1), 2, 10, usd()), Reject::RefNotFound), // another client's payment
        (Tx::refund(TxId(2), TxId(1), 1, 10, eur()), Reject::CurrencyMismatch),
        (Tx::refund(TxId(2), TxId(5), 1, 10, usd()), Reject::RefWrongState), // not a payment
        (Tx::refund(TxId(2), TxId(1), 1, 0, usd()), Reject::InvalidAmount),
        (Tx::refund(TxId(2), TxId(1), 1, -5, usd()), Reject::InvalidAmount),
    ];
    for (tx, reject) in cases {
        assert_eq!(rejected(&ledger.submit(&[tx]).unwrap()[0]), reject, "{tx:?}");
    }
    assert_eq!(ledger.lookup(TxId(1)).unwrap().refunded, 0, "no rejected refund counted");
}

#[test]
fn a_refund_may_refer_to_a_payment_earlier_in_the_same_call() {
    let (_dir, ledger) = common::open();
    let out = ledger
        .submit(&[
            Tx::sale(TxId(1), 1, 100, usd()),
            Tx::refund(TxId(2), TxId(1), 1, 60, usd()),
            Tx::refund(TxId(3), TxId(1), 1, 60, usd()),
        ])
        .unwrap();
    committed(&out[1]);
    assert_eq!(rejected(&out[2]), Reject::ExceedsRefAmount);
}

#[test]
fn sums_that_would_overflow_are_rejected_not_wrapped() {
    let (_dir, ledger) = common::open();
    committed(&ledger.submit(&[Tx::sale(TxId(1), 1, i64::MAX, usd())]).unwrap()[0]);
    let more = ledger.submit(&[Tx::sale(TxId(2), 1, 1, usd())]).unwrap();
    assert_eq!(rejected(&more[0]), Reject::InvalidAmount);
    let b = ledger.balance(1, usd()).unwrap();
    assert_eq!((b.captured, b.net), (i64::MAX, i64::MAX));
    // The most negative adjustment fits; one more unit below it does not.
    committed(&ledger.submit(&[Tx::adjustment(TxId(3), 1, i64::MIN, usd())]).unwrap()[0]);
    assert_eq!(ledger.balance(1, usd()).unwrap().net, -1);
    let below = ledger.submit(&[Tx::adjustment(TxId(4), 1, -1, usd())]).unwrap();
    assert_eq!(rejected(&below[0]), Reject::InvalidAmount);
    // Refunding everything lands the net exactly on i64::MIN: allowed, and exact.
    committed(&ledger.submit(&[Tx::refund(TxId(5), TxId(1), 1, i64::MAX, usd())]).unwrap()[0]);
    let b = ledger.balance(1, usd()).unwrap();
    assert_eq!((b.refunded, b.adjusted, b.net), (i64::MAX, i64::MIN, i64::MIN));
    assert!(ledger.lookup(TxId(4)).is_none());
}

#[test]
fn a_refund_sum_that_would_leave_i64_is_an_invalid_amount() {
    // The contract: any sum that would leave int64 is LEDGER_TX_INVALID_AMOUNT, even
    // when it would also exceed the captured amount.
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::sale(TxId(1), 1, i64::MAX, usd())]).unwrap();
    committed(&ledger.submit(&[Tx::refund(TxId(2), TxId(1), 1, 10, usd())]).unwrap()[0]);
    let over = ledger.submit(&[Tx::refund(TxId(3), TxId(1), 1, i64::MAX, usd())]).unwrap();
    assert_eq!(rejected(&over[0]), Reject::InvalidAmount);
    // Refunding the rest exactly fits and is allowed.
    committed(&ledger.submit(&[Tx::refund(TxId(3), TxId(1), 1, i64::MAX - 10, usd())]).unwrap()[0]);
    // A sum inside i64 above the captured amount is the other rejection.
    // (Client 1's captured total is already i64::MAX: another client.)
    committed(&ledger.submit(&[Tx::sale(TxId(4), 2, 1000, usd())]).unwrap()[0]);
    let above = ledger.submit(&[Tx::refund(TxId(5), TxId(4), 2, 1001, usd())]).unwrap();
    assert_eq!(rejected(&above[0]), Reject::ExceedsRefAmount);
}
