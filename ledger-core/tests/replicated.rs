//! A replicated ledger's nodes (`LedgerOptions::replicated`) over a stand-in for Raft:
//! the leader judges submits into proposals, a "log" thread commits or loses them, and
//! every committed group is applied by every node, the leader included, through
//! `apply_replicated`. Callers are answered when their group comes back; a lost or
//! superseded proposal answers "outcome unknown", and resubmitting the same ids lands
//! exactly once. Every node ends with the same records and the same books.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender, unbounded};
use ledger_core::{
    Confirmation, Currency, CutoverPolicy, Durability, Ledger, LedgerOptions, ProposalFailed, Proposer, RawRecord,
    ReplicateError, SubmitError, Tx, TxId, TxOutcome,
};

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

fn options() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: 64 << 10,
        replicated: true,
        cutover: CutoverPolicy { transactions_max: Some(25), age_max: None },
        ..LedgerOptions::default()
    }
}

/// What the leader asks of Raft.
#[derive(Debug)]
enum Message {
    Propose(Vec<RawRecord>, ProposalFailed),
    /// A group with nothing to commit waits for this before it is answered.
    Confirm(Confirmation),
}

/// The stand-in for Raft's leader side: proposals and confirmations go to the log
/// thread (or to the test, which plays Raft by hand).
#[derive(Debug)]
struct Bus(Sender<Message>);

impl Proposer for Bus {
    fn propose(&self, records: Vec<RawRecord>, failed: ProposalFailed) {
        let _ = self.0.send(Message::Propose(records, failed));
    }
    fn confirm(&self, confirmation: Confirmation) {
        let _ = self.0.send(Message::Confirm(confirmation));
    }
}

/// The next proposal the test's hand-played Raft receives.
fn next_proposal(rx: &Receiver<Message>) -> (Vec<RawRecord>, ProposalFailed) {
    match rx.recv_timeout(Duration::from_secs(10)).expect("a message from the leader") {
        Message::Propose(records, failed) => (records, failed),
        Message::Confirm(_) => panic!("a proposal was expected, not a confirmation"),
    }
}

/// The next confirmation the test's hand-played Raft receives.
fn next_confirmation(rx: &Receiver<Message>) -> Confirmation {
    match rx.recv_timeout(Duration::from_secs(10)).expect("a message from the leader") {
        Message::Confirm(confirmation) => confirmation,
        Message::Propose(records, _) => panic!("a confirmation was expected, not a proposal of {records:?}"),
    }
}

/// What the log thread does with the proposal number `n` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commit,
    Fail,
}

/// Commits (applies to every node, in order) or fails each proposal as `fate` says;
/// a group whose seqs were taken meanwhile is void on every node alike. Confirms each
/// confirmation in its turn (everything proposed before it has been applied).
fn log_thread(
    proposals: Receiver<Message>,
    nodes: Vec<Ledger>,
    fate: impl Fn(u64) -> Fate + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        let mut committed = 0;
        while let Ok(message) = proposals.recv() {
            let (records, failed) = match message {
                Message::Propose(records, failed) => (records, failed),
                Message::Confirm(confirmation) => {
                    confirmation.done(Ok(()));
                    continue;
                }
            };
            match fate(n) {
                Fate::Commit => {
                    for node in &nodes {
                        match node.apply_replicated(records.clone()) {
                            Ok(_) | Err(ReplicateError::NotNext { .. }) => {}
                            Err(e) => panic!("a committed group must apply on every node: {e}"),
                        }
                    }
                    committed += 1;
                }
                Fate::Fail => failed.fail("lost by the test"),
            }
            n += 1;
        }
        committed
    })
}

fn open(dir: &tempfile::TempDir) -> Ledger {
    Ledger::open(dir.path(), options()).expect("open")
}

/// Followers apply a committed group after the leader answered its callers: wait.
fn caught_up(nodes: &[&Ledger], seq: u64) {
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while nodes.iter().any(|n| n.last_seq() < seq) {
        assert!(std::time::Instant::now() < until, "the followers apply every committed group");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_same(nodes: &[&Ledger]) {
    caught_up(nodes, nodes[0].last_seq());
    let raw = nodes[0].read_raw(1, usize::MAX).expect("raw");
    for node in &nodes[1..] {
        assert_eq!(node.read_raw(1, usize::MAX).expect("raw"), raw, "every node holds the same records");
        for client in 1..=4 {
            assert_eq!(node.balances(client), nodes[0].balances(client));
            assert_eq!(node.batches(client, 0, 1 << 20), nodes[0].batches(client, 0, 1 << 20));
        }
        node.check_consistency().expect("books hang together");
    }
}

#[test]
fn the_leaders_submits_come_back_committed_on_every_node() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Ledger> = dirs.iter().map(open).collect();
    let (tx, rx) = unbounded();
    let log = log_thread(rx, nodes.clone(), |_| Fate::Commit);
    let leader = &nodes[0];
    leader.set_proposer(Some(Arc::new(Bus(tx)))).expect("leader");

    let next = AtomicU64::new(1);
    std::thread::scope(|s| {
        for w in 0..4u64 {
            let next = &next;
            s.spawn(move || {
                for _ in 0..40 {
                    let a = next.fetch_add(2, Ordering::Relaxed);
                    let txs = [
                        Tx::sale(TxId(u128::from(a)), w + 1, 10_00, usd()),
                        Tx::refund(TxId(u128::from(a + 1)), TxId(u128::from(a)), w + 1, 3_00, usd()),
                    ];
                    let out = leader.submit(&txs).expect("submit");
                    assert!(out.iter().all(|o| matches!(o, TxOutcome::Committed(_))), "{out:?}");
                }
            });
        }
    });
    let close = leader.close_batch(1, usd());
    assert!(close.is_ok() || matches!(close, Err(ledger_core::CloseBatchError::Empty)));
    // An id again answers Exists without a proposal (once confirmed); a follower takes no submits.
    let first = leader.lookup(TxId(1)).expect("the first sale").tx;
    let again = leader.submit(&[first]).expect("resubmit");
    assert!(matches!(again[0], TxOutcome::Exists(_)));
    assert_eq!(nodes[1].submit(&[Tx::sale(TxId(99_999), 1, 1, usd())]), Err(SubmitError::NotLeader));

    let records = leader.last_seq();
    assert!(records >= 320, "{records} records: every sale and refund, and the closes");
    // Read-your-writes on a follower: wait for the seq the leader answered with.
    let seq = leader.lookup(TxId(1)).expect("sale 1").seq;
    assert!(nodes[2].wait_for_seq(records, Duration::from_secs(10)));
    assert_eq!(nodes[2].lookup(TxId(1)).map(|r| r.seq), Some(seq));
    assert!(!nodes[2].wait_for_seq(records + 1_000, Duration::from_millis(20)), "not yet committed");
    let cutover_closes = leader.batches(1, 0, 1000).iter().filter(|b| !b.is_open()).count();
    assert!(cutover_closes >= 2, "the leader's cut-over closed batches, shipped as records");
    caught_up(&[&nodes[0], &nodes[1], &nodes[2]], records);
    for node in &nodes {
        assert_eq!(node.last_seq(), records);
    }
    assert_same(&[&nodes[0], &nodes[1], &nodes[2]]);

    leader.set_proposer(None).expect("step down");
    drop(nodes);
    assert!(log.join().expect("log thread") > 10);
}

#[test]
fn a_lost_proposal_answers_unknown_and_a_resubmit_lands_once() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Ledger> = dirs.iter().map(open).collect();
    let (tx, rx) = unbounded();
    // Every third proposal is lost.
    let log = log_thread(rx, nodes.clone(), |n| if n % 3 == 1 { Fate::Fail } else { Fate::Commit });
    let leader = &nodes[0];
    leader.set_proposer(Some(Arc::new(Bus(tx)))).expect("leader");
    let mut unknown = 0;
    for i in 1..=30u128 {
        let sale = [Tx::sale(TxId(i), 2, 1_00, usd())];
        loop {
            match leader.submit(&sale) {
                Ok(out) => {
                    assert!(matches!(out[0], TxOutcome::Committed(_) | TxOutcome::Exists(_)));
                    break;
                }
                Err(SubmitError::Failed(reason)) => {
                    assert!(reason.contains("outcome is unknown"), "{reason}");
                    unknown += 1; // the same id again
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(unknown >= 5, "{unknown} proposals were lost and resubmitted");
    assert_eq!(leader.transaction_count(), 30, "each sale once");
    assert_eq!(leader.balance(2, usd()).map(|b| b.captured), Some(30_00));
    assert_same(&[&nodes[0], &nodes[1]]);
    leader.set_proposer(None).expect("step down");
    drop(nodes);
    log.join().expect("log thread");
}

#[test]
fn a_new_leader_takes_over_and_a_superseded_group_is_void_everywhere() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Ledger> = dirs.iter().map(open).collect();

    // Node 0 leads; its proposal is held (not yet committed) when it is deposed.
    let (tx0, rx0) = unbounded::<Message>();
    nodes[0].set_proposer(Some(Arc::new(Bus(tx0)))).expect("leader 0");
    let old = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::sale(TxId(1), 1, 5_00, usd())]))
    };
    let (held_records, held_failed) = next_proposal(&rx0);
    assert_eq!(held_records[0].seq, 1);

    // Node 1 becomes leader and commits its own group at the same seqs first.
    let (tx1, rx1) = unbounded();
    let log = log_thread(rx1, nodes.clone(), |_| Fate::Commit);
    nodes[1].set_proposer(Some(Arc::new(Bus(tx1)))).expect("leader 1");
    let out = nodes[1].submit(&[Tx::sale(TxId(2), 1, 7_00, usd())]).expect("submit on the new leader");
    assert!(matches!(out[0], TxOutcome::Committed(_)));

    // The old leader's caller learns its outcome is unknown (another group took seq 1).
    let answer = old.join().expect("caller");
    assert!(matches!(answer, Err(SubmitError::Failed(ref r)) if r.contains("unknown")), "{answer:?}");
    // The deposed proposal, committed late, is void on every node alike (once each has
    // applied the new leader's group: its caller is answered when node 1 has).
    caught_up(&[&nodes[0], &nodes[1], &nodes[2]], nodes[1].last_seq());
    for node in &nodes {
        assert!(matches!(node.apply_replicated(held_records.clone()), Err(ReplicateError::NotNext { .. })));
    }
    held_failed.fail("deposed");
    nodes[0].set_proposer(None).expect("step down");
    // The caller retries on the new leader: it lands once.
    let retry = nodes[1].submit(&[Tx::sale(TxId(1), 1, 5_00, usd())]).expect("retry");
    assert!(matches!(retry[0], TxOutcome::Committed(_)));
    assert_eq!(nodes[0].submit(&[Tx::sale(TxId(3), 1, 1, usd())]), Err(SubmitError::NotLeader));
    caught_up(&[&nodes[0], &nodes[1], &nodes[2]], nodes[1].last_seq());
    for node in &nodes {
        assert_eq!(node.transaction_count(), 2);
        assert_eq!(node.balance(1, usd()).map(|b| b.captured), Some(12_00));
    }
    assert_same(&[&nodes[0], &nodes[1], &nodes[2]]);
    nodes[1].set_proposer(None).expect("step down");
    drop(nodes);
    log.join().expect("log thread");
}

/// A deposed leader, cut off from the majority that elected another, still believes it
/// leads. A call whose transactions it would all refuse from its own stale state (a
/// refund of a payment the new leader committed) is not answered "refused": it waits
/// for the proposer's confirmation, which such a node cannot get, and is answered
/// "not the leader"; on the new leader the same call lands.
#[test]
fn a_deposed_leader_does_not_answer_refusals_from_its_stale_state() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Ledger> = dirs.iter().map(open).collect();
    let (tx0, rx0) = unbounded::<Message>();
    nodes[0].set_proposer(Some(Arc::new(Bus(tx0)))).expect("leader 0");

    // Nodes 1 and 2 elect node 1 and commit a sale node 0 never hears of.
    let (tx1, rx1) = unbounded();
    let log = log_thread(rx1, vec![nodes[1].clone(), nodes[2].clone()], |_| Fate::Commit);
    nodes[1].set_proposer(Some(Arc::new(Bus(tx1)))).expect("leader 1");
    let sale = nodes[1].submit(&[Tx::sale(TxId(1), 1, 9_00, usd())]).expect("sale on the new leader");
    assert!(matches!(sale[0], TxOutcome::Committed(_)));

    let refund = [Tx::refund(TxId(2), TxId(1), 1, 4_00, usd())];
    let caller = {
        let deposed = nodes[0].clone();
        std::thread::spawn(move || deposed.submit(&refund))
    };
    // The deposed node judged it refused (it has no sale 1) and asks to confirm.
    let confirmation = next_confirmation(&rx0);
    std::thread::sleep(Duration::from_millis(50));
    assert!(!caller.is_finished(), "a refusal is not answered before it is confirmed");
    confirmation.done(Err("no quorum answered".into()));
    assert_eq!(caller.join().expect("caller"), Err(SubmitError::NotLeader));

    let landed = nodes[1].submit(&refund).expect("the same call on the new leader");
    assert!(matches!(landed[0], TxOutcome::Committed(_)), "{landed:?}");
    assert_eq!(nodes[0].transaction_count(), 0, "the deposed node changed nothing");
    nodes[0].set_proposer(None).expect("step down");
    nodes[1].set_proposer(None).expect("step down");
    drop(nodes);
    log.join().expect("log thread");
}

/// A refusal is judged again when the ledger moved between its judging and its
/// confirmation (a group committed late, after its proposal had been given up), and a
/// confirmation that came back after its proposer was taken away answers nothing.
#[test]
fn a_refusal_is_judged_again_when_the_ledger_moved_before_its_confirmation() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().expect("dir")).collect();
    let nodes: Vec<Ledger> = dirs.iter().map(open).collect();
    let (tx, rx) = unbounded::<Message>();
    nodes[0].set_proposer(Some(Arc::new(Bus(tx.clone())))).expect("leader");

    // A sale is proposed; Raft's answer is slow and the proposal is given up.
    let sale = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::sale(TxId(1), 1, 9_00, usd())]))
    };
    let (sale_records, sale_failed) = next_proposal(&rx);
    sale_failed.fail("timed out");
    assert!(matches!(sale.join().expect("caller"), Err(SubmitError::Failed(ref r)) if r.contains("unknown")));

    // A refund of that sale: judged refused (no sale 1 yet), waiting for confirmation.
    let refund = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::refund(TxId(2), TxId(1), 1, 4_00, usd())]))
    };
    let confirmation = next_confirmation(&rx);
    // Meanwhile the given-up sale commits after all, and every node applies it.
    for node in &nodes {
        node.apply_replicated(sale_records.clone()).expect("the late sale applies");
    }
    // Confirmed: but the ledger moved since the judging, so the refund is judged
    // again, now accepted and proposed.
    confirmation.done(Ok(()));
    let (refund_records, _refund_failed) = next_proposal(&rx);
    for node in &nodes {
        node.apply_replicated(refund_records.clone()).expect("the refund applies");
    }
    let out = refund.join().expect("caller").expect("refund answered");
    assert!(matches!(out[0], TxOutcome::Committed(_)), "the refund lands: {out:?}");

    // A confirmation for a proposer that was taken away answers nothing twice.
    let late = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::refund(TxId(3), TxId(77), 1, 1_00, usd())]))
    };
    let stale = next_confirmation(&rx);
    nodes[0].set_proposer(None).expect("deposed");
    assert_eq!(late.join().expect("caller"), Err(SubmitError::NotLeader));
    stale.done(Ok(()));
    nodes[0].set_proposer(Some(Arc::new(Bus(tx)))).expect("leader again");
    let again = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::refund(TxId(3), TxId(77), 1, 1_00, usd())]))
    };
    next_confirmation(&rx).done(Ok(()));
    let refused = again.join().expect("caller").expect("answered");
    assert!(matches!(refused[0], TxOutcome::Rejected(_)), "{refused:?}");
    assert_same(&[&nodes[0], &nodes[1]]);
    nodes[0].set_proposer(None).expect("step down");
}
