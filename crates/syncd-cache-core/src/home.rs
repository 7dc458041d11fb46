//! One key at its home: the directory entry (backing value, owner, sharers) and the transactions on it.
//!
//! The home runs one transaction per key at a time; requests that arrive meanwhile wait in a FIFO queue. A
//! transaction first probes the copies that stand in its way (the owner for a read; the owner and every sharer for a
//! write), collects every answer (or gives a silent holder up once its lease has run out), then answers the
//! requester and starts the next one.
//!
//! Losing a holder: an `E`/`M` holder that restarted (another incarnation answers) or stayed silent past its lease
//! may have had writes only it knew about. Unless the cluster writes through, the home then forgets the value:
//! readers get "not found" (a miss), never a value older than a write that completed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::message::{
    LineState, NodeId, Policy, Probe, ProbeAnswer, ProbeKind, Reply, Request, Txn,
};

/// The home side of one node: its transaction counter and the cluster's settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Home {
    next_txn: Txn,
    policy: Policy,
    lease_ms: u64,
}

impl Home {
    /// A home whose transaction numbers start above `first_txn` (callers pass something that grows across restarts,
    /// such as the start time in microseconds, so a restarted home never reuses a number).
    pub fn new(first_txn: Txn, policy: Policy, lease_ms: u64) -> Home {
        Home {
            next_txn: first_txn,
            policy,
            lease_ms,
        }
    }

    /// The cluster's settings.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The last transaction number issued.
    pub fn last_txn(&self) -> Txn {
        self.next_txn
    }

    fn next_txn(&mut self) -> Txn {
        self.next_txn += 1;
        self.next_txn
    }
}

/// A copy the home granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holder {
    /// The holder's incarnation when it asked.
    pub inc: u64,
    /// The grant.
    pub grant: Txn,
    /// Whether the holder may have written without telling the home (an `E` or `M` copy, not writing through).
    pub may_dirty: bool,
    /// When the holder's lease runs out, on the home's clock (milliseconds).
    pub expires: u64,
}

/// A request as the home received it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Incoming<V> {
    /// The requesting node.
    pub from: NodeId,
    /// Its incarnation.
    pub inc: u64,
    /// The runtime's handle for the reply.
    pub tag: u64,
    /// The request.
    pub request: Request<V>,
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect<V> {
    /// Ask `to` about its copy; if it cannot be reached before `deadline` (its lease), report it with
    /// [`HomeKey::on_unreachable`].
    Probe {
        /// The holder.
        to: NodeId,
        /// The question.
        probe: Probe,
        /// The holder's lease end on the home's clock.
        deadline: u64,
    },
    /// Answer the request tagged `tag` from `to`.
    Reply {
        /// The requester.
        to: NodeId,
        /// The request's handle.
        tag: u64,
        /// The answer.
        reply: Reply<V>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Active<V> {
    txn: Txn,
    incoming: Incoming<V>,
    waiting: BTreeSet<NodeId>,
}

/// One key's directory entry at its home.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HomeKey<V> {
    value: Option<V>,
    owner: Option<(NodeId, Holder)>,
    sharers: BTreeMap<NodeId, Holder>,
    active: Option<Active<V>>,
    queue: VecDeque<Incoming<V>>,
    lost: u64,
}

impl<V> Default for HomeKey<V> {
    fn default() -> Self {
        HomeKey {
            value: None,
            owner: None,
            sharers: BTreeMap::new(),
            active: None,
            queue: VecDeque::new(),
            lost: 0,
        }
    }
}

impl<V: Clone> HomeKey<V> {
    /// The backing value (older than the owner's while an `M` copy exists).
    pub fn value(&self) -> Option<&V> {
        self.value.as_ref()
    }

    /// The node holding the `E`/`M` copy, if any.
    pub fn owner(&self) -> Option<NodeId> {
        self.owner.map(|(n, _)| n)
    }

    /// The nodes holding `S` copies.
    pub fn sharers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.sharers.keys().copied()
    }

    /// The copy the directory records for `node`, if any.
    pub fn holder(&self, node: NodeId) -> Option<&Holder> {
        match &self.owner {
            Some((owner, holder)) if *owner == node => Some(holder),
            _ => self.sharers.get(&node),
        }
    }

    /// The runtime tags of the running and queued requests.
    pub fn tags(&self) -> impl Iterator<Item = u64> + '_ {
        self.active
            .iter()
            .map(|a| a.incoming.tag)
            .chain(self.queue.iter().map(|i| i.tag))
    }

    /// Whether the running transaction waits for `node`'s answer.
    pub fn waits_on(&self, node: NodeId) -> bool {
        self.active
            .as_ref()
            .is_some_and(|active| active.waiting.contains(&node))
    }

    /// How many times a holder's possibly dirty copy was lost (it restarted or went silent past its lease).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether no transaction runs or waits and no peer holds a copy: the entry may be forgotten.
    pub fn is_idle(&self) -> bool {
        self.active.is_none()
            && self.queue.is_empty()
            && self.owner.is_none()
            && self.sharers.is_empty()
    }

    /// Whether the entry may be forgotten at `now` (to bound the directory): no transaction runs or waits and
    /// every copy's lease has run out, so no peer serves one. Forgetting drops the backing value; an owner's
    /// unwritten changes are lost with it (its write-back will find no record and be ignored).
    pub fn droppable(&self, now: u64) -> bool {
        !self.is_busy()
            && self.owner.is_none_or(|(_, h)| h.expires <= now)
            && self.sharers.values().all(|h| h.expires <= now)
    }

    /// Whether a transaction runs or waits.
    pub fn is_busy(&self) -> bool {
        self.active.is_some() || !self.queue.is_empty()
    }

    /// A request arrives; it runs now or after those already queued.
    pub fn submit(&mut self, home: &mut Home, now: u64, incoming: Incoming<V>) -> Vec<Effect<V>> {
        self.queue.push_back(incoming);
        let mut effects = Vec::new();
        self.run_queue(home, now, &mut effects);
        effects
    }

    /// A holder answered the probe of transaction `txn`. Answers to any transaction but the running one (late, or
    /// from a previous incarnation of the holder) are ignored.
    pub fn on_answer(
        &mut self,
        home: &mut Home,
        now: u64,
        from: NodeId,
        inc: u64,
        txn: Txn,
        answer: ProbeAnswer<V>,
    ) -> Vec<Effect<V>> {
        if self.active.as_ref().is_none_or(|a| a.txn != txn) || !self.take_waiting(from) {
            return Vec::new();
        }
        self.apply_answer(from, Some(inc), answer);
        self.after_answer(home, now)
    }

    /// A holder could not be reached before its lease ran out: it no longer serves its copy, so give it up.
    pub fn on_unreachable(&mut self, home: &mut Home, now: u64, from: NodeId) -> Vec<Effect<V>> {
        if !self.take_waiting(from) {
            return Vec::new();
        }
        self.apply_answer(from, None, ProbeAnswer::NotHeld);
        self.after_answer(home, now)
    }

    fn take_waiting(&mut self, from: NodeId) -> bool {
        self.active
            .as_mut()
            .is_some_and(|active| active.waiting.remove(&from))
    }

    fn after_answer(&mut self, home: &mut Home, now: u64) -> Vec<Effect<V>> {
        let mut effects = Vec::new();
        if self.active.as_ref().is_some_and(|a| a.waiting.is_empty())
            && let Some(active) = self.active.take()
        {
            effects.push(self.finish(home, now, active));
            self.run_queue(home, now, &mut effects);
        }
        effects
    }

    /// `inc: None` means the holder could not be reached in time.
    fn apply_answer(&mut self, from: NodeId, inc: Option<u64>, answer: ProbeAnswer<V>) {
        if let Some((owner, holder)) = self.owner
            && owner == from
        {
            self.owner = None;
            match answer {
                ProbeAnswer::Data { value, kept, .. } => {
                    self.value = Some(value);
                    if kept {
                        self.sharers.insert(from, holder);
                    }
                }
                ProbeAnswer::Dropped => {}
                // The same incarnation never installed the grant or dropped it clean (a dirty line is written
                // back, and answers with its data until then); another incarnation, or silence, may have lost it.
                ProbeAnswer::NotHeld if inc == Some(holder.inc) => {}
                ProbeAnswer::NotHeld => self.lose(holder),
            }
        } else {
            self.sharers.remove(&from);
        }
    }

    fn lose(&mut self, holder: Holder) {
        if holder.may_dirty {
            self.value = None;
            self.lost += 1;
        }
    }

    /// The requester asks again, so whatever the directory says it holds, it does not hold any more.
    fn forget_requester(&mut self, from: NodeId, inc: u64) {
        if let Some((owner, holder)) = self.owner
            && owner == from
        {
            self.owner = None;
            if holder.inc != inc {
                self.lose(holder);
            }
        }
        self.sharers.remove(&from);
    }

    fn run_queue(&mut self, home: &mut Home, now: u64, effects: &mut Vec<Effect<V>>) {
        while self.active.is_none() {
            let Some(incoming) = self.queue.pop_front() else {
                return;
            };
            let txn = home.next_txn();
            if self
                .holder(incoming.from)
                .is_some_and(|h| h.inc > incoming.inc)
            {
                // Sent before its sender restarted and delivered after: that sender is gone.
                effects.push(Effect::Reply {
                    to: incoming.from,
                    tag: incoming.tag,
                    reply: Reply::Stale,
                });
                continue;
            }
            let mut probes = Vec::new();
            match &incoming.request {
                Request::Read => {
                    self.forget_requester(incoming.from, incoming.inc);
                    if let Some((owner, holder)) = self.owner {
                        probes.push((owner, holder, ProbeKind::Downgrade));
                    }
                }
                Request::Write { .. } => {
                    self.forget_requester(incoming.from, incoming.inc);
                    if let Some((owner, holder)) = self.owner {
                        probes.push((owner, holder, ProbeKind::Invalidate));
                    }
                    for (node, holder) in &self.sharers {
                        probes.push((*node, *holder, ProbeKind::Invalidate));
                    }
                }
                Request::WriteBack { .. } => {}
            }
            let active = Active {
                txn,
                incoming,
                waiting: probes.iter().map(|(node, _, _)| *node).collect(),
            };
            if probes.is_empty() {
                effects.push(self.finish(home, now, active));
                continue;
            }
            effects.extend(probes.into_iter().map(|(to, holder, kind)| Effect::Probe {
                to,
                probe: Probe {
                    txn,
                    target: holder.grant,
                    kind,
                },
                deadline: holder.expires,
            }));
            self.active = Some(active);
        }
    }

    fn finish(&mut self, home: &mut Home, now: u64, active: Active<V>) -> Effect<V> {
        let Active { txn, incoming, .. } = active;
        let Incoming {
            from,
            inc,
            tag,
            request,
        } = incoming;
        let expires = now.saturating_add(home.lease_ms);
        let reply = match request {
            Request::Read => match &self.value {
                None => Reply::Fill {
                    grant: txn,
                    state: LineState::S,
                    value: None,
                },
                Some(value) => {
                    let alone = self.owner.is_none() && self.sharers.is_empty();
                    let state = if alone { LineState::E } else { LineState::S };
                    let holder = Holder {
                        inc,
                        grant: txn,
                        may_dirty: alone && !home.policy.write_through,
                        expires,
                    };
                    if alone {
                        self.owner = Some((from, holder));
                    } else {
                        self.sharers.insert(from, holder);
                    }
                    Reply::Fill {
                        grant: txn,
                        state,
                        value: Some(value.clone()),
                    }
                }
            },
            Request::Write { value: Some(value) } => {
                self.value = Some(value);
                self.sharers.clear();
                let through = home.policy.write_through;
                self.owner = Some((
                    from,
                    Holder {
                        inc,
                        grant: txn,
                        may_dirty: !through,
                        expires,
                    },
                ));
                Reply::Granted {
                    grant: txn,
                    state: if through { LineState::E } else { LineState::M },
                }
            }
            Request::Write { value: None } => {
                self.value = None;
                self.sharers.clear();
                self.owner = None;
                Reply::Deleted { txn }
            }
            Request::WriteBack { grant, value } => {
                match self.owner {
                    Some((owner, holder))
                        if owner == from && holder.inc == inc && holder.grant == grant =>
                    {
                        self.owner = None;
                        if let Some(value) = value {
                            self.value = Some(value);
                        }
                    }
                    _ => {
                        if self
                            .sharers
                            .get(&from)
                            .is_some_and(|h| h.inc == inc && h.grant == grant)
                        {
                            self.sharers.remove(&from);
                        }
                    }
                }
                Reply::WrittenBack
            }
        };
        Effect::Reply {
            to: from,
            tag,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Home {
        Home::new(
            0,
            Policy {
                write_through: false,
            },
            1_000,
        )
    }

    fn incoming(from: NodeId, tag: u64, request: Request<u8>) -> Incoming<u8> {
        Incoming {
            from,
            inc: 1,
            tag,
            request,
        }
    }

    #[test]
    fn first_reader_gets_e_second_makes_both_s() {
        let mut h = home();
        let mut key = HomeKey::default();
        let _ = key.submit(&mut h, 0, incoming(1, 1, Request::Write { value: Some(9) }));
        // Node 1 owns M; node 2 reads: node 1 is recalled first.
        let effects = key.submit(&mut h, 0, incoming(2, 2, Request::Read));
        assert!(matches!(
            effects.as_slice(),
            [Effect::Probe {
                to: 1,
                probe: Probe {
                    kind: ProbeKind::Downgrade,
                    ..
                },
                ..
            }]
        ));
        let effects = key.on_answer(
            &mut h,
            0,
            1,
            1,
            2,
            ProbeAnswer::Data {
                value: 10,
                dirty: true,
                kept: true,
            },
        );
        assert!(matches!(
            effects.as_slice(),
            [Effect::Reply {
                to: 2,
                reply: Reply::Fill {
                    state: LineState::S,
                    value: Some(10),
                    ..
                },
                ..
            }]
        ));
        assert_eq!(key.sharers().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn requests_wait_their_turn() {
        let mut h = home();
        let mut key = HomeKey::default();
        let _ = key.submit(&mut h, 0, incoming(1, 1, Request::Write { value: Some(1) }));
        let probes = key.submit(&mut h, 0, incoming(2, 2, Request::Write { value: Some(2) }));
        assert_eq!(probes.len(), 1);
        // A third request queues behind the running one.
        assert!(
            key.submit(&mut h, 0, incoming(3, 3, Request::Read))
                .is_empty()
        );
        let effects = key.on_answer(&mut h, 0, 1, 1, 2, ProbeAnswer::Dropped);
        // Node 2's write is granted, then node 3's read recalls node 2.
        assert!(matches!(
            effects.as_slice(),
            [
                Effect::Reply { to: 2, .. },
                Effect::Probe {
                    to: 2,
                    probe: Probe {
                        kind: ProbeKind::Downgrade,
                        ..
                    },
                    ..
                }
            ]
        ));
    }

    #[test]
    fn a_lost_dirty_owner_forgets_the_value_unless_writing_through() {
        for through in [false, true] {
            let mut h = Home::new(
                0,
                Policy {
                    write_through: through,
                },
                1_000,
            );
            let mut key = HomeKey::default();
            let _ = key.submit(&mut h, 0, incoming(1, 1, Request::Write { value: Some(1) }));
            let _ = key.submit(&mut h, 0, incoming(2, 2, Request::Read));
            let effects = key.on_unreachable(&mut h, 2_000, 1);
            let want = if through { Some(1) } else { None };
            assert!(matches!(
                effects.as_slice(),
                [Effect::Reply { reply: Reply::Fill { value, .. }, .. }] if *value == want
            ));
            assert_eq!(key.lost(), u64::from(!through));
        }
    }

    #[test]
    fn a_stale_write_back_is_ignored() {
        let mut h = home();
        let mut key = HomeKey::default();
        let _ = key.submit(&mut h, 0, incoming(1, 1, Request::Write { value: Some(1) }));
        let _ = key.submit(&mut h, 0, incoming(2, 2, Request::Write { value: Some(2) }));
        let _ = key.on_answer(&mut h, 0, 1, 1, 2, ProbeAnswer::NotHeld);
        let _ = key.submit(
            &mut h,
            0,
            incoming(
                1,
                3,
                Request::WriteBack {
                    grant: 1,
                    value: Some(5),
                },
            ),
        );
        assert_eq!(key.value(), Some(&2));
        assert_eq!(key.owner(), Some(2));
    }
}
