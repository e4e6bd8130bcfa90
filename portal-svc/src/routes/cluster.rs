//! `GET /v1/cluster`: this node's view of the replicated ledger (cluster mode), and
//! `POST /v1/cluster/replace`: a platform admin replaces a voter by a new node.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::audit;
use crate::auth::{Principal, Role};
use crate::cluster::ClusterStatus;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use ledger_raft::node::MembershipError;

/// How long a replacement waits for the new node to catch up (under the 30 s a
/// follower waits for a forwarded request).
const CATCH_UP_SECS_MAX: u64 = 25;

/// `GET /v1/cluster`: node id, the leader it knows of, term, members, applied seq. A
/// service not started in cluster mode answers 404.
async fn cluster(State(state): State<AppState>) -> ApiResult<Json<ClusterStatus>> {
    let cluster = state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this service is a single node: start it with --node-id and --peers"))?;
    Ok(Json(cluster.status()))
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

/// `POST /v1/cluster/replace`: adds the new node as a learner, waits until it caught
/// up (the leader's snapshot and the log after it), then makes it a voter in the old
/// one's place. On the leader (a follower forwards it). Platform admins only; audited.
async fn replace(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(req): ApiJson<ReplaceMember>,
) -> ApiResult<Json<ClusterStatus>> {
    principal.require_user(Role::Admin)?;
    let cluster = state
        .cluster
        .clone()
        .ok_or_else(|| ApiError::not_found("this service is a single node: start it with --node-id and --peers"))?;
    if req.old_id == 0 || req.new_id == 0 {
        return Err(ApiError::invalid("invalid_member", "node ids start at 1").with_param("new_id"));
    }
    if req.address.len() > 255 {
        return Err(ApiError::invalid("invalid_member", "the address is too long").with_param("address"));
    }
    let catch_up = Duration::from_secs(CATCH_UP_SECS_MAX);
    let voters = cluster.node().replace_member(req.old_id, req.new_id, req.address.clone(), catch_up).await.map_err(
        |e| match e {
            MembershipError::NotLeader(_) => ApiError::no_leader(),
            MembershipError::Invalid(why) => ApiError::invalid("invalid_member", why),
            MembershipError::CatchUp(why) => ApiError::conflict("invalid_request_error", "not_caught_up", why),
            other => ApiError::conflict("api_error", "membership_failed", other.to_string()),
        },
    )?;
    tracing::info!(old = req.old_id, new = req.new_id, ?voters, "a voter was replaced");
    let resource = format!("node:{}", req.new_id);
    state
        .db
        .call(move |conn| {
            let tx = crate::db::write_tx(conn)?;
            audit::record_in(&tx, &principal, None, "cluster.replace", &resource)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(Json(cluster.status()))
}

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
            "/v1/cluster/replace",
            Access::platform(Role::Admin),
            "Replace a voter of the replicated ledger by a new node (started with --join), once it caught up",
            post(replace),
        )
        .body::<ReplaceMember>()
        .returns::<ClusterStatus>()
        .errors(&[
            (400, "invalid_member"),
            (404, "not_found"),
            (409, "not_caught_up"),
            (409, "membership_failed"),
            (503, "no_leader"),
        ]),
    ]
}
