//! The replicated ledger's Raft state machine and proposer: each Raft entry is one
//! group of ledger records the leader judged, applied on every node (the leader too)
//! through `Ledger::apply_replicated`, so every node's ledger log holds the same
//! records at the same seqs.
//!
//! [`LedgerMachine`] is openraft's `RaftStateMachine`: `apply` decodes each group and
//! applies it; a group whose seqs another group took first (a deposed leader's late
//! proposal) is void on every node alike (`ReplicateError::NotNext`), which also makes
//! re-applying after a restart harmless. [`RaftProposer`] is the ledger's `Proposer`:
//! it writes each judged group through `Raft::client_write` on the runtime, and tells
//! the ledger when that fails (the callers then learn their outcome is unknown).
//! [`follow_leadership`] hands the proposer to the ledger while this node leads.
//!
//! Not yet: snapshots of the ledger for a node beyond what the Raft log keeps. Until
//! they come, nodes run with `SnapshotPolicy::Never`, so the Raft log is never purged
//! and every node catches up from it.

use std::io::Cursor;
use std::sync::Arc;

use ledger_core::{Ledger, ProposalFailed, Proposer, RawRecord, ReplicateError};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, Raft, RaftSnapshotBuilder, ServerState, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;

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
}

impl LedgerMachine {
    /// The state machine of `ledger`, which must be opened with `replicated: true`.
    pub fn new(ledger: Ledger) -> LedgerMachine {
        LedgerMachine { ledger, applies: Arc::default() }
    }

    /// Groups that came too late to apply (another group had taken their seqs).
    pub fn void_groups(&self) -> u64 {
        self.applies.lock().void
    }
}

fn sm_error(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        Err(sm_error("ledger snapshots are not built yet: run with SnapshotPolicy::Never"))
    }
}

impl RaftStateMachine<TypeConfig> for LedgerMachine {
    type SnapshotBuilder = LedgerMachine;

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
                        Err(ReplicateError::NotNext { .. }) => self.applies.lock().void += 1,
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
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Err(sm_error("ledger snapshots are not installed yet: this node must catch up from the log"))
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, BasicNode>,
        _snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        Err(sm_error("ledger snapshots are not installed yet: this node must catch up from the log"))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(None)
    }
}

/// The ledger's proposer: each judged group becomes a Raft entry.
#[derive(Clone)]
pub struct RaftProposer {
    raft: Raft<TypeConfig>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for RaftProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftProposer").finish_non_exhaustive()
    }
}

impl RaftProposer {
    /// Proposes through `raft`, on `runtime`.
    pub fn new(raft: Raft<TypeConfig>, runtime: tokio::runtime::Handle) -> RaftProposer {
        RaftProposer { raft, runtime }
    }
}

impl Proposer for RaftProposer {
    fn propose(&self, records: Vec<RawRecord>, failed: ProposalFailed) {
        let raft = self.raft.clone();
        self.runtime.spawn(async move {
            // A committed group comes back through `apply`, which answers its callers.
            if let Err(e) = raft.client_write(encode_group(&records)).await {
                failed.fail(format!("raft: {e}"));
            }
        });
    }
}

/// Hands `proposer` to `ledger` while `raft` is this node's leader, and takes it back
/// when it is not: runs until the Raft node shuts down.
pub async fn follow_leadership(raft: Raft<TypeConfig>, ledger: Ledger, proposer: RaftProposer) {
    let mut metrics = raft.metrics();
    let mut leading = false;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            m.state == ServerState::Leader && m.current_leader == Some(m.id)
        };
        if now != leading {
            let handed: Option<Arc<dyn Proposer>> =
                if now { Some(Arc::new(proposer.clone()) as Arc<dyn Proposer>) } else { None };
            if ledger.set_proposer(handed).is_err() {
                return; // the ledger closed
            }
            leading = now;
        }
        if metrics.changed().await.is_err() {
            let _ = ledger.set_proposer(None);
            return;
        }
    }
}
