//! The raft transport, server side, and the leader's endpoints for forwarded writes and read indexes.
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
use syncd_api::Problem;
use syncd_api::problem::PROBLEM_JSON;
use syncd_lock_table::Command;

use crate::network::paths;
use crate::service::{LockService, MembershipChange, MembershipReply, ReadIndexReply, WriteReply};
use crate::types::{NodeId, TypeConfig};

/// Raft batches and snapshot chunks can be far larger than a public lock call.
const PEER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The peer routes of the lock role.
pub fn router(service: Arc<LockService>) -> Router {
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::SNAPSHOT, post(snapshot))
        .route(paths::ELECT, post(elect))
        .route(paths::HAND_OVER, get(hand_over))
        .route(paths::WRITE, post(write))
        .route(paths::READ_INDEX, post(read_index))
        .route(paths::MEMBERSHIP, post(membership))
        .route(paths::MEMBERSHIP_ON_LEADER, post(membership_on_leader))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT))
        .with_state(service)
}

type Svc = State<Arc<LockService>>;

async fn append(
    State(s): Svc,
    Json(req): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(s.raft().append_entries(req).await)
}

async fn vote(
    State(s): Svc,
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

async fn snapshot(
    State(s): Svc,
    Json(req): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>> {
    Json(s.raft().install_snapshot(req).await)
}

/// Campaign now: the old leader calls this on its successor during a hand-over.
async fn elect(State(s): Svc) -> Json<bool> {
    Json(s.raft().trigger().elect().await.is_ok())
}

/// Hands leadership over if this node leads (the preStop hook); answers once another node leads or it gave up.
async fn hand_over(State(s): Svc) -> Json<serde_json::Value> {
    let handed_over = s.hand_over().await;
    Json(serde_json::json!({ "leader_elsewhere": handed_over }))
}

async fn write(State(s): Svc, Json(command): Json<Command>) -> Json<WriteReply> {
    Json(s.write_local(command).await)
}

async fn read_index(State(s): Svc) -> Json<ReadIndexReply> {
    Json(s.read_index_local().await)
}

/// Membership changes from the operator: any node accepts them and forwards to the leader. Answers like the
/// public API: 200 `{"done":true}`, or a problem+json to retry.
async fn membership(State(s): Svc, Json(change): Json<MembershipChange>) -> Response {
    match s.change_membership(&change).await {
        Ok(()) => Json(serde_json::json!({"done": true})).into_response(),
        Err(e) => {
            let problem = Problem::new(e.code(), e.to_string());
            let status =
                StatusCode::from_u16(problem.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            (status, [(CONTENT_TYPE, PROBLEM_JSON)], Json(problem)).into_response()
        }
    }
}

async fn membership_on_leader(
    State(s): Svc,
    Json(change): Json<MembershipChange>,
) -> Json<MembershipReply> {
    Json(s.change_membership_local(&change).await)
}
