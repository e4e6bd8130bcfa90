//! `ledger-ffi`: the C ABI of the ledger (`include/ledger.h`), over `ledger-core`.
//!
//! The names, values, layouts and meanings are the contract of
//! `shared/design/ffi-contract.md`. Every export goes through [`landing`]: it catches
//! panics (reported as `LEDGER_ERR_INTERNAL`, never unwinding into C), turns failures
//! into a status code, and keeps this thread's message for `ledger_last_error`. Raw
//! pointers are checked for null before use; the `unsafe` here is limited to reading
//! and writing through the caller's pointers, each with a `// SAFETY:` line.
#![allow(non_camel_case_types)] // the C names are the contract
#![deny(unsafe_op_in_unsafe_fn)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{self, AssertUnwindSafe};
use std::time::Duration;

use ledger_core::{
    Balance, BatchSummary, CloseBatchError, Currency, Durability, Feed, FeedError, FeedRecord, Ledger, LedgerOptions,
    OpenError, Reject, SubmitError, Tx, TxId, TxOutcome, TxRecord,
};

/// Status of a call: success.
pub const LEDGER_OK: c_int = 0;
/// Null pointer, bad option, bad UTF-8 path.
pub const LEDGER_ERR_INVALID_ARGUMENT: c_int = 1;
/// An operating-system error (I/O, permissions, disk full).
pub const LEDGER_ERR_IO: c_int = 2;
/// Damage beyond a torn tail: refuses to open.
pub const LEDGER_ERR_CORRUPT: c_int = 3;
/// No such transaction, batch, or nothing to close.
pub const LEDGER_ERR_NOT_FOUND: c_int = 4;
/// Another handle or process holds the directory.
pub const LEDGER_ERR_LOCKED: c_int = 5;
/// A bug; a Rust panic is caught at the boundary and reported so.
pub const LEDGER_ERR_INTERNAL: c_int = 7;

/// A feed record holding a committed transaction (`ledger_feed_record.tx`).
pub const LEDGER_FEED_TRANSACTION: u32 = 1;
/// A feed record holding a batch close (`ledger_feed_record.batch`).
pub const LEDGER_FEED_BATCH_CLOSE: u32 = 2;
/// Flag of `ledger_feed_open`: while the feed is open, log retention keeps every record
/// from its last `ledger_feed_confirm`ed seq on (a replication slot), so the feed stays
/// on the log, its fast path, however far behind its reader falls.
pub const LEDGER_FEED_HOLD: u32 = 1;

/// Amount > 0; captured at once unless `LEDGER_FLAG_AUTH_ONLY`.
pub const LEDGER_KIND_PAYMENT: u32 = 1;
/// `ref` = an authorized payment; 0 < amount <= authorized.
pub const LEDGER_KIND_CAPTURE: u32 = 2;
/// `ref` = an authorized, uncaptured payment; amount = 0.
pub const LEDGER_KIND_VOID: u32 = 3;
/// `ref` = a captured payment; sum of its refunds <= captured.
pub const LEDGER_KIND_REFUND: u32 = 4;
/// Amount != 0, either sign; no ref.
pub const LEDGER_KIND_ADJUSTMENT: u32 = 5;

/// A payment that only authorizes.
pub const LEDGER_FLAG_AUTH_ONLY: u32 = 1;

/// Committed by this call.
pub const LEDGER_TX_OK: u32 = 0;
/// Same id and identical fields already committed: nothing changed.
pub const LEDGER_TX_EXISTS: u32 = 1;
/// Same id, different fields: rejected.
pub const LEDGER_TX_EXISTS_DIFFERENT: u32 = 2;
/// The amount is out of range for the kind, or a sum would overflow.
pub const LEDGER_TX_INVALID_AMOUNT: u32 = 3;
/// Not an upper-case ISO 4217 alpha code known to the ledger.
pub const LEDGER_TX_INVALID_CURRENCY: u32 = 4;
/// Unknown kind or flag, zero id, zero client, ref where none belongs.
pub const LEDGER_TX_INVALID_KIND: u32 = 5;
/// The ref is not found (also when it belongs to another client).
pub const LEDGER_TX_REF_NOT_FOUND: u32 = 6;
/// E.g. refund of an uncaptured payment, capture of a voided one.
pub const LEDGER_TX_REF_WRONG_STATE: u32 = 7;
/// Capture above the authorization, refunds above the capture.
pub const LEDGER_TX_EXCEEDS_REF_AMOUNT: u32 = 8;
/// The currency differs from the referenced payment's.
pub const LEDGER_TX_CURRENCY_MISMATCH: u32 = 9;

/// An authorized payment.
pub const LEDGER_STATE_AUTHORIZED: u32 = 1;
/// A captured payment.
pub const LEDGER_STATE_CAPTURED: u32 = 2;
/// A captured payment with refunds below its captured amount.
pub const LEDGER_STATE_PARTIALLY_REFUNDED: u32 = 3;
/// A captured payment refunded in full.
pub const LEDGER_STATE_REFUNDED: u32 = 4;
/// A voided authorization.
pub const LEDGER_STATE_VOIDED: u32 = 5;
/// Captures, voids, refunds and adjustments.
pub const LEDGER_STATE_APPLIED: u32 = 6;

/// Default: a submit returns after its records are on stable storage.
pub const LEDGER_SYNC_ALWAYS: u32 = 0;
/// The OS writes back when it will; a crash of the machine may lose the tail.
pub const LEDGER_SYNC_NONE: u32 = 1;

/// An open ledger; one handle may be used from many threads at once.
#[derive(Debug)]
pub struct ledger {
    inner: Ledger,
}

/// A change feed over a ledger's committed records (`ledger_feed_open`); used by one
/// thread at a time. It stays valid after its ledger is closed: it returns what was
/// committed, then reports the ledger closed.
#[derive(Debug)]
pub struct ledger_feed {
    inner: Feed,
    records: Vec<FeedRecord>,
}

/// A 128-bit id; {0,0} is never valid.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_id {
    pub lo: u64,
    pub hi: u64,
}

/// Options of `ledger_open`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_options {
    /// LEDGER_SYNC_*
    pub sync: u32,
    /// 0
    pub reserved: u32,
    /// 0 = default
    pub segment_bytes: u64,
    /// Bytes of memory for recent transactions (the hot tier); older ones live in the
    /// cold tier on disk. 0 = default (384 MiB; rows in memory peak at 1.5 times it).
    pub hot_bytes_max: u64,
    /// Records between checkpoints (each bounds what a reopen replays). 0 = default
    /// (1048576).
    pub checkpoint_every_records: u64,
}

/// A transaction to submit.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_tx {
    /// Chosen by the caller; it is the idempotency key.
    pub id: ledger_id,
    /// Capture, void, refund: the payment; otherwise {0,0}.
    pub r#ref: ledger_id,
    /// Nonzero.
    pub client_id: u64,
    /// 0 = none.
    pub device_id: u64,
    /// Minor units of the currency (cents for USD).
    pub amount: i64,
    /// LEDGER_KIND_*
    pub kind: u32,
    /// LEDGER_FLAG_*
    pub flags: u32,
    /// "USD\0"
    pub currency: [c_char; 4],
    /// 0
    pub reserved: u32,
    /// Opaque to the ledger, stored and returned.
    pub user_data: u64,
}

/// A committed transaction.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_tx_record {
    /// As committed.
    pub tx: ledger_tx,
    /// Log position; strictly increasing in commit order.
    pub seq: u64,
    /// Settlement batch it counts in; 0 while only authorized.
    pub batch_id: u64,
    /// Commit time, Unix ns; strictly increasing with seq.
    pub timestamp_ns: u64,
    /// LEDGER_STATE_*
    pub state: u32,
    pub reserved: u32,
    /// Payments: amount captured so far.
    pub captured: i64,
    /// Payments: sum of their refunds.
    pub refunded: i64,
}

/// Totals of a settlement batch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_batch_summary {
    pub batch_id: u64,
    pub client_id: u64,
    pub currency: [c_char; 4],
    pub reserved: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub opened_ns: u64,
    pub closed_ns: u64,
    /// Sales captured at once plus captures of authorizations, at captured amounts.
    pub payment_count: u64,
    pub payment_total: i64,
    pub refund_count: u64,
    pub refund_total: i64,
    pub adjustment_count: u64,
    pub adjustment_total: i64,
    /// payment_total - refund_total + adjustment_total
    pub net: i64,
}

/// A client's money in one currency.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_balance {
    /// All committed transactions.
    pub captured: i64,
    pub refunded: i64,
    pub adjusted: i64,
    pub net: i64,
    /// In closed batches.
    pub settled_net: i64,
    /// In the open batch.
    pub open_net: i64,
}

/// One record of a change feed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_feed_record {
    /// LEDGER_FEED_*
    pub kind: u32,
    pub reserved: u32,
    /// The record's log position.
    pub seq: u64,
    /// LEDGER_FEED_TRANSACTION: the transaction as it was right after its commit (its
    /// state, captured and refunded then); zeroes otherwise.
    pub tx: ledger_tx_record,
    /// LEDGER_FEED_BATCH_CLOSE: the closed batch; zeroes otherwise.
    pub batch: ledger_batch_summary,
}

/// The engine's memory tiers and checkpoints now (`ledger_stats`), for operators and
/// benchmarks.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ledger_stats {
    /// Transactions committed, in every tier.
    pub transactions: u64,
    /// Transactions in memory since the last checkpoint began, and their estimated heap
    /// bytes (what `hot_bytes_max` bounds).
    pub hot_transactions: u64,
    pub hot_bytes: u64,
    /// Transactions of the tier a checkpoint is writing out.
    pub frozen_transactions: u64,
    /// Runs on disk, their entries and bytes.
    pub cold_runs: u64,
    pub cold_entries: u64,
    pub cold_bytes: u64,
    /// Checkpoints written since open, failed attempts, the newest one's seq, how long
    /// it took (ns) and its run's bytes.
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    pub checkpoint_seq: u64,
    pub checkpoint_ns: u64,
    pub checkpoint_run_bytes: u64,
    /// Run merges since open and the entries they wrote; failed merges.
    pub merges: u64,
    pub merged_entries: u64,
    pub merge_failures: u64,
}

// ----- the landing pad ------------------------------------------------------------

/// A failed call: its status and the message `ledger_last_error` will return.
struct Failure {
    code: c_int,
    message: String,
}

fn fail(code: c_int, message: impl Into<String>) -> Failure {
    Failure { code, message: message.into() }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot be represented in a C string; they never come from our
    // messages, but a path could carry one through Display: replace them.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs the body of an export: a failure becomes its status (and this thread's last
/// error), a panic becomes `LEDGER_ERR_INTERNAL`; nothing unwinds into C.
fn landing(body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => LEDGER_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.code
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (a bug): {what}"));
            LEDGER_ERR_INTERNAL
        }
    }
}

/// The handle behind a caller's pointer.
///
/// # Safety
/// `l` is null or a pointer returned by `ledger_open` and not yet passed to
/// `ledger_close`.
unsafe fn handle<'a>(l: *mut ledger) -> Result<&'a Ledger, Failure> {
    // SAFETY: by the caller's contract a non-null `l` points to a live `ledger` made by
    // `ledger_open`; it is only read through a shared reference (`Ledger` is `Sync`).
    unsafe { l.as_ref() }
        .map(|l| &l.inner)
        .ok_or_else(|| fail(LEDGER_ERR_INVALID_ARGUMENT, "the ledger handle is null"))
}

/// The feed behind a caller's pointer.
///
/// # Safety
/// `f` is null or a pointer returned by `ledger_feed_open` and not yet passed to
/// `ledger_feed_close`, used by no other thread during the call.
unsafe fn feed_handle<'a>(f: *mut ledger_feed) -> Result<&'a mut ledger_feed, Failure> {
    // SAFETY: by the caller's contract a non-null `f` points to a live feed that no other
    // thread uses during this call.
    unsafe { f.as_mut() }.ok_or_else(|| fail(LEDGER_ERR_INVALID_ARGUMENT, "the feed handle is null"))
}

/// A place to write one value of the caller's.
///
/// # Safety
/// `out` is null or valid for writing one `T`.
unsafe fn out<'a, T>(out: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: by the caller's contract a non-null `out` is valid for one write of `T`
    // and is not aliased during the call.
    unsafe { out.as_mut() }.ok_or_else(|| fail(LEDGER_ERR_INVALID_ARGUMENT, format!("{what} is null")))
}

/// A NUL-terminated UTF-8 string of the caller's.
///
/// # Safety
/// `s` is null or points to a NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, format!("{what} is null")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes.to_str().map_err(|_| fail(LEDGER_ERR_INVALID_ARGUMENT, format!("{what} is not valid UTF-8")))
}

/// # Safety
/// As for [`c_str`].
unsafe fn currency_arg(s: *const c_char) -> Result<Currency, Failure> {
    // SAFETY: forwarded contract.
    let code = unsafe { c_str(s, "currency") }?;
    Currency::from_code(code).ok_or_else(|| fail(LEDGER_ERR_INVALID_ARGUMENT, format!("unknown currency {code:?}")))
}

// ----- conversions ----------------------------------------------------------------

fn id_in(id: ledger_id) -> TxId {
    TxId::from_parts(id.lo, id.hi)
}

fn id_out(id: TxId) -> ledger_id {
    ledger_id { lo: id.lo(), hi: id.hi() }
}

fn currency_in(c: [c_char; 4]) -> [u8; 4] {
    c.map(|b| b.to_le_bytes()[0]) // one byte: any byte order is the same
}

fn currency_out(c: [u8; 4]) -> [c_char; 4] {
    c.map(|b| c_char::from_le_bytes([b]))
}

fn tx_in(t: &ledger_tx) -> Tx {
    Tx {
        id: id_in(t.id),
        ref_id: id_in(t.r#ref),
        client_id: t.client_id,
        device_id: t.device_id,
        amount: t.amount,
        kind: t.kind,
        flags: t.flags,
        currency: currency_in(t.currency),
        user_data: t.user_data,
    }
}

fn record_out(r: &TxRecord) -> ledger_tx_record {
    ledger_tx_record {
        tx: ledger_tx {
            id: id_out(r.tx.id),
            r#ref: id_out(r.tx.ref_id),
            client_id: r.tx.client_id,
            device_id: r.tx.device_id,
            amount: r.tx.amount,
            kind: r.tx.kind,
            flags: r.tx.flags,
            currency: currency_out(r.tx.currency),
            reserved: 0,
            user_data: r.tx.user_data,
        },
        seq: r.seq,
        batch_id: r.batch_id,
        timestamp_ns: r.timestamp_ns,
        state: r.state as u32,
        reserved: 0,
        captured: r.captured,
        refunded: r.refunded,
    }
}

fn batch_out(b: &BatchSummary) -> ledger_batch_summary {
    ledger_batch_summary {
        batch_id: b.batch_id,
        client_id: b.client_id,
        currency: currency_out(b.currency.c_bytes()),
        reserved: 0,
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        opened_ns: b.opened_ns,
        closed_ns: b.closed_ns,
        payment_count: b.payment_count,
        payment_total: b.payment_total,
        refund_count: b.refund_count,
        refund_total: b.refund_total,
        adjustment_count: b.adjustment_count,
        adjustment_total: b.adjustment_total,
        net: b.net,
    }
}

fn balance_out(b: &Balance) -> ledger_balance {
    ledger_balance {
        captured: b.captured,
        refunded: b.refunded,
        adjusted: b.adjusted,
        net: b.net,
        settled_net: b.settled_net,
        open_net: b.open_net,
    }
}

fn open_failure(e: &OpenError) -> Failure {
    use ledger_store::OpenError as Store;
    let code = match e {
        OpenError::Store(Store::Locked { .. }) => LEDGER_ERR_LOCKED,
        OpenError::Store(Store::InvalidOptions { .. }) => LEDGER_ERR_INVALID_ARGUMENT,
        OpenError::Store(Store::Corrupt(_) | Store::BadSegmentHeader { .. })
        | OpenError::Decode { .. }
        | OpenError::Replay { .. }
        | OpenError::DamagedRun(_) => LEDGER_ERR_CORRUPT,
        _ => LEDGER_ERR_IO,
    };
    fail(code, e.to_string())
}

fn feed_failure(e: &FeedError) -> Failure {
    let code = match e {
        FeedError::Damaged(_) => LEDGER_ERR_CORRUPT,
        _ => LEDGER_ERR_INVALID_ARGUMENT,
    };
    fail(code, e.to_string())
}

fn feed_record_out(r: &FeedRecord) -> ledger_feed_record {
    match r {
        FeedRecord::Transaction(t) => {
            ledger_feed_record { kind: LEDGER_FEED_TRANSACTION, seq: t.seq, tx: record_out(t), ..Default::default() }
        }
        FeedRecord::BatchClose { seq, summary } => ledger_feed_record {
            kind: LEDGER_FEED_BATCH_CLOSE,
            seq: *seq,
            batch: batch_out(summary),
            ..Default::default()
        },
    }
}

fn submit_failure(e: &SubmitError) -> Failure {
    match e {
        SubmitError::Closed => fail(LEDGER_ERR_INVALID_ARGUMENT, "the ledger is closed"),
        _ => fail(LEDGER_ERR_IO, e.to_string()),
    }
}

// ----- the exports ----------------------------------------------------------------

/// The library's version, a static NUL-terminated string.
#[unsafe(no_mangle)]
pub extern "C" fn ledger_version() -> *const c_char {
    concat!("ledger ", env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// This thread's message for its last non-OK status ("" before any). Valid until the
/// next failing call on this thread.
#[unsafe(no_mangle)]
pub extern "C" fn ledger_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Opens (creating `dir` and its parents when missing) the ledger in `dir`, recovering
/// what a crash left. `opts` may be NULL for the defaults.
///
/// # Safety
/// `dir` is a NUL-terminated string; `opts` is NULL or points to a `ledger_options`;
/// `out` is valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_open(
    dir: *const c_char,
    opts: *const ledger_options,
    out_handle: *mut *mut ledger,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `out_handle`.
        let slot = unsafe { out(out_handle, "out") }?;
        *slot = std::ptr::null_mut();
        // SAFETY: the caller's contract on `dir`.
        let dir = unsafe { c_str(dir, "dir") }?;
        // SAFETY: `opts` is null or points to a `ledger_options` (caller's contract).
        let opts = unsafe { opts.as_ref() }.copied().unwrap_or_default();
        let durability = match opts.sync {
            LEDGER_SYNC_ALWAYS => Durability::SyncData,
            LEDGER_SYNC_NONE => Durability::None,
            other => return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, format!("unknown sync mode {other}"))),
        };
        if opts.reserved != 0 {
            return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, "ledger_options.reserved must be 0"));
        }
        let segment_bytes = usize::try_from(opts.segment_bytes)
            .map_err(|_| fail(LEDGER_ERR_INVALID_ARGUMENT, "segment_bytes is too large"))?;
        let hot_bytes_max = usize::try_from(opts.hot_bytes_max)
            .map_err(|_| fail(LEDGER_ERR_INVALID_ARGUMENT, "hot_bytes_max is too large"))?;
        let defaults = LedgerOptions::default();
        let snapshot_every_records = match opts.checkpoint_every_records {
            0 => defaults.snapshot_every_records,
            n => n,
        };
        let options = LedgerOptions { durability, segment_bytes, hot_bytes_max, snapshot_every_records, ..defaults };
        let ledger = Ledger::open(dir, options).map_err(|e| open_failure(&e))?;
        *slot = Box::into_raw(Box::new(ledger { inner: ledger }));
        Ok(())
    })
}

/// Commits what is queued, flushes, stops the engine's threads and releases the
/// directory, then frees the handle. NULL is a no-op.
///
/// # Safety
/// `l` is NULL or a handle from `ledger_open` not yet closed; no other thread uses it
/// during or after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_close(l: *mut ledger) {
    if l.is_null() {
        return;
    }
    landing(|| {
        // SAFETY: `l` came from `Box::into_raw` in `ledger_open` and, by the caller's
        // contract, is closed once and used by no one else from now on.
        let handle = unsafe { Box::from_raw(l) };
        let result = handle.inner.close();
        drop(handle);
        result.map_err(|e| submit_failure(&e))
    });
}

/// Commits `txs[0..n]` in order; `results[i]` gets the LEDGER_TX_* code of `txs[i]`.
///
/// # Safety
/// `l` is a live handle; when `n > 0`, `txs` points to `n` readable `ledger_tx` and
/// `results` to `n` writable `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_submit(l: *mut ledger, txs: *const ledger_tx, n: usize, results: *mut u32) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l`.
        let ledger = unsafe { handle(l) }?;
        if n == 0 {
            return Ok(());
        }
        if txs.is_null() || results.is_null() {
            return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, "txs and results must not be null when n > 0"));
        }
        // SAFETY: non-null and valid for `n` elements by the caller's contract.
        let txs = unsafe { std::slice::from_raw_parts(txs, n) };
        // SAFETY: as above, for writing; distinct from `txs` (different element types).
        let results = unsafe { std::slice::from_raw_parts_mut(results, n) };
        // A transaction with a non-zero reserved field is refused on its own; the rest
        // go to the engine in order.
        let well_formed: Vec<Tx> = txs.iter().filter(|t| t.reserved == 0).map(tx_in).collect();
        // Hand the vector over: `submit(&[..])` would copy it once more.
        let outcomes = ledger.submit_async(well_formed).wait().map_err(|e| submit_failure(&e))?;
        let mut outcomes = outcomes.iter();
        for (t, result) in txs.iter().zip(results.iter_mut()) {
            *result = if t.reserved != 0 {
                LEDGER_TX_INVALID_KIND
            } else {
                outcomes.next().map_or(LEDGER_TX_INVALID_KIND, TxOutcome::code)
            };
        }
        Ok(())
    })
}

/// The committed transaction with this id, as it stands now.
///
/// # Safety
/// `l` is a live handle; `out_record` is valid for writing one `ledger_tx_record`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_lookup(l: *mut ledger, id: ledger_id, out_record: *mut ledger_tx_record) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `out_record`.
        let (ledger, slot) = unsafe { (handle(l)?, out(out_record, "out")?) };
        let record = ledger.lookup(id_in(id)).ok_or_else(|| fail(LEDGER_ERR_NOT_FOUND, "no such transaction"))?;
        *slot = record_out(&record);
        Ok(())
    })
}

/// The client's transactions with seq > after_seq, oldest first, at most `cap`.
///
/// # Safety
/// `l` is a live handle; `out_records` is valid for writing `cap` records (may be NULL
/// when `cap` is 0); `written` is valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_list(
    l: *mut ledger,
    client_id: u64,
    after_seq: u64,
    out_records: *mut ledger_tx_record,
    cap: usize,
    written: *mut usize,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `written`.
        let (ledger, count) = unsafe { (handle(l)?, out(written, "written")?) };
        *count = 0;
        if cap == 0 {
            return Ok(());
        }
        if out_records.is_null() {
            return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, "out is null while cap > 0"));
        }
        // SAFETY: non-null and valid for `cap` writes by the caller's contract.
        let slots = unsafe { std::slice::from_raw_parts_mut(out_records, cap) };
        let records = ledger.list(client_id, after_seq, cap);
        for (slot, record) in slots.iter_mut().zip(&records) {
            *slot = record_out(record);
        }
        *count = records.len();
        Ok(())
    })
}

/// Closes the client's open batch in `currency`; later transactions count in a new one.
/// LEDGER_ERR_NOT_FOUND when the open batch holds no transaction.
///
/// # Safety
/// `l` is a live handle; `currency` a NUL-terminated string; `out_summary` valid for
/// writing one `ledger_batch_summary` (or NULL when the summary is not wanted).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_batch_close(
    l: *mut ledger,
    client_id: u64,
    currency: *const c_char,
    out_summary: *mut ledger_batch_summary,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `currency`.
        let (ledger, currency) = unsafe { (handle(l)?, currency_arg(currency)?) };
        let summary = ledger.close_batch(client_id, currency).map_err(|e| match e {
            CloseBatchError::Empty => fail(LEDGER_ERR_NOT_FOUND, "the open batch holds no transaction"),
            CloseBatchError::Submit(e) => submit_failure(&e),
            other => fail(LEDGER_ERR_IO, other.to_string()),
        })?;
        // SAFETY: `out_summary` is null or valid for one write (caller's contract).
        if let Some(slot) = unsafe { out_summary.as_mut() } {
            *slot = batch_out(&summary);
        }
        Ok(())
    })
}

/// A batch by id.
///
/// # Safety
/// `l` is a live handle; `out_summary` is valid for writing one `ledger_batch_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_batch_get(
    l: *mut ledger,
    batch_id: u64,
    out_summary: *mut ledger_batch_summary,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `out_summary`.
        let (ledger, slot) = unsafe { (handle(l)?, out(out_summary, "out")?) };
        let summary = ledger.batch(batch_id).ok_or_else(|| fail(LEDGER_ERR_NOT_FOUND, "no such batch"))?;
        *slot = batch_out(&summary);
        Ok(())
    })
}

/// The client's balance in `currency` (all zero before any transaction counted).
///
/// # Safety
/// `l` is a live handle; `currency` a NUL-terminated string; `out_balance` valid for
/// writing one `ledger_balance`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_balance_get(
    l: *mut ledger,
    client_id: u64,
    currency: *const c_char,
    out_balance: *mut ledger_balance,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l`, `currency` and `out_balance`.
        let (ledger, currency, slot) = unsafe { (handle(l)?, currency_arg(currency)?, out(out_balance, "out")?) };
        *slot = balance_out(&ledger.balance(client_id, currency).unwrap_or_default());
        Ok(())
    })
}

/// The engine's tiers and checkpoints now. A failed checkpoint or merge is counted
/// here (and retried by the engine); its message is not kept here.
///
/// # Safety
/// `l` is a live handle; `out_stats` valid for writing one `ledger_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_stats_get(l: *mut ledger, out_stats: *mut ledger_stats) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `out_stats`.
        let (ledger, slot) = unsafe { (handle(l)?, out(out_stats, "out")?) };
        let tiers = ledger.tiers();
        let c = ledger.checkpoint_stats();
        *slot = ledger_stats {
            transactions: ledger.transaction_count() as u64,
            hot_transactions: tiers.hot_transactions,
            hot_bytes: tiers.hot_heap_bytes,
            frozen_transactions: tiers.frozen_transactions,
            cold_runs: tiers.cold_runs,
            cold_entries: tiers.cold_entries,
            cold_bytes: tiers.cold_bytes,
            checkpoints: c.written,
            checkpoint_failures: c.failures,
            checkpoint_seq: c.seq,
            checkpoint_ns: u64::try_from(c.duration.as_nanos()).unwrap_or(u64::MAX),
            checkpoint_run_bytes: c.run_bytes,
            merges: c.merges,
            merged_entries: c.merged_entries,
            merge_failures: c.merge_failures,
        };
        Ok(())
    })
}

/// Opens a change feed of the ledger's committed records with seq >= `from_seq` (0 or 1:
/// the first ever), in commit order: from the log, and below the log's start (removed
/// after checkpoints) from the cold tier's runs. `flags` is 0 or `LEDGER_FEED_HOLD`. A
/// feed takes no lock the ledger's writer takes: however slow its reader, writes never
/// wait for it. `LEDGER_ERR_INVALID_ARGUMENT` when `from_seq` is beyond the next
/// record, or for an unknown flag.
///
/// # Safety
/// `l` is a live handle; `out_feed` is valid for writing one pointer. The feed is
/// released with `ledger_feed_close`, before or after the ledger's `ledger_close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_feed_open(
    l: *mut ledger,
    from_seq: u64,
    flags: u32,
    out_feed: *mut *mut ledger_feed,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `l` and `out_feed`.
        let (ledger, slot) = unsafe { (handle(l)?, out(out_feed, "out_feed")?) };
        *slot = std::ptr::null_mut();
        if flags & !LEDGER_FEED_HOLD != 0 {
            return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, format!("unknown feed flags {flags:#x}")));
        }
        let feed = if flags & LEDGER_FEED_HOLD != 0 { ledger.feed_holding(from_seq) } else { ledger.feed(from_seq) };
        let inner = feed.map_err(|e| feed_failure(&e))?;
        *slot = Box::into_raw(Box::new(ledger_feed { inner, records: Vec::new() }));
        Ok(())
    })
}

/// Fills `out_records` with up to `cap` records, waiting up to `timeout_ms`
/// milliseconds for the first one (0: do not wait). `*written` is how many; 0 after
/// a timeout. Once the ledger is closed and every committed record was returned,
/// `LEDGER_ERR_INVALID_ARGUMENT` ("the ledger is closed"); `LEDGER_ERR_CORRUPT` when a
/// committed record no longer reads back.
///
/// # Safety
/// `f` is a live feed; `out_records` is valid for writing `cap` records (may be NULL
/// when `cap` is 0); `written` is valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_feed_next(
    f: *mut ledger_feed,
    out_records: *mut ledger_feed_record,
    cap: usize,
    written: *mut usize,
    timeout_ms: u32,
) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `f` (exclusive use during the call) and `written`.
        let (feed, count) = unsafe { (feed_handle(f)?, out(written, "written")?) };
        *count = 0;
        if cap == 0 {
            return Ok(());
        }
        if out_records.is_null() {
            return Err(fail(LEDGER_ERR_INVALID_ARGUMENT, "out is null while cap > 0"));
        }
        if timeout_ms > 0
            && !feed.inner.wait(Duration::from_millis(u64::from(timeout_ms))).map_err(|e| feed_failure(&e))?
        {
            return Ok(());
        }
        feed.records.clear();
        let n = feed.inner.read(&mut feed.records, cap).map_err(|e| feed_failure(&e))?;
        if n == 0 && timeout_ms == 0 {
            // Not waiting: a closed and drained ledger is still reported.
            if let Err(e @ FeedError::Closed) = feed.inner.wait(Duration::ZERO) {
                return Err(feed_failure(&e));
            }
        }
        // SAFETY: non-null and valid for `cap` writes by the caller's contract.
        let slots = unsafe { std::slice::from_raw_parts_mut(out_records, cap) };
        for (slot, record) in slots.iter_mut().zip(&feed.records) {
            *slot = feed_record_out(record);
        }
        *count = n;
        Ok(())
    })
}

/// The feed's reader has durably processed every record through `seq`: a feed opened
/// with `LEDGER_FEED_HOLD` lets log retention remove the log below `seq + 1` (never
/// past what it has returned). A no-op for other feeds.
///
/// # Safety
/// `f` is a live feed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_feed_confirm(f: *mut ledger_feed, seq: u64) -> c_int {
    landing(|| {
        // SAFETY: the caller's contract on `f`.
        let feed = unsafe { feed_handle(f)? };
        feed.inner.confirm(seq);
        Ok(())
    })
}

/// Releases a feed (and its hold on the log). NULL is a no-op.
///
/// # Safety
/// `f` is NULL or a feed from `ledger_feed_open` not yet closed; it is not used after.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ledger_feed_close(f: *mut ledger_feed) {
    if f.is_null() {
        return;
    }
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by Box::into_raw in ledger_feed_open and released once, here.
        drop(unsafe { Box::from_raw(f) });
    }));
}

// The codes above are the contract's; tie them to the engine's so they cannot drift.
const _: () = {
    assert!(Reject::ExistsWithDifferentFields as u32 == LEDGER_TX_EXISTS_DIFFERENT);
    assert!(Reject::InvalidAmount as u32 == LEDGER_TX_INVALID_AMOUNT);
    assert!(Reject::InvalidCurrency as u32 == LEDGER_TX_INVALID_CURRENCY);
    assert!(Reject::InvalidKind as u32 == LEDGER_TX_INVALID_KIND);
    assert!(Reject::RefNotFound as u32 == LEDGER_TX_REF_NOT_FOUND);
    assert!(Reject::RefWrongState as u32 == LEDGER_TX_REF_WRONG_STATE);
    assert!(Reject::ExceedsRefAmount as u32 == LEDGER_TX_EXCEEDS_REF_AMOUNT);
    assert!(Reject::CurrencyMismatch as u32 == LEDGER_TX_CURRENCY_MISMATCH);
    assert!(std::mem::size_of::<ledger_tx>() == 80);
    assert!(std::mem::size_of::<ledger_tx_record>() == 128);
    assert!(std::mem::size_of::<ledger_batch_summary>() == 112);
    assert!(std::mem::size_of::<ledger_stats>() == 15 * 8);
    assert!(std::mem::size_of::<ledger_options>() == 32);
    assert!(std::mem::size_of::<ledger_feed_record>() == 16 + 128 + 112);
};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: ledger_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(ledger_last_error()) }.to_str().unwrap().to_string()
    }

    #[test]
    fn a_panic_is_caught_and_reported_as_internal() {
        let status = landing(|| panic!("deliberate test panic"));
        assert_eq!(status, LEDGER_ERR_INTERNAL);
        assert!(last_error().contains("deliberate test panic"), "{}", last_error());
        let status = landing(|| std::panic::panic_any(42u8));
        assert_eq!(status, LEDGER_ERR_INTERNAL);
        assert!(last_error().contains("unknown panic"));
    }

    #[test]
    fn failures_set_this_threads_message_only() {
        assert_eq!(landing(|| Err(fail(LEDGER_ERR_NOT_FOUND, "here"))), LEDGER_ERR_NOT_FOUND);
        assert_eq!(last_error(), "here");
        std::thread::spawn(|| assert_eq!(last_error(), "", "another thread has its own message")).join().unwrap();
        assert_eq!(landing(|| Ok(())), LEDGER_OK);
        assert_eq!(last_error(), "here", "a success keeps the last failure's message");
    }

    #[test]
    fn null_arguments_are_invalid_not_crashes() {
        let mut handle: *mut ledger = std::ptr::null_mut();
        // SAFETY: every pointer is null or valid; the functions must reject the nulls.
        unsafe {
            assert_eq!(ledger_open(std::ptr::null(), std::ptr::null(), &mut handle), LEDGER_ERR_INVALID_ARGUMENT);
            assert_eq!(
                ledger_open(c"/tmp/x".as_ptr(), std::ptr::null(), std::ptr::null_mut()),
                LEDGER_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                ledger_submit(std::ptr::null_mut(), std::ptr::null(), 0, std::ptr::null_mut()),
                LEDGER_ERR_INVALID_ARGUMENT
            );
            let mut record = ledger_tx_record::default();
            assert_eq!(
                ledger_lookup(std::ptr::null_mut(), ledger_id { lo: 1, hi: 0 }, &mut record),
                LEDGER_ERR_INVALID_ARGUMENT
            );
            ledger_close(std::ptr::null_mut()); // a no-op
        }
        let dir = tempfile::tempdir().unwrap();
        let path = CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: valid pointers throughout; the handle is closed once at the end.
        unsafe {
            assert_eq!(ledger_open(path.as_ptr(), std::ptr::null(), &mut handle), LEDGER_OK);
            let tx = ledger_tx::default();
            let mut result = 0u32;
            assert_eq!(ledger_submit(handle, std::ptr::null(), 1, &mut result), LEDGER_ERR_INVALID_ARGUMENT);
            assert_eq!(ledger_submit(handle, &tx, 1, std::ptr::null_mut()), LEDGER_ERR_INVALID_ARGUMENT);
            assert_eq!(ledger_submit(handle, &tx, 1, &mut result), LEDGER_OK);
            assert_eq!(result, LEDGER_TX_INVALID_KIND, "a zero id is refused as a transaction, not a call");
            let mut written = 7usize;
            assert_eq!(ledger_list(handle, 1, 0, std::ptr::null_mut(), 0, &mut written), LEDGER_OK);
            assert_eq!(written, 0);
            assert_eq!(ledger_list(handle, 1, 0, std::ptr::null_mut(), 5, &mut written), LEDGER_ERR_INVALID_ARGUMENT);
            let mut balance = ledger_balance::default();
            assert_eq!(ledger_balance_get(handle, 1, c"usd".as_ptr(), &mut balance), LEDGER_ERR_INVALID_ARGUMENT);
            assert_eq!(ledger_balance_get(handle, 1, std::ptr::null(), &mut balance), LEDGER_ERR_INVALID_ARGUMENT);
            assert_eq!(ledger_balance_get(handle, 1, c"USD".as_ptr(), &mut balance), LEDGER_OK);
            assert_eq!(balance, ledger_balance::default());
            ledger_close(handle);
        }
    }
}
