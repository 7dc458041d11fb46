//! `/v1/locks`: validation and the mapping to the lock service. The semantics live in `syncd-locks`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockInfo, LockList, MAX_TTL_MS, MAX_WAIT_MS, ReleaseRequest,
    ReleaseResponse, RenewRequest, RenewResponse,
};
use syncd_api::names::validate_name;
use syncd_locks::LockService;

use super::error::{ApiError, ApiJson, ResourceName};

/// The lock routes, with their own body limit.
pub fn routes<S: Clone + Send + Sync + 'static>(
    locks: Arc<LockService>,
    body_limit: usize,
) -> Router<S> {
    Router::new()
        .route("/v1/locks", get(list))
        .route("/v1/locks/{name}", get(get_one))
        .route("/v1/locks/{name}/acquire", post(acquire))
        .route("/v1/locks/{name}/release", post(release))
        .route("/v1/locks/{name}/renew", post(renew))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(locks)
}

type Locks = State<Arc<LockService>>;

fn check_owner(owner: &str) -> Result<(), ApiError> {
    validate_name(owner).map_err(|e| ApiError::invalid(format!("owner {e}")))
}

fn check_ttl(ttl_ms: u64) -> Result<(), ApiError> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(ApiError::invalid(format!(
            "ttl_ms must be between 1 and {MAX_TTL_MS}, got {ttl_ms}"
        )));
    }
    Ok(())
}

async fn acquire(
    State(locks): Locks,
    ResourceName(name): ResourceName,
    ApiJson(req): ApiJson<AcquireRequest>,
) -> Result<Json<AcquireResponse>, ApiError> {
    check_owner(&req.owner)?;
    check_ttl(req.ttl_ms)?;
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::invalid(format!(
            "wait_ms must be at most {MAX_WAIT_MS}, got {}",
            req.wait_ms
        )));
    }
    Ok(Json(locks.acquire(&name, &req).await?))
}

async fn release(
    State(locks): Locks,
    ResourceName(name): ResourceName,
    ApiJson(req): ApiJson<ReleaseRequest>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    check_owner(&req.owner)?;
    locks.release(&name, &req).await?;
    Ok(Json(ReleaseResponse { released: true }))
}

async fn renew(
    State(locks): Locks,
    ResourceName(name): ResourceName,
    ApiJson(req): ApiJson<RenewRequest>,
) -> Result<Json<RenewResponse>, ApiError> {
    check_owner(&req.owner)?;
    check_ttl(req.ttl_ms)?;
    Ok(Json(locks.renew(&name, &req).await?))
}

async fn get_one(
    State(locks): Locks,
    ResourceName(name): ResourceName,
) -> Result<Json<LockInfo>, ApiError> {
    Ok(Json(locks.get(&name).await?))
}

async fn list(State(locks): Locks) -> Result<Json<LockList>, ApiError> {
    Ok(Json(locks.list().await?))
}
