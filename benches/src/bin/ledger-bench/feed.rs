//! `ledger-bench feed`: the change feed (issue 17). Three runs of the same seeded
//! workload through the Rust API, durable, calls of 8190 from one writer thread:
//!
//! 1. the writer alone;
//! 2. the writer with `--readers` feeds following it (blocking waits, reads of 8192):
//!    each reader's rate (records/s) and the largest lag it saw (records committed
//!    and applied but not yet read), and what following cost the writer;
//! 3. a catch-up with no writer: a fresh feed reads run 2's whole history from seq 1,
//!    from the cold tier's runs below the log's start (retention removed it after
//!    checkpoints), then from the log; each part's rate is reported.
//!
//! Runs 1 and 2 alternate `--pairs` times on fresh directories (the machine's speed
//! moves between minutes; compare within a pair). Prints a table, or JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use ledger_core::{FeedRecord, Ledger, LedgerOptions, TxOutcome};
use serde_json::{Value, json};

use crate::workload::{Workload, calls};

/// Arguments of `ledger-bench feed`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FeedArgs {
    /// Transactions per run.
    #[arg(long, default_value_t = 2_000_000)]
    transactions: u64,
    /// Transactions per submit call.
    #[arg(long, default_value_t = 8190)]
    batch: u64,
    /// Clients of the workload.
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Seed of the workload (decimal or 0x hex).
    #[arg(long, default_value_t = crate::SEED_DEFAULT, value_parser = crate::parse_seed)]
    seed: u64,
    /// Feeds following the writer in the second run.
    #[arg(long, default_value_t = 1)]
    readers: u32,
    /// Alternating pairs of runs (writer alone, writer followed).
    #[arg(long, default_value_t = 1)]
    pairs: u32,
    /// Where the temporary directories are made (default: the system's temp dir). Use
    /// a real disk.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

struct Reader {
    records: u64,
    seconds: f64,
    max_lag: u64,
}

struct Run {
    committed: u64,
    write_seconds: f64,
    readers: Vec<Reader>,
}

fn follow(ledger: &Ledger, done: &AtomicBool) -> Result<Reader, String> {
    let mut feed = ledger.feed(1).map_err(|e| format!("feed: {e}"))?;
    let mut out = Vec::with_capacity(8192);
    let (mut records, mut max_lag, mut reads) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut last = started;
    loop {
        if !feed.wait(Duration::from_millis(50)).map_err(|e| format!("feed wait: {e}"))? {
            if done.load(Ordering::Acquire) && feed.next_seq() > ledger.last_seq() {
                break;
            }
            continue;
        }
        out.clear();
        let n = feed.read(&mut out, 8192).map_err(|e| format!("feed read: {e}"))?;
        if let Some(FeedRecord::Transaction(r)) = out.last() {
            std::hint::black_box(r.tx.amount);
        }
        records += n as u64;
        last = Instant::now();
        reads += 1;
        if reads.is_multiple_of(16) {
            max_lag = max_lag.max(ledger.last_seq().saturating_sub(feed.next_seq() - 1));
        }
    }
    Ok(Reader { records, seconds: (last - started).as_secs_f64(), max_lag })
}

fn write_run(args: &FeedArgs, readers: u32) -> Result<(Run, Option<(tempfile::TempDir, Ledger)>), String> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new().prefix("ledger-bench-feed-").tempdir_in(&base).map_err(|e| e.to_string())?;
    let options = LedgerOptions { transactions_hint: 1 << 20, ..LedgerOptions::default() };
    let ledger = Ledger::open(dir.path(), options).map_err(|e| format!("open: {e}"))?;
    let workload = Workload::new(args.seed, args.clients)?;
    let done = Arc::new(AtomicBool::new(false));
    let followers: Vec<_> = (0..readers)
        .map(|_| {
            let (ledger, done) = (ledger.clone(), Arc::clone(&done));
            std::thread::spawn(move || follow(&ledger, &done))
        })
        .collect();
    let started = Instant::now();
    let mut committed = 0u64;
    for call in calls(args.transactions, args.batch, 0) {
        let txs: Vec<_> = (call.start..call.start + call.len).map(|i| workload.tx(i)).collect();
        let outcomes = ledger.submit(&txs).map_err(|e| format!("submit: {e}"))?;
        committed += outcomes.iter().filter(|o| matches!(o, TxOutcome::Committed(_))).count() as u64;
    }
    let write_seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let readers = followers
        .into_iter()
        .map(|t| t.join().map_err(|_| "a reader panicked".to_string())?)
        .collect::<Result<Vec<_>, _>>()?;
    for r in &readers {
        if r.records != committed {
            return Err(format!("a reader saw {} records of {committed}", r.records));
        }
    }
    let keep = (!readers.is_empty()).then_some((dir, ledger));
    Ok((Run { committed, write_seconds, readers }, keep))
}

/// Records per second of a catch-up read from seq 1: (from the runs, from the log).
fn catch_up(ledger: &Ledger, committed: u64) -> Result<(Option<f64>, f64), String> {
    let log_first = ledger.log_first_seq();
    let mut feed = ledger.feed(1).map_err(|e| format!("feed: {e}"))?;
    let mut out = Vec::with_capacity(8192);
    let mut read_until = |feed: &mut ledger_core::Feed, end: u64| -> Result<(u64, f64), String> {
        let started = Instant::now();
        let mut records = 0u64;
        while feed.next_seq() < end {
            out.clear();
            let max = usize::try_from(end - feed.next_seq()).unwrap_or(usize::MAX).min(8192);
            let n = feed.read(&mut out, max).map_err(|e| format!("feed read: {e}"))?;
            if n == 0 {
                break;
            }
            records += n as u64;
        }
        Ok((records, started.elapsed().as_secs_f64()))
    };
    let (cold, cold_seconds) = read_until(&mut feed, log_first)?;
    let (log, log_seconds) = read_until(&mut feed, u64::MAX)?;
    // Batch closes are records too; this workload commits none.
    if cold + log != committed {
        return Err(format!("the catch-up read {} records of {committed}", cold + log));
    }
    Ok(((cold > 0).then(|| cold as f64 / cold_seconds), log as f64 / log_seconds))
}

/// Runs the measurement; `Ok(true)` when every reader saw every record.
pub(crate) fn main(args: &FeedArgs) -> Result<bool, String> {
    let mut pairs = Vec::new();
    for pair in 0..args.pairs.max(1) {
        let (alone, _) = write_run(args, 0)?;
        let (followed, kept) = write_run(args, args.readers)?;
        let (cold, log) = match &kept {
            Some((_, ledger)) => catch_up(ledger, followed.committed)?,
            None => (None, 0.0),
        };
        if let Some((dir, ledger)) = kept {
            ledger.close().map_err(|e| format!("close: {e}"))?;
            drop(dir);
        }
        let rate = |r: &Run| r.committed as f64 / r.write_seconds;
        let readers: Vec<Value> = followed
            .readers
            .iter()
            .map(|r| json!({"records_per_s": (r.records as f64 / r.seconds).round(), "max_lag_records": r.max_lag}))
            .collect();
        let row = json!({
            "pair": pair + 1,
            "transactions": alone.committed,
            "write_alone_tx_per_s": rate(&alone).round(),
            "write_followed_tx_per_s": rate(&followed).round(),
            "readers": readers,
            "catch_up_cold_records_per_s": cold.map(f64::round),
            "catch_up_log_records_per_s": log.round(),
        });
        if !args.json {
            eprintln!("{row}");
        }
        pairs.push(row);
    }
    let report = json!({"benchmark": "feed", "readers": args.readers, "batch": args.batch, "pairs": pairs});
    if args.json {
        println!("{report}");
    } else {
        println!(
            "pair  writer alone tx/s  writer followed tx/s  reader records/s (max lag)  catch-up records/s: runs, log"
        );
        for p in &pairs {
            let readers: Vec<String> = p["readers"]
                .as_array()
                .map(|rs| rs.iter().map(|r| format!("{} ({})", r["records_per_s"], r["max_lag_records"])).collect())
                .unwrap_or_default();
            println!(
                "{:>4}  {:>17}  {:>20}  {:>26}  {}, {}",
                p["pair"],
                p["write_alone_tx_per_s"],
                p["write_followed_tx_per_s"],
                readers.join(", "),
                p["catch_up_cold_records_per_s"],
                p["catch_up_log_records_per_s"]
            );
        }
    }
    Ok(true)
}
