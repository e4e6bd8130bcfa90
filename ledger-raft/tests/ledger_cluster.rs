//! Three nodes of a replicated ledger on loopback: each a `ledger-core` ledger in its
//! replicated mode, its Raft log over `ledger-store`, the HTTP transport. Submits on
//! the leader are answered once Raft committed their group and every node's ledger
//! holds the same records; the leader's death elects another that takes submits; the
//! dead node restarts on its directories and catches up to byte-identical records.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // small test values

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_core::{Currency, Durability, Ledger, LedgerOptions, SubmitError, Tx, TxId, TxOutcome};
use ledger_raft::machine::{LedgerMachine, RaftProposer, follow_leadership};
use ledger_raft::network::{Network, router};
use ledger_raft::{NodeId, RaftLog, TypeConfig};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};

struct Node {
    raft: Raft<TypeConfig>,
    ledger: Ledger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

async fn start(id: NodeId, dir: &std::path::Path, listener: tokio::net::TcpListener) -> Node {
    let config = Arc::new(
        Config {
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            snapshot_policy: SnapshotPolicy::Never,
            ..Config::default()
        }
        .validate()
        .unwrap(),
    );
    let options = LedgerOptions {
        durability: Durability::SyncData,
        segment_bytes: 256 << 10,
        replicated: true,
        ..LedgerOptions::default()
    };
    let ledger = Ledger::open(dir.join("ledger"), options).unwrap();
    let log = RaftLog::open(dir.join("raft"), 256 << 10).unwrap();
    let raft = Raft::new(id, config, Network, log, LedgerMachine::new(ledger.clone())).await.unwrap();
    let app = router(raft.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let proposer = RaftProposer::new(raft.clone(), tokio::runtime::Handle::current());
    let leadership = tokio::spawn(follow_leadership(raft.clone(), ledger.clone(), proposer));
    Node { raft, ledger, tasks: vec![server, leadership] }
}

async fn stop(node: Node) {
    node.raft.shutdown().await.unwrap();
    for task in node.tasks {
        task.abort();
    }
    node.ledger.close().unwrap();
}

async fn leader_of(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let any = nodes.values().next().unwrap();
    let metrics = any
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some_and(|l| nodes.contains_key(&l)), "a live leader")
        .await
        .unwrap();
    metrics.current_leader.unwrap()
}

/// Submits `count` sales from `from` on `ledger` (a blocking call, on a thread of its
/// own), retrying while this node is not yet the leader's proposer.
async fn sales(ledger: &Ledger, from: u128, count: u128) {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || {
        for i in from..from + count {
            let sale = [Tx::sale(TxId(i), 1 + (i % 3) as u64, 1_00 + i as i64, usd())];
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                match ledger.submit(&sale) {
                    Ok(out) => {
                        assert!(matches!(out[0], TxOutcome::Committed(_) | TxOutcome::Exists(_)), "{out:?}");
                        break;
                    }
                    Err(SubmitError::NotLeader | SubmitError::Failed(_)) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("sale {i}: {e}"),
                }
            }
        }
    })
    .await
    .unwrap();
}

async fn caught_up(nodes: &BTreeMap<NodeId, Node>, seq: u64) {
    let until = Instant::now() + Duration::from_secs(10);
    while nodes.values().any(|n| n.ledger.last_seq() < seq) {
        assert!(Instant::now() < until, "every node applies every committed group");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_same(nodes: &BTreeMap<NodeId, Node>) {
    let mut all = nodes.values();
    let first = all.next().unwrap();
    let raw = first.ledger.read_raw(1, usize::MAX).unwrap();
    for node in all {
        assert_eq!(node.ledger.read_raw(1, usize::MAX).unwrap(), raw, "the same records at the same seqs");
        for client in 1..=3 {
            assert_eq!(node.ledger.balances(client), first.ledger.balances(client));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_ledger_commits_through_raft_fails_over_and_catches_up() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode { addr: listener.local_addr().unwrap().to_string() });
        listeners.push(listener);
    }
    let mut nodes = BTreeMap::new();
    for (id, listener) in (1..=3u64).zip(listeners) {
        nodes.insert(id, start(id, dirs[(id - 1) as usize].path(), listener).await);
    }
    nodes[&1].raft.initialize(members.clone()).await.unwrap();

    let leader = leader_of(&nodes).await;
    sales(&nodes[&leader].ledger, 1, 60).await;
    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    let refused = nodes[&follower].ledger.submit(&[Tx::sale(TxId(999), 1, 1, usd())]);
    assert_eq!(refused, Err(SubmitError::NotLeader), "a follower takes no submits");
    let last = nodes[&leader].ledger.last_seq();
    assert_eq!(last, 60);
    caught_up(&nodes, last).await;
    assert_same(&nodes);

    // The leader dies; another is elected and takes submits.
    let old = nodes.remove(&leader).unwrap();
    stop(old).await;
    let next = leader_of(&nodes).await;
    assert_ne!(next, leader);
    sales(&nodes[&next].ledger, 61, 40).await;
    // A sale acknowledged before the fail-over, resubmitted, is there once.
    sales(&nodes[&next].ledger, 1, 5).await;
    let last = nodes[&next].ledger.last_seq();
    assert_eq!(last, 100);
    caught_up(&nodes, last).await;

    // The dead node restarts on its directories and catches up.
    let listener = tokio::net::TcpListener::bind(&members[&leader].addr).await.unwrap();
    let back = start(leader, dirs[(leader - 1) as usize].path(), listener).await;
    nodes.insert(leader, back);
    caught_up(&nodes, last).await;
    assert_same(&nodes);
    for node in nodes.values() {
        assert_eq!(node.ledger.transaction_count(), 100);
        node.ledger.check_consistency().unwrap();
    }
    for (_, node) in std::mem::take(&mut nodes) {
        stop(node).await;
    }
}
