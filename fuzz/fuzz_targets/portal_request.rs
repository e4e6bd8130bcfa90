//! One HTTP request through the portal's router, in process, checked against the
//! response invariants; see `ledger_fuzz::portal_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::portal_request::portal_request(data);
});
