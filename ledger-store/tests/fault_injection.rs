//! Fault injection through the storage seam (`Log::open_with` + `fault::SimulatedDisk`):
//! every kind of fault (EIO, ENOSPC) at every file-system operation the log makes, then
//! a simulated power loss, then a reopen that must hold exactly what was acknowledged.
//!
//! The documented semantics checked here:
//! - a failed data sync (a commit's fdatasync) fails the commit, and the log refuses every
//!   later write (`AppendError::Failed`, `CommitError::Failed`) until reopened; after
//!   a power loss the failed group is there whole or not at all;
//! - a failed roll-over before the new segment is named (creating, filling or syncing
//!   its file, its header, the rename) fails that append only: nothing changed, the
//!   next append tries again, so writing resumes once space is freed; a failed
//!   directory sync after the rename makes the log refuse writes, like a failed sync;
//! - a failed snapshot write or retention is only reported: the log goes on;
//! - a failure while opening is reported, and the next open succeeds.
//!
//! After each run the disk "crashes" (every later call fails), the log is dropped, and
//! the power loss rewrites the segment files so that every byte no successful sync
//! covered is lost (clean) or lost per sector at random (torn). Reopening must then
//! find every acknowledged frame, gapless, with its payload, and beyond them only the
//! one failed group, whole.
//!
//! Knobs: `LEDGER_STORE_FAULT_SEED` (printed), `LEDGER_STORE_FAULT_CYCLES` (crash
//! cycles on one directory in `random_faults_over_many_crash_cycles`, default 30; the
//! long run is `LEDGER_STORE_FAULT_CYCLES=400 cargo test -p ledger-store --test
//! fault_injection --release`).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::{Rng, payload};
use ledger_store::fault::{ENOSPC, Fault, PowerLoss, SimulatedDisk};
use ledger_store::{AppendError, CommitError, Durability, Log, LogOptions, OpenError, Storage, StorageOp};

const SEED_ENV: &str = "LEDGER_STORE_FAULT_SEED";
const CYCLES_ENV: &str = "LEDGER_STORE_FAULT_CYCLES";
const CYCLES_DEFAULT: u64 = 30;
/// Small segments, so that a run of a few hundred frames rolls over several times.
const SEGMENT_BYTES: usize = 16 << 10;
/// Groups committed per run.
const GROUPS_PER_RUN: u64 = 36;
/// Largest group.
const GROUP_FRAMES_MAX: u64 = 8;
/// A snapshot every this many groups, retention every `RETAIN_EVERY_GROUPS`.
const SNAPSHOT_EVERY_GROUPS: u64 = 6;
const RETAIN_EVERY_GROUPS: u64 = 13;
/// Calls of one operation that `each_fault_at_each_operation` fails, at most.
const NTH_TRIED_MAX: u64 = 6;
/// A one-shot fault on a roll-over is retried at most this often before giving up.
const APPEND_RETRIES_MAX: u32 = 4;

fn options() -> LogOptions {
    LogOptions::new().segment_bytes(SEGMENT_BYTES).durability(Durability::SyncData)
}

fn seed() -> u64 {
    let seed = std::env::var(SEED_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("{SEED_ENV}={seed}");
    seed
}

/// What one run left: the last acknowledged seq and, when a commit failed, the seqs of
/// the failed group (whose fate is unknown).
#[derive(Debug, Default)]
struct RunOutcome {
    acked: u64,
    unknown: Option<(u64, u64)>,
    refused: bool,
    /// The power failed during the run (a planted `crash_at`).
    power_cut: bool,
    open_failures: u64,
    append_failures: u64,
    snapshot_failures: u64,
    retention_failures: u64,
}

/// Opens the log through `disk`; an injected failure while opening is reported as an
/// I/O error, and once the disk is healed the next open succeeds (unless the power
/// failed during the open: then there is no log).
fn open(dir: &Path, disk: &Arc<SimulatedDisk>, out: &mut RunOutcome) -> Option<Log> {
    let storage = Storage::with_injector(Arc::clone(disk) as _);
    match Log::open_with(dir, options(), storage.clone()) {
        Ok(log) => Some(log),
        Err(e) => {
            assert!(matches!(e, OpenError::Io { .. }), "an injected fault while opening is an I/O error: {e}");
            out.open_failures += 1;
            if disk.crashed() {
                return None;
            }
            disk.heal();
            Some(Log::open_with(dir, options(), storage).unwrap_or_else(|e| panic!("open after the fault: {e}")))
        }
    }
}

/// Appends and commits `GROUPS_PER_RUN` groups of frames whose payload is a function of
/// their seq, with snapshots and retention along the way, reacting to each failure as
/// documented, until the log refuses writes, the power fails, or the run ends.
/// `acked` is the last seq acknowledged before.
fn run(dir: &Path, disk: &Arc<SimulatedDisk>, rng: &mut Rng, acked: u64) -> RunOutcome {
    let mut out = RunOutcome { acked, ..RunOutcome::default() };
    let Some(mut log) = open(dir, disk, &mut out) else {
        out.power_cut = true;
        return out;
    };
    assert_eq!(log.committed_seq(), acked, "the log opens where the last run ended");
    'groups: for g in 1..=GROUPS_PER_RUN {
        if disk.crashed() {
            break;
        }
        let first = log.next_seq();
        for _ in 0..=rng.below(GROUP_FRAMES_MAX) {
            let seq = log.next_seq();
            let mut tries = 0;
            loop {
                match log.append(1, &payload(seq)) {
                    Ok(appended) => {
                        assert_eq!(appended, seq);
                        break;
                    }
                    Err(AppendError::Io { .. } | AppendError::Write { .. }) if log.is_failed() => {
                        // The roll-over's directory sync failed, or writing the frames
                        // staged before it: refused from now on; the group was never
                        // marked whole, so it cannot survive.
                        assert!(matches!(log.append(1, b"x"), Err(AppendError::Failed)));
                        assert!(matches!(log.commit(), Err(CommitError::Failed)));
                        out.refused = true;
                        break 'groups;
                    }
                    Err(AppendError::Io { .. }) => {
                        // Nothing changed: the same seq is next, the committed ones stand.
                        assert_eq!((log.next_seq(), log.committed_seq()), (seq, out.acked));
                        out.append_failures += 1;
                        if disk.crashed() {
                            break 'groups; // the group was never marked whole: it is lost
                        }
                        tries += 1;
                        if tries == APPEND_RETRIES_MAX {
                            disk.heal();
                        }
                    }
                    Err(e) => panic!("unexpected append error: {e}"),
                }
            }
        }
        match log.commit() {
            Ok(last) => {
                assert_eq!(last, log.next_seq() - 1);
                out.acked = last;
            }
            Err(CommitError::Sync { .. } | CommitError::Write { .. }) => {
                assert!(log.is_failed(), "fsyncgate: a failed sync (or write) is never retried");
                assert!(matches!(log.append(1, b"x"), Err(AppendError::Failed)));
                assert!(matches!(log.commit(), Err(CommitError::Failed)));
                assert!(matches!(log.sync(), Err(CommitError::Failed)));
                assert_eq!(log.committed_seq(), out.acked, "nothing of the failed group is published");
                out.unknown = Some((first, log.next_seq() - 1));
                out.refused = true;
                break;
            }
            Err(e) => panic!("unexpected commit error: {e}"),
        }
        if g % SNAPSHOT_EVERY_GROUPS == 0 && log.write_snapshot(out.acked, &out.acked.to_le_bytes()).is_err() {
            out.snapshot_failures += 1;
            assert!(!log.is_failed(), "a failed snapshot is only a warning");
        }
        if g % RETAIN_EVERY_GROUPS == 0 && log.remove_segments_before(out.acked.saturating_sub(100)).is_err() {
            out.retention_failures += 1;
            assert!(!log.is_failed(), "a failed retention is only a warning");
        }
    }
    // The power goes: nothing more reaches the disk, not even the drop's cleanup.
    out.power_cut = disk.crashed();
    disk.crash();
    drop(log);
    out
}

/// Reopens after the power loss and checks the log against what the run acknowledged.
/// Returns the recovered last seq.
fn check(dir: &Path, out: &RunOutcome, ctx: &str) -> u64 {
    let log = Log::open(dir, options()).unwrap_or_else(|e| panic!("{ctx}: reopen after the power loss: {e}"));
    let last = log.committed_seq();
    match out.unknown {
        Some((_, end)) => assert!(
            last == out.acked || last == end,
            "{ctx}: recovered up to {last}: neither the acknowledged {} nor the failed group's end {end}",
            out.acked
        ),
        None => assert_eq!(last, out.acked, "{ctx}: recovered up to {last}, acknowledged {}", out.acked),
    }
    let frames = common::collect(&log);
    assert!(log.first_seq() <= out.acked + 1, "{ctx}: retention never removes the active segment");
    let mut expect = log.first_seq();
    for (seq, kind, bytes) in frames {
        assert_eq!((seq, kind), (expect, 1), "{ctx}: gapless seqs");
        assert_eq!(bytes, payload(seq), "{ctx}: frame {seq}'s payload");
        expect += 1;
    }
    assert_eq!(expect, last + 1, "{ctx}: the reader reaches the last seq");
    for info in log.snapshots().unwrap() {
        assert!(info.seq <= last, "{ctx}: a snapshot beyond the log is removed on open");
        let snapshot = log.read_snapshot(&info).unwrap_or_else(|e| panic!("{ctx}: a named snapshot is whole: {e}"));
        assert_eq!(snapshot.payload(), info.seq.to_le_bytes(), "{ctx}: snapshot payload");
    }
    last
}

#[test]
fn each_fault_at_each_operation() {
    let seed = seed();
    let started = Instant::now();
    // A reference run without faults counts each operation's calls.
    let reference = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(reference.path()).unwrap());
    let out = run(reference.path(), &disk, &mut Rng(seed), 0);
    assert_eq!((out.refused, disk.faults_injected()), (false, 0));
    let calls: Vec<(StorageOp, u64)> = StorageOp::ALL.iter().map(|&op| (op, disk.calls(op))).collect();
    println!("calls in a run without faults: {calls:?}");
    for &(op, n) in &calls {
        assert!(n > 0, "the workload exercises {op:?}");
    }

    let mut pick = Rng(seed ^ 0x5EED);
    let (mut runs, mut injected, mut refused, mut recovered_unknown) = (0u64, 0u64, 0u64, 0u64);
    for &(op, n) in &calls {
        // The first calls (open, the first roll-over) and a spread of the others.
        let mut nths: Vec<u64> = (1..=n.min(2)).collect();
        while (nths.len() as u64) < NTH_TRIED_MAX.min(n) {
            let nth = 1 + pick.below(n);
            if !nths.contains(&nth) {
                nths.push(nth);
            }
        }
        for nth in nths {
            for fault in [Fault::Eio, Fault::Enospc] {
                let mode = if runs % 2 == 0 { PowerLoss::Clean } else { PowerLoss::Torn { seed: pick.next() } };
                let ctx = format!("{SEED_ENV}={seed}: {fault:?} at call {nth} of {op:?}, {mode:?}");
                let dir = tempfile::tempdir().unwrap();
                let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
                disk.fail_nth(op, nth, fault);
                let out = run(dir.path(), &disk, &mut Rng(seed), 0);
                disk.power_loss(mode).unwrap();
                let last = check(dir.path(), &out, &ctx);
                // The spare segment is prepared on a thread: a call near the end of the
                // run may come after the crash, where nothing more is injected.
                assert!(disk.faults_injected() <= 1, "{ctx}: one fault");
                runs += 1;
                injected += disk.faults_injected();
                refused += u64::from(out.refused);
                recovered_unknown += u64::from(out.unknown.is_some_and(|(_, end)| end == last));
            }
        }
    }
    assert!(injected * 10 >= runs * 9, "most runs reach their fault: {injected} of {runs}");
    println!(
        "each_fault_at_each_operation: {runs} runs, {injected} faults injected, {refused} logs refusing writes, \
         {recovered_unknown} failed groups found whole after the power loss, in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn a_full_disk_at_roll_over_refuses_appends_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let mut log = Log::open_with(dir.path(), options(), Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    // Fill the first segment without reaching the half at which the spare is prepared.
    let mut seq = 1;
    while log.next_seq() < 20 {
        log.append(1, &payload(seq)).unwrap();
        seq += 1;
    }
    log.commit().unwrap();
    // From now on the disk is full: no file can be filled.
    disk.fail_from(StorageOp::WriteFile, disk.calls(StorageOp::WriteFile) + 1, Fault::Enospc);
    let committed = log.committed_seq();
    let mut refusals = 0;
    loop {
        match log.append(1, &payload(seq)) {
            Ok(_) => seq += 1,
            Err(AppendError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(ENOSPC));
                refusals += 1;
                if refusals == 3 {
                    break;
                }
            }
            Err(e) => panic!("unexpected append error: {e}"),
        }
    }
    assert!(!log.is_failed(), "a roll-over that failed before anything was named changes nothing");
    assert_eq!(log.next_seq(), seq, "the refused frame took no seq");
    // The frames appended before the full disk still commit (they are in the old segment).
    assert_eq!(log.commit().unwrap(), seq - 1);
    assert!(seq - 1 > committed);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "a failed preparation gives its space back: {leftovers:?}");

    // Space is freed: the same append now rolls over and writing goes on.
    disk.heal();
    for _ in 0..40 {
        assert_eq!(log.append(1, &payload(seq)).unwrap(), seq);
        seq += 1;
    }
    assert_eq!(log.commit().unwrap(), seq - 1);
    assert!(common::segment_files(dir.path()).len() >= 2);
    disk.crash();
    drop(log);
    disk.power_loss(PowerLoss::Clean).unwrap();
    let out = RunOutcome { acked: seq - 1, ..RunOutcome::default() };
    check(dir.path(), &out, "after the disk was full");
}

#[test]
fn a_failed_sync_refuses_writes_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let mut log = Log::open_with(dir.path(), options(), Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    for seq in 1..=5 {
        log.append(1, &payload(seq)).unwrap();
    }
    log.commit().unwrap();
    for seq in 6..=8 {
        log.append(1, &payload(seq)).unwrap();
    }
    disk.fail_nth(StorageOp::SyncRange, disk.calls(StorageOp::SyncRange) + 1, Fault::Eio);
    let err = log.commit().unwrap_err();
    assert!(
        matches!(&err, CommitError::Sync { source, .. } if source.raw_os_error() == Some(ledger_store::fault::EIO))
    );
    // Even though the next sync would succeed, the log does not try it.
    assert!(log.is_failed());
    assert!(matches!(log.append(1, b"x"), Err(AppendError::Failed)));
    assert!(matches!(log.commit(), Err(CommitError::Failed)));
    assert_eq!(common::collect(&log).len(), 5, "readers never see the failed group");
    disk.crash();
    drop(log);
    // Clean power loss: the unsynced group is gone, the synced one stays.
    disk.power_loss(PowerLoss::Clean).unwrap();
    let out = RunOutcome { acked: 5, ..RunOutcome::default() };
    assert_eq!(check(dir.path(), &out, "after a failed sync"), 5);
    // And the reopened log writes again.
    let mut log = Log::open(dir.path(), options()).unwrap();
    assert_eq!(log.append(1, &payload(6)).unwrap(), 6);
    assert_eq!(log.commit().unwrap(), 6);
}

#[test]
fn a_failed_retention_never_leaves_a_hole() {
    // Found by `random_faults_over_many_crash_cycles`: a segment whose removal failed
    // was forgotten by the log, a later retention removed the next one, and the log on
    // disk had a hole that recovery refuses (a durable frame missing).
    let dir = tempfile::tempdir().unwrap();
    let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
    let mut log = Log::open_with(dir.path(), options(), Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
    for seq in 1..=600 {
        log.append(1, &payload(seq)).unwrap();
        if seq % 10 == 0 {
            log.commit().unwrap();
        }
    }
    let segments = common::segment_files(dir.path()).len();
    assert!(segments >= 5);
    disk.fail_nth(StorageOp::RemoveFile, disk.calls(StorageOp::RemoveFile) + 1, Fault::Eio);
    assert!(log.remove_segments_before(250).is_err());
    assert_eq!(log.first_seq(), 1, "the segment that could not be removed is still the log's first");
    assert_eq!(common::segment_files(dir.path()).len(), segments);
    let removed = log.remove_segments_before(400).unwrap();
    assert!(removed >= 2);
    assert_eq!(common::segment_files(dir.path()).len(), segments - removed);
    let first = log.first_seq();
    drop(log);
    let log = Log::open(dir.path(), options()).unwrap();
    assert_eq!((log.first_seq(), log.committed_seq()), (first, 600));
    assert_eq!(common::collect(&log).len() as u64, 600 - first + 1);
}

#[test]
fn power_loss_keeps_exactly_the_synced_prefix() {
    // Without per-commit syncs, a power loss keeps exactly what the last `sync` covered.
    let options = options().durability(Durability::None);
    let mut rng = Rng(7);
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
        let mut log = Log::open_with(dir.path(), options, Storage::with_injector(Arc::clone(&disk) as _)).unwrap();
        let mut synced = 0;
        for g in 0..30 {
            for _ in 0..=rng.below(6) {
                let seq = log.next_seq();
                log.append(1, &payload(seq)).unwrap();
            }
            log.commit().unwrap();
            if g % 7 == round % 7 && g < 28 {
                synced = log.sync().unwrap();
            }
        }
        assert!(log.committed_seq() > synced);
        disk.crash();
        drop(log);
        let report = disk.power_loss(PowerLoss::Clean).unwrap();
        assert!(report.sectors_lost > 0, "round {round}: unsynced frames were lost");
        let log = Log::open(dir.path(), options).unwrap();
        assert_eq!(log.committed_seq(), synced, "round {round}: exactly the synced prefix");
        for (seq, _, bytes) in common::collect(&log) {
            assert_eq!(bytes, payload(seq));
        }
    }
}

#[test]
fn random_faults_over_many_crash_cycles() {
    let seed = seed();
    let cycles = std::env::var(CYCLES_ENV).ok().and_then(|s| s.parse().ok()).unwrap_or(CYCLES_DEFAULT);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut injected, mut refused, mut unknown_kept, mut unknown_lost, mut open_failures) = (0, 0, 0, 0, 0);
    let (mut acked_total, mut before, mut power_cuts) = (0, 0, 0);
    for cycle in 0..cycles {
        let disk = Arc::new(SimulatedDisk::attach(dir.path()).unwrap());
        // One to three faults at random calls of random operations; some stay (a full disk).
        for _ in 0..=rng.below(3) {
            let op = StorageOp::ALL[rng.below(StorageOp::ALL.len() as u64) as usize];
            let nth = 1 + rng.below(40);
            let fault = if rng.below(2) == 0 { Fault::Eio } else { Fault::Enospc };
            if rng.below(4) == 0 {
                disk.fail_from(op, nth, fault);
            } else {
                disk.fail_nth(op, nth, fault);
            }
        }
        // One cycle in three, the power fails at a random call, mid-run.
        if rng.below(3) == 0 {
            let op = StorageOp::ALL[rng.below(StorageOp::ALL.len() as u64) as usize];
            // A run makes a few dozen data syncs (and frame writes) and a handful of every other call.
            disk.crash_at(
                op,
                1 + rng.below(if matches!(op, StorageOp::SyncRange | StorageOp::WriteFrames) { 40 } else { 8 }),
            );
        }
        let mode = if rng.below(2) == 0 { PowerLoss::Clean } else { PowerLoss::Torn { seed: rng.next() } };
        let out = run(dir.path(), &disk, &mut rng, before);
        power_cuts += u64::from(out.power_cut);
        disk.power_loss(mode).unwrap();
        let ctx = format!("{SEED_ENV}={seed}, cycle {cycle}, {mode:?}");
        let last = check(dir.path(), &out, &ctx);
        assert!(last >= before, "{ctx}: nothing acknowledged earlier is lost");
        injected += disk.faults_injected();
        refused += u64::from(out.refused);
        open_failures += out.open_failures;
        acked_total += out.acked - before;
        before = last;
        match out.unknown {
            Some((_, end)) if end == last => unknown_kept += 1,
            Some(_) => unknown_lost += 1,
            None => {}
        }
    }
    println!(
        "random_faults_over_many_crash_cycles: {SEED_ENV}={seed} {cycles} cycles, {injected} faults injected, \
         {open_failures} failed opens, {refused} logs refusing writes, {power_cuts} power cuts mid-run, failed \
         groups kept whole {unknown_kept} / lost {unknown_lost}, {acked_total} frames acknowledged, in {:.1?}",
        started.elapsed()
    );
}
