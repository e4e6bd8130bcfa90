//! `Ledger::replace`: a replica installing its leader's snapshot swaps the whole content
//! of its directory under the same handle. Every clone of the handle reaches the new
//! content; a failed fill changes nothing; a crash at any step leaves the old ledger or
//! the new one, which the next open finishes.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use ledger_core::{Currency, Durability, FeedError, Ledger, LedgerOptions, ReplaceError, Tx, TxId};

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn options() -> LedgerOptions {
    LedgerOptions { durability: Durability::SyncData, segment_bytes: 64 << 10, ..LedgerOptions::default() }
}

/// `n` sales of client `client` with ids `first..first + n`.
fn sales(ledger: &Ledger, client: u64, first: u128, n: u128) {
    let txs: Vec<Tx> = (first..first + n).map(|i| Tx::sale(TxId(i), client, 1_00, usd())).collect();
    for chunk in txs.chunks(7) {
        ledger.submit(chunk).unwrap();
    }
}

/// Copies every file of a closed ledger's directory into `to`, synced.
fn copy_ledger(from: &Path, to: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        if entry.file_type().map_err(|e| e.to_string())?.is_file() {
            let target = to.join(entry.file_name());
            std::fs::copy(entry.path(), &target).map_err(|e| e.to_string())?;
            std::fs::File::open(&target).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// A closed ledger in `dir` holding `n` sales of client 9, ids from 1000.
fn other_ledger(dir: &Path, n: u128) {
    let other = Ledger::open(dir, options()).unwrap();
    sales(&other, 9, 1000, n);
    other.close().unwrap();
}

#[test]
fn every_handle_reaches_the_new_content_and_the_old_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let (dir, source) = (root.path().join("ledger"), root.path().join("source"));
    other_ledger(&source, 50);
    let ledger = Ledger::open(&dir, options()).unwrap();
    let clone = ledger.clone();
    sales(&ledger, 1, 1, 20);
    let mut old_feed = ledger.feed(1).unwrap();

    ledger.replace(|into| copy_ledger(&source, into)).unwrap();
    assert!(!ledger.is_closed(), "replaced, not closed: feeds on the old content are opened again");

    for handle in [&ledger, &clone] {
        assert_eq!(handle.last_seq(), 50, "the new content's history");
        assert!(handle.lookup(TxId(1)).is_none(), "the old content is gone");
        assert_eq!(handle.lookup(TxId(1049)).unwrap().tx.client_id, 9);
        assert_eq!(handle.balance(9, usd()).unwrap().net, 50_00);
        assert!(handle.balance(1, usd()).is_none_or(|b| b.net == 0));
    }
    // The old engine's feed gives what it had, then ends; a new one reads the new content.
    let mut out = Vec::new();
    while old_feed.read(&mut out, 100).unwrap_or(0) > 0 {}
    assert_eq!(out.len(), 20);
    assert!(matches!(old_feed.wait(Duration::ZERO), Err(FeedError::Closed)));
    let mut feed = clone.feed(1).unwrap();
    let mut fresh = Vec::new();
    while feed.read(&mut fresh, 100).unwrap() > 0 {}
    assert_eq!(fresh.len(), 50);

    // It goes on from there, durably, and nothing is left beside the directory.
    sales(&clone, 9, 5000, 3);
    assert_eq!(ledger.last_seq(), 53);
    ledger.close().unwrap();
    let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "only the ledger and the source: {names:?}");
    let reopened = Ledger::open(&dir, options()).unwrap();
    assert_eq!(reopened.last_seq(), 53);
    assert!(reopened.lookup(TxId(5002)).is_some());
    assert!(reopened.lookup(TxId(1)).is_none());
}

#[test]
fn a_failed_fill_changes_nothing_and_a_closed_ledger_is_not_replaced() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ledger");
    let ledger = Ledger::open(&dir, options()).unwrap();
    sales(&ledger, 1, 1, 10);
    let err = ledger
        .replace(|into| {
            std::fs::write(into.join("partial"), b"half a snapshot").unwrap();
            Err("the leader went away".into())
        })
        .unwrap_err();
    assert!(matches!(err, ReplaceError::Fill(ref m) if m.contains("went away")), "{err}");
    assert_eq!(ledger.last_seq(), 10);
    sales(&ledger, 1, 100, 1);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1, "the partial content is removed");
    ledger.close().unwrap();
    assert!(ledger.is_closed());
    assert!(matches!(ledger.replace(|_| Ok(())), Err(ReplaceError::Closed)));
}

#[test]
fn a_waiter_for_a_seq_sees_it_arrive_through_a_replacement() {
    let root = tempfile::tempdir().unwrap();
    let (dir, source) = (root.path().join("ledger"), root.path().join("source"));
    other_ledger(&source, 30);
    let ledger = Ledger::open(&dir, options()).unwrap();
    sales(&ledger, 1, 1, 5);
    let waiter = {
        let ledger = ledger.clone();
        std::thread::spawn(move || ledger.wait_for_seq(30, Duration::from_secs(20)))
    };
    std::thread::sleep(Duration::from_millis(100));
    ledger
        .replace(|into| {
            std::thread::sleep(Duration::from_millis(200)); // the waiter waits on the old engine meanwhile
            copy_ledger(&source, into)
        })
        .unwrap();
    assert!(waiter.join().unwrap(), "seq 30 arrived with the new content");
    assert!(!ledger.wait_for_seq(31, Duration::from_millis(50)));
}

/// The directory states a crash can leave, from the order `replace` works in.
#[test]
fn an_interrupted_replacement_is_finished_or_undone_at_open() {
    let root = tempfile::tempdir().unwrap();
    let (dir, source) = (root.path().join("ledger"), root.path().join("source"));
    let incoming = root.path().join("ledger.incoming");
    let replaced = root.path().join("ledger.replaced");
    other_ledger(&source, 40);
    let old = Ledger::open(&dir, options()).unwrap();
    sales(&old, 1, 1, 12);
    old.close().unwrap();
    drop(old);
    let copy_dir = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        copy_ledger(from, to).unwrap();
    };
    let keep = root.path().join("keep-old");
    copy_dir(&dir, &keep);

    // Crash while the new content was being written: the old ledger, leftovers removed.
    copy_dir(&source, &incoming);
    std::fs::remove_file(std::fs::read_dir(&incoming).unwrap().next().unwrap().unwrap().path()).unwrap();
    let ledger = Ledger::open(&dir, options()).unwrap();
    assert_eq!(ledger.last_seq(), 12);
    ledger.close().unwrap();
    drop(ledger);
    assert!(!incoming.exists());

    // Crash after the old content was moved aside: the new content, whole, goes in.
    copy_dir(&source, &incoming);
    std::fs::rename(&dir, &replaced).unwrap();
    let ledger = Ledger::open(&dir, options()).unwrap();
    assert_eq!(ledger.last_seq(), 40);
    assert!(ledger.lookup(TxId(1000)).is_some());
    ledger.close().unwrap();
    drop(ledger);
    assert!(!incoming.exists() && !replaced.exists());

    // Crash after the switch, before the old content was removed: the new one stays.
    copy_dir(&keep, &replaced);
    let ledger = Ledger::open(&dir, options()).unwrap();
    assert_eq!(ledger.last_seq(), 40);
    ledger.close().unwrap();
    drop(ledger);
    assert!(!replaced.exists());

    // Moved aside with nothing written beside it (not an order `replace` produces, but
    // the old content must never be lost): it goes back.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&keep, &replaced);
    let ledger = Ledger::open(&dir, options()).unwrap();
    assert_eq!(ledger.last_seq(), 12);
}

#[test]
fn new_content_that_does_not_open_closes_the_ledger_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ledger");
    let ledger = Ledger::open(&dir, options()).unwrap();
    sales(&ledger, 1, 1, 3);
    let err = ledger
        .replace(|into| {
            // A segment file that is not one: the log refuses it (corruption is never
            // silently accepted).
            std::fs::write(into.join(ledger_store::format::segment_file_name(1)), vec![0xA5; 4096])
                .map_err(|e| e.to_string())
        })
        .unwrap_err();
    assert!(matches!(err, ReplaceError::Open(_)), "{err}");
    assert!(ledger.is_closed());
    assert!(ledger.submit(&[Tx::sale(TxId(77), 1, 1, usd())]).is_err());
}
