//! `ledger inspect` and `ledger dump` against what was committed through the engine:
//! the summary's counts by kind and state, clients and balances, one transaction by
//! id, and the records in seq order as jsonl and csv, by range.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Committed, build, eur, ledger, path_arg, reopen, small, usd};
use ledger_core::{Durability, Kind, Tx, TxId};
use serde_json::Value;

fn kind_name(tx: &Tx) -> &'static str {
    match tx.kind() {
        Some(Kind::Payment) if tx.flags & Tx::AUTH_ONLY != 0 => "authorization",
        Some(Kind::Payment) => "sale",
        Some(Kind::Capture) => "capture",
        Some(Kind::Void) => "void",
        Some(Kind::Refund) => "refund",
        Some(Kind::Adjustment) => "adjustment",
        None => panic!("a committed transaction has a kind"),
    }
}

/// A ledger of 1200 sales and their follow-ups, plus one transaction whose id has a
/// zero high half (for a decimal `--tx`).
fn ledger_with_history() -> (tempfile::TempDir, Committed) {
    let (dir, mut committed) = build(1200, Durability::SyncData);
    let owner = reopen(dir.path(), small(Durability::SyncData));
    let outcome = owner.submit(&[Tx::sale(TxId(42), 2, 1234, usd())]).unwrap();
    committed.records.push(*outcome[0].record().unwrap());
    owner.close().unwrap();
    (dir, committed)
}

#[test]
fn inspect_summarizes_what_was_committed() {
    let (dir, committed) = ledger_with_history();
    let d = path_arg(dir.path());
    let run = ledger(&["inspect", d, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let s: Value = serde_json::from_str(&run.stdout).unwrap();

    // What the engine itself says now, for states and balances.
    let owner = reopen(dir.path(), small(Durability::SyncData));
    let last_seq = owner.last_seq();
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    let mut clients: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &committed.records {
        *kinds.entry(kind_name(&r.tx)).or_default() += 1;
        *states.entry(owner.lookup(r.tx.id).unwrap().state.name()).or_default() += 1;
        *clients.entry(r.tx.client_id).or_default() += 1;
    }
    assert_eq!(s["first_seq"], 1);
    assert_eq!(s["last_seq"], last_seq);
    assert_eq!(s["transactions"], committed.records.len());
    assert_eq!(s["batch_closes"], committed.closes.len());
    assert_eq!(last_seq, (committed.records.len() + committed.closes.len()) as u64, "every seq is a record");
    for (kind, n) in &kinds {
        assert_eq!(s["by_kind"][kind], *n, "kind {kind}: {}", s["by_kind"]);
    }
    for (state, n) in &states {
        assert_eq!(s["by_state"][state], *n, "state {state}: {}", s["by_state"]);
    }
    assert!(kinds.len() == 6 && states.len() >= 4, "the history has every kind: {kinds:?} {states:?}");
    assert!(s["loaded_checkpoint_seq"].as_u64().unwrap() > 1000, "the state came from a checkpoint: {s}");
    assert!(s["checkpoints"].as_array().unwrap().len() == 2 && s["cold_runs"].as_u64().unwrap() > 0, "{s}");
    assert!(s["segments"].as_u64().unwrap() >= 3, "{s}");
    let listed = s["clients"].as_array().unwrap();
    assert_eq!(listed.len(), clients.len());
    for c in listed {
        let client = c["client_id"].as_u64().unwrap();
        assert_eq!(c["transactions"], clients[&client], "client {client}");
        let currency = if client == 3 { eur() } else { usd() };
        let balance = owner.balance(client, currency).unwrap();
        let b = &c["balances"][0];
        assert_eq!(b["currency"], currency.code());
        assert_eq!(b["net"], ledger_core::money::format_minor(balance.net, currency), "client {client}");
        assert_eq!(b["open_net"], ledger_core::money::format_minor(balance.open_net, currency), "client {client}");
    }
    owner.close().unwrap();

    // The text form says the same in lines.
    let text = ledger(&["inspect", d]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains(&format!("seqs        1..={last_seq}")), "{}", text.stdout);
    assert!(text.stdout.contains(&format!("transactions {}", committed.records.len())), "{}", text.stdout);
}

#[test]
fn inspect_tx_prints_one_transaction_as_it_stands() {
    let (dir, committed) = ledger_with_history();
    let d = path_arg(dir.path());
    // A payment that was refunded, long since in the cold tier.
    let refund = committed.records.iter().find(|r| r.tx.kind().is_some_and(|k| k == Kind::Refund)).unwrap();
    let payment = refund.tx.ref_id;
    let run = ledger(&["inspect", d, "--tx", &format!("{:032x}", payment.0)]);
    assert_eq!(run.code, 0, "{run:?}");
    let tx: Value = serde_json::from_str(&run.stdout).unwrap();
    let at_commit = committed.records.iter().find(|r| r.tx.id == payment).unwrap();
    assert_eq!(tx["id"], format!("{:032x}", payment.0));
    assert_eq!(tx["seq"], at_commit.seq);
    assert_eq!(tx["client_id"], at_commit.tx.client_id);
    assert_eq!(tx["amount_minor"], at_commit.tx.amount);
    assert_eq!(tx["kind"], "sale");
    assert_eq!(tx["state"], "partially_refunded");
    assert_eq!(tx["refunded_minor"], refund.tx.amount);
    assert_eq!(tx["timestamp_ns"], at_commit.timestamp_ns);

    // The low half in decimal (high half 0).
    let run = ledger(&["inspect", d, "--tx", "42"]);
    assert_eq!(run.code, 0, "{run:?}");
    let tx: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((tx["amount"].as_str(), tx["client_id"].as_u64()), (Some("12.34"), Some(2)));

    // Not there: exit 1, and nothing on stdout.
    for id in ["43", "ffffffffffffffffffffffffffffffff"] {
        let run = ledger(&["inspect", d, "--tx", id]);
        assert_eq!(run.code, 1, "{id}: {run:?}");
        assert!(run.stdout.is_empty() && run.stderr.contains("no transaction"), "{run:?}");
    }
}

#[test]
fn dump_prints_the_committed_records_in_seq_order() {
    let (dir, committed) = ledger_with_history();
    let d = path_arg(dir.path());
    let by_seq: BTreeMap<u64, _> = committed.records.iter().map(|r| (r.seq, r)).collect();
    let run = ledger(&["dump", d]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), committed.records.len() + committed.closes.len());
    let mut closes = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let seq = line["seq"].as_u64().unwrap();
        assert_eq!(seq, i as u64 + 1, "gapless, in order");
        match line["record"].as_str().unwrap() {
            "tx" => {
                let r = by_seq[&seq];
                assert_eq!(line["id"], format!("{:032x}", r.tx.id.0));
                assert_eq!(line["client_id"], r.tx.client_id);
                assert_eq!(line["device_id"], r.tx.device_id);
                assert_eq!(line["amount_minor"], r.tx.amount);
                assert_eq!(line["kind"], kind_name(&r.tx));
                assert_eq!(line["batch_id"], r.batch_id);
                assert_eq!(line["timestamp_ns"], r.timestamp_ns);
                assert_eq!(line["user_data"], r.tx.user_data);
                let ref_id = if r.tx.ref_id.is_none() { Value::Null } else { format!("{:032x}", r.tx.ref_id.0).into() };
                assert_eq!(line["ref_id"], ref_id);
            }
            "batch_close" => {
                assert!(!by_seq.contains_key(&seq));
                closes.push(line["batch_id"].as_u64().unwrap());
            }
            other => panic!("unknown record {other}"),
        }
    }
    assert_eq!(closes, committed.closes);

    // A range, as jsonl and as csv: the same records.
    let run = ledger(&["dump", d, "--from", "395", "--to", "410"]);
    assert_eq!(run.code, 0, "{run:?}");
    let range: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(range, lines[394..410].to_vec());
    let run = ledger(&["dump", d, "--from", "395", "--to", "410", "--format", "csv"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut rows = run.stdout.lines();
    let header: Vec<&str> = rows.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len(), 16);
    for (row, json) in rows.iter().zip(&range) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        for (name, field) in header.iter().zip(row) {
            let expected = match &json[*name] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(*field, expected, "column {name} of seq {}", json["seq"]);
        }
    }
    // Past the end: nothing after the last record; an inverted range is a usage error.
    let run = ledger(&["dump", d, "--from", "100000"]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert_eq!(ledger(&["dump", d, "--from", "10", "--to", "9"]).code, 2);
}
