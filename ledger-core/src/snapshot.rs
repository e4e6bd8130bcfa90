//! Snapshots of the engine's state, archived with rkyv and stored by ledger-store
//! (which verifies them with BLAKE3). Opening loads the newest good snapshot and
//! replays only the log after it; a damaged one is skipped with a warning.

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;

use crate::codec::TxFrame;
use crate::consistency;
use crate::currency::Currency;
use crate::model::{Balance, BatchSummary, TxRecord, TxState};
use crate::state::State;

/// Format of the payload; bump on any change to the archived types.
const SNAPSHOT_VERSION: u32 = 1;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct SnapshotV1 {
    version: u32,
    last_seq: u64,
    last_ts: u64,
    records: Vec<RecordRow>,
    batches: Vec<BatchRow>,
    open: Vec<OpenRow>,
    balances: Vec<BalanceRow>,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct RecordRow {
    frame: TxFrame,
    seq: u64,
    state: u32,
    captured: i64,
    refunded: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct BatchRow {
    batch_id: u64,
    client_id: u64,
    currency: [u8; 4],
    first_seq: u64,
    last_seq: u64,
    opened_ns: u64,
    closed_ns: u64,
    counts: [u64; 3],
    totals: [i64; 3],
    net: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct OpenRow {
    client_id: u64,
    currency: [u8; 4],
    batch_id: u64,
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct BalanceRow {
    client_id: u64,
    currency: [u8; 4],
    captured: i64,
    refunded: i64,
    adjusted: i64,
    net: i64,
    settled_net: i64,
}

/// Archives the state, consuming it: the sequencer hands over its copy, which is
/// dropped as soon as the rows are taken from it, so that the copy, the rows and the
/// archive are never all in memory at once. The archive is written into a buffer of
/// its final size (no doubling as it grows, no copy out of it).
pub(crate) fn encode(state: State) -> AlignedVec {
    let snapshot = SnapshotV1 {
        version: SNAPSHOT_VERSION,
        last_seq: state.last_seq,
        last_ts: state.last_ts,
        records: (0..state.records.len())
            .map(|pos| {
                let r = state.records.get(u32::try_from(pos).expect("positions fit u32"));
                RecordRow {
                    frame: TxFrame::new(&r.tx, r.timestamp_ns, r.batch_id),
                    seq: r.seq,
                    state: r.state as u32,
                    captured: r.captured,
                    refunded: r.refunded,
                }
            })
            .collect(),
        batches: state
            .batches
            .iter()
            .map(|b| BatchRow {
                batch_id: b.batch_id,
                client_id: b.client_id,
                currency: b.currency.c_bytes(),
                first_seq: b.first_seq,
                last_seq: b.last_seq,
                opened_ns: b.opened_ns,
                closed_ns: b.closed_ns,
                counts: [b.payment_count, b.refund_count, b.adjustment_count],
                totals: [b.payment_total, b.refund_total, b.adjustment_total],
                net: b.net,
            })
            .collect(),
        open: state
            .open
            .iter()
            .map(|(&(client_id, currency), &batch_id)| OpenRow { client_id, currency: currency.c_bytes(), batch_id })
            .collect(),
        balances: state
            .balances
            .iter()
            .map(|(&(client_id, currency), b)| BalanceRow {
                client_id,
                currency: currency.c_bytes(),
                captured: b.captured,
                refunded: b.refunded,
                adjusted: b.adjusted,
                net: b.net,
                settled_net: b.settled_net,
            })
            .collect(),
    };
    drop(state);
    let size = size_of::<ArchivedSnapshotV1>()
        + snapshot.records.len() * size_of::<ArchivedRecordRow>()
        + snapshot.batches.len() * size_of::<ArchivedBatchRow>()
        + snapshot.open.len() * size_of::<ArchivedOpenRow>()
        + snapshot.balances.len() * size_of::<ArchivedBalanceRow>()
        + 4 * 16; // each vector's alignment padding, at most
    // Plain vectors of fixed-size rows always serialize.
    let bytes = rkyv::api::high::to_bytes_in::<_, RkyvError>(&snapshot, AlignedVec::with_capacity(size))
        .expect("a snapshot always serializes");
    debug_assert!(bytes.len() <= size, "the archive's size was estimated short: {} > {size}", bytes.len());
    bytes
}

/// Rebuilds the state from an archived snapshot, checking that it hangs together.
pub(crate) fn decode(payload: &[u8], seq: u64) -> Result<State, String> {
    let a = rkyv::access::<ArchivedSnapshotV1, RkyvError>(payload).map_err(|e| e.to_string())?;
    if a.version.to_native() != SNAPSHOT_VERSION {
        return Err(format!("snapshot version {} is not {SNAPSHOT_VERSION}", a.version.to_native()));
    }
    if a.last_seq.to_native() != seq {
        return Err("snapshot covers another seq than its file says".into());
    }
    let currency = |c: [u8; 4]| Currency::from_c_bytes(c).ok_or_else(|| "unknown currency in snapshot".to_string());
    let mut state = State { last_seq: a.last_seq.to_native(), last_ts: a.last_ts.to_native(), ..State::default() };
    let mut last_record_seq = 0;
    for row in a.records.iter() {
        let f = &row.frame;
        let tx = f.tx();
        let record = TxRecord {
            tx,
            seq: row.seq.to_native(),
            batch_id: f.batch_id.to_native(),
            timestamp_ns: f.timestamp_ns.to_native(),
            state: TxState::from_code(row.state.to_native()).ok_or("bad state in snapshot")?,
            captured: row.captured.to_native(),
            refunded: row.refunded.to_native(),
        };
        if record.seq <= last_record_seq || record.seq > state.last_seq {
            return Err("snapshot records out of order".into());
        }
        last_record_seq = record.seq;
        state.records.push_record(&record)?;
    }
    for (i, row) in a.batches.iter().enumerate() {
        let batch = BatchSummary {
            batch_id: row.batch_id.to_native(),
            client_id: row.client_id.to_native(),
            currency: currency(row.currency)?,
            first_seq: row.first_seq.to_native(),
            last_seq: row.last_seq.to_native(),
            opened_ns: row.opened_ns.to_native(),
            closed_ns: row.closed_ns.to_native(),
            payment_count: row.counts[0].to_native(),
            payment_total: row.totals[0].to_native(),
            refund_count: row.counts[1].to_native(),
            refund_total: row.totals[1].to_native(),
            adjustment_count: row.counts[2].to_native(),
            adjustment_total: row.totals[2].to_native(),
            net: row.net.to_native(),
        };
        if batch.batch_id != i as u64 + 1 {
            return Err("snapshot batch ids are not dense".into());
        }
        state.client_batches.entry(batch.client_id).or_default().push(batch.batch_id);
        state.batches.push(batch);
    }
    for row in a.open.iter() {
        let batch_id = row.batch_id.to_native();
        let account = (row.client_id.to_native(), currency(row.currency)?);
        if state.batch(batch_id).is_none_or(|b| !b.is_open() || (b.client_id, b.currency) != account) {
            return Err("snapshot names an open batch that is not".into());
        }
        state.open.insert(account, batch_id);
    }
    for row in a.balances.iter() {
        let balance = Balance {
            captured: row.captured.to_native(),
            refunded: row.refunded.to_native(),
            adjusted: row.adjusted.to_native(),
            net: row.net.to_native(),
            settled_net: row.settled_net.to_native(),
            open_net: 0,
        };
        state.balances.insert((row.client_id.to_native(), currency(row.currency)?), balance);
    }
    consistency::check(&state).map_err(|e| format!("does not hang together: {e}"))?;
    Ok(state)
}
