//! Reading fuzz input as a stream of small fields, and the scratch directories the
//! targets that open real ledgers work in.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A cursor over fuzz input. Reads past the end give zeros (so every input decodes to
/// something), and [`Reader::is_empty`] tells the loops that consume it when to stop.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }

    /// `N` bytes, zero-filled past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.take(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A little-endian i64.
    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }
}

/// A fresh directory for one iteration's ledger: on tmpfs (`/dev/shm`) when there is
/// one, so that segment files, syncs and `flock` cost memory operations, not disk I/O.
/// Its name carries this process's id: directories a crashed or aborted run left (no
/// destructor runs on abort, nor for those held in statics) are removed by the next
/// process's first call, once their process is gone.
pub fn scratch_dir() -> tempfile::TempDir {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if tempfile::tempdir_in(shm).is_ok() { shm.to_path_buf() } else { std::env::temp_dir() };
        sweep(&base);
        base
    });
    tempfile::Builder::new()
        .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
        .tempdir_in(base)
        .expect("create a scratch directory")
}

const SCRATCH_PREFIX: &str = "ledger-fuzz-";

/// Removes scratch directories of processes that no longer exist.
fn sweep(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(SCRATCH_PREFIX)).and_then(|r| r.split('-').next())
        else {
            continue;
        };
        let alive = Path::new("/proc").join(pid).exists() || !Path::new("/proc/self").exists();
        if pid.parse::<u32>().is_ok() && !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_zero() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), 0x0201);
        assert!(!r.is_empty());
        assert_eq!(r.u16(), 3);
        assert!(r.is_empty());
        assert_eq!(r.u64(), 0);
        assert_eq!(r.take(5), &[] as &[u8]);
        let mut r = Reader::new(&[9, 8, 7]);
        assert_eq!(r.take(2), &[9, 8]);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.rest(), &[7]);
        assert!(r.is_empty());
    }
}
