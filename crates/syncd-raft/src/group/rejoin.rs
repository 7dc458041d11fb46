//! Storage incarnations, the vote marker, and rejoining raft as a new member after a disk loss.

use std::time::Duration;

use syncd_api::locks::MembershipChange;
use tokio::time::Instant;

use super::{Group, GroupError, QUORUM_WAIT};
use crate::machine::Machine;
use crate::types::NodeId;

/// Registers this node's storage incarnation with the group. When the group knew another incarnation for this id,
/// the node lost its disk: its log and its vote are gone, which raft's guarantees do not allow of a voter, so it
/// leaves the voters, comes back as a learner, and is promoted once it has caught up.
pub(super) async fn register_incarnation<M: Machine>(
    service: std::sync::Weak<Group<M>>,
    incarnation: u64,
) {
    let rejoin = loop {
        let Some(s) = service.upgrade() else {
            return;
        };
        if s.is_stopping() {
            return;
        }
        let command = M::register(s.config.id, incarnation);
        match s
            .propose(command)
            .await
            .map(|(index, o)| (index, M::registered(&o), o))
        {
            Ok((index, Some(previous), _)) => {
                let lost_disk = previous.is_some_and(|p| p != incarnation);
                if lost_disk {
                    // Durably, so a restart in the middle of the rejoin neither votes nor forgets to finish.
                    if let Err(e) = s.log.set_rejoin_pending(true).await {
                        tracing::error!(error = %e, "could not record the rejoin; retrying");
                        drop(s);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    s.rejoin_pending.send_replace(true);
                    tracing::warn!(
                        id = s.config.id,
                        "this node's storage is new but the group knew the node: rejoining raft as a new member"
                    );
                }
                let resumed = !lost_disk && *s.rejoin_pending.borrow();
                if !lost_disk
                    && !resumed
                    && let Err(e) = s.trust_votes().await
                {
                    tracing::error!(error = %e, "could not record the vote marker; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if lost_disk || resumed {
                    // See the membership as of the registration before deciding anything.
                    if let Err(e) = s.wait_applied(index, Instant::now() + QUORUM_WAIT).await {
                        tracing::warn!(error = %e, "could not catch up before rejoining");
                    }
                    break Some(resumed);
                }
                break None;
            }
            Ok((_, None, other)) => {
                tracing::error!(outcome = ?other, "unexpected answer to a node registration");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "node registration not accepted yet"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let Some(resumed) = rejoin else {
        return;
    };
    // A rejoin cut short by a restart after this node left the voters goes on with adding it back.
    let mut removed = resumed
        && service
            .upgrade()
            .is_some_and(|s| !s.voters().contains(&s.config.id));
    loop {
        let Some(s) = service.upgrade() else {
            return;
        };
        if s.is_stopping() {
            return;
        }
        match s.rejoin_step(&mut removed).await {
            Ok(true) => {
                if let Err(e) = s.trust_votes().await {
                    tracing::warn!(error = %e, "could not record the end of the rejoin; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                if let Err(e) = s.log.set_rejoin_pending(false).await {
                    tracing::warn!(error = %e, "could not record the end of the rejoin; retrying");
                    drop(s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                s.rejoin_pending.send_replace(false);
                tracing::info!(
                    id = s.config.id,
                    rejoined = removed,
                    "rejoin after disk loss finished"
                );
                return;
            }
            Ok(false) => continue,
            Err(e) => tracing::warn!(error = %e, "rejoin step failed; retrying"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl<M: Machine> Group<M> {
    /// Whether this node may grant a vote to a candidate whose log ends at `candidate_last_index`.
    ///
    /// Raft's safety rests on a voter remembering its vote for a term. A node that lost its disk forgot its votes,
    /// so granting votes could give two candidates a majority in one term (two leaders, two exclusive holders).
    /// So new storage grants votes only once the group has registered it as this node's first storage, or once
    /// the rejoin after a disk loss finished (it left the voters and came back as a new member); the marker is
    /// durable, so a whole-cluster restart needs no leader to know it. The one exception is the group's first
    /// election, whose candidate has nothing but the initial membership (log index 0): every member is new then,
    /// and registering needs a leader.
    pub fn may_vote(&self, candidate_last_index: Option<u64>) -> bool {
        candidate_last_index.unwrap_or(0) == 0 || *self.votes_trusted.borrow()
    }

    /// Records that this node's votes can be trusted from now on.
    pub(super) async fn trust_votes(&self) -> Result<(), GroupError> {
        if *self.votes_trusted.borrow() {
            return Ok(());
        }
        self.log
            .trust_votes()
            .await
            .map_err(|e| GroupError::Internal(format!("could not record the vote marker: {e}")))?;
        self.votes_trusted.send_replace(true);
        Ok(())
    }

    /// The voters as this node last saw them.
    pub(super) fn voters(&self) -> std::collections::BTreeSet<NodeId> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// One step of a rejoin after disk loss; `Ok(true)` once this node is a voter again with a fresh log.
    pub(super) async fn rejoin_step(&self, removed: &mut bool) -> Result<bool, GroupError> {
        let me = self.config.id;
        let voters = self.voters();
        if !*removed {
            if !voters.contains(&me) {
                // Not a voter (a learner, or being scaled away): membership is the operator's business.
                return Ok(true);
            }
            let others = voters.iter().copied().filter(|v| *v != me).collect();
            self.change_membership(&MembershipChange::SetVoters { voters: others })
                .await?;
            *removed = true;
            return Ok(false);
        }
        // Added back as a learner; the call returns once this node has caught up.
        self.change_membership(&MembershipChange::AddLearner {
            id: me,
            addr: self.config.advertise.clone(),
        })
        .await?;
        let mut voters = self.voters();
        voters.insert(me);
        self.change_membership(&MembershipChange::SetVoters { voters })
            .await?;
        Ok(true)
    }
}
