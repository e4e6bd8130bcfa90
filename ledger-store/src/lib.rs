//! `ledger-store`: a durable, memory-mapped, segmented append log.
//!
//! The log knows bytes, not money. It stores *frames*: a caller-defined `u16` kind and
//! a payload, each given a gapless sequence number and a BLAKE3 checksum, in
//! preallocated segment files mapped into memory. Appends are copies into the mapping;
//! [`Log::commit`] makes a whole group durable with one sync (group commit) and
//! publishes it to readers, who read frames zero-copy from the mapping without
//! blocking the writer. Payloads are 16-byte aligned, so rkyv archives can be accessed
//! in place.
//!
//! Opening a log recovers it: a torn tail (a write that a crash interrupted) is cut
//! back to the last whole frame and reported; damage to frames that had been made
//! durable is refused with an error that names the segment and offset. The on-disk
//! format is documented byte by byte in `FORMAT.md`.
//!
//! Every file-system call that can fail goes through a [`Storage`] seam
//! ([`Log::open_with`]): the operating system by default, a [`FaultInjector`] in tests,
//! such as [`fault::SimulatedDisk`], which also simulates power loss.
//!
//! ```
//! use ledger_store::{Durability, Log, LogOptions};
//!
//! # fn main() -> Result<(), ledger_store::Error> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let options = LogOptions::new().segment_bytes(1 << 20).durability(Durability::SyncData);
//! {
//!     let mut log = Log::open(dir.path(), options)?;
//!     log.append(1, b"first")?;
//!     log.append(1, b"second")?;
//!     assert_eq!(log.commit()?, 2); // one sync for the group
//! }
//! let log = Log::open(dir.path(), options)?; // recovery verifies every frame
//! let mut cursor = log.reader().cursor(1)?;
//! let frame = cursor.next().expect("a frame")?;
//! assert_eq!((frame.seq, frame.payload), (1, &b"first"[..]));
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

pub mod background;
pub mod bloom;
mod error;
pub mod fault;
pub mod inspect;
mod log;
mod options;
mod snapshot;
mod storage;
mod sync;
pub mod table;

pub use error::{
    AppendError, CommitError, Corruption, CorruptionKind, Error, HeaderFault, OpenError, ReadError, ReplicaError,
    RetentionError,
};
pub use log::reader::{Cursor, Frame, LogReader};
pub use log::writer::{Log, RecoveryReport, SnapshotWriter, TornTailReport};
pub use options::{
    Durability, LogOptions, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MULTIPLE,
};
pub use snapshot::{SNAPSHOTS_KEPT, Snapshot, SnapshotError, SnapshotInfo};
pub use storage::{FaultInjector, Storage, StorageOp};

/// The byte-level format, for tools, tests and fuzzing: frame and segment-header
/// codecs and the pure recovery scan. See `FORMAT.md`.
pub mod format {
    pub use crate::log::frame::{
        FLAG_GROUP_END, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, FrameFault, FrameHeader, PAYLOAD_BYTES_MAX, SEQ_MAX,
        frame_bytes,
    };
    pub use crate::log::recovery::{ScanOutcome, SegmentImage, TornTail, scan};
    pub use crate::log::segment::{
        FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SegmentHeader, parse_segment_file_name, segment_file_name,
    };
}
