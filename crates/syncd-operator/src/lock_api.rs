//! How the operator talks to a cluster's lock service: its raft view and membership changes, over the lock
//! client Service. A trait, so reconcile tests can stand a fake in for the network.

use std::time::Duration;

use futures::future::BoxFuture;
use syncd_api::locks::MembershipChange;
use syncd_client::Client;

use crate::lockgroup::RaftView;

/// The lock service of one SyncCluster, reached at `endpoint` (`http://host:port`).
pub trait LockGroupApi: Send + Sync {
    /// The raft group as any lock node reports it; `Err` with a readable reason when it cannot be asked.
    fn raft_view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<RaftView, String>>;
    /// Applies a membership change (any node forwards it to the leader).
    fn change<'a>(
        &'a self,
        endpoint: &'a str,
        change: &'a MembershipChange,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The real thing: HTTP through `syncd-client`.
#[derive(Debug, Default, Clone)]
pub struct HttpLockGroup;

impl LockGroupApi for HttpLockGroup {
    fn raft_view<'a>(&'a self, endpoint: &'a str) -> BoxFuture<'a, Result<RaftView, String>> {
        Box::pin(async move {
            let client = Client::new(endpoint).with_timeout(Duration::from_secs(3));
            let status = client
                .status()
                .await
                .map_err(|e| format!("cannot reach the lock service at {endpoint}: {e}"))?;
            let locks = status
                .locks
                .ok_or_else(|| format!("{endpoint} does not run the lock role"))?;
            Ok(RaftView {
                voters: locks.members.into_iter().collect(),
                learners: locks.learners.into_iter().collect(),
                leader: locks.leader,
                term: locks.term,
            })
        })
    }

    fn change<'a>(
        &'a self,
        endpoint: &'a str,
        change: &'a MembershipChange,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            Client::new(endpoint)
                .change_lock_membership(change)
                .await
                .map_err(|e| format!("membership change {change:?} failed: {e}"))
        })
    }
}
