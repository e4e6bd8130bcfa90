//! `ledger-ffi`: the C ABI of the ledger (`include/ledger.h`) and its Python package.
//!
//! Not built yet: the ABI fixed by `shared/design/ffi-contract.md` arrives with the
//! ledger-ffi issue, on top of `ledger-core`.
