//! Fault injection and power-loss simulation for tests, through the [`Storage`] seam.
//!
//! [`SimulatedDisk`] is a [`FaultInjector`] that fails chosen calls (the Nth call of an
//! operation, or every call from the Nth on, like a disk that stays full) with EIO or
//! ENOSPC, and records what reached stable storage: the byte ranges of segment files
//! a successful data sync covered, and the names a rename created that a successful
//! directory sync made durable. After the log is dropped, [`SimulatedDisk::power_loss`]
//! rewrites the directory as a power cut would leave it: every byte of a segment not
//! covered by a successful sync reverts to what was durable when the disk was
//! attached (zeroes for bytes the log wrote since), whole or per 512-byte sector at
//! random (a torn write-back), and a renamed file whose directory sync never
//! succeeded may vanish. That is the crash a SIGKILL cannot produce: the page cache
//! survives a process kill, not a power cut.
//!
//! The model's simplifications: the segment header (64 bytes, synced before the rename
//! that names the file) is kept; removed files stay removed; and snapshot files keep
//! their contents (they are synced before they are named).
//!
//! [`Storage`]: crate::Storage

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::log::segment::{SEGMENT_HEADER_BYTES, parse_segment_file_name};
use crate::storage::{FaultInjector, StorageOp};

/// Linux's `EIO` (an I/O error: a failed write-back, a dying device).
pub const EIO: i32 = 5;
/// Linux's `ENOSPC` (no space left on device).
pub const ENOSPC: i32 = 28;
/// The unit a torn write-back keeps or loses (a disk sector).
pub const TORN_SECTOR_BYTES: usize = 512;

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO`.
    Eio,
    /// `ENOSPC`.
    Enospc,
}

impl Fault {
    /// A fresh `io::Error` for this fault.
    pub fn error(self) -> io::Error {
        io::Error::from_raw_os_error(match self {
            Fault::Eio => EIO,
            Fault::Enospc => ENOSPC,
        })
    }
}

/// How a simulated power loss treats bytes that were written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// All of them are lost; every renamed name not made durable is lost.
    Clean,
    /// Each unsynced sector that differs from its durable content, and each name not
    /// made durable, is kept or lost by a coin flip drawn from `seed`: the kernel may
    /// have written back any part of the page cache before the cut.
    Torn {
        /// Seed of the coin flips.
        seed: u64,
    },
}

/// What [`SimulatedDisk::power_loss`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerLossReport {
    /// Segment files rewritten.
    pub files_rewritten: usize,
    /// Sectors that reverted to their durable contents.
    pub sectors_lost: u64,
    /// Unsynced sectors that a torn power loss kept.
    pub sectors_kept: u64,
    /// Files whose name was never made durable and that vanished.
    pub names_lost: usize,
}

#[derive(Debug)]
struct Rule {
    op: StorageOp,
    /// 1-based: the `nth` call of `op` fails (and every later one when `sticky`).
    nth: u64,
    sticky: bool,
    /// `None`: the power fails as the call starts.
    fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    calls: BTreeMap<StorageOp, u64>,
    faults_injected: u64,
    crashed: bool,
    /// Successful data syncs of segment ranges, by file.
    synced: BTreeMap<PathBuf, Vec<Range<u64>>>,
    /// Names created by a rename and not yet covered by a directory sync.
    unsynced_names: BTreeSet<PathBuf>,
}

/// A [`FaultInjector`] that fails chosen calls and can simulate a power loss; see the
/// module documentation. Create one per crash cycle, before opening the log.
pub struct SimulatedDisk {
    dir: PathBuf,
    /// Segment files as they were when the disk was attached: what was durable then.
    baseline: BTreeMap<PathBuf, Vec<u8>>,
    state: Mutex<State>,
}

impl SimulatedDisk {
    /// Attaches to the log directory `dir`, recording its segment files as durable
    /// (they are what an earlier power loss or a clean close left). `dir` may not
    /// exist yet.
    pub fn attach(dir: &Path) -> io::Result<SimulatedDisk> {
        let mut baseline = BTreeMap::new();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let path = entry?.path();
                    if is_segment(&path) {
                        baseline.insert(path.clone(), fs::read(&path)?);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(SimulatedDisk { dir: dir.to_path_buf(), baseline, state: Mutex::new(State::default()) })
    }

    /// Fails the `nth` call (1-based, counted since attach) of `op` with `fault`.
    pub fn fail_nth(&self, op: StorageOp, nth: u64, fault: Fault) {
        self.state.lock().rules.push(Rule { op, nth, sticky: false, fault: Some(fault) });
    }

    /// Fails the `nth` call of `op` and every later one, until [`SimulatedDisk::heal`]
    /// (a disk that stays full until space is freed).
    pub fn fail_from(&self, op: StorageOp, nth: u64, fault: Fault) {
        self.state.lock().rules.push(Rule { op, nth, sticky: true, fault: Some(fault) });
    }

    /// The power fails as the `nth` call of `op` starts: as [`SimulatedDisk::crash`]
    /// at that moment, a crash at a chosen point of a run.
    pub fn crash_at(&self, op: StorageOp, nth: u64) {
        self.state.lock().rules.push(Rule { op, nth, sticky: false, fault: None });
    }

    /// True once the power failed.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Removes every fault rule (space was freed, the device came back).
    pub fn heal(&self) {
        self.state.lock().rules.clear();
    }

    /// The machine stops: every later call fails with EIO and nothing more becomes
    /// durable; a call under way fails too, even if the operating system completed it
    /// (its caller never learns of the success). Drop the log after this, then call
    /// [`SimulatedDisk::power_loss`].
    pub fn crash(&self) {
        self.state.lock().crashed = true;
    }

    /// Calls of `op` before the crash, failed ones included.
    pub fn calls(&self, op: StorageOp) -> u64 {
        self.state.lock().calls.get(&op).copied().unwrap_or(0)
    }

    /// Faults injected so far (not counting calls refused after [`SimulatedDisk::crash`]).
    pub fn faults_injected(&self) -> u64 {
        self.state.lock().faults_injected
    }

    /// Rewrites the directory as a power cut at this moment would leave it (see the
    /// module documentation). Call it only once the log using this disk was dropped.
    pub fn power_loss(&self, mode: PowerLoss) -> io::Result<PowerLossReport> {
        let state = self.state.lock();
        let mut coin = Coin(match mode {
            PowerLoss::Clean => 0,
            PowerLoss::Torn { seed } => seed,
        });
        let mut flip = || matches!(mode, PowerLoss::Torn { .. }) && coin.flip();
        let mut report = PowerLossReport::default();
        for name in &state.unsynced_names {
            if name.exists() && !flip() {
                fs::remove_file(name)?;
                report.names_lost += 1;
            }
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if is_segment(&path) {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let now = fs::read(&path)?;
            let base = match self.baseline.get(&path) {
                Some(base) if base.len() == now.len() => base.clone(),
                _ => {
                    let mut base = vec![0u8; now.len()];
                    let header = SEGMENT_HEADER_BYTES.min(now.len());
                    base[..header].copy_from_slice(&now[..header]);
                    base
                }
            };
            let mut durable = vec![false; now.len()];
            for r in state.synced.get(&path).map(Vec::as_slice).unwrap_or(&[]) {
                let from = usize::try_from(r.start).unwrap_or(usize::MAX).min(now.len());
                let to = usize::try_from(r.end).unwrap_or(usize::MAX).min(now.len());
                durable[from..to].fill(true);
            }
            let mut out = now.clone();
            let mut changed = false;
            for start in (0..now.len()).step_by(TORN_SECTOR_BYTES) {
                let end = (start + TORN_SECTOR_BYTES).min(now.len());
                let lost: Vec<usize> = (start..end).filter(|&i| !durable[i] && now[i] != base[i]).collect();
                if lost.is_empty() {
                    continue;
                }
                if flip() {
                    report.sectors_kept += 1;
                    continue;
                }
                for i in lost {
                    out[i] = base[i];
                }
                report.sectors_lost += 1;
                changed = true;
            }
            if changed {
                fs::write(&path, &out)?;
                report.files_rewritten += 1;
            }
        }
        Ok(report)
    }
}

impl std::fmt::Debug for SimulatedDisk {
    /// A summary: the baseline holds whole files, too long to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimulatedDisk")
            .field("dir", &self.dir)
            .field("baseline_files", &self.baseline.len())
            .field("rules", &state.rules)
            .field("calls", &state.calls)
            .field("faults_injected", &state.faults_injected)
            .field("crashed", &state.crashed)
            .finish_non_exhaustive()
    }
}

impl FaultInjector for SimulatedDisk {
    fn before(&self, op: StorageOp, _path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.crashed {
            return Err(Fault::Eio.error());
        }
        let n = {
            let calls = state.calls.entry(op).or_insert(0);
            *calls += 1;
            *calls
        };
        let hit = state.rules.iter().find(|r| r.op == op && (r.nth == n || (r.sticky && n > r.nth))).map(|r| r.fault);
        match hit {
            Some(Some(fault)) => {
                state.faults_injected += 1;
                Err(fault.error())
            }
            Some(None) => {
                state.crashed = true;
                Err(Fault::Eio.error())
            }
            None => Ok(()),
        }
    }

    fn after(&self, op: StorageOp, path: &Path, range: Range<u64>) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.crashed {
            return Err(Fault::Eio.error());
        }
        match op {
            StorageOp::SyncRange => state.synced.entry(path.to_path_buf()).or_default().push(range),
            StorageOp::Rename => {
                state.unsynced_names.insert(path.to_path_buf());
            }
            StorageOp::SyncDir => state.unsynced_names.retain(|name| name.parent() != Some(path)),
            StorageOp::RemoveFile => {
                state.unsynced_names.remove(path);
                state.synced.remove(path);
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_segment(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| parse_segment_file_name(n).is_some())
}

/// splitmix64 coin flips: deterministic for a seed, no dependency.
#[derive(Debug)]
struct Coin(u64);

impl Coin {
    fn flip(&mut self) -> bool {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 1 == 1
    }
}
