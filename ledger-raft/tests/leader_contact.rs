//! When a follower last heard from its leader (`Node::leader_heard_within`, issue 19's
//! "a cut-off follower answers slowly"): three nodes on loopback. While the leader
//! runs, its followers keep hearing from it; when it falls silent (its heartbeats
//! switched off, as a leader cut off from them is to them) the signal goes stale
//! within the bound while the followers still name it as their leader, and fresh again
//! when it speaks; when it stops, stale again. The followers' own elections are held
//! off meanwhile, so they go on naming the old leader: only the new signal tells.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_raft::NodeId;
use ledger_raft::node::{Node, NodeConfig, Timing};

/// Quick heartbeats, and a longest silence (the longest election timeout) several
/// heartbeats long.
const TIMING: Timing = Timing { heartbeat_ms: 50, election_min_ms: 400, election_max_ms: 800 };
/// Slack for a loaded machine (two cores shared with builds) on every "within".
const SLACK_MS: u64 = 700;

async fn start(id: NodeId, dir: &std::path::Path, peers: &BTreeMap<NodeId, String>) -> Node {
    let mut config = NodeConfig::new(id, dir, peers.clone());
    config.timing = TIMING;
    Node::start(config).await.unwrap()
}

/// How long after `since` `node`'s signal (with its own bound) was no longer
/// `Some(leader)`; panics if it still is `within` after `since`.
async fn stale_after(node: &Node, leader: NodeId, since: Instant, within: Duration) -> Duration {
    while node.leader_heard_recently() == Some(leader) {
        assert!(since.elapsed() < within, "node {} still hears from node {leader} after {within:?}", node.id());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_hear_a_running_leader_and_notice_it_fall_silent_or_stop() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = common::free_addresses(3).await;
    let mut nodes = BTreeMap::new();
    for (id, dir) in (1..=3u64).zip(&dirs) {
        nodes.insert(id, start(id, dir.path(), &peers).await);
    }
    let leader = common::settled_leader(&nodes).await;
    let followers: Vec<NodeId> = nodes.keys().copied().filter(|&id| id != leader).collect();
    let silence = TIMING.leader_silence_max();
    assert_eq!(silence, Duration::from_millis(TIMING.election_max_ms), "the bound is the longest election timeout");
    assert_eq!(nodes[&leader].leader_heard_recently(), None, "a leader does not forward to itself");

    // Fresh while the leader runs: every sample over two bounds' time.
    let from = Instant::now();
    while from.elapsed() < 2 * silence {
        for f in &followers {
            assert_eq!(nodes[f].leader_heard_recently(), Some(leader), "node {f} hears from its leader");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The followers keep naming the leader from here on (their elections held off).
    for f in &followers {
        nodes[f].raft().runtime_config().elect(false);
    }
    // The leader falls silent: stale within the bound, though still named.
    nodes[&leader].raft().runtime_config().heartbeat(false);
    let silenced = Instant::now();
    let within = silence + Duration::from_millis(SLACK_MS);
    for f in &followers {
        let took = stale_after(&nodes[f], leader, silenced, within).await;
        assert!(took >= silence / 2, "node {f} gave up on a leader silent for {took:?} only");
        assert_eq!(nodes[f].leader_id(), Some(leader), "node {f} still names its leader");
        assert_eq!(nodes[f].leader_heard_within(Duration::from_secs(60)), Some(leader), "heard within a minute");
        println!("node {f}: leader {leader} silent, the signal stale after {took:?} (bound {silence:?})");
    }
    // It speaks again: fresh again.
    nodes[&leader].raft().runtime_config().heartbeat(true);
    let from = Instant::now();
    for f in &followers {
        while nodes[f].leader_heard_recently() != Some(leader) {
            assert!(from.elapsed() < Duration::from_millis(SLACK_MS), "node {f} hears from its leader again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // The leader stops: stale again within the bound, still named.
    let stopped = nodes.remove(&leader).unwrap();
    let stopping = Instant::now();
    stopped.shutdown().await.unwrap();
    for f in &followers {
        let took = stale_after(&nodes[f], leader, stopping, within).await;
        assert_eq!(nodes[f].leader_id(), Some(leader), "node {f} still names the stopped leader");
        println!("node {f}: leader {leader} stopped, the signal stale {took:?} after the stop began");
    }

    // Elections allowed again: the two elect one of them, which the other hears.
    for f in &followers {
        nodes[f].raft().runtime_config().elect(true);
    }
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let heard: Vec<Option<NodeId>> = followers.iter().map(|f| nodes[f].leader_heard_recently()).collect();
        let led: Vec<bool> = followers.iter().map(|f| nodes[f].leads_with_quorum()).collect();
        // One leads (and does not hear from itself), the other hears from it.
        if let [(a, a_leads), (b, b_leads)] = [(heard[0], led[0]), (heard[1], led[1])]
            && ((a_leads && a.is_none() && b == Some(followers[0]))
                || (b_leads && b.is_none() && a == Some(followers[1])))
        {
            break;
        }
        assert!(Instant::now() < until, "no new leader heard: {heard:?}, leading {led:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in nodes.into_values() {
        node.shutdown().await.unwrap();
    }
}
