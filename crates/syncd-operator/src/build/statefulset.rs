//! The StatefulSet `<cluster>-<component>`: the pods, their container, probes, security context and volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::scope::Scope;
use super::{Component, DATA_DIR, HTTP_PORT, HTTP_PORT_NAME};
use crate::crd::{PodSettings, StorageSpec, SyncClusterSpec};

/// Pod template annotation holding [`super::config::config_hash`]: a config or image change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "syncd.dev/config-hash";
/// The one container of every pod.
pub const CONTAINER_NAME: &str = "syncd";
/// The data volume (a PersistentVolumeClaim for durable components, an emptyDir for the cache).
pub const DATA_VOLUME: &str = "data";
/// The writable `/tmp` (the root filesystem is read-only).
pub const TMP_VOLUME: &str = "tmp";
/// The uid and gid the container runs as (the distroless `nonroot` user).
pub const RUN_AS_ID: i64 = 65532;
/// Seconds between SIGTERM and SIGKILL: enough for `syncd` to drain and hand raft leadership over.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
/// The label the StatefulSet controller puts on each pod with its ordinal; it becomes `SYNCD_ID`.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The StatefulSet of one component with `statefulset_replicas` pods.
pub(crate) fn statefulset(
    scope: &Scope,
    spec: &SyncClusterSpec,
    statefulset_replicas: i32,
    config_hash: &str,
) -> StatefulSet {
    let component = scope.component;
    let settings = component.pod_settings(spec);
    let update_type = match component {
        // The operator rolls lock pods itself, one at a time and the raft leader last.
        Component::Locks => "OnDelete",
        Component::Queues | Component::Cache => "RollingUpdate",
    };
    let (claims, retention) = match component.storage(spec) {
        Some(storage) => (
            Some(vec![volume_claim(scope, storage, settings)]),
            // A member removed from the raft group (or a queue node scaled away) must come back with a clean
            // volume: a stale log and vote from an earlier membership could disagree with the current group.
            // Deleting the claim on scale-down and with the cluster guarantees that.
            Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Delete".to_owned()),
                when_scaled: Some("Delete".to_owned()),
            }),
        ),
        None => (None, None),
    };
    StatefulSet {
        metadata: scope.meta(component.object_name(&scope.cluster)),
        spec: Some(StatefulSetSpec {
            service_name: Some(component.peers_service_name(&scope.cluster)),
            replicas: Some(statefulset_replicas),
            selector: LabelSelector {
                match_labels: Some(scope.selector.clone()),
                ..LabelSelector::default()
            },
            // A raft group has no ready member until a quorum runs, so OrderedReady would wait forever for pod 0.
            pod_management_policy: Some("Parallel".to_owned()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some(update_type.to_owned()),
                rolling_update: None,
            }),
            persistent_volume_claim_retention_policy: retention,
            volume_claim_templates: claims,
            template: pod_template(scope, spec, settings, config_hash),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod_template(
    scope: &Scope,
    spec: &SyncClusterSpec,
    settings: &PodSettings,
    config_hash: &str,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(scope.labels.clone()),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(scope, spec, settings)],
            volumes: Some(volumes(scope.component)),
            security_context: Some(pod_security_context()),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            // syncd never talks to the Kubernetes API (peers come from config and DNS).
            automount_service_account_token: Some(false),
            // Service links would inject `<SERVICE>_PORT`-style variables; a Service named `syncd` would put
            // `SYNCD_*` variables into the environment syncd reads its flags from.
            enable_service_links: Some(false),
            node_selector: settings.node_selector.clone(),
            tolerations: settings.tolerations.clone(),
            affinity: Some(
                settings
                    .affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(&scope.selector)),
            ),
            ..PodSpec::default()
        }),
    }
}

fn container(scope: &Scope, spec: &SyncClusterSpec, settings: &PodSettings) -> Container {
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(scope.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        args: Some(vec!["serve".to_owned()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: scope.component.config_name(&scope.cluster),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(vec![EnvVar {
            name: "SYNCD_ID".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
            value: None,
        }]),
        ports: Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.to_owned()),
            container_port: HTTP_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        startup_probe: Some(startup_probe()),
        liveness_probe: Some(liveness_probe()),
        readiness_probe: Some(readiness_probe()),
        lifecycle: (scope.component == Component::Locks).then(hand_over_hook),
        resources: Some(settings.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![
            mount(DATA_VOLUME, DATA_DIR),
            mount(TMP_VOLUME, "/tmp"),
        ]),
        ..Container::default()
    }
}

/// The path of the lock role's leadership hand-over (an HTTP GET, so the hook needs no shell in the image).
pub const HAND_OVER_PATH: &str = "/internal/locks/hand-over";

/// Before a lock pod is stopped, a leader hands leadership to its most up-to-date follower (syncd does it again
/// on SIGTERM; the hook makes it happen before the endpoint is removed from Services).
fn hand_over_hook() -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            http_get: http_get(HAND_OVER_PATH),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

fn http_get(path: &str) -> Option<HTTPGetAction> {
    Some(HTTPGetAction {
        path: Some(path.to_owned()),
        port: IntOrString::String(HTTP_PORT_NAME.to_owned()),
        ..HTTPGetAction::default()
    })
}

/// Up to two minutes to open the data directory and replay the log before liveness checks begin.
fn startup_probe() -> Probe {
    Probe {
        http_get: http_get("/healthz"),
        period_seconds: Some(2),
        timeout_seconds: Some(2),
        failure_threshold: Some(60),
        ..Probe::default()
    }
}

/// `/healthz` answers as long as the process works, quorum or not, so a pod waiting for its peers is never
/// restarted; one minute of silence is.
fn liveness_probe() -> Probe {
    Probe {
        http_get: http_get("/healthz"),
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        failure_threshold: Some(6),
        ..Probe::default()
    }
}

/// `/readyz` is 200 only when the node can serve; the client Service routes to ready pods only.
fn readiness_probe() -> Probe {
    Probe {
        http_get: http_get("/readyz"),
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

/// Requests cpu 100m and memory 128Mi, limit memory 512Mi (no CPU limit: throttling hurts raft heartbeats).
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("128Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_ID),
        run_as_group: Some(RUN_AS_ID),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        fs_group: Some(RUN_AS_ID),
        // Skip the recursive chown of a large volume on every start when the ownership is already right.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// Pod volumes: `tmp` always; `data` as an emptyDir only for the cache (durable components get it from their
/// volume claim template).
fn volumes(component: Component) -> Vec<Volume> {
    if component.is_durable() {
        vec![empty_dir(TMP_VOLUME)]
    } else {
        vec![empty_dir(DATA_VOLUME), empty_dir(TMP_VOLUME)]
    }
}

/// The `data` claim template. Volume claim templates are immutable, so it carries only the selector labels (never
/// the version) and no owner: the StatefulSet controller owns the claims it creates.
fn volume_claim(
    scope: &Scope,
    storage: &StorageSpec,
    settings: &PodSettings,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            labels: Some(scope.selector.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: settings.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    storage.size.clone(),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Pods of one component prefer different nodes, so one node failure costs at most one member.
fn default_affinity(selector: &BTreeMap<String, String>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector.clone()),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Toleration;

    use super::super::fixtures::{cluster, ctx};
    use super::super::selector_labels;
    use super::*;
    use crate::crd::SyncCluster;

    fn build(cluster: &SyncCluster, component: Component, replicas: i32) -> StatefulSetSpec {
        let scope = Scope::new(cluster, component, &ctx()).unwrap();
        statefulset(&scope, &cluster.spec, replicas, "0123456789abcdef")
            .spec
            .unwrap()
    }

    fn pod(spec: &StatefulSetSpec) -> &PodSpec {
        spec.template.spec.as_ref().unwrap()
    }

    fn container_of(spec: &StatefulSetSpec) -> &Container {
        &pod(spec).containers[0]
    }

    #[test]
    fn statefulset_shape() {
        let c = cluster("demo");
        let spec = build(&c, Component::Locks, 3);
        assert_eq!(spec.service_name.as_deref(), Some("demo-locks-peers"));
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels,
            Some(selector_labels("demo", Component::Locks))
        );
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let template = spec.template.metadata.as_ref().unwrap();
        assert_eq!(
            template.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION],
            "0123456789abcdef"
        );
        let labels = template.labels.as_ref().unwrap();
        for (k, v) in selector_labels("demo", Component::Locks) {
            assert_eq!(labels.get(&k), Some(&v));
        }
        assert_eq!(pod(&spec).termination_grace_period_seconds, Some(30));
        assert_eq!(pod(&spec).automount_service_account_token, Some(false));
        assert_eq!(pod(&spec).enable_service_links, Some(false));
    }

    #[test]
    fn update_strategy_and_retention_per_component() {
        let c = cluster("demo");
        let locks = build(&c, Component::Locks, 3);
        assert_eq!(
            locks.update_strategy.unwrap().type_.as_deref(),
            Some("OnDelete")
        );
        for component in [Component::Queues, Component::Cache] {
            let spec = build(&c, component, 3);
            assert_eq!(
                spec.update_strategy.unwrap().type_.as_deref(),
                Some("RollingUpdate")
            );
        }
        for component in [Component::Locks, Component::Queues] {
            let policy = build(&c, component, 3)
                .persistent_volume_claim_retention_policy
                .unwrap();
            assert_eq!(policy.when_deleted.as_deref(), Some("Delete"));
            assert_eq!(policy.when_scaled.as_deref(), Some("Delete"));
        }
        assert!(
            build(&c, Component::Cache, 3)
                .persistent_volume_claim_retention_policy
                .is_none()
        );
    }

    #[test]
    fn container_runs_serve_with_config_and_ordinal() {
        let mut c = cluster("demo");
        c.spec.image_pull_policy = Some("IfNotPresent".to_owned());
        let spec = build(&c, Component::Queues, 3);
        let syncd = container_of(&spec);
        assert_eq!(pod(&spec).containers.len(), 1);
        assert_eq!(syncd.name, "syncd");
        assert_eq!(syncd.image.as_deref(), Some("syncd:0.1.0"));
        assert_eq!(syncd.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(syncd.args, Some(vec!["serve".to_owned()]));
        let env_from = syncd.env_from.as_ref().unwrap();
        assert_eq!(
            env_from[0].config_map_ref.as_ref().unwrap().name,
            "demo-queues-config"
        );
        let env = syncd.env.as_ref().unwrap();
        assert_eq!(env[0].name, "SYNCD_ID");
        let field = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            field.field_path,
            "metadata.labels['apps.kubernetes.io/pod-index']"
        );
        let port = &syncd.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (Some("http"), 7080)
        );

        c.spec.image = Some("ghcr.io/syncd-dev/syncd:0.2.0".to_owned());
        c.spec.image_pull_policy = None;
        let spec = build(&c, Component::Queues, 3);
        assert_eq!(
            container_of(&spec).image.as_deref(),
            Some("ghcr.io/syncd-dev/syncd:0.2.0")
        );
        assert_eq!(container_of(&spec).image_pull_policy, None);
    }

    #[test]
    fn security_context() {
        let spec = build(&cluster("demo"), Component::Locks, 3);
        let sc = container_of(&spec).security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65532));
        assert_eq!(sc.run_as_group, Some(65532));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(sc.capabilities.as_ref().unwrap().add, None);
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let psc = pod(&spec).security_context.as_ref().unwrap();
        assert_eq!(psc.fs_group, Some(65532));
    }

    #[test]
    fn probes() {
        let spec = build(&cluster("demo"), Component::Locks, 3);
        let syncd = container_of(&spec);
        let path = |p: &Option<Probe>| {
            let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.port, IntOrString::String("http".to_owned()));
            get.path.clone().unwrap()
        };
        assert_eq!(path(&syncd.readiness_probe), "/readyz");
        assert_eq!(path(&syncd.liveness_probe), "/healthz");
        assert_eq!(path(&syncd.startup_probe), "/healthz");
        // Liveness tolerates a minute of failures and never looks at readiness (quorum).
        let live = syncd.liveness_probe.as_ref().unwrap();
        let budget = live.period_seconds.unwrap() * live.failure_threshold.unwrap();
        assert!(budget >= 60, "liveness gives up after {budget}s");
        let ready = syncd.readiness_probe.as_ref().unwrap();
        assert!(ready.period_seconds.unwrap() <= live.period_seconds.unwrap());
    }

    #[test]
    fn volumes_per_component() {
        let mut c = cluster("demo");
        c.spec.queues.storage.size = Quantity("7Gi".to_owned());
        for component in Component::ALL {
            let spec = build(&c, component, 3);
            let volumes = pod(&spec).volumes.as_ref().unwrap();
            let names: Vec<_> = volumes.iter().map(|v| v.name.as_str()).collect();
            let mounts = container_of(&spec).volume_mounts.as_ref().unwrap();
            let mounted: Vec<_> = mounts
                .iter()
                .map(|m| (m.name.as_str(), m.mount_path.as_str()))
                .collect();
            assert_eq!(mounted, [("data", "/var/lib/syncd"), ("tmp", "/tmp")]);
            assert!(volumes.iter().all(|v| v.empty_dir.is_some()));
            if component.is_durable() {
                assert_eq!(names, ["tmp"]);
                let claims = spec.volume_claim_templates.as_ref().unwrap();
                assert_eq!(claims.len(), 1);
                assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
                assert_eq!(
                    claims[0].metadata.labels,
                    Some(selector_labels("demo", component))
                );
                let claim = claims[0].spec.as_ref().unwrap();
                assert_eq!(claim.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
                assert_eq!(claim.storage_class_name, None);
                let size = &claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"];
                let expected = if component == Component::Locks {
                    "1Gi"
                } else {
                    "7Gi"
                };
                assert_eq!(size.0, expected);
            } else {
                assert_eq!(names, ["data", "tmp"]);
                assert!(spec.volume_claim_templates.is_none());
            }
        }
    }

    #[test]
    fn defaults_without_overrides() {
        let spec = build(&cluster("demo"), Component::Cache, 3);
        assert_eq!(container_of(&spec).resources, Some(default_resources()));
        let resources = default_resources();
        assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "100m");
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "128Mi");
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "512Mi");
        assert_eq!(pod(&spec).node_selector, None);
        assert_eq!(pod(&spec).tolerations, None);
        let anti = pod(&spec)
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap();
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(
            term.label_selector.as_ref().unwrap().match_labels,
            Some(selector_labels("demo", Component::Cache))
        );
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
    }

    #[test]
    fn spec_overrides_land_in_the_pod() {
        let mut c = cluster("demo");
        let resources = ResourceRequirements {
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("2".to_owned()),
            )])),
            ..ResourceRequirements::default()
        };
        let node_selector = BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]);
        let tolerations = vec![Toleration {
            key: Some("dedicated".to_owned()),
            operator: Some("Equal".to_owned()),
            value: Some("syncd".to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        }];
        let affinity = Affinity::default();
        c.spec.locks.pod = PodSettings {
            resources: Some(resources.clone()),
            storage_class_name: Some("fast".to_owned()),
            node_selector: Some(node_selector.clone()),
            tolerations: Some(tolerations.clone()),
            affinity: Some(affinity.clone()),
        };
        let spec = build(&c, Component::Locks, 3);
        assert_eq!(container_of(&spec).resources, Some(resources));
        assert_eq!(pod(&spec).node_selector, Some(node_selector));
        assert_eq!(pod(&spec).tolerations, Some(tolerations));
        assert_eq!(pod(&spec).affinity, Some(affinity));
        let claim = spec.volume_claim_templates.as_ref().unwrap()[0]
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));

        // Another component's settings do not leak.
        let queues = build(&c, Component::Queues, 3);
        assert_eq!(container_of(&queues).resources, Some(default_resources()));
        assert_eq!(pod(&queues).node_selector, None);
        let claim = queues.volume_claim_templates.as_ref().unwrap()[0]
            .spec
            .as_ref()
            .unwrap();
        assert_eq!(claim.storage_class_name, None);
    }
}

#[cfg(test)]
mod hand_over_tests {
    use super::super::fixtures::{cluster, ctx};
    use super::super::{Component, desired};
    use super::HAND_OVER_PATH;

    #[test]
    fn only_lock_pods_hand_leadership_over_before_stopping() {
        for component in Component::ALL {
            let d = desired(&cluster("demo"), component, 3, &ctx()).unwrap();
            let pod = d.statefulset.spec.unwrap().template.spec.unwrap();
            let hook = pod.containers[0].lifecycle.clone().and_then(|l| l.pre_stop);
            match component {
                Component::Locks => {
                    let get = hook.unwrap().http_get.unwrap();
                    assert_eq!(get.path.as_deref(), Some(HAND_OVER_PATH));
                }
                _ => assert!(hook.is_none(), "{component:?}"),
            }
        }
    }
}
