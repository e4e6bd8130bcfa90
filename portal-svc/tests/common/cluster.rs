//! Three real `portal-svc` processes as one replicated ledger (cluster mode), their
//! metadata seeded from one single-node service (until metadata is shared through
//! PostgreSQL each node keeps its own SQLite: the seed gives all three the same admin,
//! client and API key). Used by `tests/cluster.rs` and `tests/cluster_faults.rs`.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ADMIN_EMAIL, ADMIN_PASSWORD, Launch, Service};

/// How long anything the tests wait for may take before they fail.
pub const WAIT_SECS_MAX: u64 = 60;
/// Per-request timeout of [`agent`] (above the service's own forwarding timeout).
pub const REQUEST_SECS_MAX: u64 = 40;

/// A client whose statuses are answers, not errors, with the default timeout.
pub fn agent() -> ureq::Agent {
    agent_with(Duration::from_secs(REQUEST_SECS_MAX))
}

/// [`agent`] with another whole-request timeout. Never through a proxy from the
/// environment: the nodes are on local or namespaced addresses.
pub fn agent_with(timeout: Duration) -> ureq::Agent {
    // Pooled connections retired before the service closes them (see `Service::start`).
    let idle = Duration::from_secs(portal_svc::app::HEAD_SECS_MAX / 2);
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_idle_age(idle)
        .proxy(None)
        .build()
        .into()
}

/// GET `base/path` -> (status, JSON), or `None` if the node did not answer.
pub fn get(agent: &ureq::Agent, base: &str, path: &str, token: &str) -> Option<(u16, Value)> {
    let mut response =
        agent.get(&format!("{base}{path}")).header("Authorization", &format!("Bearer {token}")).call().ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A keyed payment to `base` -> (status, JSON), or `None` on a connection error or a
/// timeout.
pub fn pay(agent: &ureq::Agent, base: &str, token: &str, key: &str, amount: &str) -> Option<(u16, Value)> {
    let body = json!({ "kind": "payment", "amount": amount, "currency": "USD" }).to_string();
    let mut response = agent
        .post(&format!("{base}/v1/transactions"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .header("Idempotency-Key", key)
        .send(&body)
        .ok()?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Free loopback addresses for the nodes' replication listeners: `1=ADDR,2=ADDR,...`.
pub fn free_addresses(n: u64) -> String {
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let peers: Vec<String> =
        listeners.iter().enumerate().map(|(i, l)| format!("{}={}", i + 1, l.local_addr().unwrap())).collect();
    peers.join(",")
}

/// Where a node runs: the command it runs under (`ip netns exec NS`) and its public
/// listener (`127.0.0.1:0` when `None`).
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub prefix: Vec<String>,
    pub listen: Option<String>,
}

/// Three nodes, each on a directory of its own.
pub struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    peers: String,
    /// More arguments for every node.
    args: Vec<String>,
    /// Where each node runs (index: id - 1).
    hosts: Vec<Host>,
    pub nodes: BTreeMap<u64, Service>,
    /// Each node's base URL that clients may use (the test takes out a node it killed,
    /// stopped or cut off), for the writer threads.
    pub bases: Arc<RwLock<BTreeMap<u64, String>>>,
    /// Where nodes started from now on write their stderr (`node-N.log`); from
    /// `PORTAL_CLUSTER_LOGS` at the start.
    pub logs: Option<std::path::PathBuf>,
    /// The voters every node must report (1, 2, 3 until a membership change).
    pub members: Vec<u64>,
}

impl Cluster {
    /// Three nodes on loopback whose metadata is a copy of `seed`'s (portal.db and
    /// secret.key).
    pub fn start(seed: &std::path::Path) -> Cluster {
        Cluster::start_with(seed, &[])
    }

    /// [`Cluster::start`] with more arguments for every node.
    pub fn start_with(seed: &std::path::Path, args: &[&str]) -> Cluster {
        Cluster::start_on(seed, args, free_addresses(3), vec![Host::default(); 3])
    }

    /// Three nodes replicating over `peers` (`1=ADDR,2=ADDR,3=ADDR`), node N on
    /// `hosts[N - 1]`.
    pub fn start_on(seed: &std::path::Path, args: &[&str], peers: String, hosts: Vec<Host>) -> Cluster {
        assert_eq!(hosts.len(), 3, "three hosts");
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        for dir in &dirs {
            for name in ["portal.db", "portal.db-wal", "secret.key"] {
                if seed.join(name).exists() {
                    std::fs::copy(seed.join(name), dir.path().join(name)).unwrap();
                }
            }
        }
        let logs = std::env::var_os("PORTAL_CLUSTER_LOGS").map(std::path::PathBuf::from);
        let mut cluster = Cluster {
            dirs,
            peers,
            args: args.iter().map(|a| a.to_string()).collect(),
            hosts,
            nodes: BTreeMap::new(),
            bases: Arc::default(),
            logs,
            members: vec![1, 2, 3],
        };
        for id in 1..=3 {
            cluster.start_node(id);
        }
        cluster
    }

    pub fn start_node(&mut self, id: u64) {
        self.start_node_with(id, self.peers.clone(), &[]);
    }

    /// A new node `id` (the next after the last, on a fresh directory with a copy of
    /// `seed`'s metadata) started with `--join`, on loopback; returns its replication
    /// address, for `POST /v1/cluster/members` or `POST /v1/cluster/replace`.
    pub fn join(&mut self, seed: &std::path::Path, id: u64) -> String {
        assert_eq!(usize::try_from(id - 1).unwrap(), self.dirs.len(), "nodes are numbered in order");
        let dir = tempfile::tempdir().unwrap();
        for name in ["portal.db", "portal.db-wal", "secret.key"] {
            if seed.join(name).exists() {
                std::fs::copy(seed.join(name), dir.path().join(name)).unwrap();
            }
        }
        self.dirs.push(dir);
        self.hosts.push(Host::default());
        let own = free_addresses(1).replacen("1=", &format!("{id}="), 1);
        let addr = own.split_once('=').unwrap().1.to_string();
        self.start_node_with(id, own, &["--join"]);
        addr
    }

    fn start_node_with(&mut self, id: u64, peers: String, more: &[&str]) {
        let index = usize::try_from(id - 1).unwrap();
        let host = &self.hosts[index];
        let launch = Launch {
            args: [
                vec!["--node-id".into(), id.to_string(), "--peers".into(), peers],
                self.args.clone(),
                more.iter().map(|a| a.to_string()).collect(),
            ]
            .concat(),
            stderr: self.logs.as_ref().map(|d| d.join(format!("node-{id}.log"))),
            prefix: host.prefix.clone(),
            listen: host.listen.clone(),
            ..Launch::default()
        };
        let service = Service::start_with(self.dirs[index].path(), true, &launch);
        self.bases.write().unwrap().insert(id, service.base.clone());
        self.nodes.insert(id, service);
    }

    /// The replication address of node `id` among the first three (from `--peers`).
    pub fn peer_address(&self, id: u64) -> Option<String> {
        let prefix = format!("{id}=");
        self.peers.split(',').find_map(|entry| entry.strip_prefix(prefix.as_str())).map(str::to_string)
    }

    /// Node `id`'s data directory.
    pub fn dir(&self, id: u64) -> &std::path::Path {
        self.dirs[usize::try_from(id - 1).unwrap()].path()
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) {
        self.bases.write().unwrap().remove(&id);
        let mut service = self.nodes.remove(&id).unwrap();
        service.child.kill().unwrap();
        service.child.wait().unwrap();
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `id`'s process.
    pub fn signal(&self, id: u64, signal: &str) {
        let pid = self.nodes[&id].child.id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Node `id`'s `GET /v1/cluster`, or `None` if it did not answer 200.
    pub fn status(&self, agent: &ureq::Agent, id: u64) -> Option<Value> {
        let (status, body) = get(agent, &self.nodes[&id].base, "/v1/cluster", "")?;
        (status == 200).then_some(body)
    }

    /// The leader every live node agrees on, once they do.
    pub fn leader(&self, agent: &ureq::Agent) -> u64 {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        self.leader_of(agent, &ids)
    }

    /// The leader nodes `ids` agree on (one of them, in the same term), once they do
    /// and each reports [`Cluster::members`] as the voters (a follower learns of a
    /// membership change with the leader's next message).
    pub fn leader_of(&self, agent: &ureq::Agent, ids: &[u64]) -> u64 {
        let until = Instant::now() + Duration::from_secs(WAIT_SECS_MAX);
        loop {
            let views: Vec<Option<Value>> = ids.iter().map(|&id| self.status(agent, id)).collect();
            let seen: Vec<Option<(u64, u64)>> = views
                .iter()
                .map(|v| v.as_ref().and_then(|v| Some((v["leader_id"].as_u64()?, v["term"].as_u64()?))))
                .collect();
            if let Some(Some((leader, term))) = seen.first()
                && seen.iter().all(|s| *s == Some((*leader, *term)))
                && ids.contains(leader)
                && views.iter().flatten().all(|view| view["members"] == json!(self.members))
            {
                return *leader;
            }
            let members = &self.members;
            assert!(Instant::now() < until, "no agreed leader among {ids:?} with voters {members:?}: {views:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every live node applied `seq`.
    pub fn applied(&self, agent: &ureq::Agent, seq: u64) {
        let until = Instant::now() + Duration::from_secs(WAIT_SECS_MAX);
        for &id in self.nodes.keys() {
            while self.status(agent, id).and_then(|v| v["applied_seq"].as_u64()).is_none_or(|s| s < seq) {
                assert!(Instant::now() < until, "node {id} did not apply seq {seq}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Every transaction of `key`'s client on node `id`: id -> amount, each id once.
    pub fn transactions(&self, agent: &ureq::Agent, id: u64, key: &str) -> HashMap<String, String> {
        let base = &self.nodes[&id].base;
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/transactions?limit=100&starting_after={a}"),
                None => "/v1/transactions?limit=100".to_string(),
            };
            let (status, page) = get(agent, base, &path, key).unwrap();
            assert_eq!(status, 200, "{page}");
            for t in page["data"].as_array().unwrap() {
                let tid = t["id"].as_str().unwrap().to_string();
                let amount = t["amount"].as_str().unwrap().to_string();
                assert!(seen.insert(tid.clone(), amount).is_none(), "node {id} lists {tid} twice");
                after = Some(tid);
            }
            if !page["has_more"].as_bool().unwrap() {
                break;
            }
        }
        seen
    }
}

/// The seed: a single-node service with the admin, a client and its API key; its
/// metadata is copied to every node.
pub fn seed() -> (tempfile::TempDir, String) {
    let seed = tempfile::tempdir().unwrap();
    let service = Service::start(seed.path(), true);
    let (status, body) = service.request("GET", "/v1/cluster", None, None);
    assert_eq!((status, super::error_code(&body).as_str()), (404, "not_found"), "a single node is no cluster");
    let admin = service.token(ADMIN_EMAIL, ADMIN_PASSWORD);
    let (_, key) = service.client_with_key(&admin, "acme");
    assert!(service.stop(), "the seed stops cleanly");
    (seed, key)
}

/// The `p`th percentile (0 to 100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len().saturating_sub(1) + 50) / 100;
    sorted.get(rank).copied().unwrap_or_default()
}
