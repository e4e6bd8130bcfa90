//! A reader thread follows the writer: it sees every committed frame once, in order,
//! never a frame before its group is committed, and never blocks the writer.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ledger_store::{Durability, Log, LogOptions};

#[test]
fn a_tailing_reader_sees_exactly_the_committed_frames() {
    const FRAMES: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let mut log =
        Log::open(dir.path(), LogOptions::new().segment_bytes(256 << 10).durability(Durability::None)).unwrap();
    let reader = log.reader();
    let done = Arc::new(AtomicBool::new(false));
    let tail = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut cursor = reader.cursor(1).unwrap();
            let mut next = 1u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                while let Some(frame) = cursor.next() {
                    let frame = frame.unwrap();
                    assert_eq!(frame.seq, next);
                    assert!(frame.seq <= reader.committed_seq(), "an uncommitted frame was visible");
                    assert_eq!(frame.payload, &common::payload(frame.seq)[..]);
                    next += 1;
                }
                if finished {
                    return next - 1;
                }
                std::thread::yield_now();
            }
        })
    };
    let mut seq = 0;
    let mut group = 1;
    while seq < FRAMES {
        for _ in 0..group.min(FRAMES - seq) {
            seq += 1;
            log.append(1, &common::payload(seq)).unwrap();
        }
        log.commit().unwrap();
        group = group % 97 + 1;
    }
    done.store(true, Ordering::Release);
    assert_eq!(tail.join().unwrap(), FRAMES);
    assert!(common::segment_files(dir.path()).len() > 10, "the reader crossed roll-overs");
}

#[test]
fn a_cursor_that_caught_up_mid_roll_over_misses_no_frame() {
    // A roll-over adds the new segment before the old segment's last frames are
    // published (at commit): a caught-up cursor must not skip to the new segment early.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogOptions::new().segment_bytes(8192)).unwrap();
    for _ in 0..6 {
        log.append(1, &[7u8; 1000]).unwrap();
    }
    log.commit().unwrap();
    let mut cursor = log.reader().cursor(1).unwrap();
    while cursor.next().is_some() {}
    log.append(1, &[8u8; 1000]).unwrap(); // 7: still fits the first segment
    log.append(1, &[9u8; 1000]).unwrap(); // 8: rolls over
    assert_eq!(common::segment_files(dir.path()).len(), 2);
    assert!(cursor.next().is_none(), "nothing new is committed yet");
    log.commit().unwrap();
    let mut seen = Vec::new();
    while let Some(frame) = cursor.next() {
        seen.push(frame.unwrap().seq);
    }
    assert_eq!(seen, vec![7, 8]);
}
