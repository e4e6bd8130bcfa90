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
    Currency, CutoverPolicy, Durability, Ledger, LedgerOptions, ProposalFailed, Proposer, RawRecord, ReplicateError,
    SubmitError, Tx, TxId, TxOutcome,
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

type Proposal = (Vec<RawRecord>, ProposalFailed);

/// The stand-in for Raft's leader side: proposals go to the log thread.
#[derive(Debug)]
struct Bus(Sender<Proposal>);

impl Proposer for Bus {
    fn propose(&self, records: Vec<RawRecord>, failed: ProposalFailed) {
        let _ = self.0.send((records, failed));
    }
}

/// What the log thread does with the proposal number `n` (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commit,
    Fail,
}

/// Commits (applies to every node, in order) or fails each proposal as `fate` says;
/// a group whose seqs were taken meanwhile is void on every node alike.
fn log_thread(
    proposals: Receiver<Proposal>,
    nodes: Vec<Ledger>,
    fate: impl Fn(u64) -> Fate + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        let mut committed = 0;
        while let Ok((records, failed)) = proposals.recv() {
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
    // An id again answers Exists without a proposal; a follower takes no submits.
    let first = leader.lookup(TxId(1)).expect("the first sale").tx;
    let again = leader.submit(&[first]).expect("resubmit");
    assert!(matches!(again[0], TxOutcome::Exists(_)));
    assert_eq!(nodes[1].submit(&[Tx::sale(TxId(99_999), 1, 1, usd())]), Err(SubmitError::NotLeader));

    let records = leader.last_seq();
    assert!(records >= 320, "{records} records: every sale and refund, and the closes");
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
    let (tx0, rx0) = unbounded::<Proposal>();
    nodes[0].set_proposer(Some(Arc::new(Bus(tx0)))).expect("leader 0");
    let old = {
        let leader = nodes[0].clone();
        std::thread::spawn(move || leader.submit(&[Tx::sale(TxId(1), 1, 5_00, usd())]))
    };
    let (held_records, held_failed) = rx0.recv_timeout(Duration::from_secs(10)).expect("a proposal");
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
    // The deposed proposal, committed late, is void on every node alike.
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
