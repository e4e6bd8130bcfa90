//! Fuzzing support: each fuzz target's input decoding and oracle live in a module
//! named after the target, shared by `fuzz_targets/<target>.rs` (one call) and the
//! stable replay of seeds and regressions in `tests/replay.rs`.
//!
//! | target | what it feeds | what it is checked against |
//! |--------|---------------|----------------------------|
//! | [`segment_recovery`](mod@segment_recovery) | segment images to ledger-store's recovery scan | an independent frame/segment decoder |
//! | [`record_decoder`](mod@record_decoder) | logs of real, forged and damaged engine records (and snapshots) to `Ledger::open` | the reference model replaying the same records; recomputed invariants |
//! | [`ffi_submit`](mod@ffi_submit) | `ledger_tx` arrays, counts and null/non-null pointers to the C ABI | a second engine through the Rust API, and the reference model |
//! | [`portal_request`](mod@portal_request) | HTTP requests to the portal's router, in process | response invariants: no 5xx, JSON error bodies, no money moved by a 4xx, no other client's data |
//! | [`money_parse`](mod@money_parse) | decimal strings to `parse_minor`/`format_minor` | an exact integer reference |
//! | [`cold_files`](mod@cold_files) | bytes as cold-tier tables (raw, or valid with a byte changed) and checkpoint payloads | tables open only intact, then find every key; decoders never panic |
//!
//! Shared pieces: [`model`] (the reference ledger), [`records`] (the engine's record
//! format re-implemented), [`check`] (state comparison and invariants over an open
//! engine), [`pick`] (choosing transactions from input bytes), [`input`], [`known_bugs`]
//! (reported bugs of the code under test that fuzzing steps around until they are fixed).

pub mod check;
pub mod cold_files;
pub mod ffi_submit;
pub mod input;
pub mod known_bugs;
pub mod model;
pub mod money_parse;
pub mod pick;
pub mod portal_request;
pub mod record_decoder;
pub mod records;
pub mod segment_recovery;

pub use segment_recovery::*;

/// One fuzz target: its name (the file `fuzz_targets/<name>.rs`), the function that
/// is the whole of it, and its seed inputs.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input; panics on a broken invariant.
    pub run: fn(&[u8]),
    /// Its seed inputs, by file name.
    pub seeds: fn() -> Vec<(&'static str, Vec<u8>)>,
    /// Whether `seeds/<name>/` must equal `seeds()` byte for byte (false where seeds
    /// depend on something that changes with the code, such as the route table's order).
    pub seeds_pinned: bool,
}

/// Every fuzz target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "segment_recovery",
        run: segment_recovery::segment_recovery,
        seeds: segment_recovery::seed_inputs,
        seeds_pinned: true,
    },
    Target {
        name: "record_decoder",
        run: record_decoder::record_decoder,
        seeds: record_decoder::seed_inputs,
        seeds_pinned: true,
    },
    Target { name: "ffi_submit", run: ffi_submit::ffi_submit, seeds: ffi_submit::seed_inputs, seeds_pinned: true },
    Target {
        name: "portal_request",
        run: portal_request::portal_request,
        seeds: portal_request::seed_inputs,
        seeds_pinned: false,
    },
    Target { name: "money_parse", run: money_parse::money_parse, seeds: money_parse::seed_inputs, seeds_pinned: true },
    Target { name: "cold_files", run: cold_files::cold_files, seeds: cold_files::seed_inputs, seeds_pinned: true },
];

/// The target of this name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
