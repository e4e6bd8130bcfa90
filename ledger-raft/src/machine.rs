//! The replicated ledger's Raft state machine and proposer: each Raft entry is one
//! group of ledger records the leader judged, applied on every node (the leader too)
//! through `Ledger::apply_replicated`, so every node's ledger log holds the same
//! records at the same seqs.
//!
//! [`LedgerMachine`] is openraft's `RaftStateMachine`: `apply` decodes each group and
//! applies it; a group whose seqs another group took first (a deposed leader's late
//! proposal) is void on every node alike (`ReplicateError::NotNext`), which also makes
//! re-applying after a restart harmless. The leader's side, the proposer and
//! `follow_leadership`, is `crate::leader` (re-exported here).
//!
//! Snapshots: a node beyond what the Raft log keeps catches up from a snapshot of the
//! ledger (a consistent backup of its directory, `crate::snapshot`) plus the log after
//! it. Building one backs the ledger up (incrementally, into `DIR/backup`) while it goes
//! on, packs it and keeps it as `DIR/current.snap`; installing one checks it whole,
//! keeps it as the node's current snapshot and, unless the ledger already holds what it
//! does, replaces the ledger's content with it (`Ledger::replace`). The applied log id
//! is not saved on every apply: after a restart it is the current snapshot's, and the
//! groups applied since are applied again, void (their seqs are taken).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ledger_core::{Ledger, RawRecord, ReplicateError};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;

pub use crate::leader::{PROPOSAL_TIMEOUT, RaftProposer, follow_leadership};
use crate::snapshot::{self, Header, SnapshotFile};
use crate::{Applied, Group, NodeId, TypeConfig};

/// Encodes a group's records: for each, seq (u64), kind (u16), payload length (u32),
/// payload; little-endian.
pub fn encode_group(records: &[RawRecord]) -> Group {
    let mut out = Vec::with_capacity(records.iter().map(|r| 14 + r.payload.len()).sum());
    for r in records {
        out.extend_from_slice(&r.seq.to_le_bytes());
        out.extend_from_slice(&r.kind.to_le_bytes());
        out.extend_from_slice(&u32::try_from(r.payload.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&r.payload);
    }
    Group(out)
}

/// The records of an encoded group; `Err` says what is malformed.
pub fn decode_group(group: &Group) -> Result<Vec<RawRecord>, String> {
    let bytes = &group.0;
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes.get(at..at + 14).ok_or_else(|| format!("a record header cut short at byte {at}"))?;
        let seq = u64::from_le_bytes(head[..8].try_into().map_err(|_| "seq")?);
        let kind = u16::from_le_bytes(head[8..10].try_into().map_err(|_| "kind")?);
        let len = u32::from_le_bytes(head[10..14].try_into().map_err(|_| "length")?) as usize;
        let payload = bytes.get(at + 14..at + 14 + len).ok_or_else(|| format!("record {seq} cut short"))?;
        records.push(RawRecord { seq, kind, payload: payload.to_vec() });
        at += 14 + len;
    }
    Ok(records)
}

#[derive(Debug, Default)]
struct Applies {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// Groups another group's seqs made void.
    void: u64,
}

/// openraft's state machine over a replicated ledger (`LedgerOptions::replicated`).
#[derive(Debug, Clone)]
pub struct LedgerMachine {
    ledger: Ledger,
    applies: Arc<Mutex<Applies>>,
    snapshots: Arc<Snapshots>,
}

/// The node's snapshot files, in their own directory.
#[derive(Debug)]
struct Snapshots {
    dir: PathBuf,
    /// Building, installing and handing out the current snapshot take turns.
    turn: tokio::sync::Mutex<()>,
    /// The current snapshot's meta (its file is `current.snap`).
    current: Mutex<Option<SnapshotMeta<NodeId, BasicNode>>>,
    /// Names files being received.
    received: AtomicU64,
    /// Snapshots installed since open, and those that replaced the ledger's content.
    installed: AtomicU64,
    replaced: AtomicU64,
}

const CURRENT: &str = "current.snap";
const BUILDING: &str = "building.tmp";
const RECEIVING_PREFIX: &str = "receiving-";
const BACKUP_DIR: &str = "backup";

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Why a state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenMachineError {
    /// A file of the snapshot directory.
    #[error("{path}: {source}")]
    Io {
        /// Which.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A snapshot installed before a crash could not be put into the ledger.
    #[error("installing the snapshot kept in {path}: {detail}")]
    Install {
        /// Which.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

/// Puts the ledger of the snapshot file `path` into `ledger` (replacing its content)
/// unless the ledger already reaches the snapshot's seq. Blocking.
fn install_into(ledger: &Ledger, path: &Path, header: &Header) -> Result<bool, String> {
    if ledger.last_seq() >= header.ledger_seq {
        // This ledger holds those groups already: they are the same committed records.
        return Ok(false);
    }
    ledger
        .replace(|into| {
            snapshot::unpack(path, into).map_err(|e| format!("unpacking {}: {e}", path.display()))?;
            let damage = ledger_cli::verify::damage(into).map_err(|f| f.message)?;
            if !damage.is_empty() {
                return Err(format!("the snapshot's ledger does not verify: {}", damage.join("; ")));
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    if ledger.last_seq() != header.ledger_seq {
        return Err(format!(
            "the installed ledger ends at seq {}, its snapshot said {}",
            ledger.last_seq(),
            header.ledger_seq
        ));
    }
    Ok(true)
}

impl LedgerMachine {
    /// The state machine of `ledger`, which must be opened with `replicated: true`,
    /// keeping its snapshots in `dir` (created when missing). Blocking: call it before
    /// the Raft node starts. A snapshot installed before a crash but not yet in the
    /// ledger is put into it now.
    pub fn open(ledger: Ledger, dir: impl Into<PathBuf>) -> Result<LedgerMachine, OpenMachineError> {
        let dir = dir.into();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenMachineError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Left by a build or a transfer a crash or a failure interrupted.
            if name == BUILDING || name.starts_with(RECEIVING_PREFIX) {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        let mut applies = Applies::default();
        let mut current = None;
        let path = dir.join(CURRENT);
        if path.exists() {
            let header = snapshot::verify(&path).map_err(io(&path))?;
            install_into(&ledger, &path, &header)
                .map_err(|detail| OpenMachineError::Install { path: path.clone(), detail })?;
            applies.last = header.meta.last_log_id;
            applies.membership = header.meta.last_membership.clone();
            current = Some(header.meta);
        }
        let snapshots = Snapshots {
            dir,
            turn: tokio::sync::Mutex::new(()),
            current: Mutex::new(current),
            received: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
        };
        Ok(LedgerMachine { ledger, applies: Arc::new(Mutex::new(applies)), snapshots: Arc::new(snapshots) })
    }

    /// Groups that came too late to apply (another group had taken their seqs).
    pub fn void_groups(&self) -> u64 {
        self.applies.lock().void
    }

    /// Snapshots installed from the leader since open: in all, and those that
    /// replaced the ledger's content (the others found it already there).
    pub fn installed_snapshots(&self) -> (u64, u64) {
        (self.snapshots.installed.load(Ordering::Relaxed), self.snapshots.replaced.load(Ordering::Relaxed))
    }

    /// The current snapshot's meta, if there is one.
    pub fn current_snapshot(&self) -> Option<SnapshotMeta<NodeId, BasicNode>> {
        self.snapshots.current.lock().clone()
    }
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

fn snapshot_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

/// Builds a snapshot of the ledger as it was when openraft asked for it: what was
/// applied then is in it (and perhaps groups applied since, see [`Header`]).
#[derive(Debug)]
pub struct LedgerSnapshotBuilder {
    machine: LedgerMachine,
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshots = Arc::clone(&self.machine.snapshots);
        let _turn = snapshots.turn.lock().await;
        let (ledger, dir) = (self.machine.ledger.clone(), snapshots.dir.clone());
        let (last, membership) = (self.last, self.membership.clone());
        let header = tokio::task::spawn_blocking(move || -> Result<Header, String> {
            let backup_dir = dir.join(BACKUP_DIR);
            let ledger_dir = ledger.dir();
            // Incremental over the last build's backup; from scratch when that is not
            // a backup of this ledger any more (an install replaced it).
            let backup = match ledger_cli::backup::take_backup(&ledger_dir, &backup_dir) {
                Ok(backup) => backup,
                Err(_) => {
                    std::fs::remove_dir_all(&backup_dir).map_err(|e| format!("{}: {e}", backup_dir.display()))?;
                    ledger_cli::backup::take_backup(&ledger_dir, &backup_dir).map_err(|f| f.message)?
                }
            };
            let snapshot_id = match last {
                Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, backup.seq),
                None => format!("0-0-{}", backup.seq),
            };
            let header = Header {
                meta: SnapshotMeta { last_log_id: last, last_membership: membership, snapshot_id },
                ledger_seq: backup.seq,
            };
            let building = dir.join(BUILDING);
            snapshot::pack(&backup_dir, &header, &building).map_err(|e| format!("{}: {e}", building.display()))?;
            std::fs::rename(&building, dir.join(CURRENT)).map_err(|e| e.to_string())?;
            sync_dir(&dir).map_err(|e| e.to_string())?;
            Ok(header)
        })
        .await
        .map_err(snapshot_error)?
        .map_err(snapshot_error)?;
        *snapshots.current.lock() = Some(header.meta.clone());
        let file = SnapshotFile::open(snapshots.dir.join(CURRENT)).await.map_err(snapshot_error)?;
        tracing::info!(snapshot = %header.meta.snapshot_id, ledger_seq = header.ledger_seq, "built a ledger snapshot");
        Ok(Snapshot { meta: header.meta, snapshot: Box::new(file) })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        // Not kept across restarts: openraft then applies the committed entries again,
        // and groups the ledger already holds are void (their seqs are taken).
        let applies = self.applies.lock();
        Ok((applies.last, applies.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    self.applies.lock().membership = StoredMembership::new(Some(entry.log_id), m);
                }
                EntryPayload::Normal(group) => {
                    let records = decode_group(&group).map_err(sm_error)?;
                    let ledger = self.ledger.clone();
                    let applied = tokio::task::spawn_blocking(move || ledger.apply_replicated(records))
                        .await
                        .map_err(sm_error)?;
                    match applied {
                        Ok(_) => {}
                        // Seqs another group took first: void here as on every node.
                        Err(ReplicateError::NotNext { expected, first }) if first < expected => {
                            self.applies.lock().void += 1;
                        }
                        // A gap (or anything else): this node misses records; stop.
                        Err(e) => return Err(sm_error(format!("entry {index}: {e}"))),
                    }
                }
            }
            self.applies.lock().last = Some(entry.log_id);
            out.push(Applied { index });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Asked between applies: the ledger holds exactly what was applied so far.
        let applies = self.applies.lock();
        LedgerSnapshotBuilder { machine: self.clone(), last: applies.last, membership: applies.membership.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let n = self.snapshots.received.fetch_add(1, Ordering::Relaxed);
        let path = self.snapshots.dir.join(format!("{RECEIVING_PREFIX}{n}.snap"));
        Ok(Box::new(SnapshotFile::create(path).await.map_err(snapshot_error)?))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot.finish().await.map_err(snapshot_error)?;
        let _turn = self.snapshots.turn.lock().await;
        let (ledger, dir, received) = (self.ledger.clone(), self.snapshots.dir.clone(), snapshot.path().to_path_buf());
        drop(snapshot);
        let expected = meta.clone();
        let replaced = tokio::task::spawn_blocking(move || -> Result<bool, String> {
            let header = snapshot::verify(&received).map_err(|e| format!("{}: {e}", received.display()))?;
            if header.meta.last_log_id != expected.last_log_id {
                return Err(format!(
                    "the snapshot received covers {:?}, its transfer said {:?}",
                    header.meta.last_log_id, expected.last_log_id
                ));
            }
            // Kept first: a crash from here on finishes the install at the next open.
            let current = dir.join(CURRENT);
            std::fs::rename(&received, &current).map_err(|e| e.to_string())?;
            sync_dir(&dir).map_err(|e| e.to_string())?;
            install_into(&ledger, &current, &header)
        })
        .await
        .map_err(snapshot_error)?
        .map_err(snapshot_error)?;
        self.snapshots.installed.fetch_add(1, Ordering::Relaxed);
        self.snapshots.replaced.fetch_add(u64::from(replaced), Ordering::Relaxed);
        let mut applies = self.applies.lock();
        applies.last = meta.last_log_id;
        applies.membership = meta.last_membership.clone();
        *self.snapshots.current.lock() = Some(meta.clone());
        tracing::info!(snapshot = %meta.snapshot_id, "installed a ledger snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let _turn = self.snapshots.turn.lock().await;
        let Some(meta) = self.snapshots.current.lock().clone() else { return Ok(None) };
        let file = SnapshotFile::open(self.snapshots.dir.join(CURRENT)).await.map_err(snapshot_error)?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(file) }))
    }
}
