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
//! A backup into a directory that holds an earlier backup of the same ledger (its
//! first frame and its last frame are the ledger's) is incremental: complete segments
//! and runs already there are kept, the rest is written (a segment that grew replaces
//! the old one by rename), and only then are the checkpoint and runs the new backup no
//! longer names removed, so the directory is a whole ledger at every step.
//!
//! A restore copies a backup into a new or empty directory, optionally cut at a seq:
//! the log up to the end of the last whole commit group at or below it (a
//! multi-transaction call is kept whole or not at all, as recovery keeps it), and the
//! checkpoints (with their runs) that do not go past it.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use ledger_core::inspect::{LedgerView, decode_checkpoint, parse_run_file_name, run_file_name, scan_log};
use ledger_store::SnapshotInfo;
use ledger_store::format::{SEGMENT_HEADER_BYTES, parse_segment_file_name, segment_file_name};
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

/// Copies checkpoint `info` of `from` and the runs it names into `to`, and returns its
/// seq and runs. `Ok(None)` when the checkpoint or one of its runs is gone (superseded
/// meanwhile): what was copied of it is removed again. The copy is what is verified
/// and decoded, so it is the very file the runs were chosen by (a checkpoint written
/// again at the same seq replaces its file).
fn copy_checkpoint(
    from: &Path,
    info: &SnapshotInfo,
    to: &Path,
    written: &mut Written,
) -> Result<Option<(u64, Vec<u64>)>, Failure> {
    let Some(name) = info.path.file_name() else { return Ok(None) };
    let bytes = match fs::read(&info.path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::usage(format!("{}: cannot read: {e}", info.path.display()))),
    };
    let target = to.join(name);
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    write_file(&tmp, &bytes, written)?;
    let mut copied = vec![tmp.clone()];
    let abandon = |copied: Vec<std::path::PathBuf>| {
        for path in copied {
            let _ = fs::remove_file(path);
        }
    };
    let snapshot = read_snapshot(&SnapshotInfo { seq: info.seq, path: tmp.clone() })
        .map_err(|e| Failure::found(format!("{}: {e} (run `ledger verify`)", info.path.display())))?;
    let contents = decode_checkpoint(snapshot.payload(), snapshot.seq)
        .map_err(|e| Failure::found(format!("{}: checkpoint payload {e}", info.path.display())))?;
    drop(snapshot);
    for &(id, _) in &contents.runs {
        let name = run_file_name(id);
        let run = to.join(&name);
        let existed = run.exists();
        if !copy_file(&from.join(&name), &run, written)? {
            abandon(copied);
            return Ok(None);
        }
        if !existed {
            copied.push(run);
        }
    }
    fs::rename(&tmp, &target)
        .map_err(|e| Failure::usage(format!("{}: cannot rename into place: {e}", target.display())))?;
    Ok(Some((info.seq, contents.runs.iter().map(|&(id, _)| id).collect())))
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

/// Suffix of the temporary files a backup writes before renaming them into place
/// (ignored by the engine and the tools, which know only their own names).
const TMP_SUFFIX: &str = ".backup-tmp";

/// Writes `bytes` as `path` through a temporary file renamed over it, synced.
fn replace_file(path: &Path, bytes: &[u8], written: &mut Written) -> Result<(), Failure> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = std::path::PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp); // a leftover of an interrupted backup
    write_file(&tmp, bytes, written)?;
    fs::rename(&tmp, path).map_err(|e| Failure::usage(format!("{}: cannot rename into place: {e}", path.display())))
}

/// The first `n` bytes of `path` at `offset`, or `None` when the file is shorter.
fn read_at(path: &Path, offset: u64, n: usize) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).ok()?;
    let mut buf = vec![0; n];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(buf)
}

/// Checks that `dest` (not empty) holds an earlier backup of the ledger in `dir`: a
/// log whose last segment's header and first frame, and whose last frame, are byte for
/// byte those of `dir` at the same places (frames carry their seq and a checksum keyed
/// by it, so another ledger's log does not match). The last segment, not the first:
/// the engine removes the log's oldest segments once a kept checkpoint covers them, so
/// the ledger may no longer hold the backup's first ones; if it no longer holds even
/// the last, the ledger has moved past this backup and it is refused. Returns the seq
/// it holds.
fn earlier_backup(dir: &Path, dest: &Path) -> Result<u64, Failure> {
    let refuse = |why: String| {
        Failure::found(format!(
            "{}: not empty, and not an earlier backup of {}: {why} (use a new or empty directory)",
            dest.display(),
            dir.display()
        ))
    };
    let (image, outcome) = scan_log(dest).map_err(|e| refuse(e.to_string()))?;
    let Some(newest) = image.segments().last() else { return Err(refuse("it holds no log segment".into())) };
    let head = SEGMENT_HEADER_BYTES + ledger_store::format::FRAME_HEADER_BYTES;
    let theirs_path = dir.join(segment_file_name(newest.first_seq));
    if !theirs_path.exists() {
        return Err(refuse(format!(
            "the ledger's log has moved past it (it no longer holds segment {})",
            segment_file_name(newest.first_seq)
        )));
    }
    if newest.bytes().get(..head) != read_at(&theirs_path, 0, head).as_deref() {
        return Err(refuse("its last segment differs".into()));
    }
    if let Some(last) = image.frames(&outcome, outcome.last_seq).next() {
        let last = last.map_err(|(path, at)| refuse(format!("{}: frame at byte {at} changed", path.display())))?;
        let Some(name) = last.segment.file_name() else { return Err(refuse("a segment without a name".into())) };
        let mine = read_at(last.segment, last.offset, ledger_store::format::FRAME_HEADER_BYTES);
        let theirs = read_at(&dir.join(name), last.offset, ledger_store::format::FRAME_HEADER_BYTES);
        if mine.is_none() || mine != theirs {
            return Err(refuse(format!("its last frame, seq {}, differs", last.seq)));
        }
    }
    Ok(outcome.last_seq)
}

/// `backup DIR DEST`.
pub fn backup(dir: &Path, dest: &Path) -> Result<Status, Failure> {
    let done = take_backup(dir, dest)?;
    let incremental = done.incremental_over.map_or_else(String::new, |seq| {
        format!(
            "; incremental over the backup at seq {seq}: {} segments kept, {} files removed",
            done.kept, done.removed
        )
    });
    println!(
        "backup {}: seq {} (checkpoint {}, {} files, {} bytes written{incremental}), verified",
        dest.display(),
        done.seq,
        done.checkpoint_seq.map_or_else(|| "none".to_string(), |s| format!("at seq {s}")),
        done.files,
        done.bytes
    );
    Ok(Status::Ok)
}

/// What [`take_backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The backup holds the ledger up to this seq (the end of a whole commit group).
    pub seq: u64,
    /// The checkpoint it holds, if any: the seq it covers.
    pub checkpoint_seq: Option<u64>,
    /// Files and bytes written.
    pub files: u64,
    pub bytes: u64,
    /// When `dest` held an earlier backup of the same ledger: its seq, the segments
    /// kept from it and the files removed.
    pub incremental_over: Option<u64>,
    pub kept: u64,
    pub removed: u64,
}

/// `backup DIR DEST` without printing (for programs that take backups, such as a
/// replica building its snapshot): a consistent, verified copy of the ledger in `dir`
/// as of one seq, taken while its owner writes.
pub fn take_backup(dir: &Path, dest: &Path) -> Result<Backup, Failure> {
    let earlier = match fs::read_dir(dest) {
        Ok(entries) => match entries.count() {
            0 => None,
            _ => Some(earlier_backup(dir, dest)?),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| Failure::usage(format!("{}: cannot create: {e}", dest.display())))?;
            None
        }
        Err(e) => return Err(Failure::usage(format!("{}: {e}", dest.display()))),
    };
    let mut written = Written::default();
    // The newest checkpoint that can be copied whole; listed before the log is read.
    let mut checkpoint: Option<(u64, Vec<u64>)> = None;
    'attempts: for _ in 0..CHECKPOINT_ATTEMPTS_MAX {
        for info in list_snapshots(dir).map_err(|e| Failure::usage(e.to_string()))? {
            if let Some(copied) = copy_checkpoint(dir, &info, dest, &mut written)? {
                checkpoint = Some(copied);
                break 'attempts;
            }
        }
        if list_snapshots(dir).map_err(|e| Failure::usage(e.to_string()))?.is_empty() {
            break;
        }
    }
    let (image, outcome) = scan_log(dir).map_err(Failure::from_view)?;
    let bar = progress::bar(outcome.ends.len() as u64, "segments", false);
    let mut kept = 0u64;
    for (i, (segment, &end)) in image.segments().iter().zip(&outcome.ends).enumerate() {
        let target = dest.join(segment_file_name(segment.first_seq));
        let complete = i + 1 < outcome.ends.len();
        bar.inc(1);
        if complete && fs::metadata(&target).is_ok_and(|m| m.len() == segment.bytes().len() as u64) {
            kept += 1; // an earlier backup's copy of a segment the owner no longer writes
            continue;
        }
        // The last kept segment ends where the log does: no byte of a group in flight.
        let bytes = if complete { segment.bytes() } else { &segment.bytes()[..end] };
        replace_file(&target, bytes, &mut written)?;
    }
    bar.finish_and_clear();
    sync_dir(dest)?;
    // Only now, with the new checkpoint and log in place: what the backup no longer names
    // (and the segments the ledger itself has removed since the earlier backup).
    let log_start = image.segments().first().map_or(1, |s| s.first_seq);
    let removed = remove_superseded(dest, checkpoint.as_ref(), log_start)?;
    sync_dir(dest)?;
    let view = verify_copy(dest, outcome.last_seq)?;
    debug_assert_eq!(view.last_seq(), outcome.last_seq);
    Ok(Backup {
        seq: outcome.last_seq,
        checkpoint_seq: checkpoint.as_ref().map(|(s, _)| *s),
        files: written.files,
        bytes: written.bytes,
        incremental_over: earlier,
        kept,
        removed,
    })
}

/// Removes from a backup the checkpoint files other than `checkpoint` and the runs it
/// does not name (an earlier backup's), the log segments before `log_start` (the
/// ledger's log now starts there: kept, they would leave a hole in the backup's log),
/// and leftovers of an interrupted backup.
fn remove_superseded(dest: &Path, checkpoint: Option<&(u64, Vec<u64>)>, log_start: u64) -> Result<u64, Failure> {
    let Some((seq, runs)) = checkpoint else { return Ok(0) };
    let mut removed = 0;
    let entries = fs::read_dir(dest).map_err(|e| Failure::usage(format!("{}: cannot list: {e}", dest.display())))?;
    let mut names: Vec<_> = entries.flatten().map(|e| (e.file_name(), e.path())).collect();
    names.sort(); // segments oldest first
    for (name, path) in names {
        let Some(name) = name.to_str() else { continue };
        let stale_run = parse_run_file_name(name).is_some_and(|id| !runs.contains(&id));
        let stale_checkpoint =
            name.starts_with("snapshot-") && name.ends_with(".snap") && !name.contains(&format!("{seq:020}"));
        let stale_segment = parse_segment_file_name(name).is_some_and(|first| first < log_start);
        if stale_run || stale_checkpoint || stale_segment || name.ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(|e| Failure::usage(format!("{}: cannot remove: {e}", path.display())))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// `restore BACKUP DIR [--to-seq N]`.
pub fn restore(backup: &Path, dir: &Path, to_seq: Option<u64>) -> Result<Status, Failure> {
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
