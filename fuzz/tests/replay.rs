//! Replays every committed seed and regression of every fuzz target through its oracle,
//! on stable and without instrumentation: `cargo test` in fuzz/.
//!
//! Inputs live in `seeds/<target>/` and `regressions/<target>/`; a regression is a
//! crashing input saved from `artifacts/<target>/` (see scripts/fuzz-smoke.sh). A
//! regression that still fails is reported by name together with its panic message.

use std::path::{Path, PathBuf};

use ledger_fuzz::{TARGETS, Target};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root().join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("read dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_file() && !name.starts_with('.') && !name.ends_with(".md") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &Target) -> usize {
    let files = inputs(target.name);
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read input");
        if let Err(panic) = std::panic::catch_unwind(|| (target.run)(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            failures.push(format!("{}: {msg}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs failed:\n{}", failures.len(), files.len(), failures.join("\n"));
    files.len()
}

fn target(name: &str) -> &'static Target {
    ledger_fuzz::target(name).unwrap_or_else(|| panic!("no target {name} in ledger_fuzz::TARGETS"))
}

fn seeds_and_regressions(name: &str) {
    let t = target(name);
    let n = replay(t);
    let expected = (t.seeds)().len();
    assert!(n >= expected, "only {n} inputs found for {name}: run `cargo run --example gen_seeds`");
}

#[test]
fn segment_recovery_seeds_and_regressions() {
    seeds_and_regressions("segment_recovery");
}

#[test]
fn record_decoder_seeds_and_regressions() {
    seeds_and_regressions("record_decoder");
}

#[test]
fn ffi_submit_seeds_and_regressions() {
    seeds_and_regressions("ffi_submit");
}

#[test]
fn portal_request_seeds_and_regressions() {
    seeds_and_regressions("portal_request");
}

#[test]
fn money_parse_seeds_and_regressions() {
    seeds_and_regressions("money_parse");
}

/// Every `fuzz_targets/*.rs` is in `TARGETS` (and so replayed above), and back.
#[test]
fn cold_files_seeds_and_regressions() {
    seeds_and_regressions("cold_files");
}

#[test]
fn every_fuzz_target_is_replayed() {
    let mut files: Vec<String> = std::fs::read_dir(root().join("fuzz_targets"))
        .expect("fuzz_targets/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string())
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(files, names, "fuzz_targets/*.rs and ledger_fuzz::TARGETS differ");
}

#[test]
fn committed_seeds_match_the_generator() {
    for t in TARGETS.iter().filter(|t| t.seeds_pinned) {
        let dir = root().join("seeds").join(t.name);
        for (name, data) in (t.seeds)() {
            let committed = std::fs::read(dir.join(name)).ok();
            assert!(
                committed.as_deref() == Some(&data[..]),
                "seeds/{}/{name} is stale or missing: run `cargo run --example gen_seeds`",
                t.name
            );
        }
    }
}
