//! The C ABI fed arbitrary `ledger_tx` arrays, counts and pointers, compared with a
//! second engine and the reference model; see `ledger_fuzz::ffi_submit`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::ffi_submit::ffi_submit(data);
});
