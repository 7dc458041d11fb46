//! Build: the pure step of reconcile. From a `SyncCluster` and one [`Component`] it computes every object the
//! operator owns for that component, with no API calls, no async and no I/O; the controller applies the result
//! with server-side apply as [`FIELD_MANAGER`].
//!
//! - [`component`]: the three components and their object names.
//! - [`labels`]: the labels of every object and the immutable selector subset.
//! - `scope`: the checked inputs every builder shares (owner reference, namespace, image, labels).
//! - [`config`]: the ConfigMap with the pods' `SYNCD_*` environment, and its hash.
//! - [`service`]: the headless peers Service and the client Service.
//! - [`statefulset`]: the StatefulSet and its pod template.
//! - [`pdb`]: the PodDisruptionBudget.

pub mod component;
pub mod config;
pub mod labels;
pub mod pdb;
mod scope;
pub mod service;
pub mod statefulset;

#[cfg(test)]
mod fixtures;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

pub use component::Component;
pub use labels::selector_labels;

use crate::crd::SyncCluster;

/// The one port every pod serves the public API, the peer endpoints and the probes on.
pub const HTTP_PORT: i32 = 7080;
/// The name of [`HTTP_PORT`] on containers and Services.
pub const HTTP_PORT_NAME: &str = "http";
/// The field manager of the operator's server-side applies, and the `app.kubernetes.io/managed-by` value.
pub const FIELD_MANAGER: &str = "syncd-operator";
/// Where pods keep their data (`SYNCD_DATA_DIR`, the `data` volume's mount).
pub const DATA_DIR: &str = "/var/lib/syncd";
/// The longest SyncCluster name objects can be built for: `<name>-queues` is a StatefulSet name, and its pods'
/// `controller-revision-hash` label `<statefulset>-<10 char hash>` must fit in 63 characters (52 - 7 = 45).
pub const MAX_CLUSTER_NAME_LEN: usize = 45;

/// What the operator knows that the SyncCluster does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildContext {
    /// The image when `spec.image` is unset (the operator's own version).
    pub default_image: String,
    /// The namespace every object goes to: the SyncCluster's own.
    pub namespace: String,
}

/// Every object of one component, ready to apply.
#[derive(Clone, Debug)]
pub struct Desired {
    /// `<cluster>-<component>-config`.
    pub config: ConfigMap,
    /// `<cluster>-<component>-peers` (headless).
    pub peers_service: Service,
    /// `<cluster>-<component>`.
    pub client_service: Service,
    /// `<cluster>-<component>`.
    pub statefulset: StatefulSet,
    /// `<cluster>-<component>`.
    pub pdb: PodDisruptionBudget,
}

/// Why the objects could not be built. None of these goes away by retrying: each waits for a change of the
/// SyncCluster or of the operator's configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The SyncCluster has no `metadata.name`.
    #[error("the SyncCluster has no metadata.name")]
    MissingName,
    /// The SyncCluster has no `metadata.uid`, so no owner reference can point at it.
    #[error("the SyncCluster has no metadata.uid")]
    MissingUid,
    /// The build context has no namespace.
    #[error("no namespace to build objects in")]
    MissingNamespace,
    /// The SyncCluster lives in another namespace than the objects would; owner references cannot cross namespaces.
    #[error("the SyncCluster is in namespace {cluster:?} but objects would go to {target:?}")]
    NamespaceMismatch {
        /// The SyncCluster's namespace.
        cluster: String,
        /// [`BuildContext::namespace`].
        target: String,
    },
    /// The SyncCluster's name cannot be part of the object names.
    #[error("SyncCluster name {name:?} cannot name its objects: {reason}")]
    InvalidName {
        /// The SyncCluster's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Neither `spec.image` nor the operator's default image is set.
    #[error("no container image: spec.image is unset and the operator has no default")]
    MissingImage,
    /// A negative replica count was asked for.
    #[error("negative replica count {0}")]
    NegativeReplicas(i32),
}

impl BuildError {
    /// A stable code: the Event reason and the metric label of this error.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::MissingName => "MissingName",
            BuildError::MissingUid => "MissingUid",
            BuildError::MissingNamespace => "MissingNamespace",
            BuildError::NamespaceMismatch { .. } => "NamespaceMismatch",
            BuildError::InvalidName { .. } => "InvalidName",
            BuildError::MissingImage => "MissingImage",
            BuildError::NegativeReplicas(_) => "NegativeReplicas",
        }
    }
}

/// The objects of `component` for `cluster`, with the StatefulSet at `statefulset_replicas` pods (the controller
/// moves the lock group toward the spec's replicas one member at a time, so this is not read from the spec).
///
/// Guarantees: pure and deterministic; every object is in `ctx.namespace`, carries the component's labels and a
/// controller owner reference to `cluster`; selectors and volume claim templates depend only on the cluster name
/// and the component (both are immutable on a StatefulSet).
///
/// Errors: see [`BuildError`].
pub fn desired(
    cluster: &SyncCluster,
    component: Component,
    statefulset_replicas: i32,
    ctx: &BuildContext,
) -> Result<Desired, BuildError> {
    if statefulset_replicas < 0 {
        return Err(BuildError::NegativeReplicas(statefulset_replicas));
    }
    let scope = scope::Scope::new(cluster, component, ctx)?;
    let config = config::config_map(&scope, &cluster.spec, statefulset_replicas);
    let hash = config::config_hash(&config.data.clone().unwrap_or_default(), &scope.image);
    Ok(Desired {
        statefulset: statefulset::statefulset(&scope, &cluster.spec, statefulset_replicas, &hash),
        peers_service: service::peers_service(&scope),
        client_service: service::client_service(&scope),
        pdb: pdb::pdb(&scope, statefulset_replicas),
        config,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::fixtures::{NAMESPACE, cluster, ctx};
    use super::labels::VERSION_LABEL;
    use super::statefulset::CONFIG_HASH_ANNOTATION;
    use super::*;

    fn metas(d: &Desired) -> [(&'static str, &ObjectMeta); 5] {
        [
            ("config", &d.config.metadata),
            ("peers", &d.peers_service.metadata),
            ("client", &d.client_service.metadata),
            ("statefulset", &d.statefulset.metadata),
            ("pdb", &d.pdb.metadata),
        ]
    }

    fn template_hash(d: &Desired) -> String {
        let spec = d.statefulset.spec.as_ref().unwrap();
        let meta = spec.template.metadata.as_ref().unwrap();
        meta.annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
    }

    #[test]
    fn names() {
        for component in Component::ALL {
            let d = desired(&cluster("demo"), component, 3, &ctx()).unwrap();
            let n = component.name();
            assert_eq!(d.config.metadata.name, Some(format!("demo-{n}-config")));
            assert_eq!(
                d.peers_service.metadata.name,
                Some(format!("demo-{n}-peers"))
            );
            assert_eq!(d.client_service.metadata.name, Some(format!("demo-{n}")));
            assert_eq!(d.statefulset.metadata.name, Some(format!("demo-{n}")));
            assert_eq!(d.pdb.metadata.name, Some(format!("demo-{n}")));
        }
    }

    #[test]
    fn every_object_has_namespace_labels_and_owner() {
        let c = cluster("demo");
        for component in Component::ALL {
            let d = desired(&c, component, 3, &ctx()).unwrap();
            for (kind, meta) in metas(&d) {
                assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{kind}");
                let labels = meta.labels.as_ref().unwrap();
                let expected = [
                    ("app.kubernetes.io/name", "syncd"),
                    ("app.kubernetes.io/instance", "demo"),
                    ("app.kubernetes.io/component", component.name()),
                    ("app.kubernetes.io/managed-by", "syncd-operator"),
                    ("app.kubernetes.io/part-of", "syncd"),
                    ("app.kubernetes.io/version", "0.1.0"),
                ];
                assert_eq!(labels.len(), expected.len(), "{kind}");
                for (k, v) in expected {
                    assert_eq!(labels.get(k).map(String::as_str), Some(v), "{kind} {k}");
                }
                let owners = meta.owner_references.as_ref().unwrap();
                assert_eq!(owners.len(), 1, "{kind}");
                let owner = &owners[0];
                assert_eq!(owner.controller, Some(true), "{kind}");
                assert_eq!(owner.kind, "SyncCluster");
                assert_eq!(owner.api_version, "syncd.dev/v1alpha1");
                assert_eq!(owner.name, "demo");
                assert_eq!(Some(&owner.uid), c.metadata.uid.as_ref());
            }
        }
    }

    #[test]
    fn missing_identity_is_an_error() {
        let mut c = cluster("demo");
        c.metadata.uid = None;
        let err = desired(&c, Component::Locks, 3, &ctx()).unwrap_err();
        assert_eq!(err, BuildError::MissingUid);
        assert_eq!(err.code(), "MissingUid");
        let mut c = cluster("demo");
        c.metadata.name = None;
        assert_eq!(
            desired(&c, Component::Locks, 3, &ctx()).unwrap_err(),
            BuildError::MissingName
        );
        assert_eq!(
            desired(&cluster("demo"), Component::Locks, -1, &ctx()).unwrap_err(),
            BuildError::NegativeReplicas(-1)
        );
    }

    #[test]
    fn selectors_are_stable_across_image_changes() {
        let mut c = cluster("demo");
        for component in Component::ALL {
            c.spec.image = Some("syncd:0.1.0".to_owned());
            let before = desired(&c, component, 3, &ctx()).unwrap();
            c.spec.image = Some("syncd:0.2.0".to_owned());
            let after = desired(&c, component, 3, &ctx()).unwrap();

            let sts = |d: &Desired| d.statefulset.spec.clone().unwrap();
            assert_eq!(sts(&before).selector, sts(&after).selector);
            assert_eq!(
                sts(&before).volume_claim_templates,
                sts(&after).volume_claim_templates
            );
            assert_eq!(
                sts(&after).selector.match_labels,
                Some(selector_labels("demo", component))
            );
            let svc_selector = |s: &Service| s.spec.clone().unwrap().selector;
            assert_eq!(
                svc_selector(&before.peers_service),
                svc_selector(&after.peers_service)
            );
            assert_eq!(
                svc_selector(&before.client_service),
                svc_selector(&after.client_service)
            );
            assert_eq!(
                before.pdb.spec.clone().unwrap().selector,
                after.pdb.spec.clone().unwrap().selector
            );

            // The version label and the pod template do change, so the pods roll.
            assert_eq!(
                after.statefulset.metadata.labels.as_ref().unwrap()[VERSION_LABEL],
                "0.2.0"
            );
            assert_ne!(template_hash(&before), template_hash(&after));
        }
    }

    #[test]
    fn lock_scaling_does_not_roll_pods() {
        let c = cluster("demo");
        let three = desired(&c, Component::Locks, 3, &ctx()).unwrap();
        let four = desired(&c, Component::Locks, 4, &ctx()).unwrap();
        assert_ne!(three.config.data, four.config.data);
        assert_eq!(template_hash(&three), template_hash(&four));
        assert_eq!(
            three.statefulset.spec.as_ref().unwrap().template,
            four.statefulset.spec.as_ref().unwrap().template
        );
    }

    #[test]
    fn config_changes_roll_pods() {
        let mut c = cluster("demo");
        let queues = template_hash(&desired(&c, Component::Queues, 3, &ctx()).unwrap());
        let cache = template_hash(&desired(&c, Component::Cache, 3, &ctx()).unwrap());
        c.spec.queues.replication_factor = 3;
        c.spec.cache.capacity = 5;
        assert_ne!(
            queues,
            template_hash(&desired(&c, Component::Queues, 3, &ctx()).unwrap())
        );
        assert_ne!(
            cache,
            template_hash(&desired(&c, Component::Cache, 3, &ctx()).unwrap())
        );
    }

    #[test]
    fn replicas_come_from_the_argument() {
        let c = cluster("demo");
        let d = desired(&c, Component::Locks, 4, &ctx()).unwrap();
        assert_eq!(d.statefulset.spec.as_ref().unwrap().replicas, Some(4));
        assert_eq!(
            d.config.data.as_ref().unwrap()[config::PEERS_KEY]
                .split(',')
                .count(),
            4
        );
    }
}
