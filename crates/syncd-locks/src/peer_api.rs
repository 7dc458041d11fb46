//! The lock group's peer routes: raft RPCs under `/internal/raft`, forwarded writes, read indexes, membership
//! changes and the hand-over hook under `/internal/locks` (paths the operator and the pod spec rely on).

use std::sync::Arc;

use axum::Router;
use syncd_raft::Paths;

use crate::service::LockService;

/// The lock group's endpoints.
pub fn paths() -> Paths {
    Paths::new("/internal/raft", "/internal/locks")
}

/// The peer routes of the lock role.
pub fn router(service: Arc<LockService>) -> Router {
    syncd_raft::routes::router(service.group().clone())
}
