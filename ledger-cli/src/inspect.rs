//! `ledger inspect DIR [--json]` and `ledger inspect DIR --tx ID`: what a ledger holds,
//! as of the last committed seq at the time of reading (built by
//! `ledger_core::inspect::LedgerView`: the newest good checkpoint plus the log after
//! it, replayed through the engine's own judging code).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ledger_core::inspect::{LedgerView, LogRecord, decode_record, parse_run_file_name, scan_log};
use ledger_core::money::format_minor;
use ledger_core::{Kind, Tx, TxId};
use serde_json::{Value, json};

use crate::{Failure, Status, json as out};

/// Kinds in the order they are reported.
const KINDS: [&str; 6] = ["sale", "authorization", "capture", "void", "refund", "adjustment"];
/// States in the order they are reported.
const STATES: [&str; 6] = ["authorized", "captured", "partially_refunded", "refunded", "voided", "applied"];

fn open(dir: &Path) -> Result<LedgerView, Failure> {
    LedgerView::open(dir).map_err(Failure::from_view)
}

/// `inspect --tx ID`: the transaction as JSON, or exit 1 when there is none.
pub fn transaction(dir: &Path, id: TxId) -> Result<Status, Failure> {
    let view = open(dir)?;
    match view.lookup(id) {
        Some(record) => {
            println!("{}", out::tx_record(&record));
            Ok(Status::Ok)
        }
        None => Err(Failure::found(format!(
            "{}: no transaction {} (as of seq {})",
            dir.display(),
            out::id_hex(id),
            view.last_seq()
        ))),
    }
}

/// Sizes of the cold run files in `dir`: count and bytes.
fn runs_on_disk(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().and_then(parse_run_file_name).is_some())
        .fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.metadata().map_or(0, |m| m.len())))
}

/// Transactions counted by kind, by state and by client.
#[derive(Debug)]
struct Counts {
    transactions: u64,
    kinds: BTreeMap<String, u64>,
    states: BTreeMap<&'static str, u64>,
    clients: BTreeMap<u64, u64>,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            transactions: 0,
            kinds: KINDS.iter().map(|k| (k.to_string(), 0)).collect(),
            states: STATES.iter().map(|s| (*s, 0)).collect(),
            clients: BTreeMap::new(),
        }
    }

    fn add(&mut self, tx: &Tx) {
        self.transactions += 1;
        *self.kinds.entry(out::kind_name(tx)).or_default() += 1;
        *self.clients.entry(tx.client_id).or_default() += 1;
    }

    fn move_state(&mut self, from: &'static str, to: &'static str) {
        if let Some(n) = self.states.get_mut(from) {
            *n = n.saturating_sub(1);
        }
        *self.states.entry(to).or_default() += 1;
    }
}

/// Counts every transaction up to the view's seq in memory proportional to the
/// payments that were captured, voided or refunded, not to history: the log is read
/// once for kinds and clients (a payment starts authorized or captured, every other
/// kind is applied), and only the payments a later record refers to are looked up in
/// the view for their state now. A log that no longer starts at seq 1 is counted from
/// the view's records instead.
fn count(dir: &Path, view: &LedgerView) -> Result<Counts, Failure> {
    let mut counts = Counts::new();
    let (image, outcome) = scan_log(dir).map_err(Failure::from_view)?;
    if image.segments().first().is_none_or(|s| s.first_seq != 1) {
        for r in view.all_records() {
            counts.add(&r.tx);
            *counts.states.entry(r.state.name()).or_default() += 1;
        }
        return Ok(counts);
    }
    let mut referenced: HashSet<TxId> = HashSet::new();
    for frame in image.frames(&outcome, 1) {
        let frame = frame.map_err(|(path, at)| {
            Failure::found(format!("{}: frame at byte {at} changed while it was read", path.display()))
        })?;
        if frame.seq > view.last_seq() {
            break;
        }
        let record = decode_record(frame.seq, frame.kind, frame.payload).map_err(|e| {
            Failure::found(format!(
                "{}: record {} at byte {} does not decode: {e}",
                frame.segment.display(),
                frame.seq,
                frame.offset
            ))
        })?;
        let LogRecord::Tx { tx, .. } = record else { continue };
        counts.add(&tx);
        let start = match tx.kind() {
            Some(Kind::Payment) if tx.flags & Tx::AUTH_ONLY != 0 => "authorized",
            Some(Kind::Payment) => "captured",
            _ => "applied",
        };
        *counts.states.entry(start).or_default() += 1;
        if tx.kind().is_some_and(Kind::has_ref) {
            referenced.insert(tx.ref_id);
        }
    }
    for id in referenced {
        let Some(payment) = view.lookup(id) else { continue };
        let start = if payment.tx.flags & Tx::AUTH_ONLY != 0 { "authorized" } else { "captured" };
        counts.move_state(start, payment.state.name());
    }
    Ok(counts)
}

/// The summary as one JSON document.
fn summary_json(dir: &Path, view: &LedgerView) -> Result<Value, Failure> {
    let report = view.report();
    let Counts { transactions, kinds, states, clients } = count(dir, view)?;
    let batches = view.batches();
    let closes = batches.iter().filter(|b| !b.is_open()).count() as u64;
    let balances = view.balances();
    let clients: Vec<Value> = clients
        .iter()
        .map(|(&client, &transactions)| {
            let balances: Vec<Value> = balances
                .iter()
                .filter(|(c, _, _)| *c == client)
                .map(|(_, currency, b)| {
                    json!({
                        "currency": currency.code(),
                        "net": format_minor(b.net, *currency),
                        "settled_net": format_minor(b.settled_net, *currency),
                        "open_net": format_minor(b.open_net, *currency),
                    })
                })
                .collect();
            json!({ "client_id": client, "transactions": transactions, "balances": balances })
        })
        .collect();
    let (runs, run_bytes) = runs_on_disk(dir);
    let segment_bytes: u64 = report.segments.iter().map(|(_, b)| b).sum();
    Ok(json!({
        "dir": dir.display().to_string(),
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "segments": report.segments.len(),
        "segment_bytes": segment_bytes,
        "log_bytes": report.log_bytes,
        "torn_tail_bytes": report.torn_tail.as_ref().map_or(0, |t| t.bytes_dropped),
        "checkpoints": report.checkpoints.iter().map(|(seq, path, bytes)| json!({
            "seq": seq,
            "file": path.display().to_string(),
            "bytes": bytes,
        })).collect::<Vec<_>>(),
        "loaded_checkpoint_seq": report.checkpoint_seq,
        "replayed_records": report.replayed,
        "checkpoint_warnings": report.warnings,
        "cold_runs": runs,
        "cold_bytes": run_bytes,
        "transactions": transactions,
        "batch_closes": closes,
        "by_kind": kinds,
        "by_state": states,
        "batches": batches.len(),
        "open_batches": batches.len() as u64 - closes,
        "clients": clients,
    }))
}

/// `inspect DIR [--json]`.
pub fn summary(dir: &Path, as_json: bool) -> Result<Status, Failure> {
    let view = open(dir)?;
    let s = summary_json(dir, &view)?;
    if as_json {
        println!("{s:#}");
        return Ok(Status::Ok);
    }
    let n = |key: &str| s.get(key).cloned().unwrap_or(Value::Null);
    println!("ledger {}", dir.display());
    println!("seqs        {}..={}", n("first_seq"), n("last_seq"));
    println!(
        "log         {} segments, {} bytes on disk, {} bytes of frames",
        n("segments"),
        n("segment_bytes"),
        n("log_bytes")
    );
    if let Some(t) = &view.report().torn_tail {
        println!(
            "            {} bytes past the last complete group at {} (a write in progress, or a tail the next open cuts)",
            t.bytes_dropped,
            view.report().segments.get(t.segment).map_or_else(String::new, |(p, _)| p.display().to_string())
        );
    }
    for (seq, path, bytes) in &view.report().checkpoints {
        let used = if Some(*seq) == view.report().checkpoint_seq { " (loaded)" } else { "" };
        println!("checkpoint  seq {seq}, {bytes} bytes, {}{used}", path.display());
    }
    for w in &view.report().warnings {
        println!("warning     {w}");
    }
    println!("cold tier   {} runs, {} bytes", n("cold_runs"), n("cold_bytes"));
    match view.report().checkpoint_seq {
        Some(seq) => println!("replayed    {} records after the checkpoint at seq {seq}", n("replayed_records")),
        None => println!("replayed    {} records (no usable checkpoint: the whole log)", n("replayed_records")),
    }
    println!("transactions {}, batch closes {}", n("transactions"), n("batch_closes"));
    let line = |key: &str| {
        s.get(key)
            .and_then(Value::as_object)
            .map_or_else(String::new, |m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "))
    };
    println!("by kind     {}", line("by_kind"));
    println!("by state    {}", line("by_state"));
    println!("batches     {} ({} open)", n("batches"), n("open_batches"));
    let clients = s.get("clients").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    println!("clients     {}", clients.len());
    for c in clients {
        let balances = c.get("balances").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let money: Vec<String> = balances
            .iter()
            .map(|b| {
                let f = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                format!("{} net {} (settled {}, open {})", f("currency"), f("net"), f("settled_net"), f("open_net"))
            })
            .collect();
        println!(
            "  client {}: {} transactions{}{}",
            c.get("client_id").cloned().unwrap_or(Value::Null),
            c.get("transactions").cloned().unwrap_or(Value::Null),
            if money.is_empty() { "" } else { "; " },
            money.join("; ")
        );
    }
    Ok(Status::Ok)
}
