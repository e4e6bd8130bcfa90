//! The committed header must be exactly what cbindgen generates from the source, so
//! the C ABI and its declaration cannot drift apart. Regenerate with
//! `LEDGER_BLESS_HEADER=1 cargo test -p ledger-ffi --test header`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn committed_header_matches_a_fresh_generation() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new().with_crate(crate_dir).with_config(config).generate().unwrap();
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let fresh = String::from_utf8(fresh).unwrap();
    let committed_path = crate_dir.join("include/ledger.h");
    if std::env::var_os("LEDGER_BLESS_HEADER").is_some() {
        std::fs::write(&committed_path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/ledger.h differs from a fresh cbindgen generation; regenerate with \
         LEDGER_BLESS_HEADER=1 cargo test -p ledger-ffi --test header and review the diff"
    );
}
