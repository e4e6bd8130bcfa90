//! How deep a corpus reaches: replays every input of `corpus/<target>` (or the
//! directories given) and counts what the oracle saw. For `record_decoder`, how many
//! logs open and how many are refused, and why; for `portal_request`, the status (and
//! error code) of every request.
//!
//! ```text
//! cargo run --release --example corpus_stats -- record_decoder [DIR...]
//! cargo run --release --example corpus_stats -- portal_request [DIR...]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("a target: record_decoder or portal_request");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = args.map(PathBuf::from).collect();
    if dirs.is_empty() {
        dirs.push(root.join("corpus").join(&target));
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for dir in &dirs {
        for entry in std::fs::read_dir(dir).expect("a corpus directory").flatten() {
            let data = std::fs::read(entry.path()).expect("read an input");
            let verdict = match target.as_str() {
                "record_decoder" => ledger_fuzz::record_decoder::verdict(&data),
                "portal_request" => ledger_fuzz::portal_request::verdict(&data).unwrap_or_else(|| "no request".into()),
                other => panic!("no statistics for {other}"),
            };
            *counts.entry(verdict).or_default() += 1;
            total += 1;
        }
    }
    let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("{total} inputs");
    for (verdict, n) in sorted {
        println!("{n:>7}  {:>5.1}%  {verdict}", n as f64 * 100.0 / total.max(1) as f64);
    }
}
