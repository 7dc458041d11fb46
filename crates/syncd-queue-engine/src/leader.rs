//! What a shard's leader decides, as a pure state machine: which copies an acknowledgement waits for, how far
//! writes are acknowledged (the high watermark), and when to ask the control group to change the in-sync set.
//!
//! The runtime feeds it events (a local append queued, the local fsync done, a replica's durable position, a
//! newer control record, a clock tick) and carries out what it answers: acknowledge clients up to the high
//! watermark, propose an in-sync change, step down.
//!
//! The acknowledgement set is the committed in-sync set plus every member a pending proposal adds (rule 2 of the
//! crate doc): a member is waited for from the moment its addition is proposed until a committed record without
//! it is seen. A pending proposal is only forgotten once the control record moved past the version it was made
//! on; until then it may still commit, so its additions stay in the acknowledgement set and it is re-sent now and
//! then (the compare-and-set applies it at most once).

use std::collections::{BTreeMap, BTreeSet};

use crate::control::{ControlCommand, ShardControl};
use crate::{Epoch, NodeId};

/// Timing of the leader's decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timing {
    /// A replica that has not caught up with the leader's log end for this long is proposed for removal from the
    /// in-sync set.
    pub lag_timeout_ms: u64,
    /// How long a proposal may go unanswered before it is sent again.
    pub resend_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lag_timeout_ms: 2_000,
            resend_ms: 1_000,
        }
    }
}

/// Where a leader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Start {
    /// The lsn of the first entry this leader writes (its epoch marker): a replica holding it holds everything of
    /// earlier epochs.
    pub epoch_start: u64,
    /// What is durable locally.
    pub durable: u64,
    /// Now.
    pub now_ms: u64,
}

/// A replica as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Peer {
    /// Durable on the replica, and matching the leader's log, up to this lsn (0: not known yet).
    acked: u64,
    /// When the replica last caught up (see [`LeaderEngine::peer_acked`]).
    caught_up_at_ms: u64,
    /// The leader's log end when the replica's previous answer arrived.
    log_end_at_last_ack: u64,
}

/// An in-sync change proposed and not yet seen committed or superseded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Pending {
    /// The record version it was made on.
    version: u64,
    /// The proposed in-sync set.
    isr: BTreeSet<NodeId>,
    /// When it was last sent.
    sent_at_ms: u64,
}

/// What a control record means for a leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlVerdict {
    /// Still the leader in this epoch; the high watermark may have moved to this.
    Lead(Option<u64>),
    /// No longer the leader in this epoch: stop writing, fail what waits.
    StepDown,
}

/// The leader of one shard in one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaderEngine {
    shard: String,
    me: NodeId,
    epoch: Epoch,
    timing: Timing,
    /// The latest control record seen (version, replicas, committed in-sync set).
    control: ShardControl,
    fenced: BTreeSet<NodeId>,
    /// The lsn of this epoch's first entry: a replica holding it holds everything of earlier epochs.
    epoch_start: u64,
    /// Last lsn written (queued) locally.
    log_end: u64,
    /// Last lsn durable locally.
    local_durable: u64,
    peers: BTreeMap<NodeId, Peer>,
    pending: Option<Pending>,
    /// Acknowledged up to here.
    high_watermark: u64,
}

impl LeaderEngine {
    /// Starts leading `control` (which must name `me` as leader) at `start`.
    pub fn new(
        shard: &str,
        me: NodeId,
        control: &ShardControl,
        fenced: &BTreeSet<NodeId>,
        start: Start,
        timing: Timing,
    ) -> LeaderEngine {
        let Start {
            epoch_start,
            durable,
            now_ms,
        } = start;
        let peers = control
            .replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                (
                    *r,
                    Peer {
                        acked: 0,
                        caught_up_at_ms: now_ms,
                        log_end_at_last_ack: 0,
                    },
                )
            })
            .collect();
        LeaderEngine {
            shard: shard.to_owned(),
            me,
            epoch: control.epoch,
            timing,
            control: control.clone(),
            fenced: fenced.clone(),
            epoch_start,
            log_end: durable.max(epoch_start.saturating_sub(1)),
            local_durable: durable,
            peers,
            pending: None,
            high_watermark: 0,
        }
    }

    /// The epoch this leader writes in.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Acknowledged up to this lsn.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The committed in-sync set as last seen.
    pub fn isr(&self) -> &BTreeSet<NodeId> {
        &self.control.isr
    }

    /// Every copy an acknowledgement waits for now (see the module doc).
    pub fn ack_set(&self) -> BTreeSet<NodeId> {
        let mut set = self.control.isr.clone();
        if let Some(pending) = &self.pending {
            set.extend(pending.isr.iter().copied());
        }
        set.insert(self.me);
        set
    }

    /// The replicas this leader streams to.
    pub fn replicas(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// A replica's durable position as known.
    pub fn acked(&self, peer: NodeId) -> Option<u64> {
        self.peers.get(&peer).map(|p| p.acked)
    }

    /// Entries up to `lsn` were queued locally (and to the replicas).
    pub fn appended(&mut self, lsn: u64) {
        self.log_end = self.log_end.max(lsn);
    }

    /// Entries up to `lsn` are durable locally; answers the new high watermark if it moved.
    pub fn local_durable(&mut self, lsn: u64) -> Option<u64> {
        self.local_durable = self.local_durable.max(lsn);
        self.advance()
    }

    /// `peer` holds everything up to `lsn` durably (its answer to an append of this epoch); answers the new high
    /// watermark if it moved.
    ///
    /// A replica counts as caught up when an answer covers everything the leader had written when its previous
    /// answer arrived (Kafka's rule): under steady load a healthy replica is always a batch behind the log end, and
    /// must not look as if it lagged.
    pub fn peer_acked(&mut self, peer: NodeId, lsn: u64, now_ms: u64) -> Option<u64> {
        let log_end = self.log_end;
        let p = self.peers.get_mut(&peer)?;
        p.acked = p.acked.max(lsn);
        if p.acked >= log_end || p.acked >= p.log_end_at_last_ack {
            p.caught_up_at_ms = now_ms;
        }
        p.log_end_at_last_ack = log_end;
        self.advance()
    }

    /// `peer`'s copy was found to diverge or was reset (its known position is gone until it matches again).
    pub fn peer_reset(&mut self, peer: NodeId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.acked = 0;
        }
    }

    /// A newer control record for the shard (and the fenced nodes of the same control state).
    pub fn control_changed(
        &mut self,
        control: &ShardControl,
        fenced: &BTreeSet<NodeId>,
        now_ms: u64,
    ) -> ControlVerdict {
        if control.version < self.control.version {
            return ControlVerdict::Lead(None);
        }
        if control.leader != Some(self.me) || control.epoch != self.epoch {
            return ControlVerdict::StepDown;
        }
        self.control = control.clone();
        self.fenced = fenced.clone();
        if self
            .pending
            .as_ref()
            .is_some_and(|p| control.version > p.version)
        {
            // Applied (the record moved on from the version it was made on) or refused because it had: either
            // way it can never apply any more.
            self.pending = None;
        }
        for replica in &control.replicas {
            if *replica != self.me {
                self.peers.entry(*replica).or_insert(Peer {
                    acked: 0,
                    caught_up_at_ms: now_ms,
                    log_end_at_last_ack: 0,
                });
            }
        }
        self.peers.retain(|id, _| control.replicas.contains(id));
        ControlVerdict::Lead(self.advance())
    }

    /// A clock tick: the in-sync change to propose (or re-send), if any.
    pub fn tick(&mut self, now_ms: u64) -> Option<ControlCommand> {
        if let Some(pending) = &mut self.pending {
            if now_ms.saturating_sub(pending.sent_at_ms) < self.timing.resend_ms {
                return None;
            }
            pending.sent_at_ms = now_ms;
            let (isr, version) = (pending.isr.clone(), pending.version);
            return Some(self.proposal(isr, version));
        }
        let mut isr = self.control.isr.clone();
        let caught_up = self.high_watermark.max(self.epoch_start);
        for (id, peer) in &self.peers {
            let in_sync = isr.contains(id);
            let lagging = peer.acked < self.log_end
                && now_ms.saturating_sub(peer.caught_up_at_ms) > self.timing.lag_timeout_ms;
            if in_sync && lagging {
                isr.remove(id);
            } else if !in_sync
                && !self.fenced.contains(id)
                && peer.acked >= caught_up
                && caught_up > 0
            {
                isr.insert(*id);
            }
        }
        isr.insert(self.me);
        if isr == self.control.isr {
            return None;
        }
        let version = self.control.version;
        self.pending = Some(Pending {
            version,
            isr: isr.clone(),
            sent_at_ms: now_ms,
        });
        Some(self.proposal(isr, version))
    }

    fn proposal(&self, isr: BTreeSet<NodeId>, version: u64) -> ControlCommand {
        ControlCommand::ChangeIsr {
            shard: self.shard.clone(),
            leader: self.me,
            epoch: self.epoch,
            version,
            isr,
        }
    }

    /// The highest lsn durable on every member of the acknowledgement set; answers it if it moved. (On every
    /// write and every replica answer, so it walks the sets without building the union.)
    fn advance(&mut self) -> Option<u64> {
        let position = |id: &NodeId| {
            if *id == self.me {
                self.local_durable
            } else {
                self.peers.get(id).map_or(0, |p| p.acked)
            }
        };
        let pending = self.pending.iter().flat_map(|p| p.isr.iter());
        let hw = self
            .control
            .isr
            .iter()
            .chain(pending)
            .map(position)
            .min()
            .unwrap_or(self.local_durable)
            .min(self.local_durable);
        if hw > self.high_watermark {
            self.high_watermark = hw;
            Some(hw)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests;
