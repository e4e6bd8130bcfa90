//! Authorizations: captured once (partially or fully, at most the authorized amount)
//! or voided while uncaptured; they count in no batch until captured, and then the
//! capture counts.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use common::{committed, rejected, usd};
use ledger_core::{Reject, Tx, TxId, TxState};

#[test]
fn an_authorization_counts_nowhere_until_captured() {
    let (_dir, ledger) = common::open();
    let auth = committed(&ledger.submit(&[Tx::authorization(TxId(1), 1, 1000, usd())]).unwrap()[0]);
    assert_eq!((auth.state, auth.batch_id, auth.captured), (TxState::Authorized, 0, 0));
    assert!(ledger.balance(1, usd()).is_none(), "no money moved yet");
    assert!(ledger.open_batch(1, usd()).is_none());

    let capture = committed(&ledger.submit(&[Tx::capture(TxId(2), TxId(1), 1, 750, usd())]).unwrap()[0]);
    assert_eq!(capture.state, TxState::Applied);
    assert_ne!(capture.batch_id, 0);
    let payment = ledger.lookup(TxId(1)).unwrap();
    assert_eq!((payment.state, payment.captured, payment.batch_id), (TxState::Captured, 750, capture.batch_id));
    let batch = ledger.open_batch(1, usd()).unwrap();
    assert_eq!((batch.payment_count, batch.payment_total, batch.first_seq), (1, 750, capture.seq));
    assert_eq!(ledger.balance(1, usd()).unwrap().captured, 750);
}

#[test]
fn a_payment_is_captured_once_and_never_above_its_authorization() {
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::authorization(TxId(1), 1, 1000, usd()), Tx::sale(TxId(9), 1, 10, usd())]).unwrap();
    let cases = [
        (Tx::capture(TxId(2), TxId(1), 1, 1001, usd()), Reject::ExceedsRefAmount),
        (Tx::capture(TxId(2), TxId(1), 1, 0, usd()), Reject::InvalidAmount),
        (Tx::capture(TxId(2), TxId(9), 1, 5, usd()), Reject::RefWrongState), // a sale is captured already
        (Tx::capture(TxId(2), TxId(1), 2, 5, usd()), Reject::RefNotFound),
    ];
    for (tx, reject) in cases {
        assert_eq!(rejected(&ledger.submit(&[tx]).unwrap()[0]), reject, "{tx:?}");
    }
    committed(&ledger.submit(&[Tx::capture(TxId(2), TxId(1), 1, 1000, usd())]).unwrap()[0]);
    let again = ledger.submit(&[Tx::capture(TxId(3), TxId(1), 1, 1, usd())]).unwrap();
    assert_eq!(rejected(&again[0]), Reject::RefWrongState, "a second capture");
    let void = ledger.submit(&[Tx::void(TxId(4), TxId(1), 1, usd())]).unwrap();
    assert_eq!(rejected(&void[0]), Reject::RefWrongState, "a captured payment cannot be voided");
}

#[test]
fn a_void_ends_an_authorization() {
    let (_dir, ledger) = common::open();
    ledger.submit(&[Tx::authorization(TxId(1), 1, 1000, usd())]).unwrap();
    let bad = Tx { amount: 5, ..Tx::void(TxId(2), TxId(1), 1, usd()) };
    assert_eq!(rejected(&ledger.submit(&[bad]).unwrap()[0]), Reject::InvalidAmount, "a void carries no amount");
    let void = committed(&ledger.submit(&[Tx::void(TxId(2), TxId(1), 1, usd())]).unwrap()[0]);
    assert_eq!((void.state, void.batch_id), (TxState::Applied, 0));
    let payment = ledger.lookup(TxId(1)).unwrap();
    assert_eq!((payment.state, payment.captured), (TxState::Voided, 0));
    for tx in [Tx::capture(TxId(3), TxId(1), 1, 10, usd()), Tx::void(TxId(3), TxId(1), 1, usd())] {
        assert_eq!(rejected(&ledger.submit(&[tx]).unwrap()[0]), Reject::RefWrongState, "{tx:?}");
    }
    assert!(ledger.balance(1, usd()).is_none(), "a voided authorization moved no money");
}

#[test]
fn malformed_transactions_are_refused_with_the_precise_reason() {
    let (_dir, ledger) = common::open();
    let sale = Tx::sale(TxId(1), 1, 100, usd());
    let cases = [
        (Tx { id: TxId(0), ..sale }, Reject::InvalidKind),
        (Tx { client_id: 0, ..sale }, Reject::InvalidKind),
        (Tx { kind: 0, ..sale }, Reject::InvalidKind),
        (Tx { kind: 6, ..sale }, Reject::InvalidKind),
        (Tx { flags: 2, ..sale }, Reject::InvalidKind),
        (Tx { ref_id: TxId(5), ..sale }, Reject::InvalidKind), // a ref where none belongs
        (Tx { ref_id: TxId(0), ..Tx::refund(TxId(1), TxId(5), 1, 10, usd()) }, Reject::InvalidKind),
        (Tx { flags: Tx::AUTH_ONLY, ..Tx::adjustment(TxId(1), 1, 5, usd()) }, Reject::InvalidKind),
        (Tx { currency: *b"usd\0", ..sale }, Reject::InvalidCurrency),
        (Tx { currency: *b"XYZ\0", ..sale }, Reject::InvalidCurrency),
        (Tx { currency: *b"USDD", ..sale }, Reject::InvalidCurrency),
        (Tx { amount: 0, ..sale }, Reject::InvalidAmount),
        (Tx { amount: -1, ..sale }, Reject::InvalidAmount),
        (Tx::adjustment(TxId(1), 1, 0, usd()), Reject::InvalidAmount),
    ];
    for (tx, reject) in cases {
        assert_eq!(rejected(&ledger.submit(&[tx]).unwrap()[0]), reject, "{tx:?}");
    }
    assert_eq!(ledger.last_seq(), 0, "nothing was stored");
    assert_eq!(ledger.transaction_count(), 0);
}
