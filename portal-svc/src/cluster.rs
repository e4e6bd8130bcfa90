//! Cluster mode (issue 19): this service as node N of a replicated ledger
//! (`--node-id N --peers 1=HOST:PORT,...`), every node taking every request.
//!
//! Reads are answered by the node that receives them, from what its ledger applied.
//! A write (any method but GET, HEAD and OPTIONS) on a node that is not the leader is
//! forwarded to the leader: followers know the leader's replication address only, so
//! the replication listener also serves the portal under [`FORWARD_PREFIX`]. The
//! forwarded request carries the method, path, query, every end-to-end header
//! (credentials, cookies, the CSRF token, `Idempotency-Key`) and the body, plus the
//! original client's address in [`CLIENT_ADDR_HEADER`], which is trusted only there
//! (audit and sign-in throttling see the real client); the leader's answer streams
//! back unchanged. No known leader, or a leader that refuses the connection: 503
//! `no_leader` (nothing changed). A leader that took the request and did not answer:
//! 503 `ledger_unavailable` (outcome unknown; the client retries with the same
//! Idempotency-Key, which lands once). A leader that lost its leadership before it
//! judged the write answers 503 `no_leader` itself (`SubmitError::NotLeader`).
//!
//! A follower cut off from its leader (a partition, the leader frozen or dead) goes on
//! naming it until its election timer fires, 1.5 to 2 s later with the default
//! timing. It answers quickly meanwhile, though never wrongly: it forwards only to a
//! leader it heard from within the longest election timeout
//! (`Node::leader_heard_recently`, 1 s by default), and answers `no_leader` at once
//! otherwise (nothing was sent); a forwarded write whose leader falls silent that long
//! while the follower waits for its answer is given up with `ledger_unavailable` (it
//! may have reached the leader), rather than after the connect or answer timeouts
//! below.
//!
//! **Architecture invariant:** a 2xx for a money movement comes only from the leader's
//! ledger, which answers once a majority made the group durable (`ledger_raft`).
//! Nothing on the replication listener is authenticated beyond the portal's own
//! checks: it belongs on a private network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ledger_raft::NodeId;
use ledger_raft::node::{Node, NodeConfig, StartError};

use crate::app::{AppState, BODY_BYTES_MAX};
use crate::auth::PeerAddr;
use crate::error::ApiError;
use crate::reads;

/// Where the replication listener serves the portal to the other nodes.
pub const FORWARD_PREFIX: &str = "/portal";
/// The original client's address on a forwarded request (trusted only on the
/// replication listener; on the public listener it is an ordinary, ignored header).
pub const CLIENT_ADDR_HEADER: &str = "x-portal-client-addr";
/// How long a follower waits to connect to the leader.
const CONNECT_SECS_MAX: u64 = 2;
/// How long a follower waits for the leader's answer: above the proposal timeout
/// (`ledger_raft::machine::PROPOSAL_TIMEOUT`, 10 s) after which the leader answers.
const FORWARD_SECS_MAX: u64 = 30;
const _: () = assert!(FORWARD_SECS_MAX > ledger_raft::machine::PROPOSAL_TIMEOUT.as_secs());

/// A node of the replicated ledger and the client that forwards writes to its leader.
#[derive(Debug)]
pub struct Cluster {
    node: Node,
    client: reqwest::Client,
}

/// Marks a request that arrived forwarded: it is answered here, never forwarded again.
#[derive(Debug, Clone, Copy)]
struct Forwarded;

/// Parses `--peers`: `1=HOST:PORT,2=HOST:PORT,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers = BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry.split_once('=').ok_or_else(|| format!("{entry:?} is not ID=HOST:PORT"))?;
        let id: NodeId = id.trim().parse().map_err(|_| format!("{id:?} is not a node id"))?;
        let addr = addr.trim();
        if !ledger_raft::node::is_host_port(addr) {
            return Err(format!("{addr:?} is not HOST:PORT"));
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers".into());
    }
    Ok(peers)
}

/// A node's options beyond its id and peers (see [`NodeConfig`]): how often it
/// snapshots its ledger and how much Raft log it keeps behind (`--raft-snapshot-every`,
/// `--raft-log-kept`), and whether it joins a cluster already formed (`--join`).
#[derive(Debug, Clone, Copy)]
pub struct NodeOptions {
    pub snapshot_every_entries: u64,
    pub log_kept_entries: u64,
    pub join: bool,
}

impl Default for NodeOptions {
    fn default() -> NodeOptions {
        NodeOptions {
            snapshot_every_entries: ledger_raft::node::SNAPSHOT_EVERY_ENTRIES,
            log_kept_entries: ledger_raft::node::LOG_KEPT_ENTRIES,
            join: false,
        }
    }
}

impl Cluster {
    /// Starts node `id` of `peers` on `dir` (its ledger under `DIR/ledger`, its Raft
    /// log under `DIR/raft`, its snapshots under `DIR/snapshots`). On the runtime the
    /// service then runs on.
    pub async fn start(
        id: NodeId,
        peers: BTreeMap<NodeId, String>,
        dir: &Path,
        options: NodeOptions,
    ) -> Result<Cluster, StartError> {
        let config = NodeConfig {
            snapshot_every_entries: options.snapshot_every_entries,
            log_kept_entries: options.log_kept_entries,
            join: options.join,
            ..NodeConfig::new(id, dir, peers)
        };
        let node = Node::start(config).await?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(CONNECT_SECS_MAX))
            .timeout(Duration::from_secs(FORWARD_SECS_MAX))
            .build()
            .map_err(|e| StartError::Config(format!("the forwarding client: {e}")))?;
        Ok(Cluster { node, client })
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Serves the portal (`router`, the whole service) to the other nodes on the
    /// replication listener, under [`FORWARD_PREFIX`].
    pub fn serve_forwarded(&self, router: axum::Router) {
        let internal =
            axum::Router::new().nest(FORWARD_PREFIX, router).layer(axum::middleware::from_fn(trust_forwarded));
        if self.node.serve_internal(internal).is_err() {
            tracing::error!("the forwarded portal was attached twice; the first stays");
        }
    }

    /// Stops the node and closes its ledger.
    pub async fn shutdown(&self) -> Result<(), ledger_core::SubmitError> {
        self.node.shutdown().await
    }

    /// Sends `request` to `leader` and relays its answer. A leader that falls silent
    /// (nothing heard from it for the longest election timeout) before it answered is
    /// given up within a heartbeat interval, with `ledger_unavailable`, not after the
    /// connect or answer timeout: the request may have reached it, so the outcome is
    /// unknown.
    async fn forward(&self, leader: NodeId, request: Request) -> Response {
        let Some(addr) = self.node.address_of(leader) else {
            return ApiError::no_leader().into_response();
        };
        let client_addr = request.extensions().get::<PeerAddr>().map(|PeerAddr(ip)| *ip);
        let (parts, body) = request.into_parts();
        // The body is read here (the leader's own limit applies again): a body past
        // the limit is answered as the service answers it, 413.
        let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
            return ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "invalid_request_error",
                code: "body_too_large",
                message: format!("the request body exceeds {BODY_BYTES_MAX} bytes"),
                param: None,
                retry_after_secs: None,
            }
            .into_response();
        };
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("http://{addr}{FORWARD_PREFIX}{path}");
        let mut headers = end_to_end(&parts.headers);
        headers.remove(HeaderName::from_static(CLIENT_ADDR_HEADER));
        if let Some(ip) = client_addr
            && let Ok(value) = ip.to_string().parse()
        {
            headers.insert(HeaderName::from_static(CLIENT_ADDR_HEADER), value);
        }
        let send = self.client.request(parts.method.clone(), url).headers(headers).body(body).send();
        let Some(sent) = self.unless_leader_falls_silent(leader, send).await else {
            tracing::debug!(leader, "the leader fell silent while a forwarded request waited for it");
            return ApiError::ledger_unavailable(format!(
                "forwarded to node {leader}, which fell silent before it answered"
            ))
            .into_response();
        };
        let answer = match sent {
            Ok(answer) => answer,
            // Nothing reached the leader: nothing changed.
            Err(e) if e.is_connect() => {
                tracing::debug!(leader, error = %e, "the leader refused the forwarded request");
                return ApiError::no_leader().into_response();
            }
            Err(e) => return ApiError::ledger_unavailable(format!("forwarded to node {leader}: {e}")).into_response(),
        };
        let mut response = Response::builder().status(answer.status());
        if let Some(h) = response.headers_mut() {
            *h = end_to_end(answer.headers());
        }
        let chunks = futures_util::stream::unfold(Some(answer), |answer| async move {
            let mut answer = answer?;
            match answer.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(answer))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        });
        response.body(Body::from_stream(chunks)).unwrap_or_else(|e| ApiError::internal(e).into_response())
    }
}

impl Cluster {
    /// Runs `send` (a request forwarded to `leader`) to its end, or `None` once this
    /// node no longer hears from `leader` ([`Node::leader_heard_recently`], checked
    /// every heartbeat interval): the leader is cut off, frozen or dead, or replaced.
    async fn unless_leader_falls_silent<T>(&self, leader: NodeId, send: impl Future<Output = T>) -> Option<T> {
        let every = Duration::from_millis(self.node.timing().heartbeat_ms.max(1));
        let watch = async {
            loop {
                tokio::time::sleep(every).await;
                if self.node.leader_heard_recently() != Some(leader) {
                    return;
                }
            }
        };
        tokio::select! {
            sent = send => Some(sent),
            () = watch => None,
        }
    }
}

/// The headers of `headers` that are for the other end, not for this hop (RFC 9110
/// 7.6.1), without `Host` (the client sets the leader's) and `Content-Length` (set
/// from the body).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named_by_connection: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authenticate"
                | "proxy-authorization"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "host"
                | "content-length"
        ) || named_by_connection.iter().any(|n| n == name.as_str());
        if !hop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The forwarding layer (cluster mode): reads are answered here; a write is answered
/// only by a leader a quorum acknowledged lately (one cut off from the majority could
/// not commit it), forwarded there by a follower (once: a forwarded write that finds
/// no leader here is not sent on), and otherwise refused with 503 `no_leader`.
///
/// A follower forwards only to a leader it heard from within the longest election
/// timeout: one cut off from its leader still names it until its own election timer
/// fires, and would otherwise keep clients waiting on a leader it cannot reach (up to
/// the connect timeout, or the answer timeout on a connection already open) before
/// answering. It refuses at once instead, with `no_leader`: nothing was sent, so
/// nothing changed. See [`Cluster::forward`] for a leader that falls silent after the
/// write was sent.
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let Some(cluster) = state.cluster.as_ref() else {
        // A single node is as fresh as any read can ask; a malformed ask is still one.
        if reading && let Err(e) = reads::asked(request.headers()) {
            return e.into_response();
        }
        return next.run(request).await;
    };
    let node = &cluster.node;
    let mut response = if reading { read(node, request, next).await } else { write(cluster, request, next).await };
    // A forwarded write's answer carries the leader's, which covers the write.
    response
        .headers_mut()
        .entry(reads::APPLIED_SEQ_HEADER)
        .or_insert_with(|| reads::applied_seq_value(node.applied_seq()));
    response
}

/// A read, once this node is as fresh as it asks ([`crate::reads`]).
async fn read(node: &Node, request: Request, next: Next) -> Response {
    let asked = match reads::asked(request.headers()) {
        Ok(asked) => asked,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = reads::make_fresh(node, asked).await {
        return e.into_response();
    }
    next.run(request).await
}

/// A write: answered here by a leader with a quorum, forwarded to a leader heard from
/// lately, refused otherwise.
async fn write(cluster: &Cluster, request: Request, next: Next) -> Response {
    let forwarded = request.extensions().get::<Forwarded>().is_some();
    let node = &cluster.node;
    if node.leader_id() == Some(node.id()) && node.leads_with_quorum() {
        return next.run(request).await;
    }
    match node.leader_heard_recently() {
        Some(leader) if !forwarded => cluster.forward(leader, request).await,
        _ => {
            let _ = axum::body::to_bytes(request.into_body(), BODY_BYTES_MAX).await;
            ApiError::no_leader().into_response()
        }
    }
}

/// On the replication listener: a forwarded request takes its client's address from
/// [`CLIENT_ADDR_HEADER`] and is answered by this node, never forwarded again.
async fn trust_forwarded(mut request: Request, next: Next) -> Response {
    let addr = request
        .headers_mut()
        .remove(CLIENT_ADDR_HEADER)
        .and_then(|v| v.to_str().ok().and_then(|v| v.parse::<IpAddr>().ok()));
    if let Some(ip) = addr {
        request.extensions_mut().insert(PeerAddr(ip));
    }
    request.extensions_mut().insert(Forwarded);
    next.run(request).await
}

/// `GET /v1/cluster`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// The leader this node knows of (`null` during an election).
    pub leader_id: Option<NodeId>,
    /// The Raft term as this node knows it.
    pub term: u64,
    /// The voting members' ids.
    pub members: Vec<NodeId>,
    /// The seq of the last ledger record this node applied: a write answered with
    /// `seq` S is readable here once this is at least S.
    pub applied_seq: u64,
}

impl Cluster {
    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        ClusterStatus {
            node_id: self.node.id(),
            leader_id: self.node.leader_id(),
            term: self.node.term(),
            members: self.node.members(),
            applied_seq: self.node.applied_seq(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_peers;

    #[test]
    fn peers_are_id_equals_host_port_each_once() {
        let peers = parse_peers("1=127.0.0.1:7001, 2=node-b:7002,3=[::1]:7003").unwrap_or_default();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers.get(&2).map(String::as_str), Some("node-b:7002"));
        assert_eq!(peers.get(&3).map(String::as_str), Some("[::1]:7003"));
        for bad in ["", "1", "1=host", "x=host:1", "1=:7001", "1=host:99999", "1=a:1,1=b:2"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} is refused");
        }
    }
}
