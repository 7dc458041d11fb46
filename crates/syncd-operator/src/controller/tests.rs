//! Reconcile scenarios against a fake API server ([`crate::fixtures`]): each test scripts the exact requests one
//! reconcile makes, with the answers a real API server would give, and checks what the reconciler decided.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use syncd_api::locks::MembershipChange;

use super::{error_policy, reconcile};
use crate::build::Component;
use crate::crd::{SyncCluster, SyncClusterStatus};
use crate::error::Error;
use crate::fixtures::{
    self, Expect, FakeLockGroup, GENERATION, NAME, apply_component, apply_statefulset, cluster,
    component_event, delete, delete_lock_pod, event, event_with_note, existing_statefulset,
    get_statefulset, list_lock_pods, lock_pod, patch_status, raft, ready_lock_pods, sts_status,
};

const PROGRESS_POLL: Action = Action::requeue(Duration::from_secs(5));
const RESYNC: Action = Action::requeue(Duration::from_secs(60));

fn condition<'a>(status: &'a SyncClusterStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", status.conditions))
}

fn assert_condition(status: &SyncClusterStatus, type_: &str, value: &str) {
    let c = condition(status, type_);
    assert_eq!(c.status, value, "{type_}: {c:?}");
    assert_eq!(c.observed_generation, Some(GENERATION), "{type_}");
}

/// A settled StatefulSet of `component` with `replicas` ready pods on revision `rev-a`.
fn settled(cluster: &SyncCluster, component: Component, replicas: i32) -> StatefulSet {
    existing_statefulset(cluster, component, replicas, ready(replicas))
}

fn ready(replicas: i32) -> serde_json::Value {
    sts_status(replicas, replicas, replicas, Some(("rev-a", "rev-a")))
}

/// The requests of a component that is off and has no StatefulSet: only the lookup.
fn absent(component: Component) -> Expect {
    get_statefulset(component, None)
}

fn peer(id: u64) -> String {
    format!("{NAME}-locks-{id}.{NAME}-locks-peers.syncd-test.svc:7080")
}

#[tokio::test]
async fn create_applies_every_component_and_reports_progress() {
    let cluster = cluster(5, 4, 2);
    // No lock pod runs yet, so the lock service cannot be asked; creation does not need it.
    let lock = FakeLockGroup::unreachable("connection refused");
    let mut scenario = Vec::new();
    for (component, replicas) in [
        (Component::Locks, 5),
        (Component::Queues, 4),
        (Component::Cache, 2),
    ] {
        scenario.push(get_statefulset(component, None));
        if component == Component::Locks {
            scenario.push(list_lock_pods(&[]));
        }
        // A new StatefulSet: the controller has not created its pods yet.
        scenario.extend(apply_component(
            component,
            replicas,
            sts_status(0, 0, 0, None),
        ));
        // One Event per component once its objects are applied, each about its own StatefulSet (not a repeat
        // of the first).
        scenario.push(component_event(
            "Created",
            component,
            format!("{} StatefulSet to {replicas} replicas", component.name()),
        ));
    }
    scenario.push(patch_status(&cluster, |s| {
        assert_eq!(s.observed_generation, Some(GENERATION));
        assert_condition(s, "Progressing", "True");
        assert_eq!(condition(s, "Progressing").reason, "Reconciling");
        assert_condition(s, "Available", "False");
        assert_condition(s, "Degraded", "False");
        assert_condition(s, "LockLeaderKnown", "False");
        let locks = s.locks.as_ref().unwrap();
        assert_eq!((locks.desired_replicas, locks.summary.as_str()), (5, "0/5"));
        assert_eq!(s.queues.as_ref().unwrap().desired_replicas, 4);
        assert_eq!(s.cache.as_ref().unwrap().desired_replicas, 2);
    }));

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert!(lock.changes().is_empty());
    assert_eq!(lock.asked(), ["http://demo-locks.syncd-test.svc:7080"]);
}

#[tokio::test]
async fn steady_cluster_is_available_and_resyncs_in_a_minute() {
    let cluster = cluster(3, 3, 3);
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(1)));
    let pods = ready_lock_pods(3, "rev-a");
    let mut scenario = vec![
        get_statefulset(
            Component::Locks,
            Some(settled(&cluster, Component::Locks, 3)),
        ),
        list_lock_pods(&pods),
    ];
    // The rollout check reuses that list: every pod is on the update revision.
    scenario.extend(apply_component(Component::Locks, 3, ready(3)));
    for component in [Component::Queues, Component::Cache] {
        scenario.push(get_statefulset(
            component,
            Some(settled(&cluster, component, 3)),
        ));
        scenario.extend(apply_component(component, 3, ready(3)));
    }
    scenario.push(patch_status(&cluster, |s| {
        assert_condition(s, "Available", "True");
        assert_condition(s, "Progressing", "False");
        assert_condition(s, "Degraded", "False");
        assert_condition(s, "LockLeaderKnown", "True");
        assert_eq!(condition(s, "LockLeaderKnown").reason, "LeaderElected");
        assert_eq!(s.lock_leader, Some(1));
        assert_eq!(s.lock_term, Some(7));
        assert_eq!(s.lock_members.len(), 3);
        assert_eq!(s.locks.as_ref().unwrap().summary, "3/3");
    }));

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, RESYNC);
    assert!(lock.changes().is_empty());
}

#[tokio::test]
async fn lock_scale_up_takes_one_step_per_reconcile() {
    let cluster = cluster(5, 0, 0);
    let rev = Some(("rev-a", "rev-a"));

    // 3 -> 4: the StatefulSet grows by one; raft is not touched until the new pod runs.
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(0)));
    let mut scenario = vec![
        get_statefulset(
            Component::Locks,
            Some(settled(&cluster, Component::Locks, 3)),
        ),
        list_lock_pods(&ready_lock_pods(3, "rev-a")),
    ];
    scenario.extend(apply_component(
        Component::Locks,
        4,
        sts_status(3, 3, 3, rev),
    ));
    scenario.push(component_event(
        "Scaled",
        Component::Locks,
        "locks StatefulSet to 4 replicas",
    ));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        assert_condition(s, "Progressing", "True");
        let message = &condition(s, "Progressing").message;
        assert!(
            message.contains("scaling locks to 4 on the way to 5"),
            "{message}"
        );
        assert_condition(s, "Available", "True");
    }));
    let action = fixtures::reconcile(cluster.clone(), lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert!(lock.changes().is_empty(), "{:?}", lock.changes());

    // 4 replicas, pod 3 running (not yet ready), raft still 3 voters: pod 3 joins as a learner.
    let four = existing_statefulset(&cluster, Component::Locks, 4, sts_status(4, 3, 4, rev));
    let mut pods = ready_lock_pods(3, "rev-a");
    pods.push(lock_pod(3, "rev-a", true, false));
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(0)));
    let mut scenario = vec![
        get_statefulset(Component::Locks, Some(four.clone())),
        list_lock_pods(&pods),
        event_with_note(
            "LockMembershipChanged",
            "added lock pod 3 to raft as a learner",
        ),
    ];
    scenario.extend(apply_component(
        Component::Locks,
        4,
        sts_status(4, 3, 4, rev),
    ));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        assert_condition(s, "Progressing", "True");
    }));
    let action = fixtures::reconcile(cluster.clone(), lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert_eq!(
        lock.changes(),
        [MembershipChange::AddLearner {
            id: 3,
            addr: peer(3),
        }]
    );

    // Learner 3 has caught up: it becomes a voter; the StatefulSet stays at 4.
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[3], Some(0)));
    let mut scenario = vec![
        get_statefulset(Component::Locks, Some(four)),
        list_lock_pods(&pods),
        event_with_note(
            "LockMembershipChanged",
            "set the lock voters to {0, 1, 2, 3}",
        ),
    ];
    scenario.extend(apply_component(
        Component::Locks,
        4,
        sts_status(4, 4, 4, rev),
    ));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        assert_condition(s, "Progressing", "True");
        let roles: Vec<_> = s
            .lock_members
            .iter()
            .map(|m| (m.id, m.role.as_str()))
            .collect();
        assert!(roles.contains(&(3, "learner")), "{roles:?}");
    }));
    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert_eq!(
        lock.changes(),
        [MembershipChange::SetVoters {
            voters: [0, 1, 2, 3].into(),
        }]
    );
}

#[tokio::test]
async fn lock_scale_down_leaves_raft_before_the_statefulset_shrinks() {
    let cluster = cluster(3, 0, 0);
    let five = settled(&cluster, Component::Locks, 5);
    let pods = ready_lock_pods(5, "rev-a");

    // Voter 4 leaves raft first; the StatefulSet keeps its 5 pods.
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2, 3, 4], &[], Some(0)));
    let mut scenario = vec![
        get_statefulset(Component::Locks, Some(five.clone())),
        list_lock_pods(&pods),
        event("LockMembershipChanged"),
    ];
    scenario.extend(apply_component(Component::Locks, 5, ready(5)));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        assert_condition(s, "Progressing", "True");
    }));
    let action = fixtures::reconcile(cluster.clone(), lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert_eq!(
        lock.changes(),
        [MembershipChange::SetVoters {
            voters: [0, 1, 2, 3].into(),
        }]
    );

    // Raft no longer has 4: now the StatefulSet shrinks by one.
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2, 3], &[], Some(0)));
    let mut scenario = vec![
        get_statefulset(Component::Locks, Some(five)),
        list_lock_pods(&pods),
    ];
    scenario.extend(apply_component(Component::Locks, 4, ready(5)));
    scenario.push(component_event(
        "Scaled",
        Component::Locks,
        "locks StatefulSet to 4 replicas",
    ));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        let message = &condition(s, "Progressing").message;
        assert!(
            message.contains("scaling locks to 4 on the way to 3"),
            "{message}"
        );
    }));
    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert!(lock.changes().is_empty(), "{:?}", lock.changes());
}

#[tokio::test]
async fn unreachable_lock_service_is_a_condition_and_scaling_waits() {
    // The spec asks for 5, the StatefulSet has 3: without the raft view the operator must not scale.
    let cluster = cluster(5, 0, 0);
    let lock = FakeLockGroup::unreachable("cannot reach the lock service: connection refused");
    let mut scenario = vec![
        get_statefulset(
            Component::Locks,
            Some(settled(&cluster, Component::Locks, 3)),
        ),
        list_lock_pods(&ready_lock_pods(3, "rev-a")),
    ];
    scenario.extend(apply_component(Component::Locks, 3, ready(3)));
    scenario.extend([absent(Component::Queues), absent(Component::Cache)]);
    scenario.push(patch_status(&cluster, |s| {
        let leader = condition(s, "LockLeaderKnown");
        assert_eq!(
            (leader.status.as_str(), leader.reason.as_str()),
            ("False", "Unreachable")
        );
        assert!(leader.message.contains("connection refused"), "{leader:?}");
        assert_eq!(s.lock_leader, None);
        assert_condition(s, "Progressing", "True");
        let message = &condition(s, "Progressing").message;
        assert!(message.contains("scaling waits"), "{message}");
    }));

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert!(lock.changes().is_empty());
}

#[tokio::test]
async fn a_component_turned_off_is_deleted_and_missing_objects_are_fine() {
    let cluster = cluster(0, 3, 0);
    let lock = FakeLockGroup::unreachable("not asked");
    let cache = settled(&cluster, Component::Cache, 3);
    let mut scenario = vec![
        absent(Component::Locks),
        get_statefulset(
            Component::Queues,
            Some(settled(&cluster, Component::Queues, 3)),
        ),
    ];
    scenario.extend(apply_component(Component::Queues, 3, ready(3)));
    scenario.extend([
        get_statefulset(Component::Cache, Some(cache)),
        // Already gone (an earlier, interrupted removal): tolerated.
        delete::<PodDisruptionBudget>("demo-cache", false),
        delete::<Service>("demo-cache", true),
        delete::<Service>("demo-cache-peers", false),
        delete::<ConfigMap>("demo-cache-config", true),
        // The StatefulSet last, so an interrupted removal is found again on the next reconcile.
        delete::<StatefulSet>("demo-cache", true),
        component_event("ComponentRemoved", Component::Cache, "cache turned off"),
        patch_status(&cluster, |s| {
            assert!(s.cache.is_none(), "{:?}", s.cache);
            assert!(s.locks.is_none(), "{:?}", s.locks);
            assert_eq!(s.queues.as_ref().unwrap().summary, "3/3");
            assert_condition(s, "Available", "True");
            assert_eq!(condition(s, "LockLeaderKnown").reason, "LocksDisabled");
        }),
    ]);

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, RESYNC);
    assert!(lock.asked().is_empty(), "locks are off: {:?}", lock.asked());
}

#[tokio::test]
async fn api_failure_fails_the_reconcile_and_backs_off() {
    let cluster = Arc::new(cluster(3, 3, 3));
    let lock = FakeLockGroup::unreachable("connection refused");
    let mut scenario = vec![get_statefulset(Component::Locks, None), list_lock_pods(&[])];
    let mut applies = apply_component(Component::Locks, 3, sts_status(0, 0, 0, None));
    // ConfigMap and Services go through; the StatefulSet apply fails and nothing after it is tried.
    applies.truncate(3);
    scenario.extend(applies);
    scenario.push(
        apply_statefulset(Component::Locks, 3, sts_status(0, 0, 0, None))
            .fails(500, "InternalError"),
    );
    // error_policy reports each failure as an Event.
    let policy_calls = 8;
    for _ in 0..policy_calls {
        // The same failure again is a repeat of the first Event: the recorder may count it as a series.
        scenario.push(event_with_note("ReconcileFailed:kube_api", "InternalError").or_repeat());
    }

    let backoffs = fixtures::within(async {
        let (ctx, server) = fixtures::context(lock);
        let server = server.run(scenario);
        let err = reconcile(cluster.clone(), ctx.clone()).await.unwrap_err();
        assert!(
            matches!(&err, Error::Kube(kube::Error::Api(s)) if s.code == 500),
            "{err:?}"
        );
        assert_eq!(err.code(), "kube_api");
        let backoffs: Vec<Action> = (0..policy_calls)
            .map(|_| error_policy(cluster.clone(), &err, ctx.clone()))
            .collect();
        drop(ctx);
        fixtures::finish(server).await;
        backoffs
    })
    .await;

    let secs = |s| Action::requeue(Duration::from_secs(s));
    assert_eq!(
        backoffs,
        [
            secs(5),
            secs(10),
            secs(20),
            secs(40),
            secs(80),
            secs(160),
            secs(300),
            secs(300)
        ]
    );
}

#[tokio::test]
async fn an_invalid_cluster_is_degraded_and_waits_for_a_change() {
    let name = "a-syncluster-name-that-is-far-too-long-for-its-objects";
    assert!(name.len() > 45);
    let cluster = fixtures::named(name, 3, 3, 3);
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(0)));
    // Nothing is looked up or applied: only the Event and the status.
    let scenario = vec![
        event_with_note("InvalidSpec", "longer than 45 characters"),
        patch_status(&cluster, |s| {
            let degraded = condition(s, "Degraded");
            assert_eq!(
                (degraded.status.as_str(), degraded.reason.as_str()),
                ("True", "InvalidSpec")
            );
            assert_condition(s, "Available", "False");
            assert_condition(s, "Progressing", "False");
        }),
    ];

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(lock.asked().is_empty());
}

#[tokio::test]
async fn rolling_update_restarts_the_highest_follower_first() {
    let cluster = cluster(3, 0, 0);
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(2)));
    // The template changed: the StatefulSet's update revision is "new", every pod still runs "old".
    let rolling = sts_status(3, 3, 0, Some(("old", "new")));
    let pods = ready_lock_pods(3, "old");
    let mut scenario = vec![
        get_statefulset(
            Component::Locks,
            Some(existing_statefulset(
                &cluster,
                Component::Locks,
                3,
                rolling.clone(),
            )),
        ),
        list_lock_pods(&pods),
    ];
    scenario.extend(apply_component(Component::Locks, 3, rolling));
    scenario.extend([
        // Pod 2 leads, so pod 1 is the highest follower.
        delete_lock_pod(1, "old"),
        event_with_note("RollingRestart", "restarted lock pod 1"),
        absent(Component::Queues),
        absent(Component::Cache),
        patch_status(&cluster, |s| {
            assert_condition(s, "Progressing", "True");
            let message = &condition(s, "Progressing").message;
            assert!(message.contains("restarted lock pod 1"), "{message}");
        }),
    ]);

    let action = fixtures::reconcile(cluster, lock.clone(), scenario)
        .await
        .unwrap();
    assert_eq!(action, PROGRESS_POLL);
    assert!(lock.changes().is_empty());
}

#[tokio::test]
async fn rolling_update_waits_while_a_pod_is_not_ready() {
    let cluster = cluster(3, 0, 0);
    let lock = FakeLockGroup::reachable(raft(&[0, 1, 2], &[], Some(2)));
    let rolling = sts_status(3, 2, 1, Some(("old", "new")));
    // Pod 1 was restarted onto "new" and is not ready yet: restarting another would risk the quorum.
    let pods = vec![
        lock_pod(0, "old", true, true),
        lock_pod(1, "new", true, false),
        lock_pod(2, "old", true, true),
    ];
    let mut scenario = vec![
        get_statefulset(
            Component::Locks,
            Some(existing_statefulset(
                &cluster,
                Component::Locks,
                3,
                rolling.clone(),
            )),
        ),
        list_lock_pods(&pods),
    ];
    scenario.extend(apply_component(Component::Locks, 3, rolling));
    scenario.extend([
        absent(Component::Queues),
        absent(Component::Cache),
        patch_status(&cluster, |s| {
            let message = &condition(s, "Progressing").message;
            assert!(
                message.contains("waiting for every lock pod to be ready"),
                "{message}"
            );
        }),
    ]);

    let action = fixtures::reconcile(cluster, lock, scenario).await.unwrap();
    assert_eq!(action, PROGRESS_POLL);
}

/// The fixture's own check: a request the scenario does not expect fails the test with a readable message.
#[tokio::test]
#[should_panic(
    expected = "expected GET /apis/apps/v1/namespaces/syncd-test/statefulsets/demo-queues"
)]
async fn the_fake_api_server_rejects_an_unexpected_request() {
    let cluster = cluster(0, 0, 0);
    let lock = FakeLockGroup::unreachable("not asked");
    // The scenario forgets the locks lookup.
    let scenario = vec![absent(Component::Queues), absent(Component::Cache)];
    let _ = fixtures::reconcile(cluster, lock, scenario).await;
}

/// The fixture's own check: a request the scenario expects but the reconciler never makes fails the test.
#[tokio::test]
#[should_panic(expected = "the reconciler stopped after 4 of 5 expected requests")]
async fn the_fake_api_server_notices_a_missing_request() {
    let cluster = cluster(0, 0, 0);
    let lock = FakeLockGroup::unreachable("not asked");
    let scenario = vec![
        absent(Component::Locks),
        absent(Component::Queues),
        absent(Component::Cache),
        patch_status(&cluster, |_| {}),
        // Nothing was created, so there is nothing to announce.
        event("Created"),
    ];
    let _ = fixtures::reconcile(cluster, lock, scenario).await;
}
