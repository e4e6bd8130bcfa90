//! Model-based test: random command sequences (duplicates, bad refs, bad currencies,
//! amounts at the edge of overflow, batch closes, reopen in the middle) run against
//! the engine and against a small, plainly written reference model; every outcome,
//! every record, every batch and every balance must agree.
//!
//! `LEDGER_MODEL_SEED=N` replays a run; `LEDGER_MODEL_CASES=N` sets the case count
//! (default 1000).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code, small values

mod common;

use std::sync::Mutex;

use common::model::{MBatch, Model};
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId, TxOutcome};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// How often each outcome code occurred over the run, printed at the end.
static CODES: Mutex<[u64; 10]> = Mutex::new([0; 10]);

// ----- commands ------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Submit(Vec<Tx>),
    /// Submit again, unchanged, a transaction submitted earlier in the run.
    Resubmit(prop::sample::Index),
    Close(u64, [u8; 4]),
    Reopen,
}

const IDS: u128 = 12;

fn currency_bytes() -> impl Strategy<Value = [u8; 4]> {
    prop_oneof![6 => Just(*b"USD\0"), 3 => Just(*b"JPY\0"), 1 => Just(*b"usd\0"), 1 => Just(*b"XXX\0"), 1 => Just(*b"USDX")]
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        6 => 1i64..5_000,
        4 => 1i64..4,
        2 => Just(0i64),
        2 => -5_000i64..0,
        1 => Just(i64::MAX),
        1 => (i64::MAX - 10_000)..i64::MAX,
        1 => Just(i64::MIN),
    ]
}

fn tx() -> impl Strategy<Value = Tx> {
    (
        prop_oneof![1 => Just(0u128), 30 => 1..=IDS],
        (1..=IDS, prop_oneof![12 => Just(true), 1 => Just(false)], prop_oneof![1 => Just(0u128), 1 => Just(999u128)]),
        prop_oneof![1 => Just(0u64), 20 => Just(1u64), 8 => Just(2u64)],
        (amount(), prop_oneof![5 => Just(true), 1 => Just(false)]),
        prop_oneof![8 => Just(1u32), 3 => Just(2u32), 2 => Just(3u32), 5 => Just(4u32), 3 => Just(5u32), 1 => Just(6u32)],
        prop_oneof![12 => Just(0u32), 6 => Just(1u32), 1 => Just(2u32)],
        currency_bytes(),
        0u64..3,
    )
        .prop_map(|(id, (ref_pick, proper_ref, bad_ref), client_id, (amount, zero_void), kind, flags, currency, device_id)| {
            let has_ref = matches!(kind, 2..=4);
            // Mostly well-shaped: a ref where one belongs and none elsewhere.
            let ref_id = match (has_ref, proper_ref) {
                (true, true) => ref_pick,
                (false, true) => 0,
                (true, false) => bad_ref,
                (false, false) => ref_pick,
            };
            let amount = if kind == 3 && zero_void { 0 } else { amount };
            let flags = if kind == 1 { flags } else { (flags & !1) | ((flags & 1) * u32::from(!proper_ref)) };
            Tx { id: TxId(id), ref_id: TxId(ref_id), client_id, device_id, amount, kind, flags, currency, user_data: id as u64 * 7 }
        })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => prop::collection::vec(tx(), 1..6).prop_map(Step::Submit),
        2 => any::<prop::sample::Index>().prop_map(Step::Resubmit),
        2 => (1u64..=2, currency_bytes()).prop_map(|(c, cur)| Step::Close(c, cur)),
        1 => Just(Step::Reopen),
    ]
}

// ----- the comparison ------------------------------------------------------------

/// A tiny memory budget: a checkpoint every few transactions, so lookups, refunds,
/// captures and resubmissions reach frozen and cold transactions, and runs merge.
fn options() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: 64 << 10,
        hot_bytes_max: 8 * 130,
        ..LedgerOptions::default()
    }
}

fn compare_all(ledger: &Ledger, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(ledger.check_consistency(), Ok(model.txs.len() as u64));
    for (id, m) in &model.txs {
        let r = ledger.lookup(TxId(*id)).ok_or_else(|| TestCaseError::fail(format!("tx {id} missing")))?;
        prop_assert_eq!(r.tx, m.tx);
        prop_assert_eq!(
            (r.seq, r.batch_id, r.state as u32, r.captured, r.refunded),
            (m.seq, m.batch, m.state, m.captured, m.refunded),
            "tx {}",
            id
        );
    }
    for id in 1..=IDS + 1 {
        if !model.txs.contains_key(&id) {
            prop_assert!(ledger.lookup(TxId(id)).is_none(), "tx {} should not exist", id);
        }
    }
    for (i, m) in model.batches.iter().enumerate() {
        let b = ledger.batch(i as u64 + 1).ok_or_else(|| TestCaseError::fail(format!("batch {} missing", i + 1)))?;
        prop_assert_eq!(
            (b.client_id, b.currency.c_bytes(), b.first_seq, b.last_seq),
            (m.client, m.currency, m.first_seq, m.last_seq)
        );
        prop_assert_eq!((b.payment_count, i128::from(b.payment_total)), m.payments);
        prop_assert_eq!((b.refund_count, i128::from(b.refund_total)), m.refunds);
        prop_assert_eq!((b.adjustment_count, i128::from(b.adjustment_total)), m.adjustments);
        prop_assert_eq!(i128::from(b.net), m.net());
        prop_assert_eq!(!b.is_open(), m.closed);
    }
    prop_assert!(ledger.batch(model.batches.len() as u64 + 1).is_none());
    for client in 1..=2u64 {
        for code in ["USD", "JPY"] {
            let currency = Currency::from_code(code).unwrap();
            let key = (client, currency.c_bytes());
            let (c, r, a) = model.balance_totals(key);
            let any = model.batches.iter().any(|b| (b.client, b.currency) == key);
            match ledger.balance(client, currency) {
                None => prop_assert!(!any, "balance missing for {client} {code}"),
                Some(bal) => {
                    prop_assert_eq!(
                        (i128::from(bal.captured), i128::from(bal.refunded), i128::from(bal.adjusted)),
                        (c, r, a)
                    );
                    prop_assert_eq!(i128::from(bal.net), c - r + a);
                    let settled: i128 = model
                        .batches
                        .iter()
                        .filter(|b| (b.client, b.currency) == key && b.closed)
                        .map(MBatch::net)
                        .sum();
                    let open: i128 = model.open.get(&key).map_or(0, |&i| model.batches[i].net());
                    prop_assert_eq!((i128::from(bal.settled_net), i128::from(bal.open_net)), (settled, open));
                }
            }
        }
        // Listing returns the client's records in seq order, timestamps strictly increasing.
        let list = ledger.list(client, 0, usize::MAX);
        let expect: Vec<u64> = {
            let mut v: Vec<u64> = model.txs.values().filter(|m| m.tx.client_id == client).map(|m| m.seq).collect();
            v.sort_unstable();
            v
        };
        prop_assert_eq!(list.iter().map(|r| r.seq).collect::<Vec<_>>(), expect);
        prop_assert!(list.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns));
    }
    prop_assert_eq!(ledger.last_seq(), model.last_seq);
    Ok(())
}

fn run_case(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path(), options()).unwrap();
    let mut model = Model::default();
    let mut history: Vec<Tx> = Vec::new();
    for step in steps {
        let step = match step {
            Step::Resubmit(_) if history.is_empty() => continue,
            Step::Resubmit(index) => Step::Submit(vec![*index.get(&history)]),
            other => other,
        };
        match step {
            Step::Resubmit(_) => unreachable!("turned into a submit above"),
            Step::Submit(txs) => {
                history.extend(&txs);
                let outcomes = ledger.submit(&txs).unwrap();
                prop_assert_eq!(outcomes.len(), txs.len());
                for (tx, outcome) in txs.iter().zip(&outcomes) {
                    let (code, record) = model.submit(*tx);
                    CODES.lock().unwrap()[code as usize] += 1;
                    prop_assert_eq!(outcome.code(), code, "outcome of {:?}", tx);
                    if let (Some(m), TxOutcome::Committed(r) | TxOutcome::Exists(r)) = (record, outcome) {
                        prop_assert_eq!(
                            (r.seq, r.batch_id, r.state as u32, r.captured, r.refunded),
                            (m.seq, m.batch, m.state, m.captured, m.refunded)
                        );
                    }
                }
            }
            Step::Close(client, currency) => {
                let expect = model.close(client, currency);
                match Currency::from_c_bytes(currency) {
                    None => prop_assert_eq!(expect, None),
                    Some(cur) => match ledger.close_batch(client, cur) {
                        Ok(b) => prop_assert_eq!(Some(b.batch_id), expect),
                        Err(e) => prop_assert!(expect.is_none(), "close failed: {}", e),
                    },
                }
            }
            Step::Reopen => {
                ledger.close().unwrap();
                drop(ledger);
                ledger = Ledger::open(dir.path(), options()).unwrap();
            }
        }
        compare_all(&ledger, &model)?;
    }
    // A final reopen replays everything to the same state.
    ledger.close().unwrap();
    drop(ledger);
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    compare_all(&ledger, &model)
}

#[test]
fn engine_agrees_with_the_reference_model() {
    let seed: u64 = std::env::var("LEDGER_MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let cases = std::env::var("LEDGER_MODEL_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    println!("model test: seed {seed}, {cases} cases (replay with LEDGER_MODEL_SEED={seed})");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let result = runner.run(&prop::collection::vec(step(), 1..25), run_case);
    let codes = *CODES.lock().unwrap();
    println!("outcome codes 0..=9 over the run: {codes:?}");
    assert!(codes.iter().all(|&n| n > 0), "every outcome code occurs: {codes:?}");
    if let Err(e) = result {
        panic!("{e}\nreproduce with LEDGER_MODEL_SEED={seed}");
    }
}
