//! Running calls on the leader: proposing commands (stamped there), forwarding from followers, finding the
//! leader, and membership changes.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{ClientWriteError, RaftError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use syncd_api::locks::MembershipChange;
use tokio::time::{Instant, timeout_at};

use super::{Group, GroupError, LEARNER_CATCH_UP, MEMBERSHIP_WAIT, QUORUM_WAIT, wall_clock_ms};
use crate::machine::Machine;
use crate::types::{NodeId, Stamped};

/// What the leader answers a call forwarded to it (a write, a read index, a membership change).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", content = "value", rename_all = "snake_case")]
pub enum LeaderReply<T> {
    /// Done, with this answer.
    Ok(T),
    /// This node is not the leader; nothing was done.
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// The call could not be completed (no quorum, shutting down).
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// A committed and applied write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written<O> {
    /// Log index of the entry.
    pub index: u64,
    /// What the state machine answered.
    pub outcome: O,
}

/// What a forwarded write answers.
pub type WriteReply<O> = LeaderReply<Written<O>>;

/// What a read-index request answers: the index a linearizable read must wait for.
pub type ReadIndexReply = LeaderReply<u64>;

/// What a membership change answers.
pub type MembershipReply = LeaderReply<()>;

impl<M: Machine> Group<M> {
    /// Proposes a command on the leader, forwarding it when this node is not the leader; answers the log index
    /// and the outcome once applied on the leader.
    pub async fn propose(&self, command: M::Command) -> Result<(u64, M::Outcome), GroupError> {
        let written: Written<M::Outcome> = self
            .on_leader(&self.paths.write, &command, QUORUM_WAIT, || {
                self.write_local(command.clone())
            })
            .await?;
        Ok((written.index, written.outcome))
    }

    /// Runs a call on the leader: `local` when this node leads, else a POST of `body` to the leader's `path`.
    /// Retries (until `patience` runs out) only where the call certainly was not carried out: the target was not
    /// the leader, or the connection was refused.
    pub async fn on_leader<B, T, F, Fut>(
        &self,
        path: &str,
        body: &B,
        patience: Duration,
        local: F,
    ) -> Result<T, GroupError>
    where
        B: Serialize,
        T: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = LeaderReply<T>>,
    {
        let deadline = Instant::now() + patience;
        loop {
            let (leader, addr) = self.wait_leader(deadline).await?;
            let reply = if leader == self.config.id {
                local().await
            } else {
                self.forward(&addr, path, body, deadline).await?
            };
            match reply {
                LeaderReply::Ok(value) => return Ok(value),
                LeaderReply::NotLeader { .. } => self.backoff(deadline).await?,
                LeaderReply::Unavailable { reason } => return Err(GroupError::Unavailable(reason)),
            }
        }
    }

    pub(super) async fn forward<B: Serialize, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        deadline: Instant,
    ) -> Result<LeaderReply<T>, GroupError> {
        let result = self
            .clients
            .http(addr)
            .post(self.clients.url(addr, path))
            .timeout(deadline.saturating_duration_since(Instant::now()))
            .json(body)
            .send()
            .await;
        match result {
            // Never sent: safe to try again once a leader is known.
            Err(e) if e.is_connect() => Ok(LeaderReply::NotLeader { leader: None }),
            Err(e) => Err(GroupError::Unavailable(format!(
                "the leader did not answer ({e}); the outcome is unknown"
            ))),
            Ok(resp) => resp
                .json::<LeaderReply<T>>()
                .await
                .map_err(|e| GroupError::Unavailable(format!("bad answer from the leader: {e}"))),
        }
    }

    /// Proposes a command on this node, which must be the leader. Used by the peer endpoint and by [`Self::propose`].
    pub async fn write_local(&self, command: M::Command) -> WriteReply<M::Outcome> {
        if *self.handing_over.borrow() {
            // Any append would renew the followers' view of this leader's lease and block the hand-over.
            return LeaderReply::NotLeader { leader: None };
        }
        let stamp = self
            .shared
            .clock()
            .stamp(wall_clock_ms(), std::time::Instant::now(), || {
                self.log_fully_applied() && self.shared.read(|m| m.quiet())
            });
        let stamped = Stamped {
            now_ms: stamp.ms,
            command,
        };
        let result = self.raft.client_write(stamped).await;
        drop(stamp);
        match result {
            Ok(resp) => match resp.data {
                Some(outcome) => LeaderReply::Ok(Written {
                    index: resp.log_id.index,
                    outcome,
                }),
                None => WriteReply::Unavailable {
                    reason: "the state machine gave no outcome".to_owned(),
                },
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                WriteReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => WriteReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// Whether every entry of this node's log is applied, so the machine shows everything the log holds.
    pub fn log_fully_applied(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.last_applied.map(|l| l.index) == m.last_log_index
    }

    /// Changes the group's membership on the leader, forwarding when needed.
    pub async fn change_membership(&self, change: &MembershipChange) -> Result<(), GroupError> {
        self.on_leader(
            &self.paths.membership_on_leader,
            change,
            MEMBERSHIP_WAIT,
            || self.change_membership_local(change),
        )
        .await
    }

    /// Carries out a membership change on this node, which must be the leader.
    pub async fn change_membership_local(&self, change: &MembershipChange) -> MembershipReply {
        let result = match change {
            MembershipChange::AddLearner { id, addr } => {
                let adding = self.raft.add_learner(*id, BasicNode::new(addr), true);
                match tokio::time::timeout(LEARNER_CATCH_UP, adding).await {
                    Ok(result) => result.map(|_| ()),
                    Err(_) => {
                        return LeaderReply::Unavailable {
                            reason: format!("learner {id} has not caught up yet; ask again"),
                        };
                    }
                }
            }
            MembershipChange::SetVoters { voters } => self
                .raft
                .change_membership(voters.clone(), false)
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => LeaderReply::Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                LeaderReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => LeaderReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// The current leader and its address, waiting (until `deadline`) for one to be known.
    pub async fn wait_leader(&self, deadline: Instant) -> Result<(NodeId, String), GroupError> {
        let mut metrics = self.raft.metrics();
        loop {
            let found = {
                let m = metrics.borrow_and_update();
                m.current_leader.and_then(|leader| {
                    let addr = m
                        .membership_config
                        .membership()
                        .get_node(&leader)
                        .map(|n| n.addr.clone())
                        .or_else(|| self.config.initial_members.get(&leader).cloned())?;
                    Some((leader, addr))
                })
            };
            if let Some(found) = found {
                return Ok(found);
            }
            match timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(GroupError::Unavailable("raft stopped".to_owned())),
                Err(_) => {
                    return Err(GroupError::Unavailable(format!(
                        "the {} group has no leader (no quorum?)",
                        self.config.name
                    )));
                }
            }
        }
    }

    /// A short pause before asking again who the leader is, bounded by `deadline`.
    pub(super) async fn backoff(&self, deadline: Instant) -> Result<(), GroupError> {
        let next = Instant::now() + Duration::from_millis(50);
        if next >= deadline {
            return Err(GroupError::Unavailable(format!(
                "the {} group has no stable leader",
                self.config.name
            )));
        }
        tokio::time::sleep_until(next).await;
        Ok(())
    }
}
