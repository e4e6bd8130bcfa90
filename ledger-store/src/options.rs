//! Options of a log: segment size and durability.

/// Default size of a segment file: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: usize = 64 << 20;
/// Smallest segment size accepted (two pages: a header and at least one small frame).
pub const SEGMENT_BYTES_MIN: usize = 8 << 10;
/// Largest segment size accepted: 1 TiB.
pub const SEGMENT_BYTES_MAX: usize = 1 << 40;
/// Segment sizes are whole pages so that syncs of one segment never touch another.
pub const SEGMENT_BYTES_MULTIPLE: usize = 4096;

const _: () = assert!(SEGMENT_BYTES_DEFAULT.is_multiple_of(SEGMENT_BYTES_MULTIPLE));
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(SEGMENT_BYTES_MULTIPLE));

/// What a [`Log::commit`](crate::Log::commit) guarantees about a crash after it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Commit publishes the group without syncing. The frames live in the kernel's page
    /// cache: they survive the process being killed (even with SIGKILL), but an
    /// operating-system crash or power loss may lose any frames committed since the
    /// last [`Log::sync`](crate::Log::sync); recovery then cuts them as a torn tail.
    None,
    /// Commit writes the group back to stable storage (one data sync of the segment
    /// file, `fdatasync`) before it returns. Every committed frame survives a process
    /// kill, an operating-system crash and a power loss, given a device that honours
    /// cache flushes.
    #[default]
    SyncData,
}

/// How to open a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    pub(crate) segment_bytes: usize,
    pub(crate) durability: Durability,
    pub(crate) deferred_publish: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions { segment_bytes: SEGMENT_BYTES_DEFAULT, durability: Durability::SyncData, deferred_publish: false }
    }
}

impl LogOptions {
    /// 64 MiB segments, [`Durability::SyncData`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Size of new segment files, a multiple of 4096 between [`SEGMENT_BYTES_MIN`] and
    /// [`SEGMENT_BYTES_MAX`]. Existing segments keep the size they were made with.
    pub fn segment_bytes(mut self, segment_bytes: usize) -> Self {
        self.segment_bytes = segment_bytes;
        self
    }

    /// What a commit guarantees; see [`Durability`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// A replicated log's mode: a commit makes frames durable without showing them to
    /// readers, which see only what [`Log::publish_through`](crate::Log::publish_through)
    /// published (what a quorum has); every frame ends its own group, so the log can be
    /// cut after any frame; and the durable frames above the published ones may be
    /// removed again, crash-safely, by [`Log::truncate_from`](crate::Log::truncate_from)
    /// (a follower's log that conflicts with its new leader's). Opening publishes
    /// nothing. Off by default.
    pub fn deferred_publish(mut self, deferred: bool) -> Self {
        self.deferred_publish = deferred;
        self
    }

    /// Whether commits publish (see [`LogOptions::deferred_publish`]).
    pub fn get_deferred_publish(&self) -> bool {
        self.deferred_publish
    }

    /// The configured segment size.
    pub fn get_segment_bytes(&self) -> usize {
        self.segment_bytes
    }

    /// The configured durability.
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.segment_bytes < SEGMENT_BYTES_MIN {
            return Err("segment_bytes is below the minimum of 8 KiB");
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err("segment_bytes is above the maximum of 1 TiB");
        }
        if !self.segment_bytes.is_multiple_of(SEGMENT_BYTES_MULTIPLE) {
            return Err("segment_bytes is not a multiple of 4096");
        }
        Ok(())
    }
}
