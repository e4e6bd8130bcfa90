//! The segmented log: frames, segments, recovery, writer and readers.

pub(crate) mod frame;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod seal;
pub(crate) mod segment;
pub(crate) mod stage;
pub(crate) mod writer;
