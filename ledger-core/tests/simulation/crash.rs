//! Crashes at chosen points of a group, torn tails, and reopening.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ledger_core::sim::{Crash, SimLedger};
use ledger_store::format::{SEGMENT_HEADER_BYTES, SegmentImage, parse_segment_file_name, scan};

use crate::{Expect, PAGE_BYTES, Published, Sim};

impl Sim {
    pub(crate) fn crash(&mut self) -> Result<(), String> {
        let queued = self.queue.len();
        let requests = self.rng.range(1, queued.max(1) as u64) as usize;
        let at = match self.rng.below(3) {
            _ if queued == 0 => Crash::Idle,
            0 => Crash::Idle,
            1 => Crash::BeforeSync { requests_max: requests },
            _ => Crash::AfterSync { requests_max: requests },
        };
        // Where the acknowledged log ends: nothing at or before it may be damaged.
        let mark = acknowledged_end(self.dir.path(), self.model.last_seq)?;
        let before = self.model.clone();
        let mut after = self.model.clone();
        let in_flight = match at {
            Crash::Idle => 0,
            Crash::BeforeSync { requests_max } | Crash::AfterSync { requests_max } => requests_max.min(queued),
        };
        for published in self.queue.iter().take(in_flight) {
            if let Expect::Shutdown = Sim::judge(&mut after, published, self.now) {
                break;
            }
        }
        self.engine.take().expect("open").crash(at);
        // Nobody was answered: the queue and the group in flight were dropped.
        for published in self.queue.drain(..) {
            check!(!published.answered(), "a request was answered by a crashed engine ({at:?})");
        }
        let torn = self.tear(&mark)?;
        let residue = written_past(self.dir.path(), &mark)?;
        match at {
            Crash::Idle => self.stats.crashes_idle += 1,
            Crash::BeforeSync { .. } => self.stats.crashes_before_sync += 1,
            Crash::AfterSync { .. } => self.stats.crashes_after_sync += 1,
        }
        // An unsynced group is dropped whole; a synced one is kept whole unless its
        // bytes were torn (its last frame, with the group's end mark, is then gone).
        let kept = matches!(at, Crash::AfterSync { .. }) && !torn;
        let appended = after.last_seq > before.last_seq;
        let (before_seq, after_seq) = (before.last_seq, after.last_seq);
        self.model = if kept { after } else { before };
        if appended {
            if kept {
                self.stats.unacked_groups_kept += 1;
            } else {
                self.stats.unacked_groups_dropped += 1;
            }
        }
        self.trace.event(format!(
            "crash {at:?}, {in_flight} in flight (seq {}..={}), torn {torn}, group kept {kept}",
            before_seq + 1,
            after_seq
        ));
        self.reopen(false)?;
        self.model_synced();
        let report = self.engine().ledger().open_report().clone();
        // Bytes of a dropped group left on disk are a torn tail, cut and reported (a
        // tear that zeroed all of them leaves nothing to report).
        if residue && !kept {
            check!(report.log.torn_tail.is_some(), "an unacknowledged group was dropped without a torn-tail report");
        }
        self.check_state()
    }

    /// A power loss with `Durability::None`: acknowledged groups were never synced, so
    /// any page written since the last sync may be lost (zeroed), in any order. The
    /// log must come back at a group's end, at or after the synced point, holding
    /// exactly what the model held then.
    pub(crate) fn power_loss(&mut self) -> Result<(), String> {
        self.engine.take().expect("open").crash(Crash::Idle);
        for published in self.queue.drain(..) {
            check!(!published.answered(), "a request was answered by a crashed engine (power loss)");
        }
        let (synced_seq, mark) = self.synced.clone();
        let segments = segments(self.dir.path())?;
        let start = match &mark {
            Some((path, _)) => segments.iter().position(|s| s == path).ok_or("the synced segment is gone")?,
            None => 0,
        };
        let mut lost = 0u64;
        for (i, path) in segments.iter().enumerate().skip(start) {
            let lower = match &mark {
                Some((_, end)) if i == start => *end,
                _ => SEGMENT_HEADER_BYTES,
            };
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            let upper = dirty_end(&bytes);
            if upper <= lower {
                continue;
            }
            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| e.to_string())?;
            for page in lower / PAGE_BYTES..=(upper - 1) / PAGE_BYTES {
                if !self.rng.percent(25) {
                    continue;
                }
                let (from, to) = ((page * PAGE_BYTES).max(lower), ((page + 1) * PAGE_BYTES).min(upper));
                lost += u64::from(bytes[from..to].iter().any(|&b| b != 0));
                file.write_all_at(&vec![0; to - from], from as u64).map_err(|e| e.to_string())?;
            }
        }
        self.stats.power_losses += 1;
        self.stats.pages_lost += lost;
        self.trace.event(format!("power loss: {lost} pages lost past seq {synced_seq}"));
        self.reopen(true)?;
        let end = self.engine().ledger().last_seq();
        check!(end >= synced_seq, "synced records lost: the log ends at seq {end}, synced to {synced_seq}");
        if lost == 0 {
            check_eq!(end, self.model.last_seq, "log end when no page was lost");
        }
        let model = self.unsynced.get(&end).cloned().ok_or_else(|| {
            format!("the log ends at seq {end}, inside a group (ends: {:?})", self.unsynced.keys().collect::<Vec<_>>())
        })?;
        self.stats.acked_records_lost += self.model.last_seq - end;
        self.model = model;
        self.model_synced();
        self.check_state()
    }

    /// Damages the unsynced tail of the last segment past `mark` (the last segment and
    /// where its acknowledged frames end): zeroes it from a seeded offset, sometimes
    /// with a few garbage bytes there, as a crash during writeback leaves it. Returns
    /// whether any byte changed.
    pub(crate) fn tear(&mut self, mark: &(PathBuf, usize)) -> Result<bool, String> {
        let (last, _) = last_segment(self.dir.path())?;
        let mut bytes = std::fs::read(&last).map_err(|e| e.to_string())?;
        let lower = if last == mark.0 { mark.1 } else { SEGMENT_HEADER_BYTES };
        let upper = dirty_end(&bytes);
        if upper <= lower || self.rng.percent(30) {
            return Ok(false);
        }
        let offset = self.rng.range(lower as u64, upper as u64 - 1) as usize;
        let original = bytes[offset..upper].to_vec();
        bytes[offset..upper].fill(0);
        if self.rng.percent(30) {
            let len = self.rng.range(1, (upper - offset).min(64) as u64) as usize;
            for b in &mut bytes[offset..offset + len] {
                *b = self.rng.next() as u8;
            }
            self.stats.garbage_writes += 1;
        }
        let file = std::fs::OpenOptions::new().write(true).open(&last).map_err(|e| e.to_string())?;
        file.write_all_at(&bytes[offset..upper], offset as u64).map_err(|e| e.to_string())?;
        let changed = original != bytes[offset..upper];
        self.stats.tears += u64::from(changed);
        self.trace.event(format!("tear at {offset} of {lower}..{upper}, changed {changed}"));
        Ok(changed)
    }

    /// Opens the engine again. Only after a power loss may a snapshot cover records
    /// the log lost (`stale_ok`); otherwise snapshots cover acknowledged groups only.
    pub(crate) fn reopen(&mut self, stale_ok: bool) -> Result<(), String> {
        let engine =
            SimLedger::open(self.dir.path(), self.setup.options, self.now).map_err(|e| format!("reopen: {e}"))?;
        let report = engine.ledger().open_report().clone();
        check!(report.snapshot_warnings.is_empty(), "snapshots skipped: {:?}", report.snapshot_warnings);
        if !stale_ok {
            check_eq!(report.log.stale_snapshots_removed, 0, "no snapshot ever covers an unacknowledged group");
        }
        self.stats.stale_snapshots_removed += report.log.stale_snapshots_removed as u64;
        if let Some(torn) = &report.log.torn_tail {
            self.stats.torn_tails_reported += 1;
            self.stats.frames_dropped += torn.frames_dropped;
        }
        self.stats.snapshot_loads += u64::from(report.snapshot_seq.is_some());
        self.stats.segments_max = self.stats.segments_max.max(report.log.segments);
        let torn =
            report.log.torn_tail.as_ref().map(|t| (t.offset, t.bytes_dropped, t.frames_dropped, t.segments_removed));
        self.trace.event(format!(
            "reopened: snapshot {:?}, replayed {} txs {} closes, {} frames to seq {}, torn {torn:?}",
            report.snapshot_seq, report.transactions, report.batch_closes, report.log.frames, report.log.last_seq
        ));
        // Opening syncs what recovery kept: no power loss goes back past it any more.
        let end = engine.ledger().last_seq();
        self.synced = (end, Some(acknowledged_end(self.dir.path(), end)?));
        self.engine = Some(engine);
        Ok(())
    }

    /// The model as it stands is durable (just after a reopen).
    fn model_synced(&mut self) {
        self.unsynced = BTreeMap::from([(self.model.last_seq, self.model.clone())]);
    }

    /// Closes cleanly, checks the log's frames, reopens. Either as `Ledger::close`
    /// does, with a shutdown request behind what is queued (and sometimes more
    /// requests behind it, which are refused), or by committing the queue and then
    /// closing.
    pub(crate) fn reopen_clean(&mut self) -> Result<(), String> {
        if self.rng.percent(50) {
            let reply = self.engine().publish_shutdown().map_err(|e| e.to_string())?;
            self.queue.push_back(Published::Shutdown { reply });
            if self.rng.percent(50) {
                self.publish()?;
            }
            while !self.engine().is_stopped() {
                let n = self.group_size();
                self.step(n)?;
            }
            self.stats.shutdowns += 1;
        }
        while !self.queue.is_empty() {
            self.step(usize::MAX)?;
        }
        self.engine.take().expect("open").close().map_err(|e| format!("close: {e}"))?;
        for published in std::mem::take(&mut self.refused) {
            self.stats.refused_after_shutdown += 1;
            check!(!published.answered(), "a request queued after a shutdown was answered");
        }
        self.check_log()?;
        self.stats.clean_reopens += 1;
        self.reopen(false)?;
        self.model_synced();
        check!(self.engine().ledger().open_report().log.torn_tail.is_none(), "a clean close left a torn tail");
        self.check_state()
    }
}

/// The log's segment files, oldest first.
pub(crate) fn segments(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| parse_segment_file_name(&e.file_name().to_string_lossy()).map(|seq| (seq, e.path())))
        .collect();
    segments.sort();
    Ok(segments.into_iter().map(|(_, path)| path).collect())
}

/// The log's last segment file and the end of its non-zero bytes.
pub(crate) fn last_segment(dir: &Path) -> Result<(PathBuf, usize), String> {
    let path = segments(dir)?.pop().ok_or("no segment file")?;
    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
    Ok((path, dirty_end(&bytes)))
}

/// Where the log's frames end now (the last segment and the end offset in it), found
/// by the store's own recovery scan; the log must hold exactly `last_seq` frames.
pub(crate) fn acknowledged_end(dir: &Path, last_seq: u64) -> Result<(PathBuf, usize), String> {
    let paths = segments(dir)?;
    let files: Vec<(u64, Vec<u8>)> = paths
        .iter()
        .map(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((parse_segment_file_name(&name).ok_or("segment name")?, std::fs::read(p).map_err(|e| e.to_string())?))
        })
        .collect::<Result<_, String>>()?;
    let images: Vec<SegmentImage<'_>> = paths
        .iter()
        .zip(&files)
        .map(|(path, (first_seq, bytes))| SegmentImage { path, first_seq: *first_seq, bytes })
        .collect();
    let outcome = scan(&images).map_err(|e| format!("scan before the crash: {e}"))?;
    check!(outcome.torn.is_none(), "a torn tail before the crash: {:?}", outcome.torn);
    check_eq!(outcome.last_seq, last_seq, "frames on disk before the crash");
    check_eq!(outcome.ends.len(), paths.len(), "segments holding frames");
    let end = *outcome.ends.last().ok_or("no segment")?;
    Ok((paths.last().ok_or("no segment")?.clone(), end))
}

/// Whether any frame byte is on disk past `mark` (a segment and an end in it).
pub(crate) fn written_past(dir: &Path, mark: &(PathBuf, usize)) -> Result<bool, String> {
    let segments = segments(dir)?;
    let at = segments.iter().position(|p| *p == mark.0).ok_or("the marked segment is gone")?;
    for (i, path) in segments.iter().enumerate().skip(at) {
        let end = dirty_end(&std::fs::read(path).map_err(|e| e.to_string())?);
        if end > if i == at { mark.1 } else { SEGMENT_HEADER_BYTES } {
            return Ok(true);
        }
    }
    Ok(false)
}

/// End of the last non-zero byte (never inside the segment header).
pub(crate) fn dirty_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1).max(SEGMENT_HEADER_BYTES)
}
