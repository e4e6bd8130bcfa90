//! Read-only views of a ledger directory, for operators' tools (the `ledger` command):
//! the records of the log decoded, a checkpoint file's contents checked, and the whole
//! ledger's state as of the log's end, all without the directory's lock and without
//! changing a byte, so they work while the owning process keeps writing.
//!
//! Everything here reuses the engine's own decoders and judging code: the log's frames
//! through `ledger_store::inspect` (recovery's scan), the records through the codec,
//! a checkpoint through its decoder and the books' consistency check, and the state
//! through the same replay the engine runs when it opens.

use std::path::{Path, PathBuf};

use ledger_store::Corruption;
use ledger_store::format::TornTail;
use ledger_store::inspect::{CommittedFrameLost, InspectError, LogImage, list_snapshots, read_snapshot};

use crate::checkpoint;
use crate::codec::{self, DecodeError, Record};
use crate::currency::Currency;
use crate::model::{Balance, BatchSummary, Tx, TxId, TxOutcome, TxRecord};
use crate::state::State;

/// Records judged at a time when a view replays the log (as the engine's open does).
const REPLAY_GROUP_RECORDS: usize = 8190;
/// Memory the cold runs' Bloom filters may take in a view: beyond it they are read
/// from the files' mappings, which is as correct.
const VIEW_FILTER_BYTES_MAX: u64 = 64 << 20;
/// The first bytes of a checkpoint payload this version writes: magic, then version 2
/// (little-endian). Tested against `checkpoint::encode` below.
const CHECKPOINT_MAGIC: [u8; 8] = *b"LEDGCKPT";
const CHECKPOINT_VERSION: [u8; 4] = 2u32.to_le_bytes();
/// Reads of the log before damage is believed: a page read while the owner writes may
/// be newer than the page before it (see `ledger_store::inspect`).
pub const SCAN_ATTEMPTS_MAX: usize = 3;
/// Pause between those reads, in milliseconds.
pub const SCAN_RETRY_MS: u64 = 50;

/// The name of cold run `id`'s file in a ledger directory.
pub fn run_file_name(id: u64) -> String {
    crate::cold::run_file_name(id)
}

/// The id of a cold run from its file name (`run-NNNNNNNNNNNNNNNNNNNN.tbl`).
pub fn parse_run_file_name(name: &str) -> Option<u64> {
    crate::cold::parse_run_file_name(name)
}

/// A record of the log as committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRecord {
    /// A committed transaction, as submitted, with its commit time and batch.
    Tx {
        /// Its seq.
        seq: u64,
        /// The transaction as submitted.
        tx: Tx,
        /// Commit time, Unix ns.
        timestamp_ns: u64,
        /// The batch it counts in (0: none).
        batch_id: u64,
    },
    /// A batch close.
    BatchClose {
        /// Its seq.
        seq: u64,
        /// The client.
        client_id: u64,
        /// The currency.
        currency: Currency,
        /// The batch closed.
        batch_id: u64,
        /// Commit time of the close, Unix ns.
        timestamp_ns: u64,
    },
}

impl LogRecord {
    /// Its seq.
    pub fn seq(&self) -> u64 {
        match self {
            LogRecord::Tx { seq, .. } | LogRecord::BatchClose { seq, .. } => *seq,
        }
    }
}

/// Decodes the payload of a log frame (kind and payload as the log holds them) into
/// the record the engine wrote.
pub fn decode_record(seq: u64, kind: u16, payload: &[u8]) -> Result<LogRecord, DecodeError> {
    Ok(match codec::decode(kind, payload)? {
        Record::Tx { tx, timestamp_ns, batch_id } => LogRecord::Tx { seq, tx, timestamp_ns, batch_id },
        Record::Close { client_id, currency, batch_id, timestamp_ns } => {
            LogRecord::BatchClose { seq, client_id, currency, batch_id, timestamp_ns }
        }
    })
}

/// What a checkpoint file holds (its payload decoded and its books checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointContents {
    /// The seq it covers.
    pub seq: u64,
    /// Commit time of that seq, Unix ns.
    pub last_timestamp_ns: u64,
    /// The runs it names, newest first: `(id, entries)`.
    pub runs: Vec<(u64, u64)>,
    /// Batches in its books.
    pub batches: u64,
    /// Open batches.
    pub open_batches: u64,
    /// Balances (one per client and currency).
    pub balances: u64,
}

/// Why a checkpoint's payload is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// It is a snapshot of another format version (an earlier release's whole-state
    /// snapshot): the engine skips it with a warning and replays the log instead.
    #[error("a snapshot of another format version")]
    OtherVersion,
    /// It does not decode as a checkpoint of this version.
    #[error("does not decode: {0}")]
    Decode(String),
    /// Its books (batches, open batches, balances) do not hang together.
    #[error("does not hang together: {0}")]
    Books(String),
}

/// Decodes a checkpoint's payload (a snapshot file's, at `seq`) and checks that its
/// books hang together, without opening its runs.
pub fn decode_checkpoint(payload: &[u8], seq: u64) -> Result<CheckpointContents, CheckpointError> {
    // The payload's magic and version (`checkpoint.rs`): a snapshot file whose checksum
    // holds was written so; another version is an earlier release's, not damage.
    if payload.get(..8) != Some(CHECKPOINT_MAGIC.as_slice()) || payload.get(8..12) != Some(&CHECKPOINT_VERSION[..]) {
        return Err(CheckpointError::OtherVersion);
    }
    let decoded = checkpoint::decode(payload, seq).map_err(CheckpointError::Decode)?;
    let books = decoded.books;
    let contents = CheckpointContents {
        seq,
        last_timestamp_ns: books.last_ts,
        runs: decoded.runs,
        batches: books.batches.len() as u64,
        open_batches: books.open.len() as u64,
        balances: books.balances.len() as u64,
    };
    let mut state = State {
        last_seq: books.last_seq,
        last_ts: books.last_ts,
        batches: books.batches,
        open: books.open,
        balances: books.balances,
        ..State::default()
    };
    for b in &state.batches {
        state.client_batches.entry(b.client_id).or_default().push(b.batch_id);
    }
    crate::consistency::check_books(&state).map_err(CheckpointError::Books)?;
    Ok(contents)
}

/// Why a [`LedgerView`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The directory or a segment could not be read, or a segment header is bad.
    #[error(transparent)]
    Log(#[from] InspectError),
    /// The log holds damage that recovery refuses (found twice, so not a write in
    /// progress).
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// A frame is bad or missing and later whole commit groups prove it was committed
    /// (found twice): recovery would cut the log there and lose them.
    #[error(transparent)]
    CommittedLost(#[from] CommittedFrameLost),
    /// The log no longer starts at seq 1 and no checkpoint covers what is missing.
    #[error("{dir}: the log starts at seq {first_seq} and no usable checkpoint covers the seqs before it")]
    MissingStart {
        /// The directory.
        dir: PathBuf,
        /// The first seq the log holds.
        first_seq: u64,
    },
    /// A committed frame is not a record this version wrote.
    #[error("{segment}: record {seq} at byte {offset} does not decode: {source}")]
    Decode {
        /// The segment file.
        segment: PathBuf,
        /// The frame's offset.
        offset: u64,
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// A record did not replay to what was committed.
    #[error("{segment}: record {seq} at byte {offset} does not replay: {detail}")]
    Replay {
        /// The segment file.
        segment: PathBuf,
        /// The frame's offset.
        offset: u64,
        /// The record's seq.
        seq: u64,
        /// What differed.
        detail: String,
    },
    /// A frame that was scanned no longer reads (the file changed meanwhile).
    #[error("{0}: frame at byte {1} changed while it was read")]
    Changed(PathBuf, u64),
}

/// What a view was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewReport {
    /// The segment files, in log order, with their sizes on disk.
    pub segments: Vec<(PathBuf, u64)>,
    /// The first seq the log holds.
    pub first_seq: u64,
    /// The last committed seq found (the view is as of this seq).
    pub last_seq: u64,
    /// Bytes of frames up to it.
    pub log_bytes: u64,
    /// What lies past the last complete group: a write in progress, or a torn tail
    /// that the owner's next open would cut.
    pub torn_tail: Option<TornTail>,
    /// The checkpoint the state was loaded from, if any: the seq it covers.
    pub checkpoint_seq: Option<u64>,
    /// The checkpoint files found: seq, path and size.
    pub checkpoints: Vec<(u64, PathBuf, u64)>,
    /// Checkpoints skipped, with why.
    pub warnings: Vec<String>,
    /// Records replayed from the log after the checkpoint.
    pub replayed: u64,
}

/// A ledger's state as of the end of its log, read without the directory's lock.
#[derive(Debug)]
pub struct LedgerView {
    state: State,
    report: ViewReport,
}

/// Scans the log, reading it again (up to [`SCAN_ATTEMPTS_MAX`] times) while damage is
/// found at a place it was not found before: a page read while the owner writes. Damage
/// is what recovery refuses, or a bad frame that later whole groups prove was committed
/// (`LogImage::committed_past_end`), which recovery would cut.
pub fn scan_log(dir: &Path) -> Result<(LogImage, ledger_store::format::ScanOutcome), ViewError> {
    let mut last: Option<ViewError> = None;
    for attempt in 0..SCAN_ATTEMPTS_MAX {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(SCAN_RETRY_MS));
        }
        let image = LogImage::open(dir)?;
        let found = match image.scan() {
            Ok(outcome) => match image.committed_past_end(&outcome) {
                None => return Ok((image, outcome)),
                Some(lost) => ViewError::CommittedLost(lost),
            },
            Err(c) => ViewError::Corrupt(c),
        };
        if last.as_ref().and_then(damage_place) == damage_place(&found) {
            return Err(found);
        }
        last = Some(found);
    }
    // Every read found damage, each time at another place: report the last.
    Err(last.unwrap_or_else(|| ViewError::Changed(dir.to_path_buf(), 0)))
}

/// Where a scan found damage.
fn damage_place(e: &ViewError) -> Option<(PathBuf, u64)> {
    match e {
        ViewError::Corrupt(c) => Some((c.segment.clone(), c.offset)),
        ViewError::CommittedLost(l) => Some((l.segment.clone(), l.offset)),
        _ => None,
    }
}

const _: () = assert!(SCAN_ATTEMPTS_MAX >= 2);

impl LedgerView {
    /// Builds the state of the ledger in `dir` as of its log's last committed seq: the
    /// newest checkpoint that verifies (runs included) and hangs together, then the
    /// log after it replayed through the engine's judging code. Takes no lock and
    /// writes nothing.
    pub fn open(dir: &Path) -> Result<LedgerView, ViewError> {
        // Checkpoints are listed before the log is read: each covers a committed seq,
        // so the log read afterwards reaches it.
        let infos = list_snapshots(dir).map_err(|e| InspectError::Io {
            op: "list checkpoints",
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let (image, outcome) = scan_log(dir)?;
        let first_seq = image.segments()[0].first_seq;
        let mut report = ViewReport {
            segments: image.segments().iter().map(|s| (s.path.clone(), s.bytes().len() as u64)).collect(),
            first_seq,
            last_seq: outcome.last_seq,
            log_bytes: outcome.ends.iter().map(|&e| (e - ledger_store::format::SEGMENT_HEADER_BYTES) as u64).sum(),
            torn_tail: outcome.torn.clone(),
            checkpoint_seq: None,
            checkpoints: Vec::new(),
            warnings: Vec::new(),
            replayed: 0,
        };
        let filters = crate::cold::Filters::new(VIEW_FILTER_BYTES_MAX);
        let mut state = None;
        for info in infos {
            let size = std::fs::metadata(&info.path).map_or(0, |m| m.len());
            report.checkpoints.push((info.seq, info.path.clone(), size));
            if state.is_some() {
                continue;
            }
            if info.seq > outcome.last_seq || info.seq + 1 < first_seq {
                report.warnings.push(format!(
                    "{}: covers seq {}, outside the log's {first_seq}..={}; skipped",
                    info.path.display(),
                    info.seq,
                    outcome.last_seq
                ));
                continue;
            }
            let loaded = read_snapshot(&info)
                .map_err(|e| e.to_string())
                .and_then(|s| checkpoint::decode(s.payload(), s.seq))
                .and_then(|d| checkpoint::load(d, dir, &filters));
            match loaded {
                Ok(s) => {
                    report.checkpoint_seq = Some(info.seq);
                    state = Some(s);
                }
                Err(e) => report.warnings.push(format!("{}: {e}; skipped", info.path.display())),
            }
        }
        let state = match state {
            Some(s) => s,
            None if first_seq == 1 => State::default(),
            None => return Err(ViewError::MissingStart { dir: dir.to_path_buf(), first_seq }),
        };
        let (state, replayed) = replay(&image, &outcome, state)?;
        report.replayed = replayed;
        Ok(LedgerView { state, report })
    }

    /// What the view was built from.
    pub fn report(&self) -> &ViewReport {
        &self.report
    }

    /// The seq the view is as of.
    pub fn last_seq(&self) -> u64 {
        self.state.last_seq()
    }

    /// A transaction as it stands at the view's seq.
    pub fn lookup(&self, id: TxId) -> Option<TxRecord> {
        self.state.lookup(id)
    }

    /// Every transaction as it stands, in seq order (linear in history).
    pub fn all_records(&self) -> Vec<TxRecord> {
        self.state.all_records()
    }

    /// Every batch, by id.
    pub fn batches(&self) -> &[BatchSummary] {
        &self.state.batches
    }

    /// Every balance: client, currency, balance; by client then currency code.
    pub fn balances(&self) -> Vec<(u64, Currency, Balance)> {
        let mut out: Vec<(u64, Currency, Balance)> = self
            .state
            .balances
            .keys()
            .filter_map(|&(client, currency)| self.state.balance(client, currency).map(|b| (client, currency, b)))
            .collect();
        out.sort_by(|a, b| (a.0, a.1.code()).cmp(&(b.0, b.1.code())));
        out
    }

    /// Every transaction, batch and balance checked against each other (linear in
    /// history); `Err` says what first does not hang together.
    pub fn check_consistency(&self) -> Result<u64, String> {
        let records = self.state.all_records();
        crate::consistency::check(&self.state, &records)?;
        Ok(records.len() as u64)
    }
}

/// The log after the state's seq, replayed as the engine's open does: each record
/// judged again and required to reproduce its committed batch and time.
fn replay(
    image: &LogImage,
    outcome: &ledger_store::format::ScanOutcome,
    mut state: State,
) -> Result<(State, u64), ViewError> {
    let mut frames = image.frames(outcome, state.last_seq() + 1).peekable();
    let mut replayed = 0u64;
    let mut read = Vec::with_capacity(REPLAY_GROUP_RECORDS);
    while frames.peek().is_some() {
        read.clear();
        for frame in frames.by_ref().take(REPLAY_GROUP_RECORDS) {
            let frame = frame.map_err(|(path, offset)| ViewError::Changed(path, offset))?;
            let (segment, offset, seq) = (frame.segment.to_path_buf(), frame.offset, frame.seq);
            let record = codec::decode(frame.kind, frame.payload).map_err(|source| ViewError::Decode {
                segment: segment.clone(),
                offset,
                seq,
                source,
            })?;
            read.push((segment, offset, seq, record));
        }
        let mut group = state.group(read.len());
        for (segment, offset, seq, record) in &read {
            let mismatch =
                |detail: String| ViewError::Replay { segment: segment.clone(), offset: *offset, seq: *seq, detail };
            match *record {
                Record::Tx { tx, timestamp_ns, batch_id } => match group.submit(&tx, *seq, timestamp_ns) {
                    Ok(TxOutcome::Committed(r)) if r.timestamp_ns == timestamp_ns && r.batch_id == batch_id => {}
                    other => {
                        return Err(mismatch(format!(
                            "expected a commit in batch {batch_id} at {timestamp_ns}, got {other:?}"
                        )));
                    }
                },
                Record::Close { client_id, currency, batch_id, timestamp_ns } => {
                    match group.close_batch(client_id, currency, *seq, timestamp_ns) {
                        Ok(Ok(b)) if b.batch_id == batch_id && b.closed_ns == timestamp_ns => {}
                        other => return Err(mismatch(format!("expected batch {batch_id} to close, got {other:?}"))),
                    }
                }
            }
            replayed += 1;
        }
        let changes = group.into_changes();
        state.apply(changes);
    }
    Ok((state, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_this_version_writes_decode_and_others_are_another_version() {
        let books = checkpoint::Books { last_seq: 0, ..checkpoint::Books::default() };
        let payload = checkpoint::encode(&books, &[], &[], 0);
        let contents = decode_checkpoint(&payload, 0).expect("this version's checkpoint decodes");
        assert_eq!((contents.seq, contents.runs.len(), contents.batches), (0, 0, 0));
        assert_eq!(decode_checkpoint(b"an rkyv snapshot of release 1", 0), Err(CheckpointError::OtherVersion));
        let mut other = payload.clone();
        other[8] = 3;
        assert_eq!(decode_checkpoint(&other, 0), Err(CheckpointError::OtherVersion));
        assert!(matches!(decode_checkpoint(&payload, 1), Err(CheckpointError::Decode(_))), "another seq");
    }
}
