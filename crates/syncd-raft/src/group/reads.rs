//! Linearizable reads: the read index (with the barrier of a leader restored in its old term) and waiting until
//! this node has applied that far.

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::time::{Instant, timeout_at};

use super::leader::{LeaderReply, ReadIndexReply};
use super::{Group, GroupError, QUORUM_WAIT, Restored};
use crate::machine::Machine;
use crate::types::NodeId;

/// The index a linearizable read waits for, given what openraft answered and the leader's current vote.
pub(super) fn read_barrier(
    read: Option<u64>,
    restored: &Restored,
    vote: &openraft::Vote<NodeId>,
) -> u64 {
    let read = read.unwrap_or(0);
    if restored.vote.as_ref() == Some(vote) {
        read.max(restored.last_log_index.unwrap_or(0))
    } else {
        read
    }
}

impl<M: Machine> Group<M> {
    /// Makes the next local read linearizable.
    pub async fn linearizable_read(&self) -> Result<(), GroupError> {
        let started = Instant::now();
        let index = self
            .on_leader(&self.paths.read_index, &(), QUORUM_WAIT, || {
                self.read_index_local()
            })
            .await?;
        self.wait_applied(index, started + QUORUM_WAIT).await
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must wait for.
    ///
    /// openraft answers `max(committed, the leader's first entry of its term)`. That covers every acknowledged
    /// write, except on a leader restored by openraft at startup in its old term: its committed index comes from
    /// disk, where it is saved without an fsync of its own and so may predate writes that were acknowledged
    /// before the crash, and its "first entry of the term" is the old one. Such a leader has every entry it ever
    /// acknowledged in its log (a leader never truncates its own term), so its read barrier also covers the
    /// log end it started with. The barrier is raised only when the vote confirmed is still the restored one.
    pub async fn read_index_local(&self) -> ReadIndexReply {
        let vote_before = self.raft.metrics().borrow().vote;
        match self.raft.get_read_log_id().await {
            Ok((read, _applied)) => {
                let vote_after = self.raft.metrics().borrow().vote;
                if vote_after != vote_before {
                    // Leadership changed while it was being confirmed: let the caller look again.
                    return LeaderReply::NotLeader { leader: None };
                }
                LeaderReply::Ok(read_barrier(
                    read.map(|l| l.index),
                    &self.restored,
                    &vote_after,
                ))
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                LeaderReply::NotLeader {
                    leader: f.leader_id,
                }
            }
            Err(e) => ReadIndexReply::Unavailable {
                reason: e.to_string(),
            },
        }
    }

    /// Waits until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), GroupError> {
        let mut applied = self.shared.subscribe();
        loop {
            if *applied.borrow_and_update() >= index {
                return Ok(());
            }
            match timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(GroupError::Unavailable("shutting down".to_owned())),
                Err(_) => {
                    return Err(GroupError::Unavailable(
                        "this node is too far behind the leader".to_owned(),
                    ));
                }
            }
        }
    }
}
