//! The cold tier's files: ledger-store's tables (arbitrary bytes, and valid tables with
//! one byte changed) and ledger-core's checkpoint payloads.
//!
//! Oracle: nothing panics; a table opens only when it is byte for byte one the builder
//! wrote (every byte is covered by a checksum), and then every key it was built with is
//! found with its entry; a checkpoint payload decodes or is refused with a reason.
//!
//! Input: the first byte picks the mode (mod 3): 0 the rest is a table file; 1 the rest
//! gives the keys of a valid table (16 bytes each, at most 64) after three bytes that
//! say which byte of the file to change and how (XOR 0: unchanged); 2 the rest is a
//! checkpoint payload covering seq 7.

use ledger_store::Storage;
use ledger_store::table::{Table, TableBuilder, TableError};

pub fn cold_files(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => raw_table(rest),
        1 => changed_table(rest),
        _ => {
            let _ = ledger_core::sim::decode_checkpoint(rest, 7);
        }
    }
}

fn raw_table(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.tbl");
    std::fs::write(&path, bytes).expect("write");
    if let Ok(table) = Table::open(&path) {
        // Whatever it holds, reading it stays in bounds.
        for pos in 0..table.len().min(64) {
            let mut key = [0u8; 16];
            key.copy_from_slice(&table.entry(pos)[..16]);
            let _ = table.get(&key);
        }
        for pos in 0..table.secondary_len().min(64) {
            let (g, o, a, _) = table.secondary_at(pos);
            let _ = table.secondary_bounds(g, o..o.saturating_add(1), a..u64::MAX);
        }
    }
}

fn changed_table(input: &[u8]) {
    let Some((change, keys)) = input.split_at_checked(3) else { return };
    let mut keys: Vec<[u8; 16]> = keys.chunks_exact(16).take(64).map(|c| c.try_into().expect("16 bytes")).collect();
    keys.sort();
    keys.dedup();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut b = TableBuilder::create(&Storage::os(), dir.path(), "t.tbl", 24, keys.len() as u64).expect("create");
    for (i, k) in keys.iter().enumerate() {
        let mut e = [0u8; 24];
        e[..16].copy_from_slice(k);
        e[16..].copy_from_slice(&(i as u64).to_le_bytes());
        b.push_entry(&e).expect("sorted keys");
    }
    let mut secondary: Vec<(u64, u64, [u8; 16])> =
        keys.iter().enumerate().map(|(i, k)| (u64::from(k[0] % 4), i as u64, *k)).collect();
    secondary.sort();
    for (g, o, k) in &secondary {
        b.push_secondary(*g, *o, *o, k).expect("sorted secondary");
    }
    let info = b.finish().expect("finish");
    let mut bytes = std::fs::read(&info.path).expect("read");
    let at = usize::from(u16::from_le_bytes([change[0], change[1]])) % bytes.len();
    bytes[at] ^= change[2];
    std::fs::write(&info.path, &bytes).expect("write");
    match Table::open(&info.path) {
        Ok(table) => {
            assert_eq!(change[2], 0, "a table with byte {at} changed opened");
            assert_eq!(table.len(), keys.len());
            for (i, k) in keys.iter().enumerate() {
                let e = table.get(k).expect("every key is found");
                assert_eq!(&e[16..], &(i as u64).to_le_bytes());
            }
            for g in 0..4u64 {
                let r = table.secondary_bounds(g, 0..u64::MAX, 0..u64::MAX);
                assert_eq!(r.len(), secondary.iter().filter(|s| s.0 == g).count());
            }
        }
        Err(TableError::Damaged { .. }) => assert_ne!(change[2], 0, "an intact table was refused"),
        Err(e) => panic!("an unexpected error: {e}"),
    }
}

/// Seeds: an empty table, a valid table unchanged and with a flipped byte, a checkpoint.
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let keys: Vec<u8> = (0u8..40).flat_map(|i| [i.wrapping_mul(37); 16]).collect();
    let valid = |change: [u8; 3]| [vec![1], change.to_vec(), keys.clone()].concat();
    vec![
        ("raw-empty", vec![0]),
        ("raw-garbage", [vec![0], b"LEDGTBL1".to_vec(), vec![0xff; 120]].concat()),
        ("table-intact", valid([0, 0, 0])),
        ("table-flipped-header", valid([9, 0, 1])),
        ("table-flipped-footer", valid([0xff, 0xff, 0x80])),
        ("checkpoint-empty", [vec![2], ledger_core::sim::encode_checkpoint(7, 70, &[], 0)].concat()),
        ("checkpoint-runs", [vec![2], ledger_core::sim::encode_checkpoint(7, 70, &[(1, 5), (3, 9)], 3)].concat()),
    ]
}
