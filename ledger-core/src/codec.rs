//! The records ledger-core writes into the log: one frame per committed transaction
//! and one per batch close, archived with rkyv (little-endian, aligned) and read back
//! in place on replay.
//!
//! A record holds what cannot be recomputed: the transaction as submitted, its commit
//! time and its batch. Everything else (payment states, totals, balances) is derived by
//! replaying the records through the same code that judged them.

use rkyv::rancor::Error as RkyvError;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::Buffer;
use rkyv::util::AlignedVec;

use crate::currency::Currency;
use crate::model::{Tx, TxId};

/// Frame kind of a committed transaction.
pub(crate) const FRAME_TX: u16 = 1;
/// Frame kind of a batch close.
pub(crate) const FRAME_BATCH_CLOSE: u16 = 2;

/// A committed transaction as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub(crate) struct TxFrame {
    pub(crate) id: [u64; 2],
    pub(crate) ref_id: [u64; 2],
    pub(crate) client_id: u64,
    pub(crate) device_id: u64,
    pub(crate) amount: i64,
    pub(crate) kind: u32,
    pub(crate) flags: u32,
    pub(crate) currency: [u8; 4],
    pub(crate) user_data: u64,
    pub(crate) timestamp_ns: u64,
    pub(crate) batch_id: u64,
}

/// A batch close as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize)]
pub(crate) struct CloseFrame {
    pub(crate) client_id: u64,
    pub(crate) currency: [u8; 4],
    pub(crate) batch_id: u64,
    pub(crate) timestamp_ns: u64,
}

/// A record read back from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    Tx { tx: Tx, timestamp_ns: u64, batch_id: u64 },
    Close { client_id: u64, currency: Currency, batch_id: u64, timestamp_ns: u64 },
}

/// Why a frame's payload is not a record this version wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame kind is unknown.
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    /// The payload does not validate as the archived record.
    #[error("malformed record: {0}")]
    Malformed(String),
}

impl TxFrame {
    pub(crate) fn new(tx: &Tx, timestamp_ns: u64, batch_id: u64) -> TxFrame {
        TxFrame {
            id: [tx.id.lo(), tx.id.hi()],
            ref_id: [tx.ref_id.lo(), tx.ref_id.hi()],
            client_id: tx.client_id,
            device_id: tx.device_id,
            amount: tx.amount,
            kind: tx.kind,
            flags: tx.flags,
            currency: tx.currency,
            user_data: tx.user_data,
            timestamp_ns,
            batch_id,
        }
    }
}

impl ArchivedTxFrame {
    /// The transaction as submitted, read from the archive in place.
    pub(crate) fn tx(&self) -> Tx {
        let id = |p: &[rkyv::rend::u64_le; 2]| TxId::from_parts(p[0].to_native(), p[1].to_native());
        Tx {
            id: id(&self.id),
            ref_id: id(&self.ref_id),
            client_id: self.client_id.to_native(),
            device_id: self.device_id.to_native(),
            amount: self.amount.to_native(),
            kind: self.kind.to_native(),
            flags: self.flags.to_native(),
            currency: self.currency,
            user_data: self.user_data.to_native(),
        }
    }
}

/// Bytes of an archived transaction record: every one has this fixed size.
pub(crate) const TX_FRAME_BYTES: usize = size_of::<ArchivedTxFrame>();

/// Archives `frame` straight into `out`, exactly [`TX_FRAME_BYTES`] long and 16-byte
/// aligned (a frame's payload in the log's mapping): no buffer in between, no
/// allocation, no copy.
///
/// # Panics
/// If `out` is not [`TX_FRAME_BYTES`] long (a bug of the caller, never of the input).
pub(crate) fn encode_tx_into(frame: &TxFrame, out: &mut [u8]) {
    assert_eq!(out.len(), TX_FRAME_BYTES, "a transaction record has a fixed size");
    // Plain fixed-size fields into a slice of exactly their archived size cannot fail.
    let written =
        rkyv::api::low::to_bytes_in_with_alloc::<_, _, RkyvError>(frame, Buffer::from(out), SubAllocator::empty())
            .expect("a TxFrame fits its archived size")
            .len();
    assert_eq!(written, TX_FRAME_BYTES, "a transaction record has a fixed size");
}

/// Serializes a record into `buf` (reused between calls), returning the bytes.
#[cfg(test)]
pub(crate) fn encode_tx(frame: &TxFrame, buf: AlignedVec) -> AlignedVec {
    let mut buf = buf;
    buf.clear();
    // Serializing fixed-size plain fields into a growable buffer cannot fail.
    rkyv::api::high::to_bytes_in::<_, RkyvError>(frame, buf).expect("a TxFrame always serializes")
}

pub(crate) fn encode_close(frame: &CloseFrame, buf: AlignedVec) -> AlignedVec {
    let mut buf = buf;
    buf.clear();
    rkyv::api::high::to_bytes_in::<_, RkyvError>(frame, buf).expect("a CloseFrame always serializes")
}

/// Reads a record in place from a frame's payload (validated by rkyv's bytecheck).
pub(crate) fn decode(kind: u16, payload: &[u8]) -> Result<Record, DecodeError> {
    let malformed = |e: RkyvError| DecodeError::Malformed(e.to_string());
    match kind {
        FRAME_TX => {
            let a = rkyv::access::<ArchivedTxFrame, RkyvError>(payload).map_err(malformed)?;
            Ok(Record::Tx { tx: a.tx(), timestamp_ns: a.timestamp_ns.to_native(), batch_id: a.batch_id.to_native() })
        }
        FRAME_BATCH_CLOSE => {
            let a = rkyv::access::<ArchivedCloseFrame, RkyvError>(payload).map_err(malformed)?;
            let currency = Currency::from_c_bytes(a.currency)
                .ok_or_else(|| DecodeError::Malformed("unknown currency in a batch close".into()))?;
            Ok(Record::Close {
                client_id: a.client_id.to_native(),
                currency,
                batch_id: a.batch_id.to_native(),
                timestamp_ns: a.timestamp_ns.to_native(),
            })
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_have_a_fixed_size() {
        let usd = Currency::from_code("USD").expect("USD");
        let tx = Tx::refund(TxId(u128::MAX - 5), TxId(77), 9, 1234, usd).with_device(3).with_user_data(u64::MAX);
        let bytes = encode_tx(&TxFrame::new(&tx, 42, 7), AlignedVec::new());
        assert_eq!(bytes.len(), 96, "a transaction record is a fixed 96 bytes");
        assert_eq!(TX_FRAME_BYTES, 96);
        let mut in_place = AlignedVec::<16>::new();
        in_place.resize(TX_FRAME_BYTES, 0xAA); // whatever the slice held is overwritten
        encode_tx_into(&TxFrame::new(&tx, 42, 7), &mut in_place);
        assert_eq!(in_place.as_slice(), bytes.as_slice(), "archived in place, byte for byte the same");
        assert_eq!(decode(FRAME_TX, &bytes), Ok(Record::Tx { tx, timestamp_ns: 42, batch_id: 7 }));
        let close = CloseFrame { client_id: 9, currency: usd.c_bytes(), batch_id: 7, timestamp_ns: 43 };
        let bytes = encode_close(&close, AlignedVec::new());
        assert_eq!(
            decode(FRAME_BATCH_CLOSE, &bytes),
            Ok(Record::Close { client_id: 9, currency: usd, batch_id: 7, timestamp_ns: 43 })
        );
        assert!(matches!(decode(9, &bytes), Err(DecodeError::UnknownKind(9))));
        assert!(matches!(decode(FRAME_TX, &bytes[..8]), Err(DecodeError::Malformed(_))));
    }
}
