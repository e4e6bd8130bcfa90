//! A reference ledger: the rules of `shared/design/ffi-contract.md` written plainly
//! over `BTreeMap`s and `Vec`s, with sums in `i128`. It shares no code with
//! ledger-core's judging (`state.rs`); only the currency table is borrowed.
//!
//! The targets use it two ways: `ffi_submit` submits the same transactions to it as to
//! the engine and compares outcome codes and records; `record_decoder` replays a log's
//! records through it, as `Ledger::open` does, to know whether the engine must open
//! the log (and with what state) or refuse it (and at which record).

use std::collections::BTreeMap;

use ledger_core::{Currency, Tx};

/// `LEDGER_TX_*` outcome codes.
pub mod code {
    /// Committed by this call.
    pub const OK: u32 = 0;
    /// Same id, identical fields: nothing changed.
    pub const EXISTS: u32 = 1;
    /// Same id, different fields.
    pub const EXISTS_DIFFERENT: u32 = 2;
    /// Amount out of range for the kind, or a sum would leave i64.
    pub const INVALID_AMOUNT: u32 = 3;
    /// Not a known currency.
    pub const INVALID_CURRENCY: u32 = 4;
    /// Unknown kind or flag, zero id, zero client, a ref where none belongs.
    pub const INVALID_KIND: u32 = 5;
    /// The ref is no payment of this client.
    pub const REF_NOT_FOUND: u32 = 6;
    /// The ref's state does not allow this.
    pub const REF_WRONG_STATE: u32 = 7;
    /// Capture above the authorization, refunds above the capture.
    pub const EXCEEDS_REF_AMOUNT: u32 = 8;
    /// Currency differs from the payment's.
    pub const CURRENCY_MISMATCH: u32 = 9;
}

/// `LEDGER_STATE_*` codes.
pub mod state {
    /// Authorized, not captured or voided.
    pub const AUTHORIZED: u32 = 1;
    /// Captured, not refunded.
    pub const CAPTURED: u32 = 2;
    /// Refunds below the captured amount.
    pub const PARTIALLY_REFUNDED: u32 = 3;
    /// Refunded in full.
    pub const REFUNDED: u32 = 4;
    /// An authorization voided.
    pub const VOIDED: u32 = 5;
    /// Captures, voids, refunds, adjustments.
    pub const APPLIED: u32 = 6;
}

/// A client and a currency (as the C ABI's 4 bytes).
pub type Account = (u64, [u8; 4]);

/// A committed transaction as the model holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MRecord {
    /// As submitted.
    pub tx: Tx,
    /// Its log position.
    pub seq: u64,
    /// The batch it counts in (for an authorization: its capture's), 0 for none.
    pub batch_id: u64,
    /// Commit time.
    pub ts: u64,
    /// A `state::*` code.
    pub state: u32,
    /// Payments: captured so far.
    pub captured: i64,
    /// Payments: refunded so far.
    pub refunded: i64,
}

/// A settlement batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MBatch {
    /// From 1, in the order batches opened.
    pub id: u64,
    /// Its account.
    pub client: u64,
    /// Its account's currency.
    pub currency: [u8; 4],
    /// Seq of its first and last transaction.
    pub first_seq: u64,
    /// See `first_seq`.
    pub last_seq: u64,
    /// Commit time of its first transaction.
    pub opened_ns: u64,
    /// Commit time of its close; 0 while open.
    pub closed_ns: u64,
    /// Sales and captures: count, total.
    pub payments: (u64, i64),
    /// Refunds: count, total.
    pub refunds: (u64, i64),
    /// Adjustments: count, total.
    pub adjustments: (u64, i64),
    /// payments - refunds + adjustments.
    pub net: i64,
}

/// An account's running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MBalance {
    /// Sales and captures.
    pub captured: i64,
    /// Refunds.
    pub refunded: i64,
    /// Adjustments.
    pub adjusted: i64,
    /// captured - refunded + adjusted.
    pub net: i64,
    /// Net of the closed batches.
    pub settled_net: i64,
}

/// How an accepted transaction moves money; the payload is the referenced payment's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A payment captured at once.
    Sale,
    /// A payment that only authorizes.
    Authorize,
    /// Captures the authorization.
    Capture(u128),
    /// Voids the authorization.
    Void(u128),
    /// Refunds the payment.
    Refund(u128),
    /// Adds a signed amount.
    Adjust,
}

impl Effect {
    fn counts(self) -> bool {
        matches!(self, Effect::Sale | Effect::Capture(_) | Effect::Refund(_) | Effect::Adjust)
    }
}

/// What the model says of a transaction before committing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Identical to a committed one.
    Exists(MRecord),
    /// Refused with this code.
    Reject(u32),
    /// Would commit, with this effect.
    Accept(Effect),
}

/// The reference ledger.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Every committed transaction by id.
    pub txs: BTreeMap<u128, MRecord>,
    /// Ids in commit order.
    pub order: Vec<u128>,
    /// Every batch; id = index + 1.
    pub batches: Vec<MBatch>,
    /// Each account's open batch.
    pub open: BTreeMap<Account, u64>,
    /// Accounts in which a transaction counted.
    pub balances: BTreeMap<Account, MBalance>,
    /// Seq of the last record (transaction or batch close).
    pub last_seq: u64,
    /// Commit time of the last record.
    pub last_ts: u64,
    /// Batch closes committed.
    pub closes: u64,
}

fn fits(v: i128) -> Option<i64> {
    i64::try_from(v).ok()
}

/// Whether bytes name a currency the ledger knows (three upper-case letters, a NUL).
pub fn known_currency(c: [u8; 4]) -> bool {
    Currency::from_c_bytes(c).is_some()
}

impl Model {
    /// The batch a counted transaction of `account` goes into: the open one, or the next id.
    pub fn batch_for(&self, account: Account) -> u64 {
        self.open.get(&account).copied().unwrap_or(self.batches.len() as u64 + 1)
    }

    /// The batch `tx` would count in if committed now (0: none, or it would be refused).
    pub fn expected_batch(&self, tx: &Tx) -> u64 {
        match self.judge(tx) {
            Judged::Accept(e) if e.counts() => self.batch_for((tx.client_id, tx.currency)),
            _ => 0,
        }
    }

    fn open_batch(&self, account: Account) -> MBatch {
        self.open.get(&account).map(|&id| self.batches[(id - 1) as usize]).unwrap_or_default()
    }

    /// The batch and balance after adding `effect` of `amount`, if every sum fits.
    fn add(&self, account: Account, effect: Effect, amount: i64) -> Option<(MBatch, MBalance)> {
        let mut b = self.open_batch(account);
        let mut bal = self.balances.get(&account).copied().unwrap_or_default();
        let a = i128::from(amount);
        match effect {
            Effect::Sale | Effect::Capture(_) => {
                b.payments = (b.payments.0 + 1, fits(i128::from(b.payments.1) + a)?);
                b.net = fits(i128::from(b.net) + a)?;
                bal.captured = fits(i128::from(bal.captured) + a)?;
                bal.net = fits(i128::from(bal.net) + a)?;
            }
            Effect::Refund(_) => {
                b.refunds = (b.refunds.0 + 1, fits(i128::from(b.refunds.1) + a)?);
                b.net = fits(i128::from(b.net) - a)?;
                bal.refunded = fits(i128::from(bal.refunded) + a)?;
                bal.net = fits(i128::from(bal.net) - a)?;
            }
            Effect::Adjust => {
                b.adjustments = (b.adjustments.0 + 1, fits(i128::from(b.adjustments.1) + a)?);
                b.net = fits(i128::from(b.net) + a)?;
                bal.adjusted = fits(i128::from(bal.adjusted) + a)?;
                bal.net = fits(i128::from(bal.net) + a)?;
            }
            Effect::Authorize | Effect::Void(_) => {}
        }
        Some((b, bal))
    }

    /// Judges `tx` against the committed state, in the contract's order of checks.
    pub fn judge(&self, tx: &Tx) -> Judged {
        use code::*;
        if tx.id.0 == 0 || tx.client_id == 0 {
            return Judged::Reject(INVALID_KIND);
        }
        if let Some(existing) = self.txs.get(&tx.id.0) {
            return if existing.tx == *tx { Judged::Exists(*existing) } else { Judged::Reject(EXISTS_DIFFERENT) };
        }
        if !(1..=5).contains(&tx.kind) || tx.flags & !1 != 0 || (tx.flags & 1 != 0 && tx.kind != 1) {
            return Judged::Reject(INVALID_KIND);
        }
        let has_ref = matches!(tx.kind, 2..=4);
        if has_ref == (tx.ref_id.0 == 0) {
            return Judged::Reject(INVALID_KIND);
        }
        if !known_currency(tx.currency) {
            return Judged::Reject(INVALID_CURRENCY);
        }
        let amount_ok = match tx.kind {
            1 | 2 | 4 => tx.amount > 0,
            3 => tx.amount == 0,
            _ => tx.amount != 0,
        };
        if !amount_ok {
            return Judged::Reject(INVALID_AMOUNT);
        }
        let effect = match tx.kind {
            1 if tx.flags & 1 != 0 => Effect::Authorize,
            1 => Effect::Sale,
            5 => Effect::Adjust,
            kind => {
                let Some(p) = self.txs.get(&tx.ref_id.0).filter(|p| p.tx.client_id == tx.client_id) else {
                    return Judged::Reject(REF_NOT_FOUND);
                };
                if p.tx.kind != 1 {
                    return Judged::Reject(REF_WRONG_STATE);
                }
                if p.tx.currency != tx.currency {
                    return Judged::Reject(CURRENCY_MISMATCH);
                }
                let r = tx.ref_id.0;
                match kind {
                    2 if p.state != state::AUTHORIZED => return Judged::Reject(REF_WRONG_STATE),
                    2 if tx.amount > p.tx.amount => return Judged::Reject(EXCEEDS_REF_AMOUNT),
                    2 => Effect::Capture(r),
                    3 if p.state != state::AUTHORIZED => return Judged::Reject(REF_WRONG_STATE),
                    3 => Effect::Void(r),
                    _ => {
                        if !matches!(p.state, state::CAPTURED | state::PARTIALLY_REFUNDED | state::REFUNDED) {
                            return Judged::Reject(REF_WRONG_STATE);
                        }
                        let Some(refunded) = fits(i128::from(p.refunded) + i128::from(tx.amount)) else {
                            return Judged::Reject(INVALID_AMOUNT);
                        };
                        if refunded > p.captured {
                            return Judged::Reject(EXCEEDS_REF_AMOUNT);
                        }
                        Effect::Refund(r)
                    }
                }
            }
        };
        if effect.counts() && self.add((tx.client_id, tx.currency), effect, tx.amount).is_none() {
            return Judged::Reject(INVALID_AMOUNT);
        }
        Judged::Accept(effect)
    }

    /// The commit time of a record committed at wall-clock `now`: strictly after the
    /// last one. `None` when no later time exists (the last one was `u64::MAX`).
    pub fn next_ts(&self, now: u64) -> Option<u64> {
        self.last_ts.checked_add(1).map(|t| t.max(now))
    }

    /// Commits an accepted transaction at the next seq and commit time `ts`.
    pub fn commit(&mut self, tx: &Tx, effect: Effect, ts: u64) -> MRecord {
        let seq = self.last_seq + 1;
        let account = (tx.client_id, tx.currency);
        let mut batch_id = 0;
        if effect.counts() {
            let (mut b, bal) = self.add(account, effect, tx.amount).expect("judged: the sums fit");
            if b.id == 0 {
                b = MBatch {
                    id: self.batches.len() as u64 + 1,
                    client: tx.client_id,
                    currency: tx.currency,
                    first_seq: seq,
                    opened_ns: ts,
                    ..b
                };
                self.batches.push(b);
                self.open.insert(account, b.id);
            }
            b.last_seq = seq;
            self.batches[(b.id - 1) as usize] = b;
            self.balances.insert(account, bal);
            batch_id = b.id;
        }
        let mut record = MRecord { tx: *tx, seq, batch_id, ts, state: state::APPLIED, captured: 0, refunded: 0 };
        match effect {
            Effect::Sale => {
                record.state = state::CAPTURED;
                record.captured = tx.amount;
            }
            Effect::Authorize => {
                record.state = state::AUTHORIZED;
            }
            Effect::Capture(p) => {
                let p = self.txs.get_mut(&p).expect("judged: the ref exists");
                p.state = state::CAPTURED;
                p.captured = tx.amount;
                p.batch_id = batch_id;
            }
            Effect::Void(p) => {
                self.txs.get_mut(&p).expect("judged: the ref exists").state = state::VOIDED;
            }
            Effect::Refund(p) => {
                let p = self.txs.get_mut(&p).expect("judged: the ref exists");
                p.refunded += tx.amount;
                p.state = if p.refunded == p.captured { state::REFUNDED } else { state::PARTIALLY_REFUNDED };
            }
            Effect::Adjust => {}
        }
        self.txs.insert(tx.id.0, record);
        self.order.push(tx.id.0);
        self.last_seq = seq;
        self.last_ts = ts;
        record
    }

    /// Submits one transaction at wall-clock `now`: its outcome code and record.
    pub fn submit(&mut self, tx: &Tx, now: u64) -> (u32, Option<MRecord>) {
        match self.judge(tx) {
            Judged::Exists(r) => (code::EXISTS, Some(r)),
            Judged::Reject(c) => (c, None),
            Judged::Accept(effect) => {
                let ts = self.next_ts(now).expect("commit times never reach u64::MAX here");
                (code::OK, Some(self.commit(tx, effect, ts)))
            }
        }
    }

    /// Closes the account's open batch at wall-clock `now`; `None` when there is none.
    pub fn close(&mut self, account: Account, now: u64) -> Option<MBatch> {
        let id = *self.open.get(&account)?;
        let ts = self.next_ts(now).expect("commit times never reach u64::MAX here");
        Some(self.commit_close(account, id, ts))
    }

    fn commit_close(&mut self, account: Account, id: u64, ts: u64) -> MBatch {
        let b = &mut self.batches[(id - 1) as usize];
        b.closed_ns = ts;
        let b = *b;
        self.open.remove(&account);
        let bal = self.balances.get_mut(&account).expect("an account with a batch has a balance");
        bal.settled_net = fits(i128::from(bal.settled_net) + i128::from(b.net)).expect("settled <= net, which fits");
        self.last_seq += 1;
        self.last_ts = ts;
        self.closes += 1;
        b
    }

    /// Replays a transaction record as `Ledger::open` must: it has to commit again, at
    /// exactly its recorded time and in its recorded batch. `Err` says why it does not.
    pub fn replay_tx(&mut self, tx: &Tx, ts: u64, batch_id: u64) -> Result<(), String> {
        let effect = match self.judge(tx) {
            Judged::Accept(effect) => effect,
            other => return Err(format!("judged {other:?}")),
        };
        match self.next_ts(ts) {
            Some(t) if t == ts => {}
            _ => return Err(format!("commit time {ts} is not after {}", self.last_ts)),
        }
        let expected = if effect.counts() { self.batch_for((tx.client_id, tx.currency)) } else { 0 };
        if expected != batch_id {
            return Err(format!("recorded batch {batch_id}, judged into {expected}"));
        }
        self.commit(tx, effect, ts);
        Ok(())
    }

    /// Replays a batch-close record: the account must have an open batch with this id,
    /// and the close must come after the last record.
    pub fn replay_close(&mut self, account: Account, batch_id: u64, ts: u64) -> Result<(), String> {
        let open = self.open.get(&account).copied();
        if open != Some(batch_id) {
            return Err(format!("close of batch {batch_id}, the open one is {open:?}"));
        }
        match self.next_ts(ts) {
            Some(t) if t == ts => {}
            _ => return Err(format!("close time {ts} is not after {}", self.last_ts)),
        }
        self.commit_close(account, batch_id, ts);
        Ok(())
    }

    /// The account's balance as the engine reports it: `None` before any transaction
    /// counted; `open_net` is the open batch's net.
    pub fn balance(&self, account: Account) -> Option<(MBalance, i64)> {
        let bal = *self.balances.get(&account)?;
        Some((bal, self.open.get(&account).map_or(0, |&id| self.batches[(id - 1) as usize].net)))
    }

    /// The client's transactions with `seq > after`, oldest first, at most `limit`.
    pub fn list(&self, client: u64, after: u64, limit: usize) -> Vec<MRecord> {
        self.order
            .iter()
            .map(|id| self.txs[id])
            .filter(|r| r.tx.client_id == client && r.seq > after)
            .take(limit)
            .collect()
    }

    /// Every client that has a transaction.
    pub fn clients(&self) -> Vec<u64> {
        let mut c: Vec<u64> = self.txs.values().map(|r| r.tx.client_id).collect();
        c.sort_unstable();
        c.dedup();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::TxId;

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD")
    }

    #[test]
    fn the_contract_in_a_few_lines() {
        let mut m = Model::default();
        let sale = Tx::sale(TxId(1), 7, 10_00, usd());
        assert_eq!(m.submit(&sale, 5).0, code::OK);
        assert_eq!(m.submit(&sale, 6).0, code::EXISTS);
        assert_eq!(m.submit(&Tx { amount: 9, ..sale }, 6).0, code::EXISTS_DIFFERENT);
        assert_eq!(m.submit(&Tx::refund(TxId(2), TxId(1), 7, 10_01, usd()), 7).0, code::EXCEEDS_REF_AMOUNT);
        assert_eq!(m.submit(&Tx::refund(TxId(2), TxId(1), 8, 1, usd()), 7).0, code::REF_NOT_FOUND);
        assert_eq!(m.submit(&Tx::refund(TxId(2), TxId(1), 7, 10_00, usd()), 7).0, code::OK);
        assert_eq!(m.txs[&1].state, state::REFUNDED);
        let auth = Tx::authorization(TxId(3), 7, 5_00, usd());
        assert_eq!(m.submit(&auth, 0).0, code::OK);
        assert_eq!(m.submit(&Tx::capture(TxId(4), TxId(3), 7, 5_01, usd()), 0).0, code::EXCEEDS_REF_AMOUNT);
        assert_eq!(m.submit(&Tx::void(TxId(5), TxId(3), 7, usd()), 0).0, code::OK);
        assert_eq!(m.submit(&Tx::capture(TxId(4), TxId(3), 7, 1, usd()), 0).0, code::REF_WRONG_STATE);
        assert_eq!(m.submit(&Tx::adjustment(TxId(6), 7, i64::MAX, usd()), 0).0, code::OK);
        assert_eq!(m.submit(&Tx::adjustment(TxId(7), 7, 1, usd()), 0).0, code::INVALID_AMOUNT);
        let b = m.close((7, usd().c_bytes()), 0).expect("an open batch");
        assert_eq!((b.id, b.payments, b.refunds, b.net), (1, (1, 10_00), (1, 10_00), i64::MAX));
        assert_eq!(m.last_seq, 6);
        assert!(m.close((7, usd().c_bytes()), 0).is_none());
    }

    #[test]
    fn replay_needs_strictly_later_times_and_the_same_batch() {
        let mut m = Model::default();
        let sale = Tx::sale(TxId(1), 7, 1, usd());
        assert!(m.replay_tx(&sale, 0, 1).is_err(), "time 0 is not after the start");
        assert!(m.replay_tx(&sale, 10, 2).is_err());
        m.replay_tx(&sale, 10, 1).expect("replays");
        let again = Tx::sale(TxId(2), 7, 1, usd());
        assert!(m.replay_tx(&again, 10, 1).is_err(), "same time");
        m.replay_tx(&again, u64::MAX, 1).expect("replays");
        assert!(m.replay_close((7, usd().c_bytes()), 1, u64::MAX).is_err(), "nothing after u64::MAX");
    }
}
