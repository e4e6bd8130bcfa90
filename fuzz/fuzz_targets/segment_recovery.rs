//! Recovery scan over arbitrary segment images, checked by an independent oracle.
//!
//! The input layout (raw or harness-framed, one or two segments, optional checksum
//! fix-up) and the oracle are in `ledger_fuzz` (src/lib.rs), shared with the stable
//! replay test `tests/replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::segment_recovery(data);
});
