//! Three nodes of a replicated ledger on loopback, each a `ledger_raft::node::Node`
//! (the ledger in its replicated mode, its Raft log over `ledger-store`, the HTTP
//! transport, the static membership each node initializes). Submits on
//! the leader are answered once Raft committed their group and every node's ledger
//! holds the same records; the leader's death elects another that takes submits; the
//! dead node restarts on its directories and catches up to byte-identical records.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // small test values

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_core::{Durability, Ledger, LedgerOptions, SubmitError, Tx, TxId, TxOutcome};
use ledger_raft::NodeId;
use ledger_raft::node::{Node, NodeConfig};

/// Node `id` of the cluster `peers` on `dir`, with the tests' quick Raft timing.
async fn start(id: NodeId, dir: &std::path::Path, peers: &BTreeMap<NodeId, String>) -> Node {
    let mut config = NodeConfig::new(id, dir, peers.clone());
    config.timing = common::timing();
    config.ledger = LedgerOptions { durability: Durability::SyncData, segment_bytes: 256 << 10, ..config.ledger };
    Node::start(config).await.unwrap()
}

async fn stop(node: Node) {
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_ledger_commits_through_raft_fails_over_and_catches_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = common::free_addresses(3).await;
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(id, start(id, dirs[(id - 1) as usize].path(), &peers).await);
    }
    // `initialize` returns before Raft's metrics show the membership it wrote.
    for node in nodes.values() {
        let until = Instant::now() + Duration::from_secs(10);
        while node.members() != vec![1, 2, 3] {
            assert!(Instant::now() < until, "node {}: members {:?}, not [1, 2, 3]", node.id(), node.members());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let leader = common::settled_leader(&nodes).await;
    common::sales(nodes[&leader].ledger(), 1, 60).await;
    // One call of thousands: one group, one Raft entry of megabytes between nodes.
    let big: Vec<Tx> = (10_001..=14_000u128).map(|i| Tx::sale(TxId(i), 2, 1_00, common::usd())).collect();
    let ledger = nodes[&leader].ledger().clone();
    let out = tokio::task::spawn_blocking(move || ledger.submit(&big)).await.unwrap();
    assert!(out.unwrap().iter().all(|o| matches!(o, TxOutcome::Committed(_))));
    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    let refused = nodes[&follower].ledger().submit(&[Tx::sale(TxId(999), 1, 1, common::usd())]);
    assert_eq!(refused, Err(SubmitError::NotLeader), "a follower takes no submits");
    // Reads: linearizable on the leader (it confirms its leadership with a quorum and
    // its state machine has applied what was committed); a follower refuses that, and
    // reads its own writes by waiting for the seq the leader answered with.
    nodes[&leader].ensure_linearizable().await.unwrap();
    assert!(nodes[&follower].ensure_linearizable().await.is_err());
    assert_eq!(nodes[&follower].leader_id(), Some(leader));
    assert!(nodes[&follower].term() >= 1);
    let written = nodes[&leader].ledger().lookup(TxId(14_000)).unwrap();
    assert!(nodes[&follower].ledger().wait_for_seq(written.seq, Duration::from_secs(10)));
    assert_eq!(nodes[&follower].ledger().lookup(TxId(14_000)), Some(written));
    let last = nodes[&leader].ledger().last_seq();
    assert_eq!(last, 4_060);
    common::caught_up(&ledgers(&nodes), last).await;
    common::assert_same(&ledgers(&nodes));

    // The leader dies; another is elected and takes submits.
    let old = nodes.remove(&leader).unwrap();
    stop(old).await;
    let next = common::settled_leader(&nodes).await;
    assert_ne!(next, leader);
    common::sales(nodes[&next].ledger(), 61, 40).await;
    // A sale acknowledged before the fail-over, resubmitted, is there once.
    common::sales(nodes[&next].ledger(), 1, 5).await;
    let last = nodes[&next].ledger().last_seq();
    assert_eq!(last, 4_100);
    common::caught_up(&ledgers(&nodes), last).await;

    // The dead node restarts on its directories and catches up.
    let back = start(leader, dirs[(leader - 1) as usize].path(), &peers).await;
    nodes.insert(leader, back);
    common::caught_up(&ledgers(&nodes), last).await;
    common::assert_same(&ledgers(&nodes));
    for node in nodes.values() {
        assert_eq!(node.ledger().transaction_count(), 4_100);
        node.ledger().check_consistency().unwrap();
    }
    for (_, node) in std::mem::take(&mut nodes) {
        stop(node).await;
    }
}

fn ledgers(nodes: &BTreeMap<NodeId, Node>) -> Vec<&Ledger> {
    nodes.values().map(Node::ledger).collect()
}
