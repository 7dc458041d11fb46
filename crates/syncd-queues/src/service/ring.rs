//! Ring changes, carried out by the control group: `POST /internal/ring` on any node adds the new members to the
//! control group (learners, then voters), then commits the next ring; each shard then moves (new replicas first,
//! old ones dropped once the new are in sync, see `syncd-queue-engine`'s control state). Once no move is pending,
//! the control group's leader makes the group's voters the ring's members.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use syncd_api::queues::{RingChange, RingInfo, RingNode};
use syncd_queue_engine::control::{ControlCommand, ControlOutcome, ControlState};
use syncd_raft::MembershipChange;

use super::QueueService;
use super::routing::peer_error;
use crate::error::QueueError;
use crate::wire::{ShardList, paths};

/// How long a ring change may take to reach the control group's leader.
const RING_PATIENCE: Duration = Duration::from_secs(30);

impl QueueService {
    /// `GET /v1/ring`, from the control state. `pending_handoffs` counts the shards still moving (plus one while
    /// the control group's voters do not match the ring yet): the same on every node that caught up.
    pub fn ring_info(&self) -> RingInfo {
        let state = self.control();
        let voters = self.voters();
        let ring = state.ring.clone().unwrap_or_default();
        // A node the ring dropped is no longer told about the group's membership; only members judge it.
        let settled_voters = state.ring.is_none()
            || !ring.members.contains(&self.config.id)
            || voters == ring.members.iter().copied().collect::<BTreeSet<_>>();
        RingInfo {
            epoch: ring.epoch,
            vnodes: if state.ring.is_some() {
                ring.vnodes
            } else {
                self.config.vnodes
            },
            replication_factor: self.config.replication_factor as u32,
            nodes: ring
                .members
                .iter()
                .map(|id| RingNode {
                    id: *id,
                    addr: self.addrs.addr(*id),
                    alive: state.live(*id),
                })
                .collect(),
            members: ring.members.clone(),
            pending_handoffs: state.pending_moves() + usize::from(!settled_voters),
            leaders: state.shards.values().filter_map(|shard| shard.leader).fold(
                std::collections::BTreeMap::new(),
                |mut counts, leader| {
                    *counts.entry(leader).or_insert(0) += 1;
                    counts
                },
            ),
        }
    }

    fn voters(&self) -> BTreeSet<u64> {
        self.group.status().members.into_iter().collect()
    }

    /// `POST /internal/ring`: the next ring.
    pub async fn change_ring(
        &self,
        change: RingChange,
        addrs: BTreeMap<u64, String>,
    ) -> Result<RingInfo, QueueError> {
        let members: BTreeSet<u64> = change.members.iter().copied().collect();
        if members.is_empty() {
            return Err(QueueError::Invalid(
                "a ring needs at least one member".to_owned(),
            ));
        }
        if !self.group.is_ready() {
            return self.change_ring_at_seed(&change, &addrs).await;
        }
        let state = self.control();
        if let Some(ring) = &state.ring
            && ring.members.iter().copied().collect::<BTreeSet<_>>() == members
        {
            return Ok(self.ring_info());
        }
        if state.pending_moves() > 0 {
            return Err(QueueError::Unavailable(
                "the previous ring change has not settled yet (shards still moving); retry"
                    .to_owned(),
            ));
        }
        let mut known = crate::control::ring_addrs(&state, &self.addrs.source().static_peers());
        known.extend(addrs.iter().map(|(k, v)| (*k, v.clone())));
        let voters = self.voters();
        for id in &members {
            if voters.contains(id) {
                continue;
            }
            let addr = known
                .get(id)
                .cloned()
                .or_else(|| self.addrs.addr(*id))
                .ok_or_else(|| QueueError::Invalid(format!("no address known for node {id}")))?;
            self.group
                .change_membership(&MembershipChange::AddLearner { id: *id, addr })
                .await?;
        }
        // The ring first, then the voters: while the ring still lists the old members, the control group's leader
        // would shrink the voters back to them (`settle_voters`), dropping a new member it was adding.
        let command = ControlCommand::SetRing {
            members: members.iter().copied().collect(),
            vnodes: state.ring.as_ref().map_or(self.config.vnodes, |r| r.vnodes),
            replication_factor: self.config.replication_factor as u32,
            addrs,
        };
        let (index, outcome) = self.group.propose(command).await?;
        let mut grown = voters.clone();
        grown.extend(members.iter().copied());
        if grown != voters {
            self.group
                .change_membership(&MembershipChange::SetVoters { voters: grown })
                .await?;
        }
        match outcome {
            ControlOutcome::Ring(_) => {
                // Answer with the ring as this node applied it.
                self.group
                    .wait_applied(index, tokio::time::Instant::now() + RING_PATIENCE)
                    .await?;
                Ok(self.ring_info())
            }
            ControlOutcome::Refused(why) => Err(QueueError::Invalid(why)),
            other => Err(QueueError::Internal(format!(
                "unexpected answer to a ring change: {other:?}"
            ))),
        }
    }

    /// A node that is not in the control group yet (a new pod, a joining node) passes a ring change to the node
    /// that seeds the group: node 0 under DNS discovery, else the lowest static peer other than itself.
    async fn change_ring_at_seed(
        &self,
        change: &RingChange,
        addrs: &BTreeMap<u64, String>,
    ) -> Result<RingInfo, QueueError> {
        let me = self.config.id;
        let seed = match self.addrs.source() {
            crate::addrs::PeerSource::Dns { .. } => 0,
            crate::addrs::PeerSource::Static { peers, .. } => {
                peers.keys().copied().find(|id| *id != me).unwrap_or(me)
            }
        };
        if seed == me {
            return Err(QueueError::Unavailable(
                "the queue control group has no leader yet; retry".to_owned(),
            ));
        }
        let addr = self
            .addrs
            .addr(seed)
            .ok_or_else(|| QueueError::Unavailable(format!("no address for node {seed}")))?;
        #[derive(serde::Serialize)]
        struct Body<'a> {
            members: &'a [u64],
            addrs: &'a BTreeMap<u64, String>,
        }
        self.peers
            .post_json(
                &addr,
                paths::RING,
                &Body {
                    members: &change.members,
                    addrs,
                },
                RING_PATIENCE,
            )
            .await
            .map_err(|e| peer_error(e, false))
    }

    /// On the control group's leader: once no shard is moving, make the voters the ring's members (only ever
    /// dropping voters the ring no longer lists, and never while a membership change is under way).
    pub(super) fn settle_voters(self: &Arc<Self>, state: &ControlState) {
        let Some(ring) = &state.ring else { return };
        if state.pending_moves() > 0 {
            return;
        }
        let changing = self
            .group
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_joint_config()
            .len()
            > 1;
        if changing {
            return;
        }
        let members: BTreeSet<u64> = ring.members.iter().copied().collect();
        let voters = self.voters();
        if voters == members || !members.is_subset(&voters) {
            return;
        }
        let group = self.group.clone();
        tokio::spawn(async move {
            if let Err(e) = group
                .change_membership(&MembershipChange::SetVoters { voters: members })
                .await
            {
                tracing::debug!(error = %e, "could not shrink the control group's voters yet");
            }
        });
    }

    /// `GET /internal/queues/shards`.
    pub fn on_shards(&self) -> ShardList {
        ShardList {
            shards: self.stored_names(),
        }
    }
}
