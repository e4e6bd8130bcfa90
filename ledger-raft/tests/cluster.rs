//! Three nodes on loopback, each with its Raft log over `ledger-store` and the HTTP
//! transport: a leader is elected, writes are replicated and applied in the same order
//! everywhere with identical entries, the leader's death elects another that goes on
//! writing, and the dead node, restarted on its directory, catches up.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Machine;
use ledger_raft::network::Network;
use ledger_raft::{Group, NodeId, RaftLog, TypeConfig};
use openraft::{Entry, Raft, RaftLogReader};

struct Node {
    raft: Raft<TypeConfig>,
    log: RaftLog,
    machine: Machine,
    server: tokio::task::JoinHandle<()>,
}

async fn start(id: NodeId, dir: &std::path::Path, listener: tokio::net::TcpListener) -> Node {
    let log = RaftLog::open(dir, 64 << 10).unwrap();
    let machine = Machine::default();
    let raft = Raft::new(id, common::config(), Network, log.clone(), machine.clone()).await.unwrap();
    let server = common::serve(listener, &raft);
    Node { raft, log, machine, server }
}

async fn leader_of(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let alive: Vec<NodeId> = nodes.keys().copied().collect();
    common::leader(&nodes.values().next().unwrap().raft, &alive).await
}

async fn write(node: &Node, from: u64, to: u64) {
    for i in from..to {
        node.raft.client_write(Group(format!("group {i}").into_bytes())).await.unwrap();
    }
}

async fn applied_through(node: &Node, index: u64) {
    node.raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(index), "applied").await.unwrap();
}

async fn entries(node: &Node) -> Vec<Entry<TypeConfig>> {
    let mut log = node.log.clone();
    log.try_get_log_entries(0..).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (listeners, members) = common::listeners(3).await;
    let mut nodes = BTreeMap::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        let dir = dirs[usize::try_from(id - 1).unwrap()].path();
        nodes.insert(id, start(id, dir, listener).await);
    }
    nodes[&1].raft.initialize(members.clone()).await.unwrap();

    let leader = leader_of(&nodes).await;
    write(&nodes[&leader], 0, 40).await;
    let last = nodes[&leader].raft.metrics().borrow().last_log_index.unwrap();
    for node in nodes.values() {
        applied_through(node, last).await;
    }
    let reference = entries(&nodes[&leader]).await;
    for (id, node) in &nodes {
        assert_eq!(entries(node).await, reference, "node {id}'s log holds the leader's entries");
        let groups = node.machine.0.lock().applies.groups.clone();
        assert_eq!(groups.len(), 40, "node {id} applied every group");
        assert_eq!(groups.first().map(Vec::as_slice), Some(&b"group 0"[..]));
    }

    // The leader dies: another is elected and goes on.
    let old = nodes.remove(&leader).unwrap();
    old.raft.shutdown().await.unwrap();
    old.server.abort();
    drop(old);
    let next = leader_of(&nodes).await;
    assert_ne!(next, leader);
    write(&nodes[&next], 40, 60).await;
    let last = nodes[&next].raft.metrics().borrow().last_log_index.unwrap();
    for node in nodes.values() {
        applied_through(node, last).await;
    }

    // The old leader comes back on its directory and catches up.
    let listener = tokio::net::TcpListener::bind(&members[&leader].addr).await.unwrap();
    let dir = dirs[usize::try_from(leader - 1).unwrap()].path();
    let back = start(leader, dir, listener).await;
    applied_through(&back, last).await;
    assert_eq!(entries(&back).await, entries(&nodes[&next]).await, "the restarted node's log equals the leader's");
    let groups = back.machine.0.lock().applies.groups.clone();
    assert_eq!(groups.len(), 60, "it applied every group, old and new, in order");
    assert_eq!(groups.last().map(Vec::as_slice), Some(&b"group 59"[..]));
    nodes.insert(leader, back);
    for node in nodes.values() {
        node.raft.shutdown().await.unwrap();
    }
}
