//! Cold-tier tables and checkpoint payloads: tables open only intact, decoders never
//! panic; see `ledger_fuzz::cold_files`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::cold_files::cold_files(data);
});
