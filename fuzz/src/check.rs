//! Checks on an open engine: [`same_state`] compares everything it answers with the
//! reference model; [`invariants`] recomputes the architecture's invariants from the
//! engine's own answers, trusting nothing it summed itself.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::{Balance, BatchSummary, Currency, Ledger, TxId, TxRecord, TxState};

use crate::model::{MBatch, MRecord, Model};

/// The engine's record in the model's terms (timestamp dropped unless `timestamps`).
fn record_key(r: &TxRecord, timestamps: bool) -> MRecord {
    MRecord {
        tx: r.tx,
        seq: r.seq,
        batch_id: r.batch_id,
        ts: if timestamps { r.timestamp_ns } else { 0 },
        state: r.state as u32,
        captured: r.captured,
        refunded: r.refunded,
    }
}

fn model_key(r: &MRecord, timestamps: bool) -> MRecord {
    MRecord { ts: if timestamps { r.ts } else { 0 }, ..*r }
}

/// The engine's batch in the model's terms.
pub fn batch_key(b: &BatchSummary, timestamps: bool) -> MBatch {
    MBatch {
        id: b.batch_id,
        client: b.client_id,
        currency: b.currency.c_bytes(),
        first_seq: b.first_seq,
        last_seq: b.last_seq,
        opened_ns: if timestamps { b.opened_ns } else { 0 },
        closed_ns: if timestamps { b.closed_ns } else { u64::from(b.closed_ns != 0) },
        payments: (b.payment_count, b.payment_total),
        refunds: (b.refund_count, b.refund_total),
        adjustments: (b.adjustment_count, b.adjustment_total),
        net: b.net,
    }
}

fn model_batch_key(b: &MBatch, timestamps: bool) -> MBatch {
    MBatch {
        opened_ns: if timestamps { b.opened_ns } else { 0 },
        closed_ns: if timestamps { b.closed_ns } else { u64::from(b.closed_ns != 0) },
        ..*b
    }
}

/// Everything the engine answers must equal the model: last seq, count, every record
/// by id (and `extra_ids`, absent from both or present in both), every client's list,
/// every batch by id and by client, every balance and open batch. Commit times are
/// compared only with `timestamps` (a live engine's come from the wall clock).
pub fn same_state(ledger: &Ledger, model: &Model, extra_ids: &[u128], timestamps: bool) {
    assert_eq!(ledger.last_seq(), model.last_seq, "last_seq");
    assert_eq!(ledger.transaction_count(), model.txs.len(), "transaction_count");
    for &id in model.txs.keys().chain(extra_ids) {
        let theirs = ledger.lookup(TxId(id)).map(|r| record_key(&r, timestamps));
        let ours = model.txs.get(&id).map(|r| model_key(r, timestamps));
        assert_eq!(theirs, ours, "lookup of {id:#x}");
    }
    let mut clients: BTreeSet<u64> = model.clients().into_iter().collect();
    clients.extend(model.batches.iter().map(|b| b.client));
    clients.extend([0, 1, 2, 3]);
    for &client in &clients {
        let theirs: Vec<MRecord> =
            ledger.list(client, 0, usize::MAX).iter().map(|r| record_key(r, timestamps)).collect();
        let ours: Vec<MRecord> = model.list(client, 0, usize::MAX).iter().map(|r| model_key(r, timestamps)).collect();
        assert_eq!(theirs, ours, "list of client {client}");
        if let Some(mid) = ours.get(ours.len() / 2) {
            let after: Vec<MRecord> =
                ledger.list(client, mid.seq, 2).iter().map(|r| record_key(r, timestamps)).collect();
            assert_eq!(
                after,
                model.list(client, mid.seq, 2).iter().map(|r| model_key(r, timestamps)).collect::<Vec<_>>()
            );
        }
        let theirs: Vec<u64> = ledger.batches(client, 0, usize::MAX).iter().map(|b| b.batch_id).collect();
        let ours: Vec<u64> = model.batches.iter().filter(|b| b.client == client).map(|b| b.id).collect();
        assert_eq!(theirs, ours, "batches of client {client}");
    }
    for id in 0..=model.batches.len() as u64 + 1 {
        let theirs = ledger.batch(id).map(|b| batch_key(&b, timestamps));
        let ours =
            id.checked_sub(1).and_then(|i| model.batches.get(i as usize)).map(|b| model_batch_key(b, timestamps));
        assert_eq!(theirs, ours, "batch {id}");
    }
    let mut accounts: BTreeSet<(u64, [u8; 4])> = model.balances.keys().copied().collect();
    for &client in &clients {
        for code in ["USD", "JPY", "KWD", "EUR"] {
            accounts.insert((client, Currency::from_code(code).expect("known").c_bytes()));
        }
    }
    for &(client, cur) in &accounts {
        let currency = Currency::from_c_bytes(cur).expect("model accounts have known currencies");
        let theirs = ledger.balance(client, currency);
        let ours = model.balance((client, cur)).map(|(b, open_net)| Balance {
            captured: b.captured,
            refunded: b.refunded,
            adjusted: b.adjusted,
            net: b.net,
            settled_net: b.settled_net,
            open_net,
        });
        assert_eq!(theirs, ours, "balance of {client} {currency}");
        let theirs = ledger.open_batch(client, currency).map(|b| b.batch_id);
        assert_eq!(theirs, model.open.get(&(client, cur)).copied(), "open batch of {client} {currency}");
    }
    for &client in &clients {
        let theirs: Vec<[u8; 4]> = ledger.balances(client).iter().map(|(c, _)| c.c_bytes()).collect();
        let ours: Vec<[u8; 4]> = model.balances.keys().filter(|(c, _)| *c == client).map(|(_, cur)| *cur).collect();
        assert_eq!(theirs, ours, "currencies of client {client}");
    }
}

/// The architecture's invariants, recomputed from the engine's answers for `clients`
/// (which must be every client that has a transaction or a batch): seq gapless
/// (transactions + closes = last_seq, no seq twice), commit times strictly increasing
/// with seq, every payment's captured/refunded bounds and state, batch ids dense,
/// each batch's totals = the sum of its transactions, each balance = the sum of its
/// batches (settled + open = net), at most one open batch per account.
pub fn invariants(ledger: &Ledger, clients: &[u64]) {
    let last_seq = ledger.last_seq();
    let mut txs: Vec<TxRecord> = clients.iter().flat_map(|&c| ledger.list(c, 0, usize::MAX)).collect();
    txs.sort_by_key(|r| r.seq);
    assert_eq!(txs.len(), ledger.transaction_count(), "the clients' lists hold every transaction");
    let mut batches: Vec<BatchSummary> = clients.iter().flat_map(|&c| ledger.batches(c, 0, usize::MAX)).collect();
    batches.sort_by_key(|b| b.batch_id);
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(b.batch_id, i as u64 + 1, "batch ids are dense");
        assert_eq!(ledger.batch(b.batch_id).as_ref(), Some(b), "batch by id and by client agree");
    }
    assert!(ledger.batch(batches.len() as u64 + 1).is_none(), "no batch past the last");
    let closes = batches.iter().filter(|b| !b.is_open()).count() as u64;
    assert_eq!(txs.len() as u64 + closes, last_seq, "records (transactions + closes) = last_seq: seq is gapless");
    for w in txs.windows(2) {
        assert!(w[0].seq < w[1].seq, "seq {} twice", w[0].seq);
        assert!(w[0].timestamp_ns < w[1].timestamp_ns, "commit times not increasing at seq {}", w[1].seq);
    }
    assert!(txs.last().is_none_or(|r| r.seq <= last_seq));

    let by_id: BTreeMap<TxId, &TxRecord> = txs.iter().map(|r| (r.tx.id, r)).collect();
    let mut captured_by: BTreeMap<TxId, i64> = BTreeMap::new();
    let mut refunded_by: BTreeMap<TxId, i128> = BTreeMap::new();
    for r in &txs {
        assert_eq!(ledger.lookup(r.tx.id).as_ref(), Some(r), "lookup and list agree");
        match r.tx.kind {
            2 => *captured_by.entry(r.tx.ref_id).or_default() += r.tx.amount,
            4 => *refunded_by.entry(r.tx.ref_id).or_default() += i128::from(r.tx.amount),
            _ => {}
        }
        if r.tx.kind != 1 {
            assert_eq!(r.state, TxState::Applied, "{r:?}");
            let p = (r.tx.kind != 5).then(|| by_id.get(&r.tx.ref_id).copied());
            if let Some(p) = p {
                let p = p.unwrap_or_else(|| panic!("ref of {r:?} not found"));
                assert!(p.seq < r.seq && p.tx.kind == 1 && p.tx.client_id == r.tx.client_id, "{r:?} refers to {p:?}");
            }
        }
    }
    for r in txs.iter().filter(|r| r.tx.kind == 1) {
        let (c, f) = (r.captured, r.refunded);
        assert!(0 <= f && f <= c && c <= r.tx.amount, "payment bounds: {r:?}");
        let auth = r.tx.flags & 1 != 0;
        let expected = match r.state {
            TxState::Authorized => auth && c == 0 && f == 0,
            TxState::Voided => auth && c == 0 && f == 0,
            TxState::Captured => c > 0 && f == 0 && (auth || c == r.tx.amount),
            TxState::PartiallyRefunded => 0 < f && f < c,
            TxState::Refunded => f == c && c > 0,
            TxState::Applied => false,
        };
        assert!(expected, "payment state {:?} with captured {c}, refunded {f}: {r:?}", r.state);
        if auth {
            assert_eq!(captured_by.get(&r.tx.id).copied().unwrap_or(0), c, "captures of {r:?}");
        }
        assert_eq!(refunded_by.get(&r.tx.id).copied().unwrap_or(0), i128::from(f), "refunds of {r:?}");
    }

    // Batch totals from the transactions counted in them.
    #[derive(Default)]
    struct Sums {
        pay: (u64, i128),
        refund: (u64, i128),
        adjust: (u64, i128),
        seqs: Vec<u64>,
    }
    let mut sums: BTreeMap<u64, Sums> = BTreeMap::new();
    for r in &txs {
        let counted = match r.tx.kind {
            1 => r.tx.flags & 1 == 0,
            2 | 4 | 5 => true,
            _ => false,
        };
        if !counted {
            assert!(r.tx.kind == 1 || r.batch_id == 0, "{r:?} counts in no batch");
            continue;
        }
        let b = batches.get((r.batch_id.wrapping_sub(1)) as usize).unwrap_or_else(|| panic!("{r:?}: no batch"));
        assert_eq!((b.client_id, b.currency.c_bytes()), (r.tx.client_id, r.tx.currency), "{r:?} in {b:?}");
        let s = sums.entry(r.batch_id).or_default();
        let a = i128::from(r.tx.amount);
        match r.tx.kind {
            1 | 2 => s.pay = (s.pay.0 + 1, s.pay.1 + a),
            4 => s.refund = (s.refund.0 + 1, s.refund.1 + a),
            _ => s.adjust = (s.adjust.0 + 1, s.adjust.1 + a),
        }
        s.seqs.push(r.seq);
    }
    let mut open: BTreeMap<(u64, Currency), u64> = BTreeMap::new();
    let mut per_account: BTreeMap<(u64, Currency), [i128; 5]> = BTreeMap::new();
    for b in &batches {
        let s = sums.get(&b.batch_id).unwrap_or_else(|| panic!("batch {} holds no transaction", b.batch_id));
        assert_eq!(
            (b.payment_count, i128::from(b.payment_total), b.refund_count, i128::from(b.refund_total)),
            (s.pay.0, s.pay.1, s.refund.0, s.refund.1),
            "batch {} payment/refund totals",
            b.batch_id
        );
        assert_eq!((b.adjustment_count, i128::from(b.adjustment_total)), s.adjust, "batch {} adjustments", b.batch_id);
        assert_eq!(i128::from(b.net), s.pay.1 - s.refund.1 + s.adjust.1, "batch {} net", b.batch_id);
        assert_eq!((b.first_seq, b.last_seq), (s.seqs[0], s.seqs[s.seqs.len() - 1]), "batch {} seqs", b.batch_id);
        assert!(b.is_open() || b.closed_ns > b.opened_ns, "batch {} closed before it opened", b.batch_id);
        let account = (b.client_id, b.currency);
        if b.is_open() {
            assert!(open.insert(account, b.batch_id).is_none(), "two open batches in {account:?}");
        }
        let t = per_account.entry(account).or_default();
        t[0] += i128::from(b.payment_total);
        t[1] += i128::from(b.refund_total);
        t[2] += i128::from(b.adjustment_total);
        if b.is_open() {
            t[4] += i128::from(b.net);
        } else {
            t[3] += i128::from(b.net);
        }
    }
    for (&(client, currency), t) in &per_account {
        let bal = ledger.balance(client, currency).unwrap_or_else(|| panic!("no balance for {client} {currency}"));
        let ours = [t[0], t[1], t[2], t[0] - t[1] + t[2], t[3], t[4]];
        let theirs = [bal.captured, bal.refunded, bal.adjusted, bal.net, bal.settled_net, bal.open_net].map(i128::from);
        assert_eq!(theirs, ours, "balance of {client} {currency} = the sum of its batches");
        assert_eq!(ledger.open_batch(client, currency).map(|b| b.batch_id), open.get(&(client, currency)).copied());
    }
    for &client in clients {
        for (currency, _) in ledger.balances(client) {
            assert!(per_account.contains_key(&(client, currency)), "a balance of {client} {currency} with no batch");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::scratch_dir;
    use ledger_core::{Durability, LedgerOptions, Tx};

    /// The checks themselves: an engine and a model that agree pass; a model one cent
    /// off, or missing a batch close, does not.
    #[test]
    fn the_comparison_catches_a_cent() {
        let dir = scratch_dir();
        let options = LedgerOptions { durability: Durability::None, ..LedgerOptions::default() };
        let ledger = Ledger::open(dir.path(), options).expect("open");
        let usd = Currency::from_code("USD").expect("USD");
        let txs = [Tx::sale(TxId(1), 7, 10_00, usd), Tx::refund(TxId(2), TxId(1), 7, 2_50, usd)];
        let mut model = Model::default();
        for (tx, outcome) in txs.iter().zip(ledger.submit(&txs).expect("submit")) {
            assert_eq!(model.submit(tx, 0).0, outcome.code());
        }
        ledger.close_batch(7, usd).expect("close");
        model.close((7, usd.c_bytes()), 0).expect("a batch");
        same_state(&ledger, &model, &[3], false);
        invariants(&ledger, &[7]);

        let fails = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err();
        let mut off = model.clone();
        off.txs.get_mut(&2).expect("tx 2").tx.amount += 1;
        assert!(fails(&|| same_state(&ledger, &off, &[], false)));
        let mut open = model.clone();
        open.batches[0].closed_ns = 0;
        assert!(fails(&|| same_state(&ledger, &open, &[], false)));
        assert!(fails(&|| invariants(&ledger, &[])), "a client left out is noticed");
        ledger.close().expect("close");
    }
}
