//! The three Syncd components the operator runs, and the names of the objects each one owns.

use crate::crd::{PodSettings, StorageSpec, SyncClusterSpec};

/// One Syncd component: each runs as its own StatefulSet with its own Services, config and PodDisruptionBudget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    /// The replicated lock service (a raft group).
    Locks,
    /// Durable work queues.
    Queues,
    /// The coherent cache.
    Cache,
}

impl Component {
    /// Every component, in the order the operator reconciles them.
    pub const ALL: [Component; 3] = [Component::Locks, Component::Queues, Component::Cache];

    /// The object name suffix and the `app.kubernetes.io/component` label value.
    pub fn name(self) -> &'static str {
        match self {
            Component::Locks => "locks",
            Component::Queues => "queues",
            Component::Cache => "cache",
        }
    }

    /// The `syncd --roles` value the component's pods run.
    pub fn role(self) -> &'static str {
        match self {
            Component::Locks => "lock",
            Component::Queues => "queue",
            Component::Cache => "cache",
        }
    }

    /// The replicas the spec asks for; 0 means the component is off.
    pub fn desired_replicas(self, spec: &SyncClusterSpec) -> i32 {
        match self {
            Component::Locks => spec.locks.replicas,
            Component::Queues => spec.queues.replicas,
            Component::Cache => spec.cache.replicas,
        }
    }

    /// Whether the component keeps data across restarts (and so gets a PersistentVolumeClaim per pod).
    pub fn is_durable(self) -> bool {
        match self {
            Component::Locks | Component::Queues => true,
            Component::Cache => false,
        }
    }

    /// The component's placement and resources from the spec.
    pub fn pod_settings(self, spec: &SyncClusterSpec) -> &PodSettings {
        match self {
            Component::Locks => &spec.locks.pod,
            Component::Queues => &spec.queues.pod,
            Component::Cache => &spec.cache.pod,
        }
    }

    /// The data volume of a durable component; `None` for the cache, which keeps nothing across restarts.
    pub fn storage(self, spec: &SyncClusterSpec) -> Option<&StorageSpec> {
        match self {
            Component::Locks => Some(&spec.locks.storage),
            Component::Queues => Some(&spec.queues.storage),
            Component::Cache => None,
        }
    }

    /// `<cluster>-<component>`: the StatefulSet, the client Service and the PodDisruptionBudget.
    pub fn object_name(self, cluster: &str) -> String {
        format!("{cluster}-{}", self.name())
    }

    /// `<cluster>-<component>-peers`: the headless Service that gives each pod a stable DNS name.
    pub fn peers_service_name(self, cluster: &str) -> String {
        format!("{cluster}-{}-peers", self.name())
    }

    /// `<cluster>-<component>-config`: the ConfigMap the pods read their environment from.
    pub fn config_name(self, cluster: &str) -> String {
        format!("{cluster}-{}-config", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Component::Locks.object_name("demo"), "demo-locks");
        assert_eq!(
            Component::Queues.peers_service_name("demo"),
            "demo-queues-peers"
        );
        assert_eq!(Component::Cache.config_name("demo"), "demo-cache-config");
        let roles: Vec<_> = Component::ALL.iter().map(|c| c.role()).collect();
        assert_eq!(roles, ["lock", "queue", "cache"]);
    }

    #[test]
    fn durability_and_replicas() {
        let mut spec = SyncClusterSpec {
            image: None,
            image_pull_policy: None,
            locks: Default::default(),
            queues: Default::default(),
            cache: Default::default(),
        };
        spec.locks.replicas = 5;
        spec.queues.replicas = 4;
        spec.cache.replicas = 0;
        assert_eq!(Component::Locks.desired_replicas(&spec), 5);
        assert_eq!(Component::Queues.desired_replicas(&spec), 4);
        assert_eq!(Component::Cache.desired_replicas(&spec), 0);
        assert!(Component::Locks.is_durable());
        assert!(Component::Queues.is_durable());
        assert!(!Component::Cache.is_durable());
        for c in Component::ALL {
            assert_eq!(c.storage(&spec).is_some(), c.is_durable());
        }
    }
}
