//! `ledger-raft`: the replicated ledger's Raft storage (issue 19), its first piece:
//! openraft's log storage over `ledger-store`'s segmented log.
//!
//! Consensus is openraft's (pinned exactly in the workspace); this crate gives it a
//! log. Each Raft entry is one frame of a `ledger-store` log opened in its replicated
//! mode (`LogOptions::deferred_publish`): an append is durable (one sync per call)
//! before openraft is told, readers of the log see only what Raft committed
//! ([`RaftLog::save_committed`] publishes through it), and a follower's uncommitted
//! suffix that conflicts with a new leader is removed by the log's crash-safe cut.
//! The ledger's own records ride in [`Group`], a commit group's frames as the leader
//! encoded them, so followers apply exactly the leader's bytes.
//!
//! The vote and the last purged log id live in a small metadata file (`raft-meta.json`,
//! replaced atomically: temp file, sync, rename, directory sync). Raft indexes map to
//! log seqs by `seq = index - base + 1`; when openraft appends past what the log holds
//! (after a snapshot made every older entry moot), the log starts afresh in a new
//! directory whose `base` is that index, switched to by the metadata file.
//! `openraft::testing::Suite` (the storage conformance suite) passes against it
//! (`tests/conformance.rs`).

pub mod contact;
pub mod leader;
pub mod machine;
pub mod network;
pub mod node;
pub mod reads;
pub mod snapshot;
pub mod wire;

use std::collections::Bound;
use std::fmt::Debug;
use std::fs;
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ledger_store::{Durability, Log, LogOptions};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The replicated ledger's Raft types: entries carry [`Group`]s, node ids are
    /// `u64`, nodes are addresses (`BasicNode`).
    pub TypeConfig:
        D = Group,
        R = Applied,
        SnapshotData = snapshot::SnapshotFile,
);

/// A node id.
pub type NodeId = u64;

/// A commit group as the leader's sequencer encoded it: the ledger's frames, applied by
/// every node without judging again.
///
/// Its serde form is a byte string (`serialize_bytes`): in the Raft messages between
/// nodes (`wire.rs`, postcard) a length and the frames as they are. Only those messages
/// use it; the Raft log on disk writes a group's bytes in its own frame (`encode`
/// below), so the log's format does not depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group(pub Vec<u8>);

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(GroupVisitor)
    }
}

/// Takes a group's bytes however the format hands them over (borrowed, copied, owned,
/// or as a sequence of numbers for formats without byte strings).
struct GroupVisitor;

impl<'de> serde::de::Visitor<'de> for GroupVisitor {
    type Value = Group;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a commit group's bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Group, E> {
        Ok(Group(bytes.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Group, E> {
        Ok(Group(bytes))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Group, A::Error> {
        // At most 1 MiB reserved up front, whatever length the input claims.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(Group(bytes))
    }
}

/// What applying an entry answers: the index it was applied at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The entry's Raft index.
    pub index: u64,
}

/// Frame kind of a Raft entry in the log.
const FRAME_ENTRY: u16 = 0x5241;
const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;
/// term, leader node, index, tag (padded to 8).
const ENTRY_HEADER: usize = 32;

const META_FILE: &str = "raft-meta.json";
const META_TMP: &str = "raft-meta.json.tmp";

fn log_dir_name(generation: u64) -> String {
    format!("log-{generation:020}")
}

/// What is kept beside the log: Raft's vote, the last purged log id, and which log
/// directory holds the entries from which index on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    /// The Raft index of the current log's seq 1.
    base: u64,
    /// The current log's directory is `log-{generation}`.
    generation: u64,
}

/// Why the Raft log could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The metadata file could not be read, written or parsed.
    #[error("{path}: {detail}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The entries' log could not be opened.
    #[error(transparent)]
    Log(#[from] ledger_store::OpenError),
}

struct Inner {
    dir: PathBuf,
    meta: Meta,
    log: Log,
    /// The committed log id openraft last told this node (published to readers).
    committed: Option<LogId<NodeId>>,
}

impl Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("dir", &self.dir).field("meta", &self.meta).finish_non_exhaustive()
    }
}

/// openraft's log storage over a `ledger-store` log; cheap to clone (the clones are its
/// log readers, for the leader's replication streams).
#[derive(Debug, Clone)]
pub struct RaftLog {
    inner: Arc<Mutex<Inner>>,
}

fn log_options(segment_bytes: usize) -> LogOptions {
    LogOptions::new().segment_bytes(segment_bytes).durability(Durability::SyncData).deferred_publish(true)
}

fn write_meta(dir: &Path, meta: &Meta) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    let tmp = dir.join(META_TMP);
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(META_FILE))?;
    fs::File::open(dir)?.sync_all()
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(e)
}

impl RaftLog {
    /// Opens (creating) the Raft log in `dir`, with log segments of `segment_bytes`
    /// (0: `ledger-store`'s default, 64 MiB). An entry is one frame, so a segment must
    /// hold the largest entry: a group of 8190 records takes about 1 MB.
    pub fn open(dir: impl AsRef<Path>, segment_bytes: usize) -> Result<RaftLog, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let meta_err = |path: &Path, e: &dyn std::fmt::Display| OpenError::Meta {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        fs::create_dir_all(&dir).map_err(|e| meta_err(&dir, &e))?;
        let meta_path = dir.join(META_FILE);
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| meta_err(&meta_path, &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let meta = Meta { base: 0, ..Meta::default() };
                write_meta(&dir, &meta).map_err(|e| meta_err(&meta_path, &e))?;
                meta
            }
            Err(e) => return Err(meta_err(&meta_path, &e)),
        };
        let segment_bytes = if segment_bytes == 0 { LogOptions::new().get_segment_bytes() } else { segment_bytes };
        let log = Log::open(dir.join(log_dir_name(meta.generation)), log_options(segment_bytes))?;
        // Log directories of earlier generations are leftovers of a switch.
        remove_other_generations(&dir, meta.generation);
        Ok(RaftLog { inner: Arc::new(Mutex::new(Inner { dir, meta, log, committed: None })) })
    }
}

fn remove_other_generations(dir: &Path, keep: u64) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("log-") && name != log_dir_name(keep) {
            // Best effort: a leftover is removed by the next open.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes `entry` as one frame of `log`: its header (term, leader node, index, tag,
/// padded to [`ENTRY_HEADER`]) then its data, straight into the log's buffer (a group,
/// up to a MiB, is copied once).
fn append_entry(log: &mut Log, entry: &Entry<TypeConfig>) -> Result<(), std::io::Error> {
    let membership;
    let (tag, data): (u8, &[u8]) = match &entry.payload {
        EntryPayload::Blank => (TAG_BLANK, &[]),
        EntryPayload::Normal(group) => (TAG_NORMAL, &group.0),
        EntryPayload::Membership(m) => {
            membership = serde_json::to_vec(m).map_err(io_err)?;
            (TAG_MEMBERSHIP, &membership)
        }
    };
    let mut header = [0u8; ENTRY_HEADER];
    header[0..8].copy_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    header[8..16].copy_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    header[16..24].copy_from_slice(&entry.log_id.index.to_le_bytes());
    header[24] = tag;
    log.append_in_place(FRAME_ENTRY, ENTRY_HEADER + data.len(), |frame| {
        let (head, rest) = frame.split_at_mut(ENTRY_HEADER);
        head.copy_from_slice(&header);
        rest.copy_from_slice(data);
    })
    .map_err(io_err)?;
    Ok(())
}

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

fn decode(kind: u16, payload: &[u8]) -> Result<Entry<TypeConfig>, String> {
    if kind != FRAME_ENTRY || payload.len() < ENTRY_HEADER {
        return Err(format!("not a Raft entry (kind {kind:#x}, {} bytes)", payload.len()));
    }
    let log_id = LogId::new(CommittedLeaderId::new(word(payload, 0), word(payload, 8)), word(payload, 16));
    let data = &payload[ENTRY_HEADER..];
    let payload = match payload[24] {
        TAG_BLANK => EntryPayload::Blank,
        TAG_NORMAL => EntryPayload::Normal(Group(data.to_vec())),
        TAG_MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice::<Membership<NodeId, openraft::BasicNode>>(data).map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown entry tag {other}")),
    };
    Ok(Entry { log_id, payload })
}

impl Inner {
    /// The Raft index of the log's last frame, if it holds any.
    fn last_index(&self) -> Option<u64> {
        let last_seq = self.log.committed_seq();
        (last_seq >= self.log.first_seq()).then(|| last_seq + self.meta.base - 1)
    }

    /// The first index a read may return: the log's first, and above the purged.
    fn first_readable(&self) -> u64 {
        let first = self.log.first_seq() + self.meta.base - 1;
        self.meta.last_purged.map_or(first, |p| first.max(p.index + 1))
    }

    /// The entry at `index`; `Err((index, what))` when its frame does not decode.
    fn entry(&self, index: u64) -> Result<Option<Entry<TypeConfig>>, (u64, String)> {
        let Some(seq) = (index + 1).checked_sub(self.meta.base) else { return Ok(None) };
        let Some(frame) = self.log.frame(seq) else { return Ok(None) };
        decode(frame.kind, frame.payload).map(Some).map_err(|e| (index, e))
    }

    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<TypeConfig>>, (u64, String)> {
        let Some(last) = self.last_index() else { return Ok(Vec::new()) };
        let from = start.max(self.first_readable());
        let to = end.map_or(last, |e| e.saturating_sub(1).min(last));
        let mut out = Vec::new();
        for index in from..=to {
            match self.entry(index)? {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    /// Starts the log afresh so that its next frame is Raft index `next`: a new
    /// directory, switched to by the metadata file, then the old one removed.
    fn restart_at(&mut self, next: u64) -> Result<(), std::io::Error> {
        let generation = self.meta.generation + 1;
        let segment_bytes = self.log.options().get_segment_bytes();
        let log = Log::open(self.dir.join(log_dir_name(generation)), log_options(segment_bytes)).map_err(io_err)?;
        let meta = Meta { base: next, generation, ..self.meta.clone() };
        write_meta(&self.dir, &meta)?;
        self.meta = meta;
        let old = std::mem::replace(&mut self.log, log);
        drop(old);
        remove_other_generations(&self.dir, generation);
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> Result<(), std::io::Error> {
        for entry in entries {
            let index = entry.log_id.index;
            let next = self.log.next_seq() + self.meta.base - 1;
            if index != next {
                let held_beyond_purged =
                    self.last_index().is_some_and(|last| self.meta.last_purged.is_none_or(|p| last > p.index));
                if held_beyond_purged {
                    return Err(std::io::Error::other(format!(
                        "entry {index} would leave a hole: the log's next index is {next}"
                    )));
                }
                // Nothing held that a read may return: the log starts at this entry.
                self.log.sync().map_err(io_err)?;
                self.restart_at(index)?;
            }
            append_entry(&mut self.log, &entry)?;
        }
        self.log.commit().map_err(io_err)?;
        Ok(())
    }
}

impl RaftLog {
    /// Runs `f` on the log off the async runtime's workers: syncs take milliseconds,
    /// and a worker blocked that long would delay heartbeats (and elections).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, Failed> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || f(&mut inner.lock())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failed { vote, detail })) => {
                let e = std::io::Error::other(detail);
                Err(if vote { StorageIOError::write_vote(&e) } else { StorageIOError::write_logs(&e) }.into())
            }
            Err(e) => Err(StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()),
        }
    }
}

/// A storage call that failed on the blocking pool: whether it wrote the vote, and why.
#[derive(Debug)]
struct Failed {
    vote: bool,
    detail: String,
}

fn failed(e: impl std::fmt::Display) -> Failed {
    Failed { vote: false, detail: e.to_string() }
}

fn read_failure((index, detail): (u64, String)) -> StorageError<NodeId> {
    StorageIOError::read_log_at_index(index, &std::io::Error::other(detail)).into()
}

impl RaftLogReader<TypeConfig> for RaftLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e + 1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.inner.lock().entries(start, end).map_err(read_failure)
    }
}

impl RaftLogStorage<TypeConfig> for RaftLog {
    type LogReader = RaftLog;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.inner.lock();
        let last_purged = inner.meta.last_purged;
        let last = match inner.last_index() {
            Some(index) if last_purged.is_none_or(|p| index > p.index) => {
                inner.entry(index).map_err(read_failure)?.map(|e| e.log_id)
            }
            _ => None,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.blocking(move |inner| {
            let meta = Meta { vote: Some(vote), ..inner.meta.clone() };
            write_meta(&inner.dir, &meta).map_err(|e| Failed { vote: true, detail: e.to_string() })?;
            inner.meta = meta;
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().meta.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.inner.lock();
        inner.committed = committed;
        // Readers of the log (the ledger's state, feeds) see what a quorum holds.
        if let Some(c) = committed
            && let Some(seq) = (c.index + 1).checked_sub(inner.meta.base)
        {
            let seq = seq.min(inner.log.committed_seq());
            inner.log.publish_through(seq).map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        // Written and synced off the runtime's workers; readable once this returns.
        let result = self.blocking(move |inner| Ok(inner.append(entries))).await?;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |inner| {
            let seq = (log_id.index + 1).saturating_sub(inner.meta.base).max(inner.log.first_seq());
            if seq <= inner.log.committed_seq() {
                inner.log.truncate_from(seq).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |inner| {
            if inner.meta.last_purged.is_some_and(|p| p.index >= log_id.index) {
                return Ok(());
            }
            let meta = Meta { last_purged: Some(log_id), ..inner.meta.clone() };
            write_meta(&inner.dir, &meta).map_err(failed)?;
            inner.meta = meta;
            // Whole segments below go now (reads skip the rest: `first_readable`). Only
            // published frames can go; the next `save_committed` lets the rest follow.
            if let Some(seq) = (log_id.index + 2).checked_sub(inner.meta.base) {
                let published = inner.log.published_seq();
                inner.log.remove_segments_before(seq.min(published + 1)).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The entry frame's bytes, written out by hand: logs written by earlier builds
    /// must read the same (the layout is the on-disk format).
    #[test]
    fn an_entry_frame_is_the_documented_layout() {
        let dir = tempfile::tempdir().unwrap();
        let log = RaftLog::open(dir.path(), 1 << 20).unwrap();
        let membership = Membership::<NodeId, openraft::BasicNode>::new(
            vec![std::collections::BTreeSet::from([1])],
            std::collections::BTreeMap::from([(1, openraft::BasicNode::new("a:1"))]),
        );
        let entries = vec![
            Entry { log_id: LogId::new(CommittedLeaderId::new(7, 3), 1), payload: EntryPayload::Blank },
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(7, 3), 2),
                payload: EntryPayload::Normal(Group(vec![9; 5])),
            },
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(8, 2), 3),
                payload: EntryPayload::Membership(membership.clone()),
            },
        ];
        let mut inner = log.inner.lock();
        inner.meta.base = 1;
        inner.append(entries.clone()).unwrap();
        let expected = |term: u64, node: u64, index: u64, tag: u8, data: &[u8]| {
            let mut out = Vec::new();
            out.extend_from_slice(&term.to_le_bytes());
            out.extend_from_slice(&node.to_le_bytes());
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&[tag, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(data);
            out
        };
        let json = serde_json::to_vec(&membership).unwrap();
        let wanted = [
            expected(7, 3, 1, TAG_BLANK, &[]),
            expected(7, 3, 2, TAG_NORMAL, &[9; 5]),
            expected(8, 2, 3, TAG_MEMBERSHIP, &json),
        ];
        for (seq, want) in (1..).zip(&wanted) {
            let frame = inner.log.frame(seq).unwrap();
            assert_eq!(frame.kind, FRAME_ENTRY);
            assert_eq!(frame.payload, want.as_slice(), "frame {seq}");
        }
        for (index, entry) in (1..).zip(&entries) {
            assert_eq!(inner.entry(index).unwrap().as_ref(), Some(entry));
        }
    }
}
