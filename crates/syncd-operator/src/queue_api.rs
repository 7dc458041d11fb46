//! How the operator talks to a cluster's queue pods: each pod's ring view and ring changes, over the pods'
//! stable DNS names behind the headless Service (which publishes pods before they are ready: a queue pod is
//! ready only once the ring exists). A trait, so reconcile tests can stand a fake in for the network.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use syncd_client::Client;

use crate::queuering::RingView;

/// The queue pods of one SyncCluster.
pub trait QueueRingApi: Send + Sync {
    /// Pod `endpoint`'s view of the ring; `Err` with a readable reason when it cannot be asked.
    fn ring_view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<RingView, String>>;
    /// Asks the pod at `endpoint` to set the ring to `members` (it spreads the change to the others).
    fn set_ring<'a>(
        &'a self,
        endpoint: &'a str,
        members: &'a [u64],
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The real thing: HTTP through `syncd-client`.
#[derive(Debug, Default, Clone)]
pub struct HttpQueueRing;

impl QueueRingApi for HttpQueueRing {
    fn ring_view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<RingView, String>> {
        Box::pin(async move {
            let ring = Client::new(endpoint)
                .with_timeout(Duration::from_secs(3))
                .ring()
                .await
                .map_err(|e| format!("cannot reach the queue pod at {endpoint}: {e}"))?;
            Ok(RingView {
                epoch: ring.epoch,
                members: ring.members.into_iter().collect(),
                pending_handoffs: ring.pending_handoffs,
                leaders: ring.leaders,
            })
        })
    }

    fn set_ring<'a>(
        &'a self,
        endpoint: &'a str,
        members: &'a [u64],
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            Client::new(endpoint)
                .with_timeout(Duration::from_secs(10))
                .change_ring(members, &BTreeMap::new())
                .await
                .map(|_| ())
                .map_err(|e| format!("setting the queue ring to {members:?} failed: {e}"))
        })
    }
}
