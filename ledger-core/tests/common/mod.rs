//! Helpers shared by the scenario tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // each test file uses a subset

pub mod model;
pub mod rng;

use ledger_core::{Currency, Ledger, LedgerOptions, Reject, TxOutcome, TxRecord};

pub fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

pub fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

/// A ledger in a fresh temp dir, with small segments.
pub fn open() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    (dir, ledger)
}

pub fn options() -> LedgerOptions {
    LedgerOptions { segment_bytes: 256 << 10, ..LedgerOptions::default() }
}

pub fn committed(outcome: &TxOutcome) -> TxRecord {
    match outcome {
        TxOutcome::Committed(r) => *r,
        other => panic!("expected a commit, got {other:?}"),
    }
}

pub fn rejected(outcome: &TxOutcome) -> Reject {
    match outcome {
        TxOutcome::Rejected(r) => *r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}
