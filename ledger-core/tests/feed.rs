//! The change feed: every committed record exactly once, in seq order, as it was right
//! after its commit; blocking and async waits; holding feeds keep the log retention
//! would remove; clear errors for a position the log no longer holds or not yet has.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use ledger_core::{
    Currency, Durability, FeedError, FeedRecord, Ledger, LedgerOptions, Tx, TxId, TxOutcome, TxRecord, TxState,
};

fn usd() -> Currency {
    Currency::from_code("USD").expect("USD")
}

fn committed(outcomes: &[TxOutcome]) -> Vec<TxRecord> {
    outcomes
        .iter()
        .map(|o| match o {
            TxOutcome::Committed(r) => *r,
            other => panic!("expected a commit, got {other:?}"),
        })
        .collect()
}

fn drain(feed: &mut ledger_core::Feed) -> Vec<FeedRecord> {
    let mut out = Vec::new();
    while feed.read(&mut out, 7).expect("read") > 0 {}
    out
}

#[test]
fn a_feed_returns_each_record_once_in_order_as_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("open");
    let mut feed = ledger.feed(1).expect("feed from the start");
    assert_eq!(feed.read(&mut Vec::new(), 10), Ok(0), "nothing committed yet");

    let first = committed(
        &ledger
            .submit(&[
                Tx::sale(TxId(1), 7, 10_00, usd()),
                Tx::authorization(TxId(2), 7, 5_00, usd()),
                Tx::adjustment(TxId(3), 8, -1_25, usd()),
            ])
            .expect("submit"),
    );
    // Follow-ups change their payments; the feed still says what each record was.
    let second = committed(
        &ledger
            .submit(&[
                Tx::refund(TxId(4), TxId(1), 7, 2_50, usd()),
                Tx::capture(TxId(5), TxId(2), 7, 4_00, usd()),
                Tx::refund(TxId(6), TxId(1), 7, 7_50, usd()),
            ])
            .expect("submit"),
    );
    let close = ledger.close_batch(7, usd()).expect("close");
    let rejected = ledger.submit(&[Tx::refund(TxId(9), TxId(1), 7, 1, usd())]).expect("submit");
    assert!(matches!(rejected[0], TxOutcome::Rejected(_)), "a rejection is no record");

    let records = drain(&mut feed);
    let expected: Vec<FeedRecord> = first.iter().chain(&second).map(|r| FeedRecord::Transaction(*r)).collect();
    assert_eq!(&records[..6], &expected[..]);
    assert_eq!(records[0], FeedRecord::Transaction(first[0]));
    let FeedRecord::Transaction(sale) = records[0] else { unreachable!() };
    assert_eq!((sale.state, sale.captured, sale.refunded), (TxState::Captured, 10_00, 0), "as committed");
    assert_eq!(ledger.lookup(TxId(1)).map(|r| r.state), Some(TxState::Refunded), "as it stands now");
    assert_eq!(records.len(), 7);
    assert_eq!(records[6], FeedRecord::BatchClose { seq: 7, summary: close });
    assert_eq!(records.iter().map(FeedRecord::seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    assert_eq!(feed.next_seq(), 8);

    // Any position resumes exactly there, and a feed past the next record is refused.
    let mut later = ledger.feed(5).expect("feed from 5");
    assert_eq!(drain(&mut later), records[4..].to_vec());
    assert!(ledger.feed(8).is_ok(), "the next record's seq is a valid position");
    assert_eq!(ledger.feed(9).err(), Some(FeedError::Ahead { requested: 9, next: 8 }));
    ledger.close().expect("close");

    // After a reopen (the log replayed) the feed is the same.
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("reopen");
    assert_eq!(drain(&mut ledger.feed(0).expect("feed")), records);
    ledger.close().expect("close");
}

#[test]
fn a_blocking_reader_sees_every_commit_of_concurrent_writers_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { durability: Durability::None, ..LedgerOptions::default() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let (writers, per_writer, per_call) = (4u64, 2_000u64, 25u64);
    let total = writers * per_writer;
    let mut feed = ledger.feed(1).expect("feed");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        while (seen.len() as u64) < total {
            assert!(feed.wait(Duration::from_secs(30)).expect("wait"), "a record within 30 s");
            out.clear();
            let n = feed.read(&mut out, 1000).expect("read");
            assert!(n > 0, "wait said a record was available");
            seen.extend(out.iter().map(|r| match r {
                FeedRecord::Transaction(t) => (t.seq, t.tx.id),
                other => panic!("only transactions were submitted: {other:?}"),
            }));
        }
        seen
    });
    std::thread::scope(|s| {
        for w in 0..writers {
            let ledger = &ledger;
            s.spawn(move || {
                for call in 0..per_writer / per_call {
                    let txs: Vec<Tx> = (0..per_call)
                        .map(|i| {
                            let n = w * per_writer + call * per_call + i + 1;
                            Tx::sale(TxId(u128::from(n)), w + 1, 1 + n as i64, usd())
                        })
                        .collect();
                    ledger.submit(&txs).expect("submit");
                }
            });
        }
    });
    let seen = reader.join().expect("reader");
    assert_eq!(seen.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    let ids: HashSet<TxId> = seen.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len() as u64, total, "each id once");
    ledger.close().expect("close");
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls on this thread, parks until woken.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn an_async_wait_is_woken_by_a_commit_and_a_close_ends_the_feed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("open");
    let mut feed = ledger.feed(1).expect("feed");
    let writer = {
        let ledger = ledger.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            ledger.submit(&[Tx::sale(TxId(1), 1, 1_00, usd())]).expect("submit");
        })
    };
    let started = Instant::now();
    block_on(feed.wait_async()).expect("woken by the commit");
    assert!(started.elapsed() >= Duration::from_millis(50), "it waited for the commit");
    let mut out = Vec::new();
    assert_eq!(feed.read(&mut out, 10), Ok(1));
    writer.join().expect("writer");

    // A blocking wait times out when nothing comes.
    assert_eq!(feed.wait(Duration::from_millis(50)), Ok(false));

    // Records committed before the close are still read; then the feed says closed.
    ledger.submit(&[Tx::sale(TxId(2), 1, 2_00, usd())]).expect("submit");
    ledger.close().expect("close");
    assert_eq!(feed.wait(Duration::from_secs(5)), Ok(true));
    assert_eq!(feed.read(&mut out, 10), Ok(1));
    assert_eq!(feed.wait(Duration::from_secs(5)), Err(FeedError::Closed));
    assert_eq!(block_on(feed.wait_async()), Err(FeedError::Closed));
}

fn small_checkpoints() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: 64 << 10,
        snapshot_every_records: 500,
        ..LedgerOptions::default()
    }
}

fn sales(ledger: &Ledger, from: u64, count: u64) {
    let txs: Vec<Tx> = (from..from + count).map(|i| Tx::sale(TxId(u128::from(i)), 1, i as i64, usd())).collect();
    for chunk in txs.chunks(50) {
        committed(&ledger.submit(chunk).expect("submit"));
    }
}

#[test]
fn retention_keeps_what_a_holding_feed_has_not_confirmed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(dir.path(), small_checkpoints()).expect("open");
    let mut holding = ledger.feed_holding(1).expect("holding feed");
    assert!(holding.is_holding());
    sales(&ledger, 1, 6_000);
    ledger.snapshot().expect("checkpoint");
    assert!(ledger.checkpoint_stats().written >= 3);
    assert_eq!(ledger.log_first_seq(), 1, "nothing confirmed: the whole log is kept");

    // The holding feed reads, confirming as it goes.
    let mut out = Vec::new();
    let mut read = 0;
    while read < 4_000 {
        out.clear();
        read += holding.read(&mut out, 500).expect("read");
        holding.confirm(out.last().map_or(0, FeedRecord::seq));
    }
    sales(&ledger, 6_001, 600);
    ledger.snapshot().expect("checkpoint");
    let first = ledger.log_first_seq();
    assert!(first > 1 && first <= 4_001, "retention removed only confirmed records: the log starts at {first}");
    let rest = drain(&mut holding);
    assert_eq!(rest.first().map(FeedRecord::seq), Some(4_001));
    assert_eq!(rest.last().map(FeedRecord::seq), Some(6_600));

    // Once the holding feed is gone, retention follows the checkpoints alone.
    drop(holding);
    sales(&ledger, 6_601, 1_000);
    // Retention runs as the next checkpoint starts: after three asked for, the oldest
    // kept one is past 7000 however the automatic ones were timed.
    for _ in 0..3 {
        ledger.snapshot().expect("checkpoint");
    }
    assert!(ledger.log_first_seq() > 6_000, "the log starts at {}", ledger.log_first_seq());
    ledger.close().expect("close");
}

/// A history of every kind, with runs of consecutive batch closes, through many
/// checkpoints; returns the records in commit order as a following feed read them
/// from the log.
fn mixed_history(ledger: &Ledger) -> Vec<FeedRecord> {
    let eur = Currency::from_code("EUR").expect("EUR");
    let mut follower = ledger.feed(1).expect("feed");
    let mut seen = Vec::new();
    let mut next = 1u128;
    let mut id = || {
        next += 1;
        TxId(next)
    };
    for round in 0..60u64 {
        let mut txs = Vec::new();
        for client in 1..=4u64 {
            let (sale, auth, auth2) = (id(), id(), id());
            txs.push(Tx::sale(sale, client, 10_00 + round as i64, usd()));
            txs.push(Tx::authorization(auth, client, 5_00, usd()));
            txs.push(Tx::authorization(auth2, client, 7_00, eur));
            txs.push(Tx::capture(id(), auth, client, 4_00, usd()));
            txs.push(Tx::void(id(), auth2, client, eur));
            txs.push(Tx::refund(id(), sale, client, 1_00, usd()));
            txs.push(Tx::adjustment(id(), client, -25, eur).with_device(round));
            txs.push(Tx::sale(id(), client, 3_00, eur));
        }
        for chunk in txs.chunks(7) {
            committed(&ledger.submit(chunk).expect("submit"));
        }
        if round % 3 == 0 {
            // Several closes in a row: seqs no transaction has.
            for client in 1..=4u64 {
                ledger.close_batch(client, usd()).expect("close usd");
                ledger.close_batch(client, eur).expect("close eur");
            }
        }
        seen.extend(drain(&mut follower));
    }
    seen
}

#[test]
fn a_feed_reads_history_the_log_no_longer_holds_from_the_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { snapshot_every_records: 300, segment_bytes: 16 << 10, ..small_checkpoints() };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let all = mixed_history(&ledger);
    // Retention after a checkpoint runs when the next one starts, from the older of the
    // two kept checkpoints. Asked-for ones at one seq replace one another among the
    // kept, so how much goes depends on which automatic ones finished (on a slow
    // machine, few: the log then starts at the first of them, seen at 267 of 2080).
    for _ in 0..3 {
        ledger.snapshot().expect("checkpoint");
    }
    let total = ledger.last_seq();
    assert_eq!(all.len() as u64, total, "the follower read every record");
    assert!(all.iter().any(|r| matches!(r, FeedRecord::BatchClose { .. })));
    let first = ledger.log_first_seq();
    assert!(first > 2, "retention removed the log's start: it starts at {first} of {total}");

    // From anywhere, the same records: from the runs below the log's start, then the log.
    let closes: Vec<u64> =
        all.iter().filter(|r| matches!(r, FeedRecord::BatchClose { .. })).map(FeedRecord::seq).collect();
    let mut starts = vec![1, 2, 37, first - 1, first, first + 1, total];
    starts.extend(closes.iter().take(3).copied());
    starts.extend(closes.iter().take(3).map(|s| s + 1));
    for from in starts {
        let got = drain(&mut ledger.feed(from).expect("feed"));
        let skipped = usize::try_from(from - 1).expect("a small seq");
        assert_eq!(got.len(), all.len() - skipped, "from {from}");
        for (g, want) in got.iter().zip(&all[skipped..]) {
            assert_eq!(g, want, "from {from}");
        }
    }
    ledger.close().expect("close");

    // After a reopen (the log replayed from the checkpoint), the same again.
    let ledger = Ledger::open(dir.path(), options).expect("reopen");
    assert!(ledger.log_first_seq() > 1);
    assert_eq!(drain(&mut ledger.feed(1).expect("feed")), all);
    ledger.close().expect("close");
}
