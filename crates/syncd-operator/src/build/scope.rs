//! What every object of one component shares: its owner, namespace, labels and image, checked once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::labels::{labels, selector_labels};
use super::{BuildContext, BuildError, Component, MAX_CLUSTER_NAME_LEN};
use crate::crd::SyncCluster;

/// The checked inputs the per-kind builders share.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    /// The SyncCluster's name.
    pub cluster: String,
    /// Where every object goes.
    pub namespace: String,
    /// The component being built.
    pub component: Component,
    /// The container image (the spec's, else the operator's default).
    pub image: String,
    /// The controller reference to the SyncCluster.
    pub owner: OwnerReference,
    /// Every label of the component's objects.
    pub labels: BTreeMap<String, String>,
    /// The labels selectors match on.
    pub selector: BTreeMap<String, String>,
}

impl Scope {
    /// Checks the cluster's identity and resolves the image.
    ///
    /// Errors: the cluster has no name or uid, lives in another namespace than `ctx.namespace` (an owner reference
    /// cannot cross namespaces), has a name the object names cannot be built from, or no image is known.
    pub fn new(
        cluster: &SyncCluster,
        component: Component,
        ctx: &BuildContext,
    ) -> Result<Self, BuildError> {
        let name = cluster.meta().name.clone().ok_or(BuildError::MissingName)?;
        check_cluster_name(&name)?;
        if let Some(ns) = cluster.namespace()
            && ns != ctx.namespace
        {
            return Err(BuildError::NamespaceMismatch {
                cluster: ns,
                target: ctx.namespace.clone(),
            });
        }
        if ctx.namespace.is_empty() {
            return Err(BuildError::MissingNamespace);
        }
        if cluster.meta().uid.is_none() {
            return Err(BuildError::MissingUid);
        }
        let owner = cluster
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingUid)?;
        let image = cluster
            .spec
            .image
            .clone()
            .unwrap_or_else(|| ctx.default_image.clone());
        if image.trim().is_empty() {
            return Err(BuildError::MissingImage);
        }
        Ok(Scope {
            labels: labels(&name, component, &image),
            selector: selector_labels(&name, component),
            cluster: name,
            namespace: ctx.namespace.clone(),
            component,
            image,
            owner,
        })
    }

    /// Metadata of one owned object: name, namespace, labels and the controller reference.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The cluster name becomes part of Service names (RFC 1035 labels) and StatefulSet names, whose pods carry a
/// `controller-revision-hash` label `<statefulset>-<hash>` that must fit in 63 characters.
fn check_cluster_name(name: &str) -> Result<(), BuildError> {
    let invalid = |reason: &'static str| BuildError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.len() > MAX_CLUSTER_NAME_LEN {
        return Err(invalid("longer than 45 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("must start with a lowercase letter"));
    }
    if !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(invalid("must end with a lowercase letter or digit"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid(
            "may contain only lowercase letters, digits and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{cluster, ctx};
    use super::*;

    #[test]
    fn scope_resolves_image_and_owner() {
        let c = cluster("demo");
        let scope = Scope::new(&c, Component::Locks, &ctx()).unwrap();
        assert_eq!(scope.image, "syncd:0.1.0");
        assert_eq!(scope.owner.controller, Some(true));
        assert_eq!(scope.owner.kind, "SyncCluster");
        assert_eq!(scope.owner.name, "demo");

        let mut c = cluster("demo");
        c.spec.image = Some("syncd:9.9.9".to_owned());
        let scope = Scope::new(&c, Component::Locks, &ctx()).unwrap();
        assert_eq!(scope.image, "syncd:9.9.9");
    }

    #[test]
    fn rejects_unbuildable_clusters() {
        let mut c = cluster("demo");
        c.metadata.uid = None;
        assert!(matches!(
            Scope::new(&c, Component::Locks, &ctx()),
            Err(BuildError::MissingUid)
        ));

        let mut c = cluster("demo");
        c.metadata.name = None;
        assert!(matches!(
            Scope::new(&c, Component::Locks, &ctx()),
            Err(BuildError::MissingName)
        ));

        let mut c = cluster("demo");
        c.metadata.namespace = Some("elsewhere".to_owned());
        assert!(matches!(
            Scope::new(&c, Component::Locks, &ctx()),
            Err(BuildError::NamespaceMismatch { .. })
        ));

        let c = cluster("demo");
        let mut no_image = ctx();
        no_image.default_image = String::new();
        assert!(matches!(
            Scope::new(&c, Component::Locks, &no_image),
            Err(BuildError::MissingImage)
        ));

        for bad in ["1demo", "demo.x", "Demo", "demo-", &"a".repeat(46)] {
            let c = cluster(bad);
            assert!(
                matches!(
                    Scope::new(&c, Component::Locks, &ctx()),
                    Err(BuildError::InvalidName { .. })
                ),
                "{bad}"
            );
        }
        assert!(Scope::new(&cluster(&"a".repeat(45)), Component::Queues, &ctx()).is_ok());
    }
}
