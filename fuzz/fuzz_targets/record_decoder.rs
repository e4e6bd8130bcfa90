//! Logs of real, forged and damaged ledger-core records opened with `Ledger::open`,
//! judged by the reference model; see `ledger_fuzz::record_decoder`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::record_decoder::record_decoder(data);
});
