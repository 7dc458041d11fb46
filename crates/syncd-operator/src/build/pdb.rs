//! The PodDisruptionBudget `<cluster>-<component>`: voluntary evictions (drains) never take the lock group below
//! a raft quorum, and take at most one queue or cache pod at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Component;
use super::scope::Scope;

/// The PodDisruptionBudget of one component.
pub(crate) fn pdb(scope: &Scope, statefulset_replicas: i32) -> PodDisruptionBudget {
    let (min_available, max_unavailable) = match scope.component {
        Component::Locks => (Some(IntOrString::Int(quorum(statefulset_replicas))), None),
        Component::Queues | Component::Cache => (None, Some(IntOrString::Int(1))),
    };
    PodDisruptionBudget {
        metadata: scope.meta(scope.component.object_name(&scope.cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available,
            max_unavailable,
            selector: Some(LabelSelector {
                match_labels: Some(scope.selector.clone()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// A raft majority of `members`: `members / 2 + 1`. A single-member group has quorum 1, so its one pod cannot be
/// evicted voluntarily: losing it stops the lock service.
pub fn quorum(members: i32) -> i32 {
    members.max(0) / 2 + 1
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{cluster, ctx};
    use super::super::selector_labels;
    use super::*;

    fn spec(component: Component, replicas: i32) -> PodDisruptionBudgetSpec {
        let scope = Scope::new(&cluster("demo"), component, &ctx()).unwrap();
        pdb(&scope, replicas).spec.unwrap()
    }

    #[test]
    fn locks_keep_quorum() {
        for (replicas, min) in [(1, 1), (3, 2), (5, 3)] {
            let spec = spec(Component::Locks, replicas);
            assert_eq!(
                spec.min_available,
                Some(IntOrString::Int(min)),
                "{replicas} replicas"
            );
            assert_eq!(spec.max_unavailable, None);
        }
    }

    #[test]
    fn others_lose_one_pod_at_a_time() {
        for component in [Component::Queues, Component::Cache] {
            let spec = spec(component, 5);
            assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
            assert_eq!(spec.min_available, None);
            let selector = spec.selector.unwrap().match_labels;
            assert_eq!(selector, Some(selector_labels("demo", component)));
        }
    }
}
