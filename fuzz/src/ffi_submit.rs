//! The `ffi_submit` target: the C ABI (`ledger-ffi`, linked as an rlib) called from
//! Rust with arbitrary `ledger_tx` arrays, counts, null and non-null pointers and
//! lengths inside the buffers given, against two oracles at once: a second engine
//! opened through ledger-core's Rust API, which receives the same calls, and the
//! reference model ([`crate::model`]). Every outcome code and every record, batch and
//! balance read back through the ABI must equal the engine's (commit times aside:
//! they come from the wall clock) and the model's.
//!
//! Also checked on every call: a null handle, a null array with `n > 0`, a null
//! output, a currency that is null, not UTF-8 or unknown are `LEDGER_ERR_INVALID_ARGUMENT`
//! and change nothing; nothing is written past the `n` results or the `cap` records
//! (canaries); `ledger_last_error` is always a valid C string and non-empty after a
//! failure; `ledger_version` is a valid C string. No call may panic: libFuzzer's panic
//! hook aborts on any panic before the boundary's `catch_unwind` could turn it into
//! `LEDGER_ERR_INTERNAL`, and under `cargo test` an `LEDGER_ERR_INTERNAL` fails the
//! comparison. At the end the engines are compared whole, the invariants are
//! recomputed, and (control bit 0) the ABI's ledger is closed and reopened and must
//! answer exactly as before, commit times included.
//!
//! # Input layout
//!
//! Byte 0: bit 0 = close and reopen at the end. Then calls until the input ends, each
//! an op byte (low 3 bits select the call, `op >> 3` is an argument) and arguments:
//!
//! | op | call | arguments |
//! |----|------|-----------|
//! | 0, 1 | `ledger_submit` of `op >> 3` transactions | mode (bits 0-1: txs/results null, bit 2: handle null, bits 4-5: pass `n` that much smaller than the array), then per transaction a byte: bit 7 = 80 raw bytes follow (a `ledger_tx` as laid out in memory), else a chosen one ([`TxPick`], bit 6 = reserved field set, bits 0-5 = user_data) |
//! | 2 | `ledger_lookup` | id choice, mode (bit 0 out null, bit 1 handle null) |
//! | 3 | `ledger_list` | client, after_seq, cap, mode (out, written, handle null) |
//! | 4 | `ledger_batch_close` | client, currency string, mode (out, handle null) |
//! | 5 | `ledger_batch_get` | batch id, mode |
//! | 6 | `ledger_balance_get` | client, currency string, mode |
//! | 7 | `op >> 3` = 0: resubmit the last array; 1: `ledger_open` of the open directory (LOCKED); 2: `ledger_open` with options from the input | (2: sync u32, reserved u32, segment_bytes u64) |

use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;

use ledger_core::{BatchSummary, CloseBatchError, Currency, Durability, Ledger, LedgerOptions, Tx, TxId, TxRecord};
use ledger_ffi::{
    LEDGER_ERR_INVALID_ARGUMENT, LEDGER_ERR_LOCKED, LEDGER_ERR_NOT_FOUND, LEDGER_OK, LEDGER_SYNC_NONE, ledger,
    ledger_balance, ledger_balance_get, ledger_batch_close, ledger_batch_get, ledger_batch_summary, ledger_close,
    ledger_id, ledger_last_error, ledger_list, ledger_lookup, ledger_open, ledger_options, ledger_submit, ledger_tx,
    ledger_tx_record, ledger_version,
};

use crate::check;
use crate::input::{Reader, scratch_dir};
use crate::model::{Model, code};
use crate::pick::TxPick;

/// Segment size of both ledgers: small, so longer inputs roll over segments.
pub const SEGMENT_BYTES: u64 = 16 << 10;
/// Transactions one submit may carry (`op >> 3` is at most 31).
const SUBMIT_TXS_MAX: usize = 31;
/// Canary slots after every output buffer.
const CANARIES: usize = 3;
const CANARY_RESULT: u32 = 0xdead_beef;

fn c_currency(c: [u8; 4]) -> [c_char; 4] {
    c.map(|b| c_char::from_le_bytes([b]))
}

fn from_c_currency(c: [c_char; 4]) -> [u8; 4] {
    c.map(|b| b.to_le_bytes()[0])
}

/// A transaction in the ABI's struct.
fn to_c(tx: &Tx, reserved: u32) -> ledger_tx {
    ledger_tx {
        id: ledger_id { lo: tx.id.lo(), hi: tx.id.hi() },
        r#ref: ledger_id { lo: tx.ref_id.lo(), hi: tx.ref_id.hi() },
        client_id: tx.client_id,
        device_id: tx.device_id,
        amount: tx.amount,
        kind: tx.kind,
        flags: tx.flags,
        currency: c_currency(tx.currency),
        reserved,
        user_data: tx.user_data,
    }
}

/// 80 bytes as the `ledger_tx` they are in memory (little-endian fields, no padding).
fn tx_from_bytes(b: &[u8; 80]) -> ledger_tx {
    let u = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let w = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    ledger_tx {
        id: ledger_id { lo: u(0), hi: u(8) },
        r#ref: ledger_id { lo: u(16), hi: u(24) },
        client_id: u(32),
        device_id: u(40),
        amount: u(48).cast_signed(),
        kind: w(56),
        flags: w(60),
        currency: c_currency([b[64], b[65], b[66], b[67]]),
        reserved: w(68),
        user_data: u(72),
    }
}

/// The ABI's transaction as ledger-core's (this crate's own conversion).
fn from_c(t: &ledger_tx) -> Tx {
    Tx {
        id: TxId::from_parts(t.id.lo, t.id.hi),
        ref_id: TxId::from_parts(t.r#ref.lo, t.r#ref.hi),
        client_id: t.client_id,
        device_id: t.device_id,
        amount: t.amount,
        kind: t.kind,
        flags: t.flags,
        currency: from_c_currency(t.currency),
        user_data: t.user_data,
    }
}

/// What a record read through the ABI must be, given the engine's (commit time zeroed
/// unless `timestamps`).
fn expected_record(r: &TxRecord, timestamps: bool) -> ledger_tx_record {
    ledger_tx_record {
        tx: to_c(&r.tx, 0),
        seq: r.seq,
        batch_id: r.batch_id,
        timestamp_ns: if timestamps { r.timestamp_ns } else { 0 },
        state: r.state as u32,
        reserved: 0,
        captured: r.captured,
        refunded: r.refunded,
    }
}

fn untimed(r: &ledger_tx_record) -> ledger_tx_record {
    ledger_tx_record { timestamp_ns: 0, ..*r }
}

fn expected_batch(b: &BatchSummary, timestamps: bool) -> ledger_batch_summary {
    ledger_batch_summary {
        batch_id: b.batch_id,
        client_id: b.client_id,
        currency: c_currency(b.currency.c_bytes()),
        reserved: 0,
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        opened_ns: if timestamps { b.opened_ns } else { 0 },
        closed_ns: if timestamps { b.closed_ns } else { u64::from(b.closed_ns != 0) },
        payment_count: b.payment_count,
        payment_total: b.payment_total,
        refund_count: b.refund_count,
        refund_total: b.refund_total,
        adjustment_count: b.adjustment_count,
        adjustment_total: b.adjustment_total,
        net: b.net,
    }
}

fn untimed_batch(b: &ledger_batch_summary) -> ledger_batch_summary {
    ledger_batch_summary { opened_ns: 0, closed_ns: u64::from(b.closed_ns != 0), ..*b }
}

/// `ledger_last_error` must be a valid C string; after a failure, a non-empty one.
fn check_last_error(after_failure: bool) -> String {
    let p = ledger_last_error();
    assert!(!p.is_null(), "ledger_last_error returned NULL");
    // SAFETY: the contract: a NUL-terminated string valid until the next failing call
    // on this thread; it is copied out at once.
    let s = unsafe { CStr::from_ptr(p) };
    let text = s.to_str().unwrap_or_else(|_| panic!("ledger_last_error is not UTF-8: {s:?}")).to_string();
    assert!(!after_failure || !text.is_empty(), "a failing call left ledger_last_error empty");
    text
}

/// Checks a call's status against the expected one, and the last error after it.
fn status(what: &str, got: c_int, expected: c_int) {
    assert_eq!(got, expected, "{what}: status {got}, expected {expected} (last error: {:?})", check_last_error(false));
    check_last_error(got != LEDGER_OK);
}

fn client(r: &mut Reader<'_>) -> u64 {
    match r.u8() {
        0xff => r.u64(),
        c => [1, 2, 3, 0][usize::from(c & 3)],
    }
}

/// A C string argument for a currency: `None` is a null pointer.
fn currency_arg(r: &mut Reader<'_>) -> Option<Vec<u8>> {
    let mut s = match r.u8() & 7 {
        0 => b"USD".to_vec(),
        1 => b"JPY".to_vec(),
        2 => b"KWD".to_vec(),
        3 => b"EUR".to_vec(),
        4 => b"usd".to_vec(),
        5 => Vec::new(),
        6 => return None,
        _ => {
            let n = usize::from(r.u8() % 6);
            r.take(n).iter().map(|&b| if b == 0 { 0xff } else { b }).collect()
        }
    };
    s.push(0);
    Some(s)
}

/// What the engine makes of a currency argument (`None`: invalid).
fn parse_currency(arg: &Option<Vec<u8>>) -> Option<Currency> {
    let bytes = arg.as_ref()?;
    let text = std::str::from_utf8(&bytes[..bytes.len() - 1]).ok()?;
    Currency::from_code(text)
}

fn ptr_of(arg: &Option<Vec<u8>>) -> *const c_char {
    arg.as_ref().map_or(std::ptr::null(), |v| v.as_ptr().cast())
}

/// Everything the ABI answers for the ids, clients and batches named so far.
#[derive(Debug, PartialEq)]
struct View {
    records: Vec<Option<ledger_tx_record>>,
    lists: Vec<Vec<ledger_tx_record>>,
    batches: Vec<ledger_batch_summary>,
    balances: Vec<ledger_balance>,
}

/// The two engines, the model, and what the input has named so far.
struct Run {
    handle: *mut ledger,
    dir: tempfile::TempDir,
    core: Ledger,
    _core_dir: tempfile::TempDir,
    model: Model,
    pick: TxPick,
    last_array: Vec<ledger_tx>,
}

fn open_ffi(dir: &Path) -> *mut ledger {
    let path = CString::new(dir.to_str().expect("a UTF-8 scratch path")).expect("no NUL in the path");
    let opts = ledger_options { sync: LEDGER_SYNC_NONE, segment_bytes: SEGMENT_BYTES, ..ledger_options::default() };
    let mut handle: *mut ledger = std::ptr::null_mut();
    // SAFETY: a NUL-terminated path, a valid options struct, a valid out pointer.
    let st = unsafe { ledger_open(path.as_ptr(), &opts, &mut handle) };
    status("ledger_open", st, LEDGER_OK);
    assert!(!handle.is_null());
    handle
}

impl Run {
    fn new() -> Run {
        let dir = scratch_dir();
        let handle = open_ffi(dir.path());
        let core_dir = scratch_dir();
        let options = LedgerOptions {
            durability: Durability::None,
            segment_bytes: SEGMENT_BYTES as usize,
            snapshot_every_records: 0,
            ..LedgerOptions::default()
        };
        let core = Ledger::open(core_dir.path(), options).expect("open the comparison engine");
        Run {
            handle,
            dir,
            core,
            _core_dir: core_dir,
            model: Model::default(),
            pick: TxPick::new(&[]),
            last_array: Vec::new(),
        }
    }

    fn handle_or_null(&self, null: bool) -> *mut ledger {
        if null { std::ptr::null_mut() } else { self.handle }
    }

    /// `ledger_submit` of `txs[..n]` with the pointers `mode` asks for.
    fn submit(&mut self, txs: &[ledger_tx], n: usize, mode: u8) {
        let (txs_null, results_null, handle_null) = (mode & 1 != 0, mode & 2 != 0, mode & 4 != 0);
        let mut results = vec![CANARY_RESULT; n + CANARIES];
        let txs_ptr = if txs_null { std::ptr::null() } else { txs.as_ptr() };
        let results_ptr = if results_null { std::ptr::null_mut() } else { results.as_mut_ptr() };
        // SAFETY: each pointer is null or valid for `n` elements (n <= txs.len(),
        // results has n + CANARIES slots); the handle is null or live.
        let st = unsafe { ledger_submit(self.handle_or_null(handle_null), txs_ptr, n, results_ptr) };
        let invalid = handle_null || (n > 0 && (txs_null || results_null));
        if invalid {
            status("ledger_submit with a null argument", st, LEDGER_ERR_INVALID_ARGUMENT);
            assert!(results.iter().all(|&r| r == CANARY_RESULT), "a refused submit wrote results");
            return;
        }
        status("ledger_submit", st, LEDGER_OK);
        assert!(results[n..].iter().all(|&r| r == CANARY_RESULT), "ledger_submit wrote past results[n]");
        let given = &txs[..n];
        let well_formed: Vec<Tx> = given.iter().filter(|t| t.reserved == 0).map(from_c).collect();
        let outcomes = self.core.submit(&well_formed).expect("the comparison engine commits");
        let mut core_codes = outcomes.iter().map(|o| o.code());
        for (i, t) in given.iter().enumerate() {
            let expected = if t.reserved != 0 {
                code::INVALID_KIND
            } else {
                core_codes.next().expect("one outcome per transaction")
            };
            assert_eq!(results[i], expected, "result {i} of {t:?}: ABI vs engine");
        }
        for (tx, outcome) in well_formed.iter().zip(&outcomes) {
            let (code, record) = self.model.submit(tx, 0);
            assert_eq!(outcome.code(), code, "{tx:?}: engine {outcome:?} vs model");
            if let (Some(theirs), Some(ours)) = (outcome.record(), record) {
                assert_eq!(
                    (theirs.seq, theirs.batch_id, theirs.state as u32, theirs.captured, theirs.refunded),
                    (ours.seq, ours.batch_id, ours.state, ours.captured, ours.refunded),
                    "{tx:?}: record"
                );
            }
        }
        self.last_array = txs.to_vec();
    }

    fn lookup(&self, id: u128, mode: u8) {
        let mut out = [ledger_tx_record::default(); 1 + CANARIES];
        let canary = ledger_tx_record { seq: 0xc0ffee, ..ledger_tx_record::default() };
        out.fill(canary);
        let out_ptr = if mode & 1 != 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
        let lid = ledger_id { lo: TxId(id).lo(), hi: TxId(id).hi() };
        // SAFETY: the handle is null or live; out is null or valid for one record.
        let st = unsafe { ledger_lookup(self.handle_or_null(mode & 2 != 0), lid, out_ptr) };
        assert!(out[1..].iter().all(|r| *r == canary), "ledger_lookup wrote past its record");
        if mode & 3 != 0 {
            return status("ledger_lookup with a null argument", st, LEDGER_ERR_INVALID_ARGUMENT);
        }
        match self.core.lookup(TxId(id)) {
            Some(r) => {
                status("ledger_lookup", st, LEDGER_OK);
                assert_eq!(untimed(&out[0]), expected_record(&r, false), "lookup {id:#x}");
            }
            None => status("ledger_lookup of an unknown id", st, LEDGER_ERR_NOT_FOUND),
        }
    }

    fn list(&self, client: u64, after: u64, cap: usize, mode: u8) {
        let canary = ledger_tx_record { seq: 0xc0ffee, ..ledger_tx_record::default() };
        let mut out = vec![canary; cap + CANARIES];
        let mut written = [usize::MAX; 2];
        let out_ptr = if mode & 1 != 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
        let written_ptr = if mode & 2 != 0 { std::ptr::null_mut() } else { written.as_mut_ptr() };
        // SAFETY: out is null or valid for cap + CANARIES records, written null or
        // valid for one; the handle is null or live.
        let st = unsafe { ledger_list(self.handle_or_null(mode & 4 != 0), client, after, out_ptr, cap, written_ptr) };
        assert!(out[cap..].iter().all(|r| *r == canary), "ledger_list wrote past cap");
        assert_eq!(written[1], usize::MAX, "ledger_list wrote past *written");
        if mode & 6 != 0 || (mode & 1 != 0 && cap > 0) {
            return status("ledger_list with a null argument", st, LEDGER_ERR_INVALID_ARGUMENT);
        }
        status("ledger_list", st, LEDGER_OK);
        let theirs = self.core.list(client, after, cap);
        assert_eq!(written[0], theirs.len(), "ledger_list count");
        for (got, r) in out.iter().zip(&theirs) {
            assert_eq!(untimed(got), expected_record(r, false), "list of {client} after {after}");
        }
    }

    fn batch_close(&mut self, client: u64, currency: &Option<Vec<u8>>, mode: u8) {
        let canary = ledger_batch_summary { batch_id: 0xc0ffee, ..ledger_batch_summary::default() };
        let mut out = [canary; 1 + CANARIES];
        let out_ptr = if mode & 1 != 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
        // SAFETY: currency is null or NUL-terminated; out null (allowed) or valid for
        // one summary; the handle is null or live.
        let st = unsafe { ledger_batch_close(self.handle_or_null(mode & 2 != 0), client, ptr_of(currency), out_ptr) };
        assert!(out[1..].iter().all(|b| *b == canary), "ledger_batch_close wrote past its summary");
        let Some(cur) = parse_currency(currency).filter(|_| mode & 2 == 0) else {
            return status("ledger_batch_close with an invalid argument", st, LEDGER_ERR_INVALID_ARGUMENT);
        };
        let theirs = self.core.close_batch(client, cur);
        let ours = self.model.close((client, cur.c_bytes()), 0);
        match theirs {
            Ok(summary) => {
                status("ledger_batch_close", st, LEDGER_OK);
                if mode & 1 == 0 {
                    assert_eq!(untimed_batch(&out[0]), expected_batch(&summary, false), "closed batch");
                } else {
                    assert_eq!(out[0], canary);
                }
                let ours = ours.expect("the model has a batch to close too");
                assert_eq!(check::batch_key(&summary, false).id, ours.id, "closed batch id");
            }
            Err(CloseBatchError::Empty) => {
                status("ledger_batch_close of nothing", st, LEDGER_ERR_NOT_FOUND);
                assert!(ours.is_none(), "the model closed a batch the engine found empty");
            }
            Err(e) => panic!("the comparison engine failed to close: {e}"),
        }
    }

    fn batch_get(&self, id: u64, mode: u8) {
        let mut out = [ledger_batch_summary::default(); 1 + CANARIES];
        let out_ptr = if mode & 1 != 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
        // SAFETY: out null or valid for one summary; the handle is null or live.
        let st = unsafe { ledger_batch_get(self.handle_or_null(mode & 2 != 0), id, out_ptr) };
        assert!(out[1..].iter().all(|b| *b == ledger_batch_summary::default()), "ledger_batch_get wrote past");
        if mode & 3 != 0 {
            return status("ledger_batch_get with a null argument", st, LEDGER_ERR_INVALID_ARGUMENT);
        }
        match self.core.batch(id) {
            Some(b) => {
                status("ledger_batch_get", st, LEDGER_OK);
                assert_eq!(untimed_batch(&out[0]), expected_batch(&b, false), "batch {id}");
            }
            None => status("ledger_batch_get of an unknown batch", st, LEDGER_ERR_NOT_FOUND),
        }
    }

    fn balance(&self, client: u64, currency: &Option<Vec<u8>>, mode: u8) {
        let mut out = [ledger_balance { captured: 7, ..ledger_balance::default() }; 1 + CANARIES];
        let out_ptr = if mode & 1 != 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
        // SAFETY: currency null or NUL-terminated; out null or valid for one balance;
        // the handle is null or live.
        let st = unsafe { ledger_balance_get(self.handle_or_null(mode & 2 != 0), client, ptr_of(currency), out_ptr) };
        assert!(out[1..].iter().all(|b| b.captured == 7), "ledger_balance_get wrote past its balance");
        let Some(cur) = parse_currency(currency).filter(|_| mode & 3 == 0) else {
            return status("ledger_balance_get with an invalid argument", st, LEDGER_ERR_INVALID_ARGUMENT);
        };
        status("ledger_balance_get", st, LEDGER_OK);
        let b = self.core.balance(client, cur).unwrap_or_default();
        let expected = ledger_balance {
            captured: b.captured,
            refunded: b.refunded,
            adjusted: b.adjusted,
            net: b.net,
            settled_net: b.settled_net,
            open_net: b.open_net,
        };
        assert_eq!(out[0], expected, "balance of {client} {cur}");
    }

    /// `ledger_open` with options from the input on a fresh directory.
    fn open_with(&self, sync: u32, reserved: u32, segment_bytes: u64) {
        let valid_size = segment_bytes == 0
            || (segment_bytes.is_multiple_of(4096) && ((8 << 10)..=(1 << 40)).contains(&segment_bytes));
        let valid = sync <= 1 && reserved == 0 && valid_size;
        if valid && (segment_bytes == 0 || segment_bytes > 1 << 20) {
            return; // a real (zero-filled) segment file of that size (0: 64 MiB): too slow to fuzz
        }
        let dir = scratch_dir();
        let path = CString::new(dir.path().to_str().expect("UTF-8")).expect("no NUL");
        let opts = ledger_options { sync, reserved, segment_bytes, ..ledger_options::default() };
        let mut handle: *mut ledger = std::ptr::dangling_mut();
        // SAFETY: valid pointers.
        let st = unsafe { ledger_open(path.as_ptr(), &opts, &mut handle) };
        if valid {
            status("ledger_open with valid options", st, LEDGER_OK);
            // SAFETY: a live handle, closed once.
            unsafe { ledger_close(handle) };
        } else {
            status("ledger_open with invalid options", st, LEDGER_ERR_INVALID_ARGUMENT);
            assert!(handle.is_null(), "a refused ledger_open left a handle");
        }
    }

    /// The second handle on an open directory is refused.
    fn open_again(&self) {
        let path = CString::new(self.dir.path().to_str().expect("UTF-8")).expect("no NUL");
        let mut handle: *mut ledger = std::ptr::dangling_mut();
        // SAFETY: valid pointers; NULL options are the defaults.
        let st = unsafe { ledger_open(path.as_ptr(), std::ptr::null(), &mut handle) };
        status("a second ledger_open of an open directory", st, LEDGER_ERR_LOCKED);
        assert!(handle.is_null());
    }

    /// Everything the ABI can read, for the ids, clients and batches named so far.
    fn read_all(&self) -> View {
        let mut records = Vec::new();
        for &id in &self.pick.pool {
            let mut out = ledger_tx_record::default();
            let lid = ledger_id { lo: TxId(id).lo(), hi: TxId(id).hi() };
            // SAFETY: a live handle and a valid out pointer.
            let st = unsafe { ledger_lookup(self.handle, lid, &mut out) };
            assert!(st == LEDGER_OK || st == LEDGER_ERR_NOT_FOUND, "lookup status {st}");
            records.push((st == LEDGER_OK).then_some(out));
        }
        let clients: Vec<u64> = [0, 1, 2, 3].into_iter().chain(self.model.clients()).collect();
        let mut lists = Vec::new();
        for &c in &clients {
            let cap = self.model.txs.len() + 1;
            let mut out = vec![ledger_tx_record::default(); cap];
            let mut written = 0usize;
            // SAFETY: out valid for cap records, written for one.
            let st = unsafe { ledger_list(self.handle, c, 0, out.as_mut_ptr(), cap, &mut written) };
            status("ledger_list (all)", st, LEDGER_OK);
            out.truncate(written);
            lists.push(out);
        }
        let mut batches = Vec::new();
        for id in 1..=self.model.batches.len() as u64 + 1 {
            let mut out = ledger_batch_summary::default();
            // SAFETY: a live handle and a valid out pointer.
            let st = unsafe { ledger_batch_get(self.handle, id, &mut out) };
            assert!(st == LEDGER_OK || st == LEDGER_ERR_NOT_FOUND, "batch_get status {st}");
            batches.push(out);
        }
        let mut balances = Vec::new();
        for &c in &clients {
            for cur in [c"USD", c"JPY", c"KWD", c"EUR"] {
                let mut out = ledger_balance::default();
                // SAFETY: a live handle, a NUL-terminated currency, a valid out pointer.
                let st = unsafe { ledger_balance_get(self.handle, c, cur.as_ptr(), &mut out) };
                status("ledger_balance_get (all)", st, LEDGER_OK);
                balances.push(out);
            }
        }
        View { records, lists, batches, balances }
    }

    /// The ABI's view equals the engine's and the model's.
    fn compare_whole(&self) {
        let View { records, lists, batches, .. } = self.read_all();
        for (&id, got) in self.pick.pool.iter().zip(&records) {
            let theirs = self.core.lookup(TxId(id)).map(|r| expected_record(&r, false));
            assert_eq!(got.as_ref().map(untimed), theirs, "lookup of {id:#x} through the ABI");
        }
        let clients: Vec<u64> = [0, 1, 2, 3].into_iter().chain(self.model.clients()).collect();
        for (&c, got) in clients.iter().zip(&lists) {
            let theirs: Vec<ledger_tx_record> =
                self.core.list(c, 0, usize::MAX).iter().map(|r| expected_record(r, false)).collect();
            assert_eq!(got.iter().map(untimed).collect::<Vec<_>>(), theirs, "list of {c} through the ABI");
        }
        for (i, got) in batches.iter().enumerate() {
            let theirs = self.core.batch(i as u64 + 1).map(|b| expected_batch(&b, false));
            let got = (got.batch_id != 0).then(|| untimed_batch(got));
            assert_eq!(got, theirs, "batch {} through the ABI", i + 1);
        }
        check::same_state(&self.core, &self.model, &self.pick.pool, false);
        check::invariants(&self.core, &self.model.clients());
    }

    fn finish(mut self, reopen: bool) {
        self.compare_whole();
        if reopen {
            let before = self.read_all();
            // SAFETY: the live handle, closed once and replaced.
            unsafe { ledger_close(self.handle) };
            check_last_error(false);
            self.handle = open_ffi(self.dir.path());
            let after = self.read_all();
            assert_eq!(before, after, "the ABI's ledger answers differently after a reopen");
            self.compare_whole();
        }
        // SAFETY: the live handle, closed once.
        unsafe { ledger_close(self.handle) };
        self.core.close().expect("close the comparison engine");
    }
}

/// The whole target.
pub fn ffi_submit(data: &[u8]) {
    // SAFETY: ledger_version returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(ledger_version()) };
    assert!(version.to_str().is_ok_and(|v| v.starts_with("ledger ")), "ledger_version: {version:?}");
    check_last_error(false);

    let mut r = Reader::new(data);
    let control = r.u8();
    let mut run = Run::new();
    let mut calls = 0;
    while !r.is_empty() && calls < 64 {
        calls += 1;
        let op = r.u8();
        let arg = op >> 3;
        match op & 7 {
            0 | 1 => {
                let mode = r.u8();
                let mut txs = Vec::with_capacity(SUBMIT_TXS_MAX);
                for _ in 0..usize::from(arg) {
                    let b = r.u8();
                    if b & 0x80 != 0 {
                        let t = tx_from_bytes(&r.array::<80>());
                        run.pick.pool.push(TxId::from_parts(t.id.lo, t.id.hi).0);
                        txs.push(t);
                    } else {
                        let tx = run.pick.tx(&mut r, &run.model, u64::from(b & 0x3f));
                        txs.push(to_c(&tx, u32::from(b & 0x40 != 0)));
                    }
                }
                let n = txs.len().saturating_sub(usize::from((mode >> 4) & 3));
                run.submit(&txs, n, mode);
            }
            2 => {
                let sel = r.u8();
                let id = match sel {
                    0xff => u128::from_le_bytes(r.array()),
                    0xfe => 0,
                    s if !run.pick.pool.is_empty() => run.pick.pool[usize::from(s) % run.pick.pool.len()],
                    s => u128::from(s),
                };
                let mode = r.u8();
                run.lookup(id, mode);
            }
            3 => {
                let client = client(&mut r);
                let after = match r.u8() {
                    0xff => u64::MAX,
                    0xfe => run.model.last_seq,
                    a => u64::from(a),
                };
                let cap = usize::from(r.u8() % 48);
                let mode = r.u8();
                run.list(client, after, cap, mode);
            }
            4 => {
                let client = client(&mut r);
                let currency = currency_arg(&mut r);
                let mode = r.u8();
                run.batch_close(client, &currency, mode);
            }
            5 => {
                let id = match r.u8() {
                    0xff => u64::MAX,
                    b => u64::from(b),
                };
                let mode = r.u8();
                run.batch_get(id, mode);
            }
            6 => {
                let client = client(&mut r);
                let currency = currency_arg(&mut r);
                let mode = r.u8();
                run.balance(client, &currency, mode);
            }
            _ => match arg {
                0 => {
                    let txs = run.last_array.clone();
                    let n = txs.len();
                    run.submit(&txs, n, 0);
                }
                1 => run.open_again(),
                2 => {
                    let (sync, reserved, size) = (r.u32(), r.u32(), r.u64());
                    run.open_with(sync, reserved, size);
                }
                _ => {}
            },
        }
    }
    run.finish(control & 1 != 0);
}

// ---------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------

/// Seed inputs, by file name.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    // Chosen transactions: [byte (user_data), sel, id, ref, amount, currency].
    let sale = [0x01, 0x00, 0x00, 0x00, 0x50, 0x00];
    let auth = [0x02, 0x01, 0x00, 0x00, 0x60, 0x00];
    let capture = [0x03, 0x02, 0x00, 0x02, 0xf7, 0x00]; // the authorization, in full
    let refund = [0x04, 0x04, 0x00, 0x04, 0x48, 0x00]; // the sale, 200
    let adjust = [0x05, 0x05, 0x00, 0x00, 0x20, 0x00];
    let mut workflow = vec![1, 5 << 3, 0x00];
    for t in [sale, auth, capture, refund, adjust] {
        workflow.extend(t);
    }
    workflow.extend([
        0x02, 0x00, 0x00, // lookup pool[0]
        0x03, 0x00, 0x00, 20, 0x00, // list client 1 from 0, cap 20
        0x04, 0x00, 0x00, 0x00, // close client 1 USD
        0x04, 0x00, 0x00, 0x00, // again: nothing to close
        0x05, 1, 0x00, // batch 1
        0x06, 0x00, 0x00, 0x00, // balance client 1 USD
        0x07, // resubmit: every one exists
    ]);

    let mut raw = vec![0, 2 << 3, 0x00, 0x80];
    let mut t = vec![0u8; 80];
    t[0] = 1; // id
    t[32] = 1; // client
    t[48] = 100; // amount
    t[56] = 1; // kind payment
    t[64..68].copy_from_slice(b"USD\0");
    raw.extend(&t);
    raw.push(0x80);
    t[0] = 2;
    t[68] = 1; // reserved set: refused on its own
    raw.extend(&t);

    let nulls = vec![
        0,
        1 << 3,
        0x01,
        0x00,
        0,
        0,
        0,
        0x50,
        0, // txs null
        1 << 3,
        0x02,
        0x00,
        0,
        0,
        0,
        0x50,
        0, // results null
        1 << 3,
        0x04,
        0x00,
        0,
        0,
        0,
        0x50,
        0, // handle null
        0,
        0x03, // n = 0 with both null
        0x02,
        0x00,
        0x01, // lookup, out null
        0x03,
        0x00,
        0x00,
        5,
        0x01, // list, out null, cap 5
        0x03,
        0x00,
        0x00,
        0,
        0x01, // list, out null, cap 0: fine
        0x04,
        0x00,
        0x06,
        0x00, // close with a null currency
        0x04,
        0x00,
        0x07,
        2,
        0xc3,
        0x28,
        0x00, // close with a non-UTF-8 currency
        0x06,
        0x00,
        0x04,
        0x00, // balance of "usd"
        0x05,
        7,
        0x02, // batch_get with a null handle
    ];

    let mut overflow = vec![1, 3 << 3, 0x00];
    overflow.extend([0x00, 0x05, 0x00, 0x00, 0xf3, 0x00]); // adjustment i64::MAX
    overflow.extend([0x00, 0x00, 0x00, 0x00, 0xf1, 0x00]); // sale 1: the batch would overflow
    overflow.extend([0x00, 0x05, 0x00, 0x00, 0xf4, 0x00]); // adjustment i64::MIN: fine
    overflow.extend([0x17, 0x02, 0x00, 0x00, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0]); // reopen options

    vec![
        ("workflow-reopen", workflow),
        ("raw-structs", raw),
        ("null-arguments", nulls),
        ("overflow-edges", overflow),
        ("locked", vec![0, 0x0f]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_layout_is_what_the_raw_mode_assumes() {
        assert_eq!(std::mem::size_of::<ledger_tx>(), 80);
        let mut b = [0u8; 80];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        let t = tx_from_bytes(&b);
        // SAFETY: ledger_tx is 80 bytes of plain integers with no padding.
        let bytes: [u8; 80] = unsafe { std::mem::transmute(t) };
        assert_eq!(bytes, b);
    }

    #[test]
    fn the_workflow_seed_runs() {
        for (_, data) in seed_inputs() {
            ffi_submit(&data);
        }
    }
}
