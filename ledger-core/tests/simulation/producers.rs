//! The producers' command streams: what each logical producer publishes next.

use ledger_core::{Tx, TxId};

use crate::{Published, QUEUE_DEPTH_MAX, RECENT_PAYMENTS, Sim, jpy, usd};

impl Sim {
    pub(crate) fn publish(&mut self) -> Result<(), String> {
        let producer = self.rng.below(self.setup.producers as u64) as usize;
        for _ in 0..self.rng.range(1, 3) {
            if self.queue.len() >= QUEUE_DEPTH_MAX {
                break;
            }
            let published = match self.rng.below(100) {
                0..=84 => {
                    let txs: Vec<Tx> = (0..self.rng.range(1, 4)).map(|_| self.next_tx(producer)).collect();
                    self.history.extend(&txs);
                    self.ids.extend(txs.iter().map(|t| t.id.0));
                    self.payments.extend(txs.iter().filter(|t| t.kind == 1));
                    let reply = self.engine().ledger().submit_async(txs.clone());
                    Published::Submit { producer, txs, reply }
                }
                85..=96 => {
                    let client = self.rng.range(1, self.setup.clients);
                    let currency = if self.rng.percent(70) { usd() } else { jpy() };
                    let reply = self.engine().publish_close(client, currency).map_err(|e| e.to_string())?;
                    Published::Close { client, currency, reply }
                }
                _ => Published::Snapshot { reply: self.engine().publish_snapshot().map_err(|e| e.to_string())? },
            };
            self.queue.push_back(published);
        }
        Ok(())
    }

    pub(crate) fn amount(&mut self) -> i64 {
        match self.rng.below(100) {
            0 => i64::MAX - self.rng.below(1000) as i64,
            1 => 0,
            2 => -(self.rng.range(1, 500) as i64),
            _ => self.rng.range(1, 10_000) as i64,
        }
    }

    /// A payment among the newest ones, or a made-up id.
    pub(crate) fn some_payment(&mut self) -> Option<Tx> {
        let n = self.payments.len();
        if n == 0 || self.rng.percent(3) {
            return None;
        }
        let recent = n.min(RECENT_PAYMENTS);
        Some(self.payments[n - 1 - self.rng.below(recent as u64) as usize])
    }

    /// The next command of `producer`'s stream.
    pub(crate) fn next_tx(&mut self, producer: usize) -> Tx {
        self.counters[producer] += 1;
        let id = ((producer as u128 + 1) << 64) | u128::from(self.counters[producer]);
        let client = self.rng.range(1, self.setup.clients);
        let currency = if self.rng.percent(70) { *b"USD\0" } else { *b"JPY\0" };
        let base = Tx {
            id: TxId(id),
            ref_id: TxId::NONE,
            client_id: client,
            device_id: producer as u64 + 1,
            amount: self.rng.range(1, 10_000) as i64,
            kind: 1,
            flags: 0,
            currency,
            user_data: self.counters[producer],
        };
        // A reference, mostly to a payment of the same client and currency.
        let referring = |sim: &mut Sim, kind: u32| {
            let (ref_id, client_id, currency, amount) = match sim.some_payment() {
                Some(p) => (p.id, p.client_id, p.currency, p.amount),
                None => (TxId(id ^ 0xdead), client, currency, base.amount),
            };
            let client_id = if sim.rng.percent(5) { client_id % sim.setup.clients + 1 } else { client_id };
            let currency =
                if sim.rng.percent(4) { if currency == *b"USD\0" { *b"JPY\0" } else { *b"USD\0" } } else { currency };
            let amount = match kind {
                3 => 0,
                // Mostly within what the payment allows, sometimes just over it.
                _ if sim.rng.percent(15) => amount.saturating_add(1),
                _ => sim.rng.range(1, amount.max(1) as u64) as i64,
            };
            Tx { ref_id, client_id, currency, amount, kind, ..base }
        };
        match self.rng.below(100) {
            0..=21 => Tx { amount: self.amount(), ..base },
            22..=35 => Tx { flags: Tx::AUTH_ONLY, ..base },
            36..=45 => referring(self, 2),
            46..=51 => referring(self, 3),
            52..=65 => referring(self, 4),
            66..=73 => Tx { kind: 5, amount: self.amount(), ..base },
            74..=83 if !self.history.is_empty() => {
                // The same id again, unchanged: a retry.
                self.history[self.rng.below(self.history.len() as u64) as usize]
            }
            84..=90 if !self.history.is_empty() => {
                // The same id with different fields.
                let old = self.history[self.rng.below(self.history.len() as u64) as usize];
                match self.rng.below(3) {
                    0 => Tx { amount: old.amount.wrapping_add(1), ..old },
                    1 => Tx { user_data: old.user_data ^ 1, ..old },
                    _ => Tx { client_id: old.client_id % self.setup.clients + 1, ..old },
                }
            }
            91..=94 => Tx { currency: *b"XXX\0", ..base },
            95 => Tx { client_id: 0, ..base },
            96 => Tx { kind: 9, ..base },
            97 => Tx { kind: 3, amount: 5, ..referring(self, 3) },
            _ => Tx { amount: 0, ..base },
        }
    }
}
