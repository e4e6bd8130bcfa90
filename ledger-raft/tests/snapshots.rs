//! Catch-up beyond the Raft log: nodes build ledger snapshots and purge the Raft log
//! behind them, so a node that was away (its log and ledger behind the purge) or new
//! (a wiped machine, which rejoins under a new id: a voter that forgot its vote must
//! not come back as itself) catches up from the leader's snapshot plus the log after
//! it, and ends with the same records at the same seqs as every other node. A node
//! restarted on a purged Raft log starts from its own snapshot.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // small test values

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ledger_core::{Durability, Ledger, LedgerOptions};
use ledger_raft::machine::{LedgerMachine, RaftProposer, follow_leadership};
use ledger_raft::network::Network;
use ledger_raft::{NodeId, RaftLog, TypeConfig};
use openraft::Raft;

struct Node {
    raft: Raft<TypeConfig>,
    ledger: Ledger,
    machine: LedgerMachine,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Snapshots every 25 entries, and the Raft log purged right behind each.
fn config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(25),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            // Small chunks: a snapshot crosses several messages.
            snapshot_max_chunk_size: 64 << 10,
            ..openraft::Config::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn start(id: NodeId, dir: &Path, addr: &str) -> Node {
    let options = LedgerOptions {
        durability: Durability::SyncData,
        segment_bytes: 64 << 10,
        replicated: true,
        // Checkpoints too, so snapshots carry one and the runs it names.
        snapshot_every_records: 100,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(dir.join("ledger"), options).unwrap();
    let log = RaftLog::open(dir.join("raft"), 4 << 20).unwrap();
    let machine = LedgerMachine::open(ledger.clone(), dir.join("snapshots")).unwrap();
    let raft = Raft::new(id, config(), Network, log, machine.clone()).await.unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let server = common::serve(listener, &raft);
    let proposer = RaftProposer::new(raft.clone(), tokio::runtime::Handle::current());
    let leadership = tokio::spawn(follow_leadership(raft.clone(), ledger.clone(), proposer));
    Node { raft, ledger, machine, tasks: vec![server, leadership] }
}

async fn stop(node: Node) {
    node.raft.shutdown().await.unwrap();
    for task in node.tasks {
        task.abort();
    }
    node.ledger.close().unwrap();
}

/// Waits until the leader's Raft log starts past `index` (purged behind a snapshot).
async fn purged_past(raft: &Raft<TypeConfig>, index: u64) {
    raft.wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.purged.is_some_and(|p| p.index > index), "the log purged behind a snapshot")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_from_a_snapshot_and_nodes_restart_on_purged_logs() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir = |id: NodeId| dirs[(id - 1) as usize].path().to_path_buf();
    let (listeners, members) = common::listeners(3).await;
    drop(listeners);
    let addr = |id: NodeId| members[&id].addr.clone();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(id, start(id, &dir(id), &addr(id)).await);
    }
    nodes[&1].raft.initialize(members.clone()).await.unwrap();
    let alive: Vec<NodeId> = nodes.keys().copied().collect();
    let leader = common::leader(&nodes[&1].raft, &alive).await;
    common::sales(&nodes[&leader].ledger, 1, 40).await;
    common::caught_up(&ledgers(&nodes), 40).await;

    // A follower goes away with 40 records; the others go on past a snapshot and purge
    // the Raft log it would need.
    let lagging = *nodes.keys().find(|&&id| id != leader).unwrap();
    stop(nodes.remove(&lagging).unwrap()).await;
    let index_then = nodes[&leader].raft.metrics().borrow().last_log_index.unwrap();
    common::sales(&nodes[&leader].ledger, 41, 80).await;
    purged_past(&nodes[&leader].raft, index_then).await;
    let built = nodes[&leader].machine.current_snapshot().expect("the leader built a snapshot");

    // Back on its own directories: its log ends before the leader's starts, so it
    // installs the leader's snapshot (its ledger replaced) and applies the rest.
    nodes.insert(lagging, start(lagging, &dir(lagging), &addr(lagging)).await);
    common::sales(&nodes[&leader].ledger, 121, 10).await;
    common::caught_up(&ledgers(&nodes), 130).await;
    common::assert_same(&ledgers(&nodes));
    let installed = nodes[&lagging].machine.current_snapshot().unwrap();
    assert!(installed.last_log_id >= built.last_log_id);
    // Installed, its ledger replaced (more than once when the leader purged again
    // meanwhile).
    let (installed, replaced) = nodes[&lagging].machine.installed_snapshots();
    assert!(installed >= 1 && replaced >= 1, "{installed} installed, {replaced} replaced");

    // Every node restarts on a purged Raft log: each starts from its own snapshot and
    // the log after it, and they still agree, and take more.
    for id in 1..=3u64 {
        stop(nodes.remove(&id).unwrap()).await;
        nodes.insert(id, start(id, &dir(id), &addr(id)).await);
    }
    let alive: Vec<NodeId> = nodes.keys().copied().collect();
    let leader = common::leader(&nodes[&1].raft, &alive).await;
    common::sales(&nodes[&leader].ledger, 131, 20).await;
    common::caught_up(&ledgers(&nodes), 150).await;
    common::assert_same(&ledgers(&nodes));
    for node in nodes.values() {
        assert_eq!(node.ledger.transaction_count(), 150);
    }
    for (_, node) in std::mem::take(&mut nodes) {
        stop(node).await;
    }
}

/// A node replaced by another: the new one joins as a learner (its ledger from the
/// leader's snapshot, the Raft log being purged), becomes a voter in the old one's
/// place, and the cluster goes on without the old one, whichever led.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_replaced_by_a_new_one_that_joins_from_a_snapshot() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir = |id: NodeId| dirs[(id - 1) as usize].path().to_path_buf();
    let (listeners, mut all) = common::listeners(4).await;
    drop(listeners);
    let addr = |id: NodeId| all[&id].addr.clone();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(id, start(id, &dir(id), &addr(id)).await);
    }
    let new = all.remove(&4).unwrap();
    nodes[&1].raft.initialize(all.clone()).await.unwrap();
    let leader = common::leader(&nodes[&1].raft, &[1, 2, 3]).await;
    common::sales(&nodes[&leader].ledger, 1, 60).await;
    purged_past(&nodes[&leader].raft, 10).await;

    nodes.insert(4, start(4, &dir(4), &new.addr).await);
    // Blocks until the leader has sent the learner what it lacks; it applies it next.
    nodes[&leader].raft.add_learner(4, new, true).await.unwrap();
    common::caught_up(&ledgers(&nodes), 60).await;
    assert!(nodes[&4].machine.installed_snapshots().1 >= 1, "the learner started from a snapshot");
    let members: std::collections::BTreeSet<NodeId> = [2, 3, 4].into();
    nodes[&leader].raft.change_membership(members, false).await.unwrap();
    stop(nodes.remove(&1).unwrap()).await;

    let leader = common::leader(&nodes[&2].raft, &[2, 3, 4]).await;
    common::sales(&nodes[&leader].ledger, 61, 30).await;
    common::caught_up(&ledgers(&nodes), 90).await;
    common::assert_same(&ledgers(&nodes));
    let membership = nodes[&4].raft.metrics().borrow().membership_config.clone();
    let voters: Vec<NodeId> = membership.membership().voter_ids().collect();
    assert_eq!(voters, [2, 3, 4]);
    for (_, node) in std::mem::take(&mut nodes) {
        stop(node).await;
    }
}

fn ledgers(nodes: &BTreeMap<NodeId, Node>) -> Vec<&Ledger> {
    nodes.values().map(|n| &n.ledger).collect()
}
