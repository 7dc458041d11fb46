//! The queue control group: the [`ControlState`] of `syncd-queue-engine` replicated by a raft group of the queue
//! nodes themselves ([`syncd_raft::Group`], as NATS JetStream's meta group runs on its servers), so a queue-only
//! cluster needs nothing else. This module runs the group on one node:
//!
//! - the machine ([`ControlMachine`]) and the group's start, endpoints and membership;
//! - this node's session: a new one on every start, registered before the node leads anything, and kept alive
//!   by heartbeats to the group's leader;
//! - on the group's leader, the session table: a node whose heartbeats stop for the failure timeout is fenced
//!   (its shards move to in-sync replicas), and unfenced when it is heard from again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use syncd_queue_engine::control::{ControlCommand, ControlOutcome, ControlState};
use syncd_raft::{Group, GroupError, LeaderReply, Machine, Paths};

use crate::error::QueueError;

/// The control state as the group's replicated machine.
#[derive(Debug, Default)]
pub struct ControlMachine(pub ControlState);

impl Machine for ControlMachine {
    type Command = ControlCommand;
    type Outcome = ControlOutcome;
    type Snapshot = ControlState;

    fn apply(&mut self, now_ms: u64, command: &ControlCommand) -> ControlOutcome {
        self.0.apply(now_ms, command)
    }

    fn snapshot(&self) -> ControlState {
        self.0.clone()
    }

    fn restore(snapshot: ControlState) -> Self {
        ControlMachine(snapshot)
    }

    fn clock_ms(&self) -> u64 {
        self.0.clock_ms
    }

    /// Nothing in the control state depends on the passing of time (sessions are timed on the leader, in memory).
    fn quiet(&self) -> bool {
        true
    }

    fn register(id: u64, incarnation: u64) -> ControlCommand {
        ControlCommand::RegisterStorage {
            node: id,
            incarnation,
        }
    }

    fn registered(outcome: &ControlOutcome) -> Option<Option<u64>> {
        match outcome {
            ControlOutcome::Registered { previous } => Some(*previous),
            _ => None,
        }
    }
}

/// The control group's endpoints.
pub fn paths() -> Paths {
    Paths::new("/internal/queues/raft", "/internal/queues/control")
}

/// Where a node sends its heartbeat: the group's leader.
pub const HEARTBEAT: &str = "/internal/queues/control/heartbeat";

/// A node's heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node.
    pub node: u64,
    /// Its session.
    pub session: u64,
}

/// The control group on this node.
pub type ControlGroup = Group<ControlMachine>;

impl From<GroupError> for QueueError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Unavailable(m) => QueueError::Unavailable(m),
            GroupError::Internal(m) => QueueError::Internal(m),
        }
    }
}

/// A new session id: the clock and the process id mixed, different on every start in practice.
pub fn new_session() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ u64::from(std::process::id()).rotate_left(40)).max(1)
}

/// The sessions the group's leader has heard from, with when (in memory: a new leader starts everyone fresh).
#[derive(Debug, Default)]
pub struct Sessions {
    seen: Mutex<HashMap<u64, (u64, Instant)>>,
    /// When this node last became the group's leader (everyone gets a full timeout from then).
    leading_since: Mutex<Option<Instant>>,
}

impl Sessions {
    /// Records a heartbeat.
    pub fn heard(&self, beat: Heartbeat) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(beat.node, (beat.session, Instant::now()));
    }

    /// Records whether this node leads the group now: the start of a term of leadership is remembered until it
    /// ends (call it every round).
    pub fn lead(&self, leading: bool) {
        let mut since = self
            .leading_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (leading, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    /// The fences and unfences due on the leader, given the control state and the failure timeout.
    pub fn due(&self, state: &ControlState, timeout: Duration) -> Vec<ControlCommand> {
        let now = Instant::now();
        let Some(since) = *self
            .leading_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        else {
            return Vec::new();
        };
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (node, st) in &state.nodes {
            let heard = seen
                .get(node)
                .filter(|(session, _)| *session == st.session)
                .map(|(_, at)| *at);
            let last = heard.unwrap_or(since).max(since);
            let fresh = now.duration_since(last) <= timeout;
            if !st.fenced && !fresh {
                out.push(ControlCommand::Fence {
                    node: *node,
                    session: st.session,
                });
            } else if st.fenced && heard.is_some_and(|at| now.duration_since(at) <= timeout / 2) {
                out.push(ControlCommand::Unfence {
                    node: *node,
                    session: st.session,
                });
            }
        }
        out
    }
}

/// Answers a heartbeat on the group's leader (a follower answers "not the leader").
pub async fn on_heartbeat(
    group: &ControlGroup,
    sessions: &Sessions,
    beat: Heartbeat,
) -> LeaderReply<()> {
    if !group.is_leader() {
        return LeaderReply::NotLeader { leader: None };
    }
    sessions.heard(beat);
    LeaderReply::Ok(())
}

/// Sends this node's heartbeat to the group's leader.
pub async fn send_heartbeat(
    group: &Arc<ControlGroup>,
    sessions: &Sessions,
    beat: Heartbeat,
    patience: Duration,
) -> Result<(), QueueError> {
    Ok(group
        .on_leader(HEARTBEAT, &beat, patience, || async {
            on_heartbeat(group, sessions, beat).await
        })
        .await?)
}

/// The addresses the ring spec records, merged over `static_peers`.
pub fn ring_addrs(
    state: &ControlState,
    static_peers: &BTreeMap<u64, String>,
) -> BTreeMap<u64, String> {
    let mut out = static_peers.clone();
    if let Some(ring) = &state.ring {
        out.extend(ring.addrs.iter().map(|(k, v)| (*k, v.clone())));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use syncd_queue_engine::control::NodeState;

    use super::*;

    fn state(nodes: &[(u64, u64, bool)]) -> ControlState {
        let mut state = ControlState::default();
        for (node, session, fenced) in nodes {
            state.nodes.insert(
                *node,
                NodeState {
                    session: *session,
                    fenced: *fenced,
                },
            );
        }
        state
    }

    #[test]
    fn only_a_leader_fences_and_every_term_of_leadership_starts_with_a_full_timeout() {
        let sessions = Sessions::default();
        let timeout = Duration::from_millis(50);
        let two = state(&[(1, 11, false), (2, 22, false)]);
        assert!(sessions.due(&two, timeout).is_empty(), "not leading");
        sessions.lead(true);
        sessions.heard(Heartbeat {
            node: 1,
            session: 11,
        });
        assert!(
            sessions.due(&two, timeout).is_empty(),
            "a new leader waits a full timeout"
        );
        std::thread::sleep(timeout * 2);
        sessions.heard(Heartbeat {
            node: 1,
            session: 11,
        });
        assert_eq!(
            sessions.due(&two, timeout),
            vec![ControlCommand::Fence {
                node: 2,
                session: 22
            }]
        );
        // Leadership lost and regained later: the heartbeats of the last term are old, but nobody is fenced
        // before a full timeout of this one.
        sessions.lead(false);
        assert!(sessions.due(&two, timeout).is_empty());
        std::thread::sleep(timeout * 2);
        sessions.lead(true);
        assert!(sessions.due(&two, timeout).is_empty());
        // A fenced session heard from again is unfenced.
        let fenced = state(&[(1, 11, true)]);
        sessions.heard(Heartbeat {
            node: 1,
            session: 11,
        });
        assert_eq!(
            sessions.due(&fenced, timeout),
            vec![ControlCommand::Unfence {
                node: 1,
                session: 11
            }]
        );
    }
}
