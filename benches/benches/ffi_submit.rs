//! The C ABI's batch submit against the Rust API on the same workload: calls of 8190
//! transactions (nine sales and one refund in ten), durable and not. The C side calls
//! the exported `ledger_submit` exactly as a C program would (through the same symbols
//! the shared library exports), so the difference is the boundary's own cost.
//!
//! `cargo bench -p ledger-benches --bench ffi_submit`

#![allow(clippy::cast_possible_truncation)] // bench arithmetic on small, known values

use std::ffi::CString;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ledger::{LEDGER_KIND_PAYMENT, LEDGER_KIND_REFUND, LEDGER_OK, ledger_id, ledger_options, ledger_tx};
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId};

const CALL_TXS: usize = 8190;

fn workload(first: u128) -> Vec<Tx> {
    let usd = Currency::from_code("USD").expect("USD");
    (0..CALL_TXS as u128)
        .map(|i| {
            let id = first + i;
            let client = 1 + ((id - u128::from(id.is_multiple_of(10))) % 64) as u64;
            if id.is_multiple_of(10) {
                Tx::refund(TxId(id), TxId(id - 1), client, 1, usd)
            } else {
                Tx::sale(TxId(id), client, 1000, usd)
            }
        })
        .collect()
}

fn to_c(tx: &Tx) -> ledger_tx {
    ledger_tx {
        id: ledger_id { lo: tx.id.lo(), hi: tx.id.hi() },
        r#ref: ledger_id { lo: tx.ref_id.lo(), hi: tx.ref_id.hi() },
        client_id: tx.client_id,
        device_id: tx.device_id,
        amount: tx.amount,
        kind: if tx.kind == 4 { LEDGER_KIND_REFUND } else { LEDGER_KIND_PAYMENT },
        flags: tx.flags,
        currency: tx.currency.map(|b| std::ffi::c_char::from_le_bytes([b])),
        reserved: 0,
        user_data: tx.user_data,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("submit_8190");
    group.sample_size(10).measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(CALL_TXS as u64));
    for (name, durability, sync) in [("SyncData", Durability::SyncData, 0u32), ("None", Durability::None, 1)] {
        // The Rust API.
        let dir = tempfile::tempdir().expect("temp dir");
        // The defaults, as ledger_open uses them (snapshots included), so both sides do the same work.
        let options = LedgerOptions { durability, ..LedgerOptions::default() };
        let engine = Ledger::open(dir.path(), options).expect("open");
        let mut next = 1u128;
        group.bench_function(BenchmarkId::new("rust", name), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let txs = workload(next);
                    next += CALL_TXS as u128;
                    let start = Instant::now();
                    let out = engine.submit(&txs).expect("submit");
                    timed += start.elapsed();
                    assert!(out.iter().all(|o| o.code() == 0));
                }
                timed
            })
        });
        drop(engine);

        // The C ABI.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = CString::new(dir.path().to_str().expect("utf-8 temp path")).expect("no NUL");
        let opts = ledger_options { sync, ..ledger_options::default() };
        let mut handle = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated path, options and out pointer.
        assert_eq!(unsafe { ledger::ledger_open(path.as_ptr(), &opts, &mut handle) }, LEDGER_OK);
        let mut next = 1u128;
        let mut results = vec![0u32; CALL_TXS];
        group.bench_function(BenchmarkId::new("c_abi", name), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let txs: Vec<ledger_tx> = workload(next).iter().map(to_c).collect();
                    next += CALL_TXS as u128;
                    let start = Instant::now();
                    // SAFETY: `txs` and `results` hold CALL_TXS elements; the handle is open.
                    let status =
                        unsafe { ledger::ledger_submit(handle, txs.as_ptr(), txs.len(), results.as_mut_ptr()) };
                    timed += start.elapsed();
                    assert_eq!(status, LEDGER_OK);
                    assert!(results.iter().all(|&r| r == 0));
                }
                timed
            })
        });
        // SAFETY: the handle is open and used by no one else.
        unsafe { ledger::ledger_close(handle) };
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
