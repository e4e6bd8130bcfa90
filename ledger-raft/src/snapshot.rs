//! A ledger snapshot for Raft: the files of a consistent backup of a node's ledger
//! directory (its newest checkpoint, the runs it names, the log segments; see
//! `ledger_cli::backup`), packed into one file that openraft streams to a node the
//! Raft log no longer covers, with a header naming the Raft log id it stands for.
//!
//! Layout (little-endian): the magic `LRSNAP01`; the header's length (u32) and the
//! header as JSON ([`Header`]); per file, its name's length (u16, never 0), the name,
//! its length (u64) and its bytes; a zero u16; then the BLAKE3 hash of every byte
//! before it. A snapshot is checked whole before anything of it is used: a damaged
//! or cut transfer is refused, never installed.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::NodeId;

/// The first bytes of a snapshot file.
pub const MAGIC: &[u8; 8] = b"LRSNAP01";
/// Longest header accepted (a membership of many nodes is a few KiB).
const HEADER_BYTES_MAX: u32 = 1 << 20;
const HASH_BYTES: usize = 32;

/// What a snapshot stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The Raft log id (and membership) the snapshot covers: the ledger holds every
    /// group committed up to it.
    pub meta: SnapshotMeta<NodeId, BasicNode>,
    /// The last seq of the ledger in the snapshot. It may hold groups committed after
    /// `meta.last_log_id` too (the backup was read while the ledger went on): applied
    /// again after an install, those are void (their seqs are taken), as on a restart.
    pub ledger_seq: u64,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what it reads.
struct Hashed<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Packs the regular files of `dir` (a ledger backup) into a new snapshot file `to`,
/// synced. Returns its size in bytes.
pub fn pack(dir: &Path, header: &Header, to: &Path) -> io::Result<u64> {
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|n| invalid(format!("a file name not in UTF-8: {n:?}")))?;
        names.push((name, entry.path()));
    }
    names.sort();
    let file = File::create(to)?;
    let mut out = Hashing { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new() };
    out.write_all(MAGIC)?;
    let json = serde_json::to_vec(header).map_err(|e| invalid(e.to_string()))?;
    let len = u32::try_from(json.len()).map_err(|_| invalid("the header is too long"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&json)?;
    for (name, path) in &names {
        let name_len = u16::try_from(name.len()).map_err(|_| invalid(format!("{name}: name too long")))?;
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        out.write_all(&name_len.to_le_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&size.to_le_bytes())?;
        let copied = io::copy(&mut (&mut file).take(size), &mut out)?;
        if copied != size {
            return Err(invalid(format!("{name}: shorter than its length while packing")));
        }
    }
    out.write_all(&0u16.to_le_bytes())?;
    let hash = out.hasher.finalize();
    let mut inner = out.inner;
    inner.write_all(hash.as_bytes())?;
    let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    file.metadata().map(|m| m.len())
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_header(r: &mut impl Read) -> io::Result<Header> {
    let mut magic = [0; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(invalid("not a ledger snapshot (bad magic)"));
    }
    let mut len = [0; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > HEADER_BYTES_MAX {
        return Err(invalid(format!("a header of {len} bytes")));
    }
    let mut json = vec![0; len as usize];
    r.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(|e| invalid(format!("the header does not decode: {e}")))
}

/// Reads `path` through, unpacking its files into `into` when given (each synced),
/// and checks its hash. `Err` for a damaged, cut or foreign file: what was unpacked
/// then is not to be used.
fn walk(path: &Path, into: Option<&Path>) -> io::Result<Header> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut r = Hashed { inner: BufReader::with_capacity(1 << 20, file), hasher: blake3::Hasher::new() };
    let header = read_header(&mut r)?;
    let mut offset = 0u64;
    loop {
        let name_len = read_u16(&mut r)?;
        if name_len == 0 {
            break;
        }
        let mut name = vec![0; usize::from(name_len)];
        r.read_exact(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| invalid("a file name not in UTF-8"))?;
        if name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(invalid(format!("a file name that is not a plain name: {name:?}")));
        }
        let size = read_u64(&mut r)?;
        offset = offset.saturating_add(size);
        if offset > total {
            return Err(invalid(format!("{name}: {size} bytes, past the end of the snapshot")));
        }
        let copied = match into {
            Some(dir) => {
                let mut out = File::create(dir.join(&name))?;
                let copied = io::copy(&mut (&mut r).take(size), &mut out)?;
                out.sync_all()?;
                copied
            }
            None => io::copy(&mut (&mut r).take(size), &mut io::sink())?,
        };
        if copied != size {
            return Err(invalid(format!("{name}: cut short ({copied} of {size} bytes)")));
        }
    }
    let expected = r.hasher.finalize();
    let mut hash = [0; HASH_BYTES];
    r.inner.read_exact(&mut hash)?;
    if expected.as_bytes() != &hash {
        return Err(invalid("the snapshot's hash does not match its bytes"));
    }
    let mut rest = [0; 1];
    if r.inner.read(&mut rest)? != 0 {
        return Err(invalid("bytes after the snapshot's hash"));
    }
    Ok(header)
}

/// Checks a whole snapshot file and returns its header.
pub fn verify(path: &Path) -> io::Result<Header> {
    walk(path, None)
}

/// Unpacks a snapshot file into the empty directory `into`, checking it whole.
pub fn unpack(path: &Path, into: &Path) -> io::Result<Header> {
    walk(path, Some(into))
}

/// A snapshot file as openraft reads and writes it: a tokio file that knows its path.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// A new, empty file at `path` to receive a snapshot into.
    pub async fn create(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = tokio::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).await?;
        Ok(SnapshotFile { file, path })
    }

    /// The snapshot at `path`, to read.
    pub async fn open(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = tokio::fs::File::open(&path).await?;
        Ok(SnapshotFile { file, path })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes what is buffered and syncs the file.
    pub async fn finish(&mut self) -> io::Result<()> {
        self.file.flush().await?;
        self.file.sync_all().await
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn header() -> Header {
        Header {
            meta: SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
                last_membership: openraft::StoredMembership::default(),
                snapshot_id: "3-42-900".into(),
            },
            ledger_seq: 900,
        }
    }

    #[test]
    fn packs_and_unpacks_every_file_and_refuses_any_damage() {
        let root = tempfile::tempdir().unwrap();
        let (from, into, snap) = (root.path().join("from"), root.path().join("into"), root.path().join("s.snap"));
        fs::create_dir_all(&from).unwrap();
        fs::create_dir_all(&into).unwrap();
        fs::write(from.join("00000000000000000001.seg"), vec![7u8; 300_000]).unwrap();
        fs::write(from.join("snapshot-1.snap"), b"checkpoint").unwrap();
        fs::write(from.join("empty"), b"").unwrap();
        fs::create_dir_all(from.join("a-directory")).unwrap(); // not a file: left out
        let size = pack(&from, &header(), &snap).unwrap();
        assert_eq!(size, fs::metadata(&snap).unwrap().len());
        assert_eq!(verify(&snap).unwrap(), header());
        assert_eq!(unpack(&snap, &into).unwrap(), header());
        let mut names: Vec<_> = fs::read_dir(&into).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["00000000000000000001.seg", "empty", "snapshot-1.snap"]);
        assert_eq!(fs::read(into.join("00000000000000000001.seg")).unwrap(), vec![7u8; 300_000]);

        let bytes = fs::read(&snap).unwrap();
        // Any flipped byte, anywhere: refused.
        for at in [0, 9, 20, bytes.len() / 2, bytes.len() - 40, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            fs::write(&snap, &bad).unwrap();
            assert!(verify(&snap).is_err(), "a flipped byte at {at} is refused");
        }
        // Cut short anywhere, or with bytes after the end: refused.
        for len in [5, 30, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&snap, &bytes[..len]).unwrap();
            assert!(verify(&snap).is_err(), "cut at {len} is refused");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        fs::write(&snap, &longer).unwrap();
        assert!(verify(&snap).is_err());
    }
}
