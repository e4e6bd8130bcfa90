//! The long-history workload, as C ABI transactions: 85% sales (payments captured at
//! once), 10% partial refunds of a uniformly random earlier sale, 5% resubmissions of a
//! uniformly random earlier sale with identical fields.
//!
//! Sale number `k` is a pure function of the seed and `k`, so a refund or resubmission
//! of any sale in history is made by generating that sale again: the benchmark keeps
//! nothing per transaction, and the process's memory is the engine's. What kind each
//! transaction is, and which sale it refers to, come from one seeded splitmix64 stream.

use std::ffi::c_char;

use ledger::{LEDGER_KIND_PAYMENT, LEDGER_KIND_REFUND, ledger_id, ledger_tx};
use ledger_core::Currency;

use crate::workload::{Draws, mix64};

/// Percent of transactions that are sales; refunds are the next `REFUND_PERCENT`, the
/// rest resubmissions.
const SALE_PERCENT: u64 = 85;
const REFUND_PERCENT: u64 = 10;
/// A refund is at most this fraction (1/n) of its sale, so a sale needs about this
/// many refunds before one is refused; a sale gets about two in 40 M transactions.
const REFUND_FRACTION_DIVISOR: i64 = 20;
const CURRENCIES: [&str; 4] = ["USD", "EUR", "GBP", "JPY"];
/// Salts that keep the streams of the sales and of the shapes apart.
const SALE_SALT: u64 = 0x5A1E_5A1E_0014_0001;
const SHAPE_SALT: u64 = 0x0514_A9E5_0014_0002;

const _: () = assert!(SALE_PERCENT + REFUND_PERCENT < 100);

/// What a transaction of the workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Sale,
    Refund,
    Resubmit,
}

impl Shape {
    pub(crate) const ALL: [Shape; 3] = [Shape::Sale, Shape::Refund, Shape::Resubmit];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Shape::Sale => "sales",
            Shape::Refund => "refunds",
            Shape::Resubmit => "resubmits",
        }
    }
}

/// The workload's state: the stream and how many sales were made so far.
#[derive(Debug)]
pub(crate) struct History {
    seed: u64,
    clients: u64,
    currencies: [(Currency, i64); 4],
    draws: Draws,
    sales: u64,
}

fn nonzero_id(d: &mut Draws) -> ledger_id {
    loop {
        let id = ledger_id { lo: d.next(), hi: d.next() };
        if id != ledger_id::default() {
            return id;
        }
    }
}

fn c_currency(c: Currency) -> [c_char; 4] {
    c.c_bytes().map(|b| c_char::from_le_bytes([b]))
}

impl History {
    pub(crate) fn new(seed: u64, clients: u64) -> Result<History, String> {
        if clients == 0 {
            return Err("--clients must be at least 1".into());
        }
        let mut currencies = [(Currency::from_code("USD").ok_or("USD is unknown to the engine")?, 1); 4];
        for (slot, code) in currencies.iter_mut().zip(CURRENCIES) {
            let c = Currency::from_code(code).ok_or_else(|| format!("{code} is unknown to the engine"))?;
            *slot = (c, 10i64.pow(c.exponent()));
        }
        Ok(History { seed, clients, currencies, draws: Draws(mix64(seed ^ SHAPE_SALT)), sales: 0 })
    }

    /// Sale number `k` (0 is the very first payment), the same every time.
    pub(crate) fn sale(&self, k: u64) -> ledger_tx {
        let mut d = Draws(mix64(self.seed ^ mix64(k ^ SALE_SALT)));
        let id = nonzero_id(&mut d);
        let client_id = 1 + d.below(self.clients);
        let (currency, scale) = self.currencies[usize::try_from(d.below(4)).unwrap_or(0)];
        // 1.00 to 999.99 in the currency's minor units (1 to 999 yen).
        let major = i64::try_from(1 + d.below(999)).unwrap_or(1);
        let minor = i64::try_from(d.below(u64::try_from(scale).unwrap_or(1))).unwrap_or(0);
        ledger_tx {
            id,
            client_id,
            amount: major * scale + minor,
            kind: LEDGER_KIND_PAYMENT,
            currency: c_currency(currency),
            ..ledger_tx::default()
        }
    }

    /// A refund of `amount` of `sale`, with a fresh id from the stream.
    pub(crate) fn refund_of(&mut self, sale: &ledger_tx, amount: i64) -> ledger_tx {
        ledger_tx { id: nonzero_id(&mut self.draws), r#ref: sale.id, amount, kind: LEDGER_KIND_REFUND, ..*sale }
    }

    /// The next transaction and its shape. The first is always a sale.
    pub(crate) fn next(&mut self) -> (Shape, ledger_tx) {
        let p = self.draws.below(100);
        if self.sales == 0 || p < SALE_PERCENT {
            let tx = self.sale(self.sales);
            self.sales += 1;
            return (Shape::Sale, tx);
        }
        let k = self.draws.below(self.sales);
        let sale = self.sale(k);
        if p < SALE_PERCENT + REFUND_PERCENT {
            let most = (sale.amount / REFUND_FRACTION_DIVISOR).max(1);
            let amount = 1 + i64::try_from(self.draws.below(u64::try_from(most).unwrap_or(1))).unwrap_or(0);
            (Shape::Refund, self.refund_of(&sale, amount))
        } else {
            (Shape::Resubmit, sale)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_shaped_and_resubmissions_repeat_sales() {
        let mut a = History::new(7, 100).expect("history");
        let mut b = History::new(7, 100).expect("history");
        let mut shapes = [0u64; 3];
        for _ in 0..20_000 {
            let (shape, tx) = a.next();
            assert_eq!((shape, tx), b.next());
            shapes[shape as usize] += 1;
            match shape {
                Shape::Sale => assert_eq!(tx.kind, LEDGER_KIND_PAYMENT),
                Shape::Refund => {
                    assert_eq!(tx.kind, LEDGER_KIND_REFUND);
                    assert!(tx.amount >= 1);
                }
                // A resubmission is one of the sales made so far, field for field
                // (checked early on, where the search is short).
                Shape::Resubmit if a.sales < 2_000 => assert!((0..a.sales).any(|k| a.sale(k) == tx)),
                Shape::Resubmit => assert_eq!(tx.kind, LEDGER_KIND_PAYMENT),
            }
        }
        assert!((16_500..17_500).contains(&shapes[0]), "{shapes:?}");
        assert!((1_700..2_300).contains(&shapes[1]), "{shapes:?}");
        assert!((800..1_200).contains(&shapes[2]), "{shapes:?}");
        assert_eq!(a.sales, shapes[0]);
    }
}
