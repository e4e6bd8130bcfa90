//! Typed errors, one enum per operation, each convertible into the umbrella [`Error`].

use std::path::PathBuf;

use crate::log::frame::FrameFault;

/// Why [`Log::open`](crate::Log::open) failed. Nothing on disk was changed unless the
/// variant says so.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The options are out of range; `reason` says which and why.
    #[error("invalid log options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// The path exists and is not a directory.
    #[error("{path}: not a directory")]
    NotADirectory {
        /// The path given to `open`.
        path: PathBuf,
    },
    /// Another `Log`, in this process or another, holds the directory.
    #[error("{path}: the log directory is locked by another open log")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// An operating-system call failed (permission denied, disk full, ...).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A segment file's header is not one this log wrote: a foreign file, another
    /// format version, or a damaged header.
    #[error("{path}: bad segment header: {fault}")]
    BadSegmentHeader {
        /// The segment file.
        path: PathBuf,
        /// What is wrong with it.
        fault: HeaderFault,
    },
    /// Damage beyond a torn tail: the log refuses to open rather than skip data.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// What is wrong with a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// The file is shorter than a segment header.
    #[error("file shorter than a segment header")]
    TooShort,
    /// The file does not start with the segment magic: it is not a segment.
    #[error("foreign file (no segment magic)")]
    ForeignMagic,
    /// Written by a format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u32),
    /// The header checksum does not match.
    #[error("header checksum mismatch")]
    ChecksumMismatch,
    /// A header field is out of range.
    #[error("header field out of range")]
    BadField,
    /// The header's first sequence number or size disagrees with the file's name or length.
    #[error("header disagrees with the file name or length")]
    NameOrSizeMismatch,
}

/// Damage that recovery will not repair, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{segment}: corruption at offset {offset}: {kind}")]
pub struct Corruption {
    /// The segment file holding the damaged frame.
    pub segment: PathBuf,
    /// Byte offset of the damaged frame in that file.
    pub offset: u64,
    /// What was found.
    pub kind: CorruptionKind,
}

/// The kinds of corruption recovery refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// Frame `seq` is damaged or missing, and a later frame proves it had been made
    /// durable (the later frame was written after a sync that covered `seq`).
    #[error(
        "frame {seq} is {fault} but had been made durable (frame {proof_seq} at {proof_segment}:{proof_offset} was written after it was synced)"
    )]
    DurableFrameDamaged {
        /// The sequence number expected at the damaged place.
        seq: u64,
        /// What is wrong with the bytes there.
        fault: FrameFault,
        /// The later frame whose `synced_seq` covers `seq`.
        proof_seq: u64,
        /// Where that frame is.
        proof_segment: PathBuf,
        /// Its offset.
        proof_offset: u64,
    },
    /// A verified frame carries another sequence number than the one expected there.
    #[error("sequence gap: expected frame {expected}, found frame {found}")]
    SequenceGap {
        /// The next sequence number.
        expected: u64,
        /// The one found.
        found: u64,
    },
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameFault::Truncated => "truncated",
            FrameFault::Zeroed => "missing (zeroed)",
            FrameFault::BadHeader => "a frame with a bad header",
            FrameFault::ChecksumMismatch => "a frame whose checksum does not match",
            FrameFault::IncompleteGroup => "a commit group without its end mark",
        })
    }
}

/// Why [`Log::append`](crate::Log::append) failed. The log is unchanged, except after
/// [`AppendError::Write`] and [`AppendError::SealingStopped`]: then the group being
/// appended is lost (never acknowledged) and the log refuses writes until reopened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The payload does not fit in one segment.
    #[error("payload of {len} bytes exceeds the largest that fits a segment ({max} bytes)")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Kind 0 is reserved for the end-of-log marker.
    #[error("frame kind 0 is reserved")]
    ReservedKind,
    /// Rolling over to a new segment failed (disk full, permission, ...).
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier sync failed; the log refuses writes until it is reopened.
    #[error("the log failed earlier and refuses writes until reopened")]
    Failed,
    /// Writing appended frames into their segment file failed (the writer's buffer was
    /// full, or the segment rolled over).
    #[error("write frames {path}: {source}")]
    Write {
        /// The segment being written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The thread that checksums frames stopped (it panicked) before frames about to be
    /// written out were sealed.
    #[error("the frame sealing thread stopped before the frames were sealed")]
    SealingStopped,
}

/// Why [`Log::commit`](crate::Log::commit) or [`Log::sync`](crate::Log::sync) failed.
///
/// After this error it is unknown whether the frames of the group reached stable
/// storage: they were not acknowledged, they may or may not be there after a reopen,
/// and the log refuses further writes until it is reopened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Writing the group's frames into their segment file failed.
    #[error("write frames {path}: {source}")]
    Write {
        /// The segment being written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The data sync failed.
    #[error("sync {path}: {source}")]
    Sync {
        /// The segment being synced.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An earlier sync failed; the log refuses writes until it is reopened.
    #[error("the log failed earlier and refuses writes until reopened")]
    Failed,
    /// The thread that checksums frames stopped before sealing the whole group (it
    /// panicked): the group is not committed and the log refuses writes.
    #[error("the frame sealing thread stopped before the group was sealed")]
    SealingStopped,
}

/// Why [`Log::publish_through`](crate::Log::publish_through) or
/// [`Log::truncate_from`](crate::Log::truncate_from) refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The log was not opened with `LogOptions::deferred_publish`.
    #[error("the log publishes at each commit; open it with deferred publishing")]
    NotDeferred,
    /// `seq` is not a durable frame's (publish) or lies at or below what readers were
    /// shown, or beyond the next frame (truncate).
    #[error("seq {seq} is out of range: published through {published}, durable through {durable}")]
    OutOfRange {
        /// The seq asked for.
        seq: u64,
        /// Published through here.
        published: u64,
        /// Durable through here.
        durable: u64,
    },
    /// Committing what was pending before the cut failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// A file-system call failed; the log refuses writes until reopened, and the
    /// reopen finishes the cut (its marker file is durable) or finds none begun.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The frames asked for were removed by retention.
    #[error("frame {requested} was removed; the log now starts at {first}")]
    Removed {
        /// The sequence number asked for.
        requested: u64,
        /// The first one still held.
        first: u64,
    },
    /// Published bytes no longer decode: the file was changed behind the log's back.
    #[error("{segment}: frame at offset {offset} changed after it was verified")]
    Damaged {
        /// The segment file.
        segment: PathBuf,
        /// The frame's offset.
        offset: u64,
    },
}

/// Why removing old segments failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// Removing a segment file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// An operating-system call that failed, with what was being done and to what. Each
/// operation's error has an `Io` variant it converts into.
#[derive(Debug)]
pub(crate) struct IoFailure {
    pub(crate) op: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) source: std::io::Error,
}

impl IoFailure {
    /// A closure for `map_err` that records `op` on `path`.
    pub(crate) fn at(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> IoFailure + use<> {
        let path = path.to_path_buf();
        move |source| IoFailure { op, path, source }
    }
}

macro_rules! from_io_failure {
    ($($error:ident),*) => {$(
        impl From<IoFailure> for $error {
            fn from(IoFailure { op, path, source }: IoFailure) -> Self {
                $error::Io { op, path, source }
            }
        }
    )*};
}
from_io_failure!(OpenError, AppendError, RetentionError, ReplicaError);

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`OpenError`].
    #[error(transparent)]
    Open(#[from] OpenError),
    /// See [`AppendError`].
    #[error(transparent)]
    Append(#[from] AppendError),
    /// See [`CommitError`].
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// See [`ReadError`].
    #[error(transparent)]
    Read(#[from] ReadError),
    /// See [`RetentionError`].
    #[error(transparent)]
    Retention(#[from] RetentionError),
    /// See [`ReplicaError`].
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}
