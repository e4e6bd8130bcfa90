//! A simulation of the replicated ledger (issue 19) with turmoil, over many seeds.
//!
//! Each seed runs three hosts (five for one seed in four), each a real replicated
//! ledger node: `Ledger` in its
//! replicated mode, the Raft log over `ledger-store` (`RaftLog`), the ledger's state
//! machine with its snapshots (`LedgerMachine`, a snapshot every few entries and the
//! Raft log purged behind it), `RaftProposer` and `follow_leadership`, and the HTTP
//! transport of `network.rs`, whose connections are turmoil's simulated TCP
//! (`NetworkOver(SimConnect)`, the routes served by `axum::serve` on a turmoil
//! listener). Raft's timers run on turmoil's simulated clock.
//!
//! Client tasks (turmoil clients) submit sales, authorizations, captures, voids and refunds
//! with ids they choose, one to three per call, to the node they believe leads (they
//! learn it from the node they asked); "not the leader", "outcome unknown", a closed
//! ledger or no answer within a while make them retry the same call, with the same ids,
//! until a node answers it. A seeded fault schedule meanwhile partitions a node (often
//! the leader) from the others and heals, holds a link's messages and releases them
//! (delay), makes links fail at random for a while (loss: turmoil drops the segments,
//! the connection stalls and is replaced), crashes nodes, restarting them on their
//! directories later or at once (the ledger and the Raft log reopen from disk), and
//! wipes a node now and then: it comes back empty on the same host under a new id, and
//! an operator task has the leader add it as a learner (it catches up from a snapshot)
//! and swap it for the old id among the voters.
//!
//! Then everything heals, the clients finish, the cluster settles, and on every node:
//! - Raft: no two nodes ever applied different entries at one index (every node's
//!   applied log id, watched all along: openraft's log ids name the leader, term and
//!   node, that wrote the entry), and every node lists the current ids as voters.
//!   (Not "one leader per term": openraft's default leader ids are (term, node id),
//!   totally ordered, so a term may see several leaders, the last one granted wins.)
//! - every acknowledged transaction is in the ledger exactly once (its id counted in
//!   the ledger's raw records), and every node reports for it what its caller was told
//!   (`TxRecord::as_committed`); an acknowledged refusal is not in the ledger;
//! - every node holds the same records at the same seqs (`Ledger::read_raw`), the same
//!   balances, and its balances equal its transactions (`check_consistency`).
//!
//! Determinism: turmoil's network, its clock and the fault schedule come from the seed,
//! but the ledger runs its sequencer on an OS thread and writes real files (in
//! `/dev/shm` when there is one), the Raft log syncs on tokio's blocking pool, and
//! openraft draws its election timeouts from `rand::thread_rng` (its `AsyncRuntime`'s
//! RNG, not seedable through the `TypeConfig` this crate declares). A seed therefore
//! replays the same faults at the same simulated times, but not necessarily the same
//! interleaving: the trace digest printed for one seed (acknowledged outcomes and the
//! final records) may differ between two runs of it. A failure prints its seed; replay
//! it to look again, knowing it may take a few runs.
//!
//! - `LEDGER_RAFT_SIM_SEED=N` runs seed N alone (a failing run prints this line);
//! - `LEDGER_RAFT_SIM_SEEDS=N` runs N seeds (default 10, about 30 s in debug) from a random first seed,
//!   printed (or from `LEDGER_RAFT_SIM_SEED`). A longer run:
//!   `LEDGER_RAFT_SIM_SEEDS=200 cargo test --release -p ledger-raft --test simulation -- --nocapture`
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)] // test code, small values

#[path = "sim/net.rs"]
mod net;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ledger_core::inspect::{LogRecord, decode_record};
use ledger_core::{Currency, Durability, Ledger, LedgerOptions, Reject, SubmitError, Tx, TxId, TxOutcome};
use ledger_raft::machine::{LedgerMachine, RaftProposer, follow_leadership};
use ledger_raft::network::{NetworkOver, router};
use ledger_raft::{NodeId, RaftLog, TypeConfig};
use net::{SimConnect, SimListener};
use openraft::{BasicNode, LogId, Raft, ServerState};
use parking_lot::Mutex;

/// Nodes of the seed being run: 3, or 5 for one seed in four (set by `Run::new`; the
/// seeds run one after another). `LEDGER_RAFT_SIM_NODES=N` sets it for every seed.
static NODES: AtomicU64 = AtomicU64::new(3);

fn nodes() -> u64 {
    NODES.load(Ordering::Relaxed)
}

fn nodes_for(seed: u64) -> u64 {
    env_u64("LEDGER_RAFT_SIM_NODES").unwrap_or(if seed % 4 == 3 { 5 } else { 3 })
}
const CLIENTS: u64 = 2;
const RAFT_PORT: u16 = 9000;
const SEEDS_DEFAULT: u64 = 10;
/// Calls a client makes at most (each one to three transactions); it stops calling
/// when the fault phase ends.
const CALLS_PER_CLIENT_MAX: usize = 200;
/// Faults happen during this much simulated time; then everything heals.
const FAULT_PHASE: Duration = Duration::from_secs(20);
/// A client gives a call up (its outcome stays unknown) this long into the run.
const CLIENT_DEADLINE: Duration = Duration::from_secs(50);
/// How long a call may go unanswered before the client treats it as unknown.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// After the clients are done: at most this much simulated time to settle.
const SETTLE_MAX: Duration = Duration::from_secs(40);
/// Nodes down at once, at most: a majority stays up to make progress.
fn down_max() -> usize {
    ((nodes() - 1) / 2) as usize
}
/// Accounts the clients' transactions belong to.
const ACCOUNTS: u64 = 3;

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

/// Host `h`'s name (hosts are 1..=nodes()).
fn host(h: u64) -> String {
    format!("n{h}")
}

/// The host node `id` runs on: a wiped host comes back as a new node whose id is
/// `nodes()` more than its last.
fn host_of(id: NodeId) -> u64 {
    (id - 1) % nodes() + 1
}

fn addr_of(id: NodeId) -> BasicNode {
    BasicNode { addr: format!("{}:{RAFT_PORT}", host(host_of(id))) }
}

// ----- a seeded generator (splitmix64) ------------------------------------------------

#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

// ----- what the hosts, the clients and the harness share ------------------------------

/// A running node's handles.
#[derive(Clone)]
struct Live {
    ledger: Ledger,
    raft: Raft<TypeConfig>,
    machine: LedgerMachine,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    calls: u64,
    acked: u64,
    gave_up: u64,
    not_leader: u64,
    unknown: u64,
    timeouts: u64,
    closed: u64,
    rejected: u64,
    /// Refusals "referenced payment not found" of a payment acknowledged before the
    /// attempt was sent (a failure of the seed).
    stale_refusals: u64,
    crashes: u64,
    wipes: u64,
    /// Wiped nodes replaced by new ones (membership changes done).
    replaced: u64,
    restarts: u64,
    partitions: u64,
    holds: u64,
    lossy: u64,
    snapshots_installed: u64,
    terms: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.calls += o.calls;
        self.acked += o.acked;
        self.gave_up += o.gave_up;
        self.not_leader += o.not_leader;
        self.unknown += o.unknown;
        self.timeouts += o.timeouts;
        self.closed += o.closed;
        self.rejected += o.rejected;
        self.stale_refusals += o.stale_refusals;
        self.crashes += o.crashes;
        self.wipes += o.wipes;
        self.replaced += o.replaced;
        self.restarts += o.restarts;
        self.partitions += o.partitions;
        self.holds += o.holds;
        self.lossy += o.lossy;
        self.snapshots_installed += o.snapshots_installed;
        self.terms += o.terms;
    }
}

#[derive(Default)]
struct World {
    /// The running nodes, by host.
    nodes: BTreeMap<u64, Live>,
    /// Per host, the node id it runs (a wiped host comes back under a new one).
    ids: BTreeMap<u64, NodeId>,
    /// Per term, the nodes whose metrics said they led it.
    leaders: BTreeMap<u64, BTreeSet<NodeId>>,
    /// Per log index, the log id some node's metrics said it had applied there.
    applied: BTreeMap<u64, LogId<NodeId>>,
    /// Nodes that applied different entries at one index.
    divergent: Vec<String>,
    /// Every transaction a caller was answered for, as answered.
    acked: BTreeMap<u128, TxOutcome>,
    /// Every id a client submitted.
    submitted: BTreeSet<u128>,
    stats: Stats,
    /// Snapshots installed by node incarnations that have since crashed.
    installed_before: u64,
}

type Shared = Arc<Mutex<World>>;

// ----- a node -------------------------------------------------------------------------

/// Snapshots every 20 entries and the Raft log purged right behind them, so restarted
/// and lagging nodes catch up from snapshots too; quick elections (simulated time).
fn config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            cluster_name: "sim".into(),
            heartbeat_interval: 100,
            election_timeout_min: 500,
            election_timeout_max: 1_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            snapshot_max_chunk_size: 32 << 10,
            ..openraft::Config::default()
        }
        .validate()
        .unwrap(),
    )
}

fn members() -> BTreeMap<NodeId, BasicNode> {
    (1..=nodes()).map(|id| (id, addr_of(id))).collect()
}

/// Opens the ledger in `dir`; a crashed incarnation's handle may still be letting go
/// of the directory for a moment.
fn open_ledger(dir: &Path) -> Result<Ledger, String> {
    let options = LedgerOptions {
        durability: Durability::SyncData,
        segment_bytes: 64 << 10,
        replicated: true,
        snapshot_every_records: 50,
        ..LedgerOptions::default()
    };
    let mut tries = 0;
    loop {
        match Ledger::open(dir, options) {
            Ok(ledger) => return Ok(ledger),
            Err(_) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("opening the ledger in {}: {e}", dir.display())),
        }
    }
}

/// One node's software: opens its directories, runs Raft and serves its peers until
/// the host crashes; records which terms it led.
async fn run_node(h: u64, dir: PathBuf, world: Shared, initialize: Arc<AtomicBool>) -> turmoil::Result {
    let id = world.lock().ids.get(&h).copied().unwrap_or(h);
    let ledger = open_ledger(&dir.join("ledger"))?;
    let log = RaftLog::open(dir.join("raft"), 4 << 20)?;
    let machine = LedgerMachine::open(ledger.clone(), dir.join("snapshots"))?;
    let raft = Raft::new(id, config(), NetworkOver(SimConnect), log, machine.clone()).await?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?;
    let app = router(raft.clone());
    tokio::spawn(async move {
        let _ = axum::serve(SimListener(listener), app).await;
    });
    let proposer = RaftProposer::new(raft.clone(), tokio::runtime::Handle::current());
    tokio::spawn(follow_leadership(raft.clone(), ledger.clone(), proposer));
    world.lock().nodes.insert(h, Live { ledger, raft: raft.clone(), machine });
    if initialize.swap(false, Ordering::SeqCst) {
        raft.initialize(members()).await?;
    }
    let mut metrics = raft.metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            let mut world = world.lock();
            if m.state == ServerState::Leader {
                world.leaders.entry(m.current_term).or_default().insert(id);
            }
            if let Some(applied) = m.last_applied {
                match world.applied.get(&applied.index) {
                    Some(seen) if *seen != applied => {
                        let what = format!("node {id} applied {applied} at index {}, another {seen}", applied.index);
                        world.divergent.push(what);
                    }
                    Some(_) => {}
                    None => {
                        world.applied.insert(applied.index, applied);
                    }
                }
            }
        }
        if metrics.changed().await.is_err() {
            return Ok(());
        }
    }
}

// ----- clients ------------------------------------------------------------------------

/// The transactions of one call.
fn call_txs(rng: &mut Rng, client: u64, call: usize, payments: &mut Vec<(TxId, u64, i64, bool)>) -> Vec<Tx> {
    let count = 1 + rng.below(3) as usize;
    let mut txs = Vec::new();
    for k in 0..count {
        let id = TxId((u128::from(client) << 40) | ((call as u128) << 8) | (k as u128 + 1));
        let account = 1 + rng.below(ACCOUNTS);
        let amount = 100 + rng.below(10_000) as i64;
        let tx = match rng.below(10) {
            0..=3 => {
                payments.push((id, account, amount, true));
                Tx::sale(id, account, amount, usd())
            }
            4..=5 => {
                payments.push((id, account, amount, false));
                Tx::authorization(id, account, amount, usd())
            }
            // Captures of authorizations and refunds of sales, mostly; now and then
            // of the other kind (refused: the wrong state).
            6..=7 => {
                let sales = rng_kind(rng, false);
                match pick(rng, payments, sales) {
                    Some((auth, account, authorized)) => Tx::capture(id, auth, account, 1 + authorized / 2, usd()),
                    None => Tx::sale(id, account, amount, usd()),
                }
            }
            // Voids of authorizations (one captured since is refused).
            8 if rng.chance(50) => {
                let sales = rng_kind(rng, false);
                match pick(rng, payments, sales) {
                    Some((auth, account, _)) => Tx::void(id, auth, account, usd()),
                    None => Tx::sale(id, account, amount, usd()),
                }
            }
            _ => {
                let sales = rng_kind(rng, true);
                match pick(rng, payments, sales) {
                    Some((sale, account, paid)) => Tx::refund(id, sale, account, 1 + paid / 4, usd()),
                    None => Tx::sale(id, account, amount, usd()),
                }
            }
        };
        txs.push(tx);
    }
    txs
}

/// Mostly `sales`; one time in ten the other kind.
fn rng_kind(rng: &mut Rng, sales: bool) -> bool {
    if rng.chance(10) { !sales } else { sales }
}

/// One of the client's payments of the kind asked (sales, or authorizations).
fn pick(rng: &mut Rng, payments: &[(TxId, u64, i64, bool)], sales: bool) -> Option<(TxId, u64, i64)> {
    let of_kind: Vec<_> = payments.iter().filter(|p| p.3 == sales).collect();
    if of_kind.is_empty() {
        return None;
    }
    let p = of_kind[rng.below(of_kind.len() as u64) as usize];
    Some((p.0, p.1, p.2))
}

/// What a client makes of an answer.
enum Next {
    Done,
    Ask(NodeId),
    Again,
}

/// A client: calls until the fault phase ends, each retried with the same ids until a
/// node answers it.
async fn run_client(client: u64, seed: u64, world: Shared) -> turmoil::Result {
    let mut rng = Rng(seed ^ (client.wrapping_mul(0x2545_f491_4f6c_dd1d)));
    let mut payments = Vec::new();
    let mut target = 1 + rng.below(nodes());
    let started = tokio::time::Instant::now();
    for call in 0..CALLS_PER_CLIENT_MAX {
        if started.elapsed() > FAULT_PHASE {
            break;
        }
        let txs = call_txs(&mut rng, client, call, &mut payments);
        // Now and then a call starts on any node, not the one that answered last: a
        // refund of a payment the new leader acknowledged, sent to a deposed leader
        // still cut off from the majority, must not be refused from its stale state.
        if rng.chance(20) {
            target = 1 + rng.below(nodes());
        }
        {
            let mut world = world.lock();
            world.submitted.extend(txs.iter().map(|t| t.id.0));
            world.stats.calls += 1;
        }
        loop {
            if started.elapsed() > CLIENT_DEADLINE {
                world.lock().stats.gave_up += 1;
                break;
            }
            let live = world.lock().nodes.get(&target).cloned();
            let Some(live) = live else {
                // That node is down: ask another.
                target = 1 + rng.below(nodes());
                tokio::time::sleep(rng.millis(10, 100)).await;
                continue;
            };
            // Which payments this attempt refers to were acknowledged before it was sent:
            // refusing one of them "not found" would be an answer from a stale state.
            let acked_before: Vec<bool> = {
                let world = world.lock();
                txs.iter().map(|t| world.acked.get(&t.ref_id.0).is_some_and(|o| o.record().is_some())).collect()
            };
            let answer = tokio::time::timeout(CALL_TIMEOUT, live.ledger.submit_async(txs.clone())).await;
            let next = answered(&world, &txs, &acked_before, answer, &live);
            match next {
                Next::Done => break,
                Next::Ask(0) => target = 1 + rng.below(nodes()),
                Next::Ask(node) => target = host_of(node),
                Next::Again => {}
            }
            tokio::time::sleep(rng.millis(5, 60)).await;
        }
        tokio::time::sleep(rng.millis(20, 400)).await;
    }
    Ok(())
}

/// Records an answer; says whether the call is done, or whom to ask next (0: any).
fn answered(
    world: &Shared,
    txs: &[Tx],
    acked_before: &[bool],
    answer: Result<Result<Vec<TxOutcome>, SubmitError>, tokio::time::error::Elapsed>,
    live: &Live,
) -> Next {
    let mut world = world.lock();
    match answer {
        Ok(Ok(outcomes)) => {
            world.stats.acked += 1;
            for ((tx, outcome), ref_acked) in txs.iter().zip(outcomes).zip(acked_before) {
                if let TxOutcome::Rejected(reason) = outcome {
                    world.stats.rejected += 1;
                    // The payment it refers to was acknowledged before this attempt was
                    // sent: a refusal judged on a state that had not seen it.
                    if reason == Reject::RefNotFound && *ref_acked {
                        world.stats.stale_refusals += 1;
                    }
                }
                world.acked.insert(tx.id.0, outcome);
            }
            Next::Done
        }
        Ok(Err(SubmitError::NotLeader)) => {
            world.stats.not_leader += 1;
            let me = live.raft.metrics().borrow().id;
            let leader = live.raft.metrics().borrow().current_leader;
            Next::Ask(leader.filter(|&l| l != me).unwrap_or(0))
        }
        Ok(Err(SubmitError::Failed(_))) => {
            world.stats.unknown += 1;
            Next::Again
        }
        Ok(Err(_)) => {
            world.stats.closed += 1;
            Next::Ask(0)
        }
        Err(_) => {
            world.stats.timeouts += 1;
            Next::Ask(0)
        }
    }
}

// ----- replacing a wiped node --------------------------------------------------------

/// How long a replacement keeps trying before it gives up (the run then fails to settle).
const REPLACE_DEADLINE: Duration = Duration::from_secs(60);
/// How long one membership call may take before it is tried again.
const MEMBERSHIP_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader's Raft, if a running node leads.
fn leading(world: &Shared) -> Option<Raft<TypeConfig>> {
    let world = world.lock();
    world.nodes.values().find(|n| n.raft.metrics().borrow().state == ServerState::Leader).map(|n| n.raft.clone())
}

/// An operator's replacement of node `old` (its disk wiped) by node `new` on the same
/// host: `new` joins as a learner (catching up from a snapshot), then takes `old`'s
/// place among the voters. A wiped node never comes back under its old id: it forgot
/// its vote and its log, which Raft needs durable.
async fn replace(world: Shared, old: NodeId, new: NodeId, busy: Arc<AtomicBool>) -> turmoil::Result {
    let started = tokio::time::Instant::now();
    while started.elapsed() < REPLACE_DEADLINE {
        if let Some(raft) = leading(&world) {
            let added = tokio::time::timeout(MEMBERSHIP_CALL_TIMEOUT, raft.add_learner(new, addr_of(new), true)).await;
            if matches!(added, Ok(Ok(_))) {
                let mut voters: BTreeSet<NodeId> =
                    raft.metrics().borrow().membership_config.membership().voter_ids().collect();
                voters.remove(&old);
                voters.insert(new);
                let changed =
                    tokio::time::timeout(MEMBERSHIP_CALL_TIMEOUT, raft.change_membership(voters, false)).await;
                if matches!(changed, Ok(Ok(_))) {
                    world.lock().stats.replaced += 1;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    busy.store(false, Ordering::SeqCst);
    Ok(())
}

// ----- the harness --------------------------------------------------------------------

struct Run {
    sim: turmoil::Sim<'static>,
    world: Shared,
    rng: Rng,
    down: BTreeSet<NodeId>,
    /// Links made to fail at random, and until when.
    lossy_until: Option<Duration>,
    held: Vec<(NodeId, NodeId, Duration)>,
    /// A node is cut off by an explicit partition.
    partitioned: bool,
    /// Each host's directory.
    dirs: BTreeMap<u64, PathBuf>,
    /// A replacement of a wiped node is under way.
    replacing: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
    /// The faults, at their simulated times (printed when a seed fails).
    events: Vec<String>,
}

fn temp_root() -> tempfile::TempDir {
    // tmpfs when there is one: the same files and syncs, without the disk's latency.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

impl Run {
    fn new(seed: u64) -> Run {
        NODES.store(nodes_for(seed), Ordering::Relaxed);
        let dir = temp_root();
        let world: Shared = Arc::new(Mutex::new(World::default()));
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(600))
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(15))
            .build();
        let initialize = Arc::new(AtomicBool::new(true));
        let mut dirs = BTreeMap::new();
        for id in 1..=nodes() {
            let node_dir = dir.path().join(host(id));
            dirs.insert(id, node_dir.clone());
            let world = Arc::clone(&world);
            let init = if id == 1 { Arc::clone(&initialize) } else { Arc::new(AtomicBool::new(false)) };
            sim.host(host(id), move || run_node(id, node_dir.clone(), Arc::clone(&world), Arc::clone(&init)));
        }
        for c in 1..=CLIENTS {
            sim.client(format!("client{c}"), run_client(c, seed, Arc::clone(&world)));
        }
        Run {
            sim,
            world,
            rng: Rng(seed ^ 0x5eed_fa17),
            down: BTreeSet::new(),
            lossy_until: None,
            held: Vec::new(),
            partitioned: false,
            dirs,
            replacing: Arc::new(AtomicBool::new(false)),
            _dir: dir,
            events: Vec::new(),
        }
    }

    fn event(&mut self, what: String) {
        let terms: Vec<String> = {
            let world = self.world.lock();
            world
                .nodes
                .values()
                .map(|n| {
                    let m = n.raft.metrics().borrow().clone();
                    format!("{}:{:?}@{}", m.id, m.state, m.current_term)
                })
                .collect()
        };
        self.events.push(format!("{:>8.3?} {what} [{}]", self.sim.elapsed(), terms.join(" ")));
    }

    fn step(&mut self) -> Result<bool, String> {
        self.sim.step().map_err(|e| format!("the simulation stopped: {e}"))
    }

    fn leader(&self) -> Option<NodeId> {
        let world = self.world.lock();
        world.nodes.values().find_map(|n| {
            let m = n.raft.metrics().borrow().clone();
            (m.state == ServerState::Leader).then_some(m.id)
        })
    }

    /// Crashes host `id`: its software stops where it is; the ledger handle it left
    /// behind is closed (its sequencer thread is not part of the simulated host).
    fn crash(&mut self, id: NodeId) {
        self.sim.crash(host(id));
        let live = self.world.lock().nodes.remove(&id);
        if let Some(live) = live {
            let _ = live.ledger.close();
            self.world.lock().installed_before += live.machine.installed_snapshots().0;
        }
        self.down.insert(id);
        self.world.lock().stats.crashes += 1;
        self.event(format!("crash {id}"));
    }

    fn restart(&mut self, id: NodeId) {
        self.sim.bounce(host(id));
        self.down.remove(&id);
        self.world.lock().stats.restarts += 1;
        self.event(format!("restart {id}"));
    }

    fn isolate(&mut self, id: NodeId) {
        for other in (1..=nodes()).filter(|&o| o != id) {
            self.sim.partition(host(id), host(other));
        }
        self.partitioned = true;
        self.world.lock().stats.partitions += 1;
        self.event(format!("isolate {id}"));
    }

    fn heal_links(&mut self) {
        for a in 1..=nodes() {
            for b in (a + 1)..=nodes() {
                self.sim.repair(host(a), host(b));
            }
        }
        for (a, b, _) in std::mem::take(&mut self.held) {
            self.sim.release(host(a), host(b));
        }
        self.sim.set_fail_rate(0.0);
        self.lossy_until = None;
        self.partitioned = false;
        self.event("heal links".into());
    }

    /// One fault, drawn from the seed.
    fn fault(&mut self) {
        let r = &mut self.rng;
        let pick = 1 + r.below(nodes());
        match r.below(100) {
            // Isolate the leader (or a node), so another is elected and the old one's
            // proposals fail.
            0..=19 => {
                let id = if self.rng.chance(70) { self.leader().map_or(pick, host_of) } else { pick };
                self.isolate(id);
            }
            20..=29 => self.heal_links(),
            30..=44 if self.down.len() < down_max() => {
                let id = if self.rng.chance(50) { self.leader().map_or(pick, host_of) } else { pick };
                // Sometimes back at once: a kill and a restart.
                let again = self.rng.chance(40);
                if !self.down.contains(&id) {
                    self.crash(id);
                    if again {
                        self.restart(id);
                    }
                }
            }
            45..=64 => {
                if let Some(&id) = self.down.iter().next() {
                    self.restart(id);
                }
            }
            65..=79 => {
                let b = 1 + (pick % nodes());
                let until = self.sim.elapsed() + self.rng.millis(100, 2_000);
                self.sim.hold(host(pick), host(b));
                self.held.push((pick, b, until));
                self.world.lock().stats.holds += 1;
                self.event(format!("hold {pick}-{b} until {until:?}"));
            }
            80..=89 if self.lossy_until.is_none() => {
                self.sim.set_fail_rate(0.02);
                self.lossy_until = Some(self.sim.elapsed() + self.rng.millis(200, 2_000));
                self.world.lock().stats.lossy += 1;
                self.event("lossy links".into());
            }
            // A node loses its disk: it comes back empty under a new id, and the
            // leader puts it in the old one's place.
            90..=99 if self.down.is_empty() && !self.replacing.swap(true, Ordering::SeqCst) => {
                let h = pick;
                let old = self.world.lock().ids.get(&h).copied().unwrap_or(h);
                let new = old + nodes();
                self.crash(h);
                std::fs::remove_dir_all(&self.dirs[&h]).unwrap();
                self.world.lock().ids.insert(h, new);
                self.world.lock().stats.wipes += 1;
                self.event(format!("wipe {h}: node {old} replaced by node {new}"));
                self.restart(h);
                let (world, busy) = (Arc::clone(&self.world), Arc::clone(&self.replacing));
                self.sim.client(format!("operator{new}"), replace(world, old, new, busy));
            }
            _ => {}
        }
    }

    /// Ends holds and lossy spells whose time is up.
    fn expire(&mut self) {
        let now = self.sim.elapsed();
        let (done, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(|h| h.2 <= now);
        self.held = kept;
        for (a, b, _) in done {
            self.sim.release(host(a), host(b));
        }
        if self.lossy_until.is_some_and(|t| t <= now) {
            self.sim.set_fail_rate(0.0);
            self.lossy_until = None;
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let mut next_fault = self.rng.millis(1_000, 2_000);
        let mut clients_done = false;
        let trace = std::env::var("LEDGER_RAFT_SIM_TRACE").is_ok();
        let mut next_probe = Duration::ZERO;
        while self.sim.elapsed() < FAULT_PHASE {
            if trace && self.sim.elapsed() >= next_probe {
                next_probe += Duration::from_millis(250);
                self.event("probe".into());
            }
            if self.sim.elapsed() >= next_fault {
                self.fault();
                next_fault = self.sim.elapsed() + self.rng.millis(300, 2_000);
            }
            self.expire();
            clients_done = self.step()?;
        }
        // Heal: links, and every node back.
        self.heal_links();
        for id in std::mem::take(&mut self.down) {
            self.sim.bounce(host(id));
            self.world.lock().stats.restarts += 1;
        }
        while !clients_done {
            clients_done = self.step()?;
        }
        let settle_from = self.sim.elapsed();
        while !self.settled() {
            if self.sim.elapsed() - settle_from > SETTLE_MAX {
                return Err(format!("the cluster did not settle: {}", self.describe()));
            }
            self.step()?;
        }
        Ok(())
    }

    /// Every node up, one leader that all follow, and every node applied what it
    /// committed with the same ledger seq.
    fn settled(&self) -> bool {
        let world = self.world.lock();
        if world.nodes.len() as u64 != nodes() {
            return false;
        }
        if self.replacing.load(Ordering::SeqCst) {
            return false;
        }
        let metrics: Vec<_> = world.nodes.values().map(|n| n.raft.metrics().borrow().clone()).collect();
        let ids: BTreeSet<NodeId> = (1..=nodes()).map(|h| world.ids.get(&h).copied().unwrap_or(h)).collect();
        if metrics.iter().any(|m| m.membership_config.membership().voter_ids().collect::<BTreeSet<_>>() != ids) {
            return false;
        }
        let leader = metrics[0].current_leader;
        let last = metrics[0].last_log_index;
        leader.is_some()
            && metrics.iter().all(|m| {
                m.current_leader == leader && m.last_log_index == last && m.last_applied.map(|l| l.index) == last
            })
            && {
                let seqs: BTreeSet<u64> = world.nodes.values().map(|n| n.ledger.last_seq()).collect();
                seqs.len() == 1
            }
    }

    fn describe(&self) -> String {
        let world = self.world.lock();
        let mut out = String::new();
        for (id, n) in &world.nodes {
            let m = n.raft.metrics().borrow().clone();
            out += &format!(
                "\n  node {id}: {:?} term {} leader {:?} log {:?} applied {:?} ledger seq {}",
                m.state,
                m.current_term,
                m.current_leader,
                m.last_log_index,
                m.last_applied.map(|l| l.index),
                n.ledger.last_seq()
            );
        }
        out
    }

    /// The checks, on every node. Returns the trace digest.
    fn check(&mut self) -> Result<u64, String> {
        let world = self.world.lock();
        if let Some(first) = world.divergent.first() {
            return Err(format!("state machine safety: {first} ({} such)", world.divergent.len()));
        }
        let mut nodes = world.nodes.iter();
        let (first_id, first) = nodes.next().ok_or("no node")?;
        let raw = first.ledger.read_raw(1, usize::MAX).map_err(|e| e.to_string())?;
        for (id, node) in nodes {
            let other = node.ledger.read_raw(1, usize::MAX).map_err(|e| e.to_string())?;
            if other != raw {
                let at = raw.iter().zip(&other).position(|(a, b)| a != b);
                return Err(format!(
                    "node {id} holds other records than node {first_id}: {} vs {} records, first difference at {at:?}",
                    other.len(),
                    raw.len()
                ));
            }
            for account in 1..=ACCOUNTS {
                if node.ledger.balances(account) != first.ledger.balances(account) {
                    return Err(format!("node {id}'s balances of account {account} differ from node {first_id}'s"));
                }
            }
        }
        // Each id's records in the log.
        let mut counts: BTreeMap<u128, u64> = BTreeMap::new();
        for r in &raw {
            match decode_record(r.seq, r.kind, &r.payload) {
                Ok(LogRecord::Tx { tx, .. }) => *counts.entry(tx.id.0).or_default() += 1,
                Ok(LogRecord::BatchClose { .. }) => {}
                Err(e) => return Err(format!("record {} does not decode: {e:?}", r.seq)),
            }
        }
        for (id, n) in &counts {
            if *n != 1 {
                return Err(format!("transaction {id:#x} is in the ledger {n} times"));
            }
            if !world.submitted.contains(id) {
                return Err(format!("transaction {id:#x} is in the ledger but no client submitted it"));
            }
        }
        if world.stats.stale_refusals > 0 {
            return Err(format!(
                "{} refusals \"referenced payment not found\" of payments acknowledged before the call was sent",
                world.stats.stale_refusals
            ));
        }
        for (node_id, node) in &world.nodes {
            node.ledger.check_consistency().map_err(|e| format!("node {node_id}: {e}"))?;
            if node.ledger.transaction_count() != counts.len() {
                return Err(format!(
                    "node {node_id} counts {} transactions, its log holds {}",
                    node.ledger.transaction_count(),
                    counts.len()
                ));
            }
            for (id, outcome) in &world.acked {
                let now = node.ledger.lookup(TxId(*id));
                match (outcome.record(), now) {
                    (Some(acked), Some(now)) if acked.as_committed() == now.as_committed() => {}
                    (None, None) => {}
                    (acked, now) => {
                        return Err(format!(
                            "node {node_id}: transaction {id:#x} was answered {outcome:?}, the node now holds \
                             {now:?} (acknowledged record {acked:?})"
                        ));
                    }
                }
            }
        }
        for id in world.acked.keys() {
            if world.acked[id].record().is_some() && !counts.contains_key(id) {
                return Err(format!("acknowledged transaction {id:#x} is missing"));
            }
        }
        // The digest of what was checked: every answer, and the records.
        let mut hasher = blake3::Hasher::new();
        for (id, outcome) in &world.acked {
            hasher.update(&id.to_le_bytes());
            hasher.update(format!("{:?}", outcome.record().map(|r| r.as_committed())).as_bytes());
        }
        for r in &raw {
            hasher.update(&r.seq.to_le_bytes());
            hasher.update(&r.kind.to_le_bytes());
            // Timestamps are the wall clock's: leave them out of the digest.
            if let Ok(LogRecord::Tx { tx, .. }) = decode_record(r.seq, r.kind, &r.payload) {
                hasher.update(format!("{tx:?}").as_bytes());
            }
        }
        let digest = hasher.finalize();
        Ok(u64::from_le_bytes(digest.as_bytes()[..8].try_into().unwrap()))
    }

    fn finish(&mut self) -> Stats {
        let mut world = self.world.lock();
        let mut stats = world.stats.clone();
        stats.terms = world.leaders.len() as u64;
        stats.snapshots_installed = world.installed_before;
        for (_, live) in std::mem::take(&mut world.nodes) {
            stats.snapshots_installed += live.machine.installed_snapshots().0;
            let _ = live.ledger.close();
        }
        stats
    }
}

/// Runs one seed; on failure, panics with the seed and the replay command.
fn run_seed(seed: u64) -> (u64, Stats) {
    let mut run = Run::new(seed);
    let result = catch_unwind(AssertUnwindSafe(|| {
        run.run()?;
        run.check()
    }));
    let stats = run.finish();
    let events = std::mem::take(&mut run.events);
    if std::env::var("LEDGER_RAFT_SIM_TRACE").is_ok() {
        println!("seed {seed} faults:\n  {}", events.join("\n  "));
    }
    let message = match result {
        Ok(Ok(digest)) => return (digest, stats),
        Ok(Err(message)) => message,
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "panic".into()),
    };
    panic!(
        "replication simulation failed at seed {seed}: {message}\n{stats:?}\nreplay: LEDGER_RAFT_SIM_SEED={seed} cargo test \
         -p ledger-raft --test simulation -- --nocapture\nfaults:\n  {}",
        events.join("\n  ")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

#[test]
fn replication_keeps_raft_and_ledger_safety_under_seeded_faults() {
    let first = env_u64("LEDGER_RAFT_SIM_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let one = if std::env::var("LEDGER_RAFT_SIM_SEED").is_ok() { 1 } else { SEEDS_DEFAULT };
    let seeds = env_u64("LEDGER_RAFT_SIM_SEEDS").unwrap_or(one);
    println!("replication simulation: seeds {first}.. ({seeds} of them); replay one with LEDGER_RAFT_SIM_SEED=N");
    let started = Instant::now();
    let mut total = Stats::default();
    for seed in first..first.wrapping_add(seeds) {
        let at = Instant::now();
        let (digest, stats) = run_seed(seed);
        let n = nodes_for(seed);
        println!("seed {seed} ({n} nodes): trace digest {digest:#018x} in {:.1?}: {stats:?}", at.elapsed());
        total.add(&stats);
    }
    println!("replication simulation: {total:?} in {:.1?}", started.elapsed());
    // The runs must reach what they are for, or the test proves little.
    assert!(total.acked > 0, "{total:?}");
    if seeds >= SEEDS_DEFAULT {
        assert!(total.crashes > 0 && total.partitions > 0 && total.terms > seeds, "{total:?}");
    }
}
