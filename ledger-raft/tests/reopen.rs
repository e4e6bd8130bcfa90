//! What the Raft log keeps across a restart: entries, the vote, the purged log id, a
//! cut, and a log restarted past a purge.
#![allow(clippy::unwrap_used)]

use ledger_raft::{Group, RaftLog, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

fn id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: id(term, index),
        payload: EntryPayload::Normal(Group(format!("group {index} of term {term}").into_bytes())),
    }
}

async fn append(log: &mut RaftLog, entries: Vec<Entry<TypeConfig>>) {
    log.blocking_append(entries).await.unwrap();
}

#[tokio::test]
async fn entries_vote_purge_and_cuts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = RaftLog::open(dir.path(), 16 << 10).unwrap();
        append(&mut log, (0..200).map(|i| entry(1, i)).collect()).await;
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        // A new leader's log differs from 150 on: the follower's suffix is cut.
        log.truncate(id(1, 150)).await.unwrap();
        append(&mut log, (150..160).map(|i| entry(2, i)).collect()).await;
        log.save_committed(Some(id(2, 155))).await.unwrap();
        log.purge(id(1, 40)).await.unwrap();
    }
    let mut log = RaftLog::open(dir.path(), 16 << 10).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(id(1, 40)), Some(id(2, 159))));
    let all = log.try_get_log_entries(0..).await.unwrap();
    assert_eq!(all.len(), 119, "41..=159");
    assert_eq!(all.first().map(|e| e.log_id), Some(id(1, 41)));
    assert_eq!(all[149 - 41].log_id, id(1, 149));
    assert_eq!(all[150 - 41], entry(2, 150));

    // A snapshot made everything up to 500 moot: the next entry is 501, far past the
    // log; the log restarts there, and a restart finds it.
    log.purge(id(2, 500)).await.unwrap();
    append(&mut log, vec![entry(3, 501), entry(3, 502)]).await;
    drop(log);
    let mut log = RaftLog::open(dir.path(), 16 << 10).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(id(2, 500)), Some(id(3, 502))));
    assert_eq!(log.try_get_log_entries(0..).await.unwrap(), vec![entry(3, 501), entry(3, 502)]);
    let dirs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("log-"))
        .count();
    assert_eq!(dirs, 1, "the old log directory went");
}
