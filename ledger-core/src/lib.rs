//! `ledger-core`: the ledger engine over [`ledger_store`].
//!
//! Not built yet: this crate exists so the workspace has its final shape. The engine
//! (lock-free submission, single sequencer, idempotency, batches, balances, queries)
//! arrives with the ledger-core issue; see `ARCHITECTURE.md`.
