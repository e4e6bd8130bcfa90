//! A ledger with the engine's default retention: the log's oldest segments were removed
//! once a kept checkpoint covered them. Every command still works on it, and what the
//! log no longer holds is refused with a clear message, never invented.

mod common;

use common::{eur, files, fill, ledger, path_arg, reopen, small, usd};
use ledger_core::{Durability, Ledger, LedgerOptions};

/// A closed ledger of 3000 sales (and follow-ups) whose first segments are gone.
fn trimmed() -> (tempfile::TempDir, common::Committed) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { keep_whole_log: false, ..small(Durability::SyncData) };
    let ledger = Ledger::open(dir.path(), options).expect("open");
    let committed = fill(&ledger, 3000);
    assert!(ledger.checkpoint_stats().segments_removed > 0, "{:?}", ledger.checkpoint_stats());
    ledger.close().expect("close");
    let first = files(dir.path(), "0", ".seg").first().cloned().expect("a segment");
    assert!(!first.ends_with("00000000000000000001.seg"), "the first segment was removed");
    (dir, committed)
}

#[test]
fn verify_inspect_and_dump_work_on_a_trimmed_log() {
    let (dir, committed) = trimmed();
    let d = path_arg(dir.path());
    let run = ledger(&["verify", d]);
    assert_eq!(run.code, 0, "a trimmed log is clean: {run:?}");

    let run = ledger(&["inspect", d, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let last = committed.records.iter().map(|r| r.seq).max().expect("records");
    assert_eq!(summary["last_seq"], serde_json::json!(last), "{summary}");
    assert!(summary["first_seq"].as_u64().expect("first_seq") > 1, "{summary}");
    // Every transaction is still counted: the runs hold what the log no longer does.
    assert_eq!(summary["transactions"], serde_json::json!(committed.records.len()), "{summary}");
    // The very first transaction, long out of the log, is still found.
    let first = committed.records.iter().min_by_key(|r| r.seq).expect("first");
    let id = format!("{:016x}{:016x}", first.tx.id.hi(), first.tx.id.lo());
    let run = ledger(&["inspect", d, "--tx", &id]);
    assert_eq!(run.code, 0, "{run:?}");

    // dump gives what the log holds, from its first seq; a range before it is refused.
    let run = ledger(&["dump", d]);
    assert_eq!(run.code, 0, "{run:?}");
    let first_seq = summary["first_seq"].as_u64().expect("first_seq");
    let dumped: Vec<serde_json::Value> = run.stdout.lines().map(|l| serde_json::from_str(l).expect("jsonl")).collect();
    assert_eq!(dumped.first().and_then(|r| r["seq"].as_u64()), Some(first_seq));
    assert_eq!(dumped.last().and_then(|r| r["seq"].as_u64()), Some(last));
    let run = ledger(&["dump", d, "--from", "1", "--to", "5"]);
    assert_ne!(run.code, 0, "records the log no longer holds are not invented: {run:?}");
    assert!(run.stderr.contains(&first_seq.to_string()), "the message says where the log starts: {run:?}");
}

#[test]
fn backup_and_restore_of_a_trimmed_log() {
    let (dir, committed) = trimmed();
    let work = tempfile::tempdir().expect("temp dir");
    let backup = work.path().join("backup");
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(&backup)]);
    assert_eq!(run.code, 0, "{run:?}");
    let restored = work.path().join("restored");
    let run = ledger(&["restore", path_arg(&backup), path_arg(&restored)]);
    assert_eq!(run.code, 0, "{run:?}");
    let ledger_back = Ledger::open(&restored, small(Durability::SyncData)).expect("open the restore");
    assert_eq!(ledger_back.transaction_count(), committed.records.len());
    assert!(committed.records.iter().all(|r| ledger_back.lookup(r.tx.id).is_some()));
    assert!(ledger_back.balance(1, usd()).is_some() && ledger_back.balance(3, eur()).is_some());
    ledger_back.close().expect("close");
    // A cut before everything the backup's log and checkpoints can rebuild is refused.
    let cut = work.path().join("cut");
    let run = ledger(&["restore", path_arg(&backup), path_arg(&cut), "--to-seq", "3"]);
    assert_eq!(run.code, 1, "a cut the backup cannot rebuild is refused: {run:?}");
}

#[test]
fn an_incremental_backup_follows_the_log_as_its_start_moves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LedgerOptions { keep_whole_log: false, ..small(Durability::SyncData) };
    let work = tempfile::tempdir().expect("temp dir");
    let backup = work.path().join("backup");
    let ledger_a = Ledger::open(dir.path(), options).expect("open");
    let first = fill(&ledger_a, 1500);
    ledger_a.close().expect("close");
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(&backup)]);
    assert_eq!(run.code, 0, "{run:?}");
    // More history: the ledger's log start moves past the backup's first segments, not
    // past its last.
    let held = files(&backup, "0", ".seg");
    let holds = |p: &std::path::PathBuf| dir.path().join(p.file_name().expect("name")).exists();
    let ledger_b = reopen(dir.path(), options);
    let mut more = Vec::new();
    for step in 0..40 {
        more.extend(common::fill_from(&ledger_b, 1_000_000 + step * 100, 100).records);
        if !holds(&held[0]) {
            break;
        }
    }
    ledger_b.close().expect("close");
    assert!(!holds(&held[0]) && holds(&held[held.len() - 1]), "the log start moved, not past the backup");
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(&backup)]);
    assert_eq!(run.code, 0, "the second, incremental backup: {run:?}");
    let run = ledger(&["verify", path_arg(&backup)]);
    assert_eq!(run.code, 0, "the backup is a whole ledger: {run:?}");
    let restored = work.path().join("restored");
    assert_eq!(ledger(&["restore", path_arg(&backup), path_arg(&restored)]).code, 0);
    let back = Ledger::open(&restored, small(Durability::SyncData)).expect("open the restore");
    assert_eq!(back.transaction_count(), first.records.len() + more.len());
    back.close().expect("close");

    // Once the ledger's log has moved past everything the backup holds, an incremental
    // backup cannot prove it is the same ledger: refused, the backup left as it was.
    let ledger_c = reopen(dir.path(), options);
    common::fill_from(&ledger_c, 2_000_000, 3000);
    ledger_c.close().expect("close");
    let before = files(&backup, "", "");
    let run = ledger(&["backup", path_arg(dir.path()), path_arg(&backup)]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("moved past"), "{run:?}");
    assert_eq!(files(&backup, "", ""), before, "the refused backup changed nothing");
}
