//! `verify`, `inspect` and `dump` beside a process that keeps writing: a group being
//! written at the tail is not damage, the directory's lock is not taken (the owner
//! keeps it throughout), and what they read is a gapless prefix of the log.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{fill, ledger, path_arg, small, usd};
use ledger_core::{Durability, Ledger, Tx, TxId, TxOutcome};

/// How long the readers run beside the writer, at least.
const LIVE_MS: u64 = 1500;
/// Rounds of reading at most, whatever the machine's speed.
const ROUNDS_MAX: usize = 12;

fn readers_see_a_clean_prefix_while_written(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let d = path_arg(dir.path()).to_string();
    let owner = Ledger::open(dir.path(), small(durability)).unwrap();
    fill(&owner, 600); // checkpoints and runs exist before the readers start
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (owner, stop, committed) = (owner.clone(), Arc::clone(&stop), Arc::clone(&committed));
        std::thread::spawn(move || {
            let mut next = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let group: Vec<Tx> =
                    (0..10).map(|k| Tx::sale(TxId::from_parts(next + k, 99), 1 + (next + k) % 4, 500, usd())).collect();
                next += 10;
                for o in owner.submit(&group).unwrap() {
                    assert!(matches!(o, TxOutcome::Committed(_)), "{o:?}");
                }
                committed.store(owner.last_seq(), Ordering::Relaxed);
                if next % 1000 == 1 {
                    owner.close_batch(1, usd()).unwrap();
                }
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < ROUNDS_MAX && (rounds < 3 || started.elapsed() < Duration::from_millis(LIVE_MS)) {
        rounds += 1;
        let before = committed.load(Ordering::Relaxed);
        let run = ledger(&["verify", &d]);
        assert_eq!(run.code, 0, "round {rounds}: verify beside a writer must say clean: {run:?}");
        assert!(run.stdout.contains("clean: no damage found"), "{}", run.stdout);

        let run = ledger(&["dump", &d]);
        assert_eq!(run.code, 0, "{run:?}");
        let seqs: Vec<u64> = run
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.iter().copied().eq(1..=seqs.len() as u64), "round {rounds}: dump is not gapless from 1");
        assert!(seqs.len() as u64 >= before, "round {rounds}: dump saw {} of {before} committed", seqs.len());

        let run = ledger(&["inspect", &d, "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(summary["last_seq"].as_u64().unwrap() >= before, "{summary}");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(committed.load(Ordering::Relaxed) > 600, "the writer went on writing");
    owner.close().unwrap();
    let run = ledger(&["verify", &d]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn readers_beside_a_syncing_writer() {
    readers_see_a_clean_prefix_while_written(Durability::SyncData);
}

#[test]
fn readers_beside_a_writer_that_does_not_sync() {
    readers_see_a_clean_prefix_while_written(Durability::None);
}
