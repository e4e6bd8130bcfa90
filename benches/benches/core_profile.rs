//! Engine profile, printed as numbers: submit-to-durable latency (p50/p99/p99.9/max)
//! with 8 producer threads at a fixed offered load, heap bytes per indexed
//! transaction, and replay rate on reopen (with and without a snapshot).
//!
//! `cargo bench -p ledger-benches --bench core_profile`
//! Environment: `OFFERED_TX_PER_S` (default 100000), `LATENCY_SECS` (5),
//! `MEMORY_TXS` (1000000), `REPLAY_TXS` (2000000).

#![allow(clippy::cast_possible_truncation)] // bench arithmetic on small, known values

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId};

/// Counts live heap bytes, to measure what indexing a transaction costs.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the caller's own
// arguments and only adds bookkeeping on an atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

fn open(dir: &std::path::Path, durability: Durability) -> Ledger {
    Ledger::open(dir, LedgerOptions { durability, snapshot_every_records: 0, ..LedgerOptions::default() })
        .expect("open")
}

/// Open-loop load: each producer sends single-transaction submissions on a fixed
/// schedule without waiting for earlier ones (as a server with many connections
/// would), and a collector per producer waits for them in order. Latency runs from
/// the scheduled send time to the completion, so a stall is never hidden by a producer
/// falling behind (no coordinated omission).
fn latency() {
    let producers = env("LATENCY_PRODUCERS", 8);
    let offered = env("OFFERED_TX_PER_S", 100_000);
    let secs = env("LATENCY_SECS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let hint = env("LATENCY_HINT_TXS", 0) as usize;
    let segment_bytes = env("LATENCY_SEGMENT_MIB", 64) as usize * 1024 * 1024;
    let options =
        LedgerOptions { transactions_hint: hint, snapshot_every_records: 0, segment_bytes, ..LedgerOptions::default() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let interval = Duration::from_nanos(1_000_000_000 * producers / offered);
    let per_producer = offered * secs / producers;
    let start = Instant::now() + Duration::from_millis(50);
    let workers: Vec<_> = (0..producers)
        .map(|p| {
            let ledger = ledger.clone();
            let (sent, inflight) = std::sync::mpsc::channel::<(Instant, ledger_core::SubmitFuture)>();
            let collector = std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram");
                for (due, future) in inflight {
                    let out = future.wait().expect("submit");
                    assert_eq!(out[0].code(), 0);
                    hist.saturating_record(due.elapsed().as_nanos() as u64);
                }
                hist
            });
            std::thread::spawn(move || {
                for i in 0..per_producer {
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let id = TxId(u128::from(p) << 64 | u128::from(i + 1));
                    sent.send((due, ledger.submit_async(vec![Tx::sale(id, 1 + p, 1000, usd())]))).expect("collector");
                }
                drop(sent);
                collector.join().expect("collector")
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram");
    for w in workers {
        hist.add(w.join().expect("producer")).expect("merge");
    }
    let achieved = hist.len() as f64 / (start.elapsed().as_secs_f64());
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency, {producers} producers, offered {offered} tx/s (completed {achieved:.0}/s), SyncData, submit to durable: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
}

fn fill(ledger: &Ledger, txs: u64, first_id: u128) {
    let mut id = first_id;
    let mut left = txs;
    while left > 0 {
        let n = left.min(8190);
        let batch: Vec<Tx> = (0..n)
            .map(|i| {
                let this = id + u128::from(i);
                if this.is_multiple_of(10) {
                    Tx::refund(TxId(this), TxId(this - 1), 1 + ((this - 1) % 64) as u64, 1, usd())
                } else {
                    Tx::sale(TxId(this), 1 + (this % 64) as u64, 1000, usd())
                }
            })
            .collect();
        ledger.submit(&batch).expect("submit");
        id += u128::from(n);
        left -= n;
    }
}

fn memory() {
    let txs = env("MEMORY_TXS", 1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = open(dir.path(), Durability::None);
    fill(&ledger, 10_000, 1); // warm up: maps and vectors exist
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    fill(&ledger, txs, 1_000_000_000);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    println!(
        "memory: {:.1} heap bytes per indexed transaction ({} transactions, {:.1} MiB)",
        (after - before) as f64 / txs as f64,
        txs,
        (after - before) as f64 / (1 << 20) as f64
    );
}

fn replay() {
    let txs = env("REPLAY_TXS", 2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let ledger = open(dir.path(), Durability::None);
        fill(&ledger, txs, 1);
        ledger.close().expect("close");
    }
    let start = Instant::now();
    let log = ledger_store::Log::open(dir.path(), ledger_store::LogOptions::new()).expect("open log");
    let frames = log.recovery().frames;
    drop(log);
    let verify = start.elapsed().as_secs_f64();
    println!(
        "log recovery alone: {frames} frames verified (BLAKE3) in {verify:.2} s: {:.2} M frames/s",
        frames as f64 / verify / 1e6
    );
    let start = Instant::now();
    let ledger = open(dir.path(), Durability::None);
    let secs = start.elapsed().as_secs_f64();
    let replayed = ledger.open_report().transactions;
    println!(
        "replay: {replayed} records verified and replayed in {secs:.2} s: {:.2} M records/s",
        replayed as f64 / secs / 1e6
    );
    ledger.snapshot().expect("snapshot");
    ledger.close().expect("close");
    drop(ledger);
    let start = Instant::now();
    let ledger = open(dir.path(), Durability::None);
    println!(
        "reopen from a snapshot of {} transactions: {:.2} s",
        ledger.transaction_count(),
        start.elapsed().as_secs_f64()
    );
}

/// In-memory apply rate: 8190-transaction calls with `Durability::None`.
fn apply() {
    let txs = env("APPLY_TXS", 2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = open(dir.path(), Durability::None);
    let start = Instant::now();
    fill(&ledger, txs, 1);
    let secs = start.elapsed().as_secs_f64();
    println!("apply, no sync, calls of 8190: {txs} transactions in {secs:.2} s: {:.2} M tx/s", txs as f64 / secs / 1e6);
}

/// The log's own commit latency: groups of 100 frames of 96 bytes committed back to
/// back with `SyncData` for `LATENCY_SECS`; what every durable submit waits for.
fn sync() {
    let secs = env("LATENCY_SECS", 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut log = ledger_store::Log::open(dir.path(), ledger_store::LogOptions::new()).expect("open log");
    let mut hist = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).expect("histogram");
    let end = Instant::now() + Duration::from_secs(secs);
    let payload = [7u8; 96];
    while Instant::now() < end {
        for _ in 0..100 {
            log.append(1, &payload).expect("append");
        }
        let start = Instant::now();
        log.commit().expect("commit");
        hist.saturating_record(start.elapsed().as_nanos() as u64);
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "log commit (write + fdatasync of ~10 KiB): {} commits, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us",
        hist.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
}

/// What a periodic snapshot costs the submitters: 8190-transaction calls with a
/// snapshot every 2^20 records, timing the slowest call.
fn snapshot_stall() {
    let txs = env("STALL_TXS", 3_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let options =
        LedgerOptions { durability: Durability::None, snapshot_every_records: 1 << 20, ..LedgerOptions::default() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let usd = usd();
    let (mut slowest, mut total) = (Duration::ZERO, Duration::ZERO);
    let mut id = 1u128;
    while id < u128::from(txs) {
        let batch: Vec<Tx> = (0..8190).map(|i| Tx::sale(TxId(id + i), 1 + ((id + i) % 64) as u64, 1000, usd)).collect();
        let start = Instant::now();
        ledger.submit(&batch).expect("submit");
        let took = start.elapsed();
        slowest = slowest.max(took);
        total += took;
        id += 8190;
    }
    ledger.close().expect("close");
    let snapshots = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snap")))
        .count();
    println!(
        "snapshot stall: {txs} transactions with a snapshot every 2^20 records ({snapshots} kept): slowest call {:.1} ms, mean {:.2} ms",
        slowest.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3 / (txs as f64 / 8190.0)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything naming a single part runs only that part.
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if run("stall") {
        snapshot_stall();
    }
    if run("sync") {
        sync();
    }
    if run("apply") {
        apply();
    }
    if run("memory") {
        memory();
    }
    if run("replay") {
        replay();
    }
    if run("latency") {
        latency();
    }
}
