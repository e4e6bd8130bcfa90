//! `portal-svc backup DEST`: a consistent copy of the whole service while it runs.
//!
//! The metadata database is copied first, through SQLite's online backup API (a
//! consistent snapshot of one moment, taken page by page without stopping writers),
//! then the ledger with the `ledger` tool's backup (as of one seq, verified). The
//! ledger copy is therefore at or past every transaction the copied metadata names: the
//! service already reconciles a ledger that holds transactions its metadata has not
//! recorded (an answer cut off by a crash), never the other way round. The secret key
//! (DIR/secret.key) is not copied: a backup holding the key of the secrets it encrypts
//! would protect nothing; keep it apart (or in PORTAL_SECRET_KEY).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Pages copied per step of the online backup, and the pause between steps, so a
/// running service's writes go on while it copies.
const PAGES_PER_STEP: std::ffi::c_int = 1024;
const STEP_PAUSE: Duration = Duration::from_millis(2);

/// Copies the service in `dir` into `dest` (new or empty).
pub fn backup(dir: &Path, dest: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let db = dir.join("portal.db");
    if !db.is_file() || !dir.join("ledger").is_dir() {
        return Err(format!("{}: not a portal-svc data directory (no portal.db and ledger/)", dir.display()).into());
    }
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!("{}: not empty; back up into a new or empty directory", dest.display()).into());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dest)?,
        Err(e) => return Err(format!("{}: {e}", dest.display()).into()),
    }

    let source = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    source.busy_timeout(Duration::from_secs(30))?;
    let copy_path = dest.join("portal.db");
    let mut copy = Connection::open(&copy_path)?;
    rusqlite::backup::Backup::new(&source, &mut copy)?.run_to_completion(PAGES_PER_STEP, STEP_PAUSE, None)?;
    drop(source);
    let check: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(format!("{}: the copy fails SQLite's integrity check: {check}", copy_path.display()).into());
    }
    copy.pragma_update(None, "journal_mode", "DELETE")?; // one self-contained file
    drop(copy);

    match ledger_cli::backup::backup(&dir.join("ledger"), &dest.join("ledger")) {
        Ok(_) => {}
        Err(failure) => return Err(format!("backing up the ledger: {}", failure.message).into()),
    }
    println!(
        "backup {}: portal.db (online backup, integrity checked) and ledger/ (verified); the secret key is not \
         copied: restore with the original's secret.key (or PORTAL_SECRET_KEY)",
        dest.display()
    );
    Ok(())
}
