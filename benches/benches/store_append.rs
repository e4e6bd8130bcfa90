//! Append throughput of `ledger-store`: frames of 64 and 128 payload bytes, committed
//! in groups of 8190, with `Durability::None` (copy into the mapping, publish) and
//! `Durability::SyncData` (plus one write and one fdatasync per group).
//!
//! Throughput is reported in payload bytes per second; frame bytes per record are the
//! payload plus a 32-byte header, padded to 16. Segment roll-over (which zero-fills a
//! new file) is kept out of the timed region by sizing segments to hold a whole
//! measurement; rolling over is a separate cost, measured on its own below.
//!
//! `cargo bench -p ledger-benches --bench store_append`

#![allow(clippy::cast_possible_truncation)] // bench arithmetic on small, known values

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ledger_store::{Durability, Log, LogOptions};

const GROUP_FRAMES: usize = 8190;
const SEGMENT_BYTES: usize = 1 << 30;

struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
}

fn fresh(durability: Durability) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let log =
        Log::open(dir.path(), LogOptions::new().segment_bytes(SEGMENT_BYTES).durability(durability)).expect("open log");
    Fixture { _dir: dir, log }
}

fn append_groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_group_8190");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    for durability in [Durability::None, Durability::SyncData] {
        for record_bytes in [64usize, 128] {
            let payload = vec![0xA5u8; record_bytes];
            let frame_bytes = ledger_store::format::frame_bytes(record_bytes);
            let group_bytes = frame_bytes * GROUP_FRAMES;
            group.throughput(Throughput::Bytes((record_bytes * GROUP_FRAMES) as u64));
            let id = BenchmarkId::new(format!("{durability:?}"), format!("{record_bytes}B"));
            let mut fixture = fresh(durability);
            let mut used = 0usize;
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        if used + group_bytes + 4096 > SEGMENT_BYTES {
                            fixture = fresh(durability); // untimed: a new zero-filled segment
                            used = 0;
                        }
                        let start = Instant::now();
                        for _ in 0..GROUP_FRAMES {
                            fixture.log.append(1, &payload).expect("append");
                        }
                        fixture.log.commit().expect("commit");
                        timed += start.elapsed();
                        used += group_bytes;
                    }
                    timed
                })
            });
        }
    }
    group.finish();
}

fn roll_over(c: &mut Criterion) {
    // The cost of starting a 64 MiB segment (zero-fill, sync, rename, directory sync).
    let mut group = c.benchmark_group("segment_create");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(64 << 20));
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("temp dir");
                let start = Instant::now();
                let log = Log::open(dir.path(), LogOptions::new()).expect("open");
                timed += start.elapsed();
                drop(log);
            }
            timed
        })
    });
    group.finish();
}

criterion_group!(benches, append_groups, roll_over);
criterion_main!(benches);
