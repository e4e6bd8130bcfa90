//! `ledger-core`: the ledger engine over [`ledger_store`].
//!
//! Many threads submit transactions through a lock-free bounded queue; one sequencer
//! thread judges them in order (idempotency by caller-chosen 128-bit ids, refund and
//! capture rules, exact integer money with overflow as a rejection), appends the
//! accepted ones to the log, makes each group durable with one sync, and only then
//! applies it to the state readers see and completes the callers. Opening a ledger
//! replays its log through the same judging code.
//!
//! ```
//! use ledger_core::{Currency, Ledger, LedgerOptions, Tx, TxId, TxOutcome, TxState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let usd = Currency::from_code("USD").expect("USD is known");
//! let ledger = Ledger::open(dir.path(), LedgerOptions::default())?;
//! let sale = Tx::sale(TxId(1), 7, 10_00, usd);
//! let refund = Tx::refund(TxId(2), TxId(1), 7, 2_50, usd);
//! let outcomes = ledger.submit(&[sale, refund])?; // durable when this returns
//! assert!(matches!(outcomes[1], TxOutcome::Committed(_)));
//! assert_eq!(ledger.lookup(TxId(1)).map(|r| r.state), Some(TxState::PartiallyRefunded));
//! assert_eq!(ledger.submit(&[sale])?[0].code(), 1); // the same id again: Exists, nothing changed
//! let batch = ledger.close_batch(7, usd)?;
//! assert_eq!((batch.payment_total, batch.refund_total, batch.net), (10_00, 2_50, 7_50));
//! ledger.close()?;
//!
//! let ledger = Ledger::open(dir.path(), LedgerOptions::default())?; // replays the log
//! assert_eq!(ledger.balance(7, usd).map(|b| b.settled_net), Some(7_50));
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]

mod checkpoint;
mod codec;
mod cold;
mod completion;
mod consistency;
mod currency;
mod error;
mod feed;
pub mod inspect;
mod ledger;
mod model;
pub mod money;
mod records;
mod sequencer;
// Deterministic simulation hooks for this crate's tests; not a stable API.
#[doc(hidden)]
pub mod sim;
mod state;

pub use checkpoint::{CheckpointStats, CommitStats, SYNC_BUCKET_BOUNDS};
pub use codec::DecodeError;
pub use currency::Currency;
pub use error::{CloseBatchError, OpenError, ReplaceError, ReplicateError, SnapshotError, SubmitError};
pub use feed::{Feed, FeedError, FeedRecord, RawRecord};
pub use ledger::{
    HOT_BYTES_MAX_DEFAULT, HistoryQuery, Ledger, LedgerOptions, OpenReport, QUEUE_REQUESTS_MAX,
    SNAPSHOT_EVERY_RECORDS_DEFAULT, SubmitFuture, TierStats,
};
pub use ledger_store::{Durability, FaultInjector, Storage, StorageOp, fault};
pub use model::{Balance, BatchSummary, Kind, Reject, Tx, TxId, TxOutcome, TxRecord, TxState};
pub use sequencer::{AGE_CHECK_INTERVAL_MAX, Confirmation, CutoverPolicy, ProposalFailed, Proposer};
