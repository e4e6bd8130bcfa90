//! One node of a replicated ledger, assembled in one place: the ledger in its
//! replicated mode and the Raft log under the node's directory, openraft's `Raft` over
//! [`LedgerMachine`], the replication router served on the node's own replication
//! address, [`follow_leadership`], and the membership initialized on first start.
//!
//! The first membership is static: every node is started with the same peers map (its
//! own entry included) and calls `Raft::initialize` with it when its Raft state is
//! pristine. That
//! is openraft 0.9's documented way to form a cluster ("more than one node performing
//! `initialize()` with the same config is safe"); a node whose log already holds a
//! membership answers `NotAllowed`, which is the goal reached. From there the leader
//! changes the membership: [`Node::add_member`], [`Node::remove_member`] and
//! [`Node::replace_member`] (a new node starts with [`NodeConfig::join`]).
//!
//! The replication listener carries Raft's messages and, once attached with
//! [`Node::serve_internal`], the application's own routes between nodes (the portal
//! forwards writes there). Nothing on it is authenticated: it belongs on a private
//! network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ledger_core::{Ledger, LedgerOptions};
use openraft::error::{CheckIsLeaderError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::contact::LeaderContact;
use crate::machine::{LedgerMachine, RaftProposer, follow_leadership};
use crate::network::{Network, router_with_contact};
use crate::reads::{Freshness, ReadError, ReadIndex};
use crate::{NodeId, RaftLog, TypeConfig};

/// Bytes of one segment of the Raft log: a Raft entry is one frame, so a segment must
/// hold the largest commit group (8190 records, about 1.2 MB).
pub const RAFT_SEGMENT_BYTES: usize = 16 << 20;
/// The smallest Raft log segment that holds the largest group.
pub const RAFT_SEGMENT_BYTES_MIN: usize = 4 << 20;
const _: () = assert!(RAFT_SEGMENT_BYTES >= RAFT_SEGMENT_BYTES_MIN);

/// Raft's timing. The defaults suit nodes on one LAN whose disks sync in milliseconds.
///
/// In openraft 0.9 a follower that knows a leader waits the leader's lease (the longest
/// election timeout) plus a random election timeout after the last word from it before
/// it stands for election: with the defaults, a dead leader is replaced after 1.5 to 2
/// seconds (then one round of votes), far above a heartbeat's round trip, so a busy
/// node does not cause spurious elections. The longer, the slower a fail-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often the leader sends heartbeats, in milliseconds.
    pub heartbeat_ms: u64,
    /// A follower that heard nothing for a random time in
    /// `election_min_ms..election_max_ms` starts an election.
    pub election_min_ms: u64,
    /// See [`Timing::election_min_ms`].
    pub election_max_ms: u64,
}

impl Timing {
    /// How long a leader may stay silent before a follower stops trusting it with a
    /// write (and a leader, its quorum with one): the longest election timeout. Ten
    /// heartbeats with the defaults, so a busy leader is not given up on; well before
    /// the follower's own election timer (that plus the leader's lease), so a cut-off
    /// follower knows it is cut off before it stops naming the leader.
    pub fn leader_silence_max(&self) -> Duration {
        Duration::from_millis(self.election_max_ms)
    }
}

impl Timing {
    /// How long a restarted node waits to hear from a leader before it may stand for
    /// election: past the longest a follower that stayed up waits after a leader's
    /// last word before it stands (the lease and the longest election timeout, plus
    /// twice the longest election timeout when openraft 0.9 penalizes it for having
    /// once seen a greater log: 4 s), with the leader's death up to two election
    /// timeouts after the restart. 6 s by default.
    pub fn restart_hold(&self) -> Duration {
        Duration::from_millis(self.election_max_ms.saturating_mul(6))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_ms: 100, election_min_ms: 500, election_max_ms: 1_000 }
    }
}

/// What a [`Node`] is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id: a key of `peers`.
    pub id: NodeId,
    /// Where the node keeps its ledger (`DIR/ledger`) and Raft log (`DIR/raft`).
    pub dir: PathBuf,
    /// Every member's replication address (`HOST:PORT`), this node's included; the same
    /// map on every node.
    pub peers: BTreeMap<NodeId, String>,
    /// Raft's timing.
    pub timing: Timing,
    /// The ledger's options; `replicated` is set whatever it says.
    pub ledger: LedgerOptions,
    /// Build a snapshot of the ledger after this many Raft entries (0: never), and
    /// keep [`NodeConfig::log_kept_entries`] of the Raft log behind it: a node further
    /// behind catches up from the snapshot (`DIR/snapshots`).
    pub snapshot_every_entries: u64,
    /// Raft entries kept behind the newest snapshot, so a node briefly away catches
    /// up from the log rather than a whole snapshot.
    pub log_kept_entries: u64,
    /// A node joining a cluster already formed (a new member, or the replacement of a
    /// wiped one): it never initializes, and waits for the leader to add it
    /// ([`Node::add_member`], [`Node::replace_member`]). `peers` then needs only its
    /// own entry.
    pub join: bool,
}

/// Default [`NodeConfig::snapshot_every_entries`]. An entry is one commit group; a
/// snapshot copies the whole ledger (its backup is incremental, its packing is not), so
/// they are kept rare.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 100_000;
/// Default [`NodeConfig::log_kept_entries`].
pub const LOG_KEPT_ENTRIES: u64 = 10_000;

impl NodeConfig {
    /// openraft's configuration for this node's timing and snapshots.
    pub fn raft_config(&self) -> Result<Arc<openraft::Config>, StartError> {
        let snapshot_policy = match self.snapshot_every_entries {
            0 => openraft::SnapshotPolicy::Never,
            n => openraft::SnapshotPolicy::LogsSinceLast(n),
        };
        let config = openraft::Config {
            heartbeat_interval: self.timing.heartbeat_ms,
            election_timeout_min: self.timing.election_min_ms,
            election_timeout_max: self.timing.election_max_ms,
            snapshot_policy,
            max_in_snapshot_log_to_keep: self.log_kept_entries,
            ..openraft::Config::default()
        };
        Ok(Arc::new(config.validate().map_err(|e| StartError::Config(e.to_string()))?))
    }
}

impl NodeConfig {
    /// Node `id` of the cluster `peers`, keeping its data under `dir`, with the default
    /// timing and ledger options.
    pub fn new(id: NodeId, dir: impl Into<PathBuf>, peers: BTreeMap<NodeId, String>) -> NodeConfig {
        NodeConfig {
            id,
            dir: dir.into(),
            peers,
            timing: Timing::default(),
            ledger: LedgerOptions::default(),
            snapshot_every_entries: SNAPSHOT_EVERY_ENTRIES,
            log_kept_entries: LOG_KEPT_ENTRIES,
            join: false,
        }
    }
}

/// Why a membership change was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// This node is not the leader (the one it knows of, if any).
    #[error("this node is not the leader (the leader: {0:?})")]
    NotLeader(Option<NodeId>),
    /// The change asked for does not apply to this membership.
    #[error("{0}")]
    Invalid(String),
    /// The new node did not catch up in time (it stays a learner).
    #[error("{0}")]
    CatchUp(String),
    /// openraft refused or failed.
    #[error("{0}")]
    Raft(String),
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is not usable (an id missing from the peers, bad timing).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// The ledger did not open.
    #[error("ledger: {0}")]
    Ledger(#[from] ledger_core::OpenError),
    /// The Raft log did not open.
    #[error("raft log: {0}")]
    Log(#[from] crate::OpenError),
    /// The replication address could not be listened on.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The node's replication address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused to start or to initialize.
    #[error("raft: {0}")]
    Raft(String),
}

/// A running node of a replicated ledger.
pub struct Node {
    id: NodeId,
    timing: Timing,
    ledger: Ledger,
    machine: LedgerMachine,
    raft: Raft<TypeConfig>,
    contact: LeaderContact,
    internal: Arc<OnceLock<Router>>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    reads: ReadIndex,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens the node's ledger and Raft log, starts Raft, listens on the node's
    /// replication address, follows leadership, and initializes the cluster if this
    /// node never was. Must be called on a multi-threaded tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let own = config
            .peers
            .get(&config.id)
            .ok_or_else(|| StartError::Config(format!("node {} is not among the peers", config.id)))?
            .clone();
        let raft_config = config.raft_config()?;
        let options = LedgerOptions { replicated: true, ..config.ledger };
        let (ledger_dir, log_dir) = (config.dir.join("ledger"), config.dir.join("raft"));
        let snapshot_dir = config.dir.join("snapshots");
        let opened = tokio::task::spawn_blocking(move || -> Result<(Ledger, RaftLog, LedgerMachine), StartError> {
            let ledger = Ledger::open(ledger_dir, options)?;
            let rest = RaftLog::open(log_dir, RAFT_SEGMENT_BYTES).map_err(StartError::from).and_then(|log| {
                let machine = LedgerMachine::open(ledger.clone(), snapshot_dir)
                    .map_err(|e| StartError::Raft(format!("the state machine: {e}")))?;
                Ok((log, machine))
            });
            match rest {
                Ok((log, machine)) => Ok((ledger, log, machine)),
                Err(e) => {
                    let _ = ledger.close();
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| StartError::Raft(format!("opening the stores panicked: {e}")))?;
        let (ledger, log, machine) = opened?;
        let contact = LeaderContact::default();
        let started =
            Self::start_raft(&config, own, raft_config, ledger.clone(), log, machine.clone(), contact.clone()).await;
        match started {
            Ok((raft, internal, tasks)) => Ok(Node {
                id: config.id,
                timing: config.timing,
                ledger,
                machine,
                raft,
                contact,
                internal,
                tasks: parking_lot::Mutex::new(tasks),
                reads: ReadIndex::default(),
            }),
            Err(e) => {
                let _ = ledger.close();
                Err(e)
            }
        }
    }

    async fn start_raft(
        config: &NodeConfig,
        own: String,
        raft_config: Arc<openraft::Config>,
        ledger: Ledger,
        log: RaftLog,
        machine: LedgerMachine,
        contact: LeaderContact,
    ) -> Result<(Raft<TypeConfig>, Arc<OnceLock<Router>>, Vec<JoinHandle<()>>), StartError> {
        let listener = tokio::net::TcpListener::bind(&own)
            .await
            .map_err(|source| StartError::Listen { addr: own.clone(), source })?;
        let raft = Raft::new(config.id, raft_config, Network, log, machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let internal: Arc<OnceLock<Router>> = Arc::default();
        let slot = Arc::clone(&internal);
        let app = router_with_contact(raft.clone(), contact.clone())
            .fallback(move |request: Request| internal_route(Arc::clone(&slot), request));
        let id = config.id;
        let server = tokio::spawn(async move {
            match axum::serve(listener, app).await {
                Ok(()) => tracing::info!(node = id, "the replication listener stopped"),
                Err(e) => tracing::error!(node = id, error = %e, "the replication listener failed"),
            }
        });
        let proposer = RaftProposer::new(raft.clone(), tokio::runtime::Handle::current());
        let (follow_raft, follow_ledger) = (raft.clone(), ledger.clone());
        let leadership = tokio::spawn(async move {
            follow_leadership(follow_raft, follow_ledger, proposer).await;
            tracing::info!(node = id, "stopped following leadership (Raft or the ledger stopped)");
        });
        let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()));
        // A restart (not a first start): no candidacy before a leader was heard from,
        // for a while (see `stand_only_when_electable`).
        let hold = matches!(initialized, Ok(true)).then(|| Instant::now() + config.timing.restart_hold());
        let every = Duration::from_millis(config.timing.heartbeat_ms.max(1));
        let standing = tokio::spawn(stand_only_when_electable(raft.clone(), contact, every, hold));
        let tasks = vec![server, leadership, standing];
        let result = match initialized {
            Ok(true) => Ok(()),
            // Added by the leader: its membership comes with the log.
            Ok(false) if config.join => Ok(()),
            Ok(false) => {
                let members: BTreeMap<NodeId, BasicNode> =
                    config.peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
                match raft.initialize(members).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
                    Err(e) => Err(StartError::Raft(format!("initialize: {e}"))),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let _ = raft.shutdown().await;
            for task in &tasks {
                task.abort();
            }
            return Err(e);
        }
        Ok((raft, internal, tasks))
    }

    /// Serves `routes` on the replication listener too, for paths Raft does not use
    /// (until then they answer 503). Only the first call takes effect; `Err` gives
    /// back the routes of a later one.
    #[allow(clippy::result_large_err)] // handed back unchanged, on a path taken once
    pub fn serve_internal(&self, routes: Router) -> Result<(), Router> {
        self.internal.set(routes)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The replicated ledger: submits are taken while this node leads
    /// ([`ledger_core::SubmitError::NotLeader`] otherwise); reads are of what this node
    /// applied.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The Raft state machine: its snapshots and the groups it found void.
    pub fn machine(&self) -> &LedgerMachine {
        &self.machine
    }

    /// The Raft node.
    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The leader this node knows of, if any. Never this node once it stepped down
    /// (removed from the voters, it goes on naming itself in openraft's metrics).
    pub fn leader_id(&self) -> Option<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader.filter(|&l| l != self.id || m.state == ServerState::Leader)
    }

    /// Raft's timing on this node.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The leader this node knows of, if it is another node and this node accepted a
    /// message from it (entries, a heartbeat, a snapshot chunk) that arrived within
    /// `within`; `None` otherwise (on the leader itself too: see
    /// [`Node::leads_with_quorum`]). A follower cut off from its leader goes on
    /// naming it ([`Node::leader_id`]) until its election timer fires; this goes
    /// `None` once the leader has been silent for `within`.
    pub fn leader_heard_within(&self, within: Duration) -> Option<NodeId> {
        let leader = self.leader_id().filter(|&l| l != self.id)?;
        let heard = self.contact.last()?;
        (heard.leader == leader && Instant::now().saturating_duration_since(heard.at) <= within).then_some(leader)
    }

    /// [`Node::leader_heard_within`] the longest silence this node's timing allows
    /// ([`Timing::leader_silence_max`]): the leader a follower may forward a write to.
    pub fn leader_heard_recently(&self) -> Option<NodeId> {
        self.leader_heard_within(self.timing.leader_silence_max())
    }

    /// Whether this node is the leader and a quorum acknowledged it within the longest
    /// election timeout: a leader cut off from the majority (its followers dead or
    /// partitioned) keeps believing it leads until it hears of a newer term, but its
    /// writes cannot commit, so it should not take them.
    pub fn leads_with_quorum(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.current_leader == Some(self.id)
            && m.millis_since_quorum_ack.is_some_and(|ms| ms <= self.timing.election_max_ms)
    }

    /// The current Raft term as this node knows it.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The voting members, in id order.
    pub fn members(&self) -> Vec<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// The replication address of `id`, from the membership.
    pub fn address_of(&self, id: NodeId) -> Option<String> {
        self.raft.metrics().borrow().membership_config.membership().get_node(&id).map(|n| n.addr.clone())
    }

    /// The seq of the last ledger record this node applied.
    pub fn applied_seq(&self) -> u64 {
        self.ledger.last_seq()
    }

    /// Adds node `new`, listening on `addr` for Raft (started with
    /// [`NodeConfig::join`]), as a voter: it is added as a learner and sent what it
    /// lacks (the leader's snapshot and the log after it), within `catch_up`; then the
    /// voters become the current ones and `new` (openraft's joint consensus). Returns
    /// the new voters. On the leader only. `new` must be an id the cluster never used:
    /// a node removed earlier (or wiped) comes back under a new one.
    pub async fn add_member(
        &self,
        new: NodeId,
        addr: String,
        catch_up: Duration,
    ) -> Result<Vec<NodeId>, MembershipError> {
        let voters = self.voters_here()?;
        self.check_newcomer(&voters, new, &addr)?;
        self.learn(new, addr, catch_up).await?;
        let mut next = voters;
        next.insert(new);
        self.change_voters(next).await
    }

    /// Removes voter `old` from the cluster (joint consensus, then `old` is neither a
    /// voter nor a learner) and returns the voters left. On the leader only; the last
    /// voter is never removed. A learner `old` (left by an addition that did not catch
    /// up) is dropped from the membership too.
    ///
    /// The leader may remove itself: it commits the membership without itself, answers,
    /// and steps down (this waits for that, at most the longest election timeout); the
    /// voters left elect a leader among them once its lease has run out (1.5 to 2 s
    /// with the default timing). Until then a write answers `no_leader` everywhere.
    ///
    /// The removed node is told nothing (openraft stops replicating to it at once, per
    /// its documentation "the node to remove can be safely terminated"): its operator
    /// stops it. Left running, it may stand for election; the others refuse it while
    /// they hear from their leader (openraft's leader lease) and its log is behind
    /// theirs, but it is noise. It must never come back under its old id (its Raft log
    /// and vote are of a membership that no longer holds it); wiped, it may come back
    /// as a new node with [`Node::add_member`] under a new id.
    pub async fn remove_member(&self, old: NodeId) -> Result<Vec<NodeId>, MembershipError> {
        let voters = self.voters_here()?;
        if self.is_learner(old) {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([old])), false)
                .await
                .map_err(|e| MembershipError::Raft(format!("removing learner {old}: {e}")))?;
            return Ok(voters.into_iter().collect());
        }
        Self::check_leaving(&voters, old)?;
        if voters.len() == 1 {
            return Err(MembershipError::Invalid(format!("node {old} is the last voter; it cannot be removed")));
        }
        let mut next = voters;
        next.remove(&old);
        self.change_voters_without(next, old).await
    }

    /// Replaces voter `old` by node `new`, listening on `addr` for Raft (started with
    /// [`NodeConfig::join`]): `new` is added as a learner and sent what it lacks (the
    /// leader's snapshot and the log after it), within `catch_up`; then the voters
    /// become the old ones without `old` and with `new` (openraft's joint consensus).
    /// On the leader only (which may replace itself: see [`Node::remove_member`]). A
    /// wiped machine comes back this way, under a new id: a voter that forgot its vote
    /// and its log must never rejoin under its old one.
    pub async fn replace_member(
        &self,
        old: NodeId,
        new: NodeId,
        addr: String,
        catch_up: Duration,
    ) -> Result<Vec<NodeId>, MembershipError> {
        let voters = self.voters_here()?;
        Self::check_leaving(&voters, old)?;
        self.check_newcomer(&voters, new, &addr)?;
        self.learn(new, addr, catch_up).await?;
        let mut next = voters;
        next.remove(&old);
        next.insert(new);
        self.change_voters_without(next, old).await
    }

    /// The voters, on the leader; `NotLeader` elsewhere.
    fn voters_here(&self) -> Result<BTreeSet<NodeId>, MembershipError> {
        if self.leader_id() != Some(self.id) {
            return Err(MembershipError::NotLeader(self.leader_id()));
        }
        Ok(self.raft.metrics().borrow().membership_config.membership().voter_ids().collect())
    }

    /// Whether `id` is a learner of the membership.
    fn is_learner(&self, id: NodeId) -> bool {
        self.raft.metrics().borrow().membership_config.membership().learner_ids().any(|l| l == id)
    }

    /// `old` may leave if it is a voter.
    fn check_leaving(voters: &BTreeSet<NodeId>, old: NodeId) -> Result<(), MembershipError> {
        if voters.contains(&old) {
            Ok(())
        } else {
            Err(MembershipError::Invalid(format!("node {old} is not a voter (voters: {voters:?})")))
        }
    }

    /// `new` may join at `addr` if it is no voter yet and `addr` is `HOST:PORT` that no
    /// other node of the membership uses (two ids on one address could elect two
    /// leaders). A learner `new` (a join that did not catch up) may be asked again, at
    /// the same address (openraft keeps a learner's first one).
    fn check_newcomer(&self, voters: &BTreeSet<NodeId>, new: NodeId, addr: &str) -> Result<(), MembershipError> {
        if voters.contains(&new) {
            return Err(MembershipError::Invalid(format!("node {new} is a voter already")));
        }
        if !is_host_port(addr) {
            return Err(MembershipError::Invalid(format!("{addr:?} is not HOST:PORT")));
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if let Some(known) = m.membership_config.membership().get_node(&new)
            && known.addr != addr
        {
            return Err(MembershipError::Invalid(format!(
                "node {new} is a learner at {}: ask again with that address, or remove it first",
                known.addr
            )));
        }
        if let Some((other, _)) = m.membership_config.membership().nodes().find(|(id, n)| **id != new && n.addr == addr)
        {
            return Err(MembershipError::Invalid(format!("{addr} is node {other}'s address")));
        }
        Ok(())
    }

    /// Adds `new` as a learner and waits, at most `catch_up`, until it acknowledged the
    /// log up to its own addition (the leader's snapshot and the entries after it).
    ///
    /// Not openraft's own wait (`add_learner` blocking): that calls a learner up to
    /// date once it is within `replication_lag_threshold` entries (5,000 by default) of
    /// the leader, even one that never answered, so a node down or unreachable would
    /// be made a voter of a small cluster at once.
    async fn learn(&self, new: NodeId, addr: String, catch_up: Duration) -> Result<(), MembershipError> {
        let deadline = tokio::time::Instant::now() + catch_up;
        let not_caught_up = || {
            MembershipError::CatchUp(format!(
                "node {new} did not catch up within {catch_up:?}; it stays a learner (ask again, or remove it)"
            ))
        };
        let added = match tokio::time::timeout_at(deadline, self.raft.add_learner(new, BasicNode { addr }, false)).await
        {
            Ok(Ok(added)) => added,
            Ok(Err(e)) => return Err(MembershipError::Raft(format!("adding node {new} as a learner: {e}"))),
            Err(_) => return Err(not_caught_up()),
        };
        let target = added.log_id.index;
        let within = Some(deadline.saturating_duration_since(tokio::time::Instant::now()));
        // Done when it acknowledged the entry that added it, or this node stopped leading.
        let waited = self
            .raft
            .wait(within)
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .is_none_or(|r| r.get(&new).is_some_and(|l| l.is_some_and(|l| l.index >= target)))
                },
                "the learner acknowledged its addition",
            )
            .await;
        match waited {
            Ok(m) if m.replication.is_some() => Ok(()),
            Ok(_) => Err(MembershipError::NotLeader(self.leader_id())),
            Err(_) => Err(not_caught_up()),
        }
    }

    /// Makes `next` the voters, dropping the others from the membership.
    async fn change_voters(&self, next: BTreeSet<NodeId>) -> Result<Vec<NodeId>, MembershipError> {
        self.raft
            .change_membership(next.clone(), false)
            .await
            .map_err(|e| MembershipError::Raft(format!("changing the voters to {next:?}: {e}")))?;
        Ok(next.into_iter().collect())
    }

    /// [`Node::change_voters`] where `old` leaves: when that is this node, it waits
    /// until it stepped down (openraft does on its next tick once the membership is
    /// applied), so that its answer and `/v1/cluster` no longer name it the leader.
    async fn change_voters_without(&self, next: BTreeSet<NodeId>, old: NodeId) -> Result<Vec<NodeId>, MembershipError> {
        let voters = self.change_voters(next).await?;
        if old == self.id {
            let within = Some(self.timing.leader_silence_max());
            let stepped_down = self
                .raft
                .wait(within)
                .metrics(|m| m.state != ServerState::Leader, "the removed leader steps down")
                .await;
            if let Err(e) = stepped_down {
                tracing::warn!(node = self.id, error = %e, "removed from the voters, still leading");
            }
        }
        Ok(voters)
    }

    /// Confirms with a quorum that this node still leads, and waits until its ledger
    /// applied everything committed before: a read after it is linearizable. `Err` on
    /// a node that is not the leader (or cannot reach a quorum).
    pub async fn ensure_linearizable(&self) -> Result<(), RaftError<NodeId, CheckIsLeaderError<NodeId, BasicNode>>> {
        self.raft.ensure_linearizable().await.map(|_| ())
    }

    /// Waits until a read on this node would be as fresh as `freshness` asks (see
    /// [`crate::reads`]), for at most `within`; the caller then reads the ledger.
    /// `Err` when it cannot be: nothing should be read (or the read should be labelled
    /// as staler than asked).
    pub async fn read(&self, freshness: Freshness, within: Duration) -> Result<(), ReadError> {
        let arrived = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + within;
        let max_age = match freshness {
            Freshness::Applied => return Ok(()),
            Freshness::AtLeastSeq(seq) => return self.wait_seq(seq, deadline, within).await,
            Freshness::Linearizable => None,
            Freshness::MaxStaleness(age) => Some(age),
        };
        let index = self.reads.index(&self.raft, self.id, arrived, max_age, within).await?;
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.raft.wait(Some(remaining)).applied_index_at_least(index, "a read's index").await {
            Ok(_) => Ok(()),
            Err(_) => Err(self.behind(format!("Raft index {}", index.unwrap_or(0)), within)),
        }
    }

    /// Waits until the ledger applied `seq`: each apply changes Raft's metrics after the
    /// ledger applied the entry, so the seq is checked again at each change.
    async fn wait_seq(&self, seq: u64, deadline: tokio::time::Instant, within: Duration) -> Result<(), ReadError> {
        let mut metrics = self.raft.metrics();
        loop {
            if self.ledger.last_seq() >= seq {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                // Raft stopped, or the time is up: one last look.
                Ok(Err(_)) | Err(_) => {
                    return if self.ledger.last_seq() >= seq {
                        Ok(())
                    } else {
                        Err(self.behind(format!("seq {seq}"), within))
                    };
                }
            }
        }
    }

    fn behind(&self, needed: String, waited: Duration) -> ReadError {
        let applied_index = self.raft.metrics().borrow().last_applied.map_or(0, |id| id.index);
        ReadError::Behind { applied: self.ledger.last_seq(), applied_index, needed, waited }
    }

    /// Stops Raft, the replication listener and the leadership follower, then closes
    /// the ledger (queued work committed or answered, the log synced). Later calls
    /// of anything on the node fail (the ledger is closed, Raft stopped).
    pub async fn shutdown(&self) -> Result<(), ledger_core::SubmitError> {
        if let Err(e) = self.raft.shutdown().await {
            tracing::error!(node = self.id, error = %e, "raft did not shut down cleanly");
        }
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let ledger = self.ledger.clone();
        tokio::task::spawn_blocking(move || ledger.close())
            .await
            .unwrap_or(Err(ledger_core::SubmitError::Failed("closing the ledger panicked".into())))
    }
}

/// Keeps this node from standing for election while its log ends below the highest
/// commit index a leader told it of (checked every `every`), and lets it stand again
/// once it holds that entry.
///
/// Such a node lacks an entry a quorum holds, so no quorum can elect it (a voter
/// refuses a candidate whose log is behind its own): standing only does harm. A node
/// restarted after a while away is that node until the leader has sent it what it
/// missed, and it is often the first to stand when the leader dies (its election timer
/// is as short as anyone's). It is refused, and two things slow the fail-over: its
/// term is now the one the node that can win stands for, which must then wait for a
/// term after it; and openraft 0.9 remembers that it saw a greater log and adds twice
/// the longest election timeout (2 s with the default timing) to its *next* election
/// timer, however long after and however caught up it is by then (fixed upstream in
/// openraft PR 2087, not in 0.9). So the next time a leader died, this node, caught up
/// and able to win, stood only after 3.5 to 4 s, while the node restarted in the
/// meantime stood first and was refused in turn: under `tests/cluster.rs`'s kill cycle
/// the fail-over's median was about 4 s instead of about 2 s.
///
/// Liveness is kept: a node held back this way could not have won, and it still votes.
///
/// A restarted node does not know yet what it missed: it learns the leader from the
/// others' answers (its own vote, read back, named itself), before the leader's first
/// message reaches it, which took more than the 0.4 s the test leaves it. Until it heard
/// from a leader, it does not stand before `hold` (a deadline, on a restart only): a
/// node that stayed up and holds the log stands first, within the lease and an
/// election timeout of the leader's death. Past `hold` it stands as it would have (a
/// whole cluster restarted elects a leader then).
async fn stand_only_when_electable(
    raft: Raft<TypeConfig>,
    contact: LeaderContact,
    every: Duration,
    hold: Option<Instant>,
) {
    let mut standing = true;
    loop {
        tokio::time::sleep(every).await;
        let last = raft.metrics().borrow().last_log_index;
        let unheard = contact.last().is_none() && hold.is_some_and(|until| Instant::now() < until);
        let behind = unheard || contact.known_committed().is_some_and(|committed| last.is_none_or(|l| l < committed));
        if behind == standing {
            standing = !behind;
            raft.runtime_config().elect(standing);
            if standing {
                tracing::info!(last_log_index = ?last, "may stand for election again");
            } else if unheard {
                tracing::info!(last_log_index = ?last, "restarted, no leader heard from yet: not standing for election");
            } else {
                let committed = contact.known_committed();
                tracing::info!(last_log_index = ?last, ?committed, "behind what a leader committed: not standing for election");
            }
        }
    }
}

/// Whether `addr` is `HOST:PORT` (a host, then a port number); `[::1]:7001` is one.
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// How long a request to a path Raft does not use waits for [`Node::serve_internal`].
const INTERNAL_WAIT: Duration = Duration::from_secs(5);

/// The replication listener's other paths: the routes attached by
/// [`Node::serve_internal`], or 503 until there are some.
async fn internal_route(internal: Arc<OnceLock<Router>>, request: Request) -> Response {
    let deadline = tokio::time::Instant::now() + INTERNAL_WAIT;
    loop {
        if let Some(routes) = internal.get() {
            return match routes.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return (StatusCode::SERVICE_UNAVAILABLE, "this node is starting").into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
