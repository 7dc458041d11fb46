//! Test fixtures: a SyncCluster with the identity the API server would give it, and a build context.

use kube::api::ObjectMeta;

use super::BuildContext;
use crate::crd::{CacheSpec, LocksSpec, QueuesSpec, SyncCluster, SyncClusterSpec};

/// The namespace every fixture lives in.
pub const NAMESPACE: &str = "syncd-test";

/// A SyncCluster named `name` in [`NAMESPACE`] with a uid and the default spec (3 replicas each, no image).
pub fn cluster(name: &str) -> SyncCluster {
    let spec = SyncClusterSpec {
        image: None,
        image_pull_policy: None,
        locks: LocksSpec::default(),
        queues: QueuesSpec::default(),
        cache: CacheSpec::default(),
    };
    let mut cluster = SyncCluster::new(name, spec);
    cluster.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(NAMESPACE.to_owned()),
        uid: Some("6a0e1f4c-2b7d-4a39-9d51-0c6f2e8b7a10".to_owned()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    cluster
}

/// The operator's context: default image `syncd:0.1.0`, namespace [`NAMESPACE`].
pub fn ctx() -> BuildContext {
    BuildContext {
        default_image: "syncd:0.1.0".to_owned(),
        namespace: NAMESPACE.to_owned(),
    }
}
