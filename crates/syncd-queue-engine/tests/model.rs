//! Model check of the queue replication rules with `stateright`: every interleaving of client writes, local
//! fsyncs, appends and their answers (delivered in any order, or lost), in-sync changes proposed by leaders and
//! applied (or lost), control-group fencing and unfencing (false suspicion included), crashes that lose what was
//! not fsynced, and restarts, over one shard on two or three nodes.
//!
//! The model drives the real [`ControlState`] (the control group is linearizable, so it is one atomic value here)
//! and the real [`LeaderEngine`]; only the network, the disks and the clients are modelled. Each write carries a
//! unique value; the log entry for lsn `i` is `log[i - 1] = (epoch, value)` (value 0 is an epoch marker).
//!
//! Checked: an acknowledged write is in the log of every in-sync copy at its lsn (so in every future leader's);
//! one writer per epoch; logs that agree on an entry's epoch agree on everything before it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use stateright::{Checker, Model, Property};
use syncd_queue_engine::control::{ControlCommand, ControlState, ShardControl};
use syncd_queue_engine::leader::{ControlVerdict, LeaderEngine, Start, Timing};
use syncd_queue_engine::{Epoch, NodeId};

const SHARD: &str = "q";
const TIMING: Timing = Timing {
    lag_timeout_ms: 10,
    resend_ms: 1_000_000,
};
/// Every tick comes late enough for any replica that is behind to count as lagging: timeouts may fire at any
/// moment, which is the adversarial case (a stall, a slow disk).
const LATE: u64 = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    /// A leader's whole log (the replica applies raft's rule: cut at the first conflict, append the rest).
    Append {
        from: NodeId,
        to: NodeId,
        epoch: Epoch,
        entries: Vec<(Epoch, u8)>,
    },
    /// The replica holds `entries[..len]` of that append durably.
    Ack {
        from: NodeId,
        to: NodeId,
        epoch: Epoch,
        len: u64,
    },
    /// The replica knows a newer epoch.
    Stale { to: NodeId, epoch: Epoch },
    /// An in-sync change on its way to the control group.
    Propose(ControlCommand),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Node {
    log: Vec<(Epoch, u8)>,
    /// Entries `log[..durable]` survive a crash.
    durable: usize,
    session: u64,
    /// The newest epoch this process knows of; older appends are refused.
    known_epoch: Epoch,
    /// The newest epoch this process led (a process never leads an epoch twice).
    led: Epoch,
    leader: Option<LeaderEngine>,
    /// Client writes waiting for their acknowledgement: (lsn, value).
    waiting: BTreeSet<(u64, u8)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Sys {
    control: ControlState,
    nodes: Vec<Node>,
    net: Vec<Msg>,
    /// Acknowledged writes: (lsn, value).
    acked: BTreeSet<(u64, u8)>,
    /// (epoch, node) of every entry written by a leader.
    writers: BTreeSet<(Epoch, NodeId)>,
    next_value: u8,
    crashes: u8,
    fences: u8,
    proposals: u8,
    /// Ghost: a write was acknowledged by a leader that took over from another.
    acked_after_failover: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Write(usize),
    Fsync(usize),
    Send(usize, NodeId),
    Deliver(usize),
    Lose(usize),
    Learn(usize),
    Tick(usize),
    Fence(usize),
    Unfence(usize),
    Crash(usize),
    StartSession(usize),
}

struct Cluster {
    nodes: usize,
    writes: u8,
    crashes: u8,
    fences: u8,
    /// In-sync changes leaders may propose (a lagging replica leaves and rejoins forever otherwise).
    proposals: u8,
    net_limit: usize,
}

impl Sys {
    fn shard(&self) -> &ShardControl {
        &self.control.shards[SHARD]
    }
}

fn ack_through(node: &mut Node, hw: u64, acked: &mut BTreeSet<(u64, u8)>) -> bool {
    let done: Vec<(u64, u8)> = node
        .waiting
        .iter()
        .filter(|(l, _)| *l <= hw)
        .copied()
        .collect();
    for w in &done {
        node.waiting.remove(w);
        acked.insert(*w);
    }
    !done.is_empty()
}

fn step_down(node: &mut Node) {
    node.leader = None;
    // Waiting clients get an error: the outcome of their write is unknown to them.
    node.waiting.clear();
}

impl Model for Cluster {
    type State = Sys;
    type Action = Action;

    fn init_states(&self) -> Vec<Sys> {
        let ids: Vec<NodeId> = (0..self.nodes as NodeId).collect();
        let mut control = ControlState::default();
        control.apply(
            0,
            &ControlCommand::SetRing {
                members: ids.clone(),
                vnodes: 4,
                replication_factor: self.nodes as u32,
                addrs: BTreeMap::new(),
            },
        );
        for id in &ids {
            control.apply(
                0,
                &ControlCommand::StartSession {
                    node: *id,
                    session: 1,
                },
            );
        }
        control.apply(
            0,
            &ControlCommand::CreateShard {
                shard: SHARD.into(),
            },
        );
        let node = Node {
            log: Vec::new(),
            durable: 0,
            session: 1,
            known_epoch: 0,
            led: 0,
            leader: None,
            waiting: BTreeSet::new(),
        };
        vec![Sys {
            control,
            nodes: vec![node; self.nodes],
            net: Vec::new(),
            acked: BTreeSet::new(),
            writers: BTreeSet::new(),
            next_value: 1,
            crashes: 0,
            fences: 0,
            proposals: 0,
            acked_after_failover: false,
        }]
    }

    fn actions(&self, s: &Sys, actions: &mut Vec<Action>) {
        for (i, node) in s.nodes.iter().enumerate() {
            if let Some(engine) = &node.leader {
                if s.next_value <= self.writes {
                    actions.push(Action::Write(i));
                }
                if s.net.len() < self.net_limit {
                    for peer in engine.replicas() {
                        let msg = Msg::Append {
                            from: i as NodeId,
                            to: peer,
                            epoch: engine.epoch(),
                            entries: node.log.clone(),
                        };
                        // The same append twice in flight adds nothing a redelivery does not.
                        if !s.net.contains(&msg) {
                            actions.push(Action::Send(i, peer));
                        }
                    }
                }
                if s.proposals < self.proposals {
                    actions.push(Action::Tick(i));
                }
            }
            if node.durable < node.log.len() {
                actions.push(Action::Fsync(i));
            }
            actions.push(Action::Learn(i));
            let state = s.control.nodes.get(&(i as NodeId));
            match state {
                Some(st) if st.session != node.session => actions.push(Action::StartSession(i)),
                Some(st) if st.fenced => actions.push(Action::Unfence(i)),
                Some(_) if s.fences < self.fences => actions.push(Action::Fence(i)),
                _ => {}
            }
            if s.crashes < self.crashes {
                actions.push(Action::Crash(i));
            }
        }
        for i in 0..s.net.len() {
            actions.push(Action::Deliver(i));
            actions.push(Action::Lose(i));
        }
    }

    fn next_state(&self, last: &Sys, action: Action) -> Option<Sys> {
        let mut s = last.clone();
        match action {
            Action::Write(i) => {
                let value = s.next_value;
                s.next_value += 1;
                let node = &mut s.nodes[i];
                let engine = node.leader.as_mut()?;
                let epoch = engine.epoch();
                node.log.push((epoch, value));
                let lsn = node.log.len() as u64;
                engine.appended(lsn);
                node.waiting.insert((lsn, value));
                s.writers.insert((epoch, i as NodeId));
            }
            Action::Fsync(i) => {
                let node = &mut s.nodes[i];
                node.durable = node.log.len();
                let durable = node.durable as u64;
                if let Some(hw) = node.leader.as_mut().and_then(|e| e.local_durable(durable)) {
                    let failover = node.leader.as_ref().is_some_and(|e| e.epoch() > 1);
                    if ack_through(node, hw, &mut s.acked) && failover {
                        s.acked_after_failover = true;
                    }
                }
            }
            Action::Send(i, peer) => {
                let node = &s.nodes[i];
                let engine = node.leader.as_ref()?;
                s.net.push(Msg::Append {
                    from: i as NodeId,
                    to: peer,
                    epoch: engine.epoch(),
                    entries: node.log.clone(),
                });
                s.net.sort();
            }
            Action::Lose(m) => {
                s.net.remove(m);
            }
            Action::Deliver(m) => {
                let msg = s.net.remove(m);
                self.deliver(&mut s, msg);
                s.net.sort();
            }
            Action::Learn(i) => self.learn(&mut s, i),
            Action::Tick(i) => {
                let engine = s.nodes[i].leader.as_mut()?;
                let command = engine.tick(LATE)?;
                s.proposals += 1;
                if s.net.len() < self.net_limit {
                    s.net.push(Msg::Propose(command));
                    s.net.sort();
                }
            }
            Action::Fence(i) => {
                s.fences += 1;
                let session = s.control.nodes[&(i as NodeId)].session;
                s.control.apply(
                    0,
                    &ControlCommand::Fence {
                        node: i as NodeId,
                        session,
                    },
                );
            }
            Action::Unfence(i) => {
                let session = s.control.nodes[&(i as NodeId)].session;
                s.control.apply(
                    0,
                    &ControlCommand::Unfence {
                        node: i as NodeId,
                        session,
                    },
                );
            }
            Action::StartSession(i) => {
                let session = s.nodes[i].session;
                s.control.apply(
                    0,
                    &ControlCommand::StartSession {
                        node: i as NodeId,
                        session,
                    },
                );
            }
            Action::Crash(i) => {
                s.crashes += 1;
                let control_epoch = s.shard().epoch;
                let node = &mut s.nodes[i];
                node.log.truncate(node.durable);
                node.session += 1;
                // A restarted copy reads the control group (linearizably) before it accepts appends, so it knows
                // every epoch the group handed out, including one it led but never wrote durably.
                node.known_epoch = node.log.last().map_or(0, |e| e.0).max(control_epoch);
                node.led = 0;
                step_down(node);
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "every in-sync copy holds every acknowledged write",
                |_, s: &Sys| {
                    let shard = s.shard();
                    s.acked.iter().all(|(lsn, value)| {
                        shard.isr.iter().all(|n| {
                            s.nodes[*n as usize].log.get(*lsn as usize - 1).map(|e| e.1)
                                == Some(*value)
                        })
                    })
                },
            ),
            Property::always("one writer per epoch", |_, s: &Sys| {
                let epochs: BTreeSet<Epoch> = s.writers.iter().map(|(e, _)| *e).collect();
                epochs.len() == s.writers.len()
            }),
            Property::always(
                "logs that agree on an entry agree on all before it",
                |_, s: &Sys| {
                    s.nodes.iter().all(|a| {
                        s.nodes.iter().all(|b| {
                            (0..a.log.len().min(b.log.len()))
                                .filter(|i| a.log[*i].0 == b.log[*i].0)
                                .all(|i| a.log[..=i] == b.log[..=i])
                        })
                    })
                },
            ),
            Property::always("the leader is in sync", |_, s: &Sys| {
                let shard = s.shard();
                !shard.isr.is_empty() && shard.leader.is_none_or(|l| shard.isr.contains(&l))
            }),
            Property::sometimes("a write is acknowledged", |_, s: &Sys| !s.acked.is_empty()),
            Property::sometimes(
                "a write is acknowledged by a later leader",
                |m: &Cluster, s: &Sys| m.fences + m.crashes == 0 || s.acked_after_failover,
            ),
        ]
    }
}

impl Cluster {
    fn deliver(&self, s: &mut Sys, msg: Msg) {
        match msg {
            Msg::Append {
                from,
                to,
                epoch,
                entries,
            } => {
                let node = &mut s.nodes[to as usize];
                if epoch < node.known_epoch {
                    s.net.push(Msg::Stale {
                        to: from,
                        epoch: node.known_epoch,
                    });
                    return;
                }
                node.known_epoch = epoch;
                if node.leader.as_ref().is_some_and(|e| e.epoch() < epoch) {
                    step_down(node);
                }
                if node.leader.is_some() {
                    // Two leaders in one epoch: "one writer per epoch" reports it.
                    return;
                }
                let conflict = (0..node.log.len().min(entries.len()))
                    .find(|i| node.log[*i].0 != entries[*i].0);
                if let Some(at) = conflict {
                    node.log.truncate(at);
                }
                for entry in entries.iter().skip(node.log.len()) {
                    node.log.push(*entry);
                }
                node.durable = node.log.len();
                s.net.push(Msg::Ack {
                    from: to,
                    to: from,
                    epoch,
                    len: entries.len() as u64,
                });
            }
            Msg::Ack {
                from,
                to,
                epoch,
                len,
            } => {
                let node = &mut s.nodes[to as usize];
                let Some(engine) = node.leader.as_mut() else {
                    return;
                };
                if engine.epoch() != epoch {
                    return;
                }
                let failover = engine.epoch() > 1;
                if let Some(hw) = engine.peer_acked(from, len, 0)
                    && ack_through(node, hw, &mut s.acked)
                    && failover
                {
                    s.acked_after_failover = true;
                }
            }
            Msg::Stale { to, epoch } => {
                let node = &mut s.nodes[to as usize];
                node.known_epoch = node.known_epoch.max(epoch);
                if node.leader.as_ref().is_some_and(|e| e.epoch() < epoch) {
                    step_down(node);
                }
            }
            Msg::Propose(command) => {
                s.control.apply(0, &command);
            }
        }
    }

    /// A node reads the control state (it applies the control group's log): it steps down, follows a new record,
    /// or starts leading.
    fn learn(&self, s: &mut Sys, i: usize) {
        let me = i as NodeId;
        let shard = s.shard().clone();
        let fenced = s.control.fenced();
        let mine = s
            .control
            .nodes
            .get(&me)
            .is_some_and(|n| n.session == s.nodes[i].session);
        let node = &mut s.nodes[i];
        node.known_epoch = node.known_epoch.max(shard.epoch);
        if let Some(engine) = node.leader.as_mut() {
            match engine.control_changed(&shard, &fenced, 0) {
                ControlVerdict::StepDown => step_down(node),
                ControlVerdict::Lead(Some(hw)) => {
                    let failover = engine.epoch() > 1;
                    if ack_through(node, hw, &mut s.acked) && failover {
                        s.acked_after_failover = true;
                    }
                }
                ControlVerdict::Lead(None) => {}
            }
            return;
        }
        if shard.leader == Some(me) && mine && !fenced.contains(&me) && shard.epoch > node.led {
            node.led = shard.epoch;
            node.log.push((shard.epoch, 0));
            let start = node.log.len() as u64;
            let mut engine = LeaderEngine::new(
                SHARD,
                me,
                &shard,
                &fenced,
                Start {
                    epoch_start: start,
                    durable: node.durable as u64,
                    now_ms: 0,
                },
                TIMING,
            );
            engine.appended(start);
            node.leader = Some(engine);
            s.writers.insert((shard.epoch, me));
        }
    }
}

/// Explores every reachable state when `cap` is `None`; otherwise stops after about `cap` states (breadth first,
/// so every trace up to some length). `SYNCD_MODEL_STATES` overrides the cap (`0`: no cap) for a soak.
fn check(cluster: Cluster, cap: Option<usize>) -> usize {
    let cap = match std::env::var("SYNCD_MODEL_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(0) => None,
        Some(n) => Some(n),
        None => cap,
    };
    let checker = cluster.checker().threads(2);
    let checker = match cap {
        Some(n) => checker.target_state_count(n),
        None => checker,
    };
    let checker = checker.spawn_bfs().join();
    checker.assert_properties();
    checker.unique_state_count()
}

/// `SYNCD_MODEL_EXPLORE=nodes,writes,crashes,fences,proposals,net_limit` checks one more configuration.
#[test]
fn explore() {
    let Ok(spec) = std::env::var("SYNCD_MODEL_EXPLORE") else {
        return;
    };
    let v: Vec<usize> = spec.split(',').map(|x| x.parse().unwrap()).collect();
    let states = check(
        Cluster {
            nodes: v[0],
            writes: v[1] as u8,
            crashes: v[2] as u8,
            fences: v[3] as u8,
            proposals: v[4] as u8,
            net_limit: v[5],
        },
        None,
    );
    println!("{spec}: {states} states");
}

/// Every interleaving: two copies, a write, a crash, a (possibly false) fence, in-sync changes, lost messages.
#[test]
fn two_copies_exhaustively() {
    let states = check(
        Cluster {
            nodes: 2,
            writes: 1,
            crashes: 1,
            fences: 1,
            proposals: 1,
            net_limit: 2,
        },
        None,
    );
    println!("{states} states");
}

#[test]
fn two_copies_two_writes_bounded() {
    let states = check(
        Cluster {
            nodes: 2,
            writes: 2,
            crashes: 1,
            fences: 1,
            proposals: 2,
            net_limit: 2,
        },
        Some(2_000_000),
    );
    println!("{states} states");
}

#[test]
fn two_copies_two_crashes_bounded() {
    let states = check(
        Cluster {
            nodes: 2,
            writes: 2,
            crashes: 2,
            fences: 0,
            proposals: 2,
            net_limit: 2,
        },
        Some(2_000_000),
    );
    println!("{states} states");
}

#[test]
fn three_copies_bounded() {
    let states = check(
        Cluster {
            nodes: 3,
            writes: 2,
            crashes: 1,
            fences: 1,
            proposals: 2,
            net_limit: 2,
        },
        Some(2_000_000),
    );
    println!("{states} states");
}
