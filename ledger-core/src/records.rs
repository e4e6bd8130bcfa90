//! Committed transactions in memory, compactly: one 104-byte [`Stored`] row per
//! transaction in seq order, an index that holds only row positions (the id is read
//! from the row itself), and each client's positions for listing.
//!
//! Heap per indexed transaction: the row (104 bytes), about 5 to 10 bytes of index
//! (a 4-byte position and a control byte per bucket, at hashbrown's load factor), and
//! 4 bytes (plus growth slack) in the client's list. `core_profile` measures it.

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;

use crate::model::{Tx, TxId, TxRecord, TxState};

/// `ref_pos` of a transaction that refers to none.
pub(crate) const NO_REF: u32 = u32::MAX;

/// One committed transaction as held in memory. The ref is the position of the
/// referenced payment (refs always resolve for committed transactions); kind, flags
/// and state are judged values that fit a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    id: [u64; 2],
    client_id: u64,
    device_id: u64,
    amount: i64,
    user_data: u64,
    pub(crate) seq: u64,
    batch_id: u64,
    timestamp_ns: u64,
    captured: i64,
    refunded: i64,
    pub(crate) ref_pos: u32,
    kind: u8,
    flags: u8,
    state: u8,
    currency: [u8; 3],
}

const _: () = assert!(std::mem::size_of::<Stored>() == 104);

impl Stored {
    /// Packs a committed record; `ref_pos` is where its ref sits ([`NO_REF`] for none).
    pub(crate) fn pack(r: &TxRecord, ref_pos: u32) -> Stored {
        let narrow = |v: u32| u8::try_from(v).expect("judged kinds, flags and states fit a byte");
        Stored {
            id: [r.tx.id.lo(), r.tx.id.hi()],
            client_id: r.tx.client_id,
            device_id: r.tx.device_id,
            amount: r.tx.amount,
            user_data: r.tx.user_data,
            seq: r.seq,
            batch_id: r.batch_id,
            timestamp_ns: r.timestamp_ns,
            captured: r.captured,
            refunded: r.refunded,
            ref_pos,
            kind: narrow(r.tx.kind),
            flags: narrow(r.tx.flags),
            state: narrow(r.state as u32),
            currency: [r.tx.currency[0], r.tx.currency[1], r.tx.currency[2]],
        }
    }

    pub(crate) fn id(&self) -> TxId {
        TxId::from_parts(self.id[0], self.id[1])
    }

    /// Unpacks, given the id of the referenced payment.
    pub(crate) fn unpack(&self, ref_id: TxId) -> TxRecord {
        TxRecord {
            tx: Tx {
                id: self.id(),
                ref_id,
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
}

/// Every committed transaction, in seq order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Records {
    rows: Vec<Stored>,
    /// Positions in `rows`, hashed by the row's id.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Client -> positions of its transactions, in seq order.
    by_client: HashMap<u64, Vec<u32>>,
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn hash(&self, id: TxId) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Position of the transaction with this id.
    pub(crate) fn find(&self, id: TxId) -> Option<u32> {
        self.find_hashed(id, self.hash(id))
    }

    /// [`Records::find`] with the id's [`Records::hash`] already computed (the judging
    /// code hashes an id once for its own overlay, this index and [`Records::push_hashed`]).
    pub(crate) fn find_hashed(&self, id: TxId, hash: u64) -> Option<u32> {
        let packed = [id.lo(), id.hi()];
        self.index.find(hash, |&p| self.rows[p as usize].id == packed).copied()
    }

    pub(crate) fn row(&self, pos: u32) -> Stored {
        self.rows[pos as usize]
    }

    /// The record at `pos`, its ref resolved.
    pub(crate) fn get(&self, pos: u32) -> TxRecord {
        let row = self.row(pos);
        let ref_id = if row.ref_pos == NO_REF { TxId::NONE } else { self.row(row.ref_pos).id() };
        row.unpack(ref_id)
    }

    /// Looks every id up once, for nothing but the cache: these lookups do not depend
    /// on each other, so the CPU overlaps their misses (judging one transaction at a
    /// time takes them one after another), and judging then finds the index lines and
    /// rows cached. Replay and the sequencer call it on a group before judging it.
    pub(crate) fn warm(&self, ids: impl Iterator<Item = TxId>) {
        for id in ids {
            std::hint::black_box(self.find(id));
        }
    }

    pub(crate) fn lookup(&self, id: TxId) -> Option<TxRecord> {
        self.find(id).map(|p| self.get(p))
    }

    /// Replaces the row at `pos` (a payment whose state changed).
    pub(crate) fn set(&mut self, pos: u32, row: Stored) {
        debug_assert_eq!(self.rows[pos as usize].id, row.id);
        self.rows[pos as usize] = row;
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
            let pos = u32::try_from(pos).expect("fewer than 2^32 transactions in memory");
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
        let pos = u32::try_from(self.rows.len()).expect("fewer than 2^32 transactions in memory");
        if self.index.len() == self.index.capacity() {
            self.rebuild_index((self.index.capacity() * 2).max(1024));
        }
        let Records { rows, index, hasher, by_client } = self;
        index.insert_unique(hash, pos, |&p| hasher.hash_one(rows[p as usize].id()));
        by_client.entry(row.client_id).or_default().push(pos);
        rows.push(row);
        pos
    }

    /// Appends a committed record read from a snapshot, resolving its ref; refuses
    /// values no judged record has (the row keeps kind, flags and state in a byte).
    pub(crate) fn push_record(&mut self, record: &TxRecord) -> Result<u32, &'static str> {
        let hash = self.hash(record.tx.id);
        if self.find_hashed(record.tx.id, hash).is_some() {
            return Err("duplicate id");
        }
        if [record.tx.kind, record.tx.flags, record.state as u32].iter().any(|&v| u8::try_from(v).is_err()) {
            return Err("kind, flags or state does not fit a byte");
        }
        let ref_pos =
            if record.tx.ref_id.is_none() { NO_REF } else { self.find(record.tx.ref_id).ok_or("ref not found")? };
        Ok(self.push_hashed(Stored::pack(record, ref_pos), hash))
    }

    /// The client's transactions with `seq > after_seq`, oldest first, at most `limit`.
    pub(crate) fn list(&self, client_id: u64, after_seq: u64, limit: usize) -> Vec<TxRecord> {
        let Some(positions) = self.by_client.get(&client_id) else { return Vec::new() };
        let start = positions.partition_point(|&p| self.rows[p as usize].seq <= after_seq);
        positions[start..].iter().take(limit).map(|&p| self.get(p)).collect()
    }
}
