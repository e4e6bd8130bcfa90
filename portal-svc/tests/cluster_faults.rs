//! Faults on a real cluster (issue 19): three `portal-svc` processes as one replicated
//! ledger, under a steady load of keyed payments (sales, which go through Raft), with the
//! leader frozen or cut off from the others.
//!
//! - `a_stopped_leader_never_acknowledges_what_it_did_not_commit`: the leader gets
//!   SIGSTOP while clients are talking to it, stays stopped until the two others have
//!   elected a new leader and acknowledged writes (past the election timeout), then gets
//!   SIGCONT; `PORTAL_CLUSTER_STOPS` cycles (default [`STOPS_DEFAULT`]). Probe threads
//!   keep sending payments to that node only, so requests are in flight on it when it
//!   stops and stuck on it while it is stopped.
//!
//! In both, probes start just before the fault while the writers hold back for that
//! instant, so what is in flight on the faulted node then is the probes' (two of four
//! wait for every answer, however long; the others give up after 1 s and send the
//! next): a planted "201 for an unknown outcome", or a 201 before the group committed,
//! fails both tests.
//! - `partitions_never_acknowledge_on_the_minority_side`: nftables cuts one node off
//!   from the two others (not from the clients): first the leader (a minority leader
//!   that still believes it leads), then a follower; healed by deleting the rules;
//!   `PORTAL_CLUSTER_PARTITIONS` cycles of both (default [`PARTITIONS_DEFAULT`]). Writes
//!   sent to a cut-off node must never get a 2xx while it is cut off, and the majority
//!   must go on acknowledging writes. A cut-off follower must answer quickly, though
//!   never wrongly: every write sent to it from just before the cut until healed is
//!   answered (client timeouts aside) within [`cut_off_answer_max`] (the longest
//!   silence the follower allows its leader, a heartbeat interval to notice, slack),
//!   not after the forwarding's connect (2 s) or answer (30 s) timeout nor held until
//!   the healing, and some with `no_leader`. Needs root, `ip` (iproute2) and `nft`
//!   (nftables), which `scripts/install-test-deps.sh` installs: without them the test
//!   fails when `CI` is set and is skipped (with a line on stderr) otherwise.
//!
//! The network of the partition test: the test creates network namespaces with unique
//! names, a hub and one per node, each node's joined to the hub by a veth pair
//! (10.77.N.2 on the node's side, 10.77.N.1 on the hub's, the hub routing between
//! them), and removes them at the end, even on failure (a drop guard, which also kills
//! any process left in them). Nodes run with `ip netns exec NODE-NS portal-svc ...` on
//! 10.77.N.2 (public listener on port 8080, replication on 7000); the test's clients
//! run on a thread that entered the hub with `setns` (threads and processes it starts
//! inherit it), so they reach every node, cut off or not, as clients outside the
//! nodes' network would. The rules live in the hub's `forward` chain (table
//! `inet portal_faults`): they drop only traffic between nodes. Not three loopback
//! addresses in one namespace: over `lo` a connection to 127.0.0.3 leaves from
//! 127.0.0.3 itself (the kernel picks a local destination as the source), so no rule
//! can tell which node sent a packet; a namespace per node gives each its own
//! interface and source address, as separate machines have, and nothing touches the
//! host's network.
//!
//! Every payment has a key and an amount of its own (so a transaction found on a node
//! names the request it came from). Every request, its target, when it was sent and
//! answered, and its answer are logged: a 2xx, 503 `no_leader` (nothing changed), or
//! unknown (503 `ledger_unavailable`, no answer, a client timeout). Writers retry a
//! payment with its key on the reachable nodes until it gets a 2xx; a probe sends once.
//! After healing, each payment whose outcome is still unknown is retried with its key
//! until it gets a 2xx (it lands once), and then on every node:
//! - every payment that ever got a 2xx is there exactly once, with the id and amount
//!   answered (all 2xx of one key carry one id);
//! - every payment that got only `no_leader` is absent; nothing else is there;
//! - the balance is the sum of the acknowledged amounts, the same on every node;
//! - all nodes agree on one leader in one term.
//!
//! Bounded for CI: both tests together take about 15 s in debug on two cores. A longer
//! run: `PORTAL_CLUSTER_STOPS=30 PORTAL_CLUSTER_PARTITIONS=10 cargo test -p portal-svc
//! --test cluster_faults -- --nocapture --test-threads 1`; each test prints its cycles,
//! acknowledged payments, the probes' answers, and the time from the fault to a new
//! leader and to the next acknowledged write (p50/p99). `PORTAL_CLUSTER_FAULT_MS`
//! makes each fault last longer (default [`FAULT_MS_MIN`]). `PORTAL_CLUSTER_LOGS=DIR`
//! keeps each node's stderr in DIR (one test at a time: both write `node-N.log`). A
//! run killed outright (SIGKILL) leaves its namespaces behind: `ip netns list` shows
//! them as `pfPID-...`, `ip netns delete NAME` removes them.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Host, WAIT_SECS_MAX, agent, agent_with, get, pay, percentile, seed};
use serde_json::{Value, json};

/// SIGSTOP cycles when `PORTAL_CLUSTER_STOPS` is unset: sized for CI.
const STOPS_DEFAULT: usize = 2;
/// Partition cycles (the leader cut off, then a follower) when
/// `PORTAL_CLUSTER_PARTITIONS` is unset: sized for CI.
const PARTITIONS_DEFAULT: usize = 1;
/// Client threads writing payments through the reachable nodes.
const WRITERS: usize = 3;
/// Threads sending payments to the faulted node only, from just before the fault.
const PROBES: usize = 4;
/// Probes that wait for every answer ([`PROBE_SECS_MAX`]); the others give up after
/// [`ATTEMPT_MS_MAX`] and send the next one, so the node gets new requests all through
/// the fault.
const PATIENT_PROBES: usize = 2;
/// How long the probes run alone before the fault, in milliseconds.
const PROBE_LEAD_MS: u64 = 50;
/// Pause between two of a probe's payments, in milliseconds.
const PROBE_PAUSE_MS: u64 = 5;
/// Load before and after each fault, in milliseconds.
const LOAD_MS: u64 = 300;
/// A writer's timeout for one attempt: past it the outcome is unknown and the payment
/// is retried with its key on another node (so writes go on while a node is frozen).
const ATTEMPT_MS_MAX: u64 = 1000;
/// A patient probe's timeout: above every answer the service gives (its forwarding
/// timeout, 30 s), so a request stuck on a frozen or cut-off node gets that node's
/// answer.
const PROBE_SECS_MAX: u64 = 40;
/// How long a fault lasts at least, in milliseconds: past a leader's lease (the
/// longest election timeout, 1 s) and an election (1.5 to 2 s in all).
/// `PORTAL_CLUSTER_FAULT_MS` sets it (past the leader's proposal timeout, 10 s, a
/// cut-off leader gives up on the group it proposed; a cut-off follower gives up on
/// what it forwarded once its leader was silent for the longest election timeout).
const FAULT_MS_MIN: u64 = 2500;
/// Status polls during a fault (a frozen node must not hold the test up).
const POLL_MS_MAX: u64 = 1000;
/// Slack on [`cut_off_answer_max`] for a debug build on a loaded machine, in
/// milliseconds.
const CUT_OFF_SLACK_MS: u64 = 600;

/// How long a follower cut off from its leader may take to answer a write: the
/// longest silence it allows its leader (the nodes run with the default timing), a
/// heartbeat interval (how often a forwarded request checks it), and
/// [`CUT_OFF_SLACK_MS`]. Below the forwarding's connect timeout (2 s), which bounded
/// it before (and an open connection, the answer timeout: 30 s).
fn cut_off_answer_max() -> Duration {
    let timing = ledger_raft::node::Timing::default();
    timing.leader_silence_max() + Duration::from_millis(timing.heartbeat_ms + CUT_OFF_SLACK_MS)
}

/// What one request got.
#[derive(Debug, Clone)]
enum Answer {
    /// A 2xx: the payment's transaction id and seq.
    Acked { id: String, seq: u64 },
    /// 503 `no_leader`: nothing changed.
    NoLeader,
    /// 503 `ledger_unavailable`, no answer, or a timeout: committed or not.
    Unknown(String),
    /// Anything else (a failure of the test).
    Other(u16, String),
}

/// [`Answer::Unknown`] of a request that got no answer (a timeout, a connection error).
const NO_ANSWER: &str = "no answer";

/// What the requests sent to a faulted node got.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    acked: usize,
    no_leader: usize,
    unknown: usize,
    /// The longest the node took to answer one (client timeouts left out).
    longest: Duration,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.acked += other.acked;
        self.no_leader += other.no_leader;
        self.unknown += other.unknown;
        self.longest = self.longest.max(other.longest);
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} acknowledged, {} no_leader, {} unknown, the slowest answered in {:?}",
            self.acked, self.no_leader, self.unknown, self.longest
        )
    }
}

/// One request: payment `key` sent to node `node`.
#[derive(Debug, Clone)]
struct Attempt {
    key: u64,
    node: u64,
    sent: Instant,
    answered: Instant,
    answer: Answer,
}

/// The clients' side: the API key, the payments' numbering, the nodes they may use,
/// and every request with its answer.
#[derive(Clone)]
struct Load {
    token: String,
    next: Arc<AtomicU64>,
    bases: Arc<RwLock<BTreeMap<u64, String>>>,
    log: Arc<Mutex<Vec<Attempt>>>,
    /// Writers hold back while set ([`Load::hush`]).
    quiet: Arc<AtomicBool>,
    /// Writers' requests in flight.
    busy: Arc<AtomicUsize>,
}

/// Payment `key`'s amount, its own: 1.00 and up, in cents.
fn cents_of(key: u64) -> u64 {
    100 + key
}

fn amount_of(key: u64) -> String {
    let cents = cents_of(key);
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// "12.34" -> 1234.
fn cents(amount: &str) -> u64 {
    let (units, fraction) = amount.split_once('.').unwrap_or((amount, "0"));
    units.parse::<u64>().unwrap() * 100 + format!("{fraction:0<2}").parse::<u64>().unwrap()
}

impl Load {
    fn new(token: &str, bases: &Arc<RwLock<BTreeMap<u64, String>>>) -> Load {
        Load {
            token: token.to_string(),
            next: Arc::default(),
            bases: Arc::clone(bases),
            log: Arc::default(),
            quiet: Arc::default(),
            busy: Arc::default(),
        }
    }

    /// The requests so far (a thread that failed while holding it poisons nothing:
    /// its own panic is the failure to report).
    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Attempt>> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds the writers back and waits until none has a request in flight: at the
    /// fault, the requests in flight on the faulted node are then the probes', whose
    /// clients wait for the answer (a writer would have given up on it).
    fn hush(&self) {
        self.quiet.store(true, Ordering::SeqCst);
        let until = Instant::now() + Duration::from_secs(WAIT_SECS_MAX);
        while self.busy.load(Ordering::SeqCst) > 0 {
            assert!(Instant::now() < until, "the writers did not pause");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Lets the writers go on.
    fn resume(&self) {
        self.quiet.store(false, Ordering::SeqCst);
    }

    /// A new payment's number.
    fn new_key(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// One attempt of payment `key` at node `node` (`base`), logged.
    fn attempt(&self, agent: &ureq::Agent, key: u64, node: u64, base: &str) -> Answer {
        let amount = amount_of(key);
        let sent = Instant::now();
        let answer = match pay(agent, base, &self.token, &format!("k{key}"), &amount) {
            Some((status, body)) if (200..300).contains(&status) => {
                assert_eq!(body["amount"], json!(amount), "payment k{key}: {body}");
                Answer::Acked { id: body["id"].as_str().unwrap().to_string(), seq: body["seq"].as_u64().unwrap() }
            }
            Some((503, body)) if body["error"]["code"] == "no_leader" => Answer::NoLeader,
            Some((503, body)) if body["error"]["code"] == "ledger_unavailable" => Answer::Unknown(body.to_string()),
            Some((status, body)) => Answer::Other(status, body.to_string()),
            None => Answer::Unknown(NO_ANSWER.into()),
        };
        let attempt = Attempt { key, node, sent, answered: Instant::now(), answer: answer.clone() };
        self.log().push(attempt);
        answer
    }

    /// Retries payment `key` with its key on the nodes clients may use, from the
    /// `turn`th on, until it gets a 2xx; a writer (`hushed`) holds back while the load
    /// is hushed.
    fn settle(&self, agent: &ureq::Agent, key: u64, mut turn: usize, hushed: bool) {
        let until = Instant::now() + Duration::from_secs(WAIT_SECS_MAX);
        let mut last = String::new();
        loop {
            turn += 1;
            let target = {
                let bases = self.bases.read().unwrap();
                let live: Vec<(&u64, &String)> = bases.iter().collect();
                (!live.is_empty()).then(|| live[turn % live.len()]).map(|(id, base)| (*id, base.clone()))
            };
            if let Some((node, base)) = target {
                while hushed && self.quiet.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(2));
                }
                self.busy.fetch_add(1, Ordering::SeqCst);
                let answer = self.attempt(agent, key, node, &base);
                self.busy.fetch_sub(1, Ordering::SeqCst);
                match answer {
                    Answer::Acked { .. } => return,
                    Answer::Other(status, body) => panic!("payment k{key} on node {node}: {status} {body}"),
                    Answer::NoLeader => last = "no_leader".into(),
                    Answer::Unknown(why) => last = why,
                }
            }
            assert!(Instant::now() < until, "payment k{key} got no 2xx in {WAIT_SECS_MAX} s (last: {last})");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Writes payments until `stop`, each settled with its key.
    fn writer(&self, thread: usize, stop: &AtomicBool) {
        let agent = agent_with(Duration::from_millis(ATTEMPT_MS_MAX));
        while !stop.load(Ordering::Relaxed) {
            let key = self.new_key();
            self.settle(&agent, key, thread, true);
        }
    }

    /// Sends payments to node `node` only, once each, until `stop`: a client that
    /// keeps talking to the node that is frozen or cut off ([`PATIENT_PROBES`] wait
    /// for every answer).
    fn probe(&self, thread: usize, node: u64, base: &str, stop: &AtomicBool) {
        let timeout = if thread < PATIENT_PROBES {
            Duration::from_secs(PROBE_SECS_MAX)
        } else {
            Duration::from_millis(ATTEMPT_MS_MAX)
        };
        let agent = agent_with(timeout);
        while !stop.load(Ordering::Relaxed) {
            let key = self.new_key();
            self.attempt(&agent, key, node, base);
            std::thread::sleep(Duration::from_millis(PROBE_PAUSE_MS));
        }
    }

    /// When the first payment sent at or after `since` to a node other than `faulted`
    /// was acknowledged.
    fn next_ack(&self, since: Instant, faulted: u64) -> Instant {
        let until = Instant::now() + Duration::from_secs(WAIT_SECS_MAX);
        loop {
            let first = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.sent >= since && a.node != faulted && matches!(a.answer, Answer::Acked { .. }))
                .map(|a| a.answered)
                .min();
            if let Some(at) = first {
                return at;
            }
            assert!(Instant::now() < until, "no write acknowledged after the fault");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Asserts that no request sent to `node` in `[from, to)` got a 2xx before `to`.
    fn none_acked_by(&self, node: u64, from: Instant, to: Instant, what: &str) {
        let acked: Vec<Attempt> = self
            .log()
            .iter()
            .filter(|a| a.node == node && a.sent >= from && a.answered < to)
            .filter(|a| matches!(a.answer, Answer::Acked { .. }))
            .cloned()
            .collect();
        if let Some(a) = acked.first() {
            panic!(
                "{what}: node {node} acknowledged {} payments sent after the fault began, the first k{} {:?} in: {a:?}",
                acked.len(),
                a.key,
                a.answered - from
            );
        }
    }

    /// How long each request sent to `node` in `[from, to)` took to be answered: a
    /// 2xx, `no_leader`, an unknown outcome (client timeouts left out).
    fn answer_times(&self, node: u64, from: Instant, to: Instant) -> [Vec<Duration>; 3] {
        let [mut acked, mut refused, mut unknown] = [Vec::new(), Vec::new(), Vec::new()];
        for a in self.log().iter().filter(|a| a.node == node && a.sent >= from && a.sent < to) {
            let took = a.answered - a.sent;
            match &a.answer {
                Answer::Acked { .. } => acked.push(took),
                Answer::NoLeader => refused.push(took),
                Answer::Unknown(why) if why != NO_ANSWER => unknown.push(took),
                Answer::Unknown(_) | Answer::Other(..) => {}
            }
        }
        [acked, refused, unknown]
    }

    /// What the requests sent to `node` in `[from, to)` got.
    fn tally(&self, node: u64, from: Instant, to: Instant) -> Tally {
        let mut tally = Tally::default();
        for a in self.log().iter().filter(|a| a.node == node && a.sent >= from && a.sent < to) {
            match &a.answer {
                Answer::Acked { .. } => tally.acked += 1,
                Answer::NoLeader => tally.no_leader += 1,
                Answer::Unknown(_) => tally.unknown += 1,
                Answer::Other(..) => {}
            }
            if !matches!(&a.answer, Answer::Unknown(why) if why == NO_ANSWER) {
                tally.longest = tally.longest.max(a.answered - a.sent);
            }
        }
        tally
    }

    /// The cluster healed and the load stopped: retries every payment whose outcome is
    /// unknown with its key until it gets a 2xx, then checks every node against the
    /// log. Returns the number of acknowledged payments.
    fn check(&self, cluster: &Cluster, agent: &ureq::Agent) -> usize {
        let mut by_key: BTreeMap<u64, Vec<Answer>> = BTreeMap::new();
        for a in self.log().iter() {
            if let Answer::Other(status, body) = &a.answer {
                panic!("payment k{} on node {}: {status} {body}", a.key, a.node);
            }
            by_key.entry(a.key).or_default().push(a.answer.clone());
        }
        let unknown: Vec<u64> = by_key
            .iter()
            .filter(|(_, answers)| {
                !answers.iter().any(|a| matches!(a, Answer::Acked { .. }))
                    && answers.iter().any(|a| matches!(a, Answer::Unknown(_)))
            })
            .map(|(key, _)| *key)
            .collect();
        let retry = agent_with(Duration::from_millis(ATTEMPT_MS_MAX));
        for (turn, &key) in unknown.iter().enumerate() {
            self.settle(&retry, key, turn, false);
        }

        // Every key: its 2xx (one id for all), or only no_leader.
        let mut acked: BTreeMap<u64, (String, u64)> = BTreeMap::new();
        let mut refused = Vec::new();
        for a in self.log().iter() {
            if let Answer::Acked { id, seq } = &a.answer {
                let first = acked.entry(a.key).or_insert_with(|| (id.clone(), *seq));
                assert_eq!(&first.0, id, "payment k{} acknowledged under two ids", a.key);
            }
        }
        for (key, answers) in &by_key {
            if !acked.contains_key(key) {
                assert!(answers.iter().all(|a| matches!(a, Answer::NoLeader)), "k{key}: {answers:?}");
                refused.push(*key);
            }
        }
        let last = acked.values().map(|(_, seq)| *seq).max().unwrap_or(0);
        cluster.applied(agent, last);
        let leader = cluster.leader(agent);
        let total: u64 = acked.keys().map(|&k| cents_of(k)).sum();
        let refused_amounts: HashMap<String, u64> = refused.iter().map(|&k| (amount_of(k), k)).collect();
        let mut balances = Vec::new();
        for (&node, service) in &cluster.nodes {
            let seen = cluster.transactions(agent, node, &self.token);
            for (key, (id, _)) in &acked {
                assert_eq!(
                    seen.get(id).map(String::as_str),
                    Some(amount_of(*key).as_str()),
                    "node {node} holds acknowledged payment k{key} ({id})"
                );
            }
            for (id, amount) in &seen {
                if let Some(key) = refused_amounts.get(amount) {
                    panic!("node {node} holds payment k{key} ({id}), which was only answered no_leader");
                }
            }
            assert_eq!(seen.len(), acked.len(), "node {node} holds the acknowledged payments and nothing else");
            let (status, balance) = get(agent, &service.base, "/v1/balance", &self.token).unwrap();
            assert_eq!(status, 200, "{balance}");
            let net = balance["data"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").map(|b| &b["net"]);
            assert_eq!(net.and_then(Value::as_str).map(cents), Some(total), "node {node}: {balance}");
            balances.push(balance);
        }
        assert!(balances.windows(2).all(|w| w[0] == w[1]), "balances agree: {balances:?}");
        println!(
            "{} payments acknowledged, {} answered only no_leader (absent everywhere), {} unknown outcomes \
             settled; one leader (node {leader})",
            acked.len(),
            refused.len(),
            unknown.len()
        );
        acked.len()
    }
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How long a fault lasts at least.
fn fault_length() -> Duration {
    Duration::from_millis(
        std::env::var("PORTAL_CLUSTER_FAULT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(FAULT_MS_MIN),
    )
}

/// p50/p99/max of `times`.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "p50 {:?}, p99 {:?}, max {:?}",
        percentile(times, 50),
        percentile(times, 99),
        times.last().copied().unwrap_or_default()
    )
}

/// Starts `n` threads running `run(thread, stop)` until `stop` is set.
/// Probes that talk only to node `id` (at `base`), started just before a fault so that
/// their requests are in flight on it when the fault comes; the writers pause
/// meanwhile (`Load::hush`) and the caller resumes them after the fault. Returns when
/// the probes started, their stop flag, and their threads.
fn probe_before_fault(
    load: &Load,
    id: u64,
    base: &str,
) -> (Instant, Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    load.hush();
    let probed = Instant::now();
    let probing = Arc::new(AtomicBool::new(false));
    let probes = spawn_all(PROBES, &probing, {
        let (load, base) = (load.clone(), base.to_string());
        move |t, stop| load.probe(t, id, &base, stop)
    });
    std::thread::sleep(Duration::from_millis(PROBE_LEAD_MS));
    (probed, probing, probes)
}

fn spawn_all(
    n: usize,
    stop: &Arc<AtomicBool>,
    run: impl Fn(usize, &AtomicBool) + Send + Sync + Clone + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|t| {
            let (stop, run) = (Arc::clone(stop), run.clone());
            std::thread::spawn(move || run(t, &stop))
        })
        .collect()
}

fn stop_all(stop: &AtomicBool, threads: Vec<std::thread::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_stopped_leader_never_acknowledges_what_it_did_not_commit() {
    let started = Instant::now();
    let stops = env_count("PORTAL_CLUSTER_STOPS", STOPS_DEFAULT);
    let (seed, key) = seed();
    let cluster = Cluster::start(seed.path());
    let (agent, quick) = (agent(), agent_with(Duration::from_millis(POLL_MS_MAX)));
    let load = Load::new(&key, &cluster.bases);
    let writing = Arc::new(AtomicBool::new(false));
    let writers = spawn_all(WRITERS, &writing, {
        let load = load.clone();
        move |t, stop| load.writer(t, stop)
    });

    let (mut elections, mut failovers) = (Vec::new(), Vec::new());
    let mut stuck = Tally::default();
    for _ in 0..stops {
        let leader = cluster.leader(&agent);
        let others: Vec<u64> = cluster.nodes.keys().copied().filter(|&id| id != leader).collect();
        let base = cluster.nodes[&leader].base.clone();
        std::thread::sleep(Duration::from_millis(LOAD_MS));
        // Probes talk to the leader only: in flight when it stops, then stuck on it.
        let (probed, probing, probes) = probe_before_fault(&load, leader, &base);
        // Writers leave it (a client's health check would); what they send on is
        // retried elsewhere when it times out.
        cluster.bases.write().unwrap().remove(&leader);
        cluster.signal(leader, "STOP");
        let stopped = Instant::now();
        load.resume();
        cluster.leader_of(&quick, &others);
        elections.push(stopped.elapsed());
        failovers.push(load.next_ack(stopped, leader) - stopped);
        let hold = fault_length().saturating_sub(stopped.elapsed());
        std::thread::sleep(hold);
        cluster.signal(leader, "CONT");
        let continued = Instant::now();
        cluster.bases.write().unwrap().insert(leader, base);
        cluster.leader(&agent);
        std::thread::sleep(Duration::from_millis(LOAD_MS));
        stop_all(&probing, probes);
        // What was in flight on the stopped node or sent to it while it was stopped was
        // answered after SIGCONT: a 2xx only for a payment that committed (checked at
        // the end).
        stuck += load.tally(leader, probed, continued);
    }
    std::thread::sleep(Duration::from_millis(LOAD_MS));
    stop_all(&writing, writers);

    let acked = load.check(&cluster, &agent);
    println!(
        "SIGSTOP of the leader: {stops} cycles, {acked} payments acknowledged; sent to the stopped leader (from just \
         before the stop until SIGCONT): {stuck}; new leader {}; next acknowledged write {}; test took {:?}",
        summary(&mut elections),
        summary(&mut failovers),
        started.elapsed()
    );
}

/// The partition test's network namespaces (see the file's documentation): created
/// whole or not at all, removed when dropped, with any process still in them.
#[derive(Debug)]
struct Netns {
    hub: String,
    nodes: Vec<String>,
}

/// The nft table of the partition rules, in the hub.
const TABLE: &str = "inet portal_faults";

/// Runs a command to its end; `Err` with its stderr if it fails.
fn run(args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", args.join(" ")))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Netns {
    /// The hub and three node namespaces with unique names, joined.
    fn create() -> Result<Netns, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let tag = format!("pf{}-{}", std::process::id(), nanos.subsec_micros());
        let mut ns = Netns { hub: format!("{tag}-hub"), nodes: Vec::new() };
        run(&["ip", "netns", "add", &ns.hub], None)?;
        run(&["ip", "-n", &ns.hub, "link", "set", "lo", "up"], None)?;
        run(&["ip", "netns", "exec", &ns.hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], None)?;
        for i in 1..=3 {
            let node = format!("{tag}-n{i}");
            run(&["ip", "netns", "add", &node], None)?;
            ns.nodes.push(node.clone());
            let (hub_side, node_side) = (format!("vh{i}"), format!("10.77.{i}.2/24"));
            run(
                &[
                    "ip", "-n", &ns.hub, "link", "add", &hub_side, "type", "veth", "peer", "name", "eth0", "netns",
                    &node,
                ],
                None,
            )?;
            run(&["ip", "-n", &ns.hub, "addr", "add", &format!("10.77.{i}.1/24"), "dev", &hub_side], None)?;
            run(&["ip", "-n", &ns.hub, "link", "set", &hub_side, "up"], None)?;
            run(&["ip", "-n", &node, "link", "set", "lo", "up"], None)?;
            run(&["ip", "-n", &node, "addr", "add", &node_side, "dev", "eth0"], None)?;
            run(&["ip", "-n", &node, "link", "set", "eth0", "up"], None)?;
            run(&["ip", "-n", &node, "route", "add", "default", "via", &format!("10.77.{i}.1")], None)?;
        }
        ns.nft(&format!(
            "add table {TABLE}\nadd chain {TABLE} forward {{ type filter hook forward priority 0; policy accept; }}\n"
        ))?;
        Ok(ns)
    }

    /// Node `id`'s address.
    fn address(id: u64) -> String {
        format!("10.77.{id}.2")
    }

    /// Runs an nft script in the hub, atomically.
    fn nft(&self, script: &str) -> Result<(), String> {
        run(&["ip", "netns", "exec", &self.hub, "nft", "-f", "-"], Some(script))
    }

    /// Drops everything between node `id` and the other nodes (both ways, packets of
    /// open connections too); the clients in the hub still reach it.
    fn cut_off(&self, id: u64) {
        let ip = Netns::address(id);
        self.nft(&format!(
            "add rule {TABLE} forward ip saddr {ip} drop\nadd rule {TABLE} forward ip daddr {ip} drop\n"
        ))
        .unwrap();
    }

    /// Deletes the partition rules.
    fn heal(&self) {
        self.nft(&format!("flush chain {TABLE} forward\n")).unwrap();
    }

    /// Moves the calling thread into the hub (`setns`): the sockets it opens, and the
    /// threads and processes it starts, are in the hub's network.
    fn enter(&self) {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.hub)).unwrap();
        // SAFETY: setns gets a file descriptor that `file` keeps open for the call and
        // a namespace type; it changes the network namespace of the calling thread
        // only, touching no memory of this process.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns into {}: {}", self.hub, std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            // Processes the test started there and left behind (a failure half-way).
            if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            if let Err(e) = run(&["ip", "netns", "delete", name], None) {
                eprintln!("cluster_faults: {e}");
            }
        }
    }
}

/// Whether this runs in CI (`CI` set, and not to `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The namespaces, or why they cannot be made here (not root, no `ip` or `nft`, no
/// permission to create namespaces).
fn netns() -> Result<Netns, String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| format!("id -u: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("the partition test needs root (network namespaces and nftables)".into());
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        run(&[tool, "-V"], None).map_err(|e| {
            format!(
                "the partition test needs `{tool}`: apt-get install -y {package} (scripts/install-test-deps.sh): {e}"
            )
        })?;
    }
    Netns::create()
}

#[test]
fn partitions_never_acknowledge_on_the_minority_side() {
    let started = Instant::now();
    let netns = match netns() {
        Ok(netns) => netns,
        Err(why) if in_ci() => panic!("{why}"),
        Err(why) => {
            eprintln!("partitions_never_acknowledge_on_the_minority_side skipped: {why}");
            return;
        }
    };
    let cycles = env_count("PORTAL_CLUSTER_PARTITIONS", PARTITIONS_DEFAULT);
    let (seed, key) = seed();
    // The whole test on a thread in the hub; the namespaces are removed after it,
    // whatever happened there.
    let outcome = std::thread::scope(|s| s.spawn(|| partitions(&netns, seed.path(), &key, cycles)).join());
    drop(netns);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    println!("test took {:?}", started.elapsed());
}

fn partitions(netns: &Netns, seed: &std::path::Path, key: &str, cycles: usize) {
    netns.enter();
    let hosts: Vec<Host> = (1..=3u64)
        .map(|id| Host {
            prefix: ["ip", "netns", "exec", &netns.nodes[usize::try_from(id - 1).unwrap()]].map(String::from).to_vec(),
            listen: Some(format!("{}:8080", Netns::address(id))),
        })
        .collect();
    let peers: Vec<String> = (1..=3).map(|id| format!("{id}={}:7000", Netns::address(id))).collect();
    let cluster = Cluster::start_on(seed, &[], peers.join(","), hosts);
    let (agent, quick) = (agent(), agent_with(Duration::from_millis(POLL_MS_MAX)));
    let load = Load::new(key, &cluster.bases);
    let writing = Arc::new(AtomicBool::new(false));
    let writers = spawn_all(WRITERS, &writing, {
        let load = load.clone();
        move |t, stop| load.writer(t, stop)
    });

    let (mut elections, mut failovers) = (Vec::new(), Vec::new());
    let (mut minority, mut isolated) = (Tally::default(), Tally::default());
    let mut acked_while_follower_cut = 0;
    // How long the follower cut off took to answer: `no_leader`, an unknown outcome.
    let (mut refusals, mut given_up) = (Vec::new(), Vec::new());
    for _ in 0..cycles {
        for leader_side in [true, false] {
            let leader = cluster.leader(&agent);
            let cut = if leader_side { leader } else { *cluster.nodes.keys().find(|&&id| id != leader).unwrap() };
            let others: Vec<u64> = cluster.nodes.keys().copied().filter(|&id| id != cut).collect();
            let base = cluster.nodes[&cut].base.clone();
            std::thread::sleep(Duration::from_millis(LOAD_MS));
            // Clients that keep talking to the node cut off, in flight on it at the cut.
            let (probed, probing, probes) = probe_before_fault(&load, cut, &base);
            cluster.bases.write().unwrap().remove(&cut);
            netns.cut_off(cut);
            let from = Instant::now();
            load.resume();
            // The majority has (or elects) a leader and acknowledges writes.
            cluster.leader_of(&quick, &others);
            if leader_side {
                elections.push(from.elapsed());
                failovers.push(load.next_ack(from, cut) - from);
            } else {
                load.next_ack(from, cut);
            }
            std::thread::sleep(fault_length().saturating_sub(from.elapsed()));
            let healed = Instant::now();
            netns.heal();
            let what = if leader_side { "the leader cut off" } else { "a follower cut off" };
            load.none_acked_by(cut, from, healed, what);
            if !leader_side {
                let log = load.log();
                acked_while_follower_cut += log
                    .iter()
                    .filter(|a| a.sent >= from && a.answered < healed && matches!(a.answer, Answer::Acked { .. }))
                    .count();
            }
            cluster.bases.write().unwrap().insert(cut, base);
            cluster.leader(&agent);
            std::thread::sleep(Duration::from_millis(LOAD_MS));
            stop_all(&probing, probes);
            *(if leader_side { &mut minority } else { &mut isolated }) += load.tally(cut, probed, healed);
            if !leader_side {
                // Answered quickly: what was in flight at the cut, what came while it
                // still named its leader, and what came after (a write held until the
                // healing and acknowledged then is slow too).
                let [acked, refused, unknown] = load.answer_times(cut, probed, healed);
                let slowest = acked.iter().chain(&refused).chain(&unknown).max().copied().unwrap_or_default();
                assert!(
                    slowest <= cut_off_answer_max(),
                    "a follower cut off: node {cut} took {slowest:?} to answer a write (at most {:?}); {} 2xx in {}, \
                     {} no_leader in {}, {} unknown in {}",
                    cut_off_answer_max(),
                    acked.len(),
                    summary(&mut acked.clone()),
                    refused.len(),
                    summary(&mut refused.clone()),
                    unknown.len(),
                    summary(&mut unknown.clone()),
                );
                // Before, a follower cut off for the whole fault could hold every write
                // (still naming the leader, forwarding over open connections).
                assert!(!refused.is_empty(), "a follower cut off: node {cut} refused nothing");
                refusals.extend(refused);
                given_up.extend(unknown);
            }
        }
    }
    stop_all(&writing, writers);
    let acked = load.check(&cluster, &agent);
    println!(
        "partitions: {cycles} cycles (the leader cut off, then a follower), {acked} payments acknowledged; sent to \
         the minority leader (from just before the cut until healed): {minority}; to the follower cut off: \
         {isolated}; \
         {acked_while_follower_cut} acknowledged by the majority while a follower was cut off; the follower cut off \
         answered no_leader {} times in {}, an unknown outcome {} times in {} (at most {:?} allowed); new leader {}; \
         next acknowledged write {}",
        refusals.len(),
        summary(&mut refusals),
        given_up.len(),
        summary(&mut given_up),
        cut_off_answer_max(),
        summary(&mut elections),
        summary(&mut failovers),
    );
}
