//! Replays every committed seed and regression through the fuzz target's oracle, on
//! stable and without instrumentation: `cargo test` in fuzz/.
//!
//! Inputs live in `seeds/<target>/` and `regressions/<target>/`; a regression is a
//! crashing input saved from `artifacts/<target>/` (see scripts/fuzz-smoke.sh). A
//! regression that still fails is reported by name together with its panic message.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
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

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files = inputs(target);
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read input");
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
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

#[test]
fn segment_recovery_seeds_and_regressions() {
    let n = replay("segment_recovery", ledger_fuzz::segment_recovery);
    assert!(n >= ledger_fuzz::seed_inputs().len(), "only {n} inputs found: run `cargo run --example gen_seeds`");
}

#[test]
fn committed_seeds_match_the_generator() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/segment_recovery");
    for (name, data) in ledger_fuzz::seed_inputs() {
        let committed = std::fs::read(dir.join(name)).ok();
        assert!(
            committed.as_deref() == Some(&data[..]),
            "seeds/segment_recovery/{name} is stale or missing: run `cargo run --example gen_seeds`"
        );
    }
}
