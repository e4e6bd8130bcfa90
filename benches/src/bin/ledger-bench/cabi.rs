//! The C ABI as the long-history run calls it: `ledger_open` (options NULL, the
//! defaults a C caller gets), `ledger_submit`, `ledger_lookup` and `ledger_close`,
//! called through the exported symbols of the `ledger` crate exactly as a C program
//! would. This file holds all of the run's `unsafe`; everything else sees a safe
//! [`CLedger`].

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ledger::{LEDGER_ERR_NOT_FOUND, LEDGER_OK, ledger_id, ledger_tx, ledger_tx_record};

/// This thread's message for the last failed call.
fn last_error() -> String {
    // SAFETY: `ledger_last_error` returns a NUL-terminated string owned by the library,
    // valid until the next failing call on this thread; it is copied out at once.
    unsafe { CStr::from_ptr(ledger::ledger_last_error()) }.to_string_lossy().into_owned()
}

/// An open ledger handle; closed by [`CLedger::close`] (or, failing that, on drop).
#[derive(Debug)]
pub(crate) struct CLedger {
    handle: *mut ledger::ledger,
}

impl CLedger {
    /// `ledger_open(dir, NULL, &handle)`: the default options (durable, 64 MiB
    /// segments, the engine's default snapshot interval).
    pub(crate) fn open(dir: &Path) -> Result<CLedger, String> {
        let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| format!("{} holds a NUL", dir.display()))?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: `path` is NUL-terminated and outlives the call; NULL options are
        // allowed; `handle` is valid for writing one pointer.
        let status = unsafe { ledger::ledger_open(path.as_ptr(), std::ptr::null(), &mut handle) };
        if status != LEDGER_OK || handle.is_null() {
            return Err(format!("ledger_open({}): status {status}: {}", dir.display(), last_error()));
        }
        Ok(CLedger { handle })
    }

    /// `ledger_submit`: one call, `results[i]` gets the `LEDGER_TX_*` code of `txs[i]`.
    pub(crate) fn submit(&mut self, txs: &[ledger_tx], results: &mut [u32]) -> Result<(), String> {
        assert_eq!(txs.len(), results.len(), "one result per transaction");
        // SAFETY: the handle is open (closing consumes `self`); `txs` and `results` are
        // valid for `txs.len()` elements each and do not overlap.
        let status = unsafe { ledger::ledger_submit(self.handle, txs.as_ptr(), txs.len(), results.as_mut_ptr()) };
        if status != LEDGER_OK {
            return Err(format!("ledger_submit: status {status}: {}", last_error()));
        }
        Ok(())
    }

    /// `ledger_lookup`: the committed transaction with this id, `None` if there is none.
    pub(crate) fn lookup(&self, id: ledger_id) -> Result<Option<ledger_tx_record>, String> {
        let mut record = ledger_tx_record::default();
        // SAFETY: the handle is open; `record` is valid for writing one record.
        let status = unsafe { ledger::ledger_lookup(self.handle, id, &mut record) };
        match status {
            LEDGER_OK => Ok(Some(record)),
            LEDGER_ERR_NOT_FOUND => Ok(None),
            _ => Err(format!("ledger_lookup: status {status}: {}", last_error())),
        }
    }

    /// `ledger_stats_get`: the engine's tiers and checkpoints now.
    pub(crate) fn stats(&self) -> Result<ledger::ledger_stats, String> {
        let mut stats = ledger::ledger_stats::default();
        // SAFETY: the handle is open; `stats` is valid for writing one `ledger_stats`.
        let status = unsafe { ledger::ledger_stats_get(self.handle, &mut stats) };
        if status == LEDGER_OK {
            Ok(stats)
        } else {
            Err(format!("ledger_stats_get: status {status}: {}", last_error()))
        }
    }

    /// `ledger_close`: commits what is queued, stops the engine, releases the directory.
    /// It returns no status; a failure is only in `ledger_last_error`, which is
    /// returned here if it changed.
    pub(crate) fn close(mut self) -> Result<(), String> {
        let before = last_error();
        let handle = std::mem::replace(&mut self.handle, std::ptr::null_mut());
        // SAFETY: `handle` came from `ledger_open`, is closed once (the field is null
        // from now on, so drop does nothing) and no one else uses it.
        unsafe { ledger::ledger_close(handle) };
        let after = last_error();
        if after != before && !after.is_empty() { Err(format!("ledger_close: {after}")) } else { Ok(()) }
    }
}

impl Drop for CLedger {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: as in `close`: an open handle from `ledger_open`, closed once.
            unsafe { ledger::ledger_close(self.handle) };
        }
    }
}
