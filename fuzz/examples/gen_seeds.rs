//! Writes the seed inputs of the `segment_recovery` target.
//!
//! ```text
//! cargo run --example gen_seeds                 # fuzz/seeds/segment_recovery (committed)
//! cargo run --example gen_seeds -- corpus/segment_recovery
//! ```
//! Paths are relative to the fuzz crate. Existing files of the same name are replaced;
//! other files are left alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = std::env::args_os().skip(1).map(|d| root.join(d)).collect();
    if dirs.is_empty() {
        dirs.push(root.join("seeds/segment_recovery"));
    }
    for dir in &dirs {
        std::fs::create_dir_all(dir)?;
        for (name, data) in ledger_fuzz::seed_inputs() {
            let path = dir.join(name);
            std::fs::write(&path, &data)?;
            println!("{} ({} bytes)", path.display(), data.len());
        }
    }
    Ok(())
}
