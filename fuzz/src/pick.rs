//! Choosing transactions from a few input bytes, shared by `record_decoder` and
//! `ffi_submit`: ids from a pool of earlier ones or fresh, refs from the pool (most
//! recent first), amounts around the referenced payment's limits and the edges of
//! i64, currencies known and not.

use ledger_core::{Tx, TxId};

use crate::input::Reader;
use crate::model::Model;

const CURRENCIES: [[u8; 4]; 7] = [*b"USD\0", *b"JPY\0", *b"KWD\0", *b"EUR\0", *b"usd\0", *b"USDX", *b"XXX\0"];

/// A currency: index 0-6 of the table above, 7 = four raw bytes.
pub fn pick_currency(r: &mut Reader<'_>, sel: u8) -> [u8; 4] {
    match CURRENCIES.get(usize::from(sel & 7)) {
        Some(c) => *c,
        None => r.array(),
    }
}

/// A transaction chooser and the ids it has named.
#[derive(Debug, Clone, Default)]
pub struct TxPick {
    /// Every id used so far (refs and repeats draw from it).
    pub pool: Vec<u128>,
    fresh: u128,
}

impl TxPick {
    /// A picker whose pool starts with `ids`.
    pub fn new(ids: &[u128]) -> TxPick {
        TxPick { pool: ids.to_vec(), fresh: 0 }
    }

    /// The `back`-th most recent id of the pool (0: the last one).
    fn recent(&self, back: usize) -> u128 {
        self.pool[self.pool.len() - 1 - back % self.pool.len()]
    }

    fn id(&mut self, sel: u8) -> u128 {
        if sel >= 0xc0 && !self.pool.is_empty() {
            return self.recent(usize::from(sel & 0x3f));
        }
        self.fresh_id(sel & 0x40 != 0)
    }

    /// A fresh id (a high one with `high`), added to the pool.
    pub fn fresh_id(&mut self, high: bool) -> u128 {
        self.fresh += 1;
        let id = if high { u128::MAX - self.fresh } else { 0x1000 + self.fresh };
        self.pool.push(id);
        id
    }

    /// Reads `sel, id, ref, amount, currency` (and raw bytes some choices take) and
    /// returns the transaction; `model` supplies the ref's amounts.
    ///
    /// `sel`: bits 0-2 kind (sale, authorization, capture, void, refund, adjustment,
    /// 0, a raw u32), bit 3 an unknown flag, bits 4-5 client (1, 2, 3, 0), bit 6
    /// device 7. `id` >= 0xc0 repeats a pool id (`id & 0x3f` back from the newest),
    /// else a fresh one (bit 6: a high one). `ref` 0 = none, else the pool id `ref - 1`
    /// back from the newest (the transaction's own fresh id is the newest). `amount` >= 0xf0 picks an edge value, else `(a - 64) * 25`.
    pub fn tx(&mut self, r: &mut Reader<'_>, model: &Model, user_data: u64) -> Tx {
        let sel = r.u8();
        let (kind, auth) = match sel & 7 {
            0 => (1, false),
            1 => (1, true),
            6 => (0, false),
            7 => (r.u32(), false),
            k => (u32::from(k), false),
        };
        let flags = u32::from(auth) | if sel & 0x08 != 0 { 2 } else { 0 };
        let client_id = [1, 2, 3, 0][usize::from((sel >> 4) & 3)];
        let device_id = if sel & 0x40 != 0 { 7 } else { 0 };
        let id = self.id(r.u8());
        let ref_sel = r.u8();
        let ref_id = match ref_sel {
            0 => 0,
            _ if self.pool.is_empty() => u128::from(ref_sel),
            s => self.recent(usize::from(s - 1)),
        };
        let payment = model.txs.get(&ref_id);
        let a = r.u8();
        let amount = if a >= 0xf0 {
            match a & 15 {
                0 => 0,
                1 => 1,
                2 => -1,
                3 => i64::MAX,
                4 => i64::MIN,
                5 => i64::MAX - 1,
                6 => i64::MIN + 1,
                7 => payment.map_or(1, |p| p.tx.amount),
                8 => payment.map_or(1, |p| p.captured - p.refunded),
                9 => payment.map_or(2, |p| p.tx.amount.saturating_add(1)),
                10 => payment.map_or(3, |p| (p.captured - p.refunded).saturating_add(1)),
                11 => 1 << 62,
                12 => -(1 << 62),
                13 => 10_000_000_000,
                _ => r.i64(),
            }
        } else {
            (i64::from(a) - 64) * 25
        };
        let currency_sel = r.u8();
        let currency = pick_currency(r, currency_sel);
        Tx { id: TxId(id), ref_id: TxId(ref_id), client_id, device_id, amount, kind, flags, currency, user_data }
    }
}
