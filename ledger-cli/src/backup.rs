//! `ledger backup DIR DEST` and `ledger restore BACKUP DIR [--to-seq N]`.
//!
//! A backup is a ledger directory itself: the newest checkpoint file with the runs it
//! names (files the owner never changes once renamed into place), and the log's
//! segments up to the end of the last whole commit group at the time of reading (the
//! segments the owner may still write are copied from their end backwards, see
//! `ledger_store::inspect`). The checkpoint is listed before the log is read, so the
//! log copied reaches the seq it covers: the copy is consistent as of the log's seq.
//! It is synced, then verified as `ledger verify` does and opened read-only as
//! `ledger inspect` does, before its seq is printed.
//!
//! A restore copies a backup into a new or empty directory, optionally cut at a seq:
//! the log up to the end of the last whole commit group at or below it (a
//! multi-transaction call is kept whole or not at all, as recovery keeps it), and the
//! checkpoints (with their runs) that do not go past it.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use ledger_core::inspect::{LedgerView, decode_checkpoint, run_file_name, scan_log};
use ledger_store::SnapshotInfo;
use ledger_store::format::{SEGMENT_HEADER_BYTES, segment_file_name};
use ledger_store::inspect::{list_snapshots, read_snapshot};

use crate::{Failure, Status, progress, verify};

/// Times a backup starts over when the checkpoint it chose is superseded (and its
/// runs removed) while it is being copied.
const CHECKPOINT_ATTEMPTS_MAX: usize = 5;

/// What was written into a backup or a restored directory.
#[derive(Debug, Default)]
struct Written {
    files: u64,
    bytes: u64,
}

/// Refuses `dir` unless it is missing or an empty directory; creates it.
fn fresh_dir(dir: &Path, what: &str) -> Result<(), Failure> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::found(format!(
                    "{}: not empty; refusing to {what} into it (use a new or empty directory)",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::usage(format!("{}: {e}", dir.display()))),
    }
    fs::create_dir_all(dir).map_err(|e| Failure::usage(format!("{}: cannot create: {e}", dir.display())))
}

/// Writes `bytes` as `path` (a new file), synced.
fn write_file(path: &Path, bytes: &[u8], written: &mut Written) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::usage(format!("{}: cannot write: {e}", path.display()));
    let mut file = File::create_new(path).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    written.files += 1;
    written.bytes += bytes.len() as u64;
    Ok(())
}

/// Copies `from` to `to` (a new file), synced. `Ok(false)` when `from` is gone. A run
/// two checkpoints name is copied once.
fn copy_file(from: &Path, to: &Path, written: &mut Written) -> Result<bool, Failure> {
    if to.exists() {
        return Ok(true);
    }
    let mut source = match File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Failure::usage(format!("{}: cannot read: {e}", from.display()))),
    };
    let fail = |e: std::io::Error| Failure::usage(format!("{}: cannot write: {e}", to.display()));
    let mut target = File::create_new(to).map_err(fail)?;
    let bytes = std::io::copy(&mut source, &mut target)
        .map_err(|e| Failure::usage(format!("copying {} to {}: {e}", from.display(), to.display())))?;
    target.sync_all().map_err(fail)?;
    written.files += 1;
    written.bytes += bytes;
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), Failure> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Failure::usage(format!("{}: cannot sync the directory: {e}", dir.display())))
}

/// Copies checkpoint `info` of `from` and the runs it names into `to`. `Ok(None)` when
/// the checkpoint or one of its runs is gone (superseded meanwhile): what was copied
/// of it is removed again.
fn copy_checkpoint(from: &Path, info: &SnapshotInfo, to: &Path, written: &mut Written) -> Result<Option<u64>, Failure> {
    let snapshot = match read_snapshot(info) {
        Ok(s) => s,
        Err(ledger_store::SnapshotError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::found(format!("{e} (run `ledger verify`)"))),
    };
    let contents = decode_checkpoint(snapshot.payload(), snapshot.seq)
        .map_err(|e| Failure::found(format!("{}: checkpoint payload {e}", info.path.display())))?;
    let mut copied = Vec::new();
    for &(id, _) in &contents.runs {
        let name = run_file_name(id);
        let target = to.join(&name);
        if !copy_file(&from.join(&name), &target, written)? {
            for path in copied {
                let _ = fs::remove_file(path);
            }
            return Ok(None);
        }
        copied.push(target);
    }
    let Some(name) = info.path.file_name() else { return Ok(None) };
    if !copy_file(&info.path, &to.join(name), written)? {
        for path in copied {
            let _ = fs::remove_file(path);
        }
        return Ok(None);
    }
    Ok(Some(info.seq))
}

/// Verifies a backup or a restored directory: every file as `verify` checks it, and
/// its state built as `inspect` builds it, at `seq`.
fn verify_copy(dir: &Path, seq: u64) -> Result<LedgerView, Failure> {
    let report = verify::check(dir, true)?;
    if !report.damage.is_empty() {
        return Err(Failure::found(format!(
            "{}: the copy does not verify:\n{}",
            dir.display(),
            report.damage.join("\n")
        )));
    }
    let view =
        LedgerView::open(dir).map_err(|e| Failure::found(format!("{}: the copy does not open: {e}", dir.display())))?;
    if view.last_seq() != seq {
        return Err(Failure::found(format!("{}: the copy ends at seq {}, not {seq}", dir.display(), view.last_seq())));
    }
    Ok(view)
}

/// `backup DIR DEST`.
pub(crate) fn backup(dir: &Path, dest: &Path) -> Result<Status, Failure> {
    fresh_dir(dest, "back up")?;
    let mut written = Written::default();
    // The newest checkpoint that can be copied whole; listed before the log is read.
    let mut checkpoint = None;
    'attempts: for _ in 0..CHECKPOINT_ATTEMPTS_MAX {
        for info in list_snapshots(dir).map_err(|e| Failure::usage(e.to_string()))? {
            if let Some(seq) = copy_checkpoint(dir, &info, dest, &mut written)? {
                checkpoint = Some(seq);
                break 'attempts;
            }
        }
        if list_snapshots(dir).map_err(|e| Failure::usage(e.to_string()))?.is_empty() {
            break;
        }
    }
    let (image, outcome) = scan_log(dir).map_err(Failure::from_view)?;
    let bar = progress::bar(outcome.ends.len() as u64, "segments", false);
    for (i, (segment, &end)) in image.segments().iter().zip(&outcome.ends).enumerate() {
        // The last kept segment ends where the log does: no byte of a group in flight.
        let bytes = if i + 1 == outcome.ends.len() { &segment.bytes()[..end] } else { segment.bytes() };
        write_file(&dest.join(segment_file_name(segment.first_seq)), bytes, &mut written)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    sync_dir(dest)?;
    let view = verify_copy(dest, outcome.last_seq)?;
    println!(
        "backup {}: seq {} (checkpoint {}, {} files, {} bytes), verified",
        dest.display(),
        outcome.last_seq,
        checkpoint.map_or_else(|| "none".to_string(), |s| format!("at seq {s}")),
        written.files,
        written.bytes
    );
    debug_assert_eq!(view.last_seq(), outcome.last_seq);
    Ok(Status::Ok)
}

/// `restore BACKUP DIR [--to-seq N]`.
pub(crate) fn restore(backup: &Path, dir: &Path, to_seq: Option<u64>) -> Result<Status, Failure> {
    fresh_dir(dir, "restore")?;
    let report = verify::check(backup, true)?;
    if !report.damage.is_empty() {
        return Err(Failure::found(format!(
            "{}: the backup does not verify:\n{}",
            backup.display(),
            report.damage.join("\n")
        )));
    }
    let (image, outcome) = scan_log(backup).map_err(Failure::from_view)?;
    let target = to_seq.unwrap_or(outcome.last_seq);
    if target > outcome.last_seq {
        return Err(Failure::found(format!(
            "{}: the backup ends at seq {}, below --to-seq {target}",
            backup.display(),
            outcome.last_seq
        )));
    }
    // The end of the last whole group at or below the target: (seq, segment, offset).
    let first = image.segments()[0].first_seq;
    let mut cut = (first - 1, 0usize, SEGMENT_HEADER_BYTES);
    for frame in image.frames(&outcome, first) {
        let frame =
            frame.map_err(|(path, at)| Failure::found(format!("{}: frame at byte {at} changed", path.display())))?;
        if frame.seq > target {
            break;
        }
        if frame.ends_group {
            let segment = image.segments().iter().position(|s| s.path == frame.segment).unwrap_or(0);
            // The frame lies in a segment held in memory: its offset fits.
            let at = usize::try_from(frame.offset).map_err(|_| Failure::usage("a frame offset past memory"))?;
            let end = at + ledger_store::format::frame_bytes(frame.payload.len());
            cut = (frame.seq, segment, end);
        }
    }
    let (seq, cut_segment, cut_offset) = cut;
    let mut written = Written::default();
    for (i, segment) in image.segments().iter().enumerate().take(cut_segment + 1) {
        let bytes = if i == cut_segment { &segment.bytes()[..cut_offset] } else { segment.bytes() };
        write_file(&dir.join(segment_file_name(segment.first_seq)), bytes, &mut written)?;
    }
    for info in list_snapshots(backup).map_err(|e| Failure::usage(e.to_string()))? {
        if info.seq <= seq && copy_checkpoint(backup, &info, dir, &mut written)?.is_none() {
            return Err(Failure::usage(format!("{}: vanished while restoring", info.path.display())));
        }
    }
    sync_dir(dir)?;
    verify_copy(dir, seq)?;
    println!(
        "restored {} from {}: seq {seq} ({} files, {} bytes), verified",
        dir.display(),
        backup.display(),
        written.files,
        written.bytes
    );
    Ok(Status::Ok)
}
