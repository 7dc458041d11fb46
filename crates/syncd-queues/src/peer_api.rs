//! The queue role's peer routes (`/internal/queues/...`, `/internal/ring`, and the control group's), server side.
//!
//! Errors are problem+json with the same codes as the public API, so a forwarded operation's error reaches the
//! client unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use syncd_api::Problem;
use syncd_api::problem::PROBLEM_JSON;
use syncd_api::queues::RingChange;

use crate::control::{self, Heartbeat};
use crate::error::QueueError;
use crate::service::QueueService;
use crate::wire::{AppendRequest, OpRequest, paths};

/// Replication batches and forwarded batches of 1 MiB messages are far larger than one public call.
const PEER_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// The peer routes of the queue role.
pub fn router(service: Arc<QueueService>) -> Router {
    let group = syncd_raft::routes::router(service.group().clone());
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::OP, post(op))
        .route(paths::SHARDS, get(shards))
        .route(paths::RING, post(ring))
        .route(control::HEARTBEAT, post(heartbeat))
        .layer(DefaultBodyLimit::max(PEER_BODY_LIMIT))
        .with_state(service)
        .merge(group)
}

type Svc = State<Arc<QueueService>>;

/// A queue error as a problem+json response.
pub fn problem(e: &QueueError) -> Response {
    if let QueueError::Internal(detail) = e {
        tracing::error!(%detail, "internal error in the queue role");
    }
    let shown = match e {
        QueueError::Internal(_) => "internal error; see the server log".to_owned(),
        other => other.to_string(),
    };
    let problem = Problem::new(e.code(), shown);
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(CONTENT_TYPE, PROBLEM_JSON)], Json(problem)).into_response()
}

/// Runs a handler's work in its own task: a caller that gives up (a replication call timing out) drops the
/// handler future, and a truncation or snapshot install cut off half-way would leave memory and disk apart.
pub async fn detached<T, F>(work: F) -> Result<T, QueueError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, QueueError>> + Send + 'static,
{
    tokio::spawn(work)
        .await
        .map_err(|e| QueueError::Internal(format!("a queue task failed: {e}")))?
}

fn answer<T: serde::Serialize>(result: Result<T, QueueError>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => problem(&e),
    }
}

async fn append(State(s): Svc, Json(request): Json<AppendRequest>) -> Response {
    answer(detached(async move { s.on_append(request).await }).await)
}

async fn heartbeat(State(s): Svc, Json(beat): Json<Heartbeat>) -> Response {
    Json(s.on_heartbeat(beat).await).into_response()
}

async fn op(State(s): Svc, Json(request): Json<OpRequest>) -> Response {
    answer(detached(async move { s.on_op(request).await }).await)
}

async fn shards(State(s): Svc) -> Response {
    Json(s.on_shards()).into_response()
}

/// `POST /internal/ring`: `{"members":[...]}`, plus `"addrs":{"3":"127.0.0.1:7083"}` for new static members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingRequest {
    members: Vec<u64>,
    #[serde(default)]
    addrs: BTreeMap<u64, String>,
}

async fn ring(State(s): Svc, body: axum::body::Bytes) -> Response {
    let request: RingRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return problem(&QueueError::Invalid(format!("invalid ring change: {e}"))),
    };
    answer(
        s.change_ring(
            RingChange {
                members: request.members,
            },
            request.addrs,
        )
        .await,
    )
}
