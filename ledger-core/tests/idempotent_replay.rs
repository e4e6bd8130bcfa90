//! Idempotency: the id is the key. An identical resubmission changes nothing; the same
//! id with any different field is refused; a rejected id is judged afresh later.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use common::{committed, rejected, usd};
use ledger_core::{Reject, Tx, TxId, TxOutcome};

#[test]
fn identical_resubmission_returns_the_original_and_changes_nothing() {
    let (_dir, ledger) = common::open();
    let sale = Tx::sale(TxId(10), 1, 500, usd()).with_device(4).with_user_data(99);
    let first = committed(&ledger.submit(&[sale]).unwrap()[0]);
    let seq = ledger.last_seq();
    let balance = ledger.balance(1, usd()).unwrap();
    for _ in 0..3 {
        match ledger.submit(&[sale]).unwrap()[0] {
            TxOutcome::Exists(r) => assert_eq!(r, first),
            other => panic!("expected Exists, got {other:?}"),
        }
    }
    assert_eq!(ledger.last_seq(), seq, "nothing was appended");
    assert_eq!(ledger.balance(1, usd()).unwrap(), balance, "nothing was counted twice");
}

#[test]
fn exists_reports_the_record_as_it_stands_now() {
    let (_dir, ledger) = common::open();
    let sale = Tx::sale(TxId(1), 1, 500, usd());
    ledger.submit(&[sale, Tx::refund(TxId(2), TxId(1), 1, 100, usd())]).unwrap();
    let TxOutcome::Exists(r) = ledger.submit(&[sale]).unwrap()[0] else { panic!("expected Exists") };
    assert_eq!((r.refunded, r.state), (100, ledger_core::TxState::PartiallyRefunded));
}

#[test]
fn any_different_field_is_refused() {
    let (_dir, ledger) = common::open();
    let sale = Tx::sale(TxId(7), 1, 500, usd());
    ledger.submit(&[sale]).unwrap();
    let variants = [
        Tx { amount: 501, ..sale },
        Tx { client_id: 2, ..sale },
        Tx { device_id: 3, ..sale },
        Tx { user_data: 1, ..sale },
        Tx { flags: Tx::AUTH_ONLY, ..sale },
        Tx { currency: *b"EUR\0", ..sale },
        Tx::adjustment(TxId(7), 1, 500, usd()),
    ];
    let seq = ledger.last_seq();
    for variant in variants {
        assert_eq!(rejected(&ledger.submit(&[variant]).unwrap()[0]), Reject::ExistsWithDifferentFields, "{variant:?}");
    }
    assert_eq!(ledger.last_seq(), seq);
    assert_eq!(ledger.lookup(TxId(7)).unwrap().tx, sale, "the original stands");
}

#[test]
fn duplicates_within_one_call_commit_once() {
    let (_dir, ledger) = common::open();
    let sale = Tx::sale(TxId(3), 1, 250, usd());
    let outcomes = ledger.submit(&[sale, sale, Tx { amount: 1, ..sale }]).unwrap();
    let first = committed(&outcomes[0]);
    assert_eq!(outcomes[1], TxOutcome::Exists(first));
    assert_eq!(rejected(&outcomes[2]), Reject::ExistsWithDifferentFields);
    assert_eq!(ledger.balance(1, usd()).unwrap().captured, 250);
}

#[test]
fn a_rejected_id_is_judged_afresh() {
    let (_dir, ledger) = common::open();
    let refund = Tx::refund(TxId(20), TxId(21), 1, 100, usd());
    assert_eq!(rejected(&ledger.submit(&[refund]).unwrap()[0]), Reject::RefNotFound);
    assert!(ledger.lookup(TxId(20)).is_none(), "a rejected transaction is not stored");
    ledger.submit(&[Tx::sale(TxId(21), 1, 300, usd())]).unwrap();
    committed(&ledger.submit(&[refund]).unwrap()[0]);
}

#[test]
fn idempotency_holds_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sale = Tx::sale(TxId(u128::MAX), 9, 1, usd());
    let first = {
        let ledger = ledger_core::Ledger::open(dir.path(), common::options()).unwrap();
        committed(&ledger.submit(&[sale]).unwrap()[0])
    };
    let ledger = ledger_core::Ledger::open(dir.path(), common::options()).unwrap();
    assert_eq!(ledger.submit(&[sale]).unwrap()[0], TxOutcome::Exists(first));
    assert_eq!(rejected(&ledger.submit(&[Tx { amount: 2, ..sale }]).unwrap()[0]), Reject::ExistsWithDifferentFields);
}
