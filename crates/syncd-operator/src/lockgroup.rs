//! Lock group lifecycle decisions: pure functions from what the operator observed to the one next step.
//!
//! Scaling the raft group is done one step per reconcile, with `spec.locks.replicas` as the target:
//!
//! - growing: add one pod, add it to raft as a learner once it runs (the call returns when it has caught up),
//!   promote it to voter, then the next pod;
//! - shrinking: remove the highest ordinal from raft first, then shrink the StatefulSet by one (its PVC goes with
//!   it, by the StatefulSet's `whenScaled: Delete` retention, so a later rejoin starts clean);
//! - the StatefulSet is never resized to match what raft reports: a pod that is merely down is not a reason to
//!   shrink, and an unreachable lock service stops scaling rather than guessing.
//!
//! Rolling an image change (the lock StatefulSet uses `OnDelete`) restarts one out-of-date pod at a time, only
//! when every pod is ready (so the quorum survives the restart), followers first and the leader last.

use std::collections::BTreeSet;

/// The raft group as the lock service reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftView {
    /// Voting members.
    pub voters: BTreeSet<u64>,
    /// Non-voting members.
    pub learners: BTreeSet<u64>,
    /// The leader, if known.
    pub leader: Option<u64>,
    /// Current term.
    pub term: u64,
}

impl RaftView {
    fn is_member(&self, id: u64) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

/// What the operator observed of the lock component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockObservation {
    /// `spec.locks.replicas`.
    pub desired: i32,
    /// The StatefulSet's replicas, `None` when it does not exist yet.
    pub statefulset_replicas: Option<i32>,
    /// Ordinals of pods whose container is running (they can be added to raft).
    pub running_pods: BTreeSet<u64>,
    /// The raft view, `None` when the lock service could not be asked.
    pub raft: Option<RaftView>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStep {
    /// Set the StatefulSet to this many replicas.
    Replicas(i32),
    /// Add this ordinal to raft as a learner.
    AddLearner(u64),
    /// Make exactly these ordinals the voters.
    SetVoters(BTreeSet<u64>),
    /// Nothing can safely be done until something changes.
    Wait(String),
    /// StatefulSet and raft match the spec.
    Steady,
}

/// Decides the next step of the lock group. The StatefulSet keeps its current size for every step but
/// [`LockStep::Replicas`].
pub fn next_step(o: &LockObservation) -> LockStep {
    let want = o.desired.max(0);
    let have = o.statefulset_replicas.unwrap_or(0).max(0);
    if have == 0 || want == 0 {
        // First creation: the pods bootstrap the group from their peer list. Turning locks off: the component's
        // objects are deleted as a whole.
        return if have == want {
            LockStep::Steady
        } else {
            LockStep::Replicas(want)
        };
    }
    let Some(raft) = &o.raft else {
        return if have == want {
            LockStep::Steady
        } else {
            LockStep::Wait(
                "the lock service cannot be asked for its members; scaling waits for it".to_owned(),
            )
        };
    };
    let have_u = have as u64;

    // Members outside the StatefulSet (a shrink interrupted after the StatefulSet shrank, or an old learner).
    let strangers: BTreeSet<u64> = raft
        .voters
        .iter()
        .chain(&raft.learners)
        .copied()
        .filter(|id| *id >= have_u)
        .collect();
    if !strangers.is_empty() && have <= want {
        let voters: BTreeSet<u64> = raft
            .voters
            .iter()
            .copied()
            .filter(|id| *id < have_u)
            .collect();
        return LockStep::SetVoters(voters);
    }

    // Shrinking: the highest ordinal leaves raft first, then the StatefulSet.
    if have > want {
        let top = have_u - 1;
        if raft.is_member(top) {
            let voters = raft
                .voters
                .iter()
                .copied()
                .filter(|id| *id != top)
                .collect();
            return LockStep::SetVoters(voters);
        }
        return LockStep::Replicas(have - 1);
    }

    // Every pod of the StatefulSet must be a voter before the group grows again.
    for id in 0..have_u {
        if raft.voters.contains(&id) {
            continue;
        }
        if raft.learners.contains(&id) {
            let mut voters = raft.voters.clone();
            voters.insert(id);
            return LockStep::SetVoters(voters);
        }
        if o.running_pods.contains(&id) {
            return LockStep::AddLearner(id);
        }
        return LockStep::Wait(format!(
            "waiting for lock pod {id} to run before adding it to raft"
        ));
    }
    if have < want {
        return LockStep::Replicas(have + 1);
    }
    LockStep::Steady
}

/// One lock pod as the rolling update sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Ordinal.
    pub ordinal: u64,
    /// Its `controller-revision-hash`.
    pub revision: String,
    /// Whether it passes its readiness probe.
    pub ready: bool,
}

/// What the rolling update does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollStep {
    /// Delete this pod so the StatefulSet recreates it from the new template.
    Restart(u64),
    /// Not now.
    Wait(String),
    /// Every pod runs the current revision.
    Done,
}

/// Picks the next lock pod to restart onto `update_revision`.
pub fn next_restart(
    pods: &[PodView],
    update_revision: &str,
    expected_pods: usize,
    leader: Option<u64>,
) -> RollStep {
    let mut stale: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.revision != update_revision)
        .collect();
    if stale.is_empty() {
        return RollStep::Done;
    }
    if pods.len() < expected_pods || pods.iter().any(|p| !p.ready) {
        return RollStep::Wait(
            "waiting for every lock pod to be ready before restarting the next one".to_owned(),
        );
    }
    let Some(leader) = leader else {
        return RollStep::Wait("the lock leader is unknown; rolling waits for it".to_owned());
    };
    // Followers first (highest ordinal first), the leader last.
    stale.sort_by_key(|p| (p.ordinal == leader, std::cmp::Reverse(p.ordinal)));
    RollStep::Restart(stale[0].ordinal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(voters: &[u64], learners: &[u64]) -> RaftView {
        RaftView {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            leader: voters.first().copied(),
            term: 1,
        }
    }

    fn obs(
        desired: i32,
        have: Option<i32>,
        running: &[u64],
        raft: Option<RaftView>,
    ) -> LockObservation {
        LockObservation {
            desired,
            statefulset_replicas: have,
            running_pods: running.iter().copied().collect(),
            raft,
        }
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn creation_starts_every_pod_at_once() {
        assert_eq!(next_step(&obs(3, None, &[], None)), LockStep::Replicas(3));
        assert_eq!(
            next_step(&obs(3, Some(0), &[], None)),
            LockStep::Replicas(3)
        );
    }

    #[test]
    fn steady_when_everything_matches() {
        let o = obs(3, Some(3), &[0, 1, 2], Some(view(&[0, 1, 2], &[])));
        assert_eq!(next_step(&o), LockStep::Steady);
        // Unreachable but nothing to change: still steady (status reports the unreachability).
        assert_eq!(next_step(&obs(3, Some(3), &[], None)), LockStep::Steady);
    }

    #[test]
    fn unreachable_lock_service_blocks_scaling() {
        assert!(matches!(
            next_step(&obs(5, Some(3), &[0, 1, 2], None)),
            LockStep::Wait(_)
        ));
        assert!(matches!(
            next_step(&obs(1, Some(3), &[0, 1, 2], None)),
            LockStep::Wait(_)
        ));
    }

    #[test]
    fn growing_three_to_five_walks_every_step() {
        let mut v = view(&[0, 1, 2], &[]);
        let mut have = 3;
        let mut steps = Vec::new();
        for _ in 0..20 {
            let running: Vec<u64> = (0..have as u64).collect();
            let step = next_step(&obs(5, Some(have), &running, Some(v.clone())));
            steps.push(step.clone());
            match step {
                LockStep::Replicas(n) => have = n,
                LockStep::AddLearner(id) => {
                    v.learners.insert(id);
                }
                LockStep::SetVoters(voters) => {
                    v.learners.retain(|l| !voters.contains(l));
                    v.voters = voters;
                }
                LockStep::Steady => break,
                LockStep::Wait(w) => panic!("unexpected wait: {w}"),
            }
        }
        assert_eq!(
            steps,
            vec![
                LockStep::Replicas(4),
                LockStep::AddLearner(3),
                LockStep::SetVoters(set(&[0, 1, 2, 3])),
                LockStep::Replicas(5),
                LockStep::AddLearner(4),
                LockStep::SetVoters(set(&[0, 1, 2, 3, 4])),
                LockStep::Steady,
            ]
        );
    }

    #[test]
    fn shrinking_removes_from_raft_before_the_statefulset() {
        let mut v = view(&[0, 1, 2, 3, 4], &[]);
        let mut have = 5;
        let mut steps = Vec::new();
        for _ in 0..20 {
            let running: Vec<u64> = (0..have as u64).collect();
            let step = next_step(&obs(3, Some(have), &running, Some(v.clone())));
            steps.push(step.clone());
            match step {
                LockStep::Replicas(n) => have = n,
                LockStep::SetVoters(voters) => v.voters = voters,
                LockStep::Steady => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            steps,
            vec![
                LockStep::SetVoters(set(&[0, 1, 2, 3])),
                LockStep::Replicas(4),
                LockStep::SetVoters(set(&[0, 1, 2])),
                LockStep::Replicas(3),
                LockStep::Steady,
            ]
        );
    }

    #[test]
    fn a_down_pod_never_shrinks_anything() {
        // Pod 2 is gone for a moment; raft still lists it. Nothing to do.
        let o = obs(3, Some(3), &[0, 1], Some(view(&[0, 1, 2], &[])));
        assert_eq!(next_step(&o), LockStep::Steady);
    }

    #[test]
    fn a_new_pod_waits_until_it_runs() {
        let o = obs(5, Some(4), &[0, 1, 2], Some(view(&[0, 1, 2], &[])));
        assert!(matches!(next_step(&o), LockStep::Wait(_)));
    }

    #[test]
    fn a_member_left_over_from_an_interrupted_shrink_is_removed() {
        // The StatefulSet already shrank to 3 but raft still has 3 as a voter.
        let o = obs(3, Some(3), &[0, 1, 2], Some(view(&[0, 1, 2, 3], &[])));
        assert_eq!(next_step(&o), LockStep::SetVoters(set(&[0, 1, 2])));
    }

    #[test]
    fn turning_locks_off_and_on() {
        assert_eq!(
            next_step(&obs(0, Some(3), &[], None)),
            LockStep::Replicas(0)
        );
        assert_eq!(next_step(&obs(0, None, &[], None)), LockStep::Steady);
    }

    fn pod(ordinal: u64, revision: &str, ready: bool) -> PodView {
        PodView {
            ordinal,
            revision: revision.to_owned(),
            ready,
        }
    }

    #[test]
    fn rolling_restarts_followers_first_and_the_leader_last() {
        let pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "old", true),
        ];
        assert_eq!(next_restart(&pods, "new", 3, Some(2)), RollStep::Restart(1));
        let pods = vec![
            pod(0, "old", true),
            pod(1, "new", true),
            pod(2, "old", true),
        ];
        assert_eq!(next_restart(&pods, "new", 3, Some(2)), RollStep::Restart(0));
        let pods = vec![
            pod(0, "new", true),
            pod(1, "new", true),
            pod(2, "old", true),
        ];
        assert_eq!(next_restart(&pods, "new", 3, Some(2)), RollStep::Restart(2));
        let pods = vec![
            pod(0, "new", true),
            pod(1, "new", true),
            pod(2, "new", true),
        ];
        assert_eq!(next_restart(&pods, "new", 3, Some(2)), RollStep::Done);
    }

    #[test]
    fn rolling_waits_for_readiness_and_a_known_leader() {
        let pods = vec![
            pod(0, "new", false),
            pod(1, "old", true),
            pod(2, "old", true),
        ];
        assert!(matches!(
            next_restart(&pods, "new", 3, Some(2)),
            RollStep::Wait(_)
        ));
        let pods = vec![pod(0, "old", true), pod(1, "old", true)];
        assert!(matches!(
            next_restart(&pods, "new", 3, Some(0)),
            RollStep::Wait(_)
        ));
        let pods = vec![
            pod(0, "old", true),
            pod(1, "old", true),
            pod(2, "old", true),
        ];
        assert!(matches!(
            next_restart(&pods, "new", 3, None),
            RollStep::Wait(_)
        ));
    }
}
