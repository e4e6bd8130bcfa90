//! The leader's side of the replicated ledger: [`RaftProposer`] is the ledger's
//! `Proposer`: it writes each judged group through `Raft::client_write` on the runtime,
//! and tells the ledger when that fails (the callers then learn their outcome is
//! unknown). [`follow_leadership`] hands the proposer to the ledger while this node
//! leads and has applied what was committed before its term.

use std::sync::Arc;

use ledger_core::{Ledger, ProposalFailed, Proposer, RawRecord};
use openraft::{Raft, ServerState};

use crate::TypeConfig;
use crate::machine::encode_group;

/// How long a proposal may wait for its commit before its callers are told the outcome
/// is unknown (it may still commit; they retry with the same ids).
pub const PROPOSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
            match tokio::time::timeout(PROPOSAL_TIMEOUT, raft.client_write(encode_group(&records))).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failed.fail(format!("raft: {e}")),
                Err(_) => failed.fail(format!("not committed within {PROPOSAL_TIMEOUT:?}")),
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
            // A new leader judges only once it has applied an entry of its own term
            // (the blank one it commits on election): then everything committed before
            // it is in its ledger, and no judgement rests on a state that misses it.
            m.state == ServerState::Leader
                && m.current_leader == Some(m.id)
                && m.last_applied.is_some_and(|applied| applied.leader_id.term == m.current_term)
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
