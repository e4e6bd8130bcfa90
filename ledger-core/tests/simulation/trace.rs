//! The seeded generator, the trace digest and the run's counters.

use std::collections::VecDeque;

use crate::TRACE_TAIL_LINES;

// ----- the seeded generator ------------------------------------------------------

pub(crate) use crate::common::rng::Rng;

// ----- the trace -----------------------------------------------------------------

/// Every event of a run, folded into an FNV-1a digest; the newest lines are kept for
/// the failure message.
#[derive(Default)]
pub(crate) struct Trace {
    pub(crate) digest: u64,
    pub(crate) events: u64,
    pub(crate) tail: VecDeque<String>,
}

impl Trace {
    pub(crate) fn event(&mut self, line: String) {
        if self.events == 0 {
            self.digest = 0xcbf2_9ce4_8422_2325;
        }
        for &b in line.as_bytes().iter().chain(b"\n") {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.events += 1;
        if self.tail.len() == TRACE_TAIL_LINES {
            self.tail.pop_front();
        }
        let mut short = line;
        if short.len() > 400 {
            let mut cut = 400;
            while !short.is_char_boundary(cut) {
                cut -= 1;
            }
            short.truncate(cut);
            short.push_str(" ...");
        }
        self.tail.push_back(short);
    }
}

// ----- counters ------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
pub(crate) struct Stats {
    pub(crate) seeds: u64,
    pub(crate) actions: u64,
    pub(crate) groups: u64,
    pub(crate) requests: u64,
    pub(crate) transactions: u64,
    /// Outcome codes 0..=9.
    pub(crate) codes: [u64; 10],
    pub(crate) explicit_closes: u64,
    pub(crate) empty_closes: u64,
    pub(crate) age_checks: u64,
    pub(crate) aged_closes: u64,
    pub(crate) snapshots_asked: u64,
    pub(crate) crashes_idle: u64,
    pub(crate) crashes_before_sync: u64,
    pub(crate) crashes_after_sync: u64,
    pub(crate) tears: u64,
    pub(crate) garbage_writes: u64,
    pub(crate) unacked_groups_kept: u64,
    pub(crate) unacked_groups_dropped: u64,
    pub(crate) torn_tails_reported: u64,
    pub(crate) frames_dropped: u64,
    pub(crate) clean_reopens: u64,
    pub(crate) shutdowns: u64,
    pub(crate) refused_after_shutdown: u64,
    pub(crate) snapshot_loads: u64,
    pub(crate) power_losses: u64,
    pub(crate) pages_lost: u64,
    pub(crate) acked_records_lost: u64,
    pub(crate) stale_snapshots_removed: u64,
    pub(crate) last_seq_max: u64,
    pub(crate) segments_max: usize,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.seeds += o.seeds;
        self.actions += o.actions;
        self.groups += o.groups;
        self.requests += o.requests;
        self.transactions += o.transactions;
        for (a, b) in self.codes.iter_mut().zip(o.codes) {
            *a += b;
        }
        self.explicit_closes += o.explicit_closes;
        self.empty_closes += o.empty_closes;
        self.age_checks += o.age_checks;
        self.aged_closes += o.aged_closes;
        self.snapshots_asked += o.snapshots_asked;
        self.crashes_idle += o.crashes_idle;
        self.crashes_before_sync += o.crashes_before_sync;
        self.crashes_after_sync += o.crashes_after_sync;
        self.tears += o.tears;
        self.garbage_writes += o.garbage_writes;
        self.unacked_groups_kept += o.unacked_groups_kept;
        self.unacked_groups_dropped += o.unacked_groups_dropped;
        self.torn_tails_reported += o.torn_tails_reported;
        self.frames_dropped += o.frames_dropped;
        self.clean_reopens += o.clean_reopens;
        self.shutdowns += o.shutdowns;
        self.refused_after_shutdown += o.refused_after_shutdown;
        self.snapshot_loads += o.snapshot_loads;
        self.power_losses += o.power_losses;
        self.pages_lost += o.pages_lost;
        self.acked_records_lost += o.acked_records_lost;
        self.stale_snapshots_removed += o.stale_snapshots_removed;
        self.last_seq_max = self.last_seq_max.max(o.last_seq_max);
        self.segments_max = self.segments_max.max(o.segments_max);
    }
}
