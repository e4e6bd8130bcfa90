//! Tables: immutable files of fixed-size entries sorted by a 16-byte key, with a
//! secondary index and a Bloom filter, written once and read in place through a
//! read-only mapping. The engine keeps the part of its history that no longer fits its
//! memory budget in them (its cold tier); like the log, a table knows bytes, not money.
//!
//! A table is written by a [`TableBuilder`] in one pass (entries in strictly increasing
//! key order, then secondary entries in strictly increasing `(group, order)` order),
//! under a temporary name that is synced and renamed into place, so a table file either
//! exists whole or not at all. [`Table::open`] maps it and verifies every byte (BLAKE3
//! per 64 KiB chunk, spread over the cores, and one hash over the header and the chunk
//! sums); a table that fails is refused with the file and the byte offset.
//!
//! Layout (all integers little-endian; `E` = entry bytes, a multiple of 8):
//!
//! | section | bytes | content |
//! | --- | --- | --- |
//! | header | 64 | magic `LEDGTBL1`, version `u32`, `E` `u32`, entries `u64`, secondary entries `u64` (both indexes), Bloom blocks `u64`, body bytes `u64`, entries of the second index `u64`, 8 reserved (0) |
//! | entries | n × E | sorted by their first 16 bytes (the key), unsigned, byte by byte |
//! | secondary | s × 40 | `group u64`, `order u64`, `aux u64`, `key [16]`: the first index's entries then the second's, each sorted by `(group, order)`; within a group `aux` never decreases as `order` grows |
//! | Bloom | b × 64 | blocked Bloom filter over the keys: one 512-bit block per key, [`BLOOM_PROBES`] bits set in it |
//! | chunk sums | c × 32 | BLAKE3 of each [`CHUNK_BYTES`] of the body (entries to Bloom), the last one short |
//! | footer | 64 | magic `LEDGTBLF`, body bytes `u64`, chunks `u64`, 8 reserved (0), BLAKE3 of the header, the chunk sums and the footer's first 32 bytes |

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use memmap2::Mmap;

use crate::error::IoFailure;
use crate::log::segment::sync_dir;
use crate::storage::{Storage, StorageOp};

const MAGIC: [u8; 8] = *b"LEDGTBL1";
const FOOTER_MAGIC: [u8; 8] = *b"LEDGTBLF";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 64;
const FOOTER_BYTES: usize = 64;
/// Bytes of the key at the start of every entry.
pub const KEY_BYTES: usize = 16;
/// Bytes of a secondary entry: group, order, aux, key.
pub const SECONDARY_BYTES: usize = 40;
/// The body is checksummed in chunks of this size (the last one may be shorter).
pub const CHUNK_BYTES: usize = 64 * 1024;
const BLOOM_BLOCK_BYTES: usize = 64;
/// Bloom filter bits per key: with [`BLOOM_PROBES`] probes in one 512-bit block, about
/// 0.5% of lookups of absent keys pass the filter.
pub const BLOOM_BITS_PER_KEY: usize = 12;
/// Bits set (and tested) per key, all in one 512-bit block (one cache line).
pub const BLOOM_PROBES: u32 = 8;
/// Largest entry size accepted.
pub const ENTRY_BYTES_MAX: usize = 4096;
/// Bytes written to the file per `write` call while building (one seam call each).
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// While building, the file's data is synced every this many bytes (as RocksDB's
/// `bytes_per_sync`): a table of hundreds of MiB synced once at the end would put all
/// of it in the disk's queue at once, in front of the log's group commits.
pub const SYNC_EVERY_BYTES: u64 = 8 << 20;

const _: () = assert!(CHUNK_BYTES.is_multiple_of(BLOOM_BLOCK_BYTES) && HEADER_BYTES.is_multiple_of(16));

/// A 16-byte key.
pub type Key = [u8; KEY_BYTES];

/// Why a table could not be written or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The file is not a whole, intact table; it must not be used.
    #[error("{path}: damaged table at byte {offset}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where the damage was found (the start of the failing section or chunk).
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// The builder was used against its contract (keys out of order, wrong sizes):
    /// a bug of the caller; nothing was written under the table's name.
    #[error("{path}: table not built: {reason}")]
    Misuse {
        /// The file that was being built.
        path: PathBuf,
        /// What the caller did wrong.
        reason: &'static str,
    },
}

impl From<IoFailure> for TableError {
    fn from(IoFailure { op, path, source }: IoFailure) -> Self {
        TableError::Io { op, path, source }
    }
}

/// Reads a little-endian `u64` at `at`.
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The 64-bit hash of a key that places it in the Bloom filter (fixed: it is part of
/// the format). A strong mix of both halves, so sequential keys spread evenly.
pub fn key_hash(key: &Key) -> u64 {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&key[..8]);
    b.copy_from_slice(&key[8..]);
    mix(u64::from_le_bytes(a) ^ mix(u64::from_le_bytes(b).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Block of the filter and the bit positions within it for a key's hash.
pub(crate) fn bloom_slots(hash: u64, blocks: u64) -> (usize, [u16; BLOOM_PROBES as usize]) {
    // The block from the high bits (multiply-shift range reduction), the bits from a
    // second mix of the hash: 8 probes x 9 bits.
    // The product's high half is below `blocks`, whose blocks are mapped: it fits usize.
    let block = usize::try_from((u128::from(hash) * u128::from(blocks)) >> 64).unwrap_or(usize::MAX);
    let mut bits = mix(hash ^ 0x5851_f42d_4c95_7f2d);
    let mut out = [0u16; BLOOM_PROBES as usize];
    for slot in &mut out {
        *slot = (bits & 511) as u16;
        bits = bits.rotate_right(9);
    }
    (block, out)
}

fn bloom_blocks_for(entries: u64) -> u64 {
    (entries * BLOOM_BITS_PER_KEY as u64).div_ceil(512).max(1)
}

/// What a finished table holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The file.
    pub path: PathBuf,
    /// Entries.
    pub entries: u64,
    /// Secondary entries.
    pub secondary: u64,
    /// Bytes of the whole file.
    pub bytes: u64,
}

/// Writes one table, streaming: entries first, then secondary entries, then
/// [`TableBuilder::finish`]. Dropped unfinished, it removes its temporary file.
pub struct TableBuilder {
    storage: Storage,
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    entry_bytes: usize,
    entries_max: u64,
    entries: u64,
    secondary: u64,
    /// Entries of the second index (pushed after all of the first's).
    second: u64,
    last_key: Option<Key>,
    last_secondary: Option<(u64, u64, u64)>,
    bloom: Vec<u8>,
    bloom_blocks: u64,
    /// Filter insertions whose block was prefetched and not yet set, oldest first (see
    /// [`TableBuilder::push_entry`]).
    bloom_queue: std::collections::VecDeque<(usize, [u16; BLOOM_PROBES as usize])>,
    /// Body bytes not yet written.
    pending: Vec<u8>,
    /// Body bytes written or pending, and the hasher of the chunk being filled.
    body: u64,
    /// Bytes written to the file, and up to where they were last synced.
    written: u64,
    synced: u64,
    chunk: blake3::Hasher,
    chunk_fill: usize,
    sums: Vec<[u8; 32]>,
    /// Set once the body is whole and hashed: what `finish` flushes after it (chunk
    /// sums, footer) is not body.
    body_hashed: bool,
}

impl std::fmt::Debug for TableBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder").field("path", &self.path).field("entries", &self.entries).finish()
    }
}

impl TableBuilder {
    /// Starts `dir/name` (written as `name.tmp` until finished) for at most
    /// `entries_max` entries of `entry_bytes` each (sizes the Bloom filter).
    pub fn create(
        storage: &Storage,
        dir: &Path,
        name: &str,
        entry_bytes: usize,
        entries_max: u64,
    ) -> Result<TableBuilder, TableError> {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        if entry_bytes < KEY_BYTES || !entry_bytes.is_multiple_of(8) || entry_bytes > ENTRY_BYTES_MAX {
            return Err(TableError::Misuse { path, reason: "entry size must be 16..=4096 bytes, a multiple of 8" });
        }
        let file = storage
            .run(StorageOp::CreateFile, &tmp, 0..0, || {
                OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)
            })
            .map_err(IoFailure::at("create table", &tmp))?;
        let bloom_blocks = bloom_blocks_for(entries_max);
        let mut builder = TableBuilder {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            path,
            tmp,
            file: Some(file),
            entry_bytes,
            entries_max,
            entries: 0,
            secondary: 0,
            second: 0,
            last_key: None,
            last_secondary: None,
            bloom: huge_zeroed(usize::try_from(bloom_blocks).unwrap_or(usize::MAX) * BLOOM_BLOCK_BYTES),
            bloom_blocks,
            bloom_queue: std::collections::VecDeque::with_capacity(BLOOM_QUEUE),
            pending: Vec::with_capacity(WRITE_BUFFER_BYTES),
            body: 0,
            written: 0,
            synced: 0,
            chunk: blake3::Hasher::new(),
            chunk_fill: 0,
            sums: Vec::new(),
            body_hashed: false,
        };
        // The header is written last, in place; its room now.
        builder.pending.extend_from_slice(&[0u8; HEADER_BYTES]);
        Ok(builder)
    }

    fn misuse(&self, reason: &'static str) -> TableError {
        TableError::Misuse { path: self.path.clone(), reason }
    }

    /// Appends body bytes: checksummed per chunk, buffered, written a megabyte at a time.
    /// Sets the bits of the oldest queued filter insertion.
    fn set_oldest_bloom(&mut self) {
        if let Some((block, bits)) = self.bloom_queue.pop_front() {
            let block = &mut self.bloom[block * BLOOM_BLOCK_BYTES..(block + 1) * BLOOM_BLOCK_BYTES];
            for bit in bits {
                block[usize::from(bit / 8)] |= 1 << (bit % 8);
            }
        }
    }

    fn body_bytes(&mut self, bytes: &[u8]) -> Result<(), TableError> {
        self.pending.extend_from_slice(bytes);
        self.body += bytes.len() as u64;
        if self.pending.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hashes the body bytes of `pending` (from `from`) into the chunk sums, in large
    /// slices (BLAKE3's wide SIMD path), not one small entry at a time.
    fn hash_pending(&mut self, from: usize) {
        let mut bytes = &self.pending[from..];
        while !bytes.is_empty() {
            let take = (CHUNK_BYTES - self.chunk_fill).min(bytes.len());
            self.chunk.update(&bytes[..take]);
            self.chunk_fill += take;
            bytes = &bytes[take..];
            if self.chunk_fill == CHUNK_BYTES {
                self.sums.push(*self.chunk.finalize().as_bytes());
                self.chunk.reset();
                self.chunk_fill = 0;
            }
        }
    }

    fn flush(&mut self) -> Result<(), TableError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        // The header's room leads the first buffer: it is not body, so not hashed here.
        let header_room = if self.written == 0 { HEADER_BYTES } else { 0 };
        if !self.body_hashed {
            self.hash_pending(header_room);
        }
        let Some(file) = self.file.as_mut() else { return Err(self.misuse("already finished")) };
        let (storage, tmp, pending) = (&self.storage, &self.tmp, &self.pending);
        let at = self.written;
        storage
            .run(StorageOp::WriteFile, tmp, at..at + pending.len() as u64, || file.write_all(pending))
            .map_err(IoFailure::at("write table", tmp))?;
        self.written += pending.len() as u64;
        self.pending.clear();
        if self.written - self.synced >= SYNC_EVERY_BYTES {
            storage
                .run(StorageOp::SyncFile, tmp, 0..u64::MAX, || file.sync_data())
                .map_err(IoFailure::at("sync table", tmp))?;
            self.synced = self.written;
        }
        Ok(())
    }

    /// Appends an entry; its key (first 16 bytes) must be greater than the previous one's.
    pub fn push_entry(&mut self, entry: &[u8]) -> Result<(), TableError> {
        if entry.len() != self.entry_bytes {
            return Err(self.misuse("entry of the wrong size"));
        }
        if self.secondary > 0 {
            return Err(self.misuse("entries after secondary entries"));
        }
        if self.entries >= self.entries_max {
            return Err(self.misuse("more entries than announced"));
        }
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(&entry[..KEY_BYTES]);
        if self.last_key.is_some_and(|last| last >= key) {
            return Err(self.misuse("keys not strictly increasing"));
        }
        self.last_key = Some(key);
        // Keys arrive in order, their filter blocks at random: each insertion is a cache
        // miss. The block is prefetched now and set BLOOM_QUEUE insertions later, so
        // the misses overlap (measured: the filter was most of a checkpoint's time).
        let (block, bits) = bloom_slots(key_hash(&key), self.bloom_blocks);
        prefetch(&self.bloom[block * BLOOM_BLOCK_BYTES]);
        if self.bloom_queue.len() == BLOOM_QUEUE {
            self.set_oldest_bloom();
        }
        self.bloom_queue.push_back((block, bits));
        self.entries += 1;
        self.body_bytes(entry)
    }

    /// Appends an entry of the first secondary index; `(group, order)` must be greater
    /// than the previous one's, and within a group `aux` must not decrease (a second
    /// order, such as a time that grows with a sequence number, searchable by
    /// [`Table::secondary_bounds`]).
    pub fn push_secondary(&mut self, group: u64, order: u64, aux: u64, key: &Key) -> Result<(), TableError> {
        if self.second > 0 {
            return Err(self.misuse("first index entries after the second's"));
        }
        self.push_index_entry(group, order, aux, key)
    }

    /// Appends an entry of the second secondary index, after every entry of the first;
    /// the same order rules, searchable by [`Table::second_bounds`].
    pub fn push_second(&mut self, group: u64, order: u64, aux: u64, key: &Key) -> Result<(), TableError> {
        if self.second == 0 {
            self.last_secondary = None; // a new index starts its own order
        }
        self.second += 1;
        self.push_index_entry(group, order, aux, key)
    }

    fn push_index_entry(&mut self, group: u64, order: u64, aux: u64, key: &Key) -> Result<(), TableError> {
        if let Some((g, o, a)) = self.last_secondary
            && ((g, o) >= (group, order) || (g == group && a > aux))
        {
            return Err(self.misuse("secondary entries not in increasing order"));
        }
        self.last_secondary = Some((group, order, aux));
        self.secondary += 1;
        let mut bytes = [0u8; SECONDARY_BYTES];
        bytes[0..8].copy_from_slice(&group.to_le_bytes());
        bytes[8..16].copy_from_slice(&order.to_le_bytes());
        bytes[16..24].copy_from_slice(&aux.to_le_bytes());
        bytes[24..40].copy_from_slice(key);
        self.body_bytes(&bytes)
    }

    /// Entries pushed so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the filter, the sums, the footer and the header, syncs the file, renames
    /// it into place and syncs the directory.
    pub fn finish(mut self) -> Result<TableInfo, TableError> {
        while !self.bloom_queue.is_empty() {
            self.set_oldest_bloom();
        }
        let bloom = std::mem::take(&mut self.bloom);
        self.body_bytes(&bloom)?;
        let header_room = if self.written == 0 { HEADER_BYTES } else { 0 };
        self.hash_pending(header_room);
        self.body_hashed = true;
        if self.chunk_fill > 0 {
            self.sums.push(*self.chunk.finalize().as_bytes());
        }
        let body = self.body;
        let mut header = [0u8; HEADER_BYTES];
        header[0..8].copy_from_slice(&MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&u32::try_from(self.entry_bytes).unwrap_or(u32::MAX).to_le_bytes());
        header[16..24].copy_from_slice(&self.entries.to_le_bytes());
        header[24..32].copy_from_slice(&self.secondary.to_le_bytes());
        header[32..40].copy_from_slice(&self.bloom_blocks.to_le_bytes());
        header[40..48].copy_from_slice(&body.to_le_bytes());
        header[48..56].copy_from_slice(&self.second.to_le_bytes());
        let sums: Vec<u8> = self.sums.iter().flatten().copied().collect();
        let mut footer = [0u8; FOOTER_BYTES];
        footer[0..8].copy_from_slice(&FOOTER_MAGIC);
        footer[8..16].copy_from_slice(&body.to_le_bytes());
        footer[16..24].copy_from_slice(&(self.sums.len() as u64).to_le_bytes());
        let sum = footer_hash(&header, &sums, &footer[..32]);
        footer[32..64].copy_from_slice(&sum);
        // The header's room is the first bytes of the first buffer still pending when
        // the table is small; otherwise it is written in place below.
        self.pending.extend_from_slice(&sums);
        self.pending.extend_from_slice(&footer);
        let header_pending = self.body + (HEADER_BYTES as u64) <= (self.pending.len() as u64);
        if header_pending {
            self.pending[..HEADER_BYTES].copy_from_slice(&header);
        }
        self.flush()?;
        let total = HEADER_BYTES as u64 + body + sums.len() as u64 + FOOTER_BYTES as u64;
        let Some(file) = self.file.take() else { return Err(self.misuse("already finished")) };
        let (storage, tmp, path) = (self.storage.clone(), self.tmp.clone(), self.path.clone());
        if !header_pending {
            use std::os::unix::fs::FileExt;
            storage
                .run(StorageOp::WriteFile, &tmp, 0..HEADER_BYTES as u64, || file.write_all_at(&header, 0))
                .map_err(IoFailure::at("write table header", &tmp))?;
        }
        storage
            .run(StorageOp::SyncFile, &tmp, 0..u64::MAX, || file.sync_all())
            .map_err(IoFailure::at("sync table", &tmp))?;
        drop(file);
        storage
            .run(StorageOp::Rename, &path, 0..0, || fs::rename(&tmp, &path))
            .map_err(IoFailure::at("rename table", &path))?;
        // Named: nothing for Drop to remove any more, whatever the directory sync says.
        self.tmp = PathBuf::new();
        sync_dir(&storage, &self.dir)?;
        Ok(TableInfo { path, entries: self.entries, secondary: self.secondary, bytes: total })
    }
}

impl Drop for TableBuilder {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            drop(self.file.take());
            let tmp = self.tmp.clone();
            let _ = self.storage.run(StorageOp::RemoveFile, &tmp, 0..0, || fs::remove_file(&tmp));
        }
    }
}

/// The footer's hash: over the header, the chunk sums and the footer's first 32 bytes.
fn footer_hash(header: &[u8], sums: &[u8], footer32: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(header);
    h.update(sums);
    h.update(footer32);
    *h.finalize().as_bytes()
}

/// A table, mapped read-only and verified. Cheap to share behind an `Arc`.
pub struct Table {
    path: PathBuf,
    map: Mmap,
    entry_bytes: usize,
    entries: usize,
    secondary: usize,
    /// Entries of the second index: the last ones of the secondary section.
    second: usize,
    bloom_blocks: u64,
    entries_at: usize,
    secondary_at: usize,
    bloom_at: usize,
    /// The Bloom filter copied into anonymous memory, when [`Table::cache_in_memory`]
    /// was called: probes then read it instead of the file's mapping.
    filter: Option<memmap2::MmapMut>,
    /// Where the chunk sums start in the mapping, and the body's length.
    sums_at: usize,
    body_bytes: usize,
    /// One bit per chunk of the body, set once the chunk matched its sum (see
    /// [`Table::open_lazy`]).
    verified: Box<[AtomicU64]>,
    /// Chunks not yet verified: 0, and every read skips the check.
    unverified: AtomicUsize,
    /// Offset + 1 of the first chunk found damaged by a read; 0 while none was.
    damage: AtomicU64,
}

/// What a read of a damaged chunk gets instead of its bytes (see [`Table::open_lazy`]):
/// zeroes, which no key or row this engine writes equals.
static POISON: [u8; ENTRY_BYTES_MAX] = [0; ENTRY_BYTES_MAX];

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("path", &self.path).field("entries", &self.entries).finish()
    }
}

impl Table {
    /// Maps `path` and verifies it whole: header, footer and every chunk's sum (chunks
    /// are hashed on as many threads as there are cores).
    pub fn open(path: &Path) -> Result<Table, TableError> {
        Table::open_checked(path, true)
    }

    /// Maps a table this process has just built ([`TableBuilder::finish`]): the header,
    /// the footer and the sums are checked, the chunks are not hashed again (the builder
    /// hashed the very bytes it wrote). Opening it later verifies every chunk.
    pub fn open_written(info: &TableInfo) -> Result<Table, TableError> {
        let table = Table::open_checked(&info.path, false)?;
        if table.file_bytes() != info.bytes || table.len() as u64 != info.entries {
            return Err(TableError::Damaged {
                path: info.path.clone(),
                offset: 0,
                reason: "not the table just written",
            });
        }
        Ok(table)
    }

    /// Maps `path` and checks its header, footer and chunk sums, but hashes no chunk
    /// yet: each chunk is verified against its sum the first time a read touches it
    /// (and [`Table::verify_rest`] verifies the others, in the background). Opening is
    /// then independent of the table's size: a ledger reopens in the time its
    /// checkpoint interval takes to replay, whatever history its runs hold.
    ///
    /// A read of a chunk that fails its sum does not get the chunk's bytes: it gets
    /// zeroes (a key no search matches, a row that decodes to nothing), and the damage
    /// is kept, for [`Table::damage`] to report. A caller that judges by what it read
    /// must check [`Table::damage`] before acting on it.
    pub fn open_lazy(path: &Path) -> Result<Table, TableError> {
        Table::open_checked(path, false).map(|table| table.forget_verified())
    }

    /// Marks every chunk unverified (the table was opened without hashing them).
    fn forget_verified(mut self) -> Table {
        let chunks = self.body_bytes.div_ceil(CHUNK_BYTES);
        self.verified = (0..chunks.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        self.unverified = AtomicUsize::new(chunks);
        self
    }

    fn open_checked(path: &Path, verify_chunks_too: bool) -> Result<Table, TableError> {
        let damaged = |offset: u64, reason| TableError::Damaged { path: path.to_path_buf(), offset, reason };
        let file = File::open(path).map_err(IoFailure::at("open table", path))?;
        // SAFETY: tables are written under a temporary name and renamed into place
        // whole; nothing writes one again, and the ledger's directory lock keeps other
        // writers out. A file changed behind the engine's back would be read as bytes
        // (and fail verification here); truncation while mapped is outside what the
        // store defends against, as for every mmap store.
        let map = unsafe { Mmap::map(&file) }.map_err(IoFailure::at("map table", path))?;
        let len = map.len();
        if len < HEADER_BYTES + FOOTER_BYTES {
            return Err(damaged(0, "shorter than a header and a footer"));
        }
        let header = &map[..HEADER_BYTES];
        if header[0..8] != MAGIC {
            return Err(damaged(0, "no table magic"));
        }
        if u32::from_le_bytes([header[8], header[9], header[10], header[11]]) != VERSION {
            return Err(damaged(8, "unsupported table version"));
        }
        let entry_bytes = u32::from_le_bytes([header[12], header[13], header[14], header[15]]) as usize;
        let (entries, secondary, bloom_blocks, body) =
            (word(header, 16), word(header, 24), word(header, 32), word(header, 40));
        let footer_at = len - FOOTER_BYTES;
        let footer = &map[footer_at..];
        if footer[0..8] != FOOTER_MAGIC {
            return Err(damaged(footer_at as u64, "no footer magic (a table cut short?)"));
        }
        let chunks = word(footer, 16);
        let sums_bytes = chunks.checked_mul(32).ok_or_else(|| damaged(footer_at as u64, "chunk count overflows"))?;
        let expected_len =
            (HEADER_BYTES as u64 + FOOTER_BYTES as u64).checked_add(body).and_then(|v| v.checked_add(sums_bytes));
        if word(footer, 8) != body || expected_len != Some(len as u64) || chunks != body.div_ceil(CHUNK_BYTES as u64) {
            return Err(damaged(footer_at as u64, "sizes in the header and footer disagree with the file"));
        }
        // Every size below was checked against the mapping's length: they fit usize.
        let Ok(body) = usize::try_from(body) else { return Err(damaged(40, "body larger than memory")) };
        let sums = &map[HEADER_BYTES + body..footer_at];
        if footer_hash(header, sums, &footer[..32]) != footer[32..64] {
            return Err(damaged(0, "header or chunk sums fail their checksum"));
        }
        if entry_bytes < KEY_BYTES || !entry_bytes.is_multiple_of(8) || entry_bytes > ENTRY_BYTES_MAX {
            return Err(damaged(12, "bad entry size"));
        }
        let sections = entries
            .checked_mul(entry_bytes as u64)
            .and_then(|e| secondary.checked_mul(SECONDARY_BYTES as u64).and_then(|s| e.checked_add(s)))
            .and_then(|es| bloom_blocks.checked_mul(BLOOM_BLOCK_BYTES as u64).and_then(|b| es.checked_add(b)));
        if sections != Some(body as u64) || bloom_blocks == 0 {
            return Err(damaged(16, "section sizes do not add up to the body"));
        }
        if verify_chunks_too {
            verify_chunks(&map[HEADER_BYTES..HEADER_BYTES + body], sums)
                .map_err(|chunk| damaged((HEADER_BYTES + chunk * CHUNK_BYTES) as u64, "chunk fails its checksum"))?;
        }
        let (Ok(entries), Ok(secondary)) = (usize::try_from(entries), usize::try_from(secondary)) else {
            return Err(damaged(16, "more entries than memory"));
        };
        let second = usize::try_from(word(header, 48)).unwrap_or(usize::MAX);
        if second > secondary || header[56..64] != [0; 8] {
            return Err(damaged(48, "bad second index count or reserved bytes"));
        }
        let entries_at = HEADER_BYTES;
        let secondary_at = entries_at + entries * entry_bytes;
        let bloom_at = secondary_at + secondary * SECONDARY_BYTES;
        Ok(Table {
            path: path.to_path_buf(),
            map,
            entry_bytes,
            entries,
            secondary,
            second,
            bloom_blocks,
            entries_at,
            secondary_at,
            bloom_at,
            filter: None,
            sums_at: HEADER_BYTES + body,
            body_bytes: body,
            verified: Box::new([]),
            unverified: AtomicUsize::new(0),
            damage: AtomicU64::new(0),
        })
    }

    /// True when the bytes `[from, to)` of the mapping (inside the body) are verified:
    /// at once when every chunk is, else by hashing those not yet verified.
    #[inline]
    fn check(&self, from: usize, to: usize) -> bool {
        self.unverified.load(Ordering::Acquire) == 0 || self.check_chunks(from, to)
    }

    #[cold]
    fn check_chunks(&self, from: usize, to: usize) -> bool {
        let first = (from - HEADER_BYTES) / CHUNK_BYTES;
        let last = (to.max(from + 1) - 1 - HEADER_BYTES) / CHUNK_BYTES;
        (first..=last).all(|c| self.verify_chunk(c))
    }

    /// Verifies chunk `c` unless it already was; false when it fails its sum (the
    /// damage is kept for [`Table::damage`]).
    fn verify_chunk(&self, c: usize) -> bool {
        let (word, bit) = (&self.verified[c / 64], 1u64 << (c % 64));
        if word.load(Ordering::Acquire) & bit != 0 {
            return true;
        }
        let from = HEADER_BYTES + c * CHUNK_BYTES;
        let to = (from + CHUNK_BYTES).min(HEADER_BYTES + self.body_bytes);
        let sum = &self.map[self.sums_at + c * 32..self.sums_at + c * 32 + 32];
        if blake3::hash(&self.map[from..to]).as_bytes()[..] == sum[..] {
            if word.fetch_or(bit, Ordering::AcqRel) & bit == 0 {
                self.unverified.fetch_sub(1, Ordering::AcqRel);
            }
            true
        } else {
            let _ = self.damage.compare_exchange(0, from as u64 + 1, Ordering::AcqRel, Ordering::Acquire);
            false
        }
    }

    /// The damage a read found in a table opened with [`Table::open_lazy`] (or
    /// [`Table::verify_rest`] did): the first failing chunk. Reads of it got zeroes.
    pub fn damage(&self) -> Option<TableError> {
        match self.damage.load(Ordering::Acquire) {
            0 => None,
            at => Some(TableError::Damaged {
                path: self.path.clone(),
                offset: at - 1,
                reason: "chunk fails its checksum",
            }),
        }
    }

    /// Bytes of the body not yet verified (0 for a table opened whole or just written).
    pub fn unverified_bytes(&self) -> u64 {
        (self.unverified.load(Ordering::Acquire) as u64 * CHUNK_BYTES as u64).min(self.body_bytes as u64)
    }

    /// Verifies every chunk no read verified yet, one after another on the calling
    /// thread (the engine's background thread scrubs tables opened lazily). Stops early,
    /// `Ok(false)`, when `stop` is set; `Err` on the first damaged chunk.
    pub fn verify_rest(&self, stop: &AtomicBool) -> Result<bool, TableError> {
        for c in 0..self.body_bytes.div_ceil(CHUNK_BYTES) {
            if self.unverified.load(Ordering::Acquire) == 0 {
                break;
            }
            if stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            if !self.verify_chunk(c) {
                return Err(self.damage().unwrap_or(TableError::Damaged {
                    path: self.path.clone(),
                    offset: (HEADER_BYTES + c * CHUNK_BYTES) as u64,
                    reason: "chunk fails its checksum",
                }));
            }
        }
        Ok(true)
    }

    /// Bytes of the Bloom filter: the memory [`Table::cache_filter`] takes.
    pub fn filter_bytes(&self) -> usize {
        // The section was checked against the mapping's length at open: it fits.
        usize::try_from(self.bloom_blocks).map_or(0, |blocks| blocks * BLOOM_BLOCK_BYTES)
    }

    /// Copies the Bloom filter into anonymous memory on huge pages where the kernel
    /// allows them (transparent huge pages, `madvise`), for probes to read from then on.
    /// Costs [`Table::filter_bytes`], which the caller budgets.
    ///
    /// Every lookup probes the filter of every run at a random place: read through the
    /// file's mapping (gigabytes of history on 4 KiB pages) nearly every probe misses
    /// the TLB as well as the cache, and under virtualization a TLB miss is a two-level
    /// page walk that even a software prefetch waits for. A copy on 2 MiB pages is a
    /// few TLB entries. The copy is of bytes already verified.
    ///
    /// (Fences, the first bytes of every 32nd key beside the filter so that a search
    /// reads one stretch of the file, were tried too: no difference in `ledger-bench
    /// long` at 16 M, two alternating pairs, so they are not kept.)
    pub fn cache_filter(&mut self) -> Result<(), TableError> {
        let bytes = self.filter_bytes();
        if !self.check(self.bloom_at, self.bloom_at + bytes) {
            return Err(self.damage().unwrap_or(TableError::Damaged {
                path: self.path.clone(),
                offset: self.bloom_at as u64,
                reason: "filter fails its checksum",
            }));
        }
        let mut copy =
            memmap2::MmapMut::map_anon(bytes).map_err(IoFailure::at("map memory for a filter", &self.path))?;
        #[cfg(target_os = "linux")]
        {
            // Best effort: without huge pages the copy still spares the file's page walk.
            let _ = copy.advise(memmap2::Advice::HugePage);
        }
        copy.copy_from_slice(&self.map[self.bloom_at..self.bloom_at + bytes]);
        self.filter = Some(copy);
        Ok(())
    }

    /// Whether [`Table::cache_filter`] holds the filter in memory.
    pub fn filter_cached(&self) -> bool {
        self.filter.is_some()
    }

    fn bloom_block(&self, block: usize) -> &[u8] {
        let at = block * BLOOM_BLOCK_BYTES;
        match &self.filter {
            Some(copy) => &copy[at..at + BLOOM_BLOCK_BYTES],
            None => {
                let from = self.bloom_at + at;
                if self.check(from, from + BLOOM_BLOCK_BYTES) {
                    &self.map[from..from + BLOOM_BLOCK_BYTES]
                } else {
                    &POISON[..BLOOM_BLOCK_BYTES]
                }
            }
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// True when the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bytes of the file.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The entry at `pos` (panics past the end: a caller's bug). Zeroes when its chunk
    /// is damaged (see [`Table::open_lazy`]).
    pub fn entry(&self, pos: usize) -> &[u8] {
        assert!(pos < self.entries, "entry past the end of a table");
        let at = self.entries_at + pos * self.entry_bytes;
        if self.check(at, at + self.entry_bytes) {
            &self.map[at..at + self.entry_bytes]
        } else {
            &POISON[..self.entry_bytes]
        }
    }

    fn key_at(&self, pos: usize) -> &[u8] {
        &self.entry(pos)[..KEY_BYTES]
    }

    /// False when the key is certainly absent (the Bloom filter).
    pub fn may_contain(&self, key: &Key) -> bool {
        self.may_contain_hashed(key_hash(key))
    }

    /// [`Table::may_contain`] with the key's [`key_hash`] computed once by the caller.
    pub fn may_contain_hashed(&self, hash: u64) -> bool {
        let (block, bits) = bloom_slots(hash, self.bloom_blocks);
        let block = self.bloom_block(block);
        bits.iter().all(|&bit| block[usize::from(bit / 8)] & (1 << (bit % 8)) != 0)
    }

    /// Starts loading the Bloom block of a key into the cache without waiting for it, so
    /// that a lookup a little later finds it there (the engine prefetches the ids a few
    /// hundred transactions ahead of the one it judges: their misses overlap instead of
    /// coming one after another).
    pub fn prefetch_hashed(&self, hash: u64) {
        let (block, _) = bloom_slots(hash, self.bloom_blocks);
        prefetch(&self.bloom_block(block)[0]);
    }

    /// For a key the Bloom filter admits, runs the first `probe - 1` probes of its
    /// search (whose entries earlier calls should have loaded by now) and starts loading
    /// the entry of probe number `probe`, without waiting for it; false when the filter
    /// rules the key out. A search's probes depend on each other; called for probes
    /// 1, 2, ... a few keys apart, their misses overlap with other keys' instead.
    pub fn prefetch_probe_hashed(&self, key: &Key, hash: u64, probe: u32) -> bool {
        if self.entries == 0 || !self.may_contain_hashed(hash) {
            return false;
        }
        if let Err(pos) = self.search_until(key, probe) {
            prefetch(&self.map[self.entries_at + pos * self.entry_bytes]);
        }
        true
    }

    /// Position of the entry with `key`.
    pub fn find(&self, key: &Key) -> Option<usize> {
        self.find_hashed(key, key_hash(key))
    }

    /// [`Table::find`] with the key's [`key_hash`] computed once by the caller.
    pub fn find_hashed(&self, key: &Key, hash: u64) -> Option<usize> {
        if self.entries == 0 || !self.may_contain_hashed(hash) {
            return None;
        }
        self.search(key)
    }

    /// Interpolation search on the keys' first 8 bytes (keys of a ledger are spread
    /// evenly: a few probes, log log n expected), turning into a binary search after
    /// [`INTERPOLATION_ROUNDS`] probes, so that keys spread unevenly (ids with a time
    /// prefix, say) cost at most that many probes more than a binary search.
    ///
    /// (The limit was 4. With even keys the probes converge from one side as often as
    /// not, the range's far end still the table's end, so the binary search that
    /// followed often took some twenty more probes, each a cache and TLB miss in a
    /// file of gigabytes: 6.6 probes over 4.9 pages on average for 4 M keys, against
    /// 4.2 over 2.5 with 8 rounds, in a model of this loop.)
    fn search(&self, key: &Key) -> Option<usize> {
        self.search_until(key, 0).ok().flatten()
    }

    /// The search, stopped before reading the entry of probe number `stop` (never, when
    /// 0): `Err(position)` of that entry then. The interpolation's anchors are the
    /// entries probed so far (the table's ends at first), so no entry is read that is
    /// not a probe: reading the neighbour of the last probe, as an earlier version did,
    /// was one more miss per round.
    fn search_until(&self, key: &Key, stop: u32) -> Result<Option<usize>, usize> {
        let target = prefix(key);
        let n = self.entries;
        let (mut lo, mut hi) = (0usize, n); // the key, if present, is in lo..hi
        // Positions and prefixes bracketing the target once probes have set them.
        let (mut low, mut low_prefix) = (0usize, prefix(self.key_at(0)));
        let (mut high, mut high_prefix) = (n - 1, prefix(self.key_at(n - 1)));
        let mut rounds = 0;
        while hi - lo > 16 {
            let mid = if rounds < INTERPOLATION_ROUNDS
                && high_prefix > low_prefix
                && target >= low_prefix
                && target <= high_prefix
            {
                let span = (high - low) as u128;
                let guess =
                    low + ((u128::from(target - low_prefix) * span) / u128::from(high_prefix - low_prefix)) as usize;
                guess.clamp(lo, hi - 1)
            } else {
                lo + (hi - lo) / 2
            };
            rounds += 1;
            if rounds == stop {
                return Err(mid);
            }
            let probed = self.key_at(mid);
            match probed.cmp(&key[..]) {
                std::cmp::Ordering::Equal => return Ok(Some(mid)),
                std::cmp::Ordering::Less => (lo, low, low_prefix) = (mid + 1, mid, prefix(probed)),
                std::cmp::Ordering::Greater => (hi, high, high_prefix) = (mid, mid, prefix(probed)),
            }
        }
        if rounds + 1 == stop {
            return Err(lo);
        }
        Ok((lo..hi).find(|&p| self.key_at(p) == &key[..]))
    }

    /// The entry with `key`.
    pub fn get(&self, key: &Key) -> Option<&[u8]> {
        self.find(key).map(|p| self.entry(p))
    }

    /// Secondary entries.
    pub fn secondary_len(&self) -> usize {
        self.secondary
    }

    /// The secondary entry at `pos`: `(group, order, aux, key)`.
    pub fn secondary_at(&self, pos: usize) -> (u64, u64, u64, Key) {
        assert!(pos < self.secondary, "secondary entry past the end of a table");
        let at = self.secondary_at + pos * SECONDARY_BYTES;
        let bytes = if self.check(at, at + SECONDARY_BYTES) {
            &self.map[at..at + SECONDARY_BYTES]
        } else {
            &POISON[..SECONDARY_BYTES]
        };
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(&bytes[24..40]);
        (word(bytes, 0), word(bytes, 8), word(bytes, 16), key)
    }

    /// Positions of the first index's entries of `group` with `order` in `orders` and
    /// `aux` in `auxes` (both half-open, an end of `u64::MAX` meaning no upper bound),
    /// in order: two binary searches for each end. Positions are for
    /// [`Table::secondary_at`].
    pub fn secondary_bounds(
        &self,
        group: u64,
        orders: std::ops::Range<u64>,
        auxes: std::ops::Range<u64>,
    ) -> std::ops::Range<usize> {
        self.bounds_in(0..self.secondary - self.second, group, orders, auxes)
    }

    /// As [`Table::secondary_bounds`], in the second index.
    pub fn second_bounds(
        &self,
        group: u64,
        orders: std::ops::Range<u64>,
        auxes: std::ops::Range<u64>,
    ) -> std::ops::Range<usize> {
        self.bounds_in(self.secondary - self.second..self.secondary, group, orders, auxes)
    }

    fn bounds_in(
        &self,
        index: std::ops::Range<usize>,
        group: u64,
        orders: std::ops::Range<u64>,
        auxes: std::ops::Range<u64>,
    ) -> std::ops::Range<usize> {
        let first = self
            .partition(&index, |g, o, _| (g, o) < (group, orders.start))
            .max(self.partition(&index, |g, _, a| g < group || (g == group && a < auxes.start)));
        // An end of u64::MAX is no bound at all (so u64::MAX itself is included).
        let end = self
            .partition(&index, |g, o, _| g < group || (g == group && (orders.end == u64::MAX || o < orders.end)))
            .min(
                self.partition(&index, |g, _, a| g < group || (g == group && (auxes.end == u64::MAX || a < auxes.end))),
            );
        first..end.max(first)
    }

    /// The first position of `index` where `before` turns false.
    fn partition(&self, index: &std::ops::Range<usize>, before: impl Fn(u64, u64, u64) -> bool) -> usize {
        let (mut lo, mut hi) = (index.start, index.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (g, o, a, _) = self.secondary_at(mid);
            if before(g, o, a) { lo = mid + 1 } else { hi = mid }
        }
        lo
    }

    /// Entries of the second index.
    pub fn second_len(&self) -> usize {
        self.second
    }
}

/// Filter insertions in flight while a table is built (see [`TableBuilder::push_entry`]).
const BLOOM_QUEUE: usize = 16;

/// A zeroed buffer whose whole 2 MiB stretches the kernel is asked to back with huge
/// pages (transparent huge pages, `madvise`): a filter being built is written at
/// random, and on 4 KiB pages nearly every write missed the TLB too.
fn huge_zeroed(len: usize) -> Vec<u8> {
    let buffer = vec![0u8; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buffer.as_ptr() as usize;
        let (from, to) = (start.next_multiple_of(HUGE), (start + len) / HUGE * HUGE);
        if to > from {
            // SAFETY: the range lies inside `buffer`'s allocation, is page-aligned, and
            // the advice changes no contents (a zeroed page stays zeroed); best effort.
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    buffer
}

/// A hint to the CPU to start loading `byte`'s cache line; never faults, never waits.
#[inline(always)]
/// As [`prefetch`], from a raw pointer: for memory other threads write through atomics,
/// where a `&u8` must not be made.
pub(crate) fn prefetch_raw(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

pub(crate) fn prefetch(byte: &u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch only hints the cache; the pointer comes from a live reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(byte).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    std::hint::black_box(*byte);
}

/// Interpolated probes before [`Table`]'s search turns binary.
const INTERPOLATION_ROUNDS: u32 = 8;

fn prefix(key: &[u8]) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&key[..8]);
    u64::from_be_bytes(p)
}

/// Verifies every chunk of `body` against `sums`, on as many threads as there are
/// cores; returns the first failing chunk.
fn verify_chunks(body: &[u8], sums: &[u8]) -> Result<(), usize> {
    let chunks = body.len().div_ceil(CHUNK_BYTES);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8).min(chunks.max(1));
    let per = chunks.div_ceil(threads).max(1);
    let check = |from: usize, to: usize| -> Result<(), usize> {
        for c in from..to {
            let bytes = &body[c * CHUNK_BYTES..((c + 1) * CHUNK_BYTES).min(body.len())];
            if blake3::hash(bytes).as_bytes()[..] != sums[c * 32..c * 32 + 32] {
                return Err(c);
            }
        }
        Ok(())
    };
    if threads <= 1 {
        return check(0, chunks);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| (t * per, ((t + 1) * per).min(chunks)))
            .map(|(a, b)| s.spawn(move || check(a, b)))
            .collect();
        // The first failing chunk of all: threads check ranges in order.
        let failed = handles.into_iter().filter_map(|h| h.join().unwrap_or(Err(0)).err()).min();
        failed.map_or(Ok(()), Err)
    })
}

/// Removes a table file (a merged-away or unreferenced one), through the seam.
pub fn remove_table(storage: &Storage, path: &Path) -> Result<(), TableError> {
    storage
        .run(StorageOp::RemoveFile, path, 0..0, || fs::remove_file(path))
        .map_err(IoFailure::at("remove table", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&mix(n).to_be_bytes());
        k[8..].copy_from_slice(&n.to_be_bytes());
        k
    }

    #[test]
    fn entries_are_found_and_absent_keys_mostly_filtered() {
        let dir = tempfile::tempdir().expect("test step");
        let n = 50_000;
        let mut keys: Vec<Key> = (0..n).map(key).collect();
        keys.sort();
        let mut b = TableBuilder::create(&Storage::os(), dir.path(), "t.tbl", 24, n).expect("test step");
        for k in &keys {
            let mut e = [0u8; 24];
            e[..16].copy_from_slice(k);
            e[16..].copy_from_slice(&k[8..]);
            b.push_entry(&e).expect("test step");
        }
        let mut sec: Vec<(u64, u64)> = (0..n).map(|i| (i % 7, i)).collect();
        sec.sort();
        for (g, o) in &sec {
            b.push_secondary(*g, *o, o * 10, &key(*o)).expect("test step");
        }
        for i in 0..100u64 {
            b.push_second(i / 10, i, i, &key(i)).expect("test step");
        }
        let info = b.finish().expect("test step");
        assert_eq!(info.entries, n);
        let t = Table::open(&info.path).expect("test step");
        for i in 0..n {
            let e = t.get(&key(i)).expect("present");
            assert_eq!(&e[16..], &i.to_be_bytes());
        }
        let passed = (n..n + 100_000).filter(|&i| t.may_contain(&key(i))).count();
        assert!(passed < 2_000, "{passed} of 100000 absent keys passed the filter");
        assert!((n..n + 10_000).all(|i| t.get(&key(i)).is_none()));
        // The filter copied into memory answers exactly as the mapped one.
        let mut cached = Table::open(&info.path).expect("test step");
        assert!(!cached.filter_cached());
        cached.cache_filter().expect("test step");
        assert!(cached.filter_cached());
        assert_eq!(cached.filter_bytes(), t.filter_bytes());
        assert!((0..n + 100_000).all(|i| cached.may_contain(&key(i)) == t.may_contain(&key(i))));
        assert!((0..n).all(|i| cached.find(&key(i)) == t.find(&key(i)) && t.find(&key(i)).is_some()));
        assert!((n..n + 10_000).all(|i| cached.search(&key(i)).is_none()));
        let all = 0..u64::MAX;
        let r = t.secondary_bounds(3, all.clone(), all.clone());
        assert_eq!(r.len(), (0..n).filter(|i| i % 7 == 3).count());
        let orders: Vec<u64> = r.clone().map(|p| t.secondary_at(p).1).collect();
        assert!(orders.windows(2).all(|w| w[0] < w[1]));
        assert!(r.clone().all(|p| {
            let (g, o, a, k) = t.secondary_at(p);
            g == 3 && a == o * 10 && k == key(o)
        }));
        let mid = t.secondary_bounds(3, 100..200, all.clone());
        assert!(mid.clone().all(|p| (100..200).contains(&t.secondary_at(p).1)));
        assert_eq!(mid.len(), (100..200).filter(|i| i % 7 == 3).count());
        let by_aux = t.secondary_bounds(3, 150..u64::MAX, 1000..1900);
        assert_eq!(by_aux.len(), (150..190).filter(|i| i % 7 == 3).count(), "both bounds apply");
        assert!(t.secondary_bounds(99, all.clone(), all.clone()).is_empty());
        assert_eq!(t.second_len(), 100);
        let r = t.second_bounds(3, all.clone(), all.clone());
        assert_eq!(r.clone().map(|p| t.secondary_at(p).1).collect::<Vec<_>>(), (30..40).collect::<Vec<_>>());
        assert_eq!(t.second_bounds(3, 35..u64::MAX, all.clone()).len(), 5);
        assert!(t.second_bounds(3, all.clone(), all.clone()).all(|p| t.secondary_at(p).0 == 3));
        assert_eq!(t.secondary_bounds(3, all.clone(), all).len(), (0..n).filter(|i| i % 7 == 3).count());
    }

    /// Ids are chosen by callers: many share their first 8 bytes (a time prefix, a
    /// counter in the low half), and clusters sit far apart. The search must find each
    /// and miss every absent one whatever the spread.
    #[test]
    fn keys_spread_unevenly_are_all_found() {
        let dir = tempfile::tempdir().expect("test step");
        let mut keys: Vec<Key> = Vec::new();
        for cluster in [0u64, 1, 2, 1 << 40, u64::MAX - 3] {
            for i in 0..3_000u64 {
                let mut k = [0u8; 16];
                // A third share one prefix; the rest climb by one, or by squares.
                let high = match i % 3 {
                    0 => cluster,
                    1 => cluster.saturating_add(i),
                    _ => cluster.saturating_add(i * i),
                };
                k[..8].copy_from_slice(&high.to_be_bytes());
                k[8..].copy_from_slice(&i.to_be_bytes());
                keys.push(k);
            }
        }
        keys.sort();
        keys.dedup();
        let n = keys.len() as u64;
        let mut b = TableBuilder::create(&Storage::os(), dir.path(), "u.tbl", 16, n).expect("test step");
        for k in &keys {
            b.push_entry(k).expect("test step");
        }
        let info = b.finish().expect("test step");
        let t = Table::open(&info.path).expect("test step");
        let mut cached = Table::open(&info.path).expect("test step");
        cached.cache_filter().expect("test step");
        for t in [&t, &cached] {
            for (pos, k) in keys.iter().enumerate() {
                assert_eq!(t.search(k), Some(pos), "key {k:?}");
            }
            for k in &keys {
                let mut absent = *k;
                absent[15] ^= 0x80; // same prefix, a different tail: inside a cluster
                if keys.binary_search(&absent).is_err() {
                    assert_eq!(t.search(&absent), None, "absent key {absent:?}");
                }
            }
            assert_eq!(t.search(&[0u8; 16]), keys.binary_search(&[0u8; 16]).ok());
            assert_eq!(t.search(&[0xff; 16]), None);
        }
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_refused() {
        let dir = tempfile::tempdir().expect("test step");
        let mut b = TableBuilder::create(&Storage::os(), dir.path(), "t.tbl", 16, 3000).expect("test step");
        let mut keys: Vec<Key> = (0..3000).map(key).collect();
        keys.sort();
        for k in &keys {
            b.push_entry(k).expect("test step");
        }
        let info = b.finish().expect("test step");
        let good = fs::read(&info.path).expect("test step");
        assert!(Table::open(&info.path).is_ok());
        let step = (good.len() / 97).max(1);
        for at in (0..good.len()).step_by(step).chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            fs::write(&info.path, &bad).expect("test step");
            assert!(matches!(Table::open(&info.path), Err(TableError::Damaged { .. })), "flip at {at} accepted");
        }
        for cut in [0, 10, 64, good.len() / 2, good.len() - 1] {
            fs::write(&info.path, &good[..cut]).expect("test step");
            assert!(matches!(Table::open(&info.path), Err(TableError::Damaged { .. })), "cut at {cut} accepted");
        }
    }

    /// A table opened lazily verifies each chunk on its first read: a flipped byte in
    /// an entry chunk does not stop the open, reads elsewhere see true bytes, the read
    /// of the damaged chunk sees zeroes (never the flipped bytes) and the damage is kept;
    /// the background scrub finds it whether or not a read did.
    #[test]
    fn a_lazily_opened_table_verifies_chunks_as_they_are_read() {
        let dir = tempfile::tempdir().expect("test step");
        let n: u64 = 40_000; // 32-byte entries: about 20 chunks of entries
        let half = 20_000usize;
        let mut keys: Vec<Key> = (0..n).map(key).collect();
        keys.sort();
        let mut b = TableBuilder::create(&Storage::os(), dir.path(), "l.tbl", 32, n).expect("test step");
        for (i, k) in keys.iter().enumerate() {
            let mut e = [0u8; 32];
            e[..16].copy_from_slice(k);
            e[16..24].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            b.push_entry(&e).expect("test step");
        }
        let info = b.finish().expect("test step");
        let never = AtomicBool::new(false);

        // Intact: nothing is hashed at open; reads verify their chunks; the scrub the rest.
        let t = Table::open_lazy(&info.path).expect("test step");
        let body = t.body_bytes as u64;
        assert_eq!(t.unverified_bytes(), body, "no chunk hashed at open");
        assert!(t.find(&keys[7]).is_some());
        assert!(t.unverified_bytes() < body, "a read verified its chunks");
        assert!(t.verify_rest(&never).expect("test step"));
        assert_eq!((t.unverified_bytes(), t.damage().is_none()), (0, true));
        assert!(keys.iter().all(|k| t.find(k).is_some()));
        let stop = AtomicBool::new(true);
        let fresh = Table::open_lazy(&info.path).expect("test step");
        assert!(!fresh.verify_rest(&stop).expect("test step"), "a set stop flag ends the scrub");
        drop((t, fresh));

        // A flipped byte in the entry at the middle of the table.
        let mut bytes = fs::read(&info.path).expect("test step");
        let victim = half;
        let at = HEADER_BYTES + victim * 32 + 20;
        bytes[at] ^= 0x40;
        fs::write(&info.path, &bytes).expect("test step");
        assert!(matches!(Table::open(&info.path), Err(TableError::Damaged { .. })), "a whole open refuses it");
        let t = Table::open_lazy(&info.path).expect("a lazy open does not read the chunk");
        assert!(t.find(&keys[0]).is_some() && t.damage().is_none(), "another chunk reads true");
        assert_eq!(t.entry(victim), &[0u8; 32][..], "the damaged chunk reads as zeroes, never as its bytes");
        let chunk_start = (HEADER_BYTES + (at - HEADER_BYTES) / CHUNK_BYTES * CHUNK_BYTES) as u64;
        match t.damage() {
            Some(TableError::Damaged { offset, path, .. }) => {
                assert_eq!((offset, path), (chunk_start, info.path.clone()))
            }
            other => panic!("damage not kept: {other:?}"),
        }
        let scrub = Table::open_lazy(&info.path).expect("test step");
        match scrub.verify_rest(&never) {
            Err(TableError::Damaged { offset, .. }) => assert_eq!(offset, chunk_start, "the scrub finds it unread"),
            other => panic!("the scrub missed the damage: {other:?}"),
        }
        assert!(scrub.damage().is_some());
    }

    #[test]
    fn misuse_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("test step");
        let mut b = TableBuilder::create(&Storage::os(), dir.path(), "t.tbl", 16, 10).expect("test step");
        b.push_entry(&key(2)).expect("test step");
        assert!(matches!(b.push_entry(&key(2)), Err(TableError::Misuse { .. })), "a repeated key");
        assert!(matches!(b.push_entry(&[0u8; 16]), Err(TableError::Misuse { .. })), "a smaller key");
        assert!(matches!(b.push_entry(&[0u8; 8]), Err(TableError::Misuse { .. })));
        drop(b);
        assert_eq!(fs::read_dir(dir.path()).expect("test step").count(), 0, "the temporary file is removed");
    }
}
