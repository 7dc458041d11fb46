//! Status: a pure function from what reconcile observed to the `SyncCluster` status, conditions included.
//!
//! Conditions:
//! - `Available`: every enabled component can serve (locks: a raft quorum of pods ready; others: at least one
//!   ready pod).
//! - `Progressing`: the operator is still moving toward the spec (creating, scaling, rolling an update).
//! - `Degraded`: something needs attention: an invalid spec, or a component with fewer ready pods than desired
//!   while nothing is in progress.
//! - `LockLeaderKnown`: whether the lock service answered with a leader (False with reason `Unreachable` when the
//!   operator cannot reach it, e.g. when it runs outside the cluster).
//!
//! A condition keeps its `lastTransitionTime` while its status does not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{ComponentStatus, LockMember, QueueRingStatus, ShardLeaders, SyncClusterStatus};
use crate::lockgroup::RaftView;

/// What reconcile saw of one component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentObservation {
    /// Replicas the spec asks for (0: disabled).
    pub desired: i32,
    /// The StatefulSet's current replicas.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Pods on the StatefulSet's current revision.
    pub updated: i32,
}

impl ComponentObservation {
    fn status(&self) -> Option<ComponentStatus> {
        (self.desired > 0 || self.replicas > 0).then(|| ComponentStatus {
            replicas: self.replicas,
            ready_replicas: self.ready,
            desired_replicas: self.desired,
            summary: format!("{}/{}", self.ready, self.desired),
        })
    }

    /// Whether the StatefulSet is still being resized or rolled: progress, not (yet) a problem.
    fn moving(&self) -> bool {
        self.replicas != self.desired || self.updated < self.replicas
    }
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observation {
    /// `metadata.generation` of the SyncCluster.
    pub generation: Option<i64>,
    /// The lock component.
    pub locks: ComponentObservation,
    /// The queue component.
    pub queues: ComponentObservation,
    /// The cache component.
    pub cache: ComponentObservation,
    /// The raft view, or why it could not be had.
    pub raft: Result<RaftView, String>,
    /// Why the spec cannot be built, if it cannot.
    pub invalid_spec: Option<String>,
    /// What the operator is waiting for or doing, if anything (a lock scaling step, a rolling restart).
    pub in_progress: Option<String>,
    /// The queue ring as the pod on the newest epoch reports it, when the queue pods could be asked.
    pub queue_ring: Option<crate::queuering::RingView>,
}

fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

impl Default for Observation {
    fn default() -> Self {
        Observation {
            generation: None,
            locks: ComponentObservation::default(),
            queues: ComponentObservation::default(),
            cache: ComponentObservation::default(),
            raft: Err("not asked".to_owned()),
            invalid_spec: None,
            in_progress: None,
            queue_ring: None,
        }
    }
}

/// The status to write, given the previous one (for transition times) and the time now.
pub fn compute(
    obs: &Observation,
    previous: Option<&SyncClusterStatus>,
    now: Timestamp,
) -> SyncClusterStatus {
    let now = Time(now);
    let prev: &[Condition] = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let components = [
        ("locks", &obs.locks),
        ("queues", &obs.queues),
        ("cache", &obs.cache),
    ];

    let not_serving: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.desired > 0)
        .filter(|(name, c)| {
            let needed = if *name == "locks" {
                c.desired / 2 + 1
            } else {
                1
            };
            c.ready < needed
        })
        .map(|(name, c)| format!("{name} {}/{} ready", c.ready, c.desired))
        .collect();
    let moving: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.moving())
        .map(|(name, c)| {
            format!(
                "{name}: {} of {} replicas, {} updated",
                c.replicas, c.desired, c.updated
            )
        })
        .collect();
    // Pods that are not ready while nothing is being resized or rolled: that needs attention.
    let short: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.desired > 0 && !c.moving() && c.ready < c.desired)
        .map(|(name, c)| format!("{name} {}/{} ready", c.ready, c.desired))
        .collect();

    let (available, available_reason, available_message) = if let Some(why) = &obs.invalid_spec {
        (false, "InvalidSpec", why.clone())
    } else if not_serving.is_empty() {
        (
            true,
            "Serving",
            "every enabled component can serve".to_owned(),
        )
    } else {
        (false, "NotEnoughReadyPods", not_serving.join("; "))
    };

    let progressing_message = obs
        .in_progress
        .clone()
        .into_iter()
        .chain(moving.iter().cloned())
        .collect::<Vec<_>>()
        .join("; ");
    let progressing = obs.invalid_spec.is_none() && !progressing_message.is_empty();
    let (progressing_reason, progressing_message) = if progressing {
        ("Reconciling", progressing_message)
    } else {
        ("Reconciled", "the cluster matches its spec".to_owned())
    };

    let (degraded, degraded_reason, degraded_message) = if let Some(why) = &obs.invalid_spec {
        (true, "InvalidSpec", why.clone())
    } else if !short.is_empty() {
        (true, "ReplicasNotReady", short.join("; "))
    } else {
        (false, "AsExpected", "nothing needs attention".to_owned())
    };

    let (leader_known, leader_reason, leader_message) = match &obs.raft {
        Ok(view) if view.leader.is_some() => (true, "LeaderElected", format!("term {}", view.term)),
        Ok(_) => (
            false,
            "NoLeader",
            "the lock group has no leader (no quorum?)".to_owned(),
        ),
        Err(why) if obs.locks.desired == 0 => (false, "LocksDisabled", why.clone()),
        Err(why) => (false, "Unreachable", why.clone()),
    };

    let g = obs.generation;
    let conditions = vec![
        condition(
            prev,
            "Available",
            available,
            available_reason,
            available_message,
            g,
            &now,
        ),
        condition(
            prev,
            "Progressing",
            progressing,
            progressing_reason,
            progressing_message,
            g,
            &now,
        ),
        condition(
            prev,
            "Degraded",
            degraded,
            degraded_reason,
            degraded_message,
            g,
            &now,
        ),
        condition(
            prev,
            "LockLeaderKnown",
            leader_known,
            leader_reason,
            leader_message,
            g,
            &now,
        ),
    ];

    let raft = obs.raft.as_ref().ok();
    SyncClusterStatus {
        observed_generation: obs.generation,
        conditions,
        locks: obs.locks.status(),
        queues: obs.queues.status(),
        cache: obs.cache.status(),
        queue_ring: obs.queue_ring.as_ref().map(|ring| QueueRingStatus {
            epoch: ring.epoch as i64,
            members: ring.members.iter().map(|m| *m as i64).collect(),
            pending_moves: ring.pending_handoffs as i64,
            shard_leaders: ring
                .leaders
                .iter()
                .map(|(pod, shards)| ShardLeaders {
                    pod: *pod as i64,
                    shards: *shards as i64,
                })
                .collect(),
        }),
        lock_leader: raft.and_then(|r| r.leader).map(|l| l as i64),
        lock_term: raft.map(|r| r.term as i64),
        lock_members: raft
            .map(|r| {
                r.voters
                    .iter()
                    .map(|id| LockMember {
                        id: *id as i64,
                        role: if Some(*id) == r.leader {
                            "leader"
                        } else {
                            "follower"
                        }
                        .to_owned(),
                    })
                    .chain(r.learners.iter().map(|id| LockMember {
                        id: *id as i64,
                        role: "learner".to_owned(),
                    }))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(n: i32) -> ComponentObservation {
        ComponentObservation {
            desired: n,
            replicas: n,
            ready: n,
            updated: n,
        }
    }

    fn get<'a>(s: &'a SyncClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    fn healthy() -> Observation {
        Observation {
            generation: Some(4),
            locks: ready(3),
            queues: ready(3),
            cache: ready(3),
            raft: Ok(RaftView {
                voters: [0, 1, 2].into(),
                learners: [].into(),
                leader: Some(1),
                term: 7,
            }),
            invalid_spec: None,
            in_progress: None,
            queue_ring: Some(crate::queuering::RingView {
                epoch: 2,
                members: [0, 1, 2].into(),
                pending_handoffs: 0,
                leaders: [(0, 3), (2, 1)].into(),
            }),
        }
    }

    #[test]
    fn the_queue_ring_and_its_shard_leaders_are_reported() {
        let s = compute(&healthy(), None, Timestamp::UNIX_EPOCH);
        let ring = s.queue_ring.expect("queue ring");
        assert_eq!((ring.epoch, ring.pending_moves), (2, 0));
        assert_eq!(ring.members, vec![0, 1, 2]);
        assert_eq!(
            ring.shard_leaders,
            vec![
                ShardLeaders { pod: 0, shards: 3 },
                ShardLeaders { pod: 2, shards: 1 }
            ]
        );
    }

    #[test]
    fn a_healthy_cluster() {
        let s = compute(&healthy(), None, Timestamp::UNIX_EPOCH);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(get(&s, "Available").status, "True");
        assert_eq!(get(&s, "Progressing").status, "False");
        assert_eq!(get(&s, "Degraded").status, "False");
        assert_eq!(get(&s, "LockLeaderKnown").status, "True");
        assert_eq!(s.lock_leader, Some(1));
        assert_eq!(s.lock_term, Some(7));
        assert_eq!(s.locks.as_ref().unwrap().summary, "3/3");
        assert_eq!(
            s.lock_members.iter().filter(|m| m.role == "leader").count(),
            1
        );
    }

    #[test]
    fn an_unreachable_lock_service_is_a_condition_not_a_failure() {
        let mut obs = healthy();
        obs.raft = Err("dns error".to_owned());
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        let c = get(&s, "LockLeaderKnown");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Unreachable")
        );
        assert_eq!(get(&s, "Available").status, "True");
        assert_eq!(s.lock_leader, None);
    }

    #[test]
    fn scaling_is_progress_not_degradation() {
        let mut obs = healthy();
        obs.locks = ComponentObservation {
            desired: 5,
            replicas: 4,
            ready: 3,
            updated: 4,
        };
        obs.in_progress = Some("adding lock pod 3 to raft".to_owned());
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&s, "Progressing").status, "True");
        assert!(get(&s, "Progressing").message.contains("adding lock pod 3"));
        assert_eq!(get(&s, "Degraded").status, "False");
        assert_eq!(get(&s, "Available").status, "True");
    }

    #[test]
    fn lost_quorum_is_unavailable() {
        let mut obs = healthy();
        obs.locks.ready = 1;
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&s, "Available").status, "False");
        assert_eq!(get(&s, "Available").reason, "NotEnoughReadyPods");
    }

    #[test]
    fn pods_that_stay_unready_are_degraded_not_progress() {
        let mut obs = healthy();
        obs.queues.ready = 2;
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&s, "Progressing").status, "False");
        let degraded = get(&s, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ReplicasNotReady")
        );
        assert!(degraded.message.contains("queues 2/3"));
        assert_eq!(get(&s, "Available").status, "True");
    }

    #[test]
    fn invalid_spec_is_degraded() {
        let mut obs = healthy();
        obs.invalid_spec = Some("name too long".to_owned());
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        assert_eq!(get(&s, "Degraded").reason, "InvalidSpec");
        assert_eq!(get(&s, "Available").status, "False");
        assert_eq!(get(&s, "Progressing").status, "False");
    }

    #[test]
    fn transition_times_only_move_on_a_change() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).unwrap();
        let first = compute(&healthy(), None, t0);
        let second = compute(&healthy(), Some(&first), t1);
        assert_eq!(get(&second, "Available").last_transition_time, Time(t0));
        let mut obs = healthy();
        obs.locks.ready = 0;
        let third = compute(&obs, Some(&second), t1);
        assert_eq!(get(&third, "Available").last_transition_time, Time(t1));
    }

    #[test]
    fn disabled_components_have_no_status() {
        let mut obs = healthy();
        obs.cache = ComponentObservation::default();
        let s = compute(&obs, None, Timestamp::UNIX_EPOCH);
        assert!(s.cache.is_none());
        assert_eq!(get(&s, "Available").status, "True");
    }
}
