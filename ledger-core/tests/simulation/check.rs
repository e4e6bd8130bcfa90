//! Everything the engine answers, against the model and against itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hasher};

use ledger_core::{BatchSummary, HistoryQuery, TxId, TxRecord};

use crate::common::model::{AUTHORIZED, CAPTURED, MBatch, MTx, PARTIALLY_REFUNDED, REFUNDED, VOIDED};
use crate::{Sim, jpy, usd};

impl Sim {
    /// The log itself, read while the engine is closed: gapless seq from 1, one frame
    /// per record the model committed; its files' bytes go into the trace.
    pub(crate) fn check_log(&mut self) -> Result<(), String> {
        let options = ledger_store::LogOptions::new().segment_bytes(self.setup.options.segment_bytes);
        let log = ledger_store::Log::open(self.dir.path(), options).map_err(|e| format!("log open: {e}"))?;
        check!(log.recovery().torn_tail.is_none(), "a closed log has a torn tail");
        // Without `keep_whole_log`, segments the oldest kept checkpoint covers are gone.
        let first = log.first_seq();
        check!(first == 1 || !self.setup.options.keep_whole_log, "a segment was removed from a whole log");
        let mut cursor = log.reader().cursor(first).map_err(|e| e.to_string())?;
        let mut expected = first;
        while let Some(frame) = cursor.next() {
            let frame = frame.map_err(|e| e.to_string())?;
            check_eq!(frame.seq, expected, "log seq");
            expected += 1;
        }
        check_eq!(expected - 1, self.model.last_seq, "frames in the log");
        drop(log);
        // The bytes on disk are part of the trace too: a seed must write the same files.
        let mut hasher = DefaultHasher::new();
        for path in crate::crash::segments(self.dir.path())? {
            hasher.write(&std::fs::read(&path).map_err(|e| e.to_string())?);
        }
        self.trace.event(format!("log of {} frames, bytes hash {:#018x}", expected - 1, hasher.finish()));
        Ok(())
    }

    /// Everything the engine answers, against the model and against itself.
    pub(crate) fn check_state(&mut self) -> Result<(), String> {
        let ledger = self.engine().ledger();
        let m = &self.model;
        check_eq!(ledger.last_seq(), m.last_seq, "last seq");
        check_eq!(ledger.transaction_count(), m.txs.len(), "transaction count");
        for (id, mt) in &m.txs {
            let r = ledger.lookup(TxId(*id)).ok_or_else(|| format!("acknowledged tx {id:#x} missing"))?;
            same_record(&r, mt)?;
        }
        for id in &self.ids {
            if !m.txs.contains_key(id) {
                check!(
                    ledger.lookup(TxId(*id)).is_none(),
                    "tx {id:#x} should not exist (rejected or never acknowledged)"
                );
            }
        }
        for (i, mb) in m.batches.iter().enumerate() {
            let b = ledger.batch(i as u64 + 1).ok_or_else(|| format!("batch {} missing", i + 1))?;
            same_batch(&b, mb)?;
        }
        check!(ledger.batch(m.batches.len() as u64 + 1).is_none(), "a batch the model does not have");

        // From the engine's answers alone: every record, all clients, in seq order.
        let mut records: Vec<TxRecord> = (1..=self.setup.clients).flat_map(|c| ledger.list(c, 0, usize::MAX)).collect();
        records.sort_unstable_by_key(|r| r.seq);
        check_eq!(records.len(), m.txs.len(), "records listed");
        check!(
            records.windows(2).all(|w| w[0].timestamp_ns < w[1].timestamp_ns),
            "timestamps do not increase with seq"
        );
        let closed = m.batches.iter().filter(|b| b.closed).count();
        // Every seq is a transaction or a batch close, each once: gapless.
        check_eq!(records.len() + closed, ledger.last_seq() as usize, "records + closes = last seq");
        // Every tier's transactions against the books, and each client's history newest
        // first is its history oldest first reversed, page by page.
        check_eq!(ledger.check_consistency(), Ok(m.txs.len() as u64), "consistency of every tier");
        for client in 1..=self.setup.clients {
            let oldest = ledger.list(client, 0, usize::MAX);
            let mut newest = Vec::new();
            let mut before = u64::MAX;
            loop {
                let query = HistoryQuery { seqs: 1..before, ..HistoryQuery::newest_first(3) };
                let page = ledger.history(client, &query);
                let Some(last) = page.last() else { break };
                before = last.seq;
                newest.extend(page);
            }
            newest.reverse();
            check!(newest == oldest, "client {client}: newest-first pages differ from the oldest-first list");
        }
        // Batch totals are the sum of their transactions.
        let mut sums: BTreeMap<u64, [(u64, i128); 3]> = BTreeMap::new();
        for r in &records {
            let slot = match (r.tx.kind, r.tx.flags) {
                (1, 0) | (2, _) => 0,
                (4, _) => 1,
                (5, _) => 2,
                _ => continue,
            };
            let s = &mut sums.entry(r.batch_id).or_default()[slot];
            *s = (s.0 + 1, s.1 + i128::from(r.tx.amount));
            let payment_ok = match r.state as u32 {
                AUTHORIZED => r.captured == 0 && r.refunded == 0,
                CAPTURED | PARTIALLY_REFUNDED | REFUNDED => {
                    0 <= r.refunded && r.refunded <= r.captured && r.captured <= r.tx.amount
                }
                VOIDED => r.captured == 0,
                _ => true,
            };
            check!(payment_ok, "payment limits broken: {r:?}");
        }
        let mut per_account: BTreeMap<(u64, [u8; 4]), (i128, i128, i128)> = BTreeMap::new();
        for id in 1..=m.batches.len() as u64 {
            let b = ledger.batch(id).ok_or("batch vanished")?;
            let [p, r, a] = sums.get(&id).copied().unwrap_or_default();
            check_eq!(
                ((b.payment_count, i128::from(b.payment_total)), (b.refund_count, i128::from(b.refund_total))),
                (p, r),
                "batch {id} totals against its transactions"
            );
            check_eq!((b.adjustment_count, i128::from(b.adjustment_total)), a, "batch {id} adjustments");
            let first = records.iter().find(|r| r.seq == b.first_seq).ok_or("a batch's first seq is no transaction")?;
            check_eq!(b.opened_ns, first.timestamp_ns, "batch {id} opened at its first transaction");
            let e = per_account.entry((b.client_id, b.currency.c_bytes())).or_default();
            if b.is_open() {
                e.1 += i128::from(b.net);
            } else {
                e.0 += i128::from(b.net);
            }
            e.2 += i128::from(b.net);
        }
        for client in 1..=self.setup.clients {
            for currency in [usd(), jpy()] {
                let key = (client, currency.c_bytes());
                match (ledger.balance(client, currency), per_account.get(&key)) {
                    (None, None) => {}
                    (Some(bal), Some(&(settled, open, net))) => {
                        check_eq!(
                            (i128::from(bal.settled_net), i128::from(bal.open_net), i128::from(bal.net)),
                            (settled, open, net),
                            "balance of {client} {currency:?} = sum of its batches"
                        );
                        let (c, r, a) = m.balance_totals(key);
                        check_eq!(
                            (i128::from(bal.captured), i128::from(bal.refunded), i128::from(bal.adjusted)),
                            (c, r, a),
                            "balance of {client} {currency:?}"
                        );
                    }
                    (bal, sums) => {
                        return Err(format!("balance of {client} {currency:?}: {bal:?} vs batches {sums:?}"));
                    }
                }
            }
        }
        self.stats.last_seq_max = self.stats.last_seq_max.max(m.last_seq);
        Ok(())
    }

    /// The final state, for the trace.
    pub(crate) fn state_dump(&self) -> String {
        let ledger = self.engine().ledger();
        let mut out = String::from("final:");
        for c in 1..=self.setup.clients {
            for r in ledger.list(c, 0, usize::MAX) {
                let _ = write!(out, " {r:?}");
            }
            for b in ledger.batches(c, 0, usize::MAX) {
                let _ = write!(out, " {b:?}");
            }
            let _ = write!(out, " {:?}", ledger.balances(c));
        }
        out
    }
}

pub(crate) fn same_record(r: &TxRecord, m: &MTx) -> Result<(), String> {
    check_eq!(r.tx, m.tx, "tx {:#x}", m.tx.id.0);
    check_eq!(
        (r.seq, r.batch_id, r.state as u32, r.captured, r.refunded, r.timestamp_ns),
        (m.seq, m.batch, m.state, m.captured, m.refunded, m.ts),
        "record of {:#x} (seq, batch, state, captured, refunded, timestamp)",
        m.tx.id.0
    );
    Ok(())
}

pub(crate) fn same_batch(b: &BatchSummary, m: &MBatch) -> Result<(), String> {
    check_eq!(
        (b.client_id, b.currency.c_bytes(), b.first_seq, b.last_seq, b.opened_ns, b.closed_ns),
        (m.client, m.currency, m.first_seq, m.last_seq, m.opened_ns, m.closed_ns),
        "batch {} (client, currency, first and last seq, opened, closed)",
        b.batch_id
    );
    check_eq!(
        (
            (b.payment_count, i128::from(b.payment_total)),
            (b.refund_count, i128::from(b.refund_total)),
            (b.adjustment_count, i128::from(b.adjustment_total))
        ),
        (m.payments, m.refunds, m.adjustments),
        "batch {} totals",
        b.batch_id
    );
    check_eq!(i128::from(b.net), m.net(), "batch {} net", b.batch_id);
    Ok(())
}
