//! The labels every object carries, and the smaller, immutable set that selectors match on.

use std::collections::BTreeMap;

use super::Component;

/// `app.kubernetes.io/name`: always `syncd`.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the SyncCluster's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: [`Component::name`].
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always [`super::FIELD_MANAGER`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`: always `syncd`.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/version`: the image tag, or `unknown`.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

/// The value of `app.kubernetes.io/name` and `app.kubernetes.io/part-of`.
pub const APP_NAME: &str = "syncd";

/// The version label value when the image has no usable tag (a digest only, or no tag at all).
pub const UNKNOWN_VERSION: &str = "unknown";

/// Labels that select one component's pods: name, instance and component.
///
/// Guarantees: the result depends only on the cluster name and the component, never on the image or the spec,
/// because StatefulSet selectors are immutable and a changed selector would make the StatefulSet unappliable.
pub fn selector_labels(cluster: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), APP_NAME.to_owned()),
        (INSTANCE_LABEL.to_owned(), cluster.to_owned()),
        (COMPONENT_LABEL.to_owned(), component.name().to_owned()),
    ])
}

/// Every label of the component's objects and pods: the selector labels plus managed-by, part-of and version.
pub fn labels(cluster: &str, component: Component, image: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cluster, component);
    labels.insert(MANAGED_BY_LABEL.to_owned(), super::FIELD_MANAGER.to_owned());
    labels.insert(PART_OF_LABEL.to_owned(), APP_NAME.to_owned());
    labels.insert(VERSION_LABEL.to_owned(), version_from_image(image));
    labels
}

/// The tag of an image reference as a valid label value: `registry:5000/syncd:0.1.0@sha256:…` gives `0.1.0`.
/// An image without a tag, or a tag that cannot be a label value, gives [`UNKNOWN_VERSION`].
pub fn version_from_image(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or_default();
    // The tag follows the last ':' of the last path segment; a ':' before a '/' is a registry port.
    let last_segment = without_digest.rsplit('/').next().unwrap_or_default();
    let tag = match last_segment.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => return UNKNOWN_VERSION.to_owned(),
    };
    // Label values: at most 63 characters of [A-Za-z0-9_.-], starting and ending with an alphanumeric.
    let tag: String = tag.chars().take(63).collect();
    let tag = tag.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let valid = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if tag.is_empty() || !valid {
        UNKNOWN_VERSION.to_owned()
    } else {
        tag.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_a_subset_of_labels_without_version() {
        let selector = selector_labels("demo", Component::Queues);
        let all = labels("demo", Component::Queues, "syncd:0.1.0");
        assert_eq!(selector.len(), 3);
        assert_eq!(selector[NAME_LABEL], "syncd");
        assert_eq!(selector[INSTANCE_LABEL], "demo");
        assert_eq!(selector[COMPONENT_LABEL], "queues");
        assert!(!selector.contains_key(VERSION_LABEL));
        for (k, v) in &selector {
            assert_eq!(all.get(k), Some(v));
        }
        assert_eq!(all[MANAGED_BY_LABEL], "syncd-operator");
        assert_eq!(all[PART_OF_LABEL], "syncd");
        assert_eq!(all[VERSION_LABEL], "0.1.0");
    }

    #[test]
    fn version_from_image_references() {
        assert_eq!(version_from_image("syncd:0.1.0"), "0.1.0");
        assert_eq!(
            version_from_image("ghcr.io/syncd-dev/syncd:v1.2.3-rc.1"),
            "v1.2.3-rc.1"
        );
        assert_eq!(version_from_image("registry:5000/syncd:0.2.0"), "0.2.0");
        assert_eq!(version_from_image("syncd:0.3.0@sha256:abcd"), "0.3.0");
        assert_eq!(version_from_image("registry:5000/syncd"), UNKNOWN_VERSION);
        assert_eq!(version_from_image("syncd@sha256:abcd"), UNKNOWN_VERSION);
        assert_eq!(version_from_image("syncd"), UNKNOWN_VERSION);
        assert_eq!(version_from_image("syncd:"), UNKNOWN_VERSION);
        assert_eq!(version_from_image("syncd:_x_"), "x");
        let long = format!("syncd:{}", "a".repeat(100));
        assert_eq!(version_from_image(&long).len(), 63);
    }
}
