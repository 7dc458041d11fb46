//! The node's HTTP surface: one router for the public API, the health endpoints and the peer endpoints.
//!
//! - [`error`]: errors as problem+json, and the extractors that turn bad input into 4xx problems.
//! - [`locks`]: the `/v1/locks` routes.
//! - [`queues`]: the `/v1/queues` and `/v1/ring` routes.
//! - [`cache`]: the `/v1/cache` routes.
//! - [`node`]: `/healthz`, `/readyz`, `/metrics`, `/v1/status`.
//!
//! Every request goes through, outermost first: panic capture (500 problem; a panic is a bug, never an answer),
//! tracing with the matched route, the metrics recorder, then a concurrency limit and a timeout (504 problem):
//! one pair for the public routes, another for the peer routes (`/internal/...`), so neither can starve the other.

pub mod cache;
pub mod error;
pub mod locks;
pub mod node;
pub mod queues;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{BoxError, Router};
use syncd_api::ErrorCode;
use syncd_cache::CacheService;
use syncd_locks::LockService;
use syncd_queues::QueueService;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::timeout::TimeoutLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::cli::Role;
use crate::metrics::Metrics;
use error::problem_response;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// This node's id.
    pub node_id: u64,
    /// The roles this node runs.
    pub roles: Vec<Role>,
    /// The lock role, when it runs.
    pub locks: Option<Arc<LockService>>,
    /// The queue role, when it runs.
    pub queues: Option<Arc<QueueService>>,
    /// The cache role, when it runs.
    pub cache: Option<Arc<CacheService>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
}

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest lock call body.
    pub max_lock_body_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Requests served at once.
    pub max_concurrent_requests: usize,
    /// Longest a peer request may take.
    pub peer_request_timeout: Duration,
    /// Peer requests served at once.
    pub max_concurrent_peer_requests: usize,
    /// Queue body limits.
    pub queues: queues::QueueLimits,
    /// Largest cache value.
    pub max_cache_value_bytes: usize,
}

/// The whole router of a node.
pub fn app(state: AppState, limits: &Limits) -> Router {
    let mut public = Router::new().merge(node::routes(state.clone()));
    let mut peers = Router::new();
    if let Some(locks) = &state.locks {
        public = public.merge(locks::routes(locks.clone(), limits.max_lock_body_bytes));
        peers = peers.merge(syncd_locks::peer_api::router(locks.clone()));
    }
    if let Some(q) = &state.queues {
        public = public.merge(queues::routes(q.clone(), limits.queues));
        peers = peers.merge(syncd_queues::peer_api::router(q.clone()));
    }
    if let Some(c) = &state.cache {
        public = public.merge(cache::routes(c.clone(), limits.max_cache_value_bytes));
        peers = peers.merge(syncd_cache::peer_api::router(c.clone()));
    }
    // Clients and peers get separate budgets: thousands of waiting acquires must never hold the slots raft
    // heartbeats and votes need, or the leader loses its leadership to its own clients.
    let public = budget(
        public,
        limits.request_timeout,
        limits.max_concurrent_requests,
    );
    let peers = budget(
        peers,
        limits.peer_request_timeout,
        limits.max_concurrent_peer_requests,
    );
    public
        .merge(peers)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            record,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            tracing::info_span!("http", method = %req.method(), uri = %req.uri(), route)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            problem_response(ErrorCode::Internal, "internal error; see the server log")
        }))
}

/// Bounds the routes of `router`: at most `concurrency` at once (more wait for a slot), each answered 504 after
/// `timeout`.
fn budget(router: Router, timeout: Duration, concurrency: usize) -> Router {
    router
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: BoxError| async move {
                    if e.is::<tower::timeout::error::Elapsed>() {
                        problem_response(ErrorCode::Timeout, "the request took too long")
                    } else {
                        tracing::error!(error = %e, "request failed in a middleware");
                        problem_response(ErrorCode::Internal, "internal error; see the server log")
                    }
                }))
                .layer(TimeoutLayer::new(timeout)),
        )
        .layer(GlobalConcurrencyLimitLayer::new(concurrency))
}

async fn not_found() -> Response {
    problem_response(ErrorCode::NotFound, "no such route").into_response()
}

async fn method_not_allowed() -> Response {
    problem_response(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Records the route template (not the raw path, which would explode label cardinality), status and latency.
async fn record(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
