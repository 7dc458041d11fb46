//! The queue ring's scaling steps, as pure logic.
//!
//! The queue StatefulSet grows first (new pods start with no ring and wait), then the ring is set to the desired
//! members once every one of them answers; the queue nodes hand shards over among themselves. Shrinking goes the
//! other way: the ring drops the leaving members first, and the StatefulSet shrinks only once every pod, leaving
//! ones included, is on that ring with no hand-off pending. A pod that cannot be asked means wait, never shrink.

use std::collections::{BTreeMap, BTreeSet};

/// What one queue pod says about the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingView {
    /// Membership epoch (0: no ring yet).
    pub epoch: u64,
    /// Members.
    pub members: BTreeSet<u64>,
    /// Shards on this pod not yet settled on the ring.
    pub pending_handoffs: usize,
    /// Shards led per node, as this pod's control state has it.
    pub leaders: std::collections::BTreeMap<u64, usize>,
}

/// Everything the next step depends on.
#[derive(Debug, Clone)]
pub struct QueueObservation {
    /// `spec.queues.replicas`.
    pub desired: i32,
    /// The StatefulSet's replicas now, if it exists.
    pub statefulset_replicas: Option<i32>,
    /// Each pod's answer, by ordinal (`Err`: why it could not be asked).
    pub views: BTreeMap<u64, Result<RingView, String>>,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueStep {
    /// Nothing to do.
    Steady,
    /// Set the StatefulSet to this many replicas.
    Replicas(i32),
    /// Ask the ring for these members.
    SetRing(Vec<u64>),
    /// Wait, for this reason.
    Wait(String),
}

/// The ordinals that must answer before the ring can be set or the StatefulSet shrunk.
pub fn pods_to_ask(observation: &QueueObservation) -> Vec<u64> {
    let current = observation.statefulset_replicas.unwrap_or(0);
    (0..current.max(observation.desired).max(0) as u64).collect()
}

/// The next step.
pub fn next_step(observation: &QueueObservation) -> QueueStep {
    let desired = observation.desired.max(0);
    let current = observation.statefulset_replicas.unwrap_or(0);
    if current < desired {
        return QueueStep::Replicas(desired);
    }
    let target: BTreeSet<u64> = (0..desired as u64).collect();
    let unreachable: Vec<u64> = pods_to_ask(observation)
        .into_iter()
        .filter(|id| !matches!(observation.views.get(id), Some(Ok(_))))
        .collect();
    let views: Vec<&RingView> = observation
        .views
        .values()
        .filter_map(|v| v.as_ref().ok())
        .collect();
    let Some(ring) = views.iter().max_by_key(|v| v.epoch) else {
        return if current > desired {
            QueueStep::Wait(
                "cannot reach the queue pods to hand their shards off before scaling in".to_owned(),
            )
        } else {
            QueueStep::Steady
        };
    };
    if ring.epoch == 0 || ring.members != target {
        let missing: Vec<u64> = unreachable
            .iter()
            .copied()
            .filter(|id| target.contains(id))
            .collect();
        if !missing.is_empty() {
            return QueueStep::Wait(format!(
                "waiting for queue pods {missing:?} to answer before setting the ring"
            ));
        }
        // One change at a time: a new epoch before the last one settled could forget where the data is.
        // (A pod with no ring yet, a new one, holds nothing to settle.)
        if views
            .iter()
            .any(|v| v.epoch != 0 && (v.epoch != ring.epoch || v.pending_handoffs > 0))
        {
            return QueueStep::Wait(
                "waiting for the previous queue ring change to settle".to_owned(),
            );
        }
        return QueueStep::SetRing(target.into_iter().collect());
    }
    if current > desired {
        if !unreachable.is_empty() {
            return QueueStep::Wait(format!(
                "waiting for queue pods {unreachable:?} to answer before scaling in"
            ));
        }
        let behind = views.iter().filter(|v| v.epoch != ring.epoch).count();
        let pending: usize = views.iter().map(|v| v.pending_handoffs).sum();
        if behind > 0 || pending > 0 {
            return QueueStep::Wait(format!(
                "waiting for queue shards to move off the leaving pods ({pending} pending, {behind} pods behind)"
            ));
        }
        return QueueStep::Replicas(desired);
    }
    QueueStep::Steady
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(epoch: u64, members: &[u64], pending: usize) -> Result<RingView, String> {
        Ok(RingView {
            epoch,
            members: members.iter().copied().collect(),
            pending_handoffs: pending,
            leaders: Default::default(),
        })
    }

    fn observe(
        desired: i32,
        sts: Option<i32>,
        views: &[(u64, Result<RingView, String>)],
    ) -> QueueObservation {
        QueueObservation {
            desired,
            statefulset_replicas: sts,
            views: views.iter().cloned().collect(),
        }
    }

    #[test]
    fn grows_first() {
        assert_eq!(next_step(&observe(3, None, &[])), QueueStep::Replicas(3));
        assert_eq!(next_step(&observe(4, Some(3), &[])), QueueStep::Replicas(4));
    }

    #[test]
    fn forms_the_ring_once_every_pod_answers() {
        let half = [
            (0, view(0, &[], 0)),
            (1, Err("no".into())),
            (2, view(0, &[], 0)),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(3), &half)),
            QueueStep::Wait(_)
        ));
        let all = [
            (0, view(0, &[], 0)),
            (1, view(0, &[], 0)),
            (2, view(0, &[], 0)),
        ];
        assert_eq!(
            next_step(&observe(3, Some(3), &all)),
            QueueStep::SetRing(vec![0, 1, 2])
        );
    }

    #[test]
    fn adds_new_pods_to_the_ring() {
        let views = [
            (0, view(1, &[0, 1, 2], 0)),
            (1, view(1, &[0, 1, 2], 0)),
            (2, view(1, &[0, 1, 2], 0)),
            (3, view(0, &[], 0)),
        ];
        assert_eq!(
            next_step(&observe(4, Some(4), &views)),
            QueueStep::SetRing(vec![0, 1, 2, 3])
        );
    }

    #[test]
    fn shrinks_only_after_the_hand_off() {
        let before = [
            (0, view(2, &[0, 1, 2, 3], 0)),
            (1, view(2, &[0, 1, 2, 3], 0)),
            (2, view(2, &[0, 1, 2, 3], 0)),
            (3, view(2, &[0, 1, 2, 3], 0)),
        ];
        assert_eq!(
            next_step(&observe(3, Some(4), &before)),
            QueueStep::SetRing(vec![0, 1, 2])
        );
        let moving = [
            (0, view(3, &[0, 1, 2], 0)),
            (1, view(3, &[0, 1, 2], 1)),
            (2, view(3, &[0, 1, 2], 0)),
            (3, view(3, &[0, 1, 2], 4)),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &moving)),
            QueueStep::Wait(_)
        ));
        let lagging = [
            (0, view(3, &[0, 1, 2], 0)),
            (1, view(3, &[0, 1, 2], 0)),
            (2, view(3, &[0, 1, 2], 0)),
            (3, view(2, &[0, 1, 2, 3], 0)),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &lagging)),
            QueueStep::Wait(_)
        ));
        let unreachable = [
            (0, view(3, &[0, 1, 2], 0)),
            (1, view(3, &[0, 1, 2], 0)),
            (2, view(3, &[0, 1, 2], 0)),
            (3, Err("down".into())),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &unreachable)),
            QueueStep::Wait(_)
        ));
        let done = [
            (0, view(3, &[0, 1, 2], 0)),
            (1, view(3, &[0, 1, 2], 0)),
            (2, view(3, &[0, 1, 2], 0)),
            (3, view(3, &[0, 1, 2], 0)),
        ];
        assert_eq!(
            next_step(&observe(3, Some(4), &done)),
            QueueStep::Replicas(3)
        );
    }

    #[test]
    fn one_ring_change_at_a_time() {
        let settling = [
            (0, view(2, &[0, 1, 2, 3], 0)),
            (1, view(2, &[0, 1, 2, 3], 2)),
            (2, view(2, &[0, 1, 2, 3], 0)),
            (3, view(2, &[0, 1, 2, 3], 0)),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &settling)),
            QueueStep::Wait(_)
        ));
        let behind = [
            (0, view(2, &[0, 1, 2, 3], 0)),
            (1, view(1, &[0, 1, 2], 0)),
            (2, view(2, &[0, 1, 2, 3], 0)),
            (3, view(2, &[0, 1, 2, 3], 0)),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &behind)),
            QueueStep::Wait(_)
        ));
    }

    #[test]
    fn never_shrinks_blind() {
        let none = [
            (0, Err("x".into())),
            (1, Err("x".into())),
            (2, Err("x".into())),
            (3, Err("x".into())),
        ];
        assert!(matches!(
            next_step(&observe(3, Some(4), &none)),
            QueueStep::Wait(_)
        ));
        assert_eq!(
            next_step(&observe(3, Some(3), &none[..3])),
            QueueStep::Steady
        );
    }
}
