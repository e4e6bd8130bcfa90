//! ledger-core's log records, re-implemented byte by byte from their definition
//! (`ledger-core/src/codec.rs`: rkyv 0.8, little-endian, aligned): a transaction is a
//! 96-byte archived `TxFrame` in a frame of kind 1, a batch close a 32-byte archived
//! `CloseFrame` in a frame of kind 2. An archived struct of plain integers is laid out
//! as a `repr(C)` struct of little-endian fields; rkyv finds the root at the end of
//! the buffer (`len - size`), which must be 8-byte aligned. `tests` in
//! `record_decoder` check this codec against frames a real `Ledger` wrote.

use ledger_core::{Tx, TxId};

/// Frame kind of a transaction record.
pub const KIND_TX: u16 = 1;
/// Frame kind of a batch-close record.
pub const KIND_CLOSE: u16 = 2;
/// Bytes of an archived `TxFrame`.
pub const TX_BYTES: usize = 96;
/// Bytes of an archived `CloseFrame`.
pub const CLOSE_BYTES: usize = 32;
/// Alignment of both archived records (their u64 fields).
pub const RECORD_ALIGN: usize = 8;

/// A record as this codec reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A committed transaction.
    Tx {
        /// As submitted.
        tx: Tx,
        /// Its commit time.
        ts: u64,
        /// Its batch (0 for none).
        batch_id: u64,
    },
    /// A batch close.
    Close {
        /// The account's client.
        client: u64,
        /// The account's currency (a known one).
        currency: [u8; 4],
        /// The batch closed.
        batch_id: u64,
        /// The close's commit time.
        ts: u64,
    },
    /// Kind 1 or 2 whose payload is not the archived record (too short, misaligned
    /// root, or a close naming an unknown currency).
    Malformed,
    /// Any other kind.
    UnknownKind,
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn four(b: &[u8], at: usize) -> [u8; 4] {
    [b[at], b[at + 1], b[at + 2], b[at + 3]]
}

/// The root of an archived record of `size` bytes at the end of `payload`, if rkyv
/// would find one there.
fn root(payload: &[u8], size: usize) -> Option<&[u8]> {
    let at = payload.len().checked_sub(size)?;
    (at % RECORD_ALIGN == 0).then(|| &payload[at..])
}

/// Decodes a frame's payload (the payload starts 16-byte aligned, as in the log).
pub fn decode(kind: u16, payload: &[u8]) -> Decoded {
    match kind {
        KIND_TX => match root(payload, TX_BYTES) {
            Some(r) => Decoded::Tx {
                tx: Tx {
                    id: TxId::from_parts(u64_at(r, 0), u64_at(r, 8)),
                    ref_id: TxId::from_parts(u64_at(r, 16), u64_at(r, 24)),
                    client_id: u64_at(r, 32),
                    device_id: u64_at(r, 40),
                    amount: i64::from_le_bytes(r[48..56].try_into().expect("8 bytes")),
                    kind: u32_at(r, 56),
                    flags: u32_at(r, 60),
                    currency: four(r, 64),
                    // 68..72: padding
                    user_data: u64_at(r, 72),
                },
                ts: u64_at(r, 80),
                batch_id: u64_at(r, 88),
            },
            None => Decoded::Malformed,
        },
        KIND_CLOSE => match root(payload, CLOSE_BYTES) {
            Some(r) if crate::model::known_currency(four(r, 8)) => {
                // 12..16: padding
                Decoded::Close {
                    client: u64_at(r, 0),
                    currency: four(r, 8),
                    batch_id: u64_at(r, 16),
                    ts: u64_at(r, 24),
                }
            }
            _ => Decoded::Malformed,
        },
        _ => Decoded::UnknownKind,
    }
}

/// Encodes a transaction record (padding zero, as rkyv writes it).
pub fn encode_tx(tx: &Tx, ts: u64, batch_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(TX_BYTES);
    for w in [tx.id.lo(), tx.id.hi(), tx.ref_id.lo(), tx.ref_id.hi(), tx.client_id, tx.device_id] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&tx.amount.to_le_bytes());
    out.extend_from_slice(&tx.kind.to_le_bytes());
    out.extend_from_slice(&tx.flags.to_le_bytes());
    out.extend_from_slice(&tx.currency);
    out.extend_from_slice(&[0; 4]);
    for w in [tx.user_data, ts, batch_id] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    debug_assert_eq!(out.len(), TX_BYTES);
    out
}

/// Encodes a batch-close record.
pub fn encode_close(client: u64, currency: [u8; 4], batch_id: u64, ts: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLOSE_BYTES);
    out.extend_from_slice(&client.to_le_bytes());
    out.extend_from_slice(&currency);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&batch_id.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::Currency;

    #[test]
    fn round_trips_and_finds_the_root_at_the_end() {
        let usd = Currency::from_code("USD").expect("USD");
        let tx = Tx::refund(TxId(u128::MAX - 5), TxId(77), 9, -3, usd).with_device(3).with_user_data(u64::MAX);
        let bytes = encode_tx(&tx, 42, 7);
        assert_eq!(decode(KIND_TX, &bytes), Decoded::Tx { tx, ts: 42, batch_id: 7 });
        let mut longer = vec![0xee; 8];
        longer.extend_from_slice(&bytes);
        assert_eq!(decode(KIND_TX, &longer), Decoded::Tx { tx, ts: 42, batch_id: 7 });
        longer.insert(0, 0);
        assert_eq!(decode(KIND_TX, &longer), Decoded::Malformed, "root not 8-aligned");
        assert_eq!(decode(KIND_TX, &bytes[1..]), Decoded::Malformed);
        let close = encode_close(9, *b"USD\0", 7, 43);
        assert_eq!(decode(KIND_CLOSE, &close), Decoded::Close { client: 9, currency: *b"USD\0", batch_id: 7, ts: 43 });
        assert_eq!(decode(KIND_CLOSE, &encode_close(9, *b"usd\0", 7, 43)), Decoded::Malformed);
        assert_eq!(decode(3, &close), Decoded::UnknownKind);
    }
}
