//! `ledger inspect DIR [--json]` and `ledger inspect DIR --tx ID`: what a ledger holds,
//! as of the last committed seq at the time of reading (built by
//! `ledger_core::inspect::LedgerView`: the newest good checkpoint plus the log after
//! it, replayed through the engine's own judging code).

use std::collections::BTreeMap;
use std::path::Path;

use ledger_core::TxId;
use ledger_core::inspect::{LedgerView, parse_run_file_name};
use ledger_core::money::format_minor;
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
pub(crate) fn transaction(dir: &Path, id: TxId) -> Result<Status, Failure> {
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

/// The summary as one JSON document.
fn summary_json(dir: &Path, view: &LedgerView) -> Value {
    let report = view.report();
    let records = view.all_records();
    let mut kinds: BTreeMap<String, u64> = KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let mut states: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
    let mut clients: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        *kinds.entry(out::kind_name(&r.tx)).or_default() += 1;
        *states.entry(out::state_name(r.state)).or_default() += 1;
        *clients.entry(r.tx.client_id).or_default() += 1;
    }
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
    json!({
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
        "transactions": records.len(),
        "batch_closes": closes,
        "by_kind": kinds,
        "by_state": states,
        "batches": batches.len(),
        "open_batches": batches.len() as u64 - closes,
        "clients": clients,
    })
}

/// `inspect DIR [--json]`.
pub(crate) fn summary(dir: &Path, as_json: bool) -> Result<Status, Failure> {
    let view = open(dir)?;
    let s = summary_json(dir, &view);
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
