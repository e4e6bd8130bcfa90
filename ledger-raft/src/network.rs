//! Raft's messages between nodes: HTTP/1.1 with binary bodies (postcard, `wire.rs`: a
//! commit group travels as its own bytes), one keep-alive connection per peer (hyper's
//! low-level client), served by axum on the node's replication address
//! (`--peers N=HOST:PORT` in the portal's cluster mode).
//!
//! `POST /raft/append`, `/raft/vote`, `/raft/snapshot` carry openraft's requests, and
//! `/raft/read-index` a follower's question for a read (`reads.rs`)
//! ([`wire::CONTENT_TYPE`]; another media type is answered `415`, a body that does not
//! decode `400` with the reason, one over [`MESSAGE_BYTES_MAX`] `413`); the answer is
//! openraft's `Result` in the same encoding, so a remote Raft error reaches the caller
//! as openraft's `RemoteError`, and a connection or timeout failure as `Unreachable`
//! (the peer is retried with backoff by openraft's replication).
//!
//! Each request names the node it is for (`x-raft-target`), and a node answers one
//! meant for another id `421 Misdirected Request`, which the caller takes as that node
//! unreachable: a node wiped and brought back at the same address under a new id must
//! not answer the leader's stream to the old one (openraft would see that follower's
//! log go backwards and panic in debug builds). A request without the header is served.
//!
//! The connection is opened by a [`Connect`]: plain TCP ([`Tcp`], what [`Network`]
//! uses) in production; [`NetworkOver`] takes another, so the same messages can cross
//! a simulated network (`tests/simulation.rs` runs them over turmoil's). The server
//! side needs no such seam: [`router`] is served by `axum::serve` on any
//! `axum::serve::Listener`.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use crate::contact::LeaderContact;
use crate::wire::{self, Wire};
use crate::{NodeId, TypeConfig};

/// Largest message a node accepts from a peer (`413` above it): entries carry whole
/// commit groups (8190 records are about 0.9 MB), and openraft sends several at once.
pub const MESSAGE_BYTES_MAX: usize = 256 << 20;

/// The header naming the node a request is for.
pub const TARGET_HEADER: &str = "x-raft-target";

/// The routes a node serves to its peers, over its Raft.
pub fn router(raft: Raft<TypeConfig>) -> Router {
    router_with_contact(raft, LeaderContact::default())
}

/// [`router`], recording in `contact` when a message from a leader (entries, a
/// heartbeat, a snapshot chunk) arrived that this node accepted ([`crate::contact`]).
pub fn router_with_contact(raft: Raft<TypeConfig>, contact: LeaderContact) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/read-index", post(read_index))
        .layer(axum::extract::DefaultBodyLimit::max(MESSAGE_BYTES_MAX))
        .with_state(Served { raft, contact })
}

/// What the routes are served over.
#[derive(Clone)]
struct Served {
    raft: Raft<TypeConfig>,
    contact: LeaderContact,
}

/// `Some(421)` when the request names another node than this one.
fn misdirected(raft: &Raft<TypeConfig>, headers: &HeaderMap) -> Option<Response> {
    let target = headers.get(TARGET_HEADER)?.to_str().ok()?.parse::<NodeId>().ok()?;
    let me = raft.metrics().borrow().id;
    (target != me)
        .then(|| (StatusCode::MISDIRECTED_REQUEST, format!("this is node {me}, not {target}")).into_response())
}

async fn append(
    State(Served { raft, contact }): State<Served>,
    headers: HeaderMap,
    Wire(req): Wire<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    let arrived = Instant::now();
    if let Some(refused) = misdirected(&raft, &headers) {
        return refused;
    }
    let leader = *req.vote.leader_id();
    let leader_commit = req.leader_commit.map(|c| c.index);
    let answer = raft.append_entries(req).await;
    // Taken (a conflict too is the leader's word, its vote accepted); a higher vote
    // here means the sender is not the leader any more.
    if answer.as_ref().is_ok_and(|a| !matches!(a, AppendEntriesResponse::HigherVote(_)))
        && let Some(id) = leader.voted_for()
    {
        contact.heard(id, leader.term, arrived);
        if let Some(index) = leader_commit {
            contact.committed(index);
        }
    }
    Wire(answer).into_response()
}

async fn vote(
    State(Served { raft, .. }): State<Served>,
    headers: HeaderMap,
    Wire(req): Wire<VoteRequest<NodeId>>,
) -> Response {
    if let Some(refused) = misdirected(&raft, &headers) {
        return refused;
    }
    Wire(raft.vote(req).await).into_response()
}

async fn snapshot(
    State(Served { raft, contact }): State<Served>,
    headers: HeaderMap,
    Wire(req): Wire<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    let arrived = Instant::now();
    if let Some(refused) = misdirected(&raft, &headers) {
        return refused;
    }
    let vote = req.vote;
    let answer = raft.install_snapshot(req).await;
    // Taken unless this node holds a greater vote (openraft answers with its own).
    if let Ok(response) = &answer
        && response.vote <= vote
        && let Some(id) = vote.leader_id().voted_for()
    {
        contact.heard(id, vote.leader_id().term, arrived);
    }
    Wire(answer).into_response()
}

/// A follower's read-index round (`reads.rs`): this node's commit index once a quorum
/// confirmed it still leads, or why not. The body is the unit message.
async fn read_index(State(Served { raft, .. }): State<Served>, headers: HeaderMap, Wire(()): Wire<()>) -> Response {
    if let Some(refused) = misdirected(&raft, &headers) {
        return refused;
    }
    Wire(crate::reads::leader_read_index(&raft).await).into_response()
}

/// Opens a byte stream to a peer's address (`BasicNode::addr`, `HOST:PORT`): the
/// transport under the HTTP messages.
pub trait Connect: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The stream a connection is.
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;

    /// Connects to `addr`.
    fn connect(&self, addr: &str) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// Plain TCP (tokio's), with Nagle off: what [`Network`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tcp;

impl Connect for Tcp {
    type Stream = TcpStream;

    async fn connect(&self, addr: &str) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Makes a [`Peer`] per target node (openraft keeps one per replication stream),
/// connecting over TCP.
#[derive(Debug, Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, addr: node.addr.clone(), connector: Tcp, conn: None }
    }
}

/// As [`Network`], connecting with `C` instead of TCP (the same messages, the same
/// HTTP, over another stream).
#[derive(Debug, Clone, Default)]
pub struct NetworkOver<C>(pub C);

impl<C: Connect> RaftNetworkFactory<TypeConfig> for NetworkOver<C> {
    type Network = Peer<C>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer<C> {
        Peer { target, addr: node.addr.clone(), connector: self.0.clone(), conn: None }
    }
}

/// One peer's connection, opened on first use and again after a failure.
#[derive(Debug)]
pub struct Peer<C: Connect = Tcp> {
    target: NodeId,
    addr: String,
    connector: C,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Peer {
    /// A connection (opened on first use) to node `target` at `addr`, over TCP.
    pub(crate) fn tcp(target: NodeId, addr: String) -> Peer {
        Peer { target, addr, connector: Tcp, conn: None }
    }
}

/// Why a call to a peer failed before it answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Misdirected(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl<C: Connect> Peer<C> {
    async fn connection(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, CallError> {
        if self.conn.as_ref().is_none_or(SendRequest::is_closed) {
            let stream =
                self.connector.connect(&self.addr).await.map_err(|e| {
                    CallError::Connect(format!("connect to node {} at {}: {e}", self.target, self.addr))
                })?;
            let (sender, connection) =
                http1::handshake(TokioIo::new(stream)).await.map_err(|e| CallError::Connect(e.to_string()))?;
            tokio::spawn(async move {
                // Ends when the sender is dropped or the peer closes; a failure shows
                // up as the error of the request in flight.
                let _ = connection.await;
            });
            self.conn = Some(sender);
        }
        self.conn.as_mut().ok_or_else(|| CallError::Connect("no connection".into()))
    }

    /// The address this peer is reached at.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `req` to `path` and decodes the answer, within `ttl`.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        let body = wire::encode(req).map_err(|e| CallError::Http(e.to_string()))?;
        let addr = self.addr.clone();
        let target = self.target.to_string();
        let attempt = async {
            let conn = self.connection().await?;
            conn.ready().await.map_err(|e| CallError::Http(e.to_string()))?;
            let request = Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(HOST, addr.as_str())
                .header(CONTENT_TYPE, wire::CONTENT_TYPE)
                .header(TARGET_HEADER, target.as_str())
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| CallError::Http(e.to_string()))?;
            let response = conn.send_request(request).await.map_err(|e| CallError::Http(e.to_string()))?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| CallError::Http(e.to_string()))?.to_bytes();
            if status == StatusCode::MISDIRECTED_REQUEST {
                return Err(CallError::Misdirected(format!("{addr} is not node {target}")));
            }
            if status != StatusCode::OK {
                return Err(CallError::Http(format!("{path} answered {status}")));
            }
            wire::decode(&bytes).map_err(|e| CallError::Http(format!("{path}: {e}")))
        };
        let result = match tokio::time::timeout(ttl, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout(ttl)),
        };
        if result.is_err() {
            self.conn = None; // a fresh connection next time
        }
        result
    }

    fn failed<E: std::error::Error>(&self, e: &CallError) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Connect(_) | CallError::Timeout(_) | CallError::Misdirected(_) => {
                RPCError::Unreachable(Unreachable::new(e))
            }
            CallError::Http(_) => RPCError::Network(NetworkError::new(e)),
        }
    }
}

impl<C: Connect> RaftNetwork<TypeConfig> for Peer<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let answer: Result<_, RaftError<NodeId>> =
            self.call("/raft/append", &rpc, option.hard_ttl()).await.map_err(|e| self.failed(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let answer: Result<_, RaftError<NodeId, InstallSnapshotError>> =
            self.call("/raft/snapshot", &rpc, option.hard_ttl()).await.map_err(|e| self.failed(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let answer: Result<_, RaftError<NodeId>> =
            self.call("/raft/vote", &rpc, option.hard_ttl()).await.map_err(|e| self.failed(&e))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}
