//! `ledger verify DIR`: every log frame, checkpoint file and cold run file checked with
//! the engine's own verifiers, without the directory's lock.
//!
//! What counts as damage is what would make the engine refuse the directory or lose
//! committed data: a bad segment header, a frame that recovery proves was durable and
//! is now damaged or missing (a bad frame with good frames after it), a sequence gap, a
//! committed record that does not decode, a checkpoint file that fails its checksum or
//! does not decode or hang together, a checkpoint beyond the log's end (committed frames
//! lost from the end), a run file that fails its checksums, is cut short, holds another
//! number of entries than its checkpoint says, or is missing while a checkpoint names
//! it. A group still being written at the tail is not damage: the log is read up to its
//! last complete group, as recovery does, and what lies past it is reported as a note.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ledger_core::inspect::{
    CheckpointError, ViewError, decode_checkpoint, decode_record, parse_run_file_name, run_file_name, scan_log,
};
use ledger_store::format::{ScanOutcome, segment_file_name};
use ledger_store::inspect::{InspectError, LogImage, list_snapshots, read_snapshot};
use ledger_store::table::{Table, TableError};
use ledger_store::{CorruptionKind, SnapshotError, SnapshotInfo};

use crate::{Failure, Status, progress};

/// The report being printed (unless quiet), and the damage found so far.
#[derive(Debug, Default)]
pub(crate) struct Report {
    quiet: bool,
    /// The damage lines, in the order found.
    pub(crate) damage: Vec<String>,
}

impl Report {
    fn ok(&self, line: impl Display) {
        if !self.quiet {
            println!("ok      {line}");
        }
    }

    fn note(&self, line: impl Display) {
        if !self.quiet {
            println!("note    {line}");
        }
    }

    fn damage(&mut self, path: &Path, offset: Option<u64>, what: impl Display) {
        let line = match offset {
            Some(at) => format!("DAMAGE  {} at byte {at}: {what}", path.display()),
            None => format!("DAMAGE  {}: {what}", path.display()),
        };
        if !self.quiet {
            println!("{line}");
        }
        self.damage.push(line);
    }
}

/// What a run file was found to be (each is verified once, however many checkpoints
/// name it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum RunCheck {
    /// Verified; its entries.
    Good(u64),
    /// Not there (removed, or never there).
    Missing,
    /// Damaged; reported already.
    Damaged,
}

/// `verify DIR`: the report on stdout, exit 1 on damage.
pub fn run(dir: &Path) -> Result<Status, Failure> {
    println!("verifying {}", dir.display());
    let report = check(dir, false)?;
    if report.damage.is_empty() {
        println!("clean: no damage found");
        Ok(Status::Ok)
    } else {
        println!("damage found: {} problem(s)", report.damage.len());
        Ok(Status::Found)
    }
}

/// `verify DIR` without printing: every problem found (empty when clean). For
/// programs that must not take a damaged ledger directory, such as a replica about
/// to install a snapshot.
pub fn damage(dir: &Path) -> Result<Vec<String>, Failure> {
    Ok(check(dir, true)?.damage)
}

/// Checks every file of `dir`, printing the report unless `quiet`.
pub(crate) fn check(dir: &Path, quiet: bool) -> Result<Report, Failure> {
    let mut report = Report { quiet, damage: Vec::new() };
    // Listed before the log is read: every checkpoint covers a seq that was committed
    // before it was written, so the log read afterwards must reach it.
    let checkpoints = list_snapshots(dir).map_err(|e| Failure::usage(e.to_string()))?;
    let run_files = list_run_files(dir)?;
    let log = check_log(dir, &mut report)?;
    let last_seq = log.as_ref().map(|(_, outcome)| outcome.last_seq);
    let mut runs: BTreeMap<u64, RunCheck> = BTreeMap::new();
    let mut named: BTreeSet<u64> = BTreeSet::new();
    let mut covered_seqs = Vec::new();
    for info in &checkpoints {
        if let Some(seq) = check_checkpoint(dir, info, last_seq, &mut runs, &mut named, &mut report)? {
            covered_seqs.push(seq);
        }
    }
    if let Some((image, _)) = &log {
        let first = image.segments()[0].first_seq;
        if first > 1 && !covered_seqs.iter().any(|&seq| seq + 1 >= first) {
            report.damage(
                &image.segments()[0].path,
                None,
                format!(
                    "the log starts at seq {first} and no good checkpoint covers the seqs before it: \
                     segment files before {} are missing",
                    segment_file_name(first)
                ),
            );
        }
    }
    let unnamed: Vec<(u64, PathBuf)> = run_files.into_iter().filter(|(id, _)| !named.contains(id)).collect();
    let bar = progress::bar(unnamed.len() as u64, "runs", false);
    for (_, path) in unnamed {
        bar.inc(1);
        match check_run(&path, &mut report) {
            RunCheck::Good(entries) => report.ok(format!(
                "{}: {entries} entries (a run no checkpoint names yet: a merge's output, or left for the next open to remove)",
                path.display()
            )),
            RunCheck::Missing => report.note(format!("{}: removed while verifying (merged away)", path.display())),
            RunCheck::Damaged => {}
        }
    }
    bar.finish_and_clear();
    Ok(report)
}

/// The run files of `dir` by id.
fn list_run_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| Failure::usage(format!("{}: cannot list: {e}", dir.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure::usage(format!("{}: cannot list: {e}", dir.display())))?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_run_file_name) {
            out.push((id, entry.path()));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Scans the log (recovery's verdict) and decodes every committed record. `None` when
/// the log could not be scanned (damage already reported).
fn check_log(dir: &Path, report: &mut Report) -> Result<Option<(LogImage, ScanOutcome)>, Failure> {
    let (image, outcome) = match scan_log(dir) {
        Ok(found) => found,
        Err(ViewError::Log(InspectError::BadSegment { path, offset, fault, detail })) => {
            let detail = if detail.is_empty() { String::new() } else { format!(" ({detail})") };
            report.damage(&path, Some(offset), format!("bad segment: {fault}{detail}; frames were not checked"));
            return Ok(None);
        }
        Err(ViewError::CommittedLost(l)) => {
            report.damage(
                &l.segment,
                Some(l.offset),
                format!(
                    "frame {} is {}, but whole commit groups follow it (frame {} at {}:{}): it was committed, \
                     and the owner's next open would cut the log here",
                    l.seq,
                    l.fault,
                    l.proof_seq,
                    l.proof_segment.display(),
                    l.proof_offset
                ),
            );
            return Ok(None);
        }
        Err(ViewError::Corrupt(c)) => {
            let hint = missing_segment_hint(dir, &c);
            report.damage(&c.segment, Some(c.offset), format!("{}{hint}", c.kind));
            return Ok(None);
        }
        Err(e) => return Err(Failure::usage(e.to_string())),
    };
    let total: u64 = outcome.ends.iter().map(|&e| e as u64).sum();
    let bar = progress::bar(total, "log", true);
    let mut records = 0u64;
    let mut decoded_all = true;
    for frame in image.frames(&outcome, 1) {
        let frame = match frame {
            Ok(f) => f,
            Err((path, offset)) => {
                report.damage(&path, Some(offset), "a frame that verified moments ago no longer does");
                decoded_all = false;
                break;
            }
        };
        bar.inc(ledger_store::format::frame_bytes(frame.payload.len()) as u64);
        if let Err(e) = decode_record(frame.seq, frame.kind, frame.payload) {
            report.damage(frame.segment, Some(frame.offset), format!("record {} does not decode: {e}", frame.seq));
            decoded_all = false;
        }
        records += 1;
    }
    bar.finish_and_clear();
    let segments = image.segments();
    if decoded_all {
        report.ok(format!(
            "log: {} segment(s), frames {}..={} ({records} records), every frame and record verified",
            segments.len(),
            segments[0].first_seq,
            outcome.last_seq
        ));
    }
    if let Some(t) = &outcome.torn {
        let path = segments.get(t.segment).map_or_else(|| dir.to_path_buf(), |s| s.path.clone());
        report.note(format!(
            "{} at byte {}: {} byte(s) past the last complete group ({} whole frame(s) of an unfinished group): \
             a write in progress, or a torn tail the owner's next open cuts",
            path.display(),
            t.offset,
            t.bytes_dropped,
            t.frames_dropped
        ));
    }
    Ok(Some((image, outcome)))
}

/// When the log breaks at the end of a segment and the next segment does not continue
/// it, the segment holding the missing seqs is gone: say which file that was.
fn missing_segment_hint(dir: &Path, c: &ledger_store::Corruption) -> String {
    let CorruptionKind::DurableFrameDamaged { seq, .. } = &c.kind else { return String::new() };
    let Ok(names) = ledger_store::inspect::list_segments(dir) else { return String::new() };
    let at = names.iter().position(|(_, p)| *p == c.segment);
    let next = at.and_then(|i| names.get(i + 1));
    match next {
        Some((first, _)) if *first > *seq && segment_used_up_to(c) => format!(
            "; the segment holding frames {seq}..{first} is missing (expected file {})",
            dir.join(segment_file_name(*seq)).display()
        ),
        _ => String::new(),
    }
}

/// Whether the break is where a segment's frames end (zeroes, or no room for a frame).
fn segment_used_up_to(c: &ledger_store::Corruption) -> bool {
    matches!(
        c.kind,
        CorruptionKind::DurableFrameDamaged {
            fault: ledger_store::format::FrameFault::Zeroed | ledger_store::format::FrameFault::Truncated,
            ..
        }
    )
}

/// Where in a snapshot file each of its header checks looks (`FORMAT.md`: magic at 0,
/// version at 8, seq at 16, length at 24, BLAKE3 at 32 over bytes 0..32 and the payload).
fn snapshot_damage_offset(reason: &str) -> u64 {
    match reason {
        "unsupported snapshot version" => 8,
        "seq differs from the file name" => 16,
        "length differs from the header" => 24,
        "checksum mismatch" => 32,
        _ => 0,
    }
}

/// Checks one checkpoint file and the runs it names; the seq it covers when it is good.
fn check_checkpoint(
    dir: &Path,
    info: &SnapshotInfo,
    last_seq: Option<u64>,
    runs: &mut BTreeMap<u64, RunCheck>,
    named: &mut BTreeSet<u64>,
    report: &mut Report,
) -> Result<Option<u64>, Failure> {
    let snapshot = match read_snapshot(info) {
        Ok(s) => s,
        Err(SnapshotError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            report.note(format!("{}: removed while verifying (superseded by a newer checkpoint)", info.path.display()));
            return Ok(None);
        }
        Err(SnapshotError::Damaged { path, reason }) => {
            let what = if reason == "checksum mismatch" {
                "checksum mismatch: the BLAKE3 at bytes 32..64 does not match the header and the payload from byte 64"
            } else {
                reason
            };
            report.damage(&path, Some(snapshot_damage_offset(reason)), format!("checkpoint file: {what}"));
            return Ok(None);
        }
        Err(e) => return Err(Failure::usage(e.to_string())),
    };
    let contents = match decode_checkpoint(snapshot.payload(), snapshot.seq) {
        Ok(c) => c,
        Err(CheckpointError::OtherVersion) => {
            report.note(format!(
                "{}: a snapshot of another format version (an earlier release's); the engine skips it and \
                 replays the log instead",
                info.path.display()
            ));
            return Ok(None);
        }
        Err(e) => {
            report.damage(&info.path, Some(64), format!("checkpoint payload {e}"));
            return Ok(None);
        }
    };
    let mut good = true;
    if let Some(last) = last_seq
        && contents.seq > last
    {
        report.damage(
            &info.path,
            None,
            format!(
                "covers seq {} but the log ends at seq {last}: committed frames are missing from the log's end \
                 (a segment removed or cut short)",
                contents.seq
            ),
        );
        good = false;
    }
    for &(id, entries) in &contents.runs {
        named.insert(id);
        let path = dir.join(run_file_name(id));
        let check = match runs.get(&id) {
            Some(c) => c.clone(),
            None => {
                let c = check_run(&path, report);
                if let RunCheck::Good(n) = c {
                    report.ok(format!("{}: cold run, {n} entries, every byte verified", path.display()));
                }
                runs.insert(id, c.clone());
                c
            }
        };
        match check {
            RunCheck::Good(n) if n == entries => {}
            RunCheck::Good(n) => {
                report.damage(
                    &path,
                    Some(16),
                    format!("holds {n} entries, checkpoint {} says {entries}", info.path.display()),
                );
                good = false;
            }
            RunCheck::Missing if !info.path.exists() => {
                report.note(format!(
                    "{}: superseded while verifying; its run {} was removed with it",
                    info.path.display(),
                    path.display()
                ));
                return Ok(None);
            }
            RunCheck::Missing => {
                report.damage(&path, None, format!("missing, but checkpoint {} names it", info.path.display()));
                good = false;
            }
            RunCheck::Damaged => good = false,
        }
    }
    if good {
        report.ok(format!(
            "{}: checkpoint at seq {}, {} run(s), {} batches, {} balances; checksums, books and runs verified",
            info.path.display(),
            contents.seq,
            contents.runs.len(),
            contents.batches,
            contents.balances
        ));
        return Ok(Some(contents.seq));
    }
    report.note(format!(
        "{}: checkpoint at seq {} is unusable while the damage above stands; the engine falls back to an \
         older one, or to the whole log",
        info.path.display(),
        contents.seq
    ));
    Ok(None)
}

/// Verifies one run file, every byte (the table's own checks).
fn check_run(path: &Path, report: &mut Report) -> RunCheck {
    match Table::open(path) {
        Ok(table) => RunCheck::Good(table.len() as u64),
        Err(TableError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => RunCheck::Missing,
        Err(TableError::Damaged { path, offset, reason }) => {
            report.damage(&path, Some(offset), format!("cold run file: {reason}"));
            RunCheck::Damaged
        }
        Err(e) => {
            report.damage(path, None, format!("cold run file cannot be read: {e}"));
            RunCheck::Damaged
        }
    }
}
