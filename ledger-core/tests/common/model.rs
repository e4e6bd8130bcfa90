//! The reference model of the engine: a plainly written ledger (a `BTreeMap` of
//! transactions and a `Vec` of batches) that the model test and the simulation run
//! every command against, comparing each outcome, record, batch and balance.
#![allow(clippy::cast_possible_truncation)] // batch indexes are small

use std::collections::BTreeMap;

use ledger_core::Tx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MTx {
    pub tx: Tx,
    pub seq: u64,
    pub batch: u64,
    pub state: u32,
    pub captured: i64,
    pub refunded: i64,
    /// Commit time.
    pub ts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MBatch {
    pub client: u64,
    pub currency: [u8; 4],
    pub first_seq: u64,
    pub last_seq: u64,
    pub closed: bool,
    pub payments: (u64, i128),
    pub refunds: (u64, i128),
    pub adjustments: (u64, i128),
    pub opened_ns: u64,
    /// 0 while open.
    pub closed_ns: u64,
}

impl MBatch {
    pub fn net(&self) -> i128 {
        self.payments.1 - self.refunds.1 + self.adjustments.1
    }
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub txs: BTreeMap<u128, MTx>,
    pub batches: Vec<MBatch>,
    pub open: BTreeMap<(u64, [u8; 4]), usize>,
    pub last_seq: u64,
    /// Timestamp of the last record: the engine's commit times are the clock or just
    /// after the previous record's, whichever is later.
    pub last_ts: u64,
    /// The count cut-over: close a batch once it counts this many transactions.
    pub transactions_max: Option<u64>,
}

pub const AUTHORIZED: u32 = 1;
pub const CAPTURED: u32 = 2;
pub const PARTIALLY_REFUNDED: u32 = 3;
pub const REFUNDED: u32 = 4;
pub const VOIDED: u32 = 5;
pub const APPLIED: u32 = 6;

fn fits(v: i128) -> bool {
    v >= i128::from(i64::MIN) && v <= i128::from(i64::MAX)
}

impl Model {
    pub fn known_currency(c: [u8; 4]) -> bool {
        c == *b"USD\0" || c == *b"JPY\0"
    }

    /// As [`Model::submit_at`] with a clock that reads 0 (each record one nanosecond
    /// after the previous one), for callers that do not compare timestamps.
    pub fn submit(&mut self, tx: Tx) -> (u32, Option<MTx>) {
        self.submit_at(tx, 0)
    }

    fn next_ts(&mut self, now_ns: u64) -> u64 {
        self.last_ts = now_ns.max(self.last_ts + 1);
        self.last_ts
    }

    /// Judges `tx` committed in a group whose clock read `now_ns`. Returns the C code
    /// and, when committed or existing, the record.
    pub fn submit_at(&mut self, tx: Tx, now_ns: u64) -> (u32, Option<MTx>) {
        if tx.id.0 == 0 || tx.client_id == 0 {
            return (5, None);
        }
        if let Some(existing) = self.txs.get(&tx.id.0) {
            return if existing.tx == tx { (1, Some(*existing)) } else { (2, None) };
        }
        if !(1..=5).contains(&tx.kind) || tx.flags & !1 != 0 || (tx.flags == 1 && tx.kind != 1) {
            return (5, None);
        }
        let has_ref = matches!(tx.kind, 2..=4);
        if has_ref == (tx.ref_id.0 == 0) {
            return (5, None);
        }
        if !Self::known_currency(tx.currency) {
            return (4, None);
        }
        let amount_ok = match tx.kind {
            1 | 2 | 4 => tx.amount > 0,
            3 => tx.amount == 0,
            _ => tx.amount != 0,
        };
        if !amount_ok {
            return (3, None);
        }
        let mut payment = None;
        if has_ref {
            let Some(p) = self.txs.get(&tx.ref_id.0).filter(|p| p.tx.client_id == tx.client_id).copied() else {
                return (6, None);
            };
            if p.tx.kind != 1 {
                return (7, None);
            }
            if p.tx.currency != tx.currency {
                return (9, None);
            }
            match tx.kind {
                2 => {
                    if p.state != AUTHORIZED {
                        return (7, None);
                    }
                    if tx.amount > p.tx.amount {
                        return (8, None);
                    }
                }
                3 => {
                    if p.state != AUTHORIZED {
                        return (7, None);
                    }
                }
                _ => {
                    if !matches!(p.state, CAPTURED | PARTIALLY_REFUNDED | REFUNDED) {
                        return (7, None);
                    }
                    let refunded = i128::from(p.refunded) + i128::from(tx.amount);
                    if !fits(refunded) {
                        return (3, None);
                    }
                    if refunded > i128::from(p.captured) {
                        return (8, None);
                    }
                }
            }
            payment = Some(p);
        }
        let counted = match tx.kind {
            1 => tx.flags == 0,
            2 | 4 | 5 => true,
            _ => false,
        };
        let key = (tx.client_id, tx.currency);
        if counted {
            // Every sum the transaction touches must fit in i64.
            let mut b = self.open.get(&key).map(|&i| self.batches[i]).unwrap_or_default();
            let a = i128::from(tx.amount);
            match tx.kind {
                1 | 2 => b.payments.1 += a,
                4 => b.refunds.1 += a,
                _ => b.adjustments.1 += a,
            }
            let balance = self.balance_totals(key);
            let (mut c, mut r, mut adj) = balance;
            match tx.kind {
                1 | 2 => c += a,
                4 => r += a,
                _ => adj += a,
            }
            let sums = [b.payments.1, b.refunds.1, b.adjustments.1, b.net(), c, r, adj, c - r + adj];
            if !sums.iter().all(|&v| fits(v)) {
                return (3, None);
            }
        }
        // Commit.
        self.last_seq += 1;
        let seq = self.last_seq;
        let ts = self.next_ts(now_ns);
        let mut batch = 0;
        if counted {
            let index = match self.open.get(&key) {
                Some(&i) => i,
                None => {
                    self.batches.push(MBatch {
                        client: tx.client_id,
                        currency: tx.currency,
                        first_seq: seq,
                        opened_ns: ts,
                        ..MBatch::default()
                    });
                    self.open.insert(key, self.batches.len() - 1);
                    self.batches.len() - 1
                }
            };
            let b = &mut self.batches[index];
            let a = i128::from(tx.amount);
            match tx.kind {
                1 | 2 => b.payments = (b.payments.0 + 1, b.payments.1 + a),
                4 => b.refunds = (b.refunds.0 + 1, b.refunds.1 + a),
                _ => b.adjustments = (b.adjustments.0 + 1, b.adjustments.1 + a),
            }
            b.last_seq = seq;
            batch = index as u64 + 1;
        }
        let mut record = MTx { tx, seq, batch, state: APPLIED, captured: 0, refunded: 0, ts };
        match (tx.kind, payment) {
            (1, _) if tx.flags == 1 => record.state = AUTHORIZED,
            (1, _) => {
                record.state = CAPTURED;
                record.captured = tx.amount;
            }
            (2, Some(p)) => {
                self.txs.insert(p.tx.id.0, MTx { state: CAPTURED, captured: tx.amount, batch, ..p });
            }
            (3, Some(p)) => {
                self.txs.insert(p.tx.id.0, MTx { state: VOIDED, ..p });
            }
            (4, Some(p)) => {
                let refunded = p.refunded + tx.amount;
                let state = if refunded == p.captured { REFUNDED } else { PARTIALLY_REFUNDED };
                self.txs.insert(p.tx.id.0, MTx { state, refunded, ..p });
            }
            _ => {}
        }
        self.txs.insert(tx.id.0, record);
        if counted && let Some(max) = self.transactions_max {
            let b = self.batches[batch as usize - 1];
            if b.payments.0 + b.refunds.0 + b.adjustments.0 >= max {
                self.close_at(tx.client_id, tx.currency, now_ns);
            }
        }
        (0, Some(record))
    }

    pub fn balance_totals(&self, key: (u64, [u8; 4])) -> (i128, i128, i128) {
        let mut t = (0, 0, 0);
        for b in self.batches.iter().filter(|b| (b.client, b.currency) == key) {
            t.0 += b.payments.1;
            t.1 += b.refunds.1;
            t.2 += b.adjustments.1;
        }
        t
    }

    /// Closes the account's open batch (its id), as [`Model::close_at`].
    pub fn close(&mut self, client: u64, currency: [u8; 4]) -> Option<u64> {
        self.close_at(client, currency, 0).map(|(id, _)| id)
    }

    /// Closes the account's open batch in a group whose clock read `now_ns`: its id and
    /// the batch as closed; `None` when there is none.
    pub fn close_at(&mut self, client: u64, currency: [u8; 4], now_ns: u64) -> Option<(u64, MBatch)> {
        let index = self.open.remove(&(client, currency))?;
        self.last_seq += 1;
        let ts = self.next_ts(now_ns);
        let b = &mut self.batches[index];
        b.closed = true;
        b.closed_ns = ts;
        Some((index as u64 + 1, *b))
    }

    /// The age cut-over: closes, oldest batch first, every open batch opened before
    /// `cutoff_ns`, in one group whose clock read `now_ns`. Returns the ids closed.
    pub fn close_aged(&mut self, cutoff_ns: u64, now_ns: u64) -> Vec<u64> {
        let mut aged: Vec<usize> =
            self.open.values().copied().filter(|&i| self.batches[i].opened_ns < cutoff_ns).collect();
        aged.sort_unstable();
        aged.into_iter()
            .filter_map(|i| {
                let b = self.batches[i];
                self.close_at(b.client, b.currency, now_ns).map(|(id, _)| id)
            })
            .collect()
    }
}
