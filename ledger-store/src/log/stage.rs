//! The writer's staging buffer: where frames are built before they are written into
//! their segment file.
//!
//! The segment files are mapped read-only. Appended frames are encoded (and sealed)
//! here, in the writer's own anonymous memory, and reach the file with one positional
//! write per commit (or when the buffer fills, or at a roll-over). Writing through a
//! writable shared mapping instead would leave the page-table entries of the log's
//! pages dirty, and every write-back of them (each group commit's data sync) would
//! have to write-protect those entries again and shoot the stale translations out of
//! every other core's TLB with an inter-processor interrupt: measured at 0.1 to 0.5 µs
//! per transaction on the sequencer, growing with the cores busy with the engine's
//! background work. A read-only mapping has no dirty entries to clean.
//!
//! The buffer covers the file range `[base, base + len)` of the active segment: the
//! frames appended since they were last written out. It is allocated once (page
//! aligned, so frames keep the 16-byte alignment they have in the file) and grows only
//! for a frame larger than itself, when nothing else is in it.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// Default capacity: a few groups of the largest calls (8190 transactions of 128
/// bytes is 1 MiB) before a group has to be written out in parts.
pub(crate) const STAGE_BYTES: usize = 4 << 20;

const ALIGN: usize = 4096;

/// A page-aligned byte buffer standing for a range of the active segment.
#[derive(Debug)]
pub(crate) struct Stage {
    ptr: NonNull<u8>,
    capacity: usize,
    /// Offset in the segment file of the buffer's first byte.
    base: usize,
    /// Bytes in use.
    len: usize,
}

// SAFETY: the buffer is plain memory owned by the `Stage`; moving it to another thread
// moves that ownership. Shared access from the sealing thread goes through raw
// pointers handed out by `ptr_at`, under the writer's protocol (see `seal.rs`).
unsafe impl Send for Stage {}

impl Stage {
    /// A buffer of `capacity` bytes (rounded up to a page) standing for the file range
    /// starting at `base`.
    pub(crate) fn new(capacity: usize, base: usize) -> Stage {
        let capacity = capacity.max(ALIGN).next_multiple_of(ALIGN);
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(ptr) else { alloc::handle_alloc_error(layout) };
        Stage { ptr, capacity, base, len: 0 }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, ALIGN).expect("a stage's capacity is a page multiple below isize::MAX")
    }

    /// Offset in the file of the first staged byte.
    pub(crate) fn base(&self) -> usize {
        self.base
    }

    /// Offset in the file just past the last staged byte.
    pub(crate) fn end(&self) -> usize {
        self.base + self.len
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// True when `bytes` more fit.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.capacity - self.len >= bytes
    }

    /// Empties the buffer, which now stands for the file range starting at `base`, and
    /// makes room for at least `bytes` (reallocating only when that is more than its
    /// capacity). The caller must hold no pointer into the buffer.
    pub(crate) fn reset(&mut self, base: usize, bytes: usize) {
        self.base = base;
        self.len = 0;
        if bytes > self.capacity {
            let grown = Stage::new(bytes.next_power_of_two(), base);
            *self = grown;
        }
    }

    /// Appends `size` zeroed bytes at the end and returns them.
    ///
    /// # Panics
    /// When they do not fit ([`Stage::has_room`] says so first).
    pub(crate) fn push_zeroed(&mut self, size: usize) -> &mut [u8] {
        assert!(self.has_room(size), "a frame staged past the buffer's capacity");
        let at = self.len;
        self.len += size;
        // SAFETY: `at + size <= capacity`, inside the allocation; `&mut self` makes this
        // the only reference to the buffer, and the sealing thread only ever holds
        // ranges below `at` (handed over before this frame was appended).
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), size) };
        bytes.fill(0);
        bytes
    }

    /// The staged bytes of the file range `[from, to)`, mutably.
    ///
    /// # Panics
    /// When the range is not staged.
    pub(crate) fn range_mut(&mut self, from: usize, to: usize) -> &mut [u8] {
        let (at, len) = self.locate(from, to);
        // SAFETY: in bounds (checked by `locate`); `&mut self` is exclusive, and the
        // caller does not ask for a range handed to the sealing thread.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), len) }
    }

    /// Every staged byte.
    pub(crate) fn filled(&self) -> &[u8] {
        // SAFETY: `len <= capacity`; the bytes were initialised by `push_zeroed`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// A raw pointer to the staged bytes of `[from, to)`, for the sealing thread, and
    /// their length.
    pub(crate) fn raw_range(&mut self, from: usize, to: usize) -> (NonNull<u8>, usize) {
        let (at, len) = self.locate(from, to);
        // SAFETY: `at <= capacity`, inside (or one past) the allocation.
        (unsafe { self.ptr.add(at) }, len)
    }

    fn locate(&self, from: usize, to: usize) -> (usize, usize) {
        assert!(self.base <= from && from <= to && to <= self.end(), "a range outside the staged bytes");
        (from - self.base, to - from)
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // SAFETY: allocated by `Stage::new` with this very layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_frames_for_a_file_range_and_grows_for_a_large_one() {
        let mut stage = Stage::new(8192, 64);
        assert_eq!((stage.base(), stage.end(), stage.capacity()), (64, 64, 8192));
        stage.push_zeroed(48).copy_from_slice(&[7; 48]);
        let second = stage.push_zeroed(32);
        assert!(second.iter().all(|&b| b == 0), "staged bytes start zeroed");
        second[0] = 9;
        assert_eq!(stage.end(), 64 + 80);
        assert_eq!(stage.range_mut(112, 144)[0], 9, "ranges are file offsets");
        assert_eq!(stage.filled().len(), 80);
        assert_eq!(stage.ptr.as_ptr() as usize % ALIGN, 0, "page aligned");
        assert!(!stage.has_room(8192 - 79));

        stage.reset(144, 100);
        assert_eq!((stage.base(), stage.end(), stage.capacity()), (144, 144, 8192), "no reallocation");
        stage.push_zeroed(16);
        stage.reset(160, 20_000);
        assert_eq!((stage.base(), stage.end()), (160, 160));
        assert!(stage.capacity() >= 20_000 && stage.has_room(20_000), "grown for a large frame");
        assert!(stage.push_zeroed(20_000).iter().all(|&b| b == 0), "the grown buffer is zeroed where used");
    }

    #[test]
    #[should_panic(expected = "outside the staged bytes")]
    fn a_range_not_staged_is_refused() {
        let mut stage = Stage::new(4096, 64);
        stage.push_zeroed(32);
        let _ = stage.range_mut(32, 64);
    }
}
