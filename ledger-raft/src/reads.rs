//! Reads on any node, as fresh as the caller asks.
//!
//! Every node answers reads from the ledger it applied. How current that is depends on
//! what the caller asks for ([`Freshness`]):
//!
//! - [`Freshness::Applied`]: whatever this node applied, at once (a follower may be
//!   behind the leader by what is still in flight, or by all it missed while cut off).
//! - [`Freshness::AtLeastSeq`]: read-your-writes. A write's answer names its seq; a read
//!   that names it waits until this node applied that seq.
//! - [`Freshness::Linearizable`]: the read sees every write acknowledged before it
//!   started, on whichever node it runs. Raft's read index: the leader confirms with a
//!   quorum that it still leads and gives its commit index (openraft's
//!   `get_read_log_id`); a follower asks the leader for it over the replication
//!   listener (`POST /raft/read-index`); then the node waits until it applied that
//!   index. A round is shared: a read that arrives while one is on the way waits for
//!   the next (the one on the way may have been answered before it arrived).
//! - [`Freshness::MaxStaleness`]: bounded staleness. As linearizable, but a round that
//!   started at most that long ago is reused: the read sees every write acknowledged
//!   before the round started, so at most that old, and costs no round trip while the
//!   last round is fresh enough.
//!
//! A node that cannot get a read index (no leader, the leader unreachable or deposed)
//! refuses the read rather than answer it staler than asked; so does one that does not
//! apply what it must within the caller's time.

use std::time::{Duration, Instant};

use openraft::Raft;

use crate::network::Peer;
use crate::{NodeId, TypeConfig};

/// How fresh a read must be (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever this node applied.
    Applied,
    /// At least this ledger seq applied (read-your-writes).
    AtLeastSeq(u64),
    /// Every write acknowledged before the read started.
    Linearizable,
    /// Every write acknowledged before a moment at most this long before the read.
    MaxStaleness(Duration),
}

/// Why a read could not be made as fresh as asked. Nothing was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader could confirm what is committed (none known, unreachable, or no longer
    /// leading).
    #[error("no leader confirmed the committed state: {0}")]
    NoLeader(String),
    /// This node did not apply what the read needs within the time it was given.
    #[error(
        "this node has applied seq {applied} (Raft index {applied_index}); the read needs {needed}, not applied within {waited:?}"
    )]
    Behind {
        /// The ledger seq this node applied.
        applied: u64,
        /// The Raft log index this node applied.
        applied_index: u64,
        /// What the read waited for, in words (a seq, or a Raft index).
        needed: String,
        /// How long it waited.
        waited: Duration,
    },
}

/// One read-index round: the leader's commit index as of `started`.
#[derive(Debug, Clone, Copy)]
struct Round {
    index: Option<u64>,
    started: Instant,
}

/// The read-index rounds of one node: the last one, and a connection to the leader
/// (a follower's rounds are serialized through it, which is also what shares them).
#[derive(Debug, Default)]
pub(crate) struct ReadIndex {
    state: tokio::sync::Mutex<RoundState>,
}

#[derive(Debug, Default)]
struct RoundState {
    last: Option<Round>,
    leader: Option<(NodeId, Peer)>,
}

/// The answer of `POST /raft/read-index`: the leader's commit index (`None` before
/// anything was committed), or why it could not confirm it.
pub(crate) type ReadIndexAnswer = Result<Option<u64>, String>;

/// What a leader answers a follower's `POST /raft/read-index`.
pub(crate) async fn leader_read_index(raft: &Raft<TypeConfig>) -> ReadIndexAnswer {
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map(|id| id.index)),
        Err(e) => Err(e.to_string()),
    }
}

impl ReadIndex {
    /// The commit index as of a round that started after `arrived` (linearizable) or
    /// at most `max_age` before now (bounded staleness), running one if the last does
    /// not do.
    pub(crate) async fn index(
        &self,
        raft: &Raft<TypeConfig>,
        me: NodeId,
        arrived: Instant,
        max_age: Option<Duration>,
        ttl: Duration,
    ) -> Result<Option<u64>, ReadError> {
        let mut state = self.state.lock().await;
        if let Some(round) = state.last {
            let fresh = match max_age {
                Some(age) => round.started.elapsed() <= age,
                None => round.started >= arrived,
            };
            if fresh {
                return Ok(round.index);
            }
        }
        let started = Instant::now();
        let (leader, addr) = {
            let metrics = raft.metrics();
            let m = metrics.borrow();
            let leader = m.current_leader.ok_or_else(|| ReadError::NoLeader("no leader is known".into()))?;
            let addr = m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone());
            (leader, addr)
        };
        let index = if leader == me {
            match tokio::time::timeout(ttl, leader_read_index(raft)).await {
                Ok(answer) => answer.map_err(ReadError::NoLeader)?,
                Err(_) => return Err(ReadError::NoLeader(format!("no quorum confirmed this leader within {ttl:?}"))),
            }
        } else {
            let addr = addr.ok_or_else(|| ReadError::NoLeader(format!("node {leader} has no address")))?;
            if state.leader.as_ref().is_none_or(|(id, peer)| *id != leader || peer.addr() != addr) {
                state.leader = Some((leader, Peer::tcp(leader, addr)));
            }
            let Some((_, peer)) = state.leader.as_mut() else {
                return Err(ReadError::NoLeader("no connection to the leader".into()));
            };
            let answer: ReadIndexAnswer = peer
                .call("/raft/read-index", &(), ttl)
                .await
                .map_err(|e| ReadError::NoLeader(format!("asking node {leader}: {e}")))?;
            answer.map_err(|e| ReadError::NoLeader(format!("node {leader}: {e}")))?
        };
        state.last = Some(Round { index, started });
        Ok(index)
    }
}
