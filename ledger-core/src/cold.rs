//! The cold tier: the transactions that left memory, in immutable runs on disk
//! (`ledger_store::table` files, one 112-byte entry per transaction keyed by its id,
//! a secondary index by client, seq and commit time, and a Bloom filter).
//!
//! Each checkpoint writes the frozen tier as one new run; runs of about the same size
//! are merged (newest wins on an id). A lookup first probes one Bloom filter over the
//! ids of every run ([`IdFilter`]): most ids a ledger judges are new, and for them that
//! one probe is the whole cost. An id it admits probes each run's own filter, one cache
//! line each, and is searched in the runs whose filter passes. A run holds a
//! transaction as it stood when the run was written; a later capture, void or refund of
//! it is promoted into the tier in memory and written with the next run, which shadows
//! the older copy until a merge folds them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ledger_store::bloom::AtomicBloom;
use ledger_store::table::{Key, Table, key_hash};

use crate::ledger::HistoryQuery;
use crate::model::TxId;
use crate::records::{Stored, key_of};

/// File name of run `id`.
pub(crate) fn run_file_name(id: u64) -> String {
    format!("run-{id:020}.tbl")
}

/// The id of a run from its file name.
pub(crate) fn parse_run_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("run-")?.strip_suffix(".tbl")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) { digits.parse().ok() } else { None }
}

/// One run: a table and its id (runs are numbered as they are written). A run written by
/// this process was hashed as it was written; one opened from disk is verified chunk by
/// chunk as reads first touch them, and in the background (see `checkpoint::scrub`).
/// Reads of a damaged chunk get zeroes and leave the damage in the table, which every
/// judging path checks ([`Cold::damage`]) before it commits or applies anything.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) table: Table,
    /// The memory its Bloom filter holds, when [`Filters`] let it copy the filter.
    lease: Option<Lease>,
    /// The newest [`IdFilter`] generation known to hold every id of this run (0: none).
    pub(crate) filtered: AtomicU64,
}

impl Run {
    /// A run over `table`, its filter copied into memory if `filters` has room for it,
    /// counting `releasing` bytes that runs about to be dropped give back (a merge's
    /// inputs): a merged run is not left reading its filter from the file for the
    /// moment its inputs still hold theirs.
    pub(crate) fn new(id: u64, mut table: Table, filters: &Arc<Filters>, releasing: u64) -> Run {
        let lease = filters.admit(table.filter_bytes() as u64, releasing).filter(|_| table.cache_filter().is_ok());
        Run { id, table, lease, filtered: AtomicU64::new(0) }
    }

    /// Bytes of memory the run's filter holds (0: read from the file).
    pub(crate) fn filter_memory(&self) -> u64 {
        self.lease.as_ref().map_or(0, |l| l.bytes)
    }
}

/// The memory a ledger lets its runs' Bloom filters take (see `Table::cache_filter`):
/// every lookup probes every run's filter, so those probes are the cold tier's hottest
/// reads. Runs beyond the budget read their filters through the file's mapping, as
/// correct, only slower; the budget keeps memory bounded by configuration however long
/// the history (a filter is 1.5 bytes per transaction: the default, half the hot tier's
/// budget, holds about 128 M transactions' worth).
#[derive(Debug, Default)]
pub(crate) struct Filters {
    max: u64,
    used: AtomicU64,
}

impl Filters {
    pub(crate) fn new(max: u64) -> Arc<Filters> {
        Arc::new(Filters { max, used: AtomicU64::new(0) })
    }

    /// The budget in bytes.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    fn admit(self: &Arc<Filters>, bytes: u64, releasing: u64) -> Option<Lease> {
        let limit = self.max.saturating_add(releasing);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= limit)
            })
            .ok()
            .map(|_| Lease { filters: Arc::clone(self), bytes })
    }
}

/// Bytes of [`Filters`] one run holds; given back when the run is dropped.
#[derive(Debug)]
struct Lease {
    filters: Arc<Filters>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.filters.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Run {
    /// The row at `pos`: an empty row when its chunk is damaged (the damage is kept in
    /// the table, and the group that read it fails: see [`Cold::damage`]).
    pub(crate) fn row(&self, pos: usize) -> Stored {
        match Stored::from_entry(self.table.entry(pos)) {
            Some(row) => row,
            None if self.table.damage().is_some() => Stored::EMPTY,
            None => panic!("{}: a verified run holds a row this version did not write", self.table.path().display()),
        }
    }
}

/// One Bloom filter over the ids of every run (in memory, sized for about twice the
/// runs' entries when built): a new id costs one probe however many runs there are.
/// Ids are never deleted and a merge keeps the ids of its inputs, so the filter only
/// grows: a checkpoint adds its new run's ids before it publishes the run, and the
/// merger builds a larger one (a new generation) in the background once the runs
/// outgrow it, by reading every run's keys; until it is built (after open, say),
/// lookups probe each run's own filter as they did without one.
#[derive(Debug)]
pub(crate) struct IdFilter {
    pub(crate) bloom: AtomicBloom,
    /// Generations are numbered from 1 as filters are built (see [`Run::filtered`]).
    pub(crate) generation: u64,
}

/// An id as the cold tier looks it up: its run key and the key's hash, computed once
/// for the stages of `State::prefetch` that each touch it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    key: Key,
    hash: u64,
}

impl Probe {
    pub(crate) fn new(id: TxId) -> Self {
        let key = key_of(id);
        Probe { key, hash: key_hash(&key) }
    }
}

/// A transaction's ids as `State::prefetch` stages them: its own and, when it has one,
/// the payment's it refers to.
pub(crate) type Ahead = (Probe, Option<Probe>);

/// The [`Ahead`] of a transaction.
pub(crate) fn ahead(id: TxId, ref_id: TxId) -> Ahead {
    (Probe::new(id), (!ref_id.is_none()).then(|| Probe::new(ref_id)))
}

/// The runs, newest first, and the filter over all their ids when there is one (it
/// holds every id of every run in `runs`: `checkpoint` keeps that true wherever a
/// `Cold` is made).
#[derive(Debug, Default, Clone)]
pub(crate) struct Cold {
    pub(crate) runs: Vec<Arc<Run>>,
    pub(crate) ids: Option<Arc<IdFilter>>,
}

impl Cold {
    /// The first damage reads (or the scrub) found in a run: anything judged from what
    /// was read since cannot be trusted.
    pub(crate) fn damage(&self) -> Option<String> {
        self.runs.iter().find_map(|run| run.table.damage()).map(|e| e.to_string())
    }

    /// Bytes of the runs not yet verified (opened lazily, not yet read or scrubbed).
    pub(crate) fn unverified_bytes(&self) -> u64 {
        self.runs.iter().map(|run| run.table.unverified_bytes()).sum()
    }

    /// The newest copy of the transaction with this id.
    pub(crate) fn get(&self, id: TxId) -> Option<Stored> {
        if self.runs.is_empty() {
            return None;
        }
        let Probe { key, hash } = Probe::new(id);
        if self.ids.as_ref().is_some_and(|ids| !ids.bloom.may_contain_hashed(hash)) {
            return None;
        }
        self.runs.iter().find_map(|run| run.table.find_hashed(&key, hash).map(|pos| run.row(pos)))
    }

    /// The first stage of `State::prefetch`: starts loading the block of the filter
    /// over all ids that this id's lookup reads first, without waiting for it; without
    /// that filter, the Bloom blocks of every run.
    pub(crate) fn prefetch_ids(&self, id: &Probe) {
        if self.runs.is_empty() {
            return;
        }
        match &self.ids {
            Some(ids) => ids.bloom.prefetch_hashed(id.hash),
            None => self.runs.iter().for_each(|run| run.table.prefetch_hashed(id.hash)),
        }
    }

    /// The second stage: when the filter over all ids admits the id (its block loaded
    /// by the first stage), starts loading the Bloom block of every run.
    pub(crate) fn prefetch_blooms(&self, id: &Probe) {
        let Some(ids) = &self.ids else { return }; // the first stage loaded them
        if ids.bloom.may_contain_hashed(id.hash) {
            self.runs.iter().for_each(|run| run.table.prefetch_hashed(id.hash));
        }
    }

    /// The later stages: in each run whose Bloom filter admits the id (newest first, up
    /// to the first that does: the lookup stops there too), runs the search's first
    /// `probe - 1` probes (loaded by the stages before) and starts loading the entry of
    /// probe number `probe`.
    pub(crate) fn prefetch_probe(&self, id: &Probe, probe: u32) {
        if self.runs.is_empty() {
            return;
        }
        if self.ids.as_ref().is_some_and(|ids| !ids.bloom.may_contain_hashed(id.hash)) {
            return;
        }
        for run in &self.runs {
            if run.table.prefetch_probe_hashed(&id.key, id.hash, probe) {
                return;
            }
        }
    }

    /// Entries over all runs (a transaction promoted into a newer run counts twice
    /// until a merge folds it).
    pub(crate) fn entries(&self) -> u64 {
        self.runs.iter().map(|r| r.table.len() as u64).sum()
    }

    /// Bytes of the run files.
    pub(crate) fn bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.table.file_bytes()).sum()
    }

    /// The ids of the transactions in each run whose ref hashes like the payment's
    /// (`checkpoint::ref_group`): its captures, voids and refunds, and now and then
    /// another payment's, which the caller tells apart by the ref.
    pub(crate) fn follow_up_candidates(&self, group: u64, out: &mut Vec<(u64, TxId)>) {
        for run in &self.runs {
            for pos in run.table.second_bounds(group, 0..u64::MAX, 0..u64::MAX) {
                let (_, seq, _, key) = run.table.secondary_at(pos);
                out.push((seq, id_of_key(&key)));
            }
        }
    }

    /// The client's `(seq, id)` in each run that the query asks for, at most its limit
    /// per run from the chosen end (the caller merges them and
    /// removes the copies of promoted transactions, which share a seq).
    pub(crate) fn client_candidates(&self, client_id: u64, query: &HistoryQuery, out: &mut Vec<(u64, TxId)>) {
        let HistoryQuery { seqs, times, newest_first, limit } = query;
        let (newest_first, limit) = (*newest_first, *limit);
        for run in &self.runs {
            let range = run.table.secondary_bounds(client_id, seqs.clone(), times.clone());
            let take = |pos: usize| {
                let (_, seq, _, key) = run.table.secondary_at(pos);
                (seq, id_of_key(&key))
            };
            if newest_first {
                out.extend(range.rev().take(limit).map(take));
            } else {
                out.extend(range.take(limit).map(take));
            }
        }
    }
}

/// The id a run's key holds (see `records::key_of`).
fn id_of_key(key: &[u8; 16]) -> TxId {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&key[..8]);
    lo.copy_from_slice(&key[8..]);
    TxId::from_parts(u64::from_be_bytes(lo), u64::from_be_bytes(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_file_names_round_trip() {
        assert_eq!(run_file_name(42), "run-00000000000000000042.tbl");
        assert_eq!(parse_run_file_name(&run_file_name(42)), Some(42));
        assert_eq!(parse_run_file_name("run-42.tbl"), None);
        assert_eq!(parse_run_file_name("run-00000000000000000042.tbl.tmp"), None);
    }
}
