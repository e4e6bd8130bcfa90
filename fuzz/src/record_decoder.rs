//! The `record_decoder` target: logs of ledger-core records, some valid, some forged,
//! some damaged, opened with `Ledger::open` and judged by the reference model.
//!
//! Each input writes one log with ledger-store's public `Log` API (so every frame has
//! a valid checksum: what is fuzzed is the records, not the framing), optionally a
//! snapshot beside it, then opens it with `Ledger::open`. The oracle replays the same
//! frames through [`crate::model`] with this crate's own record decoder
//! ([`crate::records`]), exactly as the engine must: a record that does not decode is
//! `OpenError::Decode` at its seq; one that does not commit again at its recorded time
//! and in its recorded batch is `OpenError::Replay` at its seq; otherwise the engine
//! opens, and then everything it answers must equal the model (every lookup, list,
//! batch, balance, with commit times), the invariants must hold when recomputed from
//! its answers alone ([`crate::check::invariants`]), and one more submit must commit
//! at the next seq and a later time. A snapshot the input left intact must be used,
//! and the state is then the snapshot's plus the tail's; a snapshot the input damaged
//! may be skipped (then the whole log is the truth) or, if it still decodes, used:
//! then nothing is known of the state, and only "no panic, no hang, every query
//! answers" is checked.
//!
//! The log starts with a prefix of a real engine's log (a scripted workload through a
//! real `Ledger`, built once per process), so that valid archived records, real commit
//! times and a real snapshot are always at hand to be kept, cut, mutated or forged on.
//!
//! # Input layout
//!
//! Byte 0: bits 0-4 = how many of the real log's frames the log starts with; bit 5 =
//! write the real snapshot too (when the log reaches its seq). Then operations until
//! the input ends, each an op byte (low 3 bits select; `op >> 3` is an argument) and
//! its arguments:
//!
//! | op | what | arguments |
//! |----|------|-----------|
//! | 0 | a transaction record, fields chosen (see [`TxPick`]), batch = what the model expects unless overridden | sel, id, ref, amount, currency, time (+ raw bytes some choices take) |
//! | 1 | a batch close | sel (client bits 0-1, currency bits 2-4, bit 5 batch override), time |
//! | 2 | bit 3 clear: a copy of real frame `j`; set: a transaction that replays (chosen as for op 0, replaced by a sale where the model would refuse it, at a later time, in the expected batch) | j; or the op 0 bytes, an id byte, a time step |
//! | 3 | a raw frame | kind (0: 1, 1: 2, else a u16 that follows), len, len bytes |
//! | 4 | xor a byte of a frame's payload | which (0: the last, else frame `which - 1`), pos, value |
//! | 5 | xor a byte of the snapshot | pos (u16), value |
//! | 6 | set a u64 word of a frame's payload to an edge value | which, word, value choice |
//! | 7 | grow a frame's payload at the front with zeros, or cut its end | which, delta (i8) |

use std::sync::OnceLock;

use ledger_core::{Currency, Durability, Ledger, LedgerOptions, OpenError, SubmitError, Tx, TxId, TxOutcome};
use ledger_store::{Log, LogOptions};

use crate::check;
use crate::input::{Reader, scratch_dir};
use crate::known_bugs;
use crate::model::{Judged, Model};
use crate::pick::{TxPick, pick_currency};
use crate::records::{self, Decoded, KIND_CLOSE, KIND_TX};

/// Segment size of the logs written: small, so longer inputs roll over segments.
pub const SEGMENT_BYTES: usize = 16 << 10;

/// Payloads stop growing (op 7) at this size, well inside a segment.
const PAYLOAD_GROWN_MAX: usize = 1024;

/// Id of the transaction submitted after a successful open.
const PROBE_ID: u128 = 0x0070_726f_6265;

fn ledger_options() -> LedgerOptions {
    LedgerOptions {
        durability: Durability::None,
        segment_bytes: SEGMENT_BYTES,
        snapshot_every_records: 0,
        ..LedgerOptions::default()
    }
}

fn log_options() -> LogOptions {
    LogOptions::new().segment_bytes(SEGMENT_BYTES).durability(Durability::None)
}

/// The real engine's log, written once per process.
#[derive(Debug)]
pub struct Real {
    /// Every frame (kind, payload), in seq order.
    pub frames: Vec<(u16, Vec<u8>)>,
    /// The seq its snapshot covers, and the snapshot's payload.
    pub snapshot_seq: u64,
    /// See `snapshot_seq`.
    pub snapshot: Vec<u8>,
    /// The model after replaying the frames the snapshot covers.
    pub at_snapshot: Model,
    /// Ids of its transactions.
    pub ids: Vec<u128>,
    /// The cold-tier run files the snapshot (a checkpoint) names: written beside it.
    pub runs: Vec<(std::ffi::OsString, Vec<u8>)>,
}

fn cur(code: &str) -> Currency {
    Currency::from_code(code).expect("a known currency")
}

/// The scripted workload: every kind, two clients, four currencies, devices and
/// user data, batch closes, a snapshot in the middle.
fn workload(ledger: &Ledger) -> u64 {
    let (usd, jpy, eur, kwd) = (cur("USD"), cur("JPY"), cur("EUR"), cur("KWD"));
    let submit = |txs: &[Tx]| {
        for (tx, outcome) in txs.iter().zip(ledger.submit(txs).expect("the workload commits")) {
            assert!(matches!(outcome, TxOutcome::Committed(_)), "workload {tx:?}: {outcome:?}");
        }
    };
    submit(&[
        Tx::sale(TxId(1), 1, 10_00, usd),
        Tx::authorization(TxId(2), 1, 5_00, usd).with_device(3),
        Tx::capture(TxId(3), TxId(2), 1, 4_00, usd),
        Tx::refund(TxId(4), TxId(1), 1, 2_50, usd),
        Tx::adjustment(TxId(5), 1, -1_00, usd).with_user_data(u64::MAX),
        Tx::authorization(TxId(6), 1, 700, jpy),
        Tx::void(TxId(7), TxId(6), 1, jpy),
    ]);
    ledger.close_batch(1, usd).expect("a batch to close");
    submit(&[
        Tx::sale(TxId(u128::MAX - 8), 2, 99_99, eur).with_device(9).with_user_data(77),
        Tx::refund(TxId(9), TxId(u128::MAX - 8), 2, 99_99, eur),
        Tx::sale(TxId(10), 1, 1, usd),
    ]);
    let snapshot_seq = ledger.snapshot().expect("a snapshot");
    submit(&[Tx::adjustment(TxId(11), 2, 5, eur), Tx::sale(TxId(12), 1, 1_234, kwd)]);
    ledger.close_batch(2, eur).expect("a batch to close");
    submit(&[
        Tx::authorization(TxId(13), 2, i64::MAX, eur),
        Tx::capture(TxId(14), TxId(13), 2, i64::MAX - 10_000, eur), // the balance: 99_99 + this fits
        Tx::refund(TxId(15), TxId(12), 1, 234, kwd),
    ]);
    snapshot_seq
}

fn build_real() -> Real {
    let dir = scratch_dir();
    let ledger = Ledger::open(dir.path(), ledger_options()).expect("open a fresh ledger");
    let snapshot_seq = workload(&ledger);
    ledger.close().expect("close the ledger");
    drop(ledger);
    let log = Log::open(dir.path(), log_options()).expect("reopen its log");
    let mut frames = Vec::new();
    let mut cursor = log.reader().cursor(1).expect("a cursor");
    while let Some(frame) = cursor.next() {
        let frame = frame.expect("a frame");
        frames.push((frame.kind, frame.payload.to_vec()));
    }
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("list the directory") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with("run-") && n.ends_with(".tbl")) {
            runs.push((name, std::fs::read(entry.path()).expect("read a run")));
        }
    }
    let info = log.snapshots().expect("list snapshots").into_iter().find(|s| s.seq == snapshot_seq);
    let snapshot = log.read_snapshot(&info.expect("the snapshot")).expect("read the snapshot").payload().to_vec();
    let mut at_snapshot = Model::default();
    let mut ids = Vec::new();
    for (i, (kind, payload)) in frames.iter().enumerate() {
        // This crate's codec must read what the engine wrote, and write it byte for byte.
        let again = match records::decode(*kind, payload) {
            Decoded::Tx { tx, ts, batch_id } => {
                ids.push(tx.id.0);
                records::encode_tx(&tx, ts, batch_id)
            }
            Decoded::Close { client, currency, batch_id, ts } => records::encode_close(client, currency, batch_id, ts),
            other => panic!("real frame {} decodes as {other:?}", i + 1),
        };
        assert_eq!(&again, payload, "real frame {} re-encodes differently", i + 1);
        if (i as u64) < snapshot_seq {
            replay_one(&mut at_snapshot, *kind, payload).expect("the real log replays");
        }
    }
    Real { frames, snapshot_seq, snapshot, at_snapshot, ids, runs }
}

/// The real log (built on first use).
pub fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(build_real)
}

/// Why the model refuses a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It does not decode.
    Decode(String),
    /// It does not replay.
    Replay(String),
}

/// Replays one record into `model`.
pub fn replay_one(model: &mut Model, kind: u16, payload: &[u8]) -> Result<(), Refusal> {
    match records::decode(kind, payload) {
        Decoded::Tx { tx, ts, batch_id } => model.replay_tx(&tx, ts, batch_id).map_err(Refusal::Replay),
        Decoded::Close { client, currency, batch_id, ts } => {
            model.replay_close((client, currency), batch_id, ts).map_err(Refusal::Replay)
        }
        other => Err(Refusal::Decode(format!("{other:?}"))),
    }
}

/// What the model says `Ledger::open` must do with these frames on top of `base`
/// (which covers seqs up to `base.last_seq`).
fn expect(mut base: Model, frames: &[(u16, Vec<u8>)]) -> Result<Model, (u64, Refusal)> {
    let from = base.last_seq as usize;
    for (i, (kind, payload)) in frames.iter().enumerate().skip(from) {
        replay_one(&mut base, *kind, payload).map_err(|r| (i as u64 + 1, r))?;
    }
    Ok(base)
}

// ---------------------------------------------------------------------------------------
// Building the log from the input.
// ---------------------------------------------------------------------------------------

/// A commit time relative to the last record's: 0 next, 0xff/0xfe the top, 0xfd the
/// same, 0xfc one before, 0xfb zero, 0xfa a raw u64, else `t * 1_000_003` later.
fn pick_time(r: &mut Reader<'_>, last: u64) -> u64 {
    match r.u8() {
        0 => last.saturating_add(1),
        0xff => u64::MAX,
        0xfe => u64::MAX - 1,
        0xfd => last,
        0xfc => last.wrapping_sub(1),
        0xfb => 0,
        0xfa => r.u64(),
        t => last.saturating_add(u64::from(t) * 1_000_003),
    }
}

fn pick_batch(r: &mut Reader<'_>, expected: u64) -> u64 {
    match r.u8() {
        0 => 0,
        1 => expected + 1,
        2 => expected.wrapping_sub(1),
        3 => u64::MAX,
        4 => r.u64(),
        b => u64::from(b),
    }
}

/// An edge value for a u64 word of a record.
fn pick_word(r: &mut Reader<'_>, model: &Model, last_ts: u64) -> u64 {
    match r.u8() & 15 {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => u64::MAX,
        4 => u64::MAX - 1,
        5 => i64::MAX as u64,
        6 => i64::MIN as u64,
        7 => last_ts,
        8 => last_ts.saturating_add(1),
        9 => model.last_seq,
        10 => model.batches.len() as u64,
        11 => model.batches.len() as u64 + 1,
        12 => u64::from(u32::from_le_bytes(*b"USD\0")),
        13 => 1 << 32,
        _ => r.u64(),
    }
}

/// The log and snapshot an input describes.
#[derive(Debug, Clone, Default)]
pub struct Built {
    /// The frames, in seq order.
    pub frames: Vec<(u16, Vec<u8>)>,
    /// The snapshot to write (seq, payload), if any.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Whether the snapshot differs from the real one.
    pub snapshot_mutated: bool,
    /// Every transaction id the input named.
    pub ids: Vec<u128>,
}

/// Decodes an input into frames (and a snapshot).
pub fn build(data: &[u8]) -> Built {
    let real = real();
    let mut r = Reader::new(data);
    let control = r.u8();
    let k = usize::from(control & 0x1f).min(real.frames.len());
    let mut frames: Vec<(u16, Vec<u8>)> = real.frames[..k].to_vec();
    let mut snapshot = (control & 0x20 != 0).then(|| real.snapshot.clone());
    // The builder tracks a model of what it wrote so that "the expected batch" and
    // "the ref's amount" mean something; it stops following once a record fails.
    let mut model = Model::default();
    for (kind, payload) in &frames {
        let _ = replay_one(&mut model, *kind, payload);
    }
    let mut pick = TxPick::new(&real.ids);
    let mut last_ts = model.last_ts;
    let frames_max = 1024;
    while !r.is_empty() && frames.len() < frames_max {
        let op = r.u8();
        let arg = u64::from(op >> 3);
        match op & 7 {
            0 => {
                let tx = pick.tx(&mut r, &model, arg & 15);
                let ts = pick_time(&mut r, last_ts);
                let expected = model.expected_batch(&tx);
                let batch = if arg & 16 != 0 { pick_batch(&mut r, expected) } else { expected };
                let payload = records::encode_tx(&tx, ts, batch);
                let _ = model.replay_tx(&tx, ts, batch);
                last_ts = ts;
                frames.push((KIND_TX, payload));
            }
            1 => {
                let sel = r.u8();
                let client = [1, 2, 3, 0][usize::from(sel & 3)];
                let currency = pick_currency(&mut r, sel >> 2);
                let ts = pick_time(&mut r, last_ts);
                let expected = model.open.get(&(client, currency)).copied().unwrap_or(model.batches.len() as u64);
                let batch = if sel & 0x20 != 0 { pick_batch(&mut r, expected) } else { expected };
                let _ = model.replay_close((client, currency), batch, ts);
                last_ts = ts;
                frames.push((KIND_CLOSE, records::encode_close(client, currency, batch, ts)));
            }
            2 if op & 0x08 == 0 => {
                let j = usize::from(r.u8()) % real.frames.len();
                let (kind, payload) = real.frames[j].clone();
                let _ = replay_one(&mut model, kind, &payload);
                frames.push((kind, payload));
            }
            2 => {
                // A record that replays: chosen as op 0 chooses, and where the model
                // would refuse it, a sale of the same client and size instead; the
                // next commit time; the expected batch.
                let mut tx = pick.tx(&mut r, &model, arg >> 1);
                if !matches!(model.judge(&tx), Judged::Accept(_)) {
                    let amount = tx.amount.unsigned_abs().clamp(1, 1 << 40);
                    let id = TxId(pick.fresh_id(r.u8() & 0x40 != 0));
                    tx = Tx::sale(id, tx.client_id.max(1), i64::try_from(amount).unwrap_or(1), cur("USD"));
                }
                let ts = model.last_ts.saturating_add(1 + u64::from(r.u8()) * 1_000_003);
                let batch = model.expected_batch(&tx);
                let _ = model.replay_tx(&tx, ts, batch);
                last_ts = ts;
                frames.push((KIND_TX, records::encode_tx(&tx, ts, batch)));
            }
            3 => {
                let kind = match r.u8() {
                    0 => KIND_TX,
                    1 => KIND_CLOSE,
                    _ => r.u16().max(1), // kind 0 is reserved by ledger-store
                };
                let len = usize::from(r.u8());
                let payload = r.take(len).to_vec();
                frames.push((kind, payload));
            }
            4 | 6 | 7 if !frames.is_empty() => {
                let which = usize::from(r.u8());
                let i = if which == 0 { frames.len() - 1 } else { (which - 1) % frames.len() };
                let payload = &mut frames[i].1;
                match op & 7 {
                    4 => {
                        let pos = usize::from(r.u8());
                        let value = r.u8();
                        if !payload.is_empty() {
                            let n = payload.len();
                            payload[pos % n] ^= if value == 0 { 0xff } else { value };
                        }
                    }
                    6 => {
                        let word = usize::from(r.u8());
                        let value = pick_word(&mut r, &model, last_ts);
                        let words = payload.len() / 8;
                        if words > 0 {
                            let at = (word % words) * 8;
                            payload[at..at + 8].copy_from_slice(&value.to_le_bytes());
                        }
                    }
                    _ => {
                        let delta = r.u8().cast_signed();
                        if delta > 0 && payload.len() < PAYLOAD_GROWN_MAX {
                            payload.splice(0..0, std::iter::repeat_n(0u8, delta.unsigned_abs().into()));
                        } else {
                            payload.truncate(payload.len().saturating_sub(delta.unsigned_abs().into()));
                        }
                    }
                }
            }
            5 => {
                let pos = usize::from(r.u16());
                let value = r.u8();
                if let Some(s) = snapshot.as_mut().filter(|s| !s.is_empty()) {
                    let n = s.len();
                    s[pos % n] ^= if value == 0 { 0xff } else { value };
                }
            }
            _ => {}
        }
    }
    let snapshot = snapshot.filter(|_| frames.len() as u64 >= real.snapshot_seq);
    let snapshot_mutated = snapshot.as_ref().is_some_and(|s| *s != real.snapshot);
    let mut ids = pick.pool;
    ids.push(PROBE_ID);
    Built { frames, snapshot: snapshot.map(|s| (real.snapshot_seq, s)), snapshot_mutated, ids }
}

/// What the model says of an input, for corpus statistics: `open` with the number of
/// records, or the refusal and its seq, and whether a snapshot is written and damaged.
pub fn verdict(data: &[u8]) -> String {
    let built = build(data);
    let snapshot = match (&built.snapshot, built.snapshot_mutated) {
        (None, _) => "",
        (Some(_), false) => " +snapshot",
        (Some(_), true) => " +damaged snapshot",
    };
    match expect(Model::default(), &built.frames) {
        Ok(m) => format!("open ({} records{snapshot})", if m.last_seq < 20 { "<20" } else { ">=20" }),
        Err((_, Refusal::Decode(_))) => format!("refused: decode{snapshot}"),
        Err((_, Refusal::Replay(_))) => format!("refused: replay{snapshot}"),
    }
}

/// Writes the log (and snapshot) into `dir`.
fn write(dir: &std::path::Path, built: &Built) {
    let mut log = Log::open(dir, log_options()).expect("create the log");
    for (kind, payload) in &built.frames {
        log.append(*kind, payload).expect("append a frame");
    }
    log.commit().expect("commit");
    if let Some((seq, payload)) = &built.snapshot {
        log.write_snapshot(*seq, payload).expect("write the snapshot");
        for (name, bytes) in &real().runs {
            std::fs::write(dir.join(name), bytes).expect("write a run");
        }
    }
    log.close().expect("close the log");
}

/// Every query of an engine whose state nothing is known of: each must answer.
fn query_everything(ledger: &Ledger, ids: &[u128]) {
    for &id in ids {
        let _ = ledger.lookup(TxId(id));
    }
    for client in 0..4 {
        let _ = ledger.list(client, 0, usize::MAX);
        for b in ledger.batches(client, 0, usize::MAX) {
            let _ = ledger.batch(b.batch_id);
        }
        let _ = ledger.balances(client);
        for c in ["USD", "JPY", "KWD", "EUR"] {
            let _ = ledger.balance(client, cur(c));
            let _ = ledger.open_batch(client, cur(c));
        }
    }
    for id in 0..64 {
        let _ = ledger.batch(id);
    }
    let _ = (ledger.transaction_count(), ledger.last_seq());
}

/// The whole target.
pub fn record_decoder(data: &[u8]) {
    let real = real();
    let built = build(data);
    let dir = scratch_dir();
    write(dir.path(), &built);

    let snapshot_seq = built.snapshot.as_ref().map(|(seq, _)| *seq);
    // The truth when the snapshot is used as written, and when it is not used at all.
    let full = expect(Model::default(), &built.frames);
    let with_snapshot = match snapshot_seq {
        Some(_) if !built.snapshot_mutated => Some(expect(real.at_snapshot.clone(), &built.frames)),
        _ => None,
    };

    // A damaged snapshot that decodes and hangs together gives a state the model does
    // not know: the engine may use it (it cannot tell), but must not panic over it.
    let Some(opened) = known_bugs::guard(&[], || Ledger::open(dir.path(), ledger_options())) else { return };
    let used = opened.as_ref().ok().and_then(|l| l.open_report().snapshot_seq);
    if let (Some(seq), false, Ok(_)) = (snapshot_seq, built.snapshot_mutated, &opened) {
        assert_eq!(used, Some(seq), "an intact snapshot was not used");
    }
    let truth = match (&with_snapshot, used) {
        (Some(truth), _) => Some(truth),
        (None, None) => Some(&full),
        // A damaged snapshot that still decoded was used: its state is unknown.
        (None, Some(_)) => None,
    };
    match (opened, truth) {
        (Ok(ledger), Some(Ok(model))) => {
            let report = ledger.open_report();
            let replayed = model.last_seq - used.unwrap_or(0);
            assert_eq!(report.transactions + report.batch_closes, replayed, "records replayed: {report:?}");
            check::same_state(&ledger, model, &built.ids, true);
            check::invariants(&ledger, &model.clients());
            probe(&ledger, model);
            let closed = ledger.close();
            // After a record at u64::MAX the probe failed the engine: closing says so.
            assert!(closed.is_ok() || model.last_ts == u64::MAX, "close: {closed:?}");
        }
        (Ok(ledger), None) => {
            query_everything(&ledger, &built.ids);
            ledger.close().expect("close");
        }
        (Ok(_), Some(Err((seq, why)))) => {
            panic!("the engine opened a log the model refuses at seq {seq}: {why:?}")
        }
        (Err(e), truth) => {
            let (seq, decode) = match &e {
                OpenError::Decode { seq, .. } => (*seq, true),
                OpenError::Replay { seq, .. } => (*seq, false),
                other => panic!("a log written whole was refused for another reason: {other}"),
            };
            let from_damaged_snapshot = built.snapshot_mutated && snapshot_seq.is_some_and(|s| seq > s);
            let expected = match (truth, &full) {
                (Some(Err(t)), _) => Some(t),
                (None, Err(t)) => Some(t),
                _ => None,
            };
            match expected {
                Some((s, refusal)) if *s == seq => {
                    assert_eq!(decode, matches!(refusal, Refusal::Decode(_)), "at seq {seq}: {e} vs {refusal:?}");
                }
                _ if from_damaged_snapshot => {}
                other => panic!("the engine refused with \"{e}\"; the model says {other:?}"),
            }
        }
    }
}

/// After an open: one more sale must be judged as the model judges it, and if it
/// commits, at the next seq and a later time.
fn probe(ledger: &Ledger, model: &Model) {
    let tx = Tx::sale(TxId(PROBE_ID), 1, 1, cur("USD"));
    if model.last_ts == u64::MAX {
        // No later commit time exists: a transaction that needs one fails the group
        // (outcome unknown, nothing committed); one judged without it is answered.
        let outcome = ledger.submit(&[tx]);
        match model.judge(&tx) {
            Judged::Accept(_) => assert!(matches!(outcome, Err(SubmitError::Failed(_))), "probe: {outcome:?}"),
            _ => assert!(outcome.is_ok(), "probe: {outcome:?}"),
        }
        return;
    }
    let mut model = model.clone();
    let before = model.last_ts;
    let (code, _) = model.submit(&tx, 0);
    let outcome = ledger.submit(&[tx]).expect("submit after open");
    assert_eq!(outcome[0].code(), code, "probe: {outcome:?}");
    if let TxOutcome::Committed(r) = outcome[0] {
        assert_eq!(r.seq, model.last_seq, "probe seq");
        assert!(r.timestamp_ns > before, "probe committed at {} after a record at {before}", r.timestamp_ns);
    }
}

// ---------------------------------------------------------------------------------------
// Seeds.
// ---------------------------------------------------------------------------------------

/// Seed inputs, by file name.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let all = 0x1f;
    // A valid synthetic history: a sale, an authorization, its capture, a refund of
    // the sale, an adjustment, a close of client 1's USD batch.
    let synthetic = vec![
        0,    // no real frames
        0x08, // tx, user_data 1
        0x00, 0x00, 0x00, 0x50, 0x00, 0x01, // sale client 1, fresh id, 400, USD, +1 ms
        0x00, 0x01, 0x00, 0x00, 0x60, 0x00, 0x01, // authorization, 800
        0x00, 0x02, 0x00, 0x02, 0xf7, 0x00, 0x01, // capture of the authorization: its full amount
        0x00, 0x04, 0x00, 0x04, 0x48, 0x00, 0x01, // refund of the sale, 200
        0x00, 0x05, 0x00, 0x00, 0x20, 0x00, 0x01, // adjustment, -800
        0x01, 0x00, 0x01, // close client 1 USD
    ];
    let mut same_time = synthetic[..8].to_vec();
    same_time.extend([0x00, 0x00, 0x00, 0x00, 0x50, 0x00, 0xfd]); // another sale at the same time
    let mut top_time = synthetic[..8].to_vec();
    top_time.extend([0x00, 0x00, 0x00, 0x00, 0x50, 0x00, 0xfe]); // a sale at u64::MAX - 1
    let mut end_of_time = synthetic[..8].to_vec();
    end_of_time.extend([0x00, 0x00, 0x00, 0x00, 0x50, 0x00, 0xff]); // a sale at u64::MAX: nothing can follow
    // A long history that replays (op 2, bit 3): every kind tried, refused ones replaced.
    let mut long = vec![all];
    for k in 0u8..40 {
        long.extend([0x0a, (k % 6) | (k & 0x10), 0, 1 + k % 3, 0x48 + k, k % 3, 0, k]);
    }
    long.extend([0x01, 0x00, 0x00, 0x01, 0x01, 0x01]); // closes of client 1 USD and client 2 USD
    vec![
        ("real-log", vec![all]),
        ("long-valid-history", long),
        ("real-log-snapshot", vec![all | 0x20]),
        ("real-prefix-6", vec![6]),
        ("synthetic-valid", synthetic.clone()),
        ("same-time-refused", same_time),
        ("time-near-the-top", top_time),
        ("time-at-the-top", end_of_time),
        ("short-tx-record", vec![0, 0x03, 0x00, 40, 1, 2, 3, 4]),
        ("unknown-kind", vec![3, 0x03, 0x09, 0x00, 0x07, 32, 0xaa, 0xbb]),
        ("flipped-real-record", vec![all, 0x04, 4, 56, 0x01]), // refund -> adjustment with a ref
        ("flipped-snapshot", vec![all | 0x20, 0x05, 0x80, 0x00, 0x01]),
        ("root-shifted-by-8", [synthetic.clone(), vec![0x07, 0x00, 8]].concat()),
        ("root-shifted-by-4", [synthetic.clone(), vec![0x07, 0x00, 4]].concat()),
        ("close-batch-word-set", [synthetic, vec![0x06, 0x00, 2, 0x02]].concat()),
        ("real-frames-reordered", vec![0, 0x02, 1, 0x02, 0]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_log_opens_and_matches_the_model() {
        let real = real();
        assert!(real.frames.len() >= 16 && real.snapshot_seq > 0);
        record_decoder(&[0x1f]);
        record_decoder(&[0x3f]);
    }

    #[test]
    fn seeds_reach_the_interesting_verdicts() {
        let real = real();
        let verdict = |name: &str| {
            let data = seed_inputs().into_iter().find(|(n, _)| *n == name).expect("a seed").1;
            let built = build(&data);
            expect(Model::default(), &built.frames).map(|m| m.last_seq)
        };
        assert_eq!(verdict("real-log"), Ok(real.frames.len() as u64));
        assert_eq!(verdict("long-valid-history"), Ok(real.frames.len() as u64 + 42));
        assert_eq!(verdict("synthetic-valid"), Ok(6));
        assert!(matches!(verdict("same-time-refused"), Err((2, Refusal::Replay(_)))));
        assert!(matches!(verdict("short-tx-record"), Err((1, Refusal::Decode(_)))));
        assert!(matches!(verdict("unknown-kind"), Err((4, Refusal::Decode(_)))));
        assert!(matches!(verdict("flipped-real-record"), Err((4, Refusal::Replay(_)))));
        assert_eq!(verdict("root-shifted-by-8"), Ok(6));
        assert!(matches!(verdict("root-shifted-by-4"), Err((6, Refusal::Decode(_)))));
        assert!(matches!(verdict("close-batch-word-set"), Err((6, Refusal::Replay(_)))));
        assert!(matches!(verdict("real-frames-reordered"), Err((2, Refusal::Replay(_)))));
        assert_eq!(verdict("time-near-the-top"), Ok(2));
        assert_eq!(verdict("time-at-the-top"), Ok(2));
        let built = build(&seed_inputs().into_iter().find(|(n, _)| *n == "flipped-snapshot").expect("seed").1);
        assert!(built.snapshot_mutated);
    }
}
