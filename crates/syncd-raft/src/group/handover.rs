//! Shutdown and leadership hand-over (the pod's preStop hook and SIGTERM).

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::Group;
use crate::machine::Machine;
use crate::types::NodeId;

impl<M: Machine> Group<M> {
    /// Stops the node: with `hand_over`, a leader first hands leadership over ([`Self::hand_over`]); without it
    /// (the whole cluster is stopping) raft just stops.
    pub async fn shutdown(&self, hand_over: bool) {
        self.begin_shutdown();
        if hand_over {
            self.hand_over().await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }

    /// Hands leadership to the most up-to-date follower, if this node leads; returns whether another node leads
    /// now. Used by the pod's preStop hook and on SIGTERM.
    ///
    /// openraft 0.9 has no leadership transfer, and followers refuse votes while they hear from a leader (its
    /// lease). So the leader goes quiet: it refuses new writes, stops heartbeats and its own campaigns, waits out
    /// its lease, then asks the chosen follower to campaign at once. It stays a working follower afterwards.
    pub async fn hand_over(&self) -> bool {
        let Some((id, addr)) = self.pick_successor() else {
            return self.raft.metrics().borrow().current_leader != Some(self.config.id);
        };
        self.handing_over.send_replace(true);
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        tokio::time::sleep(Duration::from_millis(self.config.election_timeout_ms * 2)).await;
        let asked = self
            .clients
            .http(&addr)
            .post(self.clients.url(&addr, &self.paths.elect))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if let Err(e) = &asked {
            tracing::warn!(successor = id, error = %e, "could not ask the successor to campaign");
        }
        let mut metrics = self.raft.metrics();
        let handed = timeout_at(
            Instant::now() + Duration::from_millis(self.config.election_timeout_ms * 3),
            metrics.wait_for(|m| m.current_leader.is_some_and(|l| l != self.config.id)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        self.handing_over.send_replace(false);
        if handed {
            tracing::info!(group = %self.config.name, successor = id, "handed leadership over");
        } else {
            tracing::warn!(
                successor = id,
                "leadership hand-over did not complete; followers will elect after the lease"
            );
        }
        handed
    }

    /// The voter (not this node) that has replicated the most of the log, when this node leads.
    pub(super) fn pick_successor(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.config.id) {
            return None;
        }
        let membership = m.membership_config.membership();
        let replication = m.replication.as_ref()?;
        membership
            .voter_ids()
            .filter(|id| *id != self.config.id)
            .max_by_key(|id| replication.get(id).copied().flatten().map(|l| l.index))
            .and_then(|id| Some((id, membership.get_node(&id)?.addr.clone())))
    }
}
