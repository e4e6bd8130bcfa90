//! Membership changes on `ledger_raft::node::Node` (issue 19): a node started with
//! `NodeConfig::join` is added by `add_member` (a learner until it caught up, then a
//! voter) and takes part in commits; `remove_member` removes the leader itself (it
//! answers, steps down and names no leader; the others elect one among them and go
//! on), then followers down to one voter, which is never removed. Refused: a change on
//! a follower, an id already a voter, an address that is not `HOST:PORT` or is another
//! member's, removing a node that is no member; each changes nothing. A node that
//! cannot catch up stays a learner, which is removed.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_core::Ledger;
use ledger_raft::NodeId;
use ledger_raft::node::{MembershipError, Node};

/// Bound on a new node's catch-up in these tests.
const CATCH_UP: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_added_and_removed_the_leader_too() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut peers = common::free_addresses(4).await;
    let own4: BTreeMap<NodeId, String> = peers.remove_entry(&4).into_iter().collect();
    let mut nodes = BTreeMap::new();
    for id in 1..=3u64 {
        nodes.insert(id, common::node(id, dirs[usize::try_from(id - 1).unwrap()].path(), &peers, false).await);
    }
    let leader = common::settled_leader(&nodes).await;
    common::sales(nodes[&leader].ledger(), 1, 30).await;

    let node4 = common::node(4, dirs[3].path(), &own4, true).await;
    assert_eq!((node4.leader_id(), node4.members()), (None, vec![]), "a joining node waits to be added");
    let addr4 = own4[&4].clone();
    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    let refusals = [
        nodes[&follower].add_member(4, addr4.clone(), CATCH_UP).await,
        nodes[&leader].add_member(follower, addr4.clone(), CATCH_UP).await,
        nodes[&leader].add_member(4, "nowhere".into(), CATCH_UP).await,
        nodes[&leader].add_member(4, peers[&follower].clone(), CATCH_UP).await,
        nodes[&leader].remove_member(9).await,
        nodes[&follower].remove_member(leader).await,
    ];
    let kinds: Vec<&str> = refusals
        .iter()
        .map(|r| match r {
            Err(MembershipError::NotLeader(_)) => "not leader",
            Err(MembershipError::Invalid(_)) => "invalid",
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["not leader", "invalid", "invalid", "invalid", "invalid", "not leader"]);
    for node in nodes.values() {
        assert_eq!(node.members(), vec![1, 2, 3], "nothing changed on node {}", node.id());
    }

    // A node that cannot catch up (nothing listens at its address) stays a learner,
    // which can be removed.
    let dead = common::free_addresses(1).await[&1].clone();
    let short = Duration::from_millis(300);
    let stuck = nodes[&leader].add_member(5, dead.clone(), short).await;
    assert!(matches!(stuck, Err(MembershipError::CatchUp(_))), "{stuck:?}");
    let learners = |node: &Node| -> Vec<NodeId> {
        node.raft().metrics().borrow().membership_config.membership().learner_ids().collect()
    };
    assert_eq!(learners(&nodes[&leader]), [5]);
    let moved = nodes[&leader].add_member(5, own4[&4].clone(), short).await;
    assert!(matches!(moved, Err(MembershipError::Invalid(_))), "a learner keeps its address: {moved:?}");
    assert_eq!(nodes[&leader].remove_member(5).await.unwrap(), vec![1, 2, 3]);
    assert_eq!(learners(&nodes[&leader]), Vec::<NodeId>::new());

    // Added: it catches up and its ledger follows the others'.
    assert_eq!(nodes[&leader].add_member(4, addr4, CATCH_UP).await.unwrap(), vec![1, 2, 3, 4]);
    nodes.insert(4, node4);
    common::sales(nodes[&leader].ledger(), 31, 10).await;
    common::caught_up(&ledgers(&nodes), 40).await;
    common::assert_same(&ledgers(&nodes));
    for node in nodes.values() {
        assert_eq!(node.members(), vec![1, 2, 3, 4], "node {}", node.id());
    }

    // The leader removes itself: it answers, then steps down and names no leader.
    let left: Vec<NodeId> = [1, 2, 3, 4].into_iter().filter(|&id| id != leader).collect();
    assert_eq!(nodes[&leader].remove_member(leader).await.unwrap(), left);
    let old = nodes.remove(&leader).unwrap();
    assert_eq!((old.leader_id(), old.members()), (None, left.clone()), "the removed leader stepped down");
    assert!(!old.leads_with_quorum(), "and takes no writes");
    old.shutdown().await.unwrap();
    let mut leader = common::settled_leader(&nodes).await;
    assert!(left.contains(&leader));
    common::sales(nodes[&leader].ledger(), 41, 10).await;
    common::caught_up(&ledgers(&nodes), 50).await;

    // Followers, down to the last voter, which stays.
    while nodes.len() > 1 {
        let gone = *nodes.keys().find(|&&id| id != leader).unwrap();
        let voters = nodes[&leader].remove_member(gone).await.unwrap();
        nodes.remove(&gone).unwrap().shutdown().await.unwrap();
        assert_eq!(voters, nodes.keys().copied().collect::<Vec<_>>());
        leader = common::settled_leader(&nodes).await;
        let from = 51 + u128::try_from(10 * (2 - nodes.len())).unwrap();
        common::sales(nodes[&leader].ledger(), from, 10).await;
    }
    let last = nodes[&leader].remove_member(leader).await;
    assert!(matches!(last, Err(MembershipError::Invalid(_))), "the last voter stays: {last:?}");
    assert_eq!(nodes[&leader].members(), vec![leader]);
    assert_eq!(nodes[&leader].ledger().transaction_count(), 70);
    nodes[&leader].ledger().check_consistency().unwrap();
    for (_, node) in std::mem::take(&mut nodes) {
        node.shutdown().await.unwrap();
    }
}

fn ledgers(nodes: &BTreeMap<NodeId, Node>) -> Vec<&Ledger> {
    nodes.values().map(Node::ledger).collect()
}
