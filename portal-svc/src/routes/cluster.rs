//! `GET /v1/cluster`: this node's view of the replicated ledger (cluster mode).

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use axum::routing::get;

use crate::api::{Access, Endpoint};
use crate::app::AppState;
use crate::cluster::ClusterStatus;
use crate::error::{ApiError, ApiResult};

/// `GET /v1/cluster`: node id, the leader it knows of, term, members, applied seq. A
/// service not started in cluster mode answers 404.
async fn cluster(State(state): State<AppState>) -> ApiResult<Json<ClusterStatus>> {
    let cluster = state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this service is a single node: start it with --node-id and --peers"))?;
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
    ]
}
