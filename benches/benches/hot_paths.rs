//! The hot paths one at a time, so a regression in any of them shows on its own:
//! frame encode (header + keyed BLAKE3) and verify, append into the mapping (no
//! sync), one data sync of a small group, the idempotency lookup of a committed id
//! (hit and miss, in a ledger of 1 M transactions), and apply (in-memory submit of
//! 8190 sales, where judging, encoding and indexing dominate).
//!
//! `cargo bench -p ledger-benches --bench hot_paths`

#![allow(clippy::cast_possible_truncation)] // bench arithmetic on small, known values

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId};
use ledger_store::format::{FRAME_HEADER_BYTES, FrameHeader, frame_bytes};
use ledger_store::{Log, LogOptions};

fn frame_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    for len in [64usize, 128] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8 | 1).collect();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("encode/{len}B"), |b| {
            let mut seq = 1u64;
            let mut head = [0u8; FRAME_HEADER_BYTES];
            b.iter(|| {
                seq += 1;
                let h = FrameHeader { seq, synced_seq: seq - 1, payload_len: len as u32, kind: 1, flags: 0 };
                h.encode(black_box(&payload), &mut head);
                black_box(&head);
            });
        });
        let mut frame = vec![0u8; frame_bytes(len)];
        let h = FrameHeader { seq: 9, synced_seq: 8, payload_len: len as u32, kind: 1, flags: 0 };
        let mut head = [0u8; FRAME_HEADER_BYTES];
        h.encode(&payload, &mut head);
        frame[..FRAME_HEADER_BYTES].copy_from_slice(&head);
        frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len].copy_from_slice(&payload);
        group.bench_function(format!("verify/{len}B"), |b| {
            b.iter(|| black_box(FrameHeader::decode(black_box(&frame)).is_ok()));
        });
    }
    group.finish();
}

fn append_and_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("log");
    let payload = [7u8; 64];
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = Log::open(dir.path(), LogOptions::new().durability(Durability::None)).expect("open");
        group.throughput(Throughput::Elements(1));
        group.bench_function("append/64B", |b| {
            let mut n = 0u32;
            b.iter(|| {
                log.append(1, black_box(&payload)).expect("append");
                n += 1;
                if n == 8190 {
                    log.commit().expect("commit");
                    n = 0;
                }
            });
        });
    }
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut log = Log::open(dir.path(), LogOptions::new().durability(Durability::SyncData)).expect("open");
        group.sample_size(30).measurement_time(Duration::from_secs(5));
        group.bench_function("commit-sync/64x64B", |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    for _ in 0..64 {
                        log.append(1, &payload).expect("append");
                    }
                    let start = Instant::now();
                    log.commit().expect("commit");
                    timed += start.elapsed();
                }
                timed
            });
        });
    }
    group.finish();
}

fn engine(c: &mut Criterion) {
    let usd = Currency::from_code("USD").expect("USD");
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions {
        durability: Durability::None,
        snapshot_every_records: 0,
        transactions_hint: 2_000_000,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    const PRELOAD: u128 = 1_000_000;
    let mut next = 1u128;
    while next <= PRELOAD {
        let txs: Vec<Tx> = (next..next + 8190).map(|id| Tx::sale(TxId(id), 1 + (id % 64) as u64, 1000, usd)).collect();
        ledger.submit(&txs).expect("preload");
        next += 8190;
    }
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1));
    let mut probe = 0u128;
    group.bench_function("lookup/hit", |b| {
        b.iter(|| {
            probe = (probe * 6_364_136_223_846_793_005 + 1) % PRELOAD;
            black_box(ledger.lookup(TxId(probe + 1)))
        });
    });
    group.bench_function("lookup/miss", |b| {
        b.iter(|| {
            probe = (probe * 6_364_136_223_846_793_005 + 1) % PRELOAD;
            black_box(ledger.lookup(TxId(probe + (1 << 100))))
        });
    });
    group.throughput(Throughput::Elements(8190));
    group.sample_size(20).measurement_time(Duration::from_secs(6));
    group.bench_function("apply/8190-sales-in-memory", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let txs: Vec<Tx> =
                    (next..next + 8190).map(|id| Tx::sale(TxId(id), 1 + (id % 64) as u64, 1000, usd)).collect();
                next += 8190;
                let start = Instant::now();
                ledger.submit(&txs).expect("submit");
                timed += start.elapsed();
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, frame_codec, append_and_sync, engine);
criterion_main!(benches);
