//! Shared helpers for the benches in `benches/benches/`.
//!
//! Run them with `cargo bench -p ledger-benches`; each bench file says what it measures.
