//! Shared by the `ledger` command's tests: ledgers built through the real engine with
//! small segments and frequent checkpoints (so segments, checkpoint files and cold runs
//! all exist), and the real binary run on them.
#![allow(dead_code, unreachable_pub)] // each test file uses a part of this
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests

use std::path::{Path, PathBuf};
use std::process::Command;

use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Tx, TxId, TxOutcome, TxRecord};

pub fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

pub fn eur() -> Currency {
    Currency::from_code("EUR").expect("EUR")
}

/// Opens a ledger this process closed a moment ago. The directory's lock is an
/// `flock` on an open file, and a child process forked by another test of this binary
/// (each runs the `ledger` command) holds a copy of every open file until it calls
/// `exec`: a reopen in that window finds the lock still taken (seen once in about 25
/// runs of `inspect_dump`; never with `--test-threads 1`). That copy goes within
/// milliseconds, so a `Locked` open is tried again for up to 5 s.
pub fn reopen(dir: &Path, options: LedgerOptions) -> Ledger {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Ledger::open(dir, options) {
            Err(ledger_core::OpenError::Store(ledger_store::OpenError::Locked { .. }))
                if std::time::Instant::now() < until =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other.expect("reopen"),
        }
    }
}

/// 64 KiB segments (about 500 transactions each) and a checkpoint every 100 records.
pub fn small(durability: Durability) -> LedgerOptions {
    // The whole log is kept: the tests compare dumps and restores with every record
    // committed since the first (by default the oldest segments go once a kept
    // checkpoint covers them).
    LedgerOptions {
        durability,
        segment_bytes: 64 << 10,
        snapshot_every_records: 100,
        keep_whole_log: true,
        ..LedgerOptions::default()
    }
}

/// What was committed to a test ledger, as the engine answered.
#[derive(Debug, Default)]
pub struct Committed {
    /// Every committed transaction's record as the submit returned it.
    pub records: Vec<TxRecord>,
    /// Ids of the batches closed.
    pub closes: Vec<u64>,
}

/// Writes `n` sales over three clients (two currencies), a few authorizations,
/// captures, voids, refunds, adjustments and batch closes, in groups of 10.
pub fn fill(ledger: &Ledger, n: u64) -> Committed {
    fill_from(ledger, 0, n)
}

/// As [`fill`], with ids (and the counter the mix follows) from `first + 1`.
pub fn fill_from(ledger: &Ledger, first: u64, n: u64) -> Committed {
    let mut out = Committed::default();
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Tx>, out: &mut Committed| {
        for o in ledger.submit(batch).expect("submit") {
            match o {
                TxOutcome::Committed(r) => out.records.push(r),
                other => panic!("expected a commit, got {other:?}"),
            }
        }
        batch.clear();
    };
    for i in first + 1..=first + n {
        let client = 1 + i % 3;
        let currency = if client == 3 { eur() } else { usd() };
        let id = TxId::from_parts(i, 7);
        let tx = match i % 50 {
            10 => Tx::authorization(id, client, 5_000, currency),
            20 => Tx::adjustment(id, client, -250, currency).with_user_data(i),
            _ => Tx::sale(id, client, 1_000 + i as i64, currency).with_device(i % 5),
        };
        batch.push(tx);
        if i % 50 == 30 {
            // Follow-ups of earlier payments (by then maybe in the cold tier).
            flush(&mut batch, &mut out);
            let auth = TxId::from_parts(i - 20, 7);
            let auth_client = 1 + (i - 20) % 3;
            let auth_cur = if auth_client == 3 { eur() } else { usd() };
            let follow = if i % 100 == 30 {
                Tx::capture(TxId::from_parts(i, 8), auth, auth_client, 4_000, auth_cur)
            } else {
                Tx::void(TxId::from_parts(i, 8), auth, auth_client, auth_cur)
            };
            let sale = TxId::from_parts(i - 1, 7);
            let sale_client = 1 + (i - 1) % 3;
            let sale_cur = if sale_client == 3 { eur() } else { usd() };
            batch.push(follow);
            batch.push(Tx::refund(TxId::from_parts(i, 9), sale, sale_client, 100, sale_cur));
        }
        if batch.len() >= 10 {
            flush(&mut batch, &mut out);
        }
        if i % 400 == 0 {
            flush(&mut batch, &mut out);
            let summary = ledger.close_batch(1, usd()).expect("close");
            out.closes.push(summary.batch_id);
        }
    }
    flush(&mut batch, &mut out);
    out
}

/// A closed ledger in a new temporary directory, with `n` sales and their follow-ups.
pub fn build(n: u64, durability: Durability) -> (tempfile::TempDir, Committed) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), small(durability)).expect("open");
    let committed = fill(&ledger, n);
    ledger.close().expect("close");
    (dir, committed)
}

/// As [`build`], with a checkpoint asked for before closing, so the newest one covers
/// the last seq whatever the checkpoint thread's timing (automatic ones may lag).
pub fn build_checkpointed(n: u64, durability: Durability) -> (tempfile::TempDir, Committed) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), small(durability)).expect("open");
    let committed = fill(&ledger, n);
    ledger.snapshot().expect("checkpoint");
    ledger.close().expect("close");
    (dir, committed)
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `ledger` binary with `args`.
pub fn ledger(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger")).args(args).output().expect("run ledger");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Files of `dir` whose names start with `prefix` and end with `suffix`, sorted.
pub fn files(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    out.sort();
    out
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0xFF;
    std::fs::write(path, bytes).expect("write");
}
