//! The atomics this crate uses come in through this one module, so a model checker
//! (loom) can be swapped in here without touching the code that uses them.

pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
