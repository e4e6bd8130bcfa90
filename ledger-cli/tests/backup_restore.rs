//! `ledger backup` under write load and `ledger restore`, whole and cut at a seq: the
//! restored ledger holds every transaction acknowledged before the backup's seq and
//! nothing after it; a restore refuses a non-empty directory.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{build, fill, ledger, path_arg, reopen, small, usd};
use ledger_core::{Durability, Ledger, Tx, TxId, TxOutcome};

/// The seq a backup or restore printed (`... seq N (...`).
fn printed_seq(stdout: &str) -> u64 {
    let after = stdout.split("seq ").nth(1).unwrap_or_else(|| panic!("no seq in {stdout:?}"));
    after.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_backup_under_write_load_restores_exactly_what_was_acknowledged_before_its_seq() {
    let dir = tempfile::tempdir().unwrap();
    let owner = reopen(dir.path(), small(Durability::SyncData));
    let before = fill(&owner, 600);
    let acked: Arc<Mutex<Vec<(u64, TxId)>>> =
        Arc::new(Mutex::new(before.records.iter().map(|r| (r.seq, r.tx.id)).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (owner, acked, stop) = (owner.clone(), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut next = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let size = 1 + next % 5;
                let group: Vec<Tx> =
                    (0..size).map(|k| Tx::sale(TxId::from_parts(next + k, 99), 2, 300, usd())).collect();
                next += size;
                let outcomes = owner.submit(&group).unwrap();
                let mut acked = acked.lock().unwrap();
                for o in outcomes {
                    match o {
                        TxOutcome::Committed(r) => acked.push((r.seq, r.tx.id)),
                        other => panic!("{other:?}"),
                    }
                }
                drop(acked);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let seq_before = acked.lock().unwrap().iter().map(|(s, _)| *s).max().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(backup.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let seq = printed_seq(&run.stdout);
    std::thread::sleep(Duration::from_millis(100)); // the owner goes on writing after it
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    owner.close().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(seq >= seq_before, "the backup's seq {seq} is below what was acknowledged before it began, {seq_before}");
    assert!(acked.iter().any(|(s, _)| *s > seq), "the writer went on past the backup");
    assert!(run.stdout.contains("checkpoint at seq"), "a checkpoint went into the backup: {}", run.stdout);
    assert_eq!(ledger(&["verify", path_arg(backup.path())]).code, 0);

    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("ledger");
    let run = ledger(&["restore", path_arg(backup.path()), path_arg(&target)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(printed_seq(&run.stdout), seq);
    let back = Ledger::open(&target, small(Durability::SyncData)).unwrap();
    assert_eq!(back.last_seq(), seq);
    for (s, id) in &acked {
        match back.lookup(*id) {
            Some(r) => assert!(*s <= seq && r.seq == *s, "{id:?} at seq {} (acknowledged at {s})", r.seq),
            None => assert!(*s > seq, "{id:?}, acknowledged at seq {s} <= {seq}, is missing"),
        }
    }
    back.check_consistency().unwrap();
    // The restored ledger goes on from the backup's seq.
    let next = back.submit(&[Tx::sale(TxId(1), 9, 100, usd())]).unwrap();
    assert_eq!(next[0].record().unwrap().seq, seq + 1);
    back.close().unwrap();
}

#[test]
fn a_restore_cut_at_a_seq_keeps_exactly_the_groups_up_to_it() {
    let (dir, committed) = common::build_checkpointed(1200, Durability::SyncData);
    let backup = tempfile::tempdir().unwrap();
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(backup.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let checkpoint = printed_seq(run.stdout.split("checkpoint at").nth(1).unwrap());
    let last_seq = (committed.records.len() + committed.closes.len()) as u64;
    assert!(checkpoint > 1000 && checkpoint <= last_seq, "checkpoint at {checkpoint}");
    // Below the checkpoint the backup holds (replayed from the log alone), and at or
    // above it (loaded from it).
    for wanted in [705u64, (checkpoint + 3).min(last_seq)] {
        let out = tempfile::tempdir().unwrap();
        let run = ledger(&["restore", path_arg(backup.path()), path_arg(out.path()), "--to-seq", &wanted.to_string()]);
        assert_eq!(run.code, 0, "{run:?}");
        let seq = printed_seq(&run.stdout);
        assert!(seq <= wanted && seq + 10 > wanted, "cut at {seq} for --to-seq {wanted}: groups hold at most 10");
        let summary = ledger(&["inspect", path_arg(out.path()), "--json"]);
        let summary: serde_json::Value = serde_json::from_str(&summary.stdout).unwrap();
        assert_eq!(summary["last_seq"], seq);
        assert_eq!(summary["loaded_checkpoint_seq"].as_u64(), (seq >= checkpoint).then_some(checkpoint));
        let back = Ledger::open(out.path(), small(Durability::SyncData)).unwrap();
        assert_eq!(back.last_seq(), seq);
        for r in &committed.records {
            match back.lookup(r.tx.id) {
                Some(now) => assert!(r.seq <= seq && now.seq == r.seq && now.tx == r.tx, "{r:?}"),
                None => assert!(r.seq > seq, "{r:?} missing from a restore at {seq}"),
            }
        }
        back.check_consistency().unwrap();
        back.close().unwrap();
    }
}

#[test]
fn restore_refuses_a_non_empty_directory_and_a_seq_past_the_end() {
    let (dir, _) = build(100, Durability::SyncData);
    let backup = tempfile::tempdir().unwrap();
    assert_eq!(ledger(&["backup", path_arg(dir.path()), path_arg(backup.path())]).code, 0);

    let occupied = tempfile::tempdir().unwrap();
    let precious = occupied.path().join("precious.txt");
    std::fs::write(&precious, b"keep me").unwrap();
    let run = ledger(&["restore", path_arg(backup.path()), path_arg(occupied.path())]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not empty"), "{run:?}");
    assert_eq!(std::fs::read_dir(occupied.path()).unwrap().count(), 1, "nothing written into it");
    assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
    // A backup into a non-empty directory is refused too.
    assert_eq!(ledger(&["backup", path_arg(dir.path()), path_arg(occupied.path())]).code, 1);

    let empty = tempfile::tempdir().unwrap();
    let run = ledger(&["restore", path_arg(backup.path()), path_arg(empty.path()), "--to-seq", "1000000"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(ledger(&["restore", "/nonexistent/backup", path_arg(empty.path())]).code, 2);
}

#[test]
fn a_second_backup_into_the_same_directory_is_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let owner = reopen(dir.path(), small(Durability::SyncData));
    let first = fill(&owner, 1200);
    let backup = tempfile::tempdir().unwrap();
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(backup.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let seq1 = printed_seq(&run.stdout);
    let segments1 = common::files(backup.path(), "0000", ".seg").len();
    assert!(segments1 >= 3, "{segments1} segments");

    // More history: more segments, newer checkpoints and runs (older ones merged away).
    let mut more = Vec::new();
    for i in 0..600u64 {
        let o = owner.submit(&[Tx::sale(TxId::from_parts(i, 55), 4, 700, usd())]).unwrap();
        more.push(*o[0].record().unwrap());
    }
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(backup.path())]);
    assert_eq!(run.code, 0, "{run:?}");
    let seq2 = printed_seq(&run.stdout);
    assert!(seq2 > seq1 && run.stdout.contains(&format!("incremental over the backup at seq {seq1}")), "{run:?}");
    // The segments complete at the first backup (all but its last) were kept, not copied.
    assert!(kept_segments(&run.stdout) == segments1 as u64 - 1, "{}", run.stdout);
    owner.close().unwrap();
    // One checkpoint, and only the runs it names.
    assert_eq!(common::files(backup.path(), "snapshot-", ".snap").len(), 1);
    assert_eq!(ledger(&["verify", path_arg(backup.path())]).code, 0);

    let restored = tempfile::tempdir().unwrap();
    let run = ledger(&["restore", path_arg(backup.path()), path_arg(restored.path())]);
    assert_eq!((run.code, printed_seq(&run.stdout)), (0, seq2), "{run:?}");
    let back = Ledger::open(restored.path(), small(Durability::SyncData)).unwrap();
    for r in first.records.iter().chain(&more) {
        assert_eq!(back.lookup(r.tx.id).map(|now| now.seq), Some(r.seq), "{r:?}");
    }
    back.close().unwrap();

    // Another ledger's backup directory is not an earlier backup of this one.
    let (other, _) = build(100, Durability::SyncData);
    let run = ledger(&["backup", path_arg(other.path()), path_arg(backup.path())]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not an earlier backup"), "{run:?}");
}

/// The segments an incremental backup says it kept (`... N segments kept ...`).
fn kept_segments(stdout: &str) -> u64 {
    let before = stdout.split(" segments kept").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}
