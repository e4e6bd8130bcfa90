//! Whether a state hangs together: every derived number (a payment's captured and
//! refunded amounts, a batch's counts and totals, a balance) equals what its
//! transactions add up to, and every transaction is one the judging code could have
//! committed.
//!
//! A checkpoint's books (batches, open batches, balances) are checked with
//! [`check_books`] before it is used: its BLAKE3 checksum already catches accidental
//! damage, so this guards against the rest, a file written by a bug, or crafted, whose
//! checksum verifies. Replaying the log's tail over books that do not hang together
//! would trip the engine's own assertions (a batch's net that no longer fits), or
//! worse, go on from wrong totals. That check is linear in the batches, never in
//! history. [`check`] is the whole check, every transaction of every tier against the
//! books, linear in history: the tests and the simulation run it after every reopen.

use hashbrown::HashMap;

use crate::model::{Balance, BatchSummary, Kind, Tx, TxId, TxRecord, TxState};
use crate::state::{Account, State};

/// Sums of one batch as its transactions make them (wide: a bad input cannot overflow).
#[derive(Default)]
struct BatchSums {
    payments: (u64, i128),
    refunds: (u64, i128),
    adjustments: (u64, i128),
    first_seq: u64,
    last_seq: u64,
    last_ts: u64,
}

/// What one payment's captures, voids and refunds add up to.
#[derive(Default, Clone, Copy)]
struct PaymentSums {
    /// Amount and batch of the capture, if any.
    capture: Option<(i64, u64)>,
    voided: bool,
    refunded: i128,
}

/// `Ok` when the books of `state` and `records`, every transaction it holds in seq
/// order (`State::all_records`), hang together; otherwise what first does not.
pub(crate) fn check(state: &State, records: &[TxRecord]) -> Result<(), String> {
    let rows = records.len();
    let mut batches: HashMap<u64, BatchSums> = HashMap::new();
    let mut payments: HashMap<usize, PaymentSums> = HashMap::new();
    let mut positions: HashMap<TxId, usize> = HashMap::with_capacity(rows);
    let (mut last_seq, mut last_ts) = (0u64, 0u64);
    for (pos, r) in records.iter().enumerate() {
        let at = |what: &str| format!("record at seq {}: {what}", r.seq);
        if r.seq <= last_seq || r.timestamp_ns <= last_ts {
            return Err(at("seq and commit time must increase"));
        }
        (last_seq, last_ts) = (r.seq, r.timestamp_ns);
        if positions.insert(r.tx.id, pos).is_some() {
            return Err(at("its id is committed twice"));
        }
        let kind = check_fields(&r.tx).map_err(&at)?;
        if kind.has_ref() {
            let Some(&ref_pos) = positions.get(&r.tx.ref_id).filter(|&&p| p < pos) else {
                return Err(at("its ref is not an earlier transaction"));
            };
            let p = &records[ref_pos];
            if p.tx.kind != Kind::Payment as u32 || p.tx.client_id != r.tx.client_id || p.tx.currency != r.tx.currency {
                return Err(at("its ref is not a payment of the same client and currency"));
            }
            let sums = payments.entry(ref_pos).or_default();
            let auth_only = p.tx.flags & Tx::AUTH_ONLY != 0;
            match kind {
                Kind::Capture | Kind::Void if !auth_only || sums.capture.is_some() || sums.voided => {
                    return Err(at("captures or voids a payment that is no open authorization"));
                }
                Kind::Capture => sums.capture = Some((r.tx.amount, r.batch_id)),
                Kind::Void => sums.voided = true,
                _ => {
                    if auth_only && sums.capture.is_none() {
                        return Err(at("refunds an authorization before its capture"));
                    }
                    sums.refunded += i128::from(r.tx.amount);
                }
            }
        } else if !r.tx.ref_id.is_none() {
            return Err(at("has a ref where its kind takes none"));
        }
        let counts = matches!(kind, Kind::Capture | Kind::Refund | Kind::Adjustment)
            || (kind == Kind::Payment && r.tx.flags & Tx::AUTH_ONLY == 0);
        if counts {
            let batch = state.batch(r.batch_id).ok_or_else(|| at("its batch does not exist"))?;
            if (batch.client_id, batch.currency.c_bytes()) != (r.tx.client_id, r.tx.currency) {
                return Err(at("its batch is another account's"));
            }
            let sums = batches.entry(r.batch_id).or_default();
            if sums.first_seq == 0 {
                sums.first_seq = r.seq;
                if batch.opened_ns != r.timestamp_ns {
                    return Err(at("its batch opened at another time"));
                }
            }
            (sums.last_seq, sums.last_ts) = (r.seq, r.timestamp_ns);
            let amount = i128::from(r.tx.amount);
            let sum = match kind {
                Kind::Refund => &mut sums.refunds,
                Kind::Adjustment => &mut sums.adjustments,
                _ => &mut sums.payments,
            };
            *sum = (sum.0 + 1, sum.1 + amount);
        } else if kind != Kind::Payment && r.batch_id != 0 {
            return Err(at("counts in a batch although its kind does not"));
        }
    }
    if last_seq > state.last_seq || last_ts > state.last_ts {
        return Err("a record lies beyond the state's last seq or time".into());
    }
    for (pos, r) in records.iter().enumerate() {
        if r.tx.kind == Kind::Payment as u32 {
            check_payment(r, payments.get(&pos).copied().unwrap_or_default())
                .map_err(|e| format!("payment at seq {}: {e}", r.seq))?;
        } else if (r.state, r.captured, r.refunded) != (TxState::Applied, 0, 0) {
            return Err(format!("record at seq {}: a non-payment is not simply applied", r.seq));
        }
    }
    check_batches(state, &batches, rows)?;
    check_balances(state)
}

/// `Ok` when the books of a checkpoint hang together without its transactions: batch
/// ids dense and each batch one account's, the open batches exactly the batches
/// without a close time (each its account's), nothing past the last seq and time, and
/// every balance the sum of its account's batches.
pub(crate) fn check_books(state: &State) -> Result<(), String> {
    let mut open = 0usize;
    for (i, b) in state.batches.iter().enumerate() {
        let at = |what: &str| format!("batch {}: {what}", b.batch_id);
        if b.batch_id != i as u64 + 1 {
            return Err(at("batch ids are not dense"));
        }
        if b.first_seq == 0 || b.first_seq > b.last_seq || b.last_seq > state.last_seq {
            return Err(at("its seqs are out of range"));
        }
        let count = b.payment_count.checked_add(b.refund_count).and_then(|c| c.checked_add(b.adjustment_count));
        if count.is_none_or(|c| c == 0 || c > b.last_seq - b.first_seq + 1) {
            return Err(at("its counts do not fit its seqs"));
        }
        let net = i128::from(b.payment_total) - i128::from(b.refund_total) + i128::from(b.adjustment_total);
        if net != i128::from(b.net) {
            return Err(at("its net is not its totals'"));
        }
        if b.opened_ns > state.last_ts
            || b.closed_ns > state.last_ts
            || (b.closed_ns != 0 && b.closed_ns <= b.opened_ns)
        {
            return Err(at("its times are out of range"));
        }
        if b.is_open() {
            open += 1;
            if state.open.get(&(b.client_id, b.currency)) != Some(&b.batch_id) {
                return Err(at("open, but not its account's open batch"));
            }
        }
    }
    if open != state.open.len() {
        return Err("an account's open batch is closed or missing".into());
    }
    check_balances(state)
}

/// The judging code's rules on the fields alone; the kind when they hold.
fn check_fields(tx: &Tx) -> Result<Kind, &'static str> {
    let kind = tx.kind().ok_or("unknown kind")?;
    if tx.id.is_none() || tx.client_id == 0 || tx.currency().is_none() {
        return Err("no id, no client or an unknown currency");
    }
    if tx.flags & !Tx::KNOWN_FLAGS != 0 || (tx.flags != 0 && kind != Kind::Payment) {
        return Err("unknown flags, or flags on a kind that takes none");
    }
    if kind.has_ref() == tx.ref_id.is_none() {
        return Err("a ref missing, or present where none belongs");
    }
    let amount_ok = match kind {
        Kind::Payment | Kind::Capture | Kind::Refund => tx.amount > 0,
        Kind::Void => tx.amount == 0,
        Kind::Adjustment => tx.amount != 0,
    };
    if amount_ok { Ok(kind) } else { Err("an amount out of range for its kind") }
}

/// A payment's state, amounts and batch agree with its captures, voids and refunds.
fn check_payment(p: &TxRecord, sums: PaymentSums) -> Result<(), &'static str> {
    let auth_only = p.tx.flags & Tx::AUTH_ONLY != 0;
    let (captured, batch_id) = match (auth_only, sums.capture) {
        (false, _) => (p.tx.amount, p.batch_id),
        (true, Some((amount, batch_id))) => {
            if amount > p.tx.amount {
                return Err("captured above its authorization");
            }
            (amount, batch_id)
        }
        (true, None) => {
            let state = if sums.voided { TxState::Voided } else { TxState::Authorized };
            return if (p.state, p.captured, p.refunded, p.batch_id) == (state, 0, 0, 0) {
                Ok(())
            } else {
                Err("an uncaptured authorization with another state, amount or batch")
            };
        }
    };
    if sums.refunded > i128::from(captured) {
        return Err("refunded above what was captured");
    }
    let state = match sums.refunded {
        0 => TxState::Captured,
        r if r == i128::from(captured) => TxState::Refunded,
        _ => TxState::PartiallyRefunded,
    };
    if (p.state, p.captured, i128::from(p.refunded), p.batch_id) != (state, captured, sums.refunded, batch_id) {
        return Err("its state, captured or refunded amount, or batch disagrees with its transactions");
    }
    Ok(())
}

/// Every batch's counts and totals are its transactions'; exactly the batches without a
/// close time are the open ones; every seq is a transaction or a batch close.
fn check_batches(state: &State, sums: &HashMap<u64, BatchSums>, rows: usize) -> Result<(), String> {
    let mut closed = 0u64;
    let mut open = 0usize;
    for b in &state.batches {
        let at = |what: &str| format!("batch {}: {what}", b.batch_id);
        let s = sums.get(&b.batch_id).ok_or_else(|| at("holds no transaction"))?;
        let fits = |v: i128| i64::try_from(v).ok();
        let totals = (fits(s.payments.1), fits(s.refunds.1), fits(s.adjustments.1));
        let net = fits(s.payments.1 - s.refunds.1 + s.adjustments.1);
        let expected = (s.payments.0, s.refunds.0, s.adjustments.0, totals, net, s.first_seq, s.last_seq);
        let got = (
            b.payment_count,
            b.refund_count,
            b.adjustment_count,
            (Some(b.payment_total), Some(b.refund_total), Some(b.adjustment_total)),
            Some(b.net),
            b.first_seq,
            b.last_seq,
        );
        if expected != got {
            return Err(at("its counts, totals or seqs are not its transactions'"));
        }
        if b.is_open() {
            open += 1;
            if state.open.get(&(b.client_id, b.currency)) != Some(&b.batch_id) {
                return Err(at("open, but not its account's open batch"));
            }
        } else {
            closed += 1;
            if b.closed_ns <= s.last_ts || b.closed_ns > state.last_ts {
                return Err(at("closed before its last transaction or after the state's last time"));
            }
        }
    }
    if open != state.open.len() {
        return Err("an account's open batch is closed or missing".into());
    }
    if rows as u64 + closed != state.last_seq {
        return Err(format!(
            "{rows} transactions and {closed} batch closes do not account for seqs 1..={}",
            state.last_seq
        ));
    }
    for (client_id, ids) in &state.client_batches {
        if ids.windows(2).any(|w| w[0] >= w[1])
            || ids.iter().any(|&id| state.batch(id).is_none_or(|b| b.client_id != *client_id))
        {
            return Err(format!("client {client_id}'s batch list is not its batches in order"));
        }
    }
    Ok(())
}

/// Every account's balance is the sum of its batches (settled: of its closed ones), and
/// exactly the accounts with batches have one.
fn check_balances(state: &State) -> Result<(), String> {
    let mut expected: HashMap<Account, [i128; 5]> = HashMap::new();
    for b in &state.batches {
        let sums: &BatchSummary = b;
        let e = expected.entry((b.client_id, b.currency)).or_default();
        let settled = if sums.is_open() { 0 } else { sums.net };
        for (slot, v) in
            e.iter_mut().zip([sums.payment_total, sums.refund_total, sums.adjustment_total, sums.net, settled])
        {
            *slot += i128::from(v);
        }
    }
    if expected.len() != state.balances.len() {
        return Err("the balances are not those of the accounts with batches".into());
    }
    for (account, e) in expected {
        let b: Balance = state.balances.get(&account).copied().ok_or("an account with batches has no balance")?;
        let got = [b.captured, b.refunded, b.adjusted, b.net, b.settled_net].map(i128::from);
        if got != e {
            return Err(format!("client {}'s {} balance is not the sum of its batches", account.0, account.1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::currency::Currency;
    use crate::model::{TxId, TxOutcome};

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD")
    }

    /// A state built by the judging code itself, one command per group: sales,
    /// an authorization captured, one voided, refunds, an adjustment, a closed batch
    /// and an open one, two clients.
    fn committed() -> State {
        let c = usd();
        let id = TxId::from_parts;
        let mut state = State::default();
        let step = |state: &mut State, cmd: &dyn Fn(&mut crate::state::Group<'_>, u64, u64)| {
            let (seq, ts) = (state.last_seq + 1, state.last_ts + 1000);
            let mut group = state.group(1);
            cmd(&mut group, seq, ts);
            let changes = group.into_changes();
            state.apply(changes);
        };
        let txs = [
            Tx::sale(id(1, 0), 7, 500, c),
            Tx::authorization(id(2, 0), 7, 900, c),
            Tx::capture(id(3, 0), id(2, 0), 7, 800, c),
            Tx::authorization(id(4, 0), 7, 300, c),
            Tx::void(id(5, 0), id(4, 0), 7, c),
            Tx::refund(id(6, 0), id(1, 0), 7, 200, c),
            Tx::sale(id(7, 0), 8, 100, c),
        ];
        for tx in txs {
            step(&mut state, &|g, seq, ts| {
                assert!(matches!(g.submit(&tx, seq, ts), Ok(TxOutcome::Committed(_))), "{tx:?}");
            });
        }
        step(&mut state, &|g, seq, ts| assert!(g.close_batch(7, c, seq, ts).is_ok_and(|r| r.is_ok())));
        for tx in [Tx::refund(id(8, 0), id(2, 0), 7, 800, c), Tx::adjustment(id(9, 0), 7, -50, c)] {
            step(&mut state, &|g, seq, ts| {
                assert!(matches!(g.submit(&tx, seq, ts), Ok(TxOutcome::Committed(_))), "{tx:?}");
            });
        }
        state
    }

    /// Replaces the record at `pos` with `change` applied to it.
    fn tamper_record(records: &mut [TxRecord], pos: usize, change: impl FnOnce(&mut TxRecord)) {
        change(&mut records[pos]);
    }

    #[test]
    fn a_state_the_judging_code_built_hangs_together() {
        let state = committed();
        assert_eq!((state.records.len(), state.batches.len(), state.last_seq), (9, 3, 10));
        assert_eq!(check(&state, &state.all_records()), Ok(()));
        assert_eq!(check_books(&state), Ok(()));
        assert_eq!(check(&State::default(), &[]), Ok(()));
    }

    #[test]
    fn books_that_disagree_are_found_without_the_transactions() {
        type Tamper = Box<dyn Fn(&mut State)>;
        let cases: Vec<(&str, Tamper)> = vec![
            ("batch net", Box::new(|s| s.batches[1].net = i64::MAX)),
            ("batch seqs", Box::new(|s| s.batches[0].last_seq = s.last_seq + 1)),
            ("batch counts", Box::new(|s| s.batches[0].payment_count = 100)),
            ("batch reopened", Box::new(|s| s.batches[0].closed_ns = 0)),
            ("open batch forgotten", Box::new(|s| s.open.clear())),
            ("balance", Box::new(|s| s.balances.values_mut().for_each(|b| b.settled_net += 1))),
            ("balance missing", Box::new(|s| s.balances.clear())),
            ("last time before a batch", Box::new(|s| s.last_ts = 1)),
        ];
        for (what, tamper) in cases {
            let mut state = committed();
            tamper(&mut state);
            assert!(check_books(&state).is_err(), "not found: {what}");
        }
    }

    #[test]
    fn every_derived_number_that_disagrees_is_found() {
        type Tamper = Box<dyn Fn(&mut State, &mut Vec<TxRecord>)>;
        let cases: Vec<(&str, Tamper)> = vec![
            ("batch total", Box::new(|s, _| s.batches[0].payment_total += 1)),
            ("batch count", Box::new(|s, _| s.batches[0].refund_count += 1)),
            ("batch net", Box::new(|s, _| s.batches[1].net = i64::MAX)),
            ("batch seqs", Box::new(|s, _| s.batches[0].last_seq += 1)),
            ("batch reopened", Box::new(|s, _| s.batches[0].closed_ns = 0)),
            ("batch closed before its last transaction", Box::new(|s, _| s.batches[0].closed_ns = 1)),
            ("open batch forgotten", Box::new(|s, _| s.open.clear())),
            ("balance", Box::new(|s, _| s.balances.values_mut().for_each(|b| b.settled_net += 1))),
            ("balance missing", Box::new(|s, _| s.balances.clear())),
            ("a seq unaccounted for", Box::new(|s, _| s.last_seq += 1)),
            ("last time before a record", Box::new(|s, _| s.last_ts = 1)),
            ("payment refunded", Box::new(|_, r| tamper_record(r, 0, |r| r.refunded = 0))),
            ("payment state", Box::new(|_, r| tamper_record(r, 0, |r| r.state = TxState::Refunded))),
            ("capture amount", Box::new(|_, r| tamper_record(r, 1, |r| r.captured = 900))),
            ("void undone", Box::new(|_, r| tamper_record(r, 3, |r| r.state = TxState::Authorized))),
            ("adjustment of zero", Box::new(|_, r| tamper_record(r, 8, |r| r.tx.amount = 0))),
            ("unknown kind", Box::new(|_, r| tamper_record(r, 8, |r| r.tx.kind = 9))),
            ("flags on a refund", Box::new(|_, r| tamper_record(r, 5, |r| r.tx.flags = Tx::AUTH_ONLY))),
            ("refund moved to another batch", Box::new(|_, r| tamper_record(r, 5, |r| r.batch_id = 2))),
            ("time going back", Box::new(|_, r| tamper_record(r, 2, |r| r.timestamp_ns = 1))),
            ("another client's transaction in a batch", Box::new(|_, r| tamper_record(r, 6, |r| r.tx.client_id = 7))),
            ("an id twice", Box::new(|_, r| tamper_record(r, 6, |r| r.tx.id = TxId::from_parts(1, 0)))),
            (
                "a refund of a later payment",
                Box::new(|_, r| tamper_record(r, 5, |r| r.tx.ref_id = TxId::from_parts(7, 0))),
            ),
        ];
        for (what, tamper) in cases {
            let mut state = committed();
            let mut records = state.all_records();
            tamper(&mut state, &mut records);
            assert!(check(&state, &records).is_err(), "not found: {what}");
        }
    }
}
