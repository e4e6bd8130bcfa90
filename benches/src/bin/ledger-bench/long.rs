//! `ledger-bench long`: the engine alone over a long history (issue 14), through the
//! C ABI with the default options (durable), one writer thread, calls of 8190.
//!
//! Prints, window by window as it goes (stderr) and at the end (stdout, a table or one
//! JSON object): the rate over each window of submit calls, p50/p99 per call, resident
//! and anonymous memory, the directory's bytes, and [`engine_stats`]. Then it closes
//! the ledger, times the reopen, and checks that the very first payment, resubmitted,
//! is `LEDGER_TX_EXISTS` and that a refund of it is accepted. Fails when a sale is not
//! committed, a resubmission is anything but `LEDGER_TX_EXISTS`, or the reopen check
//! fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use ledger::{LEDGER_TX_EXISTS, LEDGER_TX_OK, ledger_tx};
use serde_json::{Value, json};

use crate::cabi::CLedger;
use crate::history::{History, Shape};
use crate::run::{self, CODES, CpuTimes, Disk};
use crate::workload::calls;

/// The defaults of issue 14's measurement.
const TRANSACTIONS_DEFAULT: u64 = 40_000_000;
const WINDOW_TXS_DEFAULT: u64 = 2_000_000;
const CALL_TXS_DEFAULT: u64 = 8190;
/// How often the sampling thread reads the anonymous RSS.
const ANON_SAMPLE_PERIOD_MS: u64 = 5;

/// Arguments of `ledger-bench long`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LongArgs {
    /// Transactions to submit. The default is issue 14's run: main's engine needs
    /// about 13 GiB of RAM for it.
    #[arg(long, default_value_t = TRANSACTIONS_DEFAULT)]
    transactions: u64,
    /// Transactions per window: the rate, latency, memory and disk are reported for
    /// each (calls are cut at window ends, so every window is exact).
    #[arg(long, default_value_t = WINDOW_TXS_DEFAULT)]
    window: u64,
    /// Transactions per `ledger_submit` call.
    #[arg(long, default_value_t = CALL_TXS_DEFAULT)]
    batch: u64,
    /// Clients (each sale picks one, and one of four currencies).
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Seed of the workload (decimal or 0x hex).
    #[arg(long, default_value_t = crate::SEED_DEFAULT, value_parser = crate::parse_seed)]
    seed: u64,
    /// The ledger's directory: must be absent or empty; kept after the run. Without
    /// it, a fresh temporary directory inside `--dir` is used and removed after.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the temporary directory is made (default: the system's temp dir). Use a
    /// real disk: on tmpfs a sync costs nothing.
    #[arg(long, conflicts_with = "data_dir")]
    dir: Option<PathBuf>,
    /// Print one JSON object instead of the table at the end.
    #[arg(long)]
    json: bool,
}

/// Memory of this process now, from `/proc/self/status`, KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
    /// Peak resident set so far (`VmHWM`).
    hwm_kib: u64,
}

impl Memory {
    fn now() -> Memory {
        Memory {
            rss_kib: run::status_kib("VmRSS:").unwrap_or(0),
            anon_kib: run::status_kib("RssAnon:").unwrap_or(0),
            hwm_kib: run::status_kib("VmHWM:").unwrap_or(0),
        }
    }

    fn to_json(self) -> Value {
        json!({"rss_kib": self.rss_kib, "anon_rss_kib": self.anon_kib, "peak_rss_kib": self.hwm_kib})
    }
}

/// The largest anonymous RSS seen, sampled on its own thread every
/// `ANON_SAMPLE_PERIOD_MS`, so a peak inside a call (a snapshot's copy of the state,
/// made on the engine's thread) is seen too, not only the values between calls.
#[derive(Debug)]
struct AnonPeak {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl AnonPeak {
    fn start() -> Result<AnonPeak, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_peak) = (Arc::clone(&stop), Arc::clone(&peak_kib));
        let thread = std::thread::Builder::new()
            .name("anon-rss-sampler".into())
            .spawn(move || {
                // Relaxed: each atomic is a value of its own; nothing else is published
                // through it (the final read comes after the join).
                while !thread_stop.load(Ordering::Relaxed) {
                    thread_peak.fetch_max(run::status_kib("RssAnon:").unwrap_or(0), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(ANON_SAMPLE_PERIOD_MS));
                }
            })
            .map_err(|e| format!("starting the sampling thread: {e}"))?;
        Ok(AnonPeak { stop, peak_kib, thread: Some(thread) })
    }

    /// The peak since the last `take` (or the start), also counting `seen_kib`; starts
    /// the next period from now.
    fn take(&self, seen_kib: u64) -> u64 {
        let now = run::status_kib("RssAnon:").unwrap_or(0);
        self.peak_kib.swap(0, Ordering::Relaxed).max(seen_kib).max(now)
    }
}

impl Drop for AnonPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn disk_json(d: Disk) -> Value {
    json!({"file_bytes": d.file_bytes, "allocated_bytes": d.allocated_bytes})
}

/// HOOK (issue 14): the engine's own statistics, printed with every window and at the
/// end. The engine exposes none through the C ABI yet; once ledger-core has
/// checkpoints, print their count, sizes and times here (and the hot and cold tiers'
/// bytes). Until then this reports what the directory shows from outside: today's
/// snapshots (`snapshot-<seq>.snap`: the newest stops advancing when snapshots fail)
/// and any other files that are neither log segments (`.seg`, spares being prepared
/// `.seg.tmp`) nor the lock.
/// The engine's own statistics (`ledger_stats_get`): tiers in memory and on disk,
/// checkpoints (count, the newest one's time and run size) and merges; plus the
/// checkpoint files in the directory.
fn engine_stats(ledger: &CLedger, dir: &Path) -> Value {
    let (mut checkpoints, mut checkpoint_bytes) = (0u64, 0u64);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("snapshot-") && name.ends_with(".snap") {
                checkpoints += 1;
                checkpoint_bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let Ok(s) = ledger.stats() else { return json!({"error": "ledger_stats_get failed"}) };
    json!({
        "hot_transactions": s.hot_transactions, "hot_bytes": s.hot_bytes,
        "frozen_transactions": s.frozen_transactions,
        "cold_runs": s.cold_runs, "cold_entries": s.cold_entries, "cold_bytes": s.cold_bytes,
        "checkpoints": s.checkpoints, "checkpoint_failures": s.checkpoint_failures,
        "checkpoint_seq": s.checkpoint_seq, "checkpoint_ms": s.checkpoint_ns as f64 / 1e6,
        "checkpoint_run_bytes": s.checkpoint_run_bytes,
        "merges": s.merges, "merged_entries": s.merged_entries, "merge_failures": s.merge_failures,
        "checkpoint_files": checkpoints, "checkpoint_file_bytes": checkpoint_bytes,
    })
}

fn engine_stats_line(stats: &Value) -> String {
    let mib = |key: &str| stats[key].as_u64().unwrap_or(0) as f64 / 1_048_576.0;
    format!(
        "engine: hot {} tx ({:.0} MiB), frozen {}; cold {} runs, {} entries, {:.0} MiB; {} checkpoints \
         (newest at seq {}: {:.0} ms, run {:.0} MiB; {} failed), {} merges ({} failed)",
        stats["hot_transactions"],
        mib("hot_bytes"),
        stats["frozen_transactions"],
        stats["cold_runs"],
        stats["cold_entries"],
        mib("cold_bytes"),
        stats["checkpoints"],
        stats["checkpoint_seq"],
        stats["checkpoint_ms"].as_f64().unwrap_or(0.0),
        mib("checkpoint_run_bytes"),
        stats["checkpoint_failures"],
        stats["merges"],
        stats["merge_failures"],
    )
}

/// One window's measurements.
#[derive(Debug)]
struct Window {
    first: u64,
    transactions: u64,
    /// Time inside `ledger_submit` calls.
    submit_secs: f64,
    /// The window's wall time (generation and sampling included).
    wall_secs: f64,
    calls_us: Histogram<u64>,
    /// At the window's end.
    memory: Memory,
    /// The largest anonymous RSS during the window (sampled; see [`AnonPeak`]).
    anon_peak_kib: u64,
    disk: Disk,
    engine: Value,
    /// CPU time over the window (see [`CpuTimes`]).
    cpu: CpuTimes,
}

impl Window {
    fn new(first: u64) -> Result<Window, String> {
        Ok(Window {
            first,
            transactions: 0,
            submit_secs: 0.0,
            wall_secs: 0.0,
            calls_us: histogram()?,
            memory: Memory::default(),
            anon_peak_kib: 0,
            disk: Disk::default(),
            engine: Value::Null,
            cpu: CpuTimes::default(),
        })
    }

    /// Microseconds per transaction: the sequencer on a CPU, the sequencer runnable but
    /// kept off one, and the engine's other threads (checkpoints, merges, the log's
    /// sealing and spare segments: the process less the sequencer and this thread).
    fn cpu_us_per_tx(&self) -> (f64, f64, f64) {
        let per = |secs: f64| secs * 1e6 / (self.transactions.max(1) as f64);
        let c = &self.cpu;
        let background = (c.process_secs - c.sequencer_secs - c.caller_secs).max(0.0);
        (per(c.sequencer_secs), per(c.sequencer_wait_secs), per(background))
    }

    fn tx_per_s(&self) -> f64 {
        self.transactions as f64 / self.submit_secs.max(1e-9)
    }

    fn to_json(&self, index: usize) -> Value {
        json!({
            "index": index,
            "first": self.first,
            "transactions": self.transactions,
            "tx_per_s": self.tx_per_s(),
            "submit_secs": self.submit_secs,
            "wall_secs": self.wall_secs,
            "calls": self.calls_us.len(),
            "call_ms": {"p50": ms(&self.calls_us, 0.5), "p99": ms(&self.calls_us, 0.99)},
            "memory": self.memory.to_json(),
            "anon_peak_rss_kib": self.anon_peak_kib,
            "disk": disk_json(self.disk),
            "engine": self.engine,
            "cpu_us_per_tx": {
                "sequencer": self.cpu_us_per_tx().0,
                "sequencer_waiting_for_cpu": self.cpu_us_per_tx().1,
                "engine_background": self.cpu_us_per_tx().2,
            },
        })
    }

    fn line(&self, index: usize, count: usize) -> String {
        format!(
            "window {}/{count} [{}..{}): {:.0} tx/s; call p50 {:.1} ms, p99 {:.1} ms; RSS {:.0} MiB, anon {:.0} MiB \
             (window peak {:.0}), peak RSS {:.0} MiB; disk {:.1} MiB; CPU per tx: sequencer {:.2} us (+{:.2} us \
             waiting for a CPU), background {:.2} us; {}",
            index + 1,
            self.first,
            self.first + self.transactions,
            self.tx_per_s(),
            ms(&self.calls_us, 0.5),
            ms(&self.calls_us, 0.99),
            mib(self.memory.rss_kib),
            mib(self.memory.anon_kib),
            mib(self.anon_peak_kib),
            mib(self.memory.hwm_kib),
            self.disk.file_bytes as f64 / 1_048_576.0,
            self.cpu_us_per_tx().0,
            self.cpu_us_per_tx().1,
            self.cpu_us_per_tx().2,
            engine_stats_line(&self.engine),
        )
    }
}

/// Outcome counts by shape and `LEDGER_TX_*` code.
#[derive(Debug, Default)]
struct Counts {
    by_shape: [[u64; CODES]; 3],
}

impl Counts {
    fn add(&mut self, shape: Shape, code: u32) -> Result<(), String> {
        let slot = usize::try_from(code).ok().filter(|&c| c < CODES).ok_or(format!("outcome code {code}"))?;
        self.by_shape[shape as usize][slot] += 1;
        Ok(())
    }

    fn of(&self, shape: Shape, code: u32) -> u64 {
        usize::try_from(code).map_or(0, |c| self.by_shape[shape as usize][c])
    }

    fn total(&self, shape: Shape) -> u64 {
        self.by_shape[shape as usize].iter().sum()
    }

    /// Sales not committed and resubmissions not `EXISTS`: the run fails on any.
    fn errors(&self) -> u64 {
        self.total(Shape::Sale) - self.of(Shape::Sale, LEDGER_TX_OK) + self.total(Shape::Resubmit)
            - self.of(Shape::Resubmit, LEDGER_TX_EXISTS)
    }

    fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for shape in Shape::ALL {
            let mut codes = serde_json::Map::new();
            for (code, &n) in self.by_shape[shape as usize].iter().enumerate() {
                if n > 0 {
                    codes.insert(code_name(code), json!(n));
                }
            }
            out.insert(shape.name().into(), json!({"total": self.total(shape), "outcomes": codes}));
        }
        out.insert("transactions".into(), json!(Shape::ALL.iter().map(|&s| self.total(s)).sum::<u64>()));
        out.insert("errors".into(), json!(self.errors()));
        Value::Object(out)
    }
}

fn code_name(code: usize) -> String {
    match u32::try_from(code) {
        Ok(LEDGER_TX_OK) => "ok".into(),
        Ok(LEDGER_TX_EXISTS) => "exists".into(),
        _ => run::reason(code),
    }
}

/// What the run found after closing and reopening.
#[derive(Debug)]
struct Reopen {
    secs: f64,
    memory: Memory,
    /// The largest anonymous RSS from the end of the run through the close, the reopen
    /// and the check.
    anon_peak_kib: u64,
    /// The very first payment resubmitted: its code (must be `EXISTS`).
    resubmit_code: u32,
    /// A refund of it: its code (must be `OK`), and the payment's refunded amount
    /// before and after.
    refund_code: u32,
    refunded_before: i64,
    refunded_after: i64,
}

impl Reopen {
    fn passed(&self) -> bool {
        self.resubmit_code == LEDGER_TX_EXISTS
            && self.refund_code == LEDGER_TX_OK
            && self.refunded_after == self.refunded_before + 1
    }
}

/// Closes and reopens the ledger, timing the reopen, then checks the first payment.
fn reopen_and_check(dir: &Path, history: &mut History, anon: &AnonPeak) -> Result<Reopen, String> {
    let started = Instant::now();
    let mut ledger = CLedger::open(dir)?;
    let secs = started.elapsed().as_secs_f64();
    let memory = Memory::now();
    let first = history.sale(0);
    let mut result = [u32::MAX];
    ledger.submit(std::slice::from_ref(&first), &mut result)?;
    let resubmit_code = result[0];
    let refunded = |ledger: &CLedger| -> Result<i64, String> {
        Ok(ledger.lookup(first.id)?.ok_or("the first payment is not found after the reopen")?.refunded)
    };
    let refunded_before = refunded(&ledger)?;
    let refund = history.refund_of(&first, 1);
    ledger.submit(std::slice::from_ref(&refund), &mut result)?;
    let refund_code = result[0];
    let refunded_after = refunded(&ledger)?;
    ledger.close()?;
    let anon_peak_kib = anon.take(memory.anon_kib);
    Ok(Reopen { secs, memory, anon_peak_kib, resubmit_code, refund_code, refunded_before, refunded_after })
}

/// Where the ledger lives, and whether it is removed after.
fn data_dir(args: &LongArgs) -> Result<(PathBuf, Option<tempfile::TempDir>), String> {
    if let Some(dir) = &args.data_dir {
        let empty = match std::fs::read_dir(dir) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        if !empty {
            return Err(format!("{} is not empty: the run needs a fresh ledger", dir.display()));
        }
        return Ok((dir.clone(), None));
    }
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::Builder::new()
        .prefix("ledger-bench-long-")
        .tempdir_in(&base)
        .map_err(|e| format!("making a directory in {}: {e}", base.display()))?;
    Ok((temp.path().join("ledger"), Some(temp)))
}

/// Runs the long-history benchmark; `Ok(false)` when a check failed.
pub(crate) fn main(args: &LongArgs) -> Result<bool, String> {
    if args.transactions == 0 || args.window == 0 || args.batch == 0 || args.batch > crate::BATCH_TXS_MAX {
        return Err(format!("need --transactions >= 1, --window >= 1, 1 <= --batch <= {}", crate::BATCH_TXS_MAX));
    }
    let mut history = History::new(args.seed, args.clients)?;
    let (dir, temp) = data_dir(args)?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let fs = crate::fs_type(parent).unwrap_or_else(|| "unknown".into());
    if matches!(fs.as_str(), "tmpfs" | "ramfs") {
        eprintln!("warning: {} is on {fs}: syncs cost nothing there; use --dir on a disk", dir.display());
    }
    let load_start = crate::load_average();
    eprintln!(
        "ledger-bench long: {} transactions through the C ABI (ledger_open with NULL options: durable), one \
         writer, calls of {}, windows of {}, seed {:#x}, {} clients; data in {} ({fs}); load {load_start}",
        args.transactions,
        args.batch,
        args.window,
        args.seed,
        args.clients,
        dir.display()
    );

    let started = Instant::now();
    let mut ledger = CLedger::open(&dir)?;
    let open_secs = started.elapsed().as_secs_f64();
    let plan = calls(args.transactions, args.batch, args.window);
    let window_count = usize::try_from(args.transactions.div_ceil(args.window)).map_err(|e| e.to_string())?;
    let mut counts = Counts::default();
    let mut all_calls_us = histogram()?;
    let mut windows: Vec<Window> = Vec::with_capacity(window_count);
    let mut calls_anon_kib = 0u64;
    let anon = AnonPeak::start()?;
    let (mut txs, mut shapes, mut results) = (Vec::<ledger_tx>::new(), Vec::<Shape>::new(), Vec::<u32>::new());
    let mut window: Option<(Instant, Window)> = None;
    let mut window_cpu = CpuTimes::default();
    let run_started = Instant::now();
    for call in &plan {
        if window.is_none() {
            window = Some((Instant::now(), Window::new(call.start)?));
            window_cpu = CpuTimes::now();
        }
        let (window_started, w) = window.as_mut().ok_or("a window is open")?;
        txs.clear();
        shapes.clear();
        for _ in 0..call.len {
            let (shape, tx) = history.next();
            shapes.push(shape);
            txs.push(tx);
        }
        results.clear();
        results.resize(txs.len(), u32::MAX);
        let submitted = Instant::now();
        ledger.submit(&txs, &mut results)?;
        let took = submitted.elapsed();
        w.calls_us.saturating_record(micros(took));
        all_calls_us.saturating_record(micros(took));
        w.submit_secs += took.as_secs_f64();
        w.transactions += call.len;
        for (&shape, &code) in shapes.iter().zip(&results) {
            counts.add(shape, code)?;
        }
        calls_anon_kib = calls_anon_kib.max(run::status_kib("RssAnon:").unwrap_or(0));
        // `calls` cuts a call at every multiple of the window (its "cut-over").
        if call.cut_over_after || call.start + call.len == args.transactions {
            w.wall_secs = window_started.elapsed().as_secs_f64();
            w.memory = Memory::now();
            w.anon_peak_kib = anon.take(std::mem::take(&mut calls_anon_kib));
            w.disk = run::disk_usage(&dir)?;
            w.engine = engine_stats(&ledger, &dir);
            w.cpu = CpuTimes::now().since(&window_cpu);
            let (_, done) = window.take().ok_or("a window is open")?;
            eprintln!("{}", done.line(windows.len(), window_count));
            windows.push(done);
        }
    }
    let wall_secs = run_started.elapsed().as_secs_f64();
    let memory_end = Memory::now();
    let peak_anon_kib = windows.iter().map(|w| w.anon_peak_kib).max().unwrap_or(0);
    let engine_end = engine_stats(&ledger, &dir);
    eprintln!("end of the run: {}", engine_stats_line(&engine_end));

    let closing = Instant::now();
    ledger.close()?;
    let close_secs = closing.elapsed().as_secs_f64();
    let disk = run::disk_usage(&dir)?;
    let peak_rss_kib = run::status_kib("VmHWM:").unwrap_or(0);
    eprintln!("closed in {close_secs:.2} s; reopening");
    let reopen = reopen_and_check(&dir, &mut history, &anon)?;
    drop(anon);

    let first = windows.first().ok_or("no window")?;
    let last = windows.last().ok_or("no window")?;
    let submit_secs: f64 = windows.iter().map(|w| w.submit_secs).sum();
    let summary = json!({
        "mode": "long-history",
        "args": {
            "transactions": args.transactions,
            "window": args.window,
            "batch": args.batch,
            "clients": args.clients,
            "seed": args.seed,
            "seed_hex": format!("{:#x}", args.seed),
        },
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            "load_start": load_start,
            "load_end": crate::load_average(),
            "dir": dir.display().to_string(),
            "fs": fs,
        },
        "counts": counts.to_json(),
        "open_secs": open_secs,
        "submit_secs": submit_secs,
        "wall_secs": wall_secs,
        "tx_per_s": args.transactions as f64 / submit_secs.max(1e-9),
        "call_ms": {
            "p50": ms(&all_calls_us, 0.5),
            "p99": ms(&all_calls_us, 0.99),
            "max": all_calls_us.max() as f64 / 1000.0,
        },
        "first_window": first.to_json(0),
        "last_window": last.to_json(windows.len() - 1),
        "last_over_first": last.tx_per_s() / first.tx_per_s().max(1e-9),
        "windows": windows.iter().enumerate().map(|(i, w)| w.to_json(i)).collect::<Vec<_>>(),
        "memory": {
            "peak_anon_rss_kib": peak_anon_kib,
            "peak_anon_rss_kib_with_reopen": peak_anon_kib.max(reopen.anon_peak_kib),
            "peak_rss_kib": peak_rss_kib,
            "end": memory_end.to_json(),
            "anon_sample_period_ms": ANON_SAMPLE_PERIOD_MS,
        },
        "engine": engine_end,
        "close_secs": close_secs,
        "disk": disk_json(disk),
        "reopen": {
            "secs": reopen.secs,
            "memory": reopen.memory.to_json(),
            "anon_peak_rss_kib": reopen.anon_peak_kib,
            "first_payment_resubmitted": code_name(usize::try_from(reopen.resubmit_code).unwrap_or(usize::MAX)),
            "refund_of_first_payment": code_name(usize::try_from(reopen.refund_code).unwrap_or(usize::MAX)),
            "refunded_before": reopen.refunded_before,
            "refunded_after": reopen.refunded_after,
            "passed": reopen.passed(),
        },
        "passed": counts.errors() == 0 && reopen.passed(),
    });
    if args.json {
        println!("{summary}");
    } else {
        print!("{}", table(&summary));
    }
    drop(temp); // removes the temporary directory, if one was made
    Ok(summary["passed"] == Value::Bool(true))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, key| &v[*key]).as_f64().unwrap_or(f64::NAN)
}

/// The end-of-run report as text.
fn table(s: &Value) -> String {
    let mut t = String::new();
    let a = &s["args"];
    let m = &s["machine"];
    let _ = writeln!(
        t,
        "ledger-bench long: {} transactions through the C ABI (default options: durable), one writer, calls of {}, \
         windows of {}, seed {}",
        a["transactions"],
        a["batch"],
        a["window"],
        a["seed_hex"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        t,
        "machine: {} CPUs, load {} at start, {} at end; data in {} ({})",
        m["cpus"],
        m["load_start"].as_str().unwrap_or("?"),
        m["load_end"].as_str().unwrap_or("?"),
        m["dir"].as_str().unwrap_or("?"),
        m["fs"].as_str().unwrap_or("?")
    );
    let c = &s["counts"];
    for shape in Shape::ALL {
        let _ = writeln!(t, "{:<10} {:>10}  {}", shape.name(), c[shape.name()]["total"], c[shape.name()]["outcomes"]);
    }
    let _ = writeln!(t, "errors (sales not committed, resubmissions not EXISTS): {}", c["errors"]);
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "{:>6} {:>12} {:>10} {:>8} {:>8} {:>9} {:>9} {:>10} {:>9} {:>10} {:>7} {:>7} {:>7}  engine",
        "window",
        "first tx",
        "tx/s",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "anon MiB",
        "anon peak",
        "peak MiB",
        "disk MiB",
        "seq us",
        "wait us",
        "bg us"
    );
    for w in s["windows"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "{:>6} {:>12} {:>10.0} {:>8.1} {:>8.1} {:>9.0} {:>9.0} {:>10.0} {:>9.0} {:>10.1} {:>7.2} {:>7.2} {:>7.2}  {}",
            num(w, &["index"]) + 1.0,
            w["first"].as_u64().unwrap_or(0),
            num(w, &["tx_per_s"]),
            num(w, &["call_ms", "p50"]),
            num(w, &["call_ms", "p99"]),
            num(w, &["memory", "rss_kib"]) / 1024.0,
            num(w, &["memory", "anon_rss_kib"]) / 1024.0,
            num(w, &["anon_peak_rss_kib"]) / 1024.0,
            num(w, &["memory", "peak_rss_kib"]) / 1024.0,
            num(w, &["disk", "file_bytes"]) / 1_048_576.0,
            num(w, &["cpu_us_per_tx", "sequencer"]),
            num(w, &["cpu_us_per_tx", "sequencer_waiting_for_cpu"]),
            num(w, &["cpu_us_per_tx", "engine_background"]),
            engine_stats_line(&w["engine"]),
        );
    }
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "first window {:.0} tx/s, last window {:.0} tx/s: last/first {:.2}x; overall {:.0} tx/s, call p50 {:.1} ms, \
         p99 {:.1} ms",
        num(s, &["first_window", "tx_per_s"]),
        num(s, &["last_window", "tx_per_s"]),
        num(s, &["last_over_first"]),
        num(s, &["tx_per_s"]),
        num(s, &["call_ms", "p50"]),
        num(s, &["call_ms", "p99"]),
    );
    let _ = writeln!(
        t,
        "memory: anonymous RSS peak {:.0} MiB during the run, {:.0} MiB with the close and reopen (sampled every {} ms \
         and after every call); peak RSS (VmHWM, mapped log pages included) {:.0} MiB",
        num(s, &["memory", "peak_anon_rss_kib"]) / 1024.0,
        num(s, &["memory", "peak_anon_rss_kib_with_reopen"]) / 1024.0,
        s["memory"]["anon_sample_period_ms"],
        num(s, &["memory", "peak_rss_kib"]) / 1024.0,
    );
    let _ = writeln!(
        t,
        "disk after close: {} bytes in files ({} allocated); close took {:.2} s",
        s["disk"]["file_bytes"],
        s["disk"]["allocated_bytes"],
        num(s, &["close_secs"]),
    );
    let r = &s["reopen"];
    let _ = writeln!(
        t,
        "reopen: {:.2} s (anon RSS after {:.0} MiB); first payment resubmitted: {}; refund of it: {} (refunded {} -> \
         {}); {}",
        num(r, &["secs"]),
        num(r, &["memory", "anon_rss_kib"]) / 1024.0,
        r["first_payment_resubmitted"].as_str().unwrap_or("?"),
        r["refund_of_first_payment"].as_str().unwrap_or("?"),
        r["refunded_before"],
        r["refunded_after"],
        if r["passed"] == Value::Bool(true) { "passed" } else { "FAILED" },
    );
    let _ = writeln!(
        t,
        "tx/s: transactions / time inside ledger_submit (generation and sampling left out; each window's wall \
         time is in --json). {}",
        if s["passed"] == Value::Bool(true) { "All checks passed." } else { "CHECKS FAILED." }
    );
    t
}
