//! Fuzzing support: each fuzz target's input decoding and oracle live in a module
//! named after the target, shared by `fuzz_targets/<target>.rs` and the stable replay
//! of seeds and regressions in `tests/replay.rs`.

pub mod segment_recovery;

pub use segment_recovery::*;
