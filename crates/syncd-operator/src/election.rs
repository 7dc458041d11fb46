//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager, server-side apply), so several
//! operator replicas can run and exactly one reconciles.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

/// The Lease's name.
pub const LEASE_NAME: &str = "syncd-operator-leader";

/// Starts contending for the lease in `namespace`. The receiver turns true while this replica leads. The
/// background task keeps renewing as long as a receiver lives; once every receiver is dropped it releases the
/// lease (so a standby takes over at once instead of waiting out the lease) and ends: await it before exiting.
pub async fn contend(
    client: Client,
    namespace: &str,
    identity: &str,
) -> anyhow::Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>)> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    let task = tokio::spawn(async move {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "leader election stopped"),
            Err(e) => tracing::error!(error = %e, "leader election task failed"),
        }
    });
    Ok((leading, task))
}
