//! `ledger-bench`: the comparative benchmark.
//!
//! Generates a seeded workload (many clients, four currencies, about 85% sales, 10%
//! refunds of earlier sales, 5% resubmitted ids, batch cut-overs) and runs it, in one
//! invocation, against
//!
//! 1. the engine, durable: `Durability::SyncData`, one sync per group commit;
//! 2. the engine without sync: `Durability::None`;
//! 3. SQLite through rusqlite doing the same work (WAL, `synchronous=FULL`, prepared
//!    statements, one SQL transaction per call; see `sqlite.rs`).
//!
//! Each run is a child process (this binary again, with the hidden `--run-one`), so
//! its peak RSS is its own. Every run must produce the same outcome for every
//! transaction (same counts by outcome and rejection reason, same digest of the
//! outcome sequence, same balance totals and batch counts), or the benchmark fails.
//!
//! ```text
//! cargo run --release -p ledger-benches --bin ledger-bench -- [--transactions N] [--dir DIR] [--json]
//! ```
//!
//! `ledger-bench long` is the other mode: the engine alone over a long history, through
//! the C ABI (issue 14); see `ledger-bench/long.rs`.
//!
//! ```text
//! cargo run --release -p ledger-benches --bin ledger-bench -- long [--transactions N] [--window N] [--data-dir DIR] [--json]
//! cargo run --release -p ledger-benches --bin ledger-bench -- feed [--transactions N] [--readers R] [--pairs P] [--json]
//! ```

#[path = "ledger-bench/cabi.rs"]
mod cabi;
#[path = "ledger-bench/engine.rs"]
mod engine;
#[path = "ledger-bench/feed.rs"]
mod feed;
#[path = "ledger-bench/history.rs"]
mod history;
#[path = "ledger-bench/long.rs"]
mod long;
#[path = "ledger-bench/report.rs"]
mod report;
#[path = "ledger-bench/run.rs"]
mod run;
#[path = "ledger-bench/sqlite.rs"]
mod sqlite;
#[path = "ledger-bench/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use clap::{Parser, Subcommand, ValueEnum};
use ledger_core::Durability;
use serde_json::{Value, json};

use crate::workload::{Workload, calls};

/// The default seed: fixed, so two runs with default arguments do the same work.
const SEED_DEFAULT: u64 = 0x1ED6_E2B3_2026_0007;
/// Largest call accepted (a sanity bound: each call is one request, one SQL transaction).
const BATCH_TXS_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum SystemName {
    /// The engine with `Durability::SyncData`.
    EngineDurable,
    /// The engine with `Durability::None`.
    EngineNosync,
    /// SQLite doing the same work.
    Sqlite,
}

impl SystemName {
    fn as_str(self) -> &'static str {
        match self {
            SystemName::EngineDurable => "engine-durable",
            SystemName::EngineNosync => "engine-nosync",
            SystemName::Sqlite => "sqlite",
        }
    }
}

fn parse_seed(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => s.replace('_', "").parse(),
    };
    parsed.map_err(|e| format!("not a u64 (decimal or 0x hex): {e}"))
}

/// The other modes; without one, the comparative benchmark runs.
#[derive(Debug, Clone, Subcommand)]
enum Mode {
    /// The engine alone over a long history, through the C ABI with its default options
    /// (durable), one writer: rate per window, memory, disk, then the reopen's time and
    /// a check of the first payment (issue 14).
    Long(long::LongArgs),
    /// The change feed: its read rate while the engine writes (one or more readers
    /// following one writer), what following costs the writer (alternating runs with
    /// and without readers), and a catch-up read of the whole log (issue 17).
    Feed(feed::FeedArgs),
}

/// The comparative benchmark: this engine (durable and without sync) against SQLite on
/// the same seeded workload.
#[derive(Debug, Clone, Parser)]
#[command(name = "ledger-bench", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Transactions in the workload.
    #[arg(long, default_value_t = 2_000_000)]
    transactions: u64,
    /// Clients (each has accounts in four currencies).
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Seed of the workload (decimal or 0x hex).
    #[arg(long, default_value_t = SEED_DEFAULT, value_parser = parse_seed)]
    seed: u64,
    /// Transactions per submit call (one group commit, one SQL transaction).
    #[arg(long, default_value_t = 8190)]
    batch: u64,
    /// Close every open batch after each this many transactions (0: never).
    #[arg(long, default_value_t = 100_000)]
    cutover: u64,
    /// Directory for the runs' data (a fresh temporary directory is made inside). Use a
    /// real disk: on tmpfs a sync costs nothing.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Systems to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "engine-durable,engine-nosync,sqlite")]
    systems: Vec<SystemName>,
    /// SQLite page cache size, MiB (enough to hold the whole database by default).
    #[arg(long, default_value_t = 1024)]
    sqlite_cache_mib: u64,
    /// SQLite page size, bytes (set before the schema is created).
    #[arg(long, default_value_t = 4096)]
    sqlite_page_size: u64,
    /// SQLite `wal_autocheckpoint`, pages (SQLite's default is 1000).
    #[arg(long, default_value_t = 1000)]
    sqlite_checkpoint_pages: u64,
    /// The engine's `snapshot_every_records` (0: no snapshots during the run).
    #[arg(long, default_value_t = ledger_core::SNAPSHOT_EVERY_RECORDS_DEFAULT)]
    engine_snapshot_every: u64,
    /// Calls the engine is given before the oldest is waited for, as concurrent callers
    /// would (the sequencer then syncs one group while it judges the next). SQLite is
    /// always driven one call at a time: one connection has one writer, and a second
    /// call could only wait behind the first.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    engine_in_flight: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Internal: run one system in this process and print its report as JSON.
    #[arg(long, hide = true, value_enum)]
    run_one: Option<SystemName>,
}

/// The totals every system must end with, as JSON.
pub(crate) fn check_json(per_currency: BTreeMap<String, [i64; 4]>, batches: u64, open_batches: u64) -> Value {
    let balances: serde_json::Map<String, Value> = per_currency
        .into_iter()
        .map(|(code, [captured, refunded, settled, net])| {
            (code, json!({"captured": captured, "refunded": refunded, "settled": settled, "net": net}))
        })
        .collect();
    json!({"balances": balances, "batches": batches, "open_batches": open_batches})
}

/// Child: runs one system and prints its report on stdout.
fn run_one(args: &Args, system: SystemName) -> Result<(), String> {
    let workload = Workload::new(args.seed, args.clients)?;
    let calls = calls(args.transactions, args.batch, args.cutover);
    let parent = args.dir.as_deref().ok_or("--run-one needs --dir")?;
    let dir = parent.join(system.as_str());
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let bar = run::progress(system.as_str(), args.transactions);
    let name = system.as_str();
    let report = match system {
        SystemName::EngineDurable | SystemName::EngineNosync => {
            let durability = if system == SystemName::EngineDurable { Durability::SyncData } else { Durability::None };
            let in_flight = usize::try_from(args.engine_in_flight).map_err(|e| e.to_string())?;
            let settings =
                engine::Settings { durability, snapshot_every_records: args.engine_snapshot_every, in_flight };
            engine::run(name, &settings, &workload, &calls, &dir, &bar)
        }
        SystemName::Sqlite => {
            let tuning = sqlite::Tuning {
                cache_mib: args.sqlite_cache_mib,
                page_size: args.sqlite_page_size,
                checkpoint_pages: args.sqlite_checkpoint_pages,
            };
            sqlite::run(name, tuning, &workload, &calls, &dir, &bar)
        }
    };
    bar.finish_and_clear();
    let report = report?;
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    println!("{report}");
    Ok(())
}

/// The file system type holding `path`, from `/proc/mounts` (the longest mount point
/// that is a prefix of the path).
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, fs) = (fields.next()?, fields.next()?, fields.next()?);
            let point = point.replace("\\040", " ");
            path.starts_with(&point).then(|| (point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Parent: spawns one child per system, then compares and reports.
fn run_all(args: &Args) -> Result<bool, String> {
    if args.transactions == 0 || args.clients == 0 || args.batch == 0 || args.batch > BATCH_TXS_MAX {
        return Err(format!("need --transactions >= 1, --clients >= 1, 1 <= --batch <= {BATCH_TXS_MAX}"));
    }
    let workload = Workload::new(args.seed, args.clients)?;
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let work = tempfile::Builder::new()
        .prefix("ledger-bench-")
        .tempdir_in(&base)
        .map_err(|e| format!("making a directory in {}: {e}", base.display()))?;
    let fs = fs_type(work.path()).unwrap_or_else(|| "unknown".into());
    if matches!(fs.as_str(), "tmpfs" | "ramfs") {
        eprintln!(
            "warning: {} is on {fs}: syncs cost nothing there, so durable numbers are meaningless; use --dir on a disk",
            work.path().display()
        );
    }
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let load_start = load_average();
    eprintln!(
        "ledger-bench: {} transactions, seed {:#x}, {} clients, calls of {}, cut-over every {}; data in {} ({fs}); load {load_start}",
        args.transactions,
        args.seed,
        args.clients,
        args.batch,
        args.cutover,
        work.path().display()
    );
    let mut runs = Vec::new();
    for (i, system) in args.systems.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, args.systems.len(), system.as_str());
        let output = Command::new(&exe)
            .args(["--run-one", system.as_str()])
            .args(["--transactions", &args.transactions.to_string()])
            .args(["--clients", &args.clients.to_string()])
            .args(["--seed", &args.seed.to_string()])
            .args(["--batch", &args.batch.to_string()])
            .args(["--cutover", &args.cutover.to_string()])
            .args(["--engine-snapshot-every", &args.engine_snapshot_every.to_string()])
            .args(["--engine-in-flight", &args.engine_in_flight.to_string()])
            .args(["--sqlite-cache-mib", &args.sqlite_cache_mib.to_string()])
            .args(["--sqlite-page-size", &args.sqlite_page_size.to_string()])
            .args(["--sqlite-checkpoint-pages", &args.sqlite_checkpoint_pages.to_string()])
            .arg("--dir")
            .arg(work.path())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("starting the {} run: {e}", system.as_str()))?;
        if !output.status.success() {
            return Err(format!("the {} run failed ({})", system.as_str(), output.status));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let run: Value = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("the {} run's report does not parse: {e}: {stdout}", system.as_str()))?;
        eprintln!("      {}", report::one_line(&run));
        runs.push(run);
    }
    let mismatches = report::mismatches(&runs);
    let summary = report::Summary {
        args: json!({
            "transactions": args.transactions,
            "clients": args.clients,
            "seed": args.seed,
            "seed_hex": format!("{:#x}", args.seed),
            "batch": args.batch,
            "cutover": args.cutover,
            "engine_snapshot_every": args.engine_snapshot_every,
            "engine_in_flight": args.engine_in_flight,
            "sqlite_cache_mib": args.sqlite_cache_mib,
            "sqlite_page_size": args.sqlite_page_size,
            "sqlite_checkpoint_pages": args.sqlite_checkpoint_pages,
        }),
        workload: report::shape_counts(&workload, args.transactions),
        machine: json!({
            "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "load_start": load_start,
            "load_end": load_average(),
            "dir": work.path().display().to_string(),
            "fs": fs,
        }),
        runs,
        mismatches,
    };
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.table());
    }
    for m in &summary.mismatches {
        eprintln!("MISMATCH: {m}");
    }
    Ok(summary.mismatches.is_empty())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (&args.mode, args.run_one) {
        (Some(Mode::Long(long)), _) => long::main(long),
        (Some(Mode::Feed(feed)), _) => feed::main(feed),
        (None, Some(system)) => run_one(&args, system).map(|()| true),
        (None, None) => run_all(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) if args.mode.is_some() => {
            eprintln!("ledger-bench: a check failed (see the report above)");
            ExitCode::FAILURE
        }
        Ok(false) => {
            eprintln!("ledger-bench: the runs disagree (see MISMATCH above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("ledger-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
