//! A state machine for the replication tests: it keeps what openraft looks at (the
//! applied log id, the membership, a snapshot of them) and every applied group, in
//! order, so tests can compare what each node applied. The ledger's own state machine
//! comes with the replicated sequencer.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;

use ledger_raft::snapshot::SnapshotFile;
use ledger_raft::{Applied, NodeId, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applies {
    pub last: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub count: u64,
    pub groups: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct State {
    pub applies: Applies,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    built: u64,
    /// Where snapshot data lives as files (openraft streams them).
    files: Option<tempfile::TempDir>,
}

impl State {
    fn file(&mut self, name: &str) -> std::path::PathBuf {
        self.files.get_or_insert_with(|| tempfile::tempdir().unwrap()).path().join(name)
    }
}

/// `data` as a snapshot file at `path`.
async fn snapshot_file(path: std::path::PathBuf, data: &[u8]) -> Box<SnapshotFile> {
    std::fs::write(&path, data).unwrap();
    Box::new(SnapshotFile::open(path).await.unwrap())
}

#[derive(Debug, Clone, Default)]
pub struct Machine(pub Arc<Mutex<State>>);

impl RaftSnapshotBuilder<TypeConfig> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, data, path) = {
            let mut state = self.0.lock();
            state.built += 1;
            let data = serde_json::to_vec(&state.applies).unwrap();
            let meta = SnapshotMeta {
                last_log_id: state.applies.last,
                last_membership: state.applies.membership.clone(),
                snapshot_id: format!("{:?}-{}", state.applies.last, state.built),
            };
            state.snapshot = Some((meta.clone(), data.clone()));
            let path = {
                let name = format!("built-{}", state.built);
                state.file(&name)
            };
            (meta, data, path)
        };
        Ok(Snapshot { meta, snapshot: snapshot_file(path, &data).await })
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
            match entry.payload {
                EntryPayload::Membership(m) => state.applies.membership = StoredMembership::new(Some(entry.log_id), m),
                EntryPayload::Normal(group) => state.applies.groups.push(group.0),
                EntryPayload::Blank => {}
            }
            out.push(Applied { index: entry.log_id.index });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<NodeId>> {
        let path = {
            let mut state = self.0.lock();
            state.built += 1;
            {
                let name = format!("received-{}", state.built);
                state.file(&name)
            }
        };
        Ok(Box::new(SnapshotFile::create(path).await.unwrap()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        mut snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<NodeId>> {
        snapshot.finish().await.unwrap();
        let data = std::fs::read(snapshot.path()).unwrap();
        let applies: Applies = serde_json::from_slice(&data).unwrap();
        let mut state = self.0.lock();
        state.applies = Applies { last: meta.last_log_id, membership: meta.last_membership.clone(), ..applies };
        state.snapshot = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let current = {
            let mut state = self.0.lock();
            state.built += 1;
            let path = {
                let name = format!("current-{}", state.built);
                state.file(&name)
            };
            state.snapshot.clone().map(|(meta, data)| (meta, data, path))
        };
        match current {
            Some((meta, data, path)) => Ok(Some(Snapshot { meta, snapshot: snapshot_file(path, &data).await })),
            None => Ok(None),
        }
    }
}

// ----- a cluster on loopback ----------------------------------------------------------

/// Raft's timing for the tests' clusters: quick elections.
pub fn timing() -> ledger_raft::node::Timing {
    ledger_raft::node::Timing { heartbeat_ms: 100, election_min_ms: 500, election_max_ms: 1_000 }
}

/// openraft's configuration of [`timing`], without automatic snapshots.
pub fn config() -> Arc<openraft::Config> {
    let mut config = ledger_raft::node::NodeConfig::new(0, "", std::collections::BTreeMap::new());
    config.timing = timing();
    config.snapshot_every_entries = 0;
    config.raft_config().unwrap()
}

/// `n` free loopback addresses for nodes 1..=n (bound once to learn them, then freed).
pub async fn free_addresses(n: u64) -> std::collections::BTreeMap<NodeId, String> {
    let (listeners, members) = listeners(n).await;
    drop(listeners);
    members.into_iter().map(|(id, node)| (id, node.addr)).collect()
}

/// `n` listeners on free loopback ports, and the membership naming them (ids from 1).
pub async fn listeners(n: u64) -> (Vec<tokio::net::TcpListener>, std::collections::BTreeMap<NodeId, BasicNode>) {
    let mut listeners = Vec::new();
    let mut members = std::collections::BTreeMap::new();
    for id in 1..=n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode { addr: listener.local_addr().unwrap().to_string() });
        listeners.push(listener);
    }
    (listeners, members)
}

/// Serves `raft`'s routes on `listener` until aborted.
pub fn serve(listener: tokio::net::TcpListener, raft: &openraft::Raft<TypeConfig>) -> tokio::task::JoinHandle<()> {
    let app = ledger_raft::network::router(raft.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// The leader `raft` knows of, once it is one of `alive`.
pub async fn leader(raft: &openraft::Raft<TypeConfig>, alive: &[NodeId]) -> NodeId {
    let metrics = raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some_and(|l| alive.contains(&l)), "a live leader")
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

// ----- a replicated ledger's load and checks ------------------------------------------

pub fn usd() -> ledger_core::Currency {
    ledger_core::Currency::from_code("USD").unwrap()
}

/// Submits `count` sales from `from` on `ledger`, one call each (a blocking call, on a
/// thread of its own), retrying while this node is not yet the leader's proposer.
pub async fn sales(ledger: &ledger_core::Ledger, from: u128, count: u128) {
    use ledger_core::{SubmitError, Tx, TxId, TxOutcome};
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || {
        for i in from..from + count {
            let client = 1 + u64::try_from(i % 3).unwrap();
            let sale = [Tx::sale(TxId(i), client, 1_00 + i64::try_from(i).unwrap(), usd())];
            let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match ledger.submit(&sale) {
                    Ok(out) => {
                        assert!(matches!(out[0], TxOutcome::Committed(_) | TxOutcome::Exists(_)), "{out:?}");
                        break;
                    }
                    Err(SubmitError::NotLeader | SubmitError::Failed(_)) if std::time::Instant::now() < until => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    Err(e) => panic!("sale {i}: {e}"),
                }
            }
        }
    })
    .await
    .unwrap();
}

/// Waits until every ledger has applied `seq`.
pub async fn caught_up(ledgers: &[&ledger_core::Ledger], seq: u64) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ledgers.iter().any(|l| l.last_seq() < seq) {
        let at: Vec<u64> = ledgers.iter().map(|l| l.last_seq()).collect();
        assert!(std::time::Instant::now() < until, "every node reaches seq {seq}: {at:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The same records at the same seqs and the same balances on every ledger, each
/// consistent with its transactions.
pub fn assert_same(ledgers: &[&ledger_core::Ledger]) {
    let first = ledgers[0];
    let raw = first.read_raw(1, usize::MAX).unwrap();
    for ledger in ledgers {
        assert_eq!(ledger.read_raw(1, usize::MAX).unwrap(), raw, "the same records at the same seqs");
        for client in 1..=3 {
            assert_eq!(ledger.balances(client), first.balances(client));
        }
        ledger.check_consistency().unwrap();
    }
}

// ----- nodes (`ledger_raft::node::Node`) -------------------------------------------

/// Node `id` of the cluster `peers` on `dir`, with the tests' quick Raft timing and
/// synced ledger writes; `join`: a new node that waits to be added
/// (`NodeConfig::join`).
pub async fn node(
    id: NodeId,
    dir: &std::path::Path,
    peers: &std::collections::BTreeMap<NodeId, String>,
    join: bool,
) -> ledger_raft::node::Node {
    let mut config = ledger_raft::node::NodeConfig::new(id, dir, peers.clone());
    config.timing = timing();
    config.ledger = ledger_core::LedgerOptions { durability: ledger_core::Durability::SyncData, ..config.ledger };
    config.join = join;
    ledger_raft::node::Node::start(config).await.unwrap()
}

/// The leader every node of `nodes` names, with a quorum, twice in a row 0.3 s apart:
/// on a first start every node stands for election, so the first leader seen may be
/// replaced within a second.
pub async fn settled_leader(nodes: &std::collections::BTreeMap<NodeId, ledger_raft::node::Node>) -> NodeId {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = None;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes.values().map(ledger_raft::node::Node::leader_id).collect();
        let now = leaders[0].filter(|l| {
            leaders.iter().all(|x| *x == Some(*l))
                && nodes.get(l).is_some_and(ledger_raft::node::Node::leads_with_quorum)
        });
        if let Some(leader) = now
            && now == seen
        {
            return leader;
        }
        assert!(std::time::Instant::now() < until, "no settled leader: {leaders:?}");
        seen = now;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
