//! Submit throughput of the engine: durable (one data sync per group) at call sizes
//! of 1, 64 and 8190 transactions, and in memory (no sync) at 8190.
//!
//! `cargo bench -p ledger-benches --bench core_submit`

#![allow(clippy::cast_possible_truncation)] // bench arithmetic on small, known values

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId};

fn ledger(durability: Durability) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { durability, snapshot_every_records: 0, ..LedgerOptions::default() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    (dir, ledger)
}

fn submit(c: &mut Criterion) {
    let usd = Currency::from_code("USD").expect("USD");
    let mut group = c.benchmark_group("submit");
    group.sample_size(10).measurement_time(Duration::from_secs(6));
    for (durability, size) in [
        (Durability::SyncData, 1usize),
        (Durability::SyncData, 64),
        (Durability::SyncData, 8190),
        (Durability::None, 8190),
    ] {
        group.throughput(Throughput::Elements(size as u64));
        let (_dir, ledger) = ledger(durability);
        let mut next_id = 1u128;
        group.bench_function(BenchmarkId::new(format!("{durability:?}"), size), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Nine sales and one refund of an earlier sale in every ten.
                    let txs: Vec<Tx> = (0..size)
                        .map(|i| {
                            let id = next_id + i as u128;
                            if id.is_multiple_of(10) {
                                Tx::refund(TxId(id), TxId(id - 1), 1 + ((id - 1) % 64) as u64, 1, usd)
                            } else {
                                Tx::sale(TxId(id), 1 + (id % 64) as u64, 1000, usd)
                            }
                        })
                        .collect();
                    next_id += size as u128;
                    let start = Instant::now();
                    let out = ledger.submit(&txs).expect("submit");
                    timed += start.elapsed();
                    assert_eq!(out.len(), size);
                }
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, submit);
criterion_main!(benches);
