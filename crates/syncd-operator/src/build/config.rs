//! The ConfigMap `<cluster>-<component>-config`: the `SYNCD_*` environment the pods read with `envFrom`, and the
//! hash of it that rolls the pods when it changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::scope::Scope;
use super::{Component, DATA_DIR, HTTP_PORT};
use crate::crd::SyncClusterSpec;

/// `SYNCD_LISTEN`: the one address the API and the peer endpoints are served on.
pub const LISTEN_KEY: &str = "SYNCD_LISTEN";
/// `SYNCD_DATA_DIR`.
pub const DATA_DIR_KEY: &str = "SYNCD_DATA_DIR";
/// `SYNCD_ROLES`.
pub const ROLES_KEY: &str = "SYNCD_ROLES";
/// `SYNCD_LOG_FORMAT`.
pub const LOG_FORMAT_KEY: &str = "SYNCD_LOG_FORMAT";
/// `SYNCD_PEERS`: the lock group's members, `<id>=<host:port>,...`.
pub const PEERS_KEY: &str = "SYNCD_PEERS";
/// `SYNCD_DISCOVERY`: `dns:<headless service>:<port>` for queues and cache.
pub const DISCOVERY_KEY: &str = "SYNCD_DISCOVERY";
/// `SYNCD_REPLICATION_FACTOR`.
pub const REPLICATION_FACTOR_KEY: &str = "SYNCD_REPLICATION_FACTOR";
/// `SYNCD_CACHE_CAPACITY`.
pub const CACHE_CAPACITY_KEY: &str = "SYNCD_CACHE_CAPACITY";

/// The ConfigMap of one component.
pub(crate) fn config_map(
    scope: &Scope,
    spec: &SyncClusterSpec,
    statefulset_replicas: i32,
) -> ConfigMap {
    ConfigMap {
        metadata: scope.meta(scope.component.config_name(&scope.cluster)),
        data: Some(env(
            &scope.cluster,
            &scope.namespace,
            scope.component,
            spec,
            statefulset_replicas,
        )),
        ..ConfigMap::default()
    }
}

/// The environment of one component's pods.
///
/// Locks list their raft members explicitly (`SYNCD_PEERS`, ordinals `0..statefulset_replicas`); queues and cache
/// find their peers through the headless Service (`SYNCD_DISCOVERY`).
pub fn env(
    cluster: &str,
    namespace: &str,
    component: Component,
    spec: &SyncClusterSpec,
    statefulset_replicas: i32,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        (LISTEN_KEY.to_owned(), format!("0.0.0.0:{HTTP_PORT}")),
        (DATA_DIR_KEY.to_owned(), DATA_DIR.to_owned()),
        (ROLES_KEY.to_owned(), component.role().to_owned()),
        (LOG_FORMAT_KEY.to_owned(), "json".to_owned()),
    ]);
    let discovery = || {
        let service = component.peers_service_name(cluster);
        format!("dns:{service}.{namespace}.svc:{HTTP_PORT}")
    };
    match component {
        Component::Locks => {
            env.insert(
                PEERS_KEY.to_owned(),
                lock_peers(cluster, namespace, statefulset_replicas),
            );
        }
        Component::Queues => {
            env.insert(DISCOVERY_KEY.to_owned(), discovery());
            env.insert(
                REPLICATION_FACTOR_KEY.to_owned(),
                spec.queues.replication_factor.to_string(),
            );
        }
        Component::Cache => {
            env.insert(DISCOVERY_KEY.to_owned(), discovery());
            env.insert(
                CACHE_CAPACITY_KEY.to_owned(),
                spec.cache.capacity.to_string(),
            );
        }
    }
    env
}

/// `0=<cluster>-locks-0.<cluster>-locks-peers.<ns>.svc:7080,1=...` for ordinals `0..replicas`: each lock pod's
/// stable DNS name through the headless peers Service. The node id is the StatefulSet ordinal.
pub fn lock_peers(cluster: &str, namespace: &str, replicas: i32) -> String {
    (0..replicas.max(0))
        .map(|i| format!("{i}={}", lock_peer_addr(cluster, namespace, i as u64)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `host:port` lock pod `ordinal` is reached on by its peers (and named by in raft membership).
pub fn lock_peer_addr(cluster: &str, namespace: &str, ordinal: u64) -> String {
    let statefulset = Component::Locks.object_name(cluster);
    let service = Component::Locks.peers_service_name(cluster);
    format!("{statefulset}-{ordinal}.{service}.{namespace}.svc:{HTTP_PORT}")
}

/// A stable hash (FNV-1a, 64 bits, hex) of the config data and the image, for the pod template annotation
/// `syncd.dev/config-hash`: pods read their environment only at start, so a change must roll them.
///
/// Guarantees: `SYNCD_PEERS` is left out, so a lock membership change (scaling one step) does not roll every lock
/// pod; raft membership is changed by the operator through the API, not by restarting pods. The value does not
/// depend on the Rust version or the platform (unlike `std`'s `DefaultHasher`).
pub fn config_hash(data: &BTreeMap<String, String>, image: &str) -> String {
    let mut hash = Fnv1a::new();
    for (key, value) in data.iter().filter(|(k, _)| k.as_str() != PEERS_KEY) {
        hash.field(key.as_bytes());
        hash.field(value.as_bytes());
    }
    hash.field(b"image");
    hash.field(image.as_bytes());
    format!("{:016x}", hash.0)
}

/// 64-bit FNV-1a; every field is length-prefixed so `("ab", "c")` and `("a", "bc")` hash differently.
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{NAMESPACE, cluster};
    use super::*;

    fn data(
        component: Component,
        spec: &SyncClusterSpec,
        replicas: i32,
    ) -> BTreeMap<String, String> {
        env("demo", NAMESPACE, component, spec, replicas)
    }

    #[test]
    fn fnv1a_known_value() {
        // The published FNV-1a 64 test vector for "a".
        let mut h = Fnv1a::new();
        h.bytes(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn common_env() {
        let spec = cluster("demo").spec;
        for c in Component::ALL {
            let env = data(c, &spec, 3);
            assert_eq!(env[LISTEN_KEY], "0.0.0.0:7080");
            assert_eq!(env[DATA_DIR_KEY], "/var/lib/syncd");
            assert_eq!(env[ROLES_KEY], c.role());
            assert_eq!(env[LOG_FORMAT_KEY], "json");
        }
    }

    #[test]
    fn lock_peers_for_3_and_5() {
        assert_eq!(
            lock_peers("demo", "ns", 3),
            "0=demo-locks-0.demo-locks-peers.ns.svc:7080,\
             1=demo-locks-1.demo-locks-peers.ns.svc:7080,\
             2=demo-locks-2.demo-locks-peers.ns.svc:7080"
        );
        let five = lock_peers("demo", "ns", 5);
        let ids: Vec<_> = five
            .split(',')
            .map(|p| p.split_once('=').map(|(id, _)| id))
            .collect();
        assert_eq!(ids, [Some("0"), Some("1"), Some("2"), Some("3"), Some("4")]);
        assert!(five.ends_with(",4=demo-locks-4.demo-locks-peers.ns.svc:7080"));
        assert_eq!(lock_peers("demo", "ns", 0), "");

        let env = data(Component::Locks, &cluster("demo").spec, 5);
        assert_eq!(env[PEERS_KEY], lock_peers("demo", NAMESPACE, 5));
        assert!(!env.contains_key(DISCOVERY_KEY));
    }

    #[test]
    fn queues_and_cache_discover_through_dns() {
        let mut spec = cluster("demo").spec;
        spec.queues.replication_factor = 3;
        spec.cache.capacity = 42;
        let queues = data(Component::Queues, &spec, 3);
        assert_eq!(
            queues[DISCOVERY_KEY],
            "dns:demo-queues-peers.syncd-test.svc:7080"
        );
        assert_eq!(queues[REPLICATION_FACTOR_KEY], "3");
        assert!(!queues.contains_key(PEERS_KEY));
        let cache = data(Component::Cache, &spec, 3);
        assert_eq!(
            cache[DISCOVERY_KEY],
            "dns:demo-cache-peers.syncd-test.svc:7080"
        );
        assert_eq!(cache[CACHE_CAPACITY_KEY], "42");
        assert!(!cache.contains_key(REPLICATION_FACTOR_KEY));
    }

    #[test]
    fn hash_ignores_lock_peers() {
        let spec = cluster("demo").spec;
        let three = data(Component::Locks, &spec, 3);
        let five = data(Component::Locks, &spec, 5);
        assert_ne!(three, five);
        assert_eq!(
            config_hash(&three, "syncd:0.1.0"),
            config_hash(&five, "syncd:0.1.0")
        );
    }

    #[test]
    fn hash_changes_with_config_and_image() {
        let mut spec = cluster("demo").spec;
        let queues = config_hash(&data(Component::Queues, &spec, 3), "syncd:0.1.0");
        let cache = config_hash(&data(Component::Cache, &spec, 3), "syncd:0.1.0");
        assert_eq!(queues.len(), 16);
        // Stable: the same input gives the same hash.
        assert_eq!(
            queues,
            config_hash(&data(Component::Queues, &spec, 3), "syncd:0.1.0")
        );

        assert_ne!(
            queues,
            config_hash(&data(Component::Queues, &spec, 3), "syncd:0.2.0")
        );
        spec.queues.replication_factor = 3;
        assert_ne!(
            queues,
            config_hash(&data(Component::Queues, &spec, 3), "syncd:0.1.0")
        );
        spec.cache.capacity += 1;
        assert_ne!(
            cache,
            config_hash(&data(Component::Cache, &spec, 3), "syncd:0.1.0")
        );
    }
}
