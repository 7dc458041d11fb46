//! Following the control state, and the node's periodic work.
//!
//! On every change the control group applies, each shard's record is compared with what this node does: start
//! leading a shard the record gives it (in an epoch it has not led), stop leading one it no longer leads, pass a
//! newer record to a leader's engine, drop a copy the record no longer lists. Periodically, the node registers its
//! session if the control state does not show it, heartbeats to the control group's leader, and, where it leads
//! shards, lets each leader engine propose in-sync changes. On the control group's leader, silent sessions are
//! fenced and returning ones unfenced, the first ring of a static cluster is set, and the group's voters follow
//! the ring once moves settled.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use syncd_queue_engine::control::{ControlCommand, ShardControl};

use super::QueueService;
use crate::control::{self, Heartbeat};
use crate::leading;
use crate::shard::Shard;

/// Purge acknowledged segments every this many background rounds.
const PURGE_EVERY: u64 = 50;

/// Follows the control group: first a linearizable read (this node must know every epoch handed out before it
/// judges appends or leads), then every applied change.
pub(super) async fn follow_control(service: Weak<QueueService>) {
    loop {
        let Some(s) = service.upgrade() else { return };
        if s.stopping.load(Ordering::Relaxed) {
            return;
        }
        match s.group.linearizable_read().await {
            Ok(()) => {
                s.caught_up.store(true, Ordering::Relaxed);
                break;
            }
            Err(e) => tracing::debug!(error = %e, "waiting for the queue control group"),
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut applied = match service.upgrade() {
        Some(s) => s.group.shared().subscribe(),
        None => return,
    };
    loop {
        let Some(s) = service.upgrade() else { return };
        s.reconcile();
        drop(s);
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// The node's periodic work (see the module doc).
pub(super) async fn background(service: Weak<QueueService>) {
    let mut round: u64 = 0;
    loop {
        let Some(s) = service.upgrade() else { return };
        let interval = s.config.ping_interval;
        if !s.stopping.load(Ordering::Relaxed) {
            s.keep_session().await;
            // Every round, leading or not: a node that stops leading must forget when it began, so that leading
            // again gives every session a full timeout instead of fencing the ones it heard from last term.
            let leading = s.group.is_leader();
            s.sessions.lead(leading);
            if leading {
                s.lead_control();
            }
            s.tick_leaders();
            if round.is_multiple_of(PURGE_EVERY) {
                for shard in s.local_shards() {
                    shard.purge().await;
                }
            }
            // Catch what a missed change notification would leave behind.
            if round.is_multiple_of(10) && s.caught_up.load(Ordering::Relaxed) {
                s.reconcile();
            }
        }
        round += 1;
        drop(s);
        tokio::time::sleep(interval).await;
    }
}

impl QueueService {
    /// Proposes `command` in the background; its effect arrives through the control state.
    fn propose_later(self: &Arc<Self>, command: ControlCommand) {
        let group = self.group.clone();
        tokio::spawn(async move {
            if let Err(e) = group.propose(command.clone()).await {
                tracing::debug!(error = %e, ?command, "control proposal not applied");
            }
        });
    }

    /// Registers this process's session when the control state does not show it, and heartbeats.
    async fn keep_session(self: &Arc<Self>) {
        let me = self.config.id;
        let registered = self.read_control(|c| c.nodes.get(&me).map(|n| n.session));
        if registered != Some(self.session) {
            self.propose_later(ControlCommand::StartSession {
                node: me,
                session: self.session,
            });
        }
        let beat = Heartbeat {
            node: me,
            session: self.session,
        };
        if let Err(e) =
            control::send_heartbeat(&self.group, &self.sessions, beat, self.config.ping_interval)
                .await
        {
            tracing::debug!(error = %e, "heartbeat not delivered");
        }
    }

    /// The control group leader's duties: fence and unfence sessions, form a static cluster's first ring, shrink
    /// the voters to the ring once moves settled.
    fn lead_control(self: &Arc<Self>) {
        let state = self.control();
        for command in self.sessions.due(&state, self.config.failure_timeout) {
            tracing::info!(?command, "session change");
            self.propose_later(command);
        }
        if state.ring.is_none()
            && let crate::addrs::PeerSource::Static { peers, join: false } = &self.config.source
        {
            self.propose_later(ControlCommand::SetRing {
                members: peers.keys().copied().collect(),
                vnodes: self.config.vnodes,
                replication_factor: self.config.replication_factor as u32,
                addrs: peers.clone(),
            });
        }
        self.settle_voters(&state);
    }

    /// Lets every leader engine here propose in-sync changes.
    fn tick_leaders(self: &Arc<Self>) {
        for shard in self.local_shards() {
            let leading = shard.lock().leading().cloned();
            if let Some(command) = leading.and_then(|l| l.tick()) {
                self.propose_later(command);
            }
        }
    }

    /// Compares every shard record with what this node does (see the module doc).
    pub(super) fn reconcile(self: &Arc<Self>) {
        if !self.caught_up.load(Ordering::Relaxed) {
            return;
        }
        let me = self.config.id;
        let state = self.control();
        if let Some(ring) = &state.ring {
            self.addrs.record(&ring.addrs);
        }
        let fenced = state.fenced();
        let mine = state
            .nodes
            .get(&me)
            .is_some_and(|n| n.session == self.session && !n.fenced);
        let mut seen = BTreeSet::new();
        for (name, record) in &state.shards {
            seen.insert(name.clone());
            let local = self.shard(name);
            let leading = local.as_ref().and_then(|s| s.lock().leading().cloned());
            let should_lead =
                mine && record.leader == Some(me) && !self.stopping.load(Ordering::Relaxed);
            if let (Some(shard), Some(current)) = (&local, &leading) {
                let still = should_lead
                    && current.epoch == record.epoch
                    && current.control_changed(shard, &self.streams, record, &fenced);
                if !still {
                    current.depose();
                    shard.step_down(current);
                }
            }
            let leads_now = local
                .as_ref()
                .is_some_and(|s| s.lock().leading().is_some_and(|l| l.epoch == record.epoch));
            if should_lead && !leads_now {
                self.spawn_lead(name, record.clone(), fenced.clone());
            }
            if !record.replicas.contains(&me)
                && let Some(shard) = local
            {
                self.spawn_retire(shard);
            }
        }
    }

    fn claim(&self, name: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned())
    }

    fn release(&self, name: &str) {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    fn spawn_lead(self: &Arc<Self>, name: &str, record: ShardControl, fenced: BTreeSet<u64>) {
        if !self.claim(name) {
            return;
        }
        let service = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            let result = match service.open_shard(&name).await {
                Ok(shard) => leading::lead(
                    &shard,
                    &service.streams,
                    &record,
                    &fenced,
                    service.config.timing(),
                )
                .await
                .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(shard = %name, error = %e, "could not start leading");
            }
            service.release(&name);
            // The record may have changed meanwhile.
            service.reconcile();
        });
    }

    /// Deletes this node's copy of a shard the control state no longer places here (its move finished).
    fn spawn_retire(self: &Arc<Self>, shard: Arc<Shard>) {
        if !self.claim(&shard.name) {
            return;
        }
        let service = self.clone();
        tokio::spawn(async move {
            let _gate = shard.gate.lock().await;
            let me = service.config.id;
            let still_gone = service.read_control(|c| {
                c.shards
                    .get(&shard.name)
                    .is_some_and(|r| !r.replicas.contains(&me))
            });
            if still_gone && shard.lock().leading().is_none() {
                service
                    .shards
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&shard.name);
                match shard.log.clone().destroy().await {
                    Ok(()) => {
                        let _ = tokio::fs::remove_dir_all(shard.dir()).await;
                        tracing::info!(shard = %shard.name, "dropped a copy the ring moved to other nodes");
                    }
                    Err(e) => {
                        tracing::warn!(shard = %shard.name, error = %e, "cannot delete a moved copy")
                    }
                }
            }
            drop(_gate);
            service.release(&shard.name);
        });
    }

    /// Hands this node's shards to in-sync replicas (a drain) and waits, bounded, until it leads none.
    pub(super) async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let me = self.config.id;
        let leads =
            |s: &QueueService| s.read_control(|c| c.shards.values().any(|r| r.leader == Some(me)));
        if !leads(self) {
            return;
        }
        match tokio::time::timeout_at(
            deadline,
            self.group.propose(ControlCommand::Drain { node: me }),
        )
        .await
        {
            Ok(Ok((_, outcome))) => tracing::info!(?outcome, "drained the queue shards"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not drain the queue shards"),
            Err(_) => tracing::warn!("draining the queue shards timed out"),
        }
        for shard in self.local_shards() {
            shard.lock().follow();
        }
    }
}
