//! `ledger-bench cluster`: a replicated ledger of `--nodes` nodes on loopback (each a
//! durable ledger in its replicated mode, its Raft log over `ledger-store`, HTTP
//! between nodes, all in this process) against a single durable ledger, the same
//! seeded workload from one writer in calls of `--batch`, in alternating runs
//! (`--pairs`). A call on the cluster is answered once a majority holds its group and
//! the leader applied it. Each node is a `ledger_raft::node::Node` (its default Raft
//! timing; the nodes form the cluster themselves).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ledger_core::{Durability, Ledger, LedgerOptions, SubmitError, TxOutcome};
use ledger_raft::NodeId;
use ledger_raft::node::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::workload::{Workload, calls};

/// Arguments of `ledger-bench cluster`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    /// Transactions per run.
    #[arg(long, default_value_t = 500_000)]
    transactions: u64,
    /// Transactions per submit call.
    #[arg(long, default_value_t = 8190)]
    batch: u64,
    /// Nodes of the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Clients of the workload.
    #[arg(long, default_value_t = 1000)]
    clients: u64,
    /// Seed of the workload (decimal or 0x hex).
    #[arg(long, default_value_t = crate::SEED_DEFAULT, value_parser = crate::parse_seed)]
    seed: u64,
    /// Alternating pairs of runs (single node, cluster).
    #[arg(long, default_value_t = 1)]
    pairs: u32,
    /// Where the temporary directories are made (default: the system's temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

fn options(replicated: bool) -> LedgerOptions {
    LedgerOptions { durability: Durability::SyncData, replicated, ..LedgerOptions::default() }
}

/// Submits the workload on `ledger`; returns (committed, seconds).
fn drive(args: &ClusterArgs, ledger: &Ledger) -> Result<(u64, f64), String> {
    let workload = Workload::new(args.seed, args.clients)?;
    let started = Instant::now();
    let mut committed = 0u64;
    for call in calls(args.transactions, args.batch, 0) {
        let txs: Vec<_> = (call.start..call.start + call.len).map(|i| workload.tx(i)).collect();
        let outcomes = loop {
            match ledger.submit(&txs) {
                Ok(outcomes) => break outcomes,
                // Not yet the proposer (just elected), or a lost proposal: the same ids again.
                Err(SubmitError::NotLeader | SubmitError::Failed(_)) if started.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(format!("submit: {e}")),
            }
        };
        committed += outcomes.iter().filter(|o| matches!(o, TxOutcome::Committed(_))).count() as u64;
    }
    Ok((committed, started.elapsed().as_secs_f64()))
}

fn single(args: &ClusterArgs, base: &std::path::Path) -> Result<(u64, f64), String> {
    let dir = tempfile::Builder::new().prefix("ledger-bench-single-").tempdir_in(base).map_err(|e| e.to_string())?;
    let ledger = Ledger::open(dir.path(), options(false)).map_err(|e| format!("open: {e}"))?;
    let result = drive(args, &ledger);
    ledger.close().map_err(|e| format!("close: {e}"))?;
    result
}

fn cluster(args: &ClusterArgs, base: &std::path::Path) -> Result<(u64, f64), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let dirs: Vec<tempfile::TempDir> = (0..args.nodes)
        .map(|_| tempfile::Builder::new().prefix("ledger-bench-node-").tempdir_in(base).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    // Free loopback ports for the replication listeners (each node binds its own).
    let mut peers = BTreeMap::new();
    for id in 1..=args.nodes {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        peers.insert(id, probe.local_addr().map_err(|e| e.to_string())?.to_string());
    }
    let (nodes, leader_id): (BTreeMap<NodeId, Node>, NodeId) = runtime.block_on(async {
        let mut nodes = BTreeMap::new();
        for (id, dir) in (1..=args.nodes).zip(&dirs) {
            let config = NodeConfig { ledger: options(true), ..NodeConfig::new(id, dir.path(), peers.clone()) };
            nodes.insert(id, Node::start(config).await.map_err(|e| format!("node {id}: {e}"))?);
        }
        let leader = settled_leader(&nodes).await?;
        Ok::<_, String>((nodes, leader))
    })?;
    let leader = nodes.get(&leader_id).ok_or("the leader is not a node")?.ledger().clone();
    let result = drive(args, &leader);
    runtime.block_on(async {
        for node in nodes.values() {
            let _ = node.shutdown().await;
        }
    });
    drop(runtime);
    result
}

/// The leader once every node names it and a quorum acknowledges it, twice in a row
/// 0.5 s apart: every node stands for election on its first start (each initializes the
/// membership), so the first leader seen may be replaced by another within a second.
async fn settled_leader(nodes: &BTreeMap<NodeId, Node>) -> Result<NodeId, String> {
    let until = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes.values().map(Node::leader_id).collect();
        let now = match leaders.first() {
            Some(Some(leader))
                if leaders.iter().all(|l| *l == Some(*leader))
                    && nodes.get(leader).is_some_and(Node::leads_with_quorum) =>
            {
                Some(*leader)
            }
            _ => None,
        };
        if now.is_some() && now == seen {
            return now.ok_or_else(|| "no leader".to_string());
        }
        if Instant::now() > until {
            return Err("no settled leader within 30 s".into());
        }
        seen = now;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the measurement.
pub(crate) fn main(args: &ClusterArgs) -> Result<bool, String> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut pairs = Vec::new();
    for pair in 0..args.pairs.max(1) {
        let (single_committed, single_secs) = single(args, &base)?;
        let (cluster_committed, cluster_secs) = cluster(args, &base)?;
        if cluster_committed != single_committed {
            return Err(format!("the cluster committed {cluster_committed}, the single node {single_committed}"));
        }
        let row = json!({
            "pair": pair + 1,
            "transactions": single_committed,
            "single_tx_per_s": (single_committed as f64 / single_secs).round(),
            "cluster_tx_per_s": (cluster_committed as f64 / cluster_secs).round(),
        });
        if !args.json {
            eprintln!("{row}");
        }
        pairs.push(row);
    }
    let report: Value = json!({"benchmark": "cluster", "nodes": args.nodes, "batch": args.batch, "pairs": pairs});
    if args.json {
        println!("{report}");
    } else {
        println!("pair  single node tx/s  {}-node cluster tx/s", args.nodes);
        for p in &pairs {
            println!("{:>4}  {:>16}  {:>19}", p["pair"], p["single_tx_per_s"], p["cluster_tx_per_s"]);
        }
    }
    Ok(true)
}
