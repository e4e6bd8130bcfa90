//! Decimal amounts through `parse_minor` and `format_minor`, against an exact
//! reference; see `ledger_fuzz::money_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ledger_fuzz::money_parse::money_parse(data);
});
