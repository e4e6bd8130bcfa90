//! Errors of the engine, one enum per operation.

use crate::codec::DecodeError;

/// Why [`Ledger::open`](crate::Ledger::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The log could not be opened: locked, I/O, or corruption (see the source).
    #[error(transparent)]
    Store(#[from] ledger_store::OpenError),
    /// A record in the log does not decode.
    #[error("log record {seq} does not decode: {source}")]
    Decode {
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        #[source]
        source: DecodeError,
    },
    /// Replaying a record did not reproduce what was committed: the log was written by
    /// an incompatible version, or damaged in a way its checksums cannot see.
    #[error("log record {seq} does not replay: {detail}")]
    Replay {
        /// The record's seq.
        seq: u64,
        /// What differed.
        detail: String,
    },
    /// The sequencer thread could not be started.
    #[error("starting the sequencer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A replacement of the directory's content ([`crate::Ledger::replace`]) that a
    /// crash interrupted could not be finished.
    #[error("finishing an interrupted replacement of the ledger directory: {0}")]
    Replace(#[source] std::io::Error),
    /// A run of the cold tier failed its checksum when replay read it (runs are
    /// verified chunk by chunk as they are first read): what replay read from it cannot
    /// be trusted, so the ledger does not open.
    #[error("a cold-tier run is damaged: {0} (`ledger verify` checks the whole directory)")]
    DamagedRun(String),
}

/// Why a submission failed as a whole. A rejected transaction is not an error: it is a
/// [`TxOutcome::Rejected`](crate::TxOutcome::Rejected) in the results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The ledger was closed.
    #[error("the ledger is closed")]
    Closed,
    /// Writing or syncing the log failed. Whether this call's transactions reached
    /// stable storage is unknown: none was acknowledged; after a reopen each is either
    /// there whole or absent, and resubmitting the same ids is safe (idempotent). The
    /// ledger refuses further writes until it is reopened.
    #[error("the log failed; the outcome of this call is unknown: {0}")]
    Failed(String),
    /// This node of a replicated ledger is not its leader: send the request to the
    /// leader. Nothing changed.
    #[error("this node is not the leader of the replicated ledger")]
    NotLeader,
}

/// Why closing a batch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseBatchError {
    /// The account has no open batch, or it holds no transaction.
    #[error("the open batch holds no transaction")]
    Empty,
    /// As for [`SubmitError`].
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Why a snapshot was not written. The log still holds everything: nothing is lost,
/// only the next open replays more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Writing the snapshot file failed.
    #[error("writing the snapshot failed: {0}")]
    Write(String),
    /// As for [`SubmitError`].
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Why [`Ledger::apply_replicated`](crate::Ledger::apply_replicated) did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicateError {
    /// The records do not start at the ledger's next seq (a gap, or records already
    /// applied): nothing changed.
    #[error("the records start at seq {first}, the ledger's next is {expected}")]
    NotNext {
        /// The ledger's next seq.
        expected: u64,
        /// The first record's seq.
        first: u64,
    },
    /// A record does not decode, or the seqs are not consecutive: nothing changed.
    #[error("record {seq} is malformed: {detail}")]
    Malformed {
        /// Its seq.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// The ledger closes batches by itself (a cut-over policy is set), so its records
    /// could not follow another ledger's: nothing changed.
    #[error("this ledger runs its own batch cut-over; a replica must not")]
    OwnCutover,
    /// Judging a record here did not reproduce what the leader committed: this ledger's
    /// state differs from the leader's. The ledger refuses writes from now on.
    #[error("record {seq} does not reproduce the leader's commit: {detail}")]
    Diverged {
        /// Its seq.
        seq: u64,
        /// What differed.
        detail: String,
    },
    /// As for [`SubmitError`].
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Why [`crate::Ledger::replace`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The ledger was closed.
    #[error("the ledger is closed")]
    Closed,
    /// The new content could not be written: nothing changed.
    #[error("writing the new content: {0}")]
    Fill(String),
    /// The old engine did not stop cleanly: nothing changed on disk.
    #[error("stopping the ledger: {0}")]
    Close(#[source] SubmitError),
    /// A file-system step failed (named); the next open finishes or undoes it.
    #[error("{0}")]
    Io(String),
    /// The new content is in place but did not open: every call fails until the
    /// process opens the directory again.
    #[error("opening the new content: {0}")]
    Open(#[source] OpenError),
}
