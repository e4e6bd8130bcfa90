//! `GET /v1/cluster`: this node's view of the replicated ledger (cluster mode); a
//! platform admin's membership changes: `POST /v1/cluster/members` adds a node,
//! `DELETE /v1/cluster/members/{id}` removes a voter, `POST /v1/cluster/replace`
//! replaces a voter by a new node. Each runs on the leader (a follower forwards it, as
//! every write), answers `/v1/cluster`'s body with the new voters, and is audited
//! (`cluster.add`, `cluster.remove`, `cluster.replace`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::{delete, get, post};
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::cluster::{Cluster, ClusterStatus};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath};
use ledger_raft::NodeId;
use ledger_raft::node::MembershipError;

/// How long an addition or a replacement waits for the new node to catch up (under
/// the 30 s a follower waits for a forwarded request).
const CATCH_UP_SECS_MAX: u64 = 25;

/// `GET /v1/cluster`: node id, the leader it knows of, term, members, applied seq. A
/// service not started in cluster mode answers 404.
async fn cluster(State(state): State<AppState>) -> ApiResult<Json<ClusterStatus>> {
    Ok(Json(cluster_of(&state)?.status()))
}

/// A voter to replace, and the node that takes its place.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMember {
    /// The voter leaving (a machine lost, or retired).
    #[schema(minimum = 1)]
    old_id: u64,
    /// The new node's id: never an id the cluster used before (a wiped machine comes
    /// back under a new one).
    #[schema(minimum = 1)]
    new_id: u64,
    /// The new node's replication address, `HOST:PORT` (its `--peers` entry; it was
    /// started with `--join`).
    #[schema(max_length = 255)]
    address: String,
}

/// A node to add: started with `--join`, it takes no part until added.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The new node's id: never an id the cluster used before (a removed or wiped
    /// machine comes back under a new one).
    #[schema(minimum = 1)]
    id: u64,
    /// The new node's replication address, `HOST:PORT` (its `--peers` entry).
    #[schema(max_length = 255)]
    address: String,
}

/// The cluster of a service in cluster mode; 404 on a single node.
fn cluster_of(state: &AppState) -> ApiResult<std::sync::Arc<Cluster>> {
    state
        .cluster
        .clone()
        .ok_or_else(|| ApiError::not_found("this service is a single node: start it with --node-id and --peers"))
}

/// 400 unless `id` is a node id (they start at 1) and `address` (when given) fits.
fn check_member(param: &'static str, id: u64, address: Option<&str>) -> ApiResult<()> {
    if id == 0 {
        return Err(ApiError::invalid("invalid_member", "node ids start at 1").with_param(param));
    }
    if address.is_some_and(|a| a.len() > 255) {
        return Err(ApiError::invalid("invalid_member", "the address is too long").with_param("address"));
    }
    Ok(())
}

/// The answer to a membership change that failed or was refused (nothing changed,
/// but a new node that did not catch up stays a learner).
fn membership_error(e: MembershipError) -> ApiError {
    match e {
        MembershipError::NotLeader(_) => ApiError::no_leader(),
        MembershipError::Invalid(why) => ApiError::invalid("invalid_member", why),
        MembershipError::CatchUp(why) => ApiError::conflict("invalid_request_error", "not_caught_up", why),
        other => ApiError::conflict("api_error", "membership_failed", other.to_string()),
    }
}

/// Audits a membership change (`action` on `node:ID`): `ok`, or `refused` (nothing
/// changed) or `failed` (a new node may stay a learner) with the reason; a request that
/// found no leader changed nothing and is not audited. Answers this node's view of the
/// cluster, or the error.
async fn audited(
    state: &AppState,
    cluster: &Cluster,
    principal: Principal,
    action: &'static str,
    node: u64,
    result: Result<Vec<NodeId>, MembershipError>,
) -> ApiResult<Json<ClusterStatus>> {
    let entry = audit::Entry::by(&principal, action, "node", node);
    let entry = match &result {
        Ok(voters) => {
            tracing::info!(action, node, ?voters, "the voters changed");
            entry.detail(serde_json::json!({ "voters": voters }))
        }
        Err(MembershipError::NotLeader(_)) => return Err(ApiError::no_leader()),
        Err(e @ MembershipError::Invalid(_)) => {
            entry.outcome("refused").detail(serde_json::json!({ "error": e.to_string() }))
        }
        Err(e) => entry.outcome("failed").detail(serde_json::json!({ "error": e.to_string() })),
    };
    state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            audit::append(&tx, &[entry])?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    result.map_err(membership_error)?;
    Ok(Json(cluster.status()))
}

/// `POST /v1/cluster/replace`: adds the new node as a learner, waits until it caught
/// up (the leader's snapshot and the log after it), then makes it a voter in the old
/// one's place. On the leader (a follower forwards it). Platform admins only; audited.
async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<ReplaceMember>,
) -> ApiResult<Json<ClusterStatus>> {
    principal.require_user(Role::Admin)?;
    let cluster = cluster_of(&state)?;
    check_member("old_id", req.old_id, None)?;
    check_member("new_id", req.new_id, Some(&req.address))?;
    let catch_up = Duration::from_secs(CATCH_UP_SECS_MAX);
    let result = cluster.node().replace_member(req.old_id, req.new_id, req.address, catch_up).await;
    audited(&state, &cluster, principal, "cluster.replace", req.new_id, result).await
}

/// `POST /v1/cluster/members`: adds the node as a learner, waits until it caught up,
/// then makes it a voter. On the leader (a follower forwards it). Platform admins
/// only; audited.
async fn add(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<AddMember>,
) -> ApiResult<Json<ClusterStatus>> {
    principal.require_user(Role::Admin)?;
    let cluster = cluster_of(&state)?;
    check_member("id", req.id, Some(&req.address))?;
    let catch_up = Duration::from_secs(CATCH_UP_SECS_MAX);
    let result = cluster.node().add_member(req.id, req.address, catch_up).await;
    audited(&state, &cluster, principal, "cluster.add", req.id, result).await
}

/// `DELETE /v1/cluster/members/{id}`: removes a voter (never the last). On the leader,
/// which may remove itself: it answers, then steps down, and the others elect a leader
/// among them (`Node::remove_member`). The removed node is to be stopped; it never
/// comes back under its id. Platform admins only; audited.
async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<u64>,
) -> ApiResult<Json<ClusterStatus>> {
    principal.require_user(Role::Admin)?;
    let cluster = cluster_of(&state)?;
    check_member("id", id, None)?;
    let result = cluster.node().remove_member(id).await;
    audited(&state, &cluster, principal, "cluster.remove", id, result).await
}

/// What adding or replacing a node may answer besides its access's and body's errors.
const JOIN_ERRORS: &[(u16, &str)] = &[
    (400, "invalid_member"),
    (404, "not_found"),
    (409, "not_caught_up"),
    (409, "membership_failed"),
    (503, "no_leader"),
];

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::GET,
            "/v1/cluster",
            Access::Public,
            "This node's view of the replicated ledger: its id, the leader, term, members, applied seq",
            get(cluster),
        )
        .returns::<ClusterStatus>()
        .errors(&[(404, "not_found")]),
        Endpoint::new(
            Method::POST,
            "/v1/cluster/members",
            Access::platform(Role::Admin),
            "Add a node (started with --join) to the voters of the replicated ledger, once it caught up",
            post(add),
        )
        .body::<AddMember>()
        .returns::<ClusterStatus>()
        .answers(200)
        .errors(JOIN_ERRORS),
        Endpoint::new(
            Method::DELETE,
            "/v1/cluster/members/{id}",
            Access::platform(Role::Admin),
            "Remove a voter from the replicated ledger (the leader too: it steps down); stop the removed node",
            delete(remove),
        )
        .returns::<ClusterStatus>()
        .errors(&[(400, "invalid_member"), (404, "not_found"), (409, "membership_failed"), (503, "no_leader")]),
        Endpoint::new(
            Method::POST,
            "/v1/cluster/replace",
            Access::platform(Role::Admin),
            "Replace a voter of the replicated ledger by a new node (started with --join), once it caught up",
            post(replace),
        )
        .body::<ReplaceMember>()
        .returns::<ClusterStatus>()
        .answers(200)
        .errors(JOIN_ERRORS),
    ]
}
