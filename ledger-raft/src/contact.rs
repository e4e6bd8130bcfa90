//! When a follower last heard from its leader: the arrival time of the last Raft
//! message a leader sent it (entries, a heartbeat, a snapshot chunk) that it accepted.
//!
//! openraft 0.9 keeps that time for its own election timer (`vote_last_modified`,
//! refreshed by any vote change too) but does not publish it in its metrics, so the
//! replication listener's handlers ([`crate::network::router_with_contact`]) record it
//! here and [`crate::node::Node::leader_heard_within`] reads it. A follower cut off from
//! its leader goes on naming it (`current_leader`) until its election timer fires
//! (the leader's lease plus a random election timeout, 1.5 to 2 s with the default
//! timing); this tells, meanwhile, that the leader fell silent.
//!
//! The arrival time is kept, not the time the message was judged: a follower whose
//! disk holds a message up has still not heard anything newer from the leader.
//!
//! It keeps too the highest commit index a leader told this node of
//! ([`LeaderContact::committed`]): a node whose log ends below it lacks an entry a
//! quorum holds, so it cannot win an election ([`crate::node`] keeps it from standing).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::NodeId;

/// The last accepted word from a leader, shared by the listener's handlers (which
/// record it) and the node (which reads it). Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct LeaderContact {
    last: Arc<Mutex<Option<Heard>>>,
    committed: Arc<Mutex<Option<u64>>>,
}

/// One accepted message from a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// The leader that sent it.
    pub leader: NodeId,
    /// The leader's term.
    pub term: u64,
    /// When it arrived.
    pub at: Instant,
}

impl LeaderContact {
    /// Records that a message from `leader` in `term`, which arrived `at`, was
    /// accepted. Handlers finish in any order: an arrival older than the one kept is
    /// ignored.
    pub fn heard(&self, leader: NodeId, term: u64, at: Instant) {
        let mut last = self.last.lock();
        if last.is_none_or(|h| h.at <= at) {
            *last = Some(Heard { leader, term, at });
        }
    }

    /// The last accepted message from a leader, if any.
    pub fn last(&self) -> Option<Heard> {
        *self.last.lock()
    }

    /// Records that a leader named `index` committed (its `leader_commit`). A commit
    /// index never goes back, whatever the term: the highest one told is kept.
    pub fn committed(&self, index: u64) {
        let mut committed = self.committed.lock();
        if committed.is_none_or(|c| c < index) {
            *committed = Some(index);
        }
    }

    /// The highest commit index a leader told this node of, if any.
    pub fn known_committed(&self) -> Option<u64> {
        *self.committed.lock()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LeaderContact;

    #[test]
    fn the_newest_arrival_is_kept_whatever_the_order_of_recording() {
        let contact = LeaderContact::default();
        assert_eq!(contact.last(), None, "nothing heard yet");
        let t0 = std::time::Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        contact.heard(1, 3, t1);
        contact.heard(2, 2, t0); // judged later, arrived earlier: not newer
        let last = contact.last().map(|h| (h.leader, h.term, h.at));
        assert_eq!(last, Some((1, 3, t1)));
        let t2 = t1 + Duration::from_millis(10);
        contact.clone().heard(2, 4, t2); // a clone records into the same place
        assert_eq!(contact.last().map(|h| (h.leader, h.term, h.at)), Some((2, 4, t2)));
    }

    #[test]
    fn the_highest_commit_index_told_is_kept() {
        let contact = LeaderContact::default();
        assert_eq!(contact.known_committed(), None);
        contact.committed(7);
        contact.clone().committed(5); // a late message from an older round
        assert_eq!(contact.known_committed(), Some(7));
        contact.committed(9);
        assert_eq!(contact.known_committed(), Some(9));
    }
}
