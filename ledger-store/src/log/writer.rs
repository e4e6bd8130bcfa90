//! The writer: open with recovery, append, group commit, roll-over and retention.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{AppendError, CommitError, IoFailure, OpenError, RetentionError};
use crate::log::frame::{FLAG_GROUP_END, FRAME_HEADER_BYTES, FrameHeader, PAYLOAD_BYTES_MAX, frame_bytes};
use crate::log::reader::{LogReader, Shared};
use crate::log::recovery::{self, SegmentImage};
use crate::log::seal::{self, CHUNK_BYTES, Sealer};
use crate::log::segment::{self, RollFailure, SEGMENT_HEADER_BYTES, Segment, Spare};
use crate::log::stage::{STAGE_BYTES, Stage};
use crate::options::{Durability, LogOptions};
use crate::snapshot::{self, Snapshot, SnapshotError, SnapshotInfo};
use crate::storage::{Storage, StorageOp};

#[path = "deferred.rs"]
mod deferred;

use std::collections::VecDeque;

use deferred::FrameAt;

const LOCK_FILE_NAME: &str = "LOCK";

/// What recovery found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files kept.
    pub segments: usize,
    /// Verified frames kept.
    pub frames: u64,
    /// Sequence number of the first frame held.
    pub first_seq: u64,
    /// Sequence number of the last frame held (`first_seq - 1` when empty).
    pub last_seq: u64,
    /// The torn tail cut, if any.
    pub torn_tail: Option<TornTailReport>,
    /// Snapshots removed because they covered seqs beyond the recovered log.
    pub stale_snapshots_removed: usize,
}

/// A torn tail that recovery cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTailReport {
    /// The segment where the log now ends.
    pub segment: PathBuf,
    /// The offset where it now ends.
    pub offset: u64,
    /// Non-zero bytes dropped after that point (over every segment the tail spanned).
    pub bytes_dropped: u64,
    /// Frames that verified but were dropped: written, never made durable.
    pub frames_dropped: u64,
    /// Later segment files removed with the tail.
    pub segments_removed: usize,
}

fn remove_stale_snapshots(storage: &Storage, dir: &Path, last_seq: u64) -> Result<usize, OpenError> {
    Ok(snapshot::remove_beyond(storage, dir, last_seq)?)
}

impl Drop for Log {
    fn drop(&mut self) {
        // No thread outlives the log, and no spare file is left behind (open would
        // remove it anyway). Frames appended but not committed are simply abandoned:
        // they were never acknowledged.
        // The sealing thread is stopped (joined) before the stage it may be reading is
        // freed.
        self.sealer = None;
        if let Some(Ok(Ok(spare))) = self.spare.take().map(JoinHandle::join) {
            let path = spare.path().to_path_buf();
            drop(spare);
            let _ = self.storage.run(StorageOp::RemoveFile, &path, 0..0, || fs::remove_file(&path));
        }
    }
}

/// Writes snapshot files beside a log, from any thread; see [`Log::snapshot_writer`].
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    dir: PathBuf,
    storage: Storage,
}

impl SnapshotWriter {
    /// Writes a snapshot covering every frame up to `seq` atomically; keeps the newest
    /// two. The caller must only name a committed `seq`, and keep the log open while
    /// this runs.
    pub fn write(&self, seq: u64, payload: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
        snapshot::write(&self.storage, &self.dir, seq, payload)
    }

    /// The log's directory (tables the engine writes beside the log go here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage seam the log's file-system calls go through.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// A byte range of one segment written but not yet committed, or not yet synced.
#[derive(Debug)]
struct Dirty {
    segment: Arc<Segment>,
    from: usize,
    to: usize,
}

/// The single writer of a log directory.
///
/// Appends are staged in the writer's own buffer (see `stage.rs`); [`Log::commit`]
/// writes the group into its segment, makes it durable (per [`Durability`]) with one
/// sync, and publishes it to readers. The directory is locked for as long as the `Log`
/// lives.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    shared: Arc<Shared>,
    active: Arc<Segment>,
    /// End of the frames appended so far in `active`, committed or not.
    write_end: usize,
    next_seq: u64,
    committed_seq: u64,
    /// Every frame up to here is on stable storage; stamped into each new frame.
    synced_seq: u64,
    /// Appended, not yet committed.
    pending: Vec<Dirty>,
    /// Offset and header of the last frame appended since the last commit, in the
    /// active segment: the commit marks it as the group's end.
    last_frame: Option<(usize, FrameHeader)>,
    /// Frames of the active segment from here to `write_end` are appended but not yet
    /// sealed (checksummed) nor handed to the sealing thread.
    unsealed_from: usize,
    /// The thread that checksums appended frames beside the writer (see `seal.rs`);
    /// started with the first group large enough to need it.
    sealer: Option<Sealer>,
    /// No sealing thread could be started: the writer seals everything itself.
    seal_inline: bool,
    /// The frames of the active segment appended since they were last written into
    /// its file: `[stage.base(), write_end)`. Declared after `sealer`, and dropped after
    /// it (see `Drop`): the sealing thread may hold pointers into it.
    stage: Stage,
    /// Committed, not yet synced (only with `Durability::None`).
    unsynced: Vec<Dirty>,
    failed: bool,
    recovery: RecoveryReport,
    /// Where the file-system calls go (the operating system, or a test's injector).
    storage: Storage,
    /// The next segment's file, being zero-filled in the background so that a
    /// roll-over does not stall the writer for the whole file's write and sync.
    spare: Option<JoinHandle<Result<Spare, IoFailure>>>,
    /// `LogOptions::deferred_publish`: every frame held, oldest first, and where it
    /// lies (empty in the default mode).
    frames: VecDeque<FrameAt>,
    /// `LogOptions::deferred_publish`: readers are shown frames through here.
    published_seq: u64,
    _lock: File,
}

impl Log {
    /// Opens (creating when missing) the log in `dir`, recovering what a crash left:
    /// a torn tail is cut back to the last whole frame and reported in
    /// [`Log::recovery`]; damage beyond that is refused with [`OpenError::Corrupt`].
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log, OpenError> {
        Self::open_with(dir, options, Storage::os())
    }

    /// As [`Log::open`], with the file-system calls going through `storage` (tests
    /// inject faults there; see [`crate::fault`]).
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions, storage: Storage) -> Result<Log, OpenError> {
        options.validate().map_err(|reason| OpenError::InvalidOptions { reason })?;
        let dir = dir.as_ref().to_path_buf();
        if dir.as_os_str().is_empty() {
            // An empty path would resolve files such as LOCK against the current directory.
            return Err(OpenError::InvalidOptions { reason: "the log directory path is empty" });
        }
        let io = |op, path: &Path| {
            let at = IoFailure::at(op, path);
            move |source| OpenError::from(at(source))
        };
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => return Err(OpenError::NotADirectory { path: dir }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
            }
            Err(source) => return Err(OpenError::Io { op: "inspect", path: dir, source }),
        }
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(OpenError::Locked { path: dir }),
            Err(TryLockError::Error(source)) => return Err(OpenError::Io { op: "lock", path: lock_path, source }),
        }

        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io("list directory", &dir))? {
            let entry = entry.map_err(io("list directory", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(first_seq) = segment::parse_segment_file_name(name) {
                names.push(first_seq);
            } else if segment::is_unfinished_segment(name) {
                // A roll-over that crashed before its rename: never part of the log.
                let path = entry.path();
                storage
                    .run(StorageOp::RemoveFile, &path, 0..0, || fs::remove_file(&path))
                    .map_err(io("remove unfinished segment", &path))?;
            }
        }
        names.sort_unstable();

        if names.is_empty() {
            let seg = Arc::new(Segment::create(&storage, &dir, 1, options.segment_bytes)?);
            let stale_snapshots_removed = remove_stale_snapshots(&storage, &dir, 0)?;
            let report = RecoveryReport {
                segments: 1,
                frames: 0,
                first_seq: 1,
                last_seq: 0,
                torn_tail: None,
                stale_snapshots_removed,
            };
            return Ok(Self::assemble(dir, options, storage, lock, vec![seg], SEGMENT_HEADER_BYTES, 1, report));
        }

        let mut segments = Vec::with_capacity(names.len());
        let last = names.len() - 1;
        for (i, first_seq) in names.into_iter().enumerate() {
            segments.push(Segment::open(
                &storage,
                dir.join(segment::segment_file_name(first_seq)),
                first_seq,
                i == last,
            )?);
        }
        if let Some(cut) = deferred::pending_cut(&storage, &dir)? {
            // A replicated log's cut that a crash interrupted: finish it first.
            deferred::finish_cut(&storage, &dir, &mut segments, cut)?;
        }
        let outcome = {
            let images: Vec<SegmentImage<'_>> = segments
                .iter()
                .map(|s| SegmentImage {
                    path: &s.path,
                    first_seq: s.first_seq,
                    bytes: s.bytes_unpublished_for_recovery(),
                })
                .collect();
            recovery::scan(&images)?
        };

        let first_seq = segments[0].first_seq;
        let mut torn_report = None;
        if let Some(torn) = &outcome.torn {
            let seg = &segments[torn.segment];
            if torn.dirty_end > torn.offset {
                // The segment is not shared yet (no reader, no other writer), and the
                // range lies inside it (recovery computed it from its bytes).
                let zeroes = vec![0u8; torn.dirty_end - torn.offset];
                seg.write_at(&storage, torn.offset, &zeroes).map_err(io("cut torn tail", &seg.path))?;
                seg.sync_range(&storage, torn.offset, torn.dirty_end).map_err(io("sync cut tail", &seg.path))?;
            }
            let removed = segments.split_off(torn.segment + 1);
            for seg in &removed {
                storage
                    .run(StorageOp::RemoveFile, &seg.path, 0..0, || fs::remove_file(&seg.path))
                    .map_err(io("remove torn segment", &seg.path))?;
            }
            if !removed.is_empty() {
                segment::sync_dir(&storage, &dir)?;
            }
            torn_report = Some(TornTailReport {
                segment: segments[torn.segment].path.clone(),
                offset: torn.offset as u64,
                bytes_dropped: torn.bytes_dropped,
                frames_dropped: torn.frames_dropped,
                segments_removed: removed.len(),
            });
        }
        // Frames written before a crash with `Durability::None` may still be only in the
        // page cache; make what recovery kept durable before new frames claim it is.
        for (seg, &end) in segments.iter().zip(&outcome.ends) {
            seg.sync_range(&storage, SEGMENT_HEADER_BYTES, end).map_err(io("sync recovered segment", &seg.path))?;
            // A replicated log shows readers nothing until its owner publishes.
            seg.publish(if options.deferred_publish { SEGMENT_HEADER_BYTES } else { end });
        }
        let write_end = outcome.ends[segments.len() - 1];
        let report = RecoveryReport {
            segments: segments.len(),
            frames: outcome.frames,
            first_seq,
            last_seq: outcome.last_seq,
            torn_tail: torn_report,
            stale_snapshots_removed: remove_stale_snapshots(&storage, &dir, outcome.last_seq)?,
        };
        let segments: Vec<Arc<Segment>> = segments.into_iter().map(Arc::new).collect();
        let mut log = Self::assemble(dir, options, storage, lock, segments, write_end, outcome.last_seq + 1, report);
        if log.options.deferred_publish {
            let segments = log.shared.snapshot_segments();
            log.frames = deferred::index_frames(&segments, &outcome.ends);
        }
        Ok(log)
    }

    #[allow(clippy::too_many_arguments)] // one private constructor, called twice by open
    fn assemble(
        dir: PathBuf,
        options: LogOptions,
        storage: Storage,
        lock: File,
        segments: Vec<Arc<Segment>>,
        write_end: usize,
        next_seq: u64,
        recovery: RecoveryReport,
    ) -> Log {
        let active = Arc::clone(segments.last().expect("a log always has an active segment"));
        let first_seq = segments[0].first_seq;
        let published_seq = if options.deferred_publish { first_seq - 1 } else { next_seq - 1 };
        let shared = Arc::new(Shared::new(segments, published_seq));
        Log {
            dir,
            options,
            shared,
            active,
            write_end,
            next_seq,
            committed_seq: next_seq - 1,
            synced_seq: next_seq - 1,
            pending: Vec::new(),
            last_frame: None,
            unsealed_from: write_end,
            stage: Stage::new(STAGE_BYTES, write_end),
            sealer: None,
            seal_inline: false,
            unsynced: Vec::new(),
            failed: false,
            recovery,
            storage,
            spare: None,
            frames: VecDeque::new(),
            published_seq,
            _lock: lock,
        }
    }

    /// What recovery found when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// True once a sync (or a roll-over's directory sync) failed: the log then refuses
    /// every write until it is reopened.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// A handle for reading committed frames from other threads.
    pub fn reader(&self) -> LogReader {
        LogReader::new(Arc::clone(&self.shared))
    }

    /// Sequence number the next appended frame gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sequence number of the last committed frame (0 before any).
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Sequence number of the last frame known to be on stable storage.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// Largest payload a frame can carry in a segment of the configured size.
    pub fn payload_bytes_max(&self) -> usize {
        (self.options.segment_bytes - SEGMENT_HEADER_BYTES - FRAME_HEADER_BYTES).min(PAYLOAD_BYTES_MAX)
    }

    /// Appends one frame, returning its sequence number. It is neither durable nor
    /// visible to readers until [`Log::commit`].
    pub fn append(&mut self, kind: u16, payload: &[u8]) -> Result<u64, AppendError> {
        self.append_in_place(kind, payload.len(), |buf| buf.copy_from_slice(payload))
    }

    /// Appends one frame of `len` payload bytes that `fill` writes in place, in the
    /// writer's buffer (no intermediate copy). The buffer handed to `fill` is zeroed and
    /// 16-byte aligned.
    pub fn append_in_place(&mut self, kind: u16, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<u64, AppendError> {
        if self.failed {
            return Err(AppendError::Failed);
        }
        if kind == 0 {
            return Err(AppendError::ReservedKind);
        }
        let max = self.payload_bytes_max();
        if len > max {
            return Err(AppendError::TooLarge { len, max });
        }
        let size = frame_bytes(len);
        if self.write_end + size > self.active.capacity() {
            self.roll()?;
        }
        if self.spare.is_none() && self.write_end + size > self.active.capacity() / 2 {
            self.prepare_spare();
        }
        // `len <= payload_bytes_max() <= PAYLOAD_BYTES_MAX < u32::MAX`, checked above.
        let payload_len = u32::try_from(len).map_err(|_| AppendError::TooLarge { len, max })?;
        if !self.stage.has_room(size) {
            // Every frame staged so far is final (only the group's last frame is
            // rewritten at commit, and this one is about to follow it).
            self.write_out(size).map_err(|e| e.into_append(&self.active.path))?;
        }
        let at = self.write_end;
        if at - self.unsealed_from >= CHUNK_BYTES {
            // Every frame before this one is whole and final: let the sealing thread
            // checksum them.
            self.hand_over(at);
        }
        let seq = self.next_seq;
        // A replicated log's frames each end their own group: it may end after any one.
        let flags = if self.options.deferred_publish { FLAG_GROUP_END } else { 0 };
        let header = FrameHeader { seq, synced_seq: self.synced_seq, payload_len, kind, flags };
        let frame = self.stage.push_zeroed(size);
        let (head, payload) = frame.split_at_mut(FRAME_HEADER_BYTES);
        fill(&mut payload[..len]);
        // The checksum is filled in when the frame is sealed (see `seal.rs`).
        header.encode_unsealed(head.try_into().expect("a frame header's size"));
        self.write_end = at + size;
        self.next_seq += 1;
        self.last_frame = Some((at, header));
        match self.pending.last_mut() {
            Some(d) if Arc::ptr_eq(&d.segment, &self.active) => d.to = self.write_end,
            _ => self.pending.push(Dirty { segment: Arc::clone(&self.active), from: at, to: self.write_end }),
        }
        if self.options.deferred_publish {
            self.frames.push_back(FrameAt { seq, segment: Arc::clone(&self.active), start: at, end: self.write_end });
        }
        Ok(seq)
    }

    /// Hands the unsealed frames of the active segment below `to` to the sealing
    /// thread (started on first use), or seals them here when there is none.
    fn hand_over(&mut self, to: usize) {
        let from = std::mem::replace(&mut self.unsealed_from, to);
        if self.sealer.is_none() && !self.seal_inline {
            self.sealer = Sealer::start();
            self.seal_inline = self.sealer.is_none();
        }
        match &mut self.sealer {
            Some(sealer) => sealer.hand_over(&mut self.stage, from, to),
            None => seal::seal_here(&mut self.stage, from, to),
        }
    }

    /// Writes every staged frame into the active segment and empties the stage, making
    /// room for a frame of `room` bytes: seals what is not yet sealed, waits for the
    /// sealing thread, then one positional write. Nothing is published. On failure the
    /// log refuses writes: part of the frames may be in the file, never acknowledged.
    fn write_out(&mut self, room: usize) -> Result<(), Unwritten> {
        seal::seal_here(&mut self.stage, self.unsealed_from, self.write_end);
        self.unsealed_from = self.write_end;
        if let Some(sealer) = &mut self.sealer
            && !sealer.wait()
        {
            self.failed = true;
            return Err(Unwritten::SealingStopped);
        }
        let staged = self.stage.filled();
        if !staged.is_empty()
            && let Err(source) = self.active.write_at(&self.storage, self.stage.base(), staged)
        {
            self.failed = true;
            return Err(Unwritten::Io(source));
        }
        self.stage.reset(self.write_end, room);
        Ok(())
    }

    /// Starts zero-filling the next segment's file in the background.
    fn prepare_spare(&mut self) {
        let dir = self.dir.clone();
        let segment_bytes = self.options.segment_bytes;
        let tag = format!("spare-{:020}", self.next_seq);
        let storage = self.storage.clone();
        let prepare = move || {
            // Best effort: at worst the spare competes with the log on equal terms.
            let _ = crate::background::lower_priority();
            Spare::prepare(&storage, &dir, &tag, segment_bytes)
        };
        // If no thread can be started, the roll-over prepares the file itself.
        self.spare = std::thread::Builder::new().name("ledger-store-spare".into()).spawn(prepare).ok();
    }

    /// Starts a new segment at `next_seq`, from the spare prepared in the background
    /// when there is one. The old segment keeps its unused zero tail.
    ///
    /// A failure before the new segment is renamed into place (creating, filling or
    /// syncing its file, its header, the rename) changes nothing: the spare is removed,
    /// the append reports the error, and the next append tries again (so writing
    /// resumes once, say, disk space was freed). A failed directory sync after the
    /// rename leaves the new name's durability unknown and is never retried: the log
    /// refuses writes from then on, as after a failed data sync.
    fn roll(&mut self) -> Result<(), AppendError> {
        let spare = match self.spare.take().map(JoinHandle::join) {
            Some(Ok(Ok(spare))) if spare.segment_bytes() == self.options.segment_bytes => spare,
            // None prepared, or its preparation failed or panicked: prepare it now, so
            // that an error (disk full, ...) is reported by this append.
            _ => {
                Spare::prepare(&self.storage, &self.dir, &format!("{:020}", self.next_seq), self.options.segment_bytes)?
            }
        };
        // The old segment's last frames are followed by the one being appended: none is
        // the group's end, all are final. They go into the old segment's file now.
        self.write_out(0).map_err(|e| e.into_append(&self.active.path))?;
        let seg = match Segment::from_spare(&self.storage, &self.dir, spare, self.next_seq) {
            Ok(seg) => Arc::new(seg),
            Err(RollFailure { failure, dir_sync_failed }) => {
                self.failed |= dir_sync_failed;
                return Err(failure.into());
            }
        };
        self.shared.push_segment(Arc::clone(&seg));
        self.active = seg;
        self.write_end = SEGMENT_HEADER_BYTES;
        self.unsealed_from = SEGMENT_HEADER_BYTES;
        self.stage.reset(SEGMENT_HEADER_BYTES, 0);
        Ok(())
    }

    /// Commits every frame appended since the last commit as one group: they are
    /// sealed and written into their segment; with [`Durability::SyncData`] they are
    /// written back to stable storage with one sync per segment touched; then they are
    /// published to readers. Returns the sequence
    /// number of the last committed frame.
    ///
    /// On error the group's fate is unknown (it may or may not be present after a
    /// reopen), nothing of it is published, and the log refuses further writes.
    pub fn commit(&mut self) -> Result<u64, CommitError> {
        if self.failed {
            return Err(CommitError::Failed);
        }
        if self.pending.is_empty() {
            return Ok(self.committed_seq);
        }
        self.mark_group_end();
        // Part of the group may be unsealed or unwritten after a failure here; it was
        // never synced as committed.
        self.write_out(0).map_err(|e| e.into_commit(&self.active.path))?;
        if self.options.durability == Durability::SyncData {
            self.sync_ranges(true)?;
        }
        self.committed_seq = self.next_seq - 1;
        if !self.options.deferred_publish {
            for d in &self.pending {
                d.segment.publish(d.to);
            }
            self.shared.publish_seq(self.committed_seq);
        }
        if self.options.durability == Durability::SyncData {
            self.synced_seq = self.committed_seq;
            self.pending.clear();
        } else {
            for d in self.pending.drain(..) {
                match self.unsynced.last_mut() {
                    Some(u) if Arc::ptr_eq(&u.segment, &d.segment) => u.to = d.to,
                    _ => self.unsynced.push(d),
                }
            }
        }
        Ok(self.committed_seq)
    }

    /// Sets [`FLAG_GROUP_END`] on the group's last frame (always staged in the active
    /// segment, and never yet handed to the sealing thread; the commit seals it next):
    /// recovery keeps a group only when it finds this mark.
    fn mark_group_end(&mut self) {
        let Some((at, mut header)) = self.last_frame.take() else { return };
        debug_assert!(at >= self.unsealed_from, "the group's last frame is still the writer's");
        header.flags |= FLAG_GROUP_END;
        let head = self.stage.range_mut(at, at + FRAME_HEADER_BYTES);
        header.encode_unsealed(head.try_into().expect("a frame header's size"));
    }

    /// Commits what is pending and writes back every committed frame to stable
    /// storage, whatever the durability setting.
    pub fn sync(&mut self) -> Result<u64, CommitError> {
        self.commit()?;
        self.sync_ranges(false)?;
        self.unsynced.clear();
        self.synced_seq = self.committed_seq;
        Ok(self.committed_seq)
    }

    fn sync_ranges(&mut self, pending: bool) -> Result<(), CommitError> {
        let extra: &[Dirty] = if pending { &self.pending } else { &[] };
        let result = self.unsynced.iter().chain(extra).try_for_each(|d| {
            d.segment
                .sync_range(&self.storage, d.from, d.to)
                .map_err(|source| CommitError::Sync { path: d.segment.path.clone(), source })
        });
        if result.is_err() {
            // fsyncgate: after a failed sync the kernel may have dropped the dirty
            // pages, so a retry could "succeed" without the data. Never retry.
            self.failed = true;
        } else if pending {
            self.unsynced.clear();
        }
        result
    }

    /// Removes whole segments all of whose frames have sequence numbers below `seq`
    /// (retention after a snapshot). The active segment is never removed. Returns how
    /// many segment files were removed. Readers already reading a removed segment keep
    /// their view of it. Segments are removed oldest first; on a failure the ones not
    /// removed stay in the log (a later call removes them), so the log never has a hole.
    pub fn remove_segments_before(&mut self, seq: u64) -> Result<usize, RetentionError> {
        // A replicated log keeps what it has not published: it may still be cut.
        let seq = if self.options.deferred_publish { seq.min(self.published_seq + 1) } else { seq };
        let removed = self.shared.split_front_before(seq);
        for (i, seg) in removed.iter().enumerate() {
            let gone = self.storage.run(StorageOp::RemoveFile, &seg.path, 0..0, || fs::remove_file(&seg.path));
            if let Err(source) = gone {
                // The segments not removed stay in the log, oldest first: forgetting one
                // whose file is still there would let a later retention remove a newer
                // segment and leave a hole in the log on disk, which recovery refuses.
                self.shared.restore_front(removed[i..].to_vec());
                return Err(RetentionError::Io { op: "remove segment", path: seg.path.clone(), source });
            }
        }
        if let Some(first) = self.shared.snapshot_segments().first().map(|s| s.first_seq) {
            while self.frames.front().is_some_and(|f| f.seq < first) {
                self.frames.pop_front();
            }
        }
        if !removed.is_empty() {
            segment::sync_dir(&self.storage, &self.dir)?;
        }
        Ok(removed.len())
    }

    /// A handle that writes snapshots beside this log from another thread (the log's
    /// directory lock covers them).
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter { dir: self.dir.clone(), storage: self.storage.clone() }
    }

    /// Writes a snapshot payload covering every frame up to `seq` (at most the last
    /// committed one) atomically beside the log; keeps the newest two.
    pub fn write_snapshot(&self, seq: u64, payload: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
        assert!(seq <= self.committed_seq, "a snapshot covers committed frames only");
        snapshot::write(&self.storage, &self.dir, seq, payload)
    }

    /// The snapshot files beside the log, newest first (not yet verified).
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        Ok(snapshot::list(&self.storage, &self.dir)?)
    }

    /// Maps a snapshot and verifies its checksum; a damaged one is
    /// [`SnapshotError::Damaged`] and must not be used.
    pub fn read_snapshot(&self, info: &SnapshotInfo) -> Result<Snapshot, SnapshotError> {
        snapshot::read(info)
    }

    /// Sequence number of the first frame still held.
    pub fn first_seq(&self) -> u64 {
        self.shared.first_seq()
    }

    /// Commits and syncs what is pending, then releases the directory.
    pub fn close(mut self) -> Result<(), CommitError> {
        self.sync().map(|_| ())
    }
}

/// Why staged frames were not written into their segment.
#[derive(Debug)]
enum Unwritten {
    SealingStopped,
    Io(std::io::Error),
}

impl Unwritten {
    fn into_append(self, path: &Path) -> AppendError {
        match self {
            Unwritten::SealingStopped => AppendError::SealingStopped,
            Unwritten::Io(source) => AppendError::Write { path: path.to_path_buf(), source },
        }
    }

    fn into_commit(self, path: &Path) -> CommitError {
        match self {
            Unwritten::SealingStopped => CommitError::SealingStopped,
            Unwritten::Io(source) => CommitError::Write { path: path.to_path_buf(), source },
        }
    }
}
