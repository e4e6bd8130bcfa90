//! `ledger verify` finds each planted corruption (a flipped byte in a frame, in a
//! checkpoint, in a cold run file; a truncated file; a missing file), names the file
//! and the byte offset, and exits 1; a clean directory exits 0; usage errors and
//! unreadable directories exit 2.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{build, files, fill, flip, ledger, path_arg, reopen, small};
use ledger_core::Durability;

/// A transaction's frame: a 32-byte header and its 96-byte record.
const TX_FRAME_BYTES: u64 = 128;
/// Frame 11 of the first segment (the first 400 records are transactions).
const FRAME_11_AT: u64 = 64 + 10 * TX_FRAME_BYTES;

fn verify(dir: &Path) -> common::Run {
    ledger(&["verify", path_arg(dir)])
}

/// The report's damage lines.
fn damage(run: &common::Run) -> Vec<&str> {
    run.stdout.lines().filter(|l| l.starts_with("DAMAGE")).collect()
}

#[track_caller]
fn assert_damage(run: &common::Run, file: &Path, needle: &str) {
    assert_eq!(run.code, 1, "damage must exit 1: {run:?}");
    let wanted = format!("DAMAGE  {}{needle}", file.display());
    assert!(damage(run).iter().any(|l| l.starts_with(&wanted)), "no line starting {wanted:?} in:\n{}", run.stdout);
    assert!(run.stdout.contains("damage found"), "{}", run.stdout);
}

#[test]
fn a_clean_ledger_verifies_clean() {
    let (dir, _) = build(1200, Durability::SyncData);
    let run = verify(dir.path());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(damage(&run).is_empty(), "{}", run.stdout);
    assert!(run.stdout.contains("clean: no damage found"), "{}", run.stdout);
    // Every kind of file was looked at: the log, both checkpoints, their runs.
    assert!(run.stdout.contains("every frame and record verified"), "{}", run.stdout);
    assert_eq!(run.stdout.matches(".snap: checkpoint at seq").count(), 2, "{}", run.stdout);
    assert!(run.stdout.contains(".tbl: cold run"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "quiet on stderr when it is not a terminal: {:?}", run.stderr);
}

#[test]
fn a_flipped_byte_in_a_frame_is_found_at_its_offset() {
    let (dir, _) = build(600, Durability::SyncData);
    let segment = &files(dir.path(), "0000", ".seg")[0];
    flip(segment, FRAME_11_AT + 40);
    assert_damage(&verify(dir.path()), segment, &format!(" at byte {FRAME_11_AT}: frame 11 is"));
}

#[test]
fn a_flipped_frame_is_found_even_where_recovery_cannot_prove_it_was_synced() {
    // Written without syncs, no frame says an earlier one was synced: recovery would
    // cut the log at the bad frame. The whole groups after it prove it was committed.
    let (dir, _) = build(600, Durability::None);
    let segment = &files(dir.path(), "0000", ".seg")[0];
    flip(segment, FRAME_11_AT + 40);
    let run = verify(dir.path());
    assert_damage(&run, segment, &format!(" at byte {FRAME_11_AT}: frame 11 is"));
    assert!(run.stdout.contains("whole commit groups follow it"), "{}", run.stdout);
}

#[test]
fn a_flipped_byte_in_a_checkpoint_is_found() {
    let (dir, _) = build(600, Durability::SyncData);
    let snapshot = files(dir.path(), "snapshot-", ".snap").pop().unwrap();
    let len = std::fs::metadata(&snapshot).unwrap().len();
    flip(&snapshot, len - 9); // in the payload
    assert_damage(&verify(dir.path()), &snapshot, " at byte 32: checkpoint file: checksum mismatch");
}

#[test]
fn a_flipped_byte_in_a_cold_run_is_found_at_its_chunk() {
    let (dir, _) = build(600, Durability::SyncData);
    let run_file = files(dir.path(), "run-", ".tbl").pop().unwrap();
    flip(&run_file, 64 + 200); // an entry: the first 64 KiB chunk of the body
    assert_damage(&verify(dir.path()), &run_file, " at byte 64: cold run file: chunk fails its checksum");
}

#[test]
fn a_truncated_run_file_is_found() {
    let (dir, _) = build(600, Durability::SyncData);
    let run_file = files(dir.path(), "run-", ".tbl").pop().unwrap();
    let len = std::fs::metadata(&run_file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&run_file).unwrap().set_len(len - 100).unwrap();
    assert_damage(&verify(dir.path()), &run_file, &format!(" at byte {}: cold run file: no footer magic", len - 164));
}

#[test]
fn a_truncated_segment_before_the_last_is_found() {
    let (dir, _) = build(1200, Durability::SyncData);
    let segment = &files(dir.path(), "0000", ".seg")[0];
    std::fs::OpenOptions::new().write(true).open(segment).unwrap().set_len(20_000).unwrap();
    assert_damage(&verify(dir.path()), segment, " at byte 20000: bad segment");
}

#[test]
fn a_last_segment_cut_below_a_checkpoint_is_found() {
    // Cutting the last segment looks like a torn tail to the log alone; the checkpoint
    // that covers seqs the log no longer holds says committed frames were lost. The
    // newest checkpoint is asked for at the end, so it covers seqs of the last segment
    // (an automatic one may still be behind it, whatever the thread timing).
    let dir = tempfile::tempdir().unwrap();
    let ledger = reopen(dir.path(), small(Durability::SyncData));
    fill(&ledger, 1200);
    ledger.snapshot().unwrap();
    ledger.close().unwrap();
    let last = files(dir.path(), "0000", ".seg").pop().unwrap();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(4096).unwrap();
    let snapshot = files(dir.path(), "snapshot-", ".snap").pop().unwrap();
    let run = verify(dir.path());
    assert_damage(&run, &snapshot, ": covers seq");
    assert!(run.stdout.contains("committed frames are missing from the log's end"), "{}", run.stdout);
}

#[test]
fn a_missing_run_file_is_named() {
    let (dir, _) = build(600, Durability::SyncData);
    let run_file = files(dir.path(), "run-", ".tbl").pop().unwrap();
    std::fs::remove_file(&run_file).unwrap();
    assert_damage(&verify(dir.path()), &run_file, ": missing, but checkpoint");
}

#[test]
fn a_missing_segment_is_named() {
    let (dir, _) = build(1200, Durability::SyncData);
    let segments = files(dir.path(), "0000", ".seg");
    assert!(segments.len() >= 3, "{segments:?}");
    std::fs::remove_file(&segments[1]).unwrap();
    let run = verify(dir.path());
    assert_damage(&run, &segments[0], " at byte");
    let named = format!("is missing (expected file {})", segments[1].display());
    assert!(run.stdout.contains(&named), "{named:?} not in:\n{}", run.stdout);
}

#[test]
fn usage_errors_and_unreadable_directories_exit_2() {
    let missing = ledger(&["verify", "/nonexistent/ledger-dir"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("/nonexistent/ledger-dir"), "{missing:?}");

    let empty = tempfile::tempdir().unwrap();
    let run = ledger(&["verify", path_arg(empty.path())]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no segment files"), "{run:?}");

    let file = empty.path().join("plain-file");
    std::fs::write(&file, b"not a ledger").unwrap();
    let run = ledger(&["verify", path_arg(&file)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not a directory"), "{run:?}");

    for args in [
        &["verify"][..],
        &["verify", "a", "b"],
        &["frobnicate"],
        &["dump", "x", "--format", "xml"],
        &["inspect", "x", "--tx", "12ab"],
    ] {
        let run = ledger(args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    assert_eq!(ledger(&["--help"]).code, 0);
}
