//! rkyv archives are read in place from the mapping: payloads are 16-byte aligned,
//! including for types whose archive needs that alignment (128-bit ids).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

use ledger_store::{Log, LogOptions};
use rkyv::rancor::Error;

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Transfer {
    id: u128,
    amount: i64,
    currency: [u8; 4],
    memo: String,
}

fn transfer(i: u64) -> Transfer {
    Transfer {
        id: (u128::from(i) << 64) | 0xFEED,
        amount: -(i as i64) * 100,
        currency: *b"USD\0",
        memo: "x".repeat(i as usize % 37),
    }
}

#[test]
fn archived_records_are_accessed_in_place_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(8 << 10);
    {
        let mut log = Log::open(dir.path(), options).unwrap();
        for i in 0..300u64 {
            let bytes = rkyv::to_bytes::<Error>(&transfer(i)).unwrap();
            log.append(3, &bytes).unwrap();
        }
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), options).unwrap();
    assert!(log.recovery().segments > 2, "records cross segment boundaries");
    let mut cursor = log.reader().cursor(1).unwrap();
    let mut i = 0u64;
    while let Some(frame) = cursor.next() {
        let frame = frame.unwrap();
        assert_eq!(frame.payload.as_ptr() as usize % 16, 0, "payload of frame {} is 16-byte aligned", frame.seq);
        // `access` validates and fails on misalignment; no copy is made.
        let archived = rkyv::access::<ArchivedTransfer, Error>(frame.payload).unwrap();
        let span = frame.payload.as_ptr_range();
        assert!(span.contains(&(std::ptr::from_ref(archived).cast::<u8>())), "the archive lives in the mapping");
        assert_eq!(archived.id, transfer(i).id);
        assert_eq!(archived.amount, transfer(i).amount);
        assert_eq!(rkyv::deserialize::<Transfer, Error>(archived).unwrap(), transfer(i));
        i += 1;
    }
    assert_eq!(i, 300);
}

#[test]
fn in_place_encoding_fills_a_zeroed_aligned_frame() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogOptions::new().segment_bytes(16 << 10)).unwrap();
    let bytes = rkyv::to_bytes::<Error>(&transfer(7)).unwrap();
    let seq = log
        .append_in_place(3, bytes.len(), |buf| {
            assert_eq!(buf.as_ptr() as usize % 16, 0);
            assert!(buf.iter().all(|&b| b == 0), "handed a zeroed buffer");
            buf.copy_from_slice(&bytes);
        })
        .unwrap();
    log.commit().unwrap();
    let mut cursor = log.reader().cursor(seq).unwrap();
    let frame = cursor.next().unwrap().unwrap();
    assert_eq!(rkyv::access::<ArchivedTransfer, Error>(frame.payload).unwrap().memo, "x".repeat(7));
}
