//! One run of the workload against one system, in its own process: the driving loop,
//! what is measured (call latency, peak RSS, bytes on disk) and the child's JSON report.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger_core::{Reject, Tx};
use serde_json::{Value, json};

use crate::workload::{Call, Workload};

/// Outcome codes are those of the C ABI: 0 committed, 1 exists, 2.. a [`Reject`].
pub(crate) const CODES: usize = 16;
const COMMITTED: usize = 0;
const EXISTS: usize = 1;

/// A system under test, as the driving loop sees it.
pub(crate) trait System {
    /// Judges and commits `txs` in order (durably, if the system is configured so)
    /// and returns one outcome code per transaction.
    fn submit(&mut self, txs: Vec<Tx>) -> Result<Vec<u32>, String>;
    /// Hands `txs` over without waiting for them (a system that takes the next call
    /// while this one commits, as concurrent callers would); [`System::receive`]
    /// returns the outcomes of the calls sent, in order. By default the call is
    /// simply made now.
    fn send(&mut self, txs: Vec<Tx>) -> Result<(), String> {
        let outcomes = self.submit(txs)?;
        self.sent().push_back(Sent::Done(outcomes));
        Ok(())
    }
    /// The outcomes of the oldest call sent and not yet received.
    fn receive(&mut self) -> Result<Vec<u32>, String> {
        match self.sent().pop_front() {
            Some(Sent::Done(outcomes)) => Ok(outcomes),
            Some(Sent::Waiting(future)) => {
                let outcomes = future.wait().map_err(|e| format!("submit: {e}"))?;
                Ok(outcomes.iter().map(ledger_core::TxOutcome::code).collect())
            }
            None => Err("nothing was sent".into()),
        }
    }
    /// Calls sent and not yet received.
    fn sent(&mut self) -> &mut VecDeque<Sent>;
    /// Closes the open batch of every account; returns how many were closed.
    fn close_all(&mut self) -> Result<u64, String>;
}

/// A call sent and not yet received.
pub(crate) enum Sent {
    /// Made already; its outcome codes.
    Done(Vec<u32>),
    /// In the engine's queue or being committed.
    Waiting(ledger_core::SubmitFuture),
}

/// What the driving loop measured.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) submit_secs: f64,
    pub(crate) cut_over_secs: f64,
    /// Latency of each submit call, microseconds.
    pub(crate) calls_us: Histogram<u64>,
    /// Latency of each cut-over (closing every open batch), microseconds.
    pub(crate) cut_overs_us: Histogram<u64>,
    pub(crate) codes: [u64; CODES],
    /// FNV-1a over the outcome codes in submission order: equal digests mean every
    /// transaction got the same outcome, not just the same totals.
    pub(crate) digest: u64,
    pub(crate) batch_closes: u64,
    /// Largest anonymous RSS seen at a call boundary, KiB.
    pub(crate) peak_anon_kib: u64,
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| format!("histogram: {e}"))
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub(crate) fn progress(name: &str, transactions: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(transactions), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>15} [{elapsed_precise}] {wide_bar:.cyan/blue} {human_pos}/{human_len} ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar
}

/// Submits the workload call by call, timing each call (and each cut-over). Up to
/// `in_flight` calls are sent before the oldest is waited for (1: one at a time); a
/// cut-over waits for every call before it. Outcomes are taken in submission order,
/// so the digest does not depend on the window.
pub(crate) fn drive(
    system: &mut dyn System,
    workload: &Workload,
    calls: &[Call],
    in_flight: usize,
    bar: &ProgressBar,
) -> Result<Measured, String> {
    let mut m = Measured {
        submit_secs: 0.0,
        cut_over_secs: 0.0,
        calls_us: histogram()?,
        cut_overs_us: histogram()?,
        codes: [0; CODES],
        digest: 0xCBF2_9CE4_8422_2325,
        batch_closes: 0,
        peak_anon_kib: 0,
    };
    let started = Instant::now();
    let mut waiting: VecDeque<(Instant, u64)> = VecDeque::new();
    let receive = |system: &mut dyn System, m: &mut Measured, (sent, len): (Instant, u64)| {
        let outcomes = system.receive()?;
        m.calls_us.saturating_record(micros(sent.elapsed()));
        if u64::try_from(outcomes.len()).ok() != Some(len) {
            return Err(format!("{} outcomes for a call of {len} transactions", outcomes.len()));
        }
        for code in outcomes {
            let slot = usize::try_from(code).ok().filter(|&c| c < CODES).ok_or(format!("outcome code {code}"))?;
            m.codes[slot] += 1;
            m.digest = (m.digest ^ u64::from(code)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        bar.inc(len);
        Ok::<(), String>(())
    };
    let (mut cut_over_secs, mut generate_secs) = (0.0, 0.0);
    for call in calls {
        let generating = Instant::now();
        let txs: Vec<Tx> = (call.start..call.start + call.len).map(|i| workload.tx(i)).collect();
        generate_secs += generating.elapsed().as_secs_f64();
        if waiting.len() >= in_flight.max(1) {
            let oldest = waiting.pop_front().ok_or("a call is waiting")?;
            receive(system, &mut m, oldest)?;
        }
        waiting.push_back((Instant::now(), call.len));
        system.send(txs)?;
        if call.cut_over_after {
            while let Some(oldest) = waiting.pop_front() {
                receive(system, &mut m, oldest)?;
            }
            let started = Instant::now();
            m.batch_closes += system.close_all()?;
            let took = started.elapsed();
            cut_over_secs += took.as_secs_f64();
            m.cut_overs_us.saturating_record(micros(took));
        }
        m.peak_anon_kib = m.peak_anon_kib.max(status_kib("RssAnon:").unwrap_or(0));
    }
    while let Some(oldest) = waiting.pop_front() {
        receive(system, &mut m, oldest)?;
    }
    // The cut-overs are timed apart. One call at a time, the workload's generation is
    // left out too; with calls in flight it overlaps their commits and stays in (so
    // that figure is, if anything, low).
    m.cut_over_secs = cut_over_secs;
    let generation = if in_flight <= 1 { generate_secs } else { 0.0 };
    m.submit_secs = started.elapsed().as_secs_f64() - cut_over_secs - generation;
    Ok(m)
}

/// A `kB` field of `/proc/self/status` (`VmHWM:` is the peak resident set).
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Where the process's CPU time went, read from `/proc` (Linux; zeros elsewhere).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CpuTimes {
    /// The whole process, exited threads included (`/proc/self/stat` utime + stime).
    pub(crate) process_secs: f64,
    /// The engine's sequencer thread: on a CPU, and runnable but waiting for one
    /// (`/proc/self/task/*/schedstat`: time the scheduler kept it off the CPU).
    pub(crate) sequencer_secs: f64,
    pub(crate) sequencer_wait_secs: f64,
    /// The calling (benchmark's) thread on a CPU.
    pub(crate) caller_secs: f64,
}

impl CpuTimes {
    pub(crate) fn now() -> CpuTimes {
        let mut t = CpuTimes::default();
        // Fields 14 and 15 after the command's closing parenthesis, in USER_HZ ticks
        // (100 per second on every Linux that runs this).
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
            t.process_secs = (ticks(11) + ticks(12)) / 100.0;
        }
        let schedstat = |task: &Path| -> Option<(f64, f64)> {
            let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
            let mut f = text.split_whitespace().map(|x| x.parse::<f64>().unwrap_or(0.0) / 1e9);
            Some((f.next()?, f.next()?))
        };
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                let path = task.path();
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                if comm.trim() == "ledger-sequence"
                    && let Some((run, wait)) = schedstat(&path)
                {
                    t.sequencer_secs += run;
                    t.sequencer_wait_secs += wait;
                }
            }
        }
        if let Some((run, _)) = schedstat(Path::new("/proc/thread-self")) {
            t.caller_secs = run;
        }
        t
    }

    /// The time from `earlier` to `self`.
    pub(crate) fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            process_secs: self.process_secs - earlier.process_secs,
            sequencer_secs: self.sequencer_secs - earlier.sequencer_secs,
            sequencer_wait_secs: self.sequencer_wait_secs - earlier.sequencer_wait_secs,
            caller_secs: self.caller_secs - earlier.caller_secs,
        }
    }
}

/// Bytes of the files under `dir`: apparent sizes and allocated blocks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Disk {
    pub(crate) file_bytes: u64,
    pub(crate) allocated_bytes: u64,
}

pub(crate) fn disk_usage(dir: &Path) -> Result<Disk, String> {
    use std::os::unix::fs::MetadataExt;
    let mut disk = Disk::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        let meta = entry.metadata().map_err(|e| format!("{}: {e}", entry.path().display()))?;
        if meta.is_dir() {
            let sub = disk_usage(&entry.path())?;
            disk.file_bytes += sub.file_bytes;
            disk.allocated_bytes += sub.allocated_bytes;
        } else {
            disk.file_bytes += meta.len();
            disk.allocated_bytes += meta.blocks() * 512;
        }
    }
    Ok(disk)
}

/// The name of a rejection code, for the reports.
pub(crate) fn reason(code: usize) -> String {
    let reject = [
        Reject::ExistsWithDifferentFields,
        Reject::InvalidAmount,
        Reject::InvalidCurrency,
        Reject::InvalidKind,
        Reject::RefNotFound,
        Reject::RefWrongState,
        Reject::ExceedsRefAmount,
        Reject::CurrencyMismatch,
    ]
    .into_iter()
    .find(|r| *r as usize == code);
    match reject {
        Some(r) => {
            // Debug is the variant name: ExceedsRefAmount -> exceeds_ref_amount.
            let mut out = String::new();
            for (i, ch) in format!("{r:?}").chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_lowercase());
            }
            out
        }
        None => format!("code_{code}"),
    }
}

/// The outcome counts that all systems must agree on.
pub(crate) fn counts_json(m: &Measured) -> Value {
    let mut rejected = serde_json::Map::new();
    for (code, &n) in m.codes.iter().enumerate().skip(EXISTS + 1) {
        if n > 0 {
            rejected.insert(reason(code), json!(n));
        }
    }
    json!({
        "committed": m.codes[COMMITTED],
        "exists": m.codes[EXISTS],
        "rejected": rejected,
        "batch_closes": m.batch_closes,
        "outcome_digest": format!("{:016x}", m.digest),
    })
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What a run found after the workload: the state it ended in and what it left behind.
#[derive(Debug)]
pub(crate) struct End {
    /// Totals every system must agree on (balances per currency, batches).
    pub(crate) check: Value,
    /// Peak resident set (`VmHWM`), read once the system was closed, KiB.
    pub(crate) peak_rss_kib: u64,
    pub(crate) disk: Disk,
    /// Bytes holding data (the engine's log up to its end, plus its other files).
    pub(crate) used_bytes: u64,
    /// The engine's log alone, up to its end (segment headers and frames).
    pub(crate) log_bytes: Option<u64>,
    /// How the system was configured, for the report.
    pub(crate) notes: String,
}

/// The child's report: one JSON object on stdout.
pub(crate) fn report(system: &str, m: &Measured, end: End) -> Value {
    let total_secs = m.submit_secs + m.cut_over_secs;
    let transactions = m.codes.iter().sum::<u64>();
    json!({
        "system": system,
        "transactions": transactions,
        "submit_secs": m.submit_secs,
        "cut_over_secs": m.cut_over_secs,
        "total_secs": total_secs,
        "tx_per_s": transactions as f64 / total_secs.max(1e-9),
        "calls": m.calls_us.len(),
        "call_ms": {
            "p50": ms(&m.calls_us, 0.5),
            "p99": ms(&m.calls_us, 0.99),
            "max": m.calls_us.max() as f64 / 1000.0,
            "mean": m.calls_us.mean() / 1000.0,
        },
        "cut_overs": m.cut_overs_us.len(),
        "cut_over_ms": {
            "p50": ms(&m.cut_overs_us, 0.5),
            "max": m.cut_overs_us.max() as f64 / 1000.0,
        },
        "peak_rss_kib": end.peak_rss_kib,
        "peak_anon_rss_kib": m.peak_anon_kib,
        "disk": {
            "file_bytes": end.disk.file_bytes,
            "allocated_bytes": end.disk.allocated_bytes,
            "used_bytes": end.used_bytes,
            "log_bytes": end.log_bytes,
        },
        "counts": counts_json(m),
        "check": end.check,
        "notes": end.notes,
    })
}
