//! `/healthz`, `/readyz`, `/metrics` and `/v1/status`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use syncd_api::ErrorCode;
use syncd_api::status::NodeStatus;

use super::AppState;
use super::error::problem_response;

/// The node-level routes.
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .with_state(state)
}

/// The process is up and answering.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// 200 once every role of the node can serve, 503 otherwise.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(locks) = &state.locks
        && !locks.is_ready()
    {
        return problem_response(ErrorCode::Unavailable, "the lock role has no leader yet");
    }
    if let Some(queues) = &state.queues
        && !queues.is_ready()
    {
        return problem_response(ErrorCode::Unavailable, "the queue ring is not formed yet");
    }
    if let Some(cache) = &state.cache
        && !cache.ready()
    {
        return problem_response(
            ErrorCode::Unavailable,
            "the cache role is waiting out its start-up grace period",
        );
    }
    Json(serde_json::json!({"status": "ready"})).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(state.locks.as_deref());
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Json<NodeStatus> {
    Json(NodeStatus {
        id: state.node_id,
        roles: state.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        locks: state.locks.as_ref().map(|l| l.status()),
        queues: state.queues.as_ref().map(|q| q.status()),
        cache: state.cache.as_ref().map(|c| c.status()),
    })
}
