//! How records and transactions are written out: JSON objects (for `dump --format
//! jsonl` and `inspect --tx`) and CSV rows. Ids are 32 hex digits (high half then low),
//! amounts are decimal strings in major units with the integer minor units beside them.

use ledger_core::inspect::LogRecord;
use ledger_core::money::format_minor;
use ledger_core::{Currency, Kind, Tx, TxId, TxRecord};
use serde_json::{Map, Value, json};

/// An id as 32 hex digits, high half first.
pub(crate) fn id_hex(id: TxId) -> String {
    format!("{:032x}", id.0)
}

/// The name of a transaction's kind (a payment is a sale or an authorization).
pub(crate) fn kind_name(tx: &Tx) -> String {
    match tx.kind() {
        Some(Kind::Payment) if tx.flags & Tx::AUTH_ONLY != 0 => "authorization".into(),
        Some(Kind::Payment) => "sale".into(),
        Some(Kind::Capture) => "capture".into(),
        Some(Kind::Void) => "void".into(),
        Some(Kind::Refund) => "refund".into(),
        Some(Kind::Adjustment) => "adjustment".into(),
        None => format!("kind_{}", tx.kind),
    }
}

/// The currency's code, or the raw bytes when unknown (a committed record never has one).
fn currency_code(bytes: [u8; 4]) -> String {
    Currency::from_c_bytes(bytes).map_or_else(|| String::from_utf8_lossy(&bytes[..3]).into_owned(), |c| c.code().into())
}

/// `minor` as a decimal string of `currency`, or the integer when the currency is unknown.
fn amount(minor: i64, currency: [u8; 4]) -> String {
    Currency::from_c_bytes(currency).map_or_else(|| minor.to_string(), |c| format_minor(minor, c))
}

fn tx_fields(tx: &Tx, out: &mut Map<String, Value>) {
    out.insert("id".into(), id_hex(tx.id).into());
    out.insert("ref_id".into(), if tx.ref_id.is_none() { Value::Null } else { id_hex(tx.ref_id).into() });
    out.insert("client_id".into(), tx.client_id.into());
    out.insert("device_id".into(), tx.device_id.into());
    out.insert("kind".into(), kind_name(tx).into());
    out.insert("flags".into(), tx.flags.into());
    out.insert("amount".into(), amount(tx.amount, tx.currency).into());
    out.insert("amount_minor".into(), tx.amount.into());
    out.insert("currency".into(), currency_code(tx.currency).into());
    out.insert("user_data".into(), tx.user_data.into());
}

/// A record of the log as one JSON object.
pub(crate) fn log_record(record: &LogRecord) -> Value {
    match record {
        LogRecord::Tx { seq, tx, timestamp_ns, batch_id } => {
            let mut out = Map::new();
            out.insert("seq".into(), (*seq).into());
            out.insert("record".into(), "tx".into());
            tx_fields(tx, &mut out);
            out.insert("timestamp_ns".into(), (*timestamp_ns).into());
            out.insert("batch_id".into(), (*batch_id).into());
            Value::Object(out)
        }
        LogRecord::BatchClose { seq, client_id, currency, batch_id, timestamp_ns } => json!({
            "seq": seq,
            "record": "batch_close",
            "client_id": client_id,
            "currency": currency.code(),
            "timestamp_ns": timestamp_ns,
            "batch_id": batch_id,
        }),
    }
}

/// A transaction as it stands now, as one JSON object.
pub(crate) fn tx_record(r: &TxRecord) -> Value {
    let mut out = Map::new();
    out.insert("seq".into(), r.seq.into());
    tx_fields(&r.tx, &mut out);
    out.insert("timestamp_ns".into(), r.timestamp_ns.into());
    out.insert("batch_id".into(), r.batch_id.into());
    out.insert("state".into(), r.state.name().into());
    out.insert("captured".into(), amount(r.captured, r.tx.currency).into());
    out.insert("captured_minor".into(), r.captured.into());
    out.insert("refunded".into(), amount(r.refunded, r.tx.currency).into());
    out.insert("refunded_minor".into(), r.refunded.into());
    Value::Object(out)
}

/// The header line of `dump --format csv`.
pub(crate) const CSV_HEADER: &str =
    "seq,record,id,ref_id,client_id,device_id,kind,flags,amount,amount_minor,currency,user_data,timestamp_ns,batch_id";

/// A record of the log as one CSV row (no field can hold a comma or a quote).
pub(crate) fn csv_row(record: &LogRecord) -> String {
    match record {
        LogRecord::Tx { seq, tx, timestamp_ns, batch_id } => format!(
            "{seq},tx,{},{},{},{},{},{},{},{},{},{},{timestamp_ns},{batch_id}",
            id_hex(tx.id),
            if tx.ref_id.is_none() { String::new() } else { id_hex(tx.ref_id) },
            tx.client_id,
            tx.device_id,
            kind_name(tx),
            tx.flags,
            amount(tx.amount, tx.currency),
            tx.amount,
            currency_code(tx.currency),
            tx.user_data,
        ),
        LogRecord::BatchClose { seq, client_id, currency, batch_id, timestamp_ns } => {
            format!("{seq},batch_close,,,{client_id},,,,,,{},,{timestamp_ns},{batch_id}", currency.code())
        }
    }
}
