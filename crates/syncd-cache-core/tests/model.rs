//! Model check of the MESI protocol core with `stateright`: every interleaving of client operations, evictions,
//! crashes and message deliveries (in any order) over small clusters, checked against the coherence invariants.
//!
//! The model drives the real [`NodeKey`] and [`HomeKey`] code; only the network and the clients are modelled. Homes
//! never crash here (a restarted home starts empty and waits out every lease: that is the runtime's job, see
//! docs/cache.md). Values are write ids; each write's place in the key's history is the home transaction that
//! granted it (plus the write id for silent writes at an `M` copy), which is how "latest completed write" is judged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use stateright::{Checker, Model, Property};
use syncd_cache_core::{
    Effect, Home, HomeKey, Incoming, LineState, NodeKey, Outcome, Policy, ProbeAnswer, ReadStep,
    Reply, Request, Txn, WriteStep,
};

/// A value's place in a key's history: (granting transaction, write id for silent writes else 0).
type Pos = (Txn, u8);

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    Request {
        key: usize,
        from: usize,
        inc: u64,
        tag: u64,
        request: Request<u8>,
    },
    Reply {
        key: usize,
        to: usize,
        inc: u64,
        reply: Reply<u8>,
    },
    Probe {
        key: usize,
        to: usize,
        probe: syncd_cache_core::Probe,
    },
    Answer {
        key: usize,
        from: usize,
        inc: u64,
        txn: Txn,
        answer: ProbeAnswer<u8>,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Op {
    /// A read in flight, and the newest completed write when it began.
    Read(Pos),
    /// A write of this id in flight.
    Write(u8),
    /// A delete (with this id) in flight.
    Delete(u8),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Peer {
    inc: u64,
    keys: Vec<NodeKey<u8>>,
    ops: Vec<Option<Op>>,
    reads_left: u8,
    evicts_left: u8,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, Default)]
struct Ghost {
    /// Place of each written value.
    pos: BTreeMap<u8, Pos>,
    /// Per key: the newest completed write or delete.
    completed: Vec<Pos>,
    /// Per key: the newest moment the key had no value (deletes, losses; the start).
    absent: Vec<Pos>,
    next_id: u8,
    writes_left: u8,
    deletes_left: u8,
    crashes_left: u8,
    violation: Option<String>,
    outrun: bool,
    remote_read: bool,
    lost: bool,
    writeback_answered: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Sys {
    peers: Vec<Peer>,
    homes: Vec<Home>,
    dirs: Vec<HomeKey<u8>>,
    net: Vec<Msg>,
    ghost: Ghost,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Read(usize, usize),
    Write(usize, usize),
    Delete(usize, usize),
    Evict(usize, usize),
    Crash(usize),
    Deliver(Msg),
    Unreachable(usize, usize),
}

struct Cluster {
    peers: usize,
    keys: usize,
    writes: u8,
    deletes: u8,
    reads: u8,
    evicts: u8,
    crashes: u8,
    policy: Policy,
}

impl Cluster {
    fn home_of(&self, key: usize) -> usize {
        key % self.peers
    }

    fn is_home(&self, peer: usize) -> bool {
        (0..self.keys).any(|k| self.home_of(k) == peer)
    }
}

fn send(net: &mut Vec<Msg>, msg: Msg) {
    // The network is a multiset: kept sorted so equal states hash equally.
    let at = net.partition_point(|m| *m < msg);
    net.insert(at, msg);
}

fn check_read(ghost: &mut Ghost, key: usize, value: Option<u8>, floor: Pos, reader: usize) {
    let seen = match value {
        Some(id) => match ghost.pos.get(&id) {
            Some(p) => *p,
            None => {
                ghost.violation = Some(format!("read {id} has no place in the history"));
                return;
            }
        },
        None => ghost.absent[key],
    };
    if seen < floor {
        ghost.violation = Some(format!(
            "peer {reader} read {value:?} (at {seen:?}) after a write at {floor:?} completed"
        ));
    }
}

impl Cluster {
    /// Applies home effects: replies and probes go on the network; the ghost learns each grant's place.
    fn home_effects(
        &self,
        state: &mut Sys,
        key: usize,
        (lost_before, txn_before): (u64, Txn),
        effects: Vec<Effect<u8>>,
    ) {
        for effect in effects {
            match effect {
                Effect::Probe { to, probe, .. } => send(
                    &mut state.net,
                    Msg::Probe {
                        key,
                        to: to as usize,
                        probe,
                    },
                ),
                Effect::Reply { to, tag, reply } => {
                    match &reply {
                        Reply::Granted { grant, .. } => {
                            state.ghost.pos.insert(tag as u8, (*grant, 0));
                        }
                        Reply::Deleted { txn } => {
                            state.ghost.pos.insert(tag as u8, (*txn, 0));
                            state.ghost.absent[key] = state.ghost.absent[key].max((*txn, 0));
                        }
                        _ => {}
                    }
                    let inc = tag >> 8;
                    send(
                        &mut state.net,
                        Msg::Reply {
                            key,
                            to: to as usize,
                            inc,
                            reply,
                        },
                    );
                }
            }
        }
        if state.dirs[key].lost() > lost_before {
            // The value went with a crashed holder, found out by the transaction running when this step began (or
            // one started in it): it reads as absent after everything before that transaction.
            state.ghost.absent[key] = state.ghost.absent[key].max((txn_before, u8::MAX));
            state.ghost.lost = true;
        }
    }

    fn client_outcome(&self, state: &mut Sys, peer: usize, key: usize, outcome: Outcome<u8>) {
        let op = state.peers[peer].ops[key].take();
        match (op, outcome) {
            (Some(Op::Read(floor)), Outcome::Value(v, installed)) => {
                if installed == LineState::I {
                    state.ghost.outrun = true;
                }
                if state.ghost.pos.get(&v).is_some_and(|p| p.0 != 0) {
                    state.ghost.remote_read = true;
                }
                check_read(&mut state.ghost, key, Some(v), floor, peer);
            }
            (Some(Op::Read(floor)), Outcome::NotFound) => {
                check_read(&mut state.ghost, key, None, floor, peer);
            }
            (Some(Op::Write(id)), Outcome::Written(left)) => {
                if left == LineState::I {
                    state.ghost.outrun = true;
                }
                let Some(pos) = state.ghost.pos.get(&id).copied() else {
                    state.ghost.violation = Some(format!("write {id} completed without a place"));
                    return;
                };
                state.ghost.completed[key] = state.ghost.completed[key].max(pos);
            }
            (Some(Op::Delete(id)), Outcome::Written(_)) => {
                let Some(pos) = state.ghost.pos.get(&id).copied() else {
                    state.ghost.violation = Some(format!("delete {id} completed without a place"));
                    return;
                };
                state.ghost.completed[key] = state.ghost.completed[key].max(pos);
            }
            (_, Outcome::WrittenBack | Outcome::Unexpected | Outcome::Stale) => {}
            (op, outcome) => {
                state.ghost.violation = Some(format!("{op:?} ended with {outcome:?}"));
            }
        }
    }
}

impl Model for Cluster {
    type State = Sys;
    type Action = Action;

    fn init_states(&self) -> Vec<Sys> {
        let peer = Peer {
            inc: 0,
            keys: vec![NodeKey::default(); self.keys],
            ops: vec![None; self.keys],
            reads_left: self.reads,
            evicts_left: self.evicts,
        };
        vec![Sys {
            peers: vec![peer; self.peers],
            homes: vec![Home::new(0, self.policy, 0); self.peers],
            dirs: vec![HomeKey::default(); self.keys],
            net: Vec::new(),
            ghost: Ghost {
                completed: vec![(0, 0); self.keys],
                absent: vec![(0, 0); self.keys],
                next_id: 1,
                writes_left: self.writes,
                deletes_left: self.deletes,
                crashes_left: self.crashes,
                ..Ghost::default()
            },
        }]
    }

    fn actions(&self, state: &Sys, actions: &mut Vec<Action>) {
        for (p, peer) in state.peers.iter().enumerate() {
            for k in 0..self.keys {
                let idle = peer.ops[k].is_none() && !peer.keys[k].busy();
                if idle && peer.reads_left > 0 {
                    actions.push(Action::Read(p, k));
                }
                if idle && state.ghost.writes_left > 0 {
                    actions.push(Action::Write(p, k));
                }
                if idle && state.ghost.deletes_left > 0 {
                    actions.push(Action::Delete(p, k));
                }
                if peer.evicts_left > 0 && peer.keys[k].copy().is_some() {
                    actions.push(Action::Evict(p, k));
                }
            }
            if state.ghost.crashes_left > 0 && !self.is_home(p) {
                actions.push(Action::Crash(p));
            }
        }
        let mut seen: Vec<&Msg> = Vec::new();
        for msg in &state.net {
            if !seen.contains(&msg) {
                seen.push(msg);
                actions.push(Action::Deliver(msg.clone()));
            }
        }
        // A transaction waiting on a crashed incarnation may give it up (its lease ran out; it serves nothing).
        for (k, dir) in state.dirs.iter().enumerate() {
            for (p, peer) in state.peers.iter().enumerate() {
                let id = p as u64;
                if dir.waits_on(id) && dir.holder(id).is_some_and(|h| h.inc < peer.inc) {
                    actions.push(Action::Unreachable(k, p));
                }
            }
        }
    }

    fn next_state(&self, last: &Sys, action: Action) -> Option<Sys> {
        let mut state = last.clone();
        match action {
            Action::Read(p, k) => {
                state.peers[p].reads_left -= 1;
                let floor = state.ghost.completed[k];
                match state.peers[p].keys[k].read() {
                    ReadStep::Hit(v, _) => check_read(&mut state.ghost, k, Some(v), floor, p),
                    ReadStep::Miss(request) => {
                        state.peers[p].ops[k] = Some(Op::Read(floor));
                        let inc = state.peers[p].inc;
                        send(
                            &mut state.net,
                            Msg::Request {
                                key: k,
                                from: p,
                                inc,
                                tag: inc << 8,
                                request,
                            },
                        );
                    }
                    ReadStep::Busy => return None,
                }
            }
            Action::Write(p, k) | Action::Delete(p, k) => {
                let delete = matches!(action, Action::Delete(..));
                let id = state.ghost.next_id;
                state.ghost.next_id += 1;
                let value = if delete {
                    state.ghost.deletes_left -= 1;
                    None
                } else {
                    state.ghost.writes_left -= 1;
                    Some(id)
                };
                match state.peers[p].keys[k].write(value, self.policy) {
                    WriteStep::Done => {
                        let grant = state.peers[p].keys[k].copy()?.grant;
                        state.ghost.pos.insert(id, (grant, id));
                        state.ghost.completed[k] = state.ghost.completed[k].max((grant, id));
                    }
                    WriteStep::Send(request) => {
                        state.peers[p].ops[k] = Some(if delete {
                            Op::Delete(id)
                        } else {
                            Op::Write(id)
                        });
                        let inc = state.peers[p].inc;
                        send(
                            &mut state.net,
                            Msg::Request {
                                key: k,
                                from: p,
                                inc,
                                tag: (inc << 8) | u64::from(id),
                                request,
                            },
                        );
                    }
                    WriteStep::Busy => return None,
                }
            }
            Action::Evict(p, k) => {
                state.peers[p].evicts_left -= 1;
                if let Some(request) = state.peers[p].keys[k].evict() {
                    let inc = state.peers[p].inc;
                    send(
                        &mut state.net,
                        Msg::Request {
                            key: k,
                            from: p,
                            inc,
                            tag: inc << 8,
                            request,
                        },
                    );
                }
            }
            Action::Crash(p) => {
                state.ghost.crashes_left -= 1;
                let peer = &mut state.peers[p];
                peer.inc += 1;
                peer.keys = vec![NodeKey::default(); self.keys];
                peer.ops = vec![None; self.keys];
            }
            Action::Unreachable(k, p) => {
                let home = self.home_of(k);
                let before = (state.dirs[k].lost(), state.homes[home].last_txn());
                let effects = state.dirs[k].on_unreachable(&mut state.homes[home], 0, p as u64);
                self.home_effects(&mut state, k, before, effects);
            }
            Action::Deliver(msg) => {
                let at = state.net.iter().position(|m| *m == msg)?;
                state.net.remove(at);
                match msg {
                    Msg::Request {
                        key,
                        from,
                        inc,
                        tag,
                        request,
                    } => {
                        let home = self.home_of(key);
                        let before = (state.dirs[key].lost(), state.homes[home].last_txn());
                        let effects = state.dirs[key].submit(
                            &mut state.homes[home],
                            0,
                            Incoming {
                                from: from as u64,
                                inc,
                                tag,
                                request,
                            },
                        );
                        self.home_effects(&mut state, key, before, effects);
                    }
                    Msg::Reply {
                        key,
                        to,
                        inc,
                        reply,
                    } => {
                        // A reply to an earlier incarnation dies with its connection.
                        if state.peers[to].inc == inc {
                            let outcome = state.peers[to].keys[key].on_reply(reply);
                            self.client_outcome(&mut state, to, key, outcome);
                        }
                    }
                    Msg::Probe { key, to, probe } => {
                        let answer = state.peers[to].keys[key].on_probe(probe);
                        if matches!(answer, ProbeAnswer::Data { kept: false, .. }) {
                            state.ghost.writeback_answered = true;
                        }
                        let inc = state.peers[to].inc;
                        send(
                            &mut state.net,
                            Msg::Answer {
                                key,
                                from: to,
                                inc,
                                txn: probe.txn,
                                answer,
                            },
                        );
                    }
                    Msg::Answer {
                        key,
                        from,
                        inc,
                        txn,
                        answer,
                    } => {
                        let home = self.home_of(key);
                        let before = (state.dirs[key].lost(), state.homes[home].last_txn());
                        let effects = state.dirs[key].on_answer(
                            &mut state.homes[home],
                            0,
                            from as u64,
                            inc,
                            txn,
                            answer,
                        );
                        self.home_effects(&mut state, key, before, effects);
                    }
                }
            }
        }
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("single writer or many readers", |_, s: &Sys| {
                (0..s.dirs.len()).all(|k| {
                    let states: Vec<LineState> =
                        s.peers.iter().map(|p| p.keys[k].state()).collect();
                    let exclusive = states
                        .iter()
                        .filter(|st| matches!(st, LineState::E | LineState::M))
                        .count();
                    let shared = states.iter().filter(|st| **st == LineState::S).count();
                    exclusive == 0 || (exclusive == 1 && shared == 0)
                })
            }),
            Property::always("reads return the latest completed write", |_, s: &Sys| {
                s.ghost.violation.is_none()
            }),
            // The races that matter must be reached, or the check proves little.
            Property::sometimes("a read sees a write made through the home", |_, s: &Sys| {
                s.ghost.remote_read
            }),
            Property::sometimes("a probe outruns a fill", |_, s: &Sys| s.ghost.outrun),
            Property::sometimes(
                "a recall is answered from a write-back",
                |m: &Cluster, s: &Sys| {
                    m.evicts == 0 || m.policy.write_through || s.ghost.writeback_answered
                },
            ),
            Property::sometimes(
                "a crashed holder's dirty line is lost",
                |m: &Cluster, s: &Sys| m.crashes == 0 || m.policy.write_through || s.ghost.lost,
            ),
            Property::always(
                "writing through never loses a value",
                |m: &Cluster, s: &Sys| !m.policy.write_through || !s.ghost.lost,
            ),
        ]
    }
}

fn check(cluster: Cluster) -> usize {
    let checker = cluster.checker().threads(2).spawn_bfs().join();
    checker.assert_properties();
    checker.unique_state_count()
}

fn back() -> Policy {
    Policy {
        write_through: false,
    }
}

fn through() -> Policy {
    Policy {
        write_through: true,
    }
}

#[test]
fn two_peers_one_key_with_a_crash() {
    let states = check(Cluster {
        peers: 2,
        keys: 1,
        writes: 2,
        deletes: 1,
        reads: 1,
        evicts: 1,
        crashes: 1,
        policy: back(),
    });
    println!("{states} states");
}

#[test]
fn three_peers_one_key() {
    let states = check(Cluster {
        peers: 3,
        keys: 1,
        writes: 2,
        deletes: 0,
        reads: 1,
        evicts: 1,
        crashes: 0,
        policy: back(),
    });
    println!("{states} states");
}

#[test]
fn two_peers_two_keys() {
    let states = check(Cluster {
        peers: 2,
        keys: 2,
        writes: 2,
        deletes: 1,
        reads: 1,
        evicts: 1,
        crashes: 0,
        policy: back(),
    });
    println!("{states} states");
}

#[test]
fn writing_through_with_a_crash() {
    let states = check(Cluster {
        peers: 2,
        keys: 1,
        writes: 2,
        deletes: 1,
        reads: 1,
        evicts: 1,
        crashes: 1,
        policy: through(),
    });
    println!("{states} states");
}
