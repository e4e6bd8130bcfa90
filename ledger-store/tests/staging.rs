//! The writer stages frames in its own buffer and writes them into the segment file
//! (see `src/log/stage.rs`): a group larger than the buffer is written in parts before
//! its commit, a frame larger than the buffer grows it, and the end of a segment is
//! written at a roll-over. None of that may be visible to readers, or survive a crash,
//! before the group's commit.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // tests: small, fixed values

use ledger_store::{Log, LogOptions};

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i * 7) as u8).collect()
}

fn read_all(log: &Log) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cursor = log.reader().cursor(log.first_seq()).unwrap();
    while let Some(frame) = cursor.next() {
        let frame = frame.unwrap();
        out.push((frame.seq, frame.payload.to_vec()));
    }
    out
}

#[test]
fn a_group_larger_than_the_stage_is_written_in_parts_and_stays_unseen_until_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(64 << 20);
    let mut log = Log::open(dir.path(), options).unwrap();
    // One small committed group, then 12 MiB of frames in one group (the stage holds 4).
    log.append(1, &payload(1, 100)).unwrap();
    log.commit().unwrap();
    let reader = log.reader();
    let len = 4000;
    let count = (12 << 20) / len as u64;
    for seq in 2..2 + count {
        assert_eq!(log.append(1, &payload(seq, len)).unwrap(), seq);
    }
    assert_eq!(reader.committed_seq(), 1, "parts written before the commit are not published");
    assert_eq!(read_all(&log).len(), 1);
    // The process dies before the commit: the parts in the file are not a whole group.
    drop(log);
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(log.committed_seq(), 1, "a group written in parts without its end mark is cut");
    let torn = log.recovery().torn_tail.as_ref().expect("the parts are reported as a torn tail");
    assert!(torn.frames_dropped > 0, "{torn:?}");
    drop(log);

    // The same group committed survives whole.
    let mut log = Log::open(dir.path(), options).unwrap();
    for seq in 2..2 + count {
        log.append(1, &payload(seq, len)).unwrap();
    }
    log.commit().unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), options).unwrap();
    let frames = read_all(&log);
    assert_eq!(frames.len() as u64, 1 + count);
    for (seq, bytes) in frames.into_iter().skip(1) {
        assert_eq!(bytes, payload(seq, len), "frame {seq}");
    }
}

#[test]
fn a_frame_larger_than_the_stage_and_groups_across_roll_overs_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions::new().segment_bytes(16 << 20);
    let mut log = Log::open(dir.path(), options).unwrap();
    let mut expected = Vec::new();
    // A 6 MiB frame (the stage grows for it), small frames around it, and groups that
    // cross the 16 MiB segments' ends.
    let mut seq = 1;
    for (group, lens) in
        [vec![10, 6 << 20, 10], vec![3 << 20; 5], vec![5000; 3000], vec![1 << 20; 9]].into_iter().enumerate()
    {
        for len in lens {
            assert_eq!(log.append(group as u16 + 1, &payload(seq, len)).unwrap(), seq);
            expected.push((seq, payload(seq, len)));
            seq += 1;
        }
        log.commit().unwrap();
        assert_eq!(log.reader().committed_seq(), seq - 1);
    }
    assert_eq!(read_all(&log), expected, "read while open");
    log.close().unwrap();
    let log = Log::open(dir.path(), options).unwrap();
    assert!(log.recovery().segments > 2, "the groups crossed segment ends: {:?}", log.recovery());
    assert_eq!(log.recovery().torn_tail, None);
    assert_eq!(read_all(&log), expected, "read after reopening");
}
