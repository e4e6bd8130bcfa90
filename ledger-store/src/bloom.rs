//! A Bloom filter in memory that threads add keys to while others probe it: one filter
//! over the keys of many tables, so that a lookup of a key in none of them costs one
//! probe instead of one per table.
//!
//! Same layout and hashing as a table's own filter (one 512-bit block per key,
//! [`BLOOM_PROBES`](crate::table::BLOOM_PROBES) bits in it, placed by [`key_hash`](crate::table::key_hash)), with
//! its words as atomics: an insert sets bits with `fetch_or`, a probe reads them with
//! plain (relaxed) loads. A probe may miss an insert that runs concurrently with it;
//! a caller that needs a key found makes the insert happen before the probe (the
//! engine inserts a run's keys before it publishes the run, under the lock readers
//! take). Keys are never removed.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::{MmapMut, MmapRaw};

use crate::table::{BLOOM_BITS_PER_KEY, Table, TableError, bloom_slots, key_hash, prefetch_raw};

/// u64 words per 512-bit block.
const BLOCK_WORDS: usize = 8;
/// Inserts in flight while a table's keys are added (their blocks prefetched first).
const INSERT_QUEUE: usize = 16;

/// A concurrent Bloom filter sized for a number of keys (see the module).
pub struct AtomicBloom {
    /// Anonymous memory, on huge pages where the kernel allows them.
    map: MmapRaw,
    blocks: u64,
    capacity: u64,
}

impl std::fmt::Debug for AtomicBloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicBloom").field("capacity", &self.capacity).field("bytes", &self.bytes()).finish()
    }
}

impl AtomicBloom {
    /// An empty filter for about `capacity` keys ([`BLOOM_BITS_PER_KEY`] bits each: about
    /// 0.5% of probes for absent keys pass it at that many keys, more beyond).
    pub fn with_capacity(capacity: u64) -> io::Result<AtomicBloom> {
        let blocks = capacity.saturating_mul(BLOOM_BITS_PER_KEY as u64).div_ceil(512).max(1);
        let bytes = usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(BLOCK_WORDS * 8))
            .ok_or_else(|| io::Error::new(io::ErrorKind::OutOfMemory, "filter larger than memory"))?;
        let map = MmapMut::map_anon(bytes)?;
        #[cfg(target_os = "linux")]
        {
            // Best effort, before any page is touched: probes land anywhere in the
            // filter, and on 4 KiB pages nearly every one would miss the TLB too.
            let _ = map.advise(memmap2::Advice::HugePage);
        }
        Ok(AtomicBloom { map: MmapRaw::from(map), blocks, capacity })
    }

    /// The keys it was sized for.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes of memory it holds.
    pub fn bytes(&self) -> usize {
        self.map.len()
    }

    fn word(&self, index: usize) -> &AtomicU64 {
        debug_assert!(index < self.map.len() / 8);
        // SAFETY: `index` is inside the mapping (a block below `blocks` times its words),
        // which is page-aligned, so every word is aligned for an AtomicU64; the mapping
        // lives as long as `self`, and every access to it goes through atomics.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast::<u64>().add(index)) }
    }

    /// Adds a key by its [`key_hash`].
    pub fn insert_hashed(&self, hash: u64) {
        let (block, bits) = bloom_slots(hash, self.blocks);
        let mut masks = [0u64; BLOCK_WORDS];
        for bit in bits {
            masks[usize::from(bit / 64)] |= 1 << (bit % 64);
        }
        for (i, mask) in masks.into_iter().enumerate() {
            if mask != 0 {
                self.word(block * BLOCK_WORDS + i).fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    /// False when the key with this [`key_hash`] was certainly never inserted.
    pub fn may_contain_hashed(&self, hash: u64) -> bool {
        let (block, bits) = bloom_slots(hash, self.blocks);
        bits.iter().all(|&bit| {
            self.word(block * BLOCK_WORDS + usize::from(bit / 64)).load(Ordering::Relaxed) & (1 << (bit % 64)) != 0
        })
    }

    /// Starts loading the block of this key's hash into the cache, without waiting.
    pub fn prefetch_hashed(&self, hash: u64) {
        let (block, _) = bloom_slots(hash, self.blocks);
        // The block's address, never a reference (other threads write it): inside the
        // mapping, since `block` is below `blocks`.
        prefetch_raw(self.map.as_ptr().wrapping_add(block * BLOCK_WORDS * 8));
    }

    /// Adds every key of `table`, in order, a few blocks prefetched ahead (the blocks
    /// are random: each insert is otherwise a cache miss). `Ok(false)` when `stop` was
    /// set first (some keys are then missing). A damaged chunk (zeroes instead of
    /// keys) is an error: the filter would miss that chunk's keys.
    pub fn insert_table(&self, table: &Table, stop: &AtomicBool) -> Result<bool, TableError> {
        let mut inserter = self.inserter();
        for pos in 0..table.len() {
            if pos % (1 << 16) == 0 && stop.load(Ordering::Acquire) {
                return Ok(false);
            }
            let mut key = [0u8; crate::table::KEY_BYTES];
            key.copy_from_slice(&table.entry(pos)[..crate::table::KEY_BYTES]);
            inserter.insert_hashed(key_hash(&key));
        }
        drop(inserter);
        match table.damage() {
            Some(damage) => Err(damage),
            None => Ok(true),
        }
    }

    /// An [`Inserter`] into this filter.
    pub fn inserter(&self) -> Inserter<'_> {
        Inserter { filter: self, queue: [0; INSERT_QUEUE], queued: 0 }
    }
}

/// Inserts keys into an [`AtomicBloom`] a few behind their prefetch: a key's block
/// starts loading when the key is given and is set `INSERT_QUEUE` keys later, so the
/// cache misses of random blocks overlap instead of following one another (inserting
/// each at once took 4% of a 20 M-transaction run's CPU on a checkpoint thread). Every
/// key given is in the filter once the inserter is dropped.
#[derive(Debug)]
pub struct Inserter<'a> {
    filter: &'a AtomicBloom,
    queue: [u64; INSERT_QUEUE],
    queued: usize,
}

impl Inserter<'_> {
    /// Adds a key by its [`key_hash`] (by the time the inserter is dropped).
    pub fn insert_hashed(&mut self, hash: u64) {
        self.filter.prefetch_hashed(hash);
        let slot = &mut self.queue[self.queued % INSERT_QUEUE];
        if self.queued >= INSERT_QUEUE {
            self.filter.insert_hashed(*slot);
        }
        *slot = hash;
        self.queued += 1;
    }
}

impl Drop for Inserter<'_> {
    fn drop(&mut self) {
        for at in self.queued.saturating_sub(INSERT_QUEUE)..self.queued {
            self.filter.insert_hashed(self.queue[at % INSERT_QUEUE]);
        }
    }
}

// SAFETY: the mapping is only ever accessed through atomics (see `word`).
unsafe impl Sync for AtomicBloom {}
// SAFETY: the mapping belongs to the value; nothing ties it to a thread.
unsafe impl Send for AtomicBloom {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::table::TableBuilder;

    fn key(i: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_be_bytes());
        k[8..].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
        k
    }

    #[test]
    fn every_inserted_key_is_found_and_few_absent_ones_pass() {
        let filter = AtomicBloom::with_capacity(100_000).unwrap();
        for i in 0..100_000 {
            filter.insert_hashed(key_hash(&key(i)));
        }
        assert!((0..100_000).all(|i| filter.may_contain_hashed(key_hash(&key(i)))));
        let passed = (100_000..200_000).filter(|&i| filter.may_contain_hashed(key_hash(&key(i)))).count();
        // 12 bits and 8 probes per key in one block: about 0.5% at capacity.
        assert!(passed < 1_500, "{passed} of 100000 absent keys passed");
        assert!(passed > 0, "a filter at capacity passes some absent keys");
    }

    #[test]
    fn an_inserter_has_put_every_key_in_once_dropped() {
        // Fewer keys than its queue, exactly as many, and many more.
        for n in [0u64, 5, INSERT_QUEUE as u64, 10_000] {
            let filter = AtomicBloom::with_capacity(10_000).unwrap();
            let mut inserter = filter.inserter();
            (0..n).for_each(|i| inserter.insert_hashed(key_hash(&key(i))));
            drop(inserter);
            let missing = (0..n).filter(|&i| !filter.may_contain_hashed(key_hash(&key(i)))).count();
            assert_eq!(missing, 0, "{missing} of {n} keys missing after the drop");
            let absent = (n..n + 10_000).filter(|&i| filter.may_contain_hashed(key_hash(&key(i)))).count();
            assert!(absent < 200, "{absent} absent keys pass with {n} inserted");
        }
    }

    #[test]
    fn a_tables_keys_are_added_from_another_thread_while_probes_run() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::Storage::default();
        let n = 50_000u64;
        let mut builder = TableBuilder::create(&storage, dir.path(), "t.tbl", 32, n).unwrap();
        for i in 0..n {
            let mut entry = [0u8; 32];
            entry[..16].copy_from_slice(&key(i * 2)); // increasing keys
            builder.push_entry(&entry).unwrap();
        }
        let info = builder.finish().unwrap();
        let table = Table::open(&info.path).unwrap();
        let filter = AtomicBloom::with_capacity(n).unwrap();
        assert!(!filter.may_contain_hashed(key_hash(&key(0))), "an empty filter holds nothing");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // Probes meanwhile see some of the keys or none: no tearing, no crash.
            s.spawn(|| (0..n).filter(|&i| filter.may_contain_hashed(key_hash(&key(i * 2)))).count());
            assert!(filter.insert_table(&table, &stop).unwrap());
        });
        assert!((0..n).all(|i| filter.may_contain_hashed(key_hash(&key(i * 2)))), "every key of the table");
        stop.store(true, Ordering::Release);
        let again = AtomicBloom::with_capacity(n).unwrap();
        assert!(!again.insert_table(&table, &stop).unwrap(), "a set stop gives up");
    }
}
