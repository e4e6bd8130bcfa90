//! The engine under test: `Ledger` with `Durability::SyncData` (one sync per group
//! commit) or `Durability::None`, default options otherwise (64 MiB segments, a
//! snapshot every 2^20 records unless `--engine-snapshot-every` says otherwise), memory
//! sized for the run (`transactions_hint`).

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use indicatif::ProgressBar;
use ledger_core::{BatchSummary, CloseBatchError, Currency, Durability, Ledger, LedgerOptions, Tx, TxOutcome};
use ledger_store::format::{SEGMENT_HEADER_BYTES, frame_bytes};
use serde_json::Value;

use crate::run::{self, End, Sent, System};
use crate::workload::{Call, Workload};

struct Engine<'l> {
    ledger: &'l Ledger,
    accounts: Vec<(u64, Currency)>,
    sent: VecDeque<Sent>,
}

/// A batch close in flight.
type Closing<'l> = Pin<Box<dyn Future<Output = Result<BatchSummary, CloseBatchError>> + 'l>>;

/// Wakes the thread that blocks on the batch closes.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn closed(result: Result<BatchSummary, CloseBatchError>) -> Result<u64, String> {
    match result {
        Ok(_) => Ok(1),
        Err(CloseBatchError::Empty) => Ok(0),
        Err(e) => Err(format!("engine close_batch: {e}")),
    }
}

impl System for Engine<'_> {
    fn submit(&mut self, txs: Vec<Tx>) -> Result<Vec<u32>, String> {
        let outcomes = self.ledger.submit_async(txs).wait().map_err(|e| format!("engine submit: {e}"))?;
        Ok(outcomes.iter().map(TxOutcome::code).collect())
    }

    fn send(&mut self, txs: Vec<Tx>) -> Result<(), String> {
        self.sent.push_back(Sent::Waiting(self.ledger.submit_async(txs)));
        Ok(())
    }

    fn sent(&mut self) -> &mut VecDeque<Sent> {
        &mut self.sent
    }

    /// Every account's close is queued at once (the first poll of each future sends
    /// its request), so the sequencer takes them in few groups with few syncs, as it
    /// would from many callers; then each result is awaited.
    fn close_all(&mut self) -> Result<u64, String> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut count = 0;
        let mut waiting: Vec<Closing<'_>> = Vec::with_capacity(self.accounts.len());
        for &(client, currency) in &self.accounts {
            let mut close = Box::pin(self.ledger.close_batch_async(client, currency));
            match close.as_mut().poll(&mut cx) {
                Poll::Ready(result) => count += closed(result)?,
                Poll::Pending => waiting.push(close),
            }
        }
        for mut close in waiting {
            loop {
                match close.as_mut().poll(&mut cx) {
                    Poll::Ready(result) => {
                        count += closed(result)?;
                        break;
                    }
                    Poll::Pending => std::thread::park(),
                }
            }
        }
        Ok(count)
    }
}

/// Totals from the engine's queries: balances per currency and batch counts.
fn check(ledger: &Ledger, workload: &Workload) -> Value {
    let mut per: BTreeMap<String, [i64; 4]> = BTreeMap::new();
    let (mut batches, mut open) = (0u64, 0u64);
    for client in 1..=workload.clients() {
        for (currency, b) in ledger.balances(client) {
            let sums = per.entry(currency.code().to_string()).or_default();
            for (sum, v) in sums.iter_mut().zip([b.captured, b.refunded, b.settled_net, b.net]) {
                *sum = sum.saturating_add(v);
            }
            open += u64::from(ledger.open_batch(client, currency).is_some());
        }
        batches += u64::try_from(ledger.batches(client, 0, usize::MAX).len()).unwrap_or(u64::MAX);
    }
    crate::check_json(per, batches, open)
}

/// Bytes of the log up to its end (segment headers and frames), found by reading it
/// back after the run.
fn log_bytes(dir: &Path) -> Result<u64, String> {
    let log = ledger_store::Log::open(dir, ledger_store::LogOptions::new()).map_err(|e| format!("reopening: {e}"))?;
    let mut cursor = log.reader().cursor(log.first_seq()).map_err(|e| format!("reading the log: {e}"))?;
    let mut bytes = 0u64;
    while let Some(frame) = cursor.next() {
        let frame = frame.map_err(|e| format!("reading the log: {e}"))?;
        bytes += u64::try_from(frame_bytes(frame.payload.len())).unwrap_or(u64::MAX);
    }
    drop(cursor);
    let headers = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .count();
    Ok(bytes + u64::try_from(headers * SEGMENT_HEADER_BYTES).unwrap_or(u64::MAX))
}

/// Bytes of the files that are not log segments (snapshots, the lock file).
fn other_file_bytes(dir: &Path) -> Result<u64, String> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
        if !entry.file_name().to_string_lossy().ends_with(".seg") {
            bytes += entry.metadata().map_err(|e| format!("{}: {e}", entry.path().display()))?.len();
        }
    }
    Ok(bytes)
}

/// How the engine is run.
pub(crate) struct Settings {
    pub(crate) durability: Durability,
    pub(crate) snapshot_every_records: u64,
    /// Calls given to it before the oldest is waited for.
    pub(crate) in_flight: usize,
}

pub(crate) fn run(
    name: &str,
    settings: &Settings,
    workload: &Workload,
    calls: &[Call],
    dir: &Path,
    bar: &ProgressBar,
) -> Result<Value, String> {
    let &Settings { durability, snapshot_every_records, in_flight } = settings;
    let transactions = calls.iter().map(|c| c.len).sum::<u64>();
    let options = LedgerOptions {
        durability,
        snapshot_every_records,
        transactions_hint: usize::try_from(transactions).unwrap_or(0),
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(dir, options).map_err(|e| format!("opening the engine in {}: {e}", dir.display()))?;
    let mut engine = Engine { ledger: &ledger, accounts: workload.accounts(), sent: VecDeque::new() };
    let measured = run::drive(&mut engine, workload, calls, in_flight, bar)?;
    bar.finish_and_clear();
    let check = check(&ledger, workload);
    ledger.close().map_err(|e| format!("closing the engine: {e}"))?;
    drop(ledger);
    let peak_rss_kib = run::status_kib("VmHWM:").unwrap_or(0);
    let disk = run::disk_usage(dir)?;
    let log_bytes = log_bytes(dir)?;
    let used_bytes = log_bytes + other_file_bytes(dir)?;
    let notes = format!(
        "ledger-core {durability:?}: group commit of each call (fdatasync{}), {in_flight} call(s) in flight, \
         64 MiB preallocated segments, snapshot every {} records, transactions_hint {}",
        if durability == Durability::None { " skipped" } else { " of the segment" },
        options.snapshot_every_records,
        options.transactions_hint,
    );
    Ok(run::report(name, &measured, End { check, peak_rss_kib, disk, used_bytes, log_bytes: Some(log_bytes), notes }))
}
