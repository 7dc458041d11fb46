//! The raft transport, server side, and the leader's endpoints for forwarded writes, read indexes and membership
//! changes, at the paths of the group ([`crate::Paths`]).
//!
//! These routes are for peers only (`/internal/...`); they carry raft's own JSON types.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use syncd_api::problem::PROBLEM_JSON;
use syncd_api::{ErrorCode, Problem};

use crate::group::{
    Group, GroupError, MembershipChange, MembershipReply, ReadIndexReply, WriteReply,
};
use crate::machine::Machine;
use crate::types::{NodeId, Types};

/// Raft batches and snapshot chunks can be far larger than a public call.
const PEER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The peer routes of `group`.
pub fn router<M: Machine>(group: Arc<Group<M>>) -> Router {
    let paths = group.paths().clone();
    Router::new()
        .route(&paths.append, post(append::<M>))
        .route(&paths.vote, post(vote::<M>))
        .route(&paths.snapshot, post(snapshot::<M>))
        .route(&paths.elect, post(elect::<M>))
        .route(&paths.hand_over, get(hand_over::<M>))
        .route(&paths.write, post(write::<M>))
        .route(&paths.read_index, post(read_index::<M>))
        .route(&paths.membership, post(membership::<M>))
        .route(&paths.membership_on_leader, post(membership_on_leader::<M>))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT))
        .with_state(group)
}

type Svc<M> = State<Arc<Group<M>>>;

async fn append<M: Machine>(
    State(s): Svc<M>,
    Json(req): Json<AppendEntriesRequest<Types<M>>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(s.raft().append_entries(req).await)
}

async fn vote<M: Machine>(
    State(s): Svc<M>,
    Json(req): Json<VoteRequest<NodeId>>,
) -> Json<Result<VoteResponse<NodeId>, RaftError<NodeId>>> {
    if !s.may_vote(req.last_log_id.map(|l| l.index)) {
        // Refused without touching raft: this node's votes are not to be trusted yet (see `may_vote`).
        let m = s.raft().metrics().borrow().clone();
        tracing::info!(candidate = %req.vote, "vote refused until this node has rejoined");
        return Json(Ok(VoteResponse {
            vote: m.vote,
            vote_granted: false,
            last_log_id: m.last_applied,
        }));
    }
    Json(s.raft().vote(req).await)
}

async fn snapshot<M: Machine>(
    State(s): Svc<M>,
    Json(req): Json<InstallSnapshotRequest<Types<M>>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(s.raft().install_snapshot(req).await)
}

/// Campaign now: the old leader calls this on its successor during a hand-over.
async fn elect<M: Machine>(State(s): Svc<M>) -> Json<bool> {
    Json(s.raft().trigger().elect().await.is_ok())
}

/// Hands leadership over if this node leads (the preStop hook); answers once another node leads or it gave up.
async fn hand_over<M: Machine>(State(s): Svc<M>) -> Json<serde_json::Value> {
    let handed_over = s.hand_over().await;
    Json(serde_json::json!({ "leader_elsewhere": handed_over }))
}

async fn write<M: Machine>(
    State(s): Svc<M>,
    Json(command): Json<M::Command>,
) -> Json<WriteReply<M::Outcome>> {
    Json(s.write_local(command).await)
}

async fn read_index<M: Machine>(State(s): Svc<M>) -> Json<ReadIndexReply> {
    Json(s.read_index_local().await)
}

/// Membership changes from the operator: any node accepts them and forwards to the leader. Answers like the
/// public API: 200 `{"done":true}`, or a problem+json to retry.
async fn membership<M: Machine>(
    State(s): Svc<M>,
    Json(change): Json<MembershipChange>,
) -> Response {
    match s.change_membership(&change).await {
        Ok(()) => Json(serde_json::json!({"done": true})).into_response(),
        Err(e) => {
            let code = match e {
                GroupError::Unavailable(_) => ErrorCode::Unavailable,
                GroupError::Internal(_) => ErrorCode::Internal,
            };
            let problem = Problem::new(code, e.to_string());
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, [(CONTENT_TYPE, PROBLEM_JSON)], Json(problem)).into_response()
        }
    }
}

async fn membership_on_leader<M: Machine>(
    State(s): Svc<M>,
    Json(change): Json<MembershipChange>,
) -> Json<MembershipReply> {
    Json(s.change_membership_local(&change).await)
}
