//! The control state of the queue role, replicated by the queue control group (`syncd-queues`' `control`
//! module runs it on openraft): the ring, the nodes' sessions, and per shard its placement, replicas, leader,
//! leader epoch and in-sync set. It decides, in log order, everything the old design let each node decide alone
//! from pings: who leads a shard, in which epoch, and which copies an acknowledgement must wait for.
//!
//! Who changes what:
//! - the operator (or `POST /internal/ring`) sets the ring: [`ControlCommand::SetRing`];
//! - a node creates a shard on its first produce: [`ControlCommand::CreateShard`];
//! - a shard's leader shrinks or grows its in-sync set: [`ControlCommand::ChangeIsr`], accepted only for the
//!   current leader, epoch and version (compare-and-set, like KRaft's `AlterPartition`);
//! - the control group's leader, from heartbeats, starts, fences and unfences node sessions
//!   ([`ControlCommand::StartSession`], [`ControlCommand::Fence`], [`ControlCommand::Unfence`]): a fenced node
//!   leads nothing and is not in any in-sync set;
//! - a node that shuts down hands its shards over: [`ControlCommand::Drain`].
//!
//! Moves: a ring change makes each shard's replicas the new placement plus its old holders; the leader catches
//! the new ones up and adds them to the in-sync set; once every member of the new placement is in sync, the old
//! holders are dropped (and leadership moves if the leader was one of them). So a shard never has fewer in-sync
//! copies than before the move.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Epoch, NodeId};

/// The ring: the queue nodes, and how shards are placed on them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RingSpec {
    /// Bumped by every change.
    pub epoch: u64,
    /// Member ids.
    pub members: Vec<NodeId>,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Copies of each shard, leader included.
    pub replication_factor: u32,
    /// Addresses of members, where the deployment does not derive them (static peers outside Kubernetes).
    #[serde(default)]
    pub addrs: BTreeMap<NodeId, String>,
}

impl RingSpec {
    /// The consistent-hash ring of this spec.
    pub fn ring(&self) -> syncd_ring::Ring {
        syncd_ring::Ring::new(self.members.iter().copied(), self.vnodes, self.epoch)
    }
}

/// What the control state knows of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeState {
    /// The node's current process session (a new one on every start).
    pub session: u64,
    /// Fenced: missed its heartbeats or is shutting down. It leads nothing and joins no in-sync set.
    pub fenced: bool,
}

/// One shard's control record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardControl {
    /// Where the current ring places the shard, preferred leader first.
    pub placement: Vec<NodeId>,
    /// Who holds a copy: the placement, followed by old holders while a move is under way.
    pub replicas: Vec<NodeId>,
    /// The leader, if any member of the in-sync set is alive.
    pub leader: Option<NodeId>,
    /// The leader epoch: bumped on every leader change and every restart of the leader.
    pub epoch: Epoch,
    /// Bumped on every change of this record (the compare-and-set token of [`ControlCommand::ChangeIsr`]).
    pub version: u64,
    /// The in-sync set: copies that hold every acknowledged write. Never empty; contains the leader.
    pub isr: BTreeSet<NodeId>,
}

impl ShardControl {
    /// Whether a ring change is still moving this shard.
    pub fn moving(&self) -> bool {
        self.replicas != self.placement
    }
}

/// A change to the control state.
///
/// Externally tagged in JSON (the log format): serde cannot read integer map keys inside internally tagged enums.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    /// The next ring.
    SetRing {
        /// Members.
        members: Vec<NodeId>,
        /// Virtual nodes per member.
        vnodes: u32,
        /// Copies of each shard.
        replication_factor: u32,
        /// Addresses of members (static peers).
        #[serde(default)]
        addrs: BTreeMap<NodeId, String>,
    },
    /// Create a shard's record (idempotent: an existing one is answered as it is).
    CreateShard {
        /// Shard (base queue name).
        shard: String,
    },
    /// A shard leader's new in-sync set, if it still leads in `epoch` and the record is still at `version`.
    ChangeIsr {
        /// Shard.
        shard: String,
        /// The proposing leader.
        leader: NodeId,
        /// Its epoch.
        epoch: Epoch,
        /// The record version it saw.
        version: u64,
        /// The new in-sync set.
        isr: BTreeSet<NodeId>,
    },
    /// A node process started (or its session was seen for the first time): it may lead again, in new epochs.
    StartSession {
        /// Node.
        node: NodeId,
        /// Its process session.
        session: u64,
    },
    /// A node's session missed its heartbeats: move leadership off it and drop it from every in-sync set.
    Fence {
        /// Node.
        node: NodeId,
        /// The session that went quiet (a newer one is not fenced by this).
        session: u64,
    },
    /// A fenced session is heard from again.
    Unfence {
        /// Node.
        node: NodeId,
        /// Its session.
        session: u64,
    },
    /// A node shuts down: hand its shards to in-sync replicas and fence it.
    Drain {
        /// Node.
        node: NodeId,
    },
    /// The control group's own storage registration (its rejoin-after-disk-loss logic).
    RegisterStorage {
        /// Node.
        node: NodeId,
        /// Storage incarnation.
        incarnation: u64,
    },
}

/// What applying a [`ControlCommand`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlOutcome {
    /// The ring now.
    Ring(RingSpec),
    /// The shard's record now (created, or changed as asked).
    Shard(ShardControl),
    /// A compare-and-set that lost: the record now, if any.
    Stale(Option<ShardControl>),
    /// The command cannot apply; why.
    Refused(String),
    /// A session started; the node's previous one.
    Session {
        /// The previous session, if any.
        previous: Option<u64>,
    },
    /// Done (or nothing to do).
    Done,
    /// A drain: shards left without a leader, waiting for the drained node (no other in-sync member is alive).
    Orphaned(usize),
    /// A storage registration; the node's previous incarnation.
    Registered {
        /// Previous incarnation.
        previous: Option<u64>,
    },
}

/// The control state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ControlState {
    /// The ring, once formed.
    pub ring: Option<RingSpec>,
    /// Every node that ever started a session.
    pub nodes: BTreeMap<NodeId, NodeState>,
    /// Every shard.
    pub shards: BTreeMap<String, ShardControl>,
    /// Storage incarnations of the control group's members.
    pub storage: BTreeMap<NodeId, u64>,
    /// The latest stamp applied.
    pub clock_ms: u64,
}

impl ControlState {
    /// Whether `node` has a live (started, unfenced) session.
    pub fn live(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| !n.fenced)
    }

    /// Fenced or never-seen nodes.
    pub fn fenced(&self) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Shards whose ring move is not finished.
    pub fn pending_moves(&self) -> usize {
        self.shards.values().filter(|s| s.moving()).count()
    }

    /// Applies one command stamped `now_ms`.
    pub fn apply(&mut self, now_ms: u64, command: &ControlCommand) -> ControlOutcome {
        self.clock_ms = self.clock_ms.max(now_ms);
        match command {
            ControlCommand::SetRing {
                members,
                vnodes,
                replication_factor,
                addrs,
            } => self.set_ring(members, *vnodes, *replication_factor, addrs),
            ControlCommand::CreateShard { shard } => self.create_shard(shard),
            ControlCommand::ChangeIsr {
                shard,
                leader,
                epoch,
                version,
                isr,
            } => self.change_isr(shard, *leader, *epoch, *version, isr),
            ControlCommand::StartSession { node, session } => self.start_session(*node, *session),
            ControlCommand::Fence { node, session } => self.fence(*node, *session),
            ControlCommand::Unfence { node, session } => self.unfence(*node, *session),
            ControlCommand::Drain { node } => self.drain(*node),
            ControlCommand::RegisterStorage { node, incarnation } => ControlOutcome::Registered {
                previous: self.storage.insert(*node, *incarnation),
            },
        }
    }

    fn set_ring(
        &mut self,
        members: &[NodeId],
        vnodes: u32,
        replication_factor: u32,
        addrs: &BTreeMap<NodeId, String>,
    ) -> ControlOutcome {
        let members: Vec<NodeId> = members
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if members.is_empty() || vnodes == 0 || replication_factor == 0 {
            return ControlOutcome::Refused(
                "a ring needs members, virtual nodes and a replication factor of at least 1"
                    .to_owned(),
            );
        }
        if let Some(ring) = &self.ring
            && ring.members == members
            && ring.vnodes == vnodes
            && ring.replication_factor == replication_factor
        {
            return ControlOutcome::Ring(ring.clone());
        }
        let mut known = self
            .ring
            .as_ref()
            .map(|r| r.addrs.clone())
            .unwrap_or_default();
        known.extend(addrs.iter().map(|(k, v)| (*k, v.clone())));
        let spec = RingSpec {
            epoch: self.ring.as_ref().map_or(1, |r| r.epoch + 1),
            members,
            vnodes,
            replication_factor,
            addrs: known,
        };
        let ring = spec.ring();
        let copies = replication_factor as usize;
        let fenced = self.fenced();
        for (name, shard) in &mut self.shards {
            let placement = ring.placement(name, copies);
            let mut replicas = placement.clone();
            replicas.extend(shard.replicas.iter().filter(|r| !placement.contains(r)));
            shard.placement = placement;
            shard.replicas = replicas;
            shard.version += 1;
            settle(shard, &fenced);
        }
        self.ring = Some(spec.clone());
        ControlOutcome::Ring(spec)
    }

    fn create_shard(&mut self, name: &str) -> ControlOutcome {
        if let Some(shard) = self.shards.get(name) {
            return ControlOutcome::Shard(shard.clone());
        }
        let Some(spec) = &self.ring else {
            return ControlOutcome::Refused("the queue ring is not formed yet".to_owned());
        };
        let placement = spec
            .ring()
            .placement(name, spec.replication_factor as usize);
        let live: Vec<NodeId> = placement
            .iter()
            .copied()
            .filter(|n| self.live(*n))
            .collect();
        let Some(leader) = live.first().copied() else {
            return ControlOutcome::Refused(format!(
                "no node that would hold {name} is up (placement {placement:?})"
            ));
        };
        // Every copy is empty: each live one is in sync from the start.
        let shard = ShardControl {
            replicas: placement.clone(),
            placement,
            leader: Some(leader),
            epoch: 1,
            version: 1,
            isr: live.into_iter().collect(),
        };
        self.shards.insert(name.to_owned(), shard.clone());
        ControlOutcome::Shard(shard)
    }

    fn change_isr(
        &mut self,
        name: &str,
        leader: NodeId,
        epoch: Epoch,
        version: u64,
        isr: &BTreeSet<NodeId>,
    ) -> ControlOutcome {
        let fenced = self.fenced();
        let Some(shard) = self.shards.get_mut(name) else {
            return ControlOutcome::Stale(None);
        };
        if shard.leader != Some(leader) || shard.epoch != epoch || shard.version != version {
            return ControlOutcome::Stale(Some(shard.clone()));
        }
        if !isr.contains(&leader) || !isr.iter().all(|n| shard.replicas.contains(n)) {
            return ControlOutcome::Refused(format!(
                "in-sync set {isr:?} must contain the leader {leader} and only replicas {:?}",
                shard.replicas
            ));
        }
        let added: BTreeSet<NodeId> = isr.difference(&shard.isr).copied().collect();
        if added.iter().any(|n| fenced.contains(n)) {
            return ControlOutcome::Refused(format!(
                "cannot add fenced nodes to the in-sync set ({added:?})"
            ));
        }
        shard.isr = isr.clone();
        shard.version += 1;
        // The preferred leader (first of the placement) takes the shard back once it is in sync again.
        if let Some(preferred) = shard.placement.first().copied()
            && added.contains(&preferred)
            && shard.leader != Some(preferred)
        {
            shard.leader = Some(preferred);
            shard.epoch += 1;
        }
        settle(shard, &fenced);
        ControlOutcome::Shard(shard.clone())
    }

    fn start_session(&mut self, node: NodeId, session: u64) -> ControlOutcome {
        let previous = self.nodes.insert(
            node,
            NodeState {
                session,
                fenced: false,
            },
        );
        let restarted = previous.is_none_or(|p| p.session != session);
        for shard in self.shards.values_mut() {
            if shard.leader == Some(node) && restarted {
                // Entries the old process had not fsynced may be on replicas under the old epoch: a new epoch
                // makes them conflict (and be dropped) instead of being mistaken for new writes at the same lsn.
                shard.epoch += 1;
                shard.version += 1;
            } else if shard.leader.is_none() && shard.isr.contains(&node) {
                shard.leader = Some(node);
                shard.epoch += 1;
                shard.version += 1;
            }
        }
        ControlOutcome::Session {
            previous: previous.map(|p| p.session),
        }
    }

    fn fence(&mut self, node: NodeId, session: u64) -> ControlOutcome {
        match self.nodes.get_mut(&node) {
            Some(state) if state.session == session && !state.fenced => state.fenced = true,
            _ => return ControlOutcome::Done,
        }
        self.move_off(node);
        ControlOutcome::Done
    }

    fn unfence(&mut self, node: NodeId, session: u64) -> ControlOutcome {
        match self.nodes.get_mut(&node) {
            Some(state) if state.session == session && state.fenced => state.fenced = false,
            _ => return ControlOutcome::Done,
        }
        for shard in self.shards.values_mut() {
            if shard.leader.is_none() && shard.isr.contains(&node) {
                shard.leader = Some(node);
                shard.epoch += 1;
                shard.version += 1;
            }
        }
        ControlOutcome::Done
    }

    fn drain(&mut self, node: NodeId) -> ControlOutcome {
        if let Some(state) = self.nodes.get_mut(&node) {
            state.fenced = true;
        }
        ControlOutcome::Orphaned(self.move_off(node))
    }

    /// Moves leadership off `node` (just fenced) and drops it from in-sync sets, wherever another in-sync member
    /// is alive. A shard whose only live in-sync member was `node` keeps it in its in-sync set and is left without
    /// a leader: it waits for `node` (no unclean election). Returns how many shards were left so.
    fn move_off(&mut self, node: NodeId) -> usize {
        let fenced = self.fenced();
        let mut orphaned = 0;
        for shard in self.shards.values_mut() {
            if !shard.isr.contains(&node) && shard.leader != Some(node) {
                continue;
            }
            if shard.leader == Some(node) {
                match successor(shard, &fenced) {
                    Some(next) => {
                        shard.leader = Some(next);
                        shard.isr.remove(&node);
                        shard.epoch += 1;
                    }
                    None => {
                        shard.leader = None;
                        shard.epoch += 1;
                        orphaned += 1;
                    }
                }
            } else if shard.leader.is_some() && shard.isr.len() > 1 {
                // With no leader every in-sync member is fenced; keep them all eligible for when one returns.
                shard.isr.remove(&node);
            }
            shard.version += 1;
        }
        orphaned
    }
}

/// The live in-sync member that should lead next: placement order first, then the other replicas.
fn successor(shard: &ShardControl, fenced: &BTreeSet<NodeId>) -> Option<NodeId> {
    shard
        .placement
        .iter()
        .chain(shard.replicas.iter())
        .copied()
        .find(|n| Some(*n) != shard.leader && shard.isr.contains(n) && !fenced.contains(n))
}

/// Finishes a move once every member of the new placement is in sync: drops the old holders, and moves
/// leadership into the placement if the leader was an old holder.
fn settle(shard: &mut ShardControl, fenced: &BTreeSet<NodeId>) {
    if !shard.moving() || !shard.placement.iter().all(|n| shard.isr.contains(n)) {
        return;
    }
    shard.replicas = shard.placement.clone();
    shard.isr.retain(|n| shard.placement.contains(n));
    if shard.leader.is_none_or(|l| !shard.placement.contains(&l)) {
        // Every placement member is in sync; a fenced one cannot lead, so with all fenced the shard waits.
        let next = shard
            .placement
            .iter()
            .copied()
            .find(|n| !fenced.contains(n));
        if next != shard.leader {
            shard.leader = next;
            shard.epoch += 1;
        }
    }
}

#[cfg(test)]
mod tests;
