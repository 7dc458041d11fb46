//! The `SyncCluster` custom resource (`syncd.dev/v1alpha1`).
//!
//! The schema carries the validation a user should meet at admission time, not at reconcile time: bounds on
//! every number, and CEL rules for what bounds cannot say (odd lock groups, a replication factor no larger than the
//! queue group, storage that cannot change after creation because StatefulSet volume templates cannot).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Syncd cluster: which components run, how many replicas each, and with what resources.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "syncd.dev",
    version = "v1alpha1",
    kind = "SyncCluster",
    namespaced,
    status = "SyncClusterStatus",
    shortname = "sync",
    category = "syncd",
    doc = "A Syncd cluster: a replicated lock service, durable work queues and a coherent cache.",
    // `<name>-queues` names a StatefulSet whose pods' controller-revision-hash label must fit in 63 characters.
    validation = Rule::new("size(self.metadata.name) <= 45").message("metadata.name must be at most 45 characters: it prefixes StatefulSet names whose pod labels must fit in 63"),
    // Raw JSON printer columns: the structured `printcolumn(...)` form repeats `type_ = "string"`, which
    // clippy's duplicated_attributes lint mistakes for a duplicated attribute.
    printcolumn = r#"{"name":"Locks","type":"string","jsonPath":".status.locks.summary","description":"ready/desired lock replicas"}"#,
    printcolumn = r#"{"name":"Queues","type":"string","jsonPath":".status.queues.summary","description":"ready/desired queue replicas"}"#,
    printcolumn = r#"{"name":"Cache","type":"string","jsonPath":".status.cache.summary","description":"ready/desired cache replicas"}"#,
    printcolumn = r#"{"name":"Leader","type":"integer","jsonPath":".status.lockLeader","description":"node id of the lock raft leader"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SyncClusterSpec {
    /// Container image of `syncd`; defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Image pull policy of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Always", "IfNotPresent", "Never"]))]
    pub image_pull_policy: Option<String>,
    /// The replicated lock service.
    #[serde(default)]
    pub locks: LocksSpec,
    /// Durable work queues.
    #[serde(default)]
    pub queues: QueuesSpec,
    /// The coherent cache.
    #[serde(default)]
    pub cache: CacheSpec,
}

/// The lock component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.replicas == 0 || self.replicas % 2 == 1").message("locks.replicas must be odd (1, 3, 5, 7 or 9) or 0: an even raft group tolerates no more failures than the odd one below it and needs a larger quorum"))]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storageClassName cannot change after creation (StatefulSet volume claim templates are immutable)"))]
pub struct LocksSpec {
    /// Raft group size; 0 turns the lock service off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 9))]
    pub replicas: i32,
    /// Data volume of each pod.
    #[serde(default = "default_lock_storage")]
    pub storage: StorageSpec,
    /// Pod placement and resources.
    #[serde(flatten)]
    pub pod: PodSettings,
}

/// The queue component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.replicas == 0 || self.replicationFactor <= self.replicas").message("queues.replicationFactor must not exceed queues.replicas"))]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("storageClassName cannot change after creation (StatefulSet volume claim templates are immutable)"))]
pub struct QueuesSpec {
    /// Queue nodes; 0 turns queues off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,
    /// Copies of each queue shard, owner included.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 5))]
    pub replication_factor: i32,
    /// Data volume of each pod.
    #[serde(default = "default_queue_storage")]
    pub storage: StorageSpec,
    /// Pod placement and resources.
    #[serde(flatten)]
    pub pod: PodSettings,
}

/// The cache component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Cache peers; 0 turns the cache off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 64))]
    pub replicas: i32,
    /// Lines each peer holds before LRU eviction.
    #[serde(default = "default_cache_capacity")]
    #[schemars(range(min = 1, max = 100_000_000))]
    pub capacity: i64,
    /// Pod placement and resources.
    #[serde(flatten)]
    pub pod: PodSettings,
}

/// A component's data volume. It cannot change once the cluster exists: StatefulSet volume claim templates are
/// immutable, so a change could never take effect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot change after creation (StatefulSet volume claim templates are immutable)"))]
pub struct StorageSpec {
    /// Size of each pod's PersistentVolumeClaim.
    pub size: Quantity,
}

/// Placement and resources shared by every component.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Container resources; defaults to modest requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// StorageClass of the data volumes; the cluster default when unset. Immutable like `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Affinity of the pods; by default pods of one component prefer different nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
}

fn default_replicas() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    2
}

fn default_cache_capacity() -> i64 {
    100_000
}

fn default_lock_storage() -> StorageSpec {
    StorageSpec {
        size: Quantity("1Gi".to_owned()),
    }
}

fn default_queue_storage() -> StorageSpec {
    StorageSpec {
        size: Quantity("5Gi".to_owned()),
    }
}

impl Default for LocksSpec {
    fn default() -> Self {
        LocksSpec {
            replicas: default_replicas(),
            storage: default_lock_storage(),
            pod: PodSettings::default(),
        }
    }
}

impl Default for QueuesSpec {
    fn default() -> Self {
        QueuesSpec {
            replicas: default_replicas(),
            replication_factor: default_replication_factor(),
            storage: default_queue_storage(),
            pod: PodSettings::default(),
        }
    }
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            replicas: default_replicas(),
            capacity: default_cache_capacity(),
            pod: PodSettings::default(),
        }
    }
}

/// Observed state, written by the operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The lock StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locks: Option<ComponentStatus>,
    /// The queue StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<ComponentStatus>,
    /// The cache StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<ComponentStatus>,
    /// The queue ring, its pending moves and the shards each pod leads, when the queue pods could be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ring: Option<QueueRingStatus>,
    /// Node id of the lock raft leader, when the lock service could be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_leader: Option<i64>,
    /// Current raft term of the lock group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_term: Option<i64>,
    /// Lock group members and their raft roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_members: Vec<LockMember>,
}

/// The queue ring as the queue control group has it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueRingStatus {
    /// The ring's epoch.
    pub epoch: i64,
    /// Member pod ordinals.
    pub members: Vec<i64>,
    /// Shards still moving after a ring change (0 when a scale step is done).
    pub pending_moves: i64,
    /// How many shards each pod leads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_leaders: Vec<ShardLeaders>,
}

/// The shards one pod leads.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardLeaders {
    /// Pod ordinal.
    pub pod: i64,
    /// Shards it leads.
    pub shards: i64,
}

/// Replica counts of one component.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Pods the StatefulSet runs now.
    pub replicas: i32,
    /// Pods that pass their readiness probe.
    pub ready_replicas: i32,
    /// The replicas the spec asks for.
    pub desired_replicas: i32,
    /// `ready/desired`, for `kubectl get sync`.
    pub summary: String,
}

/// One member of the lock raft group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockMember {
    /// Node id (pod ordinal).
    pub id: i64,
    /// `leader`, `follower` or `learner`.
    pub role: String,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    #[test]
    fn crd_has_names_status_and_rules() {
        let crd = SyncCluster::crd();
        let yaml = serde_yaml_ng::to_string(&crd).unwrap();
        assert_eq!(crd.spec.names.short_names, Some(vec!["sync".to_owned()]));
        assert!(yaml.contains("x-kubernetes-validations"));
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().unwrap().status.is_some());
    }

    /// The CRD is generated from these types and committed twice (plain manifests and the Helm chart); this
    /// fails when either copy is stale. Regenerate with `bash manifests/generate.sh`.
    #[test]
    fn committed_crds_are_up_to_date() {
        let generated = crate::crd_yaml().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for path in [
            "manifests/crds/syncclusters.syncd.dev.yaml",
            "charts/syncd-operator/crds/syncclusters.syncd.dev.yaml",
        ] {
            let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
            assert!(
                committed == generated,
                "{path} is stale or missing: run `bash manifests/generate.sh` and commit the result"
            );
        }
    }
}
