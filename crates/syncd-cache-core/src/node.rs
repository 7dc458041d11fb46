//! One key at one peer: its copy (if any), its request in flight (if any) and its write-back in flight (if any).
//!
//! The transient states of the protocol are combinations of these three:
//!
//! | MESI name | here |
//! | --- | --- |
//! | `IS_D` / `IM_D` | no copy, `pending` read / write |
//! | `SM_D` | no copy (an `S` copy is dropped when its write is sent), `pending` write |
//! | `MI_A` | no copy, `writeback` holding the dirty value |
//!
//! The runtime sends at most one request per key at a time and none while a write-back is in flight, and it answers
//! every probe at once from [`NodeKey::on_probe`] (probes never wait for a request, so no cycle of waits can form).
//!
//! Versioned fills: a probe that targets a grant newer than the copy held can only be about a grant still on its
//! way here. The peer answers [`ProbeAnswer::NotHeld`] and raises `floor`; a fill whose grant is not above `floor`
//! is then used for the one operation that asked for it but never installed. That is what keeps an invalidation
//! that overtakes a fill from leaving a stale copy behind.

use crate::message::{LineState, Policy, Probe, ProbeAnswer, ProbeKind, Reply, Request, Txn};

/// An installed copy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Copy<V> {
    /// `M`, `E` or `S`.
    pub state: LineState,
    /// The value.
    pub value: V,
    /// The grant it is held under.
    pub grant: Txn,
}

/// The kind of request in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingKind {
    /// A read miss.
    Read,
    /// A write.
    Write,
    /// A delete.
    Delete,
}

/// A request in flight and the highest grant a probe targeted meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pending<V> {
    kind: PendingKind,
    /// For a write, the value to install once granted.
    value: Option<V>,
    floor: Txn,
}

/// What a local read needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReadStep<V> {
    /// Served from the copy, in this state.
    Hit(V, LineState),
    /// Send this request to the home.
    Miss(Request<V>),
    /// A request or write-back for this key is in flight; try again when it finishes.
    Busy,
}

/// What a local write or delete needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WriteStep<V> {
    /// Done locally: the copy was `E` or `M` and is now `M`.
    Done,
    /// Send this request to the home.
    Send(Request<V>),
    /// A request or write-back for this key is in flight; try again when it finishes.
    Busy,
}

/// What a reply meant for the operation that asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome<V> {
    /// A read found this value; `installed` is the copy's state, or `I` when the fill was outrun by a probe.
    Value(V, LineState),
    /// A read found no value.
    NotFound,
    /// A write or delete took effect; the state of the copy left here (`M`, `E`, or `I`).
    Written(LineState),
    /// A write-back finished.
    WrittenBack,
    /// Nothing was waiting for this reply (the request was abandoned); it changed nothing.
    Unexpected,
    /// The home ignored the request (it came from an earlier incarnation of this peer); nothing took effect.
    Stale,
}

/// One key at one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeKey<V> {
    copy: Option<Copy<V>>,
    pending: Option<Pending<V>>,
    writeback: Option<Copy<V>>,
}

impl<V> Default for NodeKey<V> {
    fn default() -> Self {
        NodeKey {
            copy: None,
            pending: None,
            writeback: None,
        }
    }
}

impl<V: Clone> NodeKey<V> {
    /// The copy held, if any.
    pub fn copy(&self) -> Option<&Copy<V>> {
        self.copy.as_ref()
    }

    /// The Modified value being written back (or kept through a delete), if any.
    pub fn writeback(&self) -> Option<&Copy<V>> {
        self.writeback.as_ref()
    }

    /// This peer's view of the key: the copy's state, or `I`.
    pub fn state(&self) -> LineState {
        self.copy.as_ref().map_or(LineState::I, |c| c.state)
    }

    /// Whether a request or a write-back is in flight.
    pub fn busy(&self) -> bool {
        self.pending.is_some() || self.writeback.is_some()
    }

    /// Whether nothing is held or in flight (the entry can be forgotten).
    pub fn is_empty(&self) -> bool {
        self.copy.is_none() && !self.busy()
    }

    /// A local read.
    pub fn read(&mut self) -> ReadStep<V> {
        if self.busy() {
            return ReadStep::Busy;
        }
        if let Some(copy) = &self.copy {
            return ReadStep::Hit(copy.value.clone(), copy.state);
        }
        self.pending = Some(Pending {
            kind: PendingKind::Read,
            value: None,
            floor: 0,
        });
        ReadStep::Miss(Request::Read)
    }

    /// A local write (`Some`) or delete (`None`). An `E` or `M` copy takes a write silently unless the policy
    /// writes through.
    pub fn write(&mut self, value: Option<V>, policy: Policy) -> WriteStep<V> {
        if self.busy() {
            return WriteStep::Busy;
        }
        if let (Some(v), Some(copy)) = (&value, &mut self.copy)
            && !policy.write_through
            && matches!(copy.state, LineState::E | LineState::M)
        {
            copy.state = LineState::M;
            copy.value = v.clone();
            return WriteStep::Done;
        }
        let kind = if value.is_some() {
            PendingKind::Write
        } else {
            PendingKind::Delete
        };
        // The home forgets a requester's copy when its request runs, so the copy is not served from now on. A
        // clean one goes (SM_D is IM_D here: a shared copy kept through a write that then failed would be stale); a
        // dirty one (a delete of an `M` line) stays as a write-back for probes that run first, sent only if the
        // delete is abandoned.
        if let Some(copy) = self.copy.take()
            && copy.state == LineState::M
        {
            self.writeback = Some(copy);
        }
        self.pending = Some(Pending {
            kind,
            value: value.clone(),
            floor: 0,
        });
        WriteStep::Send(Request::Write { value })
    }

    /// Drops the copy (LRU eviction or an expired lease). A Modified line is kept as a write-back in flight and the
    /// returned request must be sent; anything else goes silently (the home's later probe finds it not held).
    pub fn evict(&mut self) -> Option<Request<V>> {
        let copy = self.copy.take()?;
        if copy.state != LineState::M {
            return None;
        }
        let request = Request::WriteBack {
            grant: copy.grant,
            value: Some(copy.value.clone()),
        };
        self.writeback = Some(copy);
        Some(request)
    }

    /// The request in flight failed for good (the home never answered): forget it; a late reply is then ignored.
    /// A dirty value kept through an abandoned delete must now be written back: send the returned request.
    pub fn abandon(&mut self) -> Option<Request<V>> {
        self.pending = None;
        let copy = self.writeback.as_ref()?;
        Some(Request::WriteBack {
            grant: copy.grant,
            value: Some(copy.value.clone()),
        })
    }

    /// The write-back in flight failed for good: forget the dirty value (the home will find it not held).
    pub fn abandon_writeback(&mut self) {
        self.writeback = None;
    }

    /// The home's reply to this peer's request.
    pub fn on_reply(&mut self, reply: Reply<V>) -> Outcome<V> {
        if let Reply::WrittenBack = reply {
            if self.pending.is_some() {
                // A delete is in flight: the dirty value it keeps is not a write-back.
                return Outcome::Unexpected;
            }
            return match self.writeback.take() {
                Some(_) => Outcome::WrittenBack,
                None => Outcome::Unexpected,
            };
        }
        let Some(pending) = self.pending.take() else {
            return Outcome::Unexpected;
        };
        match (pending.kind, reply) {
            (
                PendingKind::Read,
                Reply::Fill {
                    grant,
                    state,
                    value,
                },
            ) => {
                let Some(value) = value else {
                    self.copy = None;
                    return Outcome::NotFound;
                };
                if grant > pending.floor {
                    self.copy = Some(Copy {
                        state,
                        value: value.clone(),
                        grant,
                    });
                    Outcome::Value(value, state)
                } else {
                    self.copy = None;
                    Outcome::Value(value, LineState::I)
                }
            }
            (PendingKind::Write, Reply::Granted { grant, state }) => {
                // Installed unless the grant was outrun.
                self.copy = match pending.value {
                    Some(value) if grant > pending.floor => Some(Copy {
                        state,
                        value,
                        grant,
                    }),
                    _ => None,
                };
                Outcome::Written(self.state())
            }
            (_, Reply::Stale) => {
                // Only a dead incarnation's request is stale; nothing here is worth keeping.
                self.copy = None;
                self.writeback = None;
                Outcome::Stale
            }
            (PendingKind::Delete, Reply::Deleted { .. }) => {
                // The delete superseded any dirty value kept for probes.
                self.writeback = None;
                self.copy = None;
                Outcome::Written(LineState::I)
            }
            (_, _) => {
                // A reply of the wrong kind: never sent by a correct home. Keep nothing that could be stale.
                self.copy = None;
                self.writeback = None;
                Outcome::Unexpected
            }
        }
    }

    /// The home's probe about a copy it granted; answered at once.
    pub fn on_probe(&mut self, probe: Probe) -> ProbeAnswer<V> {
        if let Some(pending) = &mut self.pending {
            // A grant the home made before this probe may still be on its way: never install it.
            pending.floor = pending.floor.max(probe.target);
        }
        if let Some(wb) = &self.writeback
            && wb.grant == probe.target
        {
            // MI_A: the dirty value is still here; the write-back arriving later is stale and ignored.
            return ProbeAnswer::Data {
                value: wb.value.clone(),
                dirty: true,
                kept: false,
            };
        }
        let Some(copy) = &mut self.copy else {
            return ProbeAnswer::NotHeld;
        };
        if copy.grant > probe.target {
            // A newer copy than the home asks about; the probe is about one already gone.
            return ProbeAnswer::NotHeld;
        }
        if copy.grant < probe.target {
            // The home has moved on past this copy (a newer grant to us is in flight): it is stale.
            self.copy = None;
            return ProbeAnswer::NotHeld;
        }
        match (probe.kind, copy.state) {
            (ProbeKind::Downgrade, LineState::M | LineState::E) => {
                let dirty = copy.state == LineState::M;
                copy.state = LineState::S;
                ProbeAnswer::Data {
                    value: copy.value.clone(),
                    dirty,
                    kept: true,
                }
            }
            (ProbeKind::Downgrade, _) => ProbeAnswer::Dropped,
            (ProbeKind::Invalidate, _) => {
                self.copy = None;
                ProbeAnswer::Dropped
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACK: Policy = Policy {
        write_through: false,
    };

    #[test]
    fn a_read_miss_installs_the_fill_and_then_hits() {
        let mut key = NodeKey::<u8>::default();
        assert_eq!(key.read(), ReadStep::Miss(Request::Read));
        assert_eq!(key.read(), ReadStep::Busy);
        let out = key.on_reply(Reply::Fill {
            grant: 3,
            state: LineState::E,
            value: Some(7),
        });
        assert_eq!(out, Outcome::Value(7, LineState::E));
        assert_eq!(key.read(), ReadStep::Hit(7, LineState::E));
    }

    #[test]
    fn an_invalidation_that_overtakes_its_fill_keeps_the_fill_out() {
        let mut key = NodeKey::<u8>::default();
        let _ = key.read();
        let answer = key.on_probe(Probe {
            txn: 4,
            target: 3,
            kind: ProbeKind::Invalidate,
        });
        assert_eq!(answer, ProbeAnswer::NotHeld);
        let out = key.on_reply(Reply::Fill {
            grant: 3,
            state: LineState::S,
            value: Some(7),
        });
        assert_eq!(out, Outcome::Value(7, LineState::I));
        assert_eq!(key.state(), LineState::I);
    }

    #[test]
    fn a_probe_about_an_older_copy_does_not_block_a_newer_fill() {
        let mut key = NodeKey::<u8>::default();
        let _ = key.read();
        let _ = key.on_probe(Probe {
            txn: 4,
            target: 2,
            kind: ProbeKind::Invalidate,
        });
        let out = key.on_reply(Reply::Fill {
            grant: 5,
            state: LineState::S,
            value: Some(7),
        });
        assert_eq!(out, Outcome::Value(7, LineState::S));
    }

    #[test]
    fn e_becomes_m_silently_and_eviction_writes_back() {
        let mut key = NodeKey::<u8>::default();
        let _ = key.read();
        let _ = key.on_reply(Reply::Fill {
            grant: 1,
            state: LineState::E,
            value: Some(1),
        });
        assert_eq!(key.write(Some(2), BACK), WriteStep::Done);
        assert_eq!(key.state(), LineState::M);
        assert_eq!(
            key.evict(),
            Some(Request::WriteBack {
                grant: 1,
                value: Some(2)
            })
        );
        assert_eq!(key.read(), ReadStep::Busy);
        // While the write-back is in flight, a recall still gets the dirty value.
        let answer = key.on_probe(Probe {
            txn: 2,
            target: 1,
            kind: ProbeKind::Downgrade,
        });
        assert_eq!(
            answer,
            ProbeAnswer::Data {
                value: 2,
                dirty: true,
                kept: false
            }
        );
        assert_eq!(key.on_reply(Reply::WrittenBack), Outcome::WrittenBack);
        assert!(key.is_empty());
    }

    #[test]
    fn write_through_never_writes_silently() {
        let mut key = NodeKey::<u8>::default();
        let _ = key.write(Some(1), BACK);
        let _ = key.on_reply(Reply::Granted {
            grant: 1,
            state: LineState::E,
        });
        let through = Policy {
            write_through: true,
        };
        assert_eq!(
            key.write(Some(2), through),
            WriteStep::Send(Request::Write { value: Some(2) })
        );
    }

    #[test]
    fn an_outrun_upgrade_drops_the_old_shared_copy() {
        let mut key = NodeKey::<u8>::default();
        let _ = key.read();
        let _ = key.on_reply(Reply::Fill {
            grant: 1,
            state: LineState::S,
            value: Some(1),
        });
        let _ = key.write(Some(2), BACK);
        // The home granted M (txn 4) and a reader's recall for it arrives first.
        let answer = key.on_probe(Probe {
            txn: 5,
            target: 4,
            kind: ProbeKind::Downgrade,
        });
        assert_eq!(answer, ProbeAnswer::NotHeld);
        assert_eq!(key.state(), LineState::I);
        let out = key.on_reply(Reply::Granted {
            grant: 4,
            state: LineState::M,
        });
        assert_eq!(out, Outcome::Written(LineState::I));
    }
}
