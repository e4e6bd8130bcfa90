//! The workload: every transaction is a pure function of the seed and its index, so each
//! run (each in its own process) submits exactly the same transactions in the same
//! order, and none of them has to be held in memory (peak RSS measures the system under
//! test, not the benchmark). Each call's transactions are generated before its timer
//! starts.
//!
//! Shape: 85% sales; 10% refunds of a recent sale of the same client (most within what
//! is left, some above it, a few in the wrong currency or of an unknown payment); 5%
//! resubmissions of an earlier id with identical fields (half of them recent retries,
//! half from anywhere in the history). Clients have a home currency (USD 45%, EUR 30%,
//! GBP 15%, JPY 10%) used for 80% of their sales; amounts follow each currency's
//! exponent (cents for USD/EUR/GBP, whole yen for JPY).

use ledger_core::{Currency, Tx, TxId};

/// The currencies of the workload, with the share (percent) of clients at home in each.
pub(crate) const CURRENCIES: [(&str, u64); 4] = [("USD", 45), ("EUR", 30), ("GBP", 15), ("JPY", 10)];
/// Percent of transactions that are sales; refunds are the next `REFUND_PERCENT`.
const SALE_PERCENT: u64 = 85;
const REFUND_PERCENT: u64 = 10;
/// A refund refers to a sale among the last this many transactions.
const REFUND_WINDOW_TXS: u64 = 64;
/// A recent retry resubmits one of the last this many transactions.
const RETRY_WINDOW_TXS: u64 = 1000;
/// Percent of a client's sales in its home currency.
const HOME_CURRENCY_PERCENT: u64 = 80;

const _: () = assert!(SALE_PERCENT + REFUND_PERCENT < 100);
const _: () = assert!(CURRENCIES[0].1 + CURRENCIES[1].1 + CURRENCIES[2].1 + CURRENCIES[3].1 == 100);

/// What the transaction at an index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Sale,
    Refund,
    Resubmit,
}

/// The finalizer of splitmix64 (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A splitmix64 stream: the small, fast PRNG the workload draws from.
#[derive(Debug)]
pub(crate) struct Draws(pub(crate) u64);

impl Draws {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform enough in `0..n` (n > 0; the modulo bias is below 2^-40 for our n).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A non-zero 128-bit id.
    fn id(&mut self) -> TxId {
        loop {
            let id = (u128::from(self.next()) << 64) | u128::from(self.next());
            if id != 0 {
                return TxId(id);
            }
        }
    }
}

/// A sale's fields, as a refund or a resubmission needs them.
#[derive(Debug, Clone, Copy)]
struct Sale {
    id: TxId,
    client: u64,
    amount: i64,
    currency: usize,
}

/// The seeded workload.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    seed: u64,
    clients: u64,
    currencies: [Currency; 4],
}

impl Workload {
    pub(crate) fn new(seed: u64, clients: u64) -> Result<Workload, String> {
        if clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        let mut currencies = [Currency::from_code("USD").ok_or("USD is unknown to the engine")?; 4];
        for (slot, (code, _)) in currencies.iter_mut().zip(CURRENCIES) {
            *slot = Currency::from_code(code).ok_or_else(|| format!("{code} is unknown to the engine"))?;
        }
        Ok(Workload { seed, clients, currencies })
    }

    /// Every (client, currency) account the workload can touch.
    pub(crate) fn accounts(&self) -> Vec<(u64, Currency)> {
        (1..=self.clients).flat_map(|client| self.currencies.iter().map(move |&c| (client, c))).collect()
    }

    pub(crate) fn clients(&self) -> u64 {
        self.clients
    }

    fn draws(&self, index: u64) -> Draws {
        Draws(mix64(self.seed ^ mix64(index ^ 0x5EED_0F1E_D6E2)))
    }

    pub(crate) fn shape(&self, index: u64) -> Shape {
        if index == 0 {
            return Shape::Sale; // every walk back to a sale ends here at the latest
        }
        match self.draws(index).below(100) {
            p if p < SALE_PERCENT => Shape::Sale,
            p if p < SALE_PERCENT + REFUND_PERCENT => Shape::Refund,
            _ => Shape::Resubmit,
        }
    }

    /// The transaction at `index`.
    pub(crate) fn tx(&self, index: u64) -> Tx {
        match self.shape(index) {
            Shape::Sale => {
                let s = self.sale(index);
                Tx::sale(s.id, s.client, s.amount, self.currencies[s.currency])
            }
            Shape::Refund => self.refund(index),
            Shape::Resubmit => self.resubmit(index),
        }
    }

    fn home(&self, client: u64) -> usize {
        let mut p = mix64(self.seed ^ mix64(client)) % 100;
        for (i, (_, share)) in CURRENCIES.iter().enumerate() {
            if p < *share {
                return i;
            }
            p -= share;
        }
        0
    }

    fn sale(&self, index: u64) -> Sale {
        let mut d = self.draws(index);
        d.next(); // the shape
        let client = 1 + d.below(self.clients);
        let currency = if d.below(100) < HOME_CURRENCY_PERCENT { self.home(client) } else { index_below(&mut d, 4) };
        let scale = 10i64.pow(self.currencies[currency].exponent());
        let major = match d.below(100) {
            p if p < 70 => 1 + d.below(100),
            p if p < 95 => 100 + d.below(900),
            _ => 1000 + d.below(9000),
        };
        let minor = d.below(u64::try_from(scale).unwrap_or(1));
        // Both are below 10^4 * 10^3: far inside i64.
        let amount = i64::try_from(major).unwrap_or(1) * scale + i64::try_from(minor).unwrap_or(0);
        Sale { id: d.id(), client, amount, currency }
    }

    fn refund(&self, index: u64) -> Tx {
        let mut d = self.draws(index);
        d.next(); // the shape
        let mut j = index.saturating_sub(1 + d.below(REFUND_WINDOW_TXS));
        while self.shape(j) != Shape::Sale {
            j = j.saturating_sub(1);
        }
        let sale = self.sale(j);
        let id = d.id();
        let (ref_id, currency) = match d.below(100) {
            0..3 => (sale.id, (sale.currency + 1 + index_below(&mut d, 3)) % 4), // wrong currency
            3..6 => (d.id(), sale.currency),                                     // a payment never made
            _ => (sale.id, sale.currency),
        };
        let whole = u64::try_from(sale.amount).unwrap_or(1);
        let amount = match d.below(100) {
            p if p < 55 => 1 + d.below((whole / 4).max(1)), // partial
            p if p < 80 => 1 + d.below(whole),              // up to all of it
            p if p < 90 => whole,                           // all of it
            _ => whole + 1 + d.below(whole),                // more than was captured
        };
        Tx::refund(id, ref_id, sale.client, i64::try_from(amount).unwrap_or(i64::MAX), self.currencies[currency])
    }

    fn resubmit(&self, index: u64) -> Tx {
        let mut d = self.draws(index);
        d.next(); // the shape
        let mut j = if d.below(2) == 0 {
            index.saturating_sub(1 + d.below(index.min(RETRY_WINDOW_TXS)))
        } else {
            d.below(index)
        };
        while self.shape(j) == Shape::Resubmit {
            j = j.saturating_sub(1);
        }
        self.tx(j)
    }
}

/// A draw below `n` as an index (`n` is a small array length).
fn index_below(d: &mut Draws, n: u64) -> usize {
    usize::try_from(d.below(n)).unwrap_or(0)
}

/// One call of the run: transactions `start..start + len`, then a batch cut-over of
/// every account if `cut_over_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) cut_over_after: bool,
}

/// Calls of at most `batch` transactions; a call ends at every multiple of `cutover`
/// (0: never), where all open batches are closed.
pub(crate) fn calls(transactions: u64, batch: u64, cutover: u64) -> Vec<Call> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < transactions {
        let mut len = batch.max(1).min(transactions - start);
        if cutover > 0 {
            len = len.min(cutover - start % cutover);
        }
        let end = start + len;
        out.push(Call { start, len, cut_over_after: cutover > 0 && end.is_multiple_of(cutover) });
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let w = Workload::new(7, 100).expect("workload");
        let n = 20_000;
        let mut shapes = [0u64; 3];
        for i in 0..n {
            assert_eq!(w.tx(i), w.tx(i));
            shapes[w.shape(i) as usize] += 1;
        }
        assert!((16_500..17_500).contains(&shapes[0]), "{shapes:?}");
        assert!((1_700..2_300).contains(&shapes[1]), "{shapes:?}");
        assert!((800..1_200).contains(&shapes[2]), "{shapes:?}");
    }

    #[test]
    fn calls_split_at_cutovers() {
        let c = calls(25, 10, 12);
        let lens: Vec<u64> = c.iter().map(|c| c.len).collect();
        assert_eq!(lens, [10, 2, 10, 2, 1]);
        assert_eq!(c.iter().filter(|c| c.cut_over_after).count(), 2);
        assert_eq!(calls(20, 8, 0).iter().map(|c| c.len).sum::<u64>(), 20);
    }
}
