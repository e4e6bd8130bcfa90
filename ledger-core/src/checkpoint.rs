//! Checkpoints: what the engine writes so that opening replays only the log after one,
//! at a cost proportional to what changed since the last one, never to history.
//!
//! A checkpoint at seq K is taken between groups: the sequencer freezes the hot tier
//! (the transactions committed since the previous checkpoint, plus the older payments
//! whose state changed meanwhile) and copies the books (batches, open batches,
//! balances); a background thread then writes the frozen tier as one new cold run
//! (`ledger_store::table`), writes the checkpoint file (the books and the list of runs,
//! through the log's snapshot files: atomic and verified with BLAKE3) and only then
//! swaps the frozen tier for the new run in the state readers see. A failed attempt is
//! reported ([`CheckpointStats`]) and retried with the same frozen tier; the log keeps
//! everything after the last good checkpoint, so nothing depends on it succeeding.
//!
//! Runs are merged by a thread of their own ([`merger`]), so that a long merge never
//! holds a checkpoint up: [`MERGE_FANIN`] adjacent runs of one size class become one
//! (newest wins on an id), installed in place of its inputs; the next checkpoint names
//! it. The list of runs is the [`Book`]'s, under its lock (taken before the state's).
//! A run file is removed only once no kept checkpoint file names it and it is not in
//! the list: so a fallback to the older checkpoint always finds its runs.
//!
//! Payload layout (little-endian, fixed-size rows, no offsets, so no size limit):
//! magic `LEDGCKPT`, version `u32`, 4 zero bytes, last seq, last time, next run id,
//! then four counted sections: runs (`id u64`, `entries u64`), batches (14 words
//! each), open batches (`client u64`, `currency [4]`, 4 zero, `batch u64`), balances
//! (`client u64`, `currency [4]`, 4 zero, captured, refunded, adjusted, net, settled).

use std::collections::{BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};

use hashbrown::HashMap;
use ledger_store::bloom::AtomicBloom;
use ledger_store::table::{KEY_BYTES, TableBuilder};
use ledger_store::{SnapshotWriter, Storage};
use parking_lot::{Mutex, RwLock};

use crate::cold::{Cold, Filters, IdFilter, Run, parse_run_file_name, run_file_name};
use crate::completion::Completer;
use crate::consistency;
use crate::currency::Currency;
use crate::error::SnapshotError;
use crate::model::{Balance, BatchSummary};
use crate::records::{ENTRY_BYTES, Records, Stored, key_of};
use crate::state::{Account, State};

const MAGIC: [u8; 8] = *b"LEDGCKPT";
/// Format of the payload. Version 1 was the whole-state rkyv snapshot of earlier
/// releases: it is skipped with a warning and the log replayed instead (which is the
/// migration: the log's format did not change).
const VERSION: u32 = 2;
/// Runs merged at once: when this many of the newest runs are of one size class
/// (a power of [`MERGE_FANIN`] in entries), they become one run of the next class, so a
/// lookup probes at most `MERGE_FANIN - 1` runs per class (a dozen for billions).
///
/// Eight, not four, since the filters moved into memory (`cold::Filters`): a probe of
/// one more filter is cheap there, and each transaction is rewritten by merges about
/// half as often (`ledger-bench long`, 40 M, quiet machine, one run each: overall 341 k
/// -> 366 k tx/s, merges' largest input 16.8 M -> 8.4 M entries, disk 14.0 -> 11.3 GB,
/// reopen 5.65 -> 3.82 s). Pacing merges at half duty to spare the sequencer's memory
/// bandwidth was tried too: the slowdown spread over more windows, 346 k overall.
pub(crate) const MERGE_FANIN: usize = 8;
/// Runs there must be before a first filter over all ids is built: below, probing each
/// run's filter costs about the same, and reading the runs to build it is not worth its
/// cache traffic (measured at 2 M transactions: the sequencer's CPU per transaction
/// rose with a filter built over one or two runs).
const IDS_RUNS_MIN: usize = 4;
/// The smallest filter over all ids built, in keys (small: the first builds are cheap,
/// and a small ledger's tests take the rebuild path often).
const IDS_CAPACITY_MIN: u64 = 1 << 10;
/// Rows gathered at a time when a run is built (see `build_run`).
const GATHER_ROWS: usize = 4096;

/// The books of a checkpoint: everything but the transactions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Books {
    pub(crate) last_seq: u64,
    pub(crate) last_ts: u64,
    pub(crate) batches: Vec<BatchSummary>,
    pub(crate) open: HashMap<Account, u64>,
    pub(crate) balances: HashMap<Account, Balance>,
}

impl Books {
    pub(crate) fn of(state: &State) -> Books {
        Books {
            last_seq: state.last_seq,
            last_ts: state.last_ts,
            batches: state.batches.clone(),
            open: state.open.clone(),
            balances: state.balances.clone(),
        }
    }
}

/// How checkpoints have gone, for operators and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints written since open.
    pub written: u64,
    /// Attempts that failed (each reported here and retried).
    pub failures: u64,
    /// The last failure's message, until a checkpoint succeeds again.
    pub last_error: Option<String>,
    /// Seq the newest checkpoint covers (0: none yet).
    pub seq: u64,
    /// How long the newest one took on its thread (run, merges, file).
    pub duration: Duration,
    /// Bytes of the newest run written (0 when it had no transaction).
    pub run_bytes: u64,
    /// Bytes of the newest checkpoint file's payload.
    pub file_bytes: u64,
    /// Run merges done since open, and the entries they wrote.
    pub merges: u64,
    pub merged_entries: u64,
    /// Builds of the Bloom filter over all runs' ids completed since open (the first
    /// after open, then one each time the runs double).
    pub id_filter_builds: u64,
    /// Merges that failed (each reported in `last_merge_error` and tried again later),
    /// and failed builds of the filter over all ids (reported the same way).
    pub merge_failures: u64,
    pub last_merge_error: Option<String>,
    /// Removals of unreferenced run files, or of log segments the oldest kept
    /// checkpoint covers, that failed after a checkpoint was installed (tried again
    /// after the next one, and at open).
    pub cleanup_failures: u64,
    pub last_cleanup_error: Option<String>,
    /// Log segments removed since open because the oldest kept checkpoint covers them.
    pub segments_removed: u64,
}

/// Upper bounds (seconds) of the buckets of [`CommitStats::sync_buckets`]; a last,
/// unbounded bucket follows.
pub const SYNC_BUCKET_BOUNDS: [f64; 12] = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0];

/// How group commits have gone since open, for operators (portal-svc's `/metrics`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitStats {
    /// Groups committed (each one write and, when durable, one sync of the log).
    pub groups: u64,
    /// Records those groups held, and the most one held.
    pub records: u64,
    pub group_records_max: u64,
    /// How long each group's commit (write and sync) took: counts per bucket of
    /// [`SYNC_BUCKET_BOUNDS`] (not cumulative), the last for anything slower, and the
    /// sum in seconds.
    pub sync_buckets: [u64; SYNC_BUCKET_BOUNDS.len() + 1],
    pub sync_seconds: f64,
}

impl CommitStats {
    pub(crate) fn record(&mut self, records: u64, took: Duration) {
        self.groups += 1;
        self.records += records;
        self.group_records_max = self.group_records_max.max(records);
        let secs = took.as_secs_f64();
        let bucket = SYNC_BUCKET_BOUNDS.iter().position(|&bound| secs <= bound).unwrap_or(SYNC_BUCKET_BOUNDS.len());
        self.sync_buckets[bucket] += 1;
        self.sync_seconds += secs;
    }
}

/// State shared by the sequencer, its checkpoint threads and the merger.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) next_run_id: u64,
    /// Run ids of the checkpoints on disk, oldest first (at most the two kept).
    /// Each as `(seq, run ids)`: one entry per checkpoint file, as the files are named
    /// by seq (a second checkpoint at the same seq replaces the first's file, and its
    /// entry here: counting it twice once pushed the older file's runs out while the
    /// file stayed on disk, which the simulation found).
    pub(crate) kept: VecDeque<(u64, Vec<u64>)>,
    /// The runs, newest first: what the next checkpoint names and the state reads.
    pub(crate) runs: Vec<Arc<Run>>,
    /// The id of the run a merge is writing, if one is.
    pub(crate) merging: Option<u64>,
    pub(crate) stats: CheckpointStats,
    /// Group commits (counted by the sequencer; here for the same lock-free-enough
    /// reason: one short lock per group).
    pub(crate) commits: CommitStats,
    /// The memory budget of the runs' Bloom filters (see `cold::Filters`).
    pub(crate) filters: Arc<Filters>,
    /// The filter over every run's ids that the state uses, if one is built: every run
    /// in `runs` has its ids in it ([`Run::filtered`] at least its generation).
    pub(crate) ids: Option<Arc<IdFilter>>,
    /// The larger one the merger is building, if it is (checkpoints add their runs'
    /// ids to it too), and the last generation handed out.
    pub(crate) ids_building: Option<Arc<IdFilter>>,
    pub(crate) ids_generation: u64,
}

impl Book {
    fn take_run_id(&mut self) -> u64 {
        self.next_run_id += 1;
        self.next_run_id
    }

    /// The cold tier the state reads: the runs and the filter over their ids.
    pub(crate) fn cold(&self) -> Cold {
        Cold { runs: self.runs.clone(), ids: self.ids.clone() }
    }

    /// The capacity of the filter over all ids to build now, if one is due: none yet
    /// once there are [`IDS_RUNS_MIN`] runs, or the runs' entries past its capacity. Sized for twice
    /// the entries (so it is rebuilt at doublings: every id is read again about twice
    /// over a ledger's life) and at most the filters' memory budget; past that, the
    /// filter at the budget stays and lets more absent ids through as the runs grow.
    fn ids_due(&self) -> Option<u64> {
        let entries: u64 = self.runs.iter().map(|r| r.table.len() as u64).sum();
        let have = self.ids.as_ref().map_or(0, |f| f.bloom.capacity());
        if entries <= have || (self.ids.is_none() && self.runs.len() < IDS_RUNS_MIN) {
            return None;
        }
        let budget = self.filters.max() * 8 / ledger_store::table::BLOOM_BITS_PER_KEY as u64;
        let want = (entries * 2).max(IDS_CAPACITY_MIN).min(budget);
        (want > have).then_some(want)
    }

    /// Run ids that must stay on disk: named by a kept checkpoint, in the list, or
    /// being written by a merge.
    fn keep(&self) -> BTreeSet<u64> {
        let mut keep: BTreeSet<u64> = self.kept.iter().flat_map(|(_, ids)| ids).copied().collect();
        keep.extend(self.runs.iter().map(|r| r.id));
        keep.extend(self.merging);
        keep
    }
}

/// One checkpoint to write: the frozen tier and the books at `books.last_seq`.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) frozen: Arc<Records>,
    pub(crate) books: Books,
}

/// What a failed job hands back so that it can be retried.
pub(crate) type Failed = Box<(Job, String)>;

/// Everything a job's thread needs.
pub(crate) struct Context {
    pub(crate) writer: SnapshotWriter,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) book: Arc<Mutex<Book>>,
    /// Wakes the merger after a new run (none: no merger thread could be started).
    pub(crate) merger: Option<Sender<()>>,
}

/// Writes `job` and installs it; completes `asked` with the seq covered or the error.
/// Never panics: a panic inside is caught and reported as a failure, with the job
/// handed back for a retry.
pub(crate) fn run(job: Job, cx: &Context, asked: Vec<Completer<Result<u64, SnapshotError>>>) -> Result<u64, Failed> {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| write(&job, cx)))
        .unwrap_or_else(|panic| Err(format!("checkpoint thread panicked: {}", panic_message(&panic))));
    let mut book = cx.book.lock();
    match result {
        Ok(written) => {
            book.stats.written += 1;
            book.stats.last_error = None;
            book.stats.seq = job.books.last_seq;
            book.stats.duration = started.elapsed();
            book.stats.run_bytes = written.run_bytes;
            book.stats.file_bytes = written.file_bytes;
            drop(book);
            if let Some(merger) = &cx.merger {
                let _ = merger.try_send(()); // a wake-up already pending is as good
            }
            for done in asked {
                done.complete(Ok(job.books.last_seq));
            }
            Ok(job.books.last_seq)
        }
        Err(e) => {
            book.stats.failures += 1;
            book.stats.last_error = Some(e.clone());
            drop(book);
            for done in asked {
                done.complete(Err(SnapshotError::Write(e.clone())));
            }
            Err(Box::new((job, e)))
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

struct Written {
    run_bytes: u64,
    file_bytes: u64,
}

fn write(job: &Job, cx: &Context) -> Result<Written, String> {
    let dir = cx.writer.dir().to_path_buf();
    let storage = cx.writer.storage().clone();
    let mut run = None;
    let mut run_bytes = 0;
    if job.frozen.len() + job.frozen.promoted_len() > 0 {
        let (id, filters, ids) = {
            let mut book = cx.book.lock();
            let ids: Vec<Arc<IdFilter>> = book.ids.iter().chain(&book.ids_building).cloned().collect();
            (book.take_run_id(), Arc::clone(&book.filters), ids)
        };
        let built = build_run(&job.frozen, &storage, &dir, id, &filters, &ids)?;
        run_bytes = built.table.file_bytes();
        run = Some(Arc::new(built));
    }
    let mut book = cx.book.lock();
    let added = run.is_some();
    if let Some(run) = run {
        // A filter the merger finished meanwhile has not seen this run (rare: a build
        // takes seconds, a run is added every checkpoint): its ids go in before the
        // state reads the run through it.
        if let Some(ids) = &book.ids {
            add_ids(ids, &run, &AtomicBool::new(false))?;
        }
        book.runs.insert(0, run);
    }
    let ids: Vec<u64> = book.runs.iter().map(|r| r.id).collect();
    let entries: Vec<u64> = book.runs.iter().map(|r| r.table.len() as u64).collect();
    let payload = encode(&job.books, &ids, &entries, book.next_run_id);
    if let Err(e) = cx.writer.write(job.books.last_seq, &payload) {
        if added {
            book.runs.remove(0); // not named by any checkpoint: the retry builds it again
        }
        return Err(format!("writing the checkpoint: {e}"));
    }
    {
        let mut state = cx.state.write();
        let ours = state.frozen.as_ref().is_some_and(|f| Arc::ptr_eq(f, &job.frozen));
        assert!(ours, "the frozen tier a checkpoint writes is the state's until it is installed");
        state.cold = book.cold();
        state.frozen = None;
    }
    if book.kept.back().is_some_and(|(seq, _)| *seq == job.books.last_seq) {
        book.kept.pop_back(); // the same file, written again
    }
    book.kept.push_back((job.books.last_seq, ids));
    while book.kept.len() > ledger_store::SNAPSHOTS_KEPT {
        book.kept.pop_front();
    }
    // Runs that no kept checkpoint names are removed: merged away, or from a failed try.
    // The checkpoint is installed by now: a failed removal is reported, not a failure
    // (the files go at the next checkpoint, or at open).
    let keep = book.keep();
    if let Err(e) = remove_unreferenced_runs(&storage, &dir, &keep, false) {
        book.stats.cleanup_failures += 1;
        book.stats.last_cleanup_error = Some(format!("removing old runs: {e}"));
    }
    drop(book);
    Ok(Written { run_bytes, file_bytes: payload.len() as u64 })
}

/// Which runs to merge now, if any: the first [`MERGE_FANIN`] of the first (newest)
/// stretch of at least that many adjacent runs of one size class (a power of
/// [`MERGE_FANIN`] in entries).
pub(crate) fn mergeable(runs: &[Arc<Run>]) -> Option<std::ops::Range<usize>> {
    let class = |r: &Arc<Run>| (r.table.len().max(1) as u64).ilog(MERGE_FANIN as u64);
    let mut start = 0;
    while start < runs.len() {
        let c = class(&runs[start]);
        let len = runs[start..].iter().take_while(|r| class(r) == c).count();
        if len >= MERGE_FANIN {
            return Some(start..start + MERGE_FANIN);
        }
        start += len;
    }
    None
}

/// What the merger needs.
pub(crate) struct Merger {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Storage,
    pub(crate) state: Arc<RwLock<State>>,
    pub(crate) book: Arc<Mutex<Book>>,
    /// Set when the ledger closes or is dropped: a merge in progress gives up.
    pub(crate) stop: Arc<AtomicBool>,
}

/// The merger's thread: after each wake-up, merges while [`mergeable`] finds runs to
/// merge; ends when its wake-up channel closes or `stop` is set. A failed merge is
/// counted and reported in the stats and tried again at the next wake-up; it never
/// ends the thread.
pub(crate) fn merger(m: &Merger, wake: &Receiver<()>) {
    while wake.recv().is_ok() {
        let built = catch_unwind(AssertUnwindSafe(|| build_ids(m)))
            .unwrap_or_else(|panic| Err(format!("building the id filter panicked: {}", panic_message(&panic))));
        if let Err(e) = built {
            let mut book = m.book.lock();
            book.ids_building = None;
            if !m.stop.load(Ordering::Acquire) {
                book.stats.merge_failures += 1;
                book.stats.last_merge_error = Some(e);
            }
        }
        scrub(m);
        loop {
            if m.stop.load(Ordering::Acquire) {
                return;
            }
            let result = catch_unwind(AssertUnwindSafe(|| merge_once(m)))
                .unwrap_or_else(|panic| Err(format!("merge panicked: {}", panic_message(&panic))));
            match result {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let mut book = m.book.lock();
                    book.merging = None;
                    if !m.stop.load(Ordering::Acquire) {
                        book.stats.merge_failures += 1;
                        book.stats.last_merge_error = Some(e);
                    }
                    break;
                }
            }
        }
    }
}

/// Adds the ids of `run` to `filter` (unless it has them) and marks the run as in it;
/// false when `stop` was set first.
fn add_ids(filter: &IdFilter, run: &Run, stop: &AtomicBool) -> Result<bool, String> {
    if run.filtered.load(Ordering::Acquire) >= filter.generation {
        return Ok(true);
    }
    if !filter.bloom.insert_table(&run.table, stop).map_err(|e| format!("adding a run's ids to the id filter: {e}"))? {
        return Ok(false);
    }
    run.filtered.fetch_max(filter.generation, Ordering::AcqRel);
    Ok(true)
}

/// Builds the filter over all ids when one is due ([`Book::ids_due`]) and installs it:
/// reads the keys of every run the book lists, again until every run listed has its
/// ids in it (a merge's output has its inputs', a checkpoint adds its new run's), then
/// swaps it in under the book's lock. Gives up, `Ok`, when the ledger closes.
fn build_ids(m: &Merger) -> Result<(), String> {
    let filter = {
        let mut book = m.book.lock();
        let Some(capacity) = book.ids_due() else { return Ok(()) };
        book.ids_generation += 1;
        let bloom = AtomicBloom::with_capacity(capacity).map_err(|e| format!("memory for the id filter: {e}"))?;
        let filter = Arc::new(IdFilter { bloom, generation: book.ids_generation });
        book.ids_building = Some(Arc::clone(&filter));
        filter
    };
    loop {
        // One run at a time, not a list of them: a run a merge replaced meanwhile would
        // be kept alive by the list, and with it the memory of its own filter, which
        // the merge's output was given on the understanding that the inputs go (the
        // likely cause of anonymous memory reaching 1.2 GiB instead of 0.5 in a run
        // where other processes starved the build of CPU).
        let run = {
            let mut book = m.book.lock();
            match book.runs.iter().find(|r| r.filtered.load(Ordering::Acquire) < filter.generation) {
                Some(run) => Arc::clone(run),
                None => {
                    book.ids = Some(Arc::clone(&filter));
                    book.ids_building = None;
                    book.stats.id_filter_builds += 1;
                    m.state.write().cold = book.cold();
                    return Ok(());
                }
            }
        };
        if !add_ids(&filter, &run, &m.stop)? {
            m.book.lock().ids_building = None;
            return Ok(()); // closing
        }
    }
}

/// Verifies the chunks of the runs opened lazily at open that no read verified yet
/// (`Table::verify_rest`), newest run first, until done or `stop`. Damage is kept in
/// the run's table, where the sequencer finds it before it commits its next group.
fn scrub(m: &Merger) {
    let runs = m.book.lock().runs.clone();
    for run in runs {
        if run.table.unverified_bytes() > 0 && matches!(run.table.verify_rest(&m.stop), Ok(false)) {
            return; // stopping
        }
    }
}

/// Merges one set of runs and installs the result; false when there was none to merge.
pub(crate) fn merge_once(m: &Merger) -> Result<bool, String> {
    let (inputs, id, filters) = {
        let mut book = m.book.lock();
        let Some(range) = mergeable(&book.runs) else { return Ok(false) };
        let id = book.take_run_id();
        book.merging = Some(id);
        (book.runs[range].to_vec(), id, Arc::clone(&book.filters))
    };
    let merged = merge_runs(&inputs, &m.storage, &m.dir, id, &m.stop, &filters)?;
    if let Some(damage) = inputs.iter().find_map(|r| r.table.damage()) {
        // Zeroes stood in for the damaged chunk: the merged run is not installed (its
        // file goes with the next checkpoint's clean-up).
        return Err(format!("a merge read a damaged run: {damage}"));
    }
    let entries = merged.table.len() as u64;
    let mut book = m.book.lock();
    book.merging = None;
    // The merged run holds its inputs' ids: it is in every filter they all are in.
    let filtered = inputs.iter().map(|r| r.filtered.load(Ordering::Acquire)).min().unwrap_or(0);
    merged.filtered.store(filtered, Ordering::Release);
    // Checkpoints only add runs at the front, so the inputs are still adjacent.
    let at = book.runs.iter().position(|r| Arc::ptr_eq(r, &inputs[0])).ok_or("merged runs vanished")?;
    let still = book.runs[at..].iter().zip(&inputs).filter(|(a, b)| Arc::ptr_eq(a, b)).count() == inputs.len();
    assert!(still, "the runs a merge read are still adjacent in the list");
    book.runs.splice(at..at + inputs.len(), [Arc::new(merged)]);
    book.stats.merges += 1;
    book.stats.merged_entries += entries;
    m.state.write().cold = book.cold();
    Ok(true)
}

/// Writes the frozen tier as run `id`: its rows and promoted rows sorted by id, and the
/// client index (client, seq, commit time).
/// Its ids go into `id_filters` (the filters over all ids) as its entries are written, from
/// the rows already in cache: reading the written run back for them streamed every
/// checkpoint's hundred-odd megabytes through the cache the sequencer works in.
fn build_run(
    frozen: &Records,
    storage: &Storage,
    dir: &Path,
    id: u64,
    filters: &Arc<Filters>,
    id_filters: &[Arc<IdFilter>],
) -> Result<Run, String> {
    let rows: Vec<&Stored> = frozen.rows().iter().chain(frozen.promoted()).collect();
    // Sorted as plain numbers with the row's position beside them: comparisons never
    // chase a pointer into the rows (measured: sorting the rows by reference took a
    // third of the checkpoint thread's time).
    let numeric = |r: &Stored| (u128::from(r.id().hi()) << 64) | u128::from(r.id().lo());
    let mut by_id: Vec<(u128, u32)> = rows.iter().zip(0u32..).map(|(r, i)| (numeric(r), i)).collect();
    by_id.sort_unstable();
    let name = run_file_name(id);
    let mut builder = TableBuilder::create(storage, dir, &name, ENTRY_BYTES, rows.len() as u64)
        .map_err(|e| format!("creating run {name}: {e}"))?;
    // The rows are read in id order, a cache (and TLB) miss each: gathered a block at a
    // time in a tight loop whose loads do not depend on each other, so the CPU overlaps
    // the misses, then encoded from the block (measured: encoding straight from the
    // scattered rows took 60% of the checkpoint thread's time).
    let mut block: Vec<Stored> = Vec::with_capacity(GATHER_ROWS);
    // The filters over all ids get this run's ids, their random blocks prefetched ahead.
    let mut inserters: Vec<_> = id_filters.iter().map(|f| f.bloom.inserter()).collect();
    for ids in by_id.chunks(GATHER_ROWS) {
        block.clear();
        block.extend(ids.iter().map(|&(_, i)| *rows[i as usize]));
        for row in &block {
            let entry = row.entry();
            if !inserters.is_empty() {
                let mut key = [0u8; KEY_BYTES];
                key.copy_from_slice(&entry[..KEY_BYTES]);
                let hash = ledger_store::table::key_hash(&key);
                inserters.iter_mut().for_each(|f| f.insert_hashed(hash));
            }
            builder.push_entry(&entry).map_err(|e| e.to_string())?;
        }
    }
    drop(inserters); // every id is in the filters now, before the run is published
    drop(by_id);
    // Everything the client index needs rides in the sorted tuples: no row is read.
    let mut by_client: Vec<(u64, u64, u64, u128)> =
        rows.iter().map(|r| (r.client_id, r.seq, r.timestamp_ns, numeric(r))).collect();
    by_client.sort_unstable_by_key(|&(client, seq, _, _)| (client, seq));
    for &(client, seq, ts, id) in &by_client {
        builder.push_secondary(client, seq, ts, &id.to_be_bytes()).map_err(|e| e.to_string())?;
    }
    drop(by_client);
    // The second index finds a payment's captures, voids and refunds: (the hash of the
    // ref's key, seq, time, id); a hash shared by two refs is told apart on lookup.
    let mut refs: Vec<(u64, u64, u64, [u8; KEY_BYTES])> = rows
        .iter()
        .filter(|r| !r.ref_id().is_none())
        .map(|r| (ref_group(r.ref_id()), r.seq, r.timestamp_ns, key_of(r.id())))
        .collect();
    refs.sort_unstable_by_key(|&(g, seq, _, _)| (g, seq));
    for (g, seq, ts, key) in &refs {
        builder.push_second(*g, *seq, *ts, key).map_err(|e| e.to_string())?;
    }
    let info = builder.finish().map_err(|e| e.to_string())?;
    let run = open_written_run(&info, id, filters, 0)?;
    run.filtered.store(id_filters.iter().map(|f| f.generation).max().unwrap_or(0), Ordering::Release);
    Ok(run)
}

/// Merges `inputs` (newest first) into run `id`: on an id in several, the newest wins.
/// Gives up (removing its unfinished file) when `stop` is set.
fn merge_runs(
    inputs: &[Arc<Run>],
    storage: &Storage,
    dir: &Path,
    id: u64,
    stop: &AtomicBool,
    filters: &Arc<Filters>,
) -> Result<Run, String> {
    let upper: u64 = inputs.iter().map(|r| r.table.len() as u64).sum();
    let name = run_file_name(id);
    let mut builder = TableBuilder::create(storage, dir, &name, ENTRY_BYTES, upper)
        .map_err(|e| format!("creating run {name}: {e}"))?;
    // k-way merge by key; k is MERGE_FANIN, so a linear scan for the smallest is enough.
    // Each input's current key is held as a big-endian integer (ordered as the bytes
    // are) and read again only when that input advances: an entry is read twice (its
    // key, then the copy), not twice per input per output entry.
    let head = |run: &Run, pos: usize| {
        (pos < run.table.len()).then(|| {
            let mut key = [0u8; KEY_BYTES];
            key.copy_from_slice(&run.table.entry(pos)[..KEY_BYTES]);
            u128::from_be_bytes(key)
        })
    };
    let mut at = vec![0usize; inputs.len()];
    let mut heads: Vec<Option<u128>> = inputs.iter().map(|run| head(run, 0)).collect();
    loop {
        let mut best: Option<(usize, u128)> = None;
        for (i, key) in heads.iter().enumerate() {
            if let Some(key) = *key
                && best.is_none_or(|(_, b)| key < b)
            {
                best = Some((i, key)); // ties keep the earlier (newer) input
            }
        }
        let Some((i, key)) = best else { break };
        if builder.entries().is_multiple_of(1 << 16) && stop.load(Ordering::Acquire) {
            return Err("stopped: the ledger is closing".into());
        }
        builder.push_entry(inputs[i].table.entry(at[i])).map_err(|e| e.to_string())?;
        for (j, run) in inputs.iter().enumerate() {
            if heads[j] == Some(key) {
                at[j] += 1;
                heads[j] = head(run, at[j]);
            }
        }
    }
    // Each secondary index is merged on its own: by (group, order), a copy of one
    // transaction in several inputs (a promoted payment) written once.
    let first: Vec<std::ops::Range<usize>> =
        inputs.iter().map(|r| 0..r.table.secondary_len() - r.table.second_len()).collect();
    let second: Vec<std::ops::Range<usize>> =
        inputs.iter().map(|r| r.table.secondary_len() - r.table.second_len()..r.table.secondary_len()).collect();
    merge_index(inputs, first, |g, o, a, k| builder.push_secondary(g, o, a, k))?;
    merge_index(inputs, second, |g, o, a, k| builder.push_second(g, o, a, k))?;
    let info = builder.finish().map_err(|e| e.to_string())?;
    // The inputs give their filters' memory back once the merged run replaces them.
    open_written_run(&info, id, filters, inputs.iter().map(|r| r.filter_memory()).sum())
}

/// k-way merge of one secondary index of `inputs` (its positions in each), by
/// `(group, order)`, equal ones written once.
fn merge_index(
    inputs: &[Arc<Run>],
    mut at: Vec<std::ops::Range<usize>>,
    mut push: impl FnMut(u64, u64, u64, &[u8; KEY_BYTES]) -> Result<(), ledger_store::table::TableError>,
) -> Result<(), String> {
    // As for the entries: each input's current (group, order), read when it advances.
    let head = |run: &Run, at: &std::ops::Range<usize>| {
        at.clone().next().map(|pos| {
            let (g, o, _, _) = run.table.secondary_at(pos);
            (g, o)
        })
    };
    let mut heads: Vec<Option<(u64, u64)>> = inputs.iter().zip(&at).map(|(run, at)| head(run, at)).collect();
    loop {
        let mut best: Option<(usize, (u64, u64))> = None;
        for (i, key) in heads.iter().enumerate() {
            if let Some(key) = *key
                && best.is_none_or(|(_, b)| key < b)
            {
                best = Some((i, key));
            }
        }
        let Some((i, (g, o))) = best else { return Ok(()) };
        let (_, _, aux, key) = inputs[i].table.secondary_at(at[i].start);
        push(g, o, aux, &key).map_err(|e| e.to_string())?;
        for (j, run) in inputs.iter().enumerate() {
            if heads[j] == Some((g, o)) {
                at[j].start += 1;
                heads[j] = head(run, &at[j]);
            }
        }
    }
}

/// Maps run `id` just written (its chunks were hashed as they were written).
fn open_written_run(
    info: &ledger_store::table::TableInfo,
    id: u64,
    filters: &Arc<Filters>,
    releasing: u64,
) -> Result<Run, String> {
    let table = ledger_store::table::Table::open_written(info).map_err(|e| e.to_string())?;
    Ok(Run::new(id, table, filters, releasing))
}

/// The group of a payment's follow-ups in a run's second index.
pub(crate) fn ref_group(payment: crate::model::TxId) -> u64 {
    ledger_store::table::key_hash(&key_of(payment))
}

/// Opens run `id` at `path`, its chunks to be verified as they are read (see
/// `Table::open_lazy`, and [`scrub`] for the others): reopening costs the same whatever
/// history the runs hold.
pub(crate) fn open_run(path: &Path, id: u64, filters: &Arc<Filters>) -> Result<Run, String> {
    let table = ledger_store::table::Table::open_lazy(path).map_err(|e| e.to_string())?;
    Ok(Run::new(id, table, filters, 0))
}

/// Removes run files of `dir` that `keep` does not name, and (at open, `unfinished`)
/// the temporary files of runs a crash interrupted.
pub(crate) fn remove_unreferenced_runs(
    storage: &Storage,
    dir: &Path,
    keep: &BTreeSet<u64>,
    unfinished: bool,
) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let temporary = unfinished && name.starts_with("run-") && name.ends_with(".tbl.tmp");
        let stale = parse_run_file_name(name).is_some_and(|id| !keep.contains(&id));
        if temporary || stale {
            ledger_store::table::remove_table(storage, &entry.path()).map_err(std::io::Error::other)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A checkpoint as read back.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) books: Books,
    pub(crate) runs: Vec<(u64, u64)>,
    pub(crate) next_run_id: u64,
}

fn put(out: &mut Vec<u8>, w: u64) {
    out.extend_from_slice(&w.to_le_bytes());
}

fn put_account(out: &mut Vec<u8>, (client, currency): Account) {
    put(out, client);
    out.extend_from_slice(&currency.c_bytes());
    out.extend_from_slice(&[0; 4]);
}

pub(crate) fn encode(books: &Books, run_ids: &[u64], run_entries: &[u64], next_run_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + run_ids.len() * 16 + books.batches.len() * 112 + books.balances.len() * 56);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for w in [books.last_seq, books.last_ts, next_run_id, run_ids.len() as u64] {
        put(&mut out, w);
    }
    for (id, entries) in run_ids.iter().zip(run_entries) {
        put(&mut out, *id);
        put(&mut out, *entries);
    }
    put(&mut out, books.batches.len() as u64);
    for b in &books.batches {
        put(&mut out, b.batch_id);
        put_account(&mut out, (b.client_id, b.currency));
        for w in
            [b.first_seq, b.last_seq, b.opened_ns, b.closed_ns, b.payment_count, b.refund_count, b.adjustment_count]
        {
            put(&mut out, w);
        }
        for v in [b.payment_total, b.refund_total, b.adjustment_total, b.net] {
            put(&mut out, v as u64);
        }
    }
    let mut open: Vec<(&Account, &u64)> = books.open.iter().collect();
    open.sort_unstable_by_key(|(_, id)| **id);
    put(&mut out, open.len() as u64);
    for (account, id) in open {
        put_account(&mut out, *account);
        put(&mut out, *id);
    }
    let mut balances: Vec<(&Account, &Balance)> = books.balances.iter().collect();
    balances.sort_unstable_by_key(|(a, _)| (a.0, a.1.c_bytes()));
    put(&mut out, balances.len() as u64);
    for (account, b) in balances {
        put_account(&mut out, *account);
        for v in [b.captured, b.refunded, b.adjusted, b.net, b.settled_net] {
            put(&mut out, v as u64);
        }
    }
    out
}

/// Reads fixed-size little-endian words off a payload, refusing to read past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.bytes.len() < n {
            return Err("checkpoint payload cut short".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn word(&mut self) -> Result<u64, String> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }

    fn count(&mut self, row_bytes: usize) -> Result<usize, String> {
        let n = self.word()?;
        let fits = usize::try_from(n).ok().filter(|n| n.checked_mul(row_bytes).is_some_and(|b| b <= self.bytes.len()));
        fits.ok_or_else(|| "checkpoint section longer than the payload".into())
    }

    fn account(&mut self) -> Result<Account, String> {
        let client = self.word()?;
        let mut c = [0u8; 4];
        c.copy_from_slice(self.take(4)?);
        if self.take(4)? != [0; 4] {
            return Err("checkpoint padding is not zero".into());
        }
        Ok((client, Currency::from_c_bytes(c).ok_or("unknown currency in checkpoint")?))
    }
}

pub(crate) fn decode(payload: &[u8], seq: u64) -> Result<Decoded, String> {
    let mut r = Reader { bytes: payload };
    if r.take(8)? != MAGIC {
        return Err("not a checkpoint (an earlier release's snapshot?)".into());
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(r.take(4)?);
    if u32::from_le_bytes(v) != VERSION {
        return Err(format!("checkpoint version {} is not {VERSION}", u32::from_le_bytes(v)));
    }
    r.take(4)?;
    let (last_seq, last_ts, next_run_id) = (r.word()?, r.word()?, r.word()?);
    if last_seq != seq {
        return Err("checkpoint covers another seq than its file says".into());
    }
    let mut runs = Vec::new();
    for _ in 0..r.count(16)? {
        runs.push((r.word()?, r.word()?));
    }
    if runs.iter().any(|&(id, _)| id == 0 || id > next_run_id) {
        return Err("checkpoint names a run beyond its next run id".into());
    }
    let mut books = Books { last_seq, last_ts, ..Books::default() };
    for _ in 0..r.count(112)? {
        let batch_id = r.word()?;
        let (client_id, currency) = r.account()?;
        let w: Vec<u64> = (0..11).map(|_| r.word()).collect::<Result<_, _>>()?;
        books.batches.push(BatchSummary {
            batch_id,
            client_id,
            currency,
            first_seq: w[0],
            last_seq: w[1],
            opened_ns: w[2],
            closed_ns: w[3],
            payment_count: w[4],
            refund_count: w[5],
            adjustment_count: w[6],
            payment_total: w[7] as i64,
            refund_total: w[8] as i64,
            adjustment_total: w[9] as i64,
            net: w[10] as i64,
        });
    }
    for _ in 0..r.count(24)? {
        let account = r.account()?;
        if books.open.insert(account, r.word()?).is_some() {
            return Err("checkpoint names an account's open batch twice".into());
        }
    }
    for _ in 0..r.count(56)? {
        let account = r.account()?;
        let w: Vec<u64> = (0..5).map(|_| r.word()).collect::<Result<_, _>>()?;
        let balance = Balance {
            captured: w[0] as i64,
            refunded: w[1] as i64,
            adjusted: w[2] as i64,
            net: w[3] as i64,
            settled_net: w[4] as i64,
            open_net: 0,
        };
        if books.balances.insert(account, balance).is_some() {
            return Err("checkpoint names an account's balance twice".into());
        }
    }
    if !r.bytes.is_empty() {
        return Err("checkpoint payload has bytes past its sections".into());
    }
    Ok(Decoded { books, runs, next_run_id })
}

/// The state a decoded checkpoint describes, its runs opened (and verified) from `dir`;
/// refused when a run is missing or damaged, or the books do not hang together.
pub(crate) fn load(decoded: Decoded, dir: &Path, filters: &Arc<Filters>) -> Result<State, String> {
    let mut runs = Vec::with_capacity(decoded.runs.len());
    for &(id, entries) in &decoded.runs {
        let path = dir.join(run_file_name(id));
        let run = open_run(&path, id, filters)?;
        if run.table.len() as u64 != entries {
            return Err(format!(
                "{}: holds {} entries, the checkpoint says {entries}",
                path.display(),
                run.table.len()
            ));
        }
        runs.push(Arc::new(run));
    }
    let Books { last_seq, last_ts, batches, open, balances } = decoded.books;
    let cold = Cold { runs, ids: None }; // the merger builds the filter over all ids
    let mut state = State { last_seq, last_ts, batches, open, balances, cold, ..State::default() };
    for b in &state.batches {
        state.client_batches.entry(b.client_id).or_default().push(b.batch_id);
    }
    consistency::check_books(&state).map_err(|e| format!("does not hang together: {e}"))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn books_survive_encoding_and_damage_is_refused() {
        let usd = Currency::from_code("USD").expect("USD");
        let mut books = Books { last_seq: 9, last_ts: 99, ..Books::default() };
        books.batches.push(BatchSummary {
            batch_id: 1,
            client_id: 7,
            currency: usd,
            first_seq: 1,
            last_seq: 9,
            opened_ns: 5,
            closed_ns: 0,
            payment_count: 2,
            payment_total: 300,
            refund_count: 1,
            refund_total: 50,
            adjustment_count: 0,
            adjustment_total: 0,
            net: 250,
        });
        books.open.insert((7, usd), 1);
        books.balances.insert(
            (7, usd),
            Balance { captured: 300, refunded: 50, adjusted: 0, net: 250, settled_net: 0, open_net: 0 },
        );
        let bytes = encode(&books, &[3, 5], &[10, 20], 6);
        let d = decode(&bytes, 9).expect("decodes");
        assert_eq!((d.runs.clone(), d.next_run_id), (vec![(3, 10), (5, 20)], 6));
        assert_eq!(d.books.batches, books.batches);
        assert_eq!(d.books.open, books.open);
        assert_eq!(d.books.balances, books.balances);
        assert!(decode(&bytes, 8).is_err(), "another seq");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 9).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, 9).is_err(), "trailing bytes");
        let mut huge = bytes.clone();
        huge[48..56].copy_from_slice(&u64::MAX.to_le_bytes()); // run count
        assert!(decode(&huge, 9).is_err(), "a count past the payload");
    }
}
