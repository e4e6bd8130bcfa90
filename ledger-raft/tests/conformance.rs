//! openraft's storage conformance suite (`openraft::testing::Suite`) against the Raft
//! log over `ledger-store`: every test of the suite gets a fresh directory.
//!
//! The suite tests a log store together with a state machine; the ledger's own state
//! machine comes with the replicated sequencer, so this one only keeps what the suite
//! looks at (the applied log id, the membership, a snapshot of them), as a ledger's
//! would.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::sync::Arc;

use ledger_raft::{Applied, NodeId, RaftLog, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applies {
    last: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    count: u64,
}

#[derive(Debug, Default)]
struct State {
    applies: Applies,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    built: u64,
}

#[derive(Debug, Clone, Default)]
struct Machine(Arc<Mutex<State>>);

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut state = self.0.lock();
        state.built += 1;
        let data = serde_json::to_vec(&state.applies).unwrap();
        let meta = SnapshotMeta {
            last_log_id: state.applies.last,
            last_membership: state.applies.membership.clone(),
            snapshot_id: format!("{:?}-{}", state.applies.last, state.built),
        };
        state.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let state = self.0.lock();
        Ok((state.applies.last, state.applies.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.0.lock();
        let mut out = Vec::new();
        for entry in entries {
            state.applies.last = Some(entry.log_id);
            state.applies.count += 1;
            if let EntryPayload::Membership(m) = entry.payload {
                state.applies.membership = StoredMembership::new(Some(entry.log_id), m);
            }
            out.push(Applied { index: entry.log_id.index });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let applies: Applies = serde_json::from_slice(&data).unwrap();
        let mut state = self.0.lock();
        state.applies = Applies { last: meta.last_log_id, membership: meta.last_membership.clone(), ..applies };
        state.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.0.lock().snapshot.clone().map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, RaftLog, Machine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, RaftLog, Machine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: the suite's logs cross several, and purges remove whole ones.
        let log = RaftLog::open(dir.path(), 16 << 10).unwrap();
        Ok((dir, log, Machine::default()))
    }
}

#[test]
fn openraft_storage_conformance_suite() {
    Suite::test_all(Builder).unwrap();
}
