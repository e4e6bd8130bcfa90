//! Committed transactions held in memory, compactly: the hot tier (and, while a
//! checkpoint writes it out, the frozen tier). One 112-byte [`Stored`] row per
//! transaction committed since the tier began, in seq order; an index that holds only
//! row positions (the id is read from the row itself); each client's positions for
//! listing; and the newest state of older payments whose state changed while this tier
//! was the newest (`promoted`: captured, voided or refunded after they left memory).
//!
//! Heap per row: the row (112 bytes), about 5 to 10 bytes of index (a 4-byte position
//! and a control byte per bucket, at hashbrown's load factor) and 4 bytes (plus growth
//! slack) in the client's list. A tier holds at most a checkpoint interval of rows, so
//! memory is bounded by configuration, not by history.

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;

use crate::ledger::HistoryQuery;
use crate::model::{Tx, TxId, TxRecord, TxState};

/// Bytes of a row as stored in a cold table ([`Stored::entry`]).
pub(crate) const ENTRY_BYTES: usize = 112;

/// One committed transaction as held in memory. Kind, flags and state are judged
/// values that fit a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    id: [u64; 2],
    ref_id: [u64; 2],
    pub(crate) client_id: u64,
    device_id: u64,
    amount: i64,
    user_data: u64,
    pub(crate) seq: u64,
    batch_id: u64,
    pub(crate) timestamp_ns: u64,
    captured: i64,
    refunded: i64,
    kind: u8,
    flags: u8,
    state: u8,
    currency: [u8; 3],
}

const _: () = assert!(std::mem::size_of::<Stored>() == 112);

/// A cold table's key of an id: its 128 bits big-endian, high half first, so that byte
/// order is numeric order.
pub(crate) fn key_of(id: TxId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&id.hi().to_be_bytes());
    key[8..].copy_from_slice(&id.lo().to_be_bytes());
    key
}

fn le(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Stored {
    /// What a read of a damaged cold chunk stands in for (see `cold::Run::row`): an
    /// applied adjustment of nothing, which no follow-up can use. The damage fails the
    /// group that read it before anything of it is committed or applied.
    pub(crate) const EMPTY: Stored = Stored {
        id: [0, 0],
        ref_id: [0, 0],
        client_id: 0,
        device_id: 0,
        amount: 0,
        user_data: 0,
        seq: 0,
        batch_id: 0,
        timestamp_ns: 0,
        captured: 0,
        refunded: 0,
        kind: 5,
        flags: 0,
        state: 6,
        currency: [0; 3],
    };

    /// Packs a committed record.
    pub(crate) fn pack(r: &TxRecord) -> Stored {
        let narrow = |v: u32| u8::try_from(v).expect("judged kinds, flags and states fit a byte");
        Stored {
            id: [r.tx.id.lo(), r.tx.id.hi()],
            ref_id: [r.tx.ref_id.lo(), r.tx.ref_id.hi()],
            client_id: r.tx.client_id,
            device_id: r.tx.device_id,
            amount: r.tx.amount,
            user_data: r.tx.user_data,
            seq: r.seq,
            batch_id: r.batch_id,
            timestamp_ns: r.timestamp_ns,
            captured: r.captured,
            refunded: r.refunded,
            kind: narrow(r.tx.kind),
            flags: narrow(r.tx.flags),
            state: narrow(r.state as u32),
            currency: [r.tx.currency[0], r.tx.currency[1], r.tx.currency[2]],
        }
    }

    pub(crate) fn id(&self) -> TxId {
        TxId::from_parts(self.id[0], self.id[1])
    }

    /// The payment a capture, void or refund refers to ([`TxId::NONE`] for none).
    pub(crate) fn ref_id(&self) -> TxId {
        TxId::from_parts(self.ref_id[0], self.ref_id[1])
    }

    pub(crate) fn unpack(&self) -> TxRecord {
        TxRecord {
            tx: Tx {
                id: self.id(),
                ref_id: TxId::from_parts(self.ref_id[0], self.ref_id[1]),
                client_id: self.client_id,
                device_id: self.device_id,
                amount: self.amount,
                kind: u32::from(self.kind),
                flags: u32::from(self.flags),
                currency: [self.currency[0], self.currency[1], self.currency[2], 0],
                user_data: self.user_data,
            },
            seq: self.seq,
            batch_id: self.batch_id,
            timestamp_ns: self.timestamp_ns,
            state: TxState::from_code(u32::from(self.state)).expect("a stored state is a known state"),
            captured: self.captured,
            refunded: self.refunded,
        }
    }

    /// The row as a cold table's entry: the key ([`key_of`]), then every field
    /// little-endian (the layout is in `ledger-store/FORMAT.md`).
    pub(crate) fn entry(&self) -> [u8; ENTRY_BYTES] {
        let mut e = [0u8; ENTRY_BYTES];
        e[..16].copy_from_slice(&key_of(self.id()));
        let words = [
            self.ref_id[0],
            self.ref_id[1],
            self.client_id,
            self.device_id,
            self.amount as u64,
            self.user_data,
            self.seq,
            self.batch_id,
            self.timestamp_ns,
            self.captured as u64,
            self.refunded as u64,
        ];
        for (i, w) in words.iter().enumerate() {
            e[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        e[104] = self.kind;
        e[105] = self.flags;
        e[106] = self.state;
        e[107..110].copy_from_slice(&self.currency);
        e
    }

    /// A row from a cold table's entry; `None` when the entry is not one this version
    /// writes (a state that does not exist, padding that is not zero).
    pub(crate) fn from_entry(e: &[u8]) -> Option<Stored> {
        if e.len() != ENTRY_BYTES || e[110..112] != [0, 0] || TxState::from_code(u32::from(e[106])).is_none() {
            return None;
        }
        let mut hi = [0u8; 8];
        let mut lo = [0u8; 8];
        hi.copy_from_slice(&e[..8]);
        lo.copy_from_slice(&e[8..16]);
        let w = |i: usize| le(e, 16 + 8 * i);
        Some(Stored {
            id: [u64::from_be_bytes(lo), u64::from_be_bytes(hi)],
            ref_id: [w(0), w(1)],
            client_id: w(2),
            device_id: w(3),
            amount: w(4) as i64,
            user_data: w(5),
            seq: w(6),
            batch_id: w(7),
            timestamp_ns: w(8),
            captured: w(9) as i64,
            refunded: w(10) as i64,
            kind: e[104],
            flags: e[105],
            state: e[106],
            currency: [e[107], e[108], e[109]],
        })
    }
}

/// Estimated heap bytes per row of a tier (row, index, client list), for the budget.
pub(crate) const ROW_HEAP_BYTES: usize = 112 + 12 + 6;
/// Estimated heap bytes per promoted row.
pub(crate) const PROMOTED_HEAP_BYTES: usize = 112 + 16;

/// The transactions committed since a tier began, in seq order, and the older payments
/// whose state changed meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Records {
    rows: Vec<Stored>,
    /// Positions in `rows`, hashed by the row's id.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Client -> positions of its transactions, in seq order.
    by_client: HashMap<u64, Vec<u32>>,
    /// Payment -> positions of its captures, voids and refunds in this tier, in order.
    by_ref: HashMap<TxId, Vec<u32>>,
    /// Older transactions (committed before this tier began) as they stand now, hashed
    /// like `index`.
    promoted: HashTable<Stored>,
}

impl Records {
    /// An empty tier hashing ids as `self` does, so one hash of an id serves both.
    pub(crate) fn new_like(&self) -> Records {
        Records { hasher: self.hasher.clone(), ..Records::default() }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn promoted_len(&self) -> usize {
        self.promoted.len()
    }

    /// Estimated heap bytes (what the memory budget counts).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.rows.len() * ROW_HEAP_BYTES + self.promoted.len() * PROMOTED_HEAP_BYTES
    }

    pub(crate) fn hash(&self, id: TxId) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Position of the transaction with this id among the tier's rows; `hash` is the
    /// id's [`Records::hash`].
    pub(crate) fn find_hashed(&self, id: TxId, hash: u64) -> Option<u32> {
        let packed = [id.lo(), id.hi()];
        self.index.find(hash, |&p| self.rows[p as usize].id == packed).copied()
    }

    /// An older transaction whose state changed while this tier was the newest.
    pub(crate) fn promoted_hashed(&self, id: TxId, hash: u64) -> Option<Stored> {
        let packed = [id.lo(), id.hi()];
        self.promoted.find(hash, |s| s.id == packed).copied()
    }

    /// The transaction with this id as this tier has it: a row, or a promoted one.
    pub(crate) fn get_hashed(&self, id: TxId, hash: u64) -> Option<Stored> {
        match self.find_hashed(id, hash) {
            Some(pos) => Some(self.rows[pos as usize]),
            None => self.promoted_hashed(id, hash),
        }
    }

    pub(crate) fn row(&self, pos: u32) -> Stored {
        self.rows[pos as usize]
    }

    /// Every row, in seq order.
    pub(crate) fn rows(&self) -> &[Stored] {
        &self.rows
    }

    /// Every promoted row, in no order.
    pub(crate) fn promoted(&self) -> impl Iterator<Item = &Stored> {
        self.promoted.iter()
    }

    /// Looks every id up once, for nothing but the cache (see `State::warm`).
    pub(crate) fn warm_hashed(&self, id: TxId, hash: u64) {
        std::hint::black_box(self.find_hashed(id, hash));
    }

    /// Replaces the row at `pos` (a payment whose state changed).
    pub(crate) fn set(&mut self, pos: u32, row: Stored) {
        debug_assert_eq!(self.rows[pos as usize].id, row.id);
        self.rows[pos as usize] = row;
    }

    /// Records the newest state of an older transaction; `hash` is its [`Records::hash`].
    pub(crate) fn promote(&mut self, row: Stored, hash: u64) {
        let Records { promoted, hasher, .. } = self;
        match promoted.find_mut(hash, |s| s.id == row.id) {
            Some(slot) => *slot = row,
            None => {
                promoted.insert_unique(hash, row, |s| hasher.hash_one(s.id()));
            }
        }
    }

    /// Makes room for `additional` more transactions without growing again.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.rows.reserve(additional);
        if self.index.capacity() < self.index.len() + additional {
            self.rebuild_index(self.index.len() + additional);
        }
    }

    /// Rebuilds the index with room for `capacity` entries, reading the rows in order.
    /// hashbrown's own growth would re-read every row in bucket order (a cache miss
    /// per row); rows in seq order stream from memory instead.
    fn rebuild_index(&mut self, capacity: usize) {
        let mut index = HashTable::with_capacity(capacity);
        for (pos, row) in self.rows.iter().enumerate() {
            let pos = u32::try_from(pos).expect("fewer than 2^32 transactions in a tier");
            // No row is read back: the table has room, so nothing is rehashed.
            index.insert_unique(self.hasher.hash_one(row.id()), pos, |_| unreachable!("sized to fit"));
        }
        self.index = index;
    }

    /// Appends a new row; its id must not be held yet. `hash` is this `Records`'
    /// [`Records::hash`] of the row's id, computed once by the caller when it looked the
    /// id up (a wrong hash would hide the row from lookups).
    pub(crate) fn push_hashed(&mut self, row: Stored, hash: u64) -> u32 {
        debug_assert_eq!(hash, self.hash(row.id()), "the hash is this index's hash of the row's id");
        let pos = u32::try_from(self.rows.len()).expect("fewer than 2^32 transactions in a tier");
        if self.index.len() == self.index.capacity() {
            self.rebuild_index((self.index.capacity() * 2).max(1024));
        }
        let Records { rows, index, hasher, by_client, by_ref, .. } = self;
        index.insert_unique(hash, pos, |&p| hasher.hash_one(rows[p as usize].id()));
        by_client.entry(row.client_id).or_default().push(pos);
        if !row.ref_id().is_none() {
            by_ref.entry(row.ref_id()).or_default().push(pos);
        }
        rows.push(row);
        pos
    }

    /// The captures, voids and refunds of `payment` in this tier, in seq order.
    pub(crate) fn follow_ups(&self, payment: TxId) -> impl Iterator<Item = Stored> + '_ {
        self.by_ref.get(&payment).into_iter().flatten().map(|&p| self.rows[p as usize])
    }

    /// The client's rows the query asks for, in seq order (newest first when it says
    /// so), at most its limit.
    pub(crate) fn client_rows(&self, client_id: u64, query: &HistoryQuery) -> Vec<Stored> {
        let HistoryQuery { seqs, times, newest_first, limit } = query;
        let (newest_first, limit) = (*newest_first, *limit);
        let Some(positions) = self.by_client.get(&client_id) else { return Vec::new() };
        let row = |p: &u32| &self.rows[*p as usize];
        let start = positions
            .partition_point(|p| row(p).seq < seqs.start)
            .max(positions.partition_point(|p| row(p).timestamp_ns < times.start));
        // An end of u64::MAX is no bound at all (a commit time can be u64::MAX).
        let end = positions
            .partition_point(|p| seqs.end == u64::MAX || row(p).seq < seqs.end)
            .min(positions.partition_point(|p| times.end == u64::MAX || row(p).timestamp_ns < times.end));
        let window = &positions[start..end.max(start)];
        if newest_first {
            window.iter().rev().take(limit).map(|p| *row(p)).collect()
        } else {
            window.iter().take(limit).map(|p| *row(p)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::currency::Currency;

    #[test]
    fn a_row_survives_its_table_entry_and_bad_entries_are_refused() {
        let usd = Currency::from_code("USD").expect("USD");
        let mut tx = Tx::refund(TxId::from_parts(u64::MAX - 3, 1 << 63), TxId::from_parts(9, u64::MAX), 77, -5, usd);
        tx.device_id = 12;
        tx.user_data = u64::MAX;
        let record = TxRecord {
            tx,
            seq: 1 << 40,
            batch_id: 3,
            timestamp_ns: u64::MAX - 1,
            state: TxState::PartiallyRefunded,
            captured: i64::MIN,
            refunded: i64::MAX,
        };
        let row = Stored::pack(&record);
        let entry = row.entry();
        assert_eq!(Stored::from_entry(&entry), Some(row));
        assert_eq!(Stored::from_entry(&entry).map(|r| r.unpack()), Some(record));
        assert_eq!(&entry[..16], &key_of(record.tx.id));
        let mut bad = entry;
        bad[106] = 200;
        assert_eq!(Stored::from_entry(&bad), None, "an unknown state");
        let mut bad = entry;
        bad[111] = 1;
        assert_eq!(Stored::from_entry(&bad), None, "padding");
        assert!(key_of(TxId::from_parts(0, 1)) > key_of(TxId::from_parts(u64::MAX, 0)), "high half first");
    }
}
