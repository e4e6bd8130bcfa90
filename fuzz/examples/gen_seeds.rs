//! Writes the seed inputs of the fuzz targets.
//!
//! ```text
//! cargo run --example gen_seeds                      # every target, into seeds/<target> (committed)
//! cargo run --example gen_seeds -- record_decoder    # the named targets only
//! cargo run --example gen_seeds -- --into corpus     # into corpus/<target> instead
//! ```
//! Paths are relative to the fuzz crate. Existing files of the same name are replaced;
//! other files are left alone.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut base = root.join("seeds");
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--into" {
            base = root.join(args.next().expect("--into DIR"));
        } else {
            names.push(arg);
        }
    }
    for target in ledger_fuzz::TARGETS {
        if !names.is_empty() && !names.iter().any(|n| n == target.name) {
            continue;
        }
        let dir = base.join(target.name);
        std::fs::create_dir_all(&dir)?;
        for (name, data) in (target.seeds)() {
            let path = dir.join(name);
            std::fs::write(&path, &data)?;
            println!("{} ({} bytes)", path.display(), data.len());
        }
    }
    Ok(())
}
