//! The leader's side of the replicated ledger: [`RaftProposer`] is the ledger's
//! `Proposer`: it writes each judged group through `Raft::client_write` on the runtime,
//! and tells the ledger when that fails (the callers then learn their outcome is
//! unknown). A group with nothing to commit (all refused, ids already answered) is
//! answered only once `confirm` has checked, through `Raft::ensure_linearizable` (a
//! quorum's heartbeat answer, then everything committed applied), that this node still
//! leads in the term it was handed the proposer for: a deposed leader cut off from its
//! majority cannot answer from its stale state. [`follow_leadership`] hands the
//! proposer to the ledger while this node leads and has applied what was committed
//! before its term, a new one for each term it leads.

use std::sync::Arc;

use ledger_core::{Confirmation, Ledger, ProposalFailed, Proposer, RawRecord};
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
    /// The term this proposer was handed for ([`follow_leadership`]); a confirmation
    /// in any other term fails. `None`: whatever term this node leads.
    term: Option<u64>,
}

impl std::fmt::Debug for RaftProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftProposer").finish_non_exhaustive()
    }
}

impl RaftProposer {
    /// Proposes through `raft`, on `runtime`.
    pub fn new(raft: Raft<TypeConfig>, runtime: tokio::runtime::Handle) -> RaftProposer {
        RaftProposer { raft, runtime, term: None }
    }

    /// The same proposer, valid in `term` only.
    pub fn for_term(&self, term: u64) -> RaftProposer {
        RaftProposer { term: Some(term), ..self.clone() }
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

    fn confirm(&self, confirmation: Confirmation) {
        let (raft, term) = (self.raft.clone(), self.term);
        self.runtime.spawn(async move {
            let result = match tokio::time::timeout(PROPOSAL_TIMEOUT, raft.ensure_linearizable()).await {
                Ok(Ok(_)) => {
                    let metrics = raft.metrics().borrow().clone();
                    if metrics.current_leader != Some(metrics.id) {
                        Err("no longer the leader".to_string())
                    } else if term.is_some_and(|t| t != metrics.current_term) {
                        Err(format!("leads in term {}, not in the proposer's", metrics.current_term))
                    } else {
                        Ok(())
                    }
                }
                Ok(Err(e)) => Err(format!("raft: {e}")),
                Err(_) => Err(format!("not confirmed within {PROPOSAL_TIMEOUT:?}")),
            };
            confirmation.done(result);
        });
    }
}

/// Hands `proposer` to `ledger` while `raft` is this node's leader, and takes it back
/// when it is not: runs until the Raft node shuts down.
pub async fn follow_leadership(raft: Raft<TypeConfig>, ledger: Ledger, proposer: RaftProposer) {
    let mut metrics = raft.metrics();
    // The term this node leads in, with the ledger holding its proposer.
    let mut leading: Option<u64> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            // A new leader judges only once it has applied an entry of its own term
            // (the blank one it commits on election): then everything committed before
            // it is in its ledger, and no judgement rests on a state that misses it.
            let leads = m.state == ServerState::Leader
                && m.current_leader == Some(m.id)
                && m.last_applied.is_some_and(|applied| applied.leader_id.term == m.current_term);
            leads.then_some(m.current_term)
        };
        if now != leading {
            // Deposed and elected again between two looks: the old term's proposer is
            // taken back first, so that what waits on it is answered "not the leader".
            if leading.is_some() && now.is_some() && ledger.set_proposer(None).is_err() {
                return;
            }
            let handed: Option<Arc<dyn Proposer>> =
                now.map(|term| Arc::new(proposer.for_term(term)) as Arc<dyn Proposer>);
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
