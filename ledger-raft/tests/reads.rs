//! Reads on a follower as fresh as asked (`Node::read`, issue 19's "reads from the
//! leader (linearizable) and from followers (bounded staleness, read-your-writes by
//! seq)"): three nodes on loopback. A payment acknowledged by the leader is seen by a
//! linearizable read on a follower started after the acknowledgement, every time,
//! though the follower learns of the commit only with the leader's next message; a
//! read that names the payment's seq sees it too; a seq never written is refused after
//! the time given. With the leader and the other follower stopped, a bounded read is
//! served from the last round while that is recent enough and refused after, and a
//! linearizable read is refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger_core::{Tx, TxId, TxOutcome};
use ledger_raft::NodeId;
use ledger_raft::node::Node;
use ledger_raft::reads::{Freshness, ReadError};

/// Submits one sale on `node` (the leader) and returns its seq.
async fn sale(node: &Node, id: u128) -> u64 {
    let ledger = node.ledger().clone();
    let out = tokio::task::spawn_blocking(move || ledger.submit(&[Tx::sale(TxId(id), 1, 1_00, common::usd())]))
        .await
        .unwrap()
        .unwrap();
    match &out[0] {
        TxOutcome::Committed(record) => record.seq,
        other => panic!("sale {id}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_as_fresh_as_asked_or_refuses() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = common::free_addresses(3).await;
    let mut nodes = BTreeMap::new();
    for (id, dir) in (1..=3u64).zip(&dirs) {
        nodes.insert(id, common::node(id, dir.path(), &peers, false).await);
    }
    let leader = common::settled_leader(&nodes).await;
    let followers: Vec<NodeId> = nodes.keys().copied().filter(|&id| id != leader).collect();
    let within = Duration::from_secs(5);

    // Linearizable on a follower: the payment the leader just acknowledged is there,
    // every time. Without the read index, how often would it have been missing?
    let rounds = 40u128;
    let mut missing_without = 0;
    for i in 1..=rounds {
        let f = &nodes[&followers[usize::try_from(i % 2).unwrap()]];
        let seq = sale(&nodes[&leader], i).await;
        if f.ledger().lookup(TxId(i)).is_none() {
            missing_without += 1;
        }
        f.read(Freshness::Linearizable, within).await.unwrap();
        let seen = f.ledger().lookup(TxId(i)).unwrap_or_else(|| panic!("node {} misses sale {i}", f.id()));
        assert_eq!(seen.seq, seq);
        assert!(f.ledger().last_seq() >= seq);
    }
    println!("linearizable reads: {rounds} of {rounds} saw the sale; {missing_without} would have missed it");

    // Read-your-writes: the seq the write's answer named.
    for i in rounds + 1..=rounds + 20 {
        let f = &nodes[&followers[usize::try_from(i % 2).unwrap()]];
        let seq = sale(&nodes[&leader], i).await;
        f.read(Freshness::AtLeastSeq(seq), within).await.unwrap();
        assert!(f.ledger().lookup(TxId(i)).is_some(), "node {} misses sale {i} after reading at seq {seq}", f.id());
    }
    // A seq nobody wrote: refused once the time is up, not before.
    let f = &nodes[&followers[0]];
    let beyond = f.ledger().last_seq() + 1_000;
    let asked = Instant::now();
    let refused = f.read(Freshness::AtLeastSeq(beyond), Duration::from_millis(400)).await;
    let waited = asked.elapsed();
    assert!(
        matches!(&refused, Err(ReadError::Behind { applied, .. }) if *applied < beyond),
        "a seq never written: {refused:?}"
    );
    assert!(waited >= Duration::from_millis(390) && waited < Duration::from_secs(3), "refused after {waited:?}");

    // Bounded staleness: one round, then reads served without another while it is
    // recent enough, even with every other node gone; refused once it is not.
    let f_id = followers[0];
    nodes[&f_id].read(Freshness::Linearizable, within).await.unwrap();
    let round_at = Instant::now();
    for id in [leader, followers[1]] {
        nodes.remove(&id).unwrap().shutdown().await.unwrap();
    }
    let f = &nodes[&f_id];
    let stale = Duration::from_secs(3);
    f.read(Freshness::MaxStaleness(stale), within).await.unwrap();
    assert!(round_at.elapsed() < stale, "the test took too long to check the fresh case");
    assert!(
        matches!(f.read(Freshness::Linearizable, Duration::from_secs(2)).await, Err(ReadError::NoLeader(_))),
        "a linearizable read with no leader reachable is refused"
    );
    tokio::time::sleep(stale.saturating_sub(round_at.elapsed()) + Duration::from_millis(50)).await;
    let refused = f.read(Freshness::MaxStaleness(stale), Duration::from_secs(2)).await;
    assert!(matches!(refused, Err(ReadError::NoLeader(_))), "a round older than asked is not reused: {refused:?}");
    // Whatever it applied, it still serves when asked for no more.
    f.read(Freshness::Applied, within).await.unwrap();
    for node in nodes.into_values() {
        node.shutdown().await.unwrap();
    }
}
