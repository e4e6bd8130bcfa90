//! openraft's storage conformance suite (`openraft::testing::Suite`) against the Raft
//! log over `ledger-store`: every test of the suite gets a fresh directory.
//!
//! The suite tests a log store together with a state machine; the ledger's own state
//! machine comes with the replicated sequencer, so this one only keeps what the suite
//! looks at (the applied log id, the membership, a snapshot of them), as a ledger's
//! would.
#![allow(clippy::unwrap_used)]

mod common;

use common::Machine;
use ledger_raft::{NodeId, RaftLog, TypeConfig};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

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
