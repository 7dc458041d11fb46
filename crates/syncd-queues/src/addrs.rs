//! Where the queue nodes are: how peer addresses are found.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

/// How peers are addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// `--peers`: every member's address; the first ring is these ids unless the node joins an existing ring.
    Static {
        /// id -> host:port.
        peers: BTreeMap<u64, String>,
        /// Wait to be added to an existing ring (and control group) instead of forming one from `peers`.
        join: bool,
    },
    /// `--discovery dns:<service>:<port>` in a StatefulSet: member `i` is `<statefulset>-<i>.<service>:<port>`,
    /// the pod's stable DNS name behind the headless Service. The ring comes from the operator.
    Dns {
        /// `<statefulset>`: the pod name without its ordinal.
        pod_prefix: String,
        /// The headless Service's DNS name.
        service: String,
        /// The peers' port.
        port: u16,
    },
}

impl PeerSource {
    /// The address of node `id`: derived from its ordinal under DNS discovery; else from the static peers or the
    /// addresses the ring records (`recorded`, for nodes added after start).
    pub fn addr(&self, id: u64, recorded: &BTreeMap<u64, String>) -> Option<String> {
        match self {
            PeerSource::Static { peers, .. } => {
                recorded.get(&id).or_else(|| peers.get(&id)).cloned()
            }
            PeerSource::Dns {
                pod_prefix,
                service,
                port,
            } => Some(format!("{pod_prefix}-{id}.{service}:{port}")),
        }
    }

    /// The static peers (empty under DNS discovery).
    pub fn static_peers(&self) -> BTreeMap<u64, String> {
        match self {
            PeerSource::Static { peers, .. } => peers.clone(),
            PeerSource::Dns { .. } => BTreeMap::new(),
        }
    }
}

/// Peer addresses as this node knows them: its source, plus what the control state's ring records.
#[derive(Debug)]
pub struct AddressBook {
    source: PeerSource,
    recorded: RwLock<BTreeMap<u64, String>>,
}

impl AddressBook {
    /// A book over `source`.
    pub fn new(source: PeerSource) -> Self {
        AddressBook {
            source,
            recorded: RwLock::new(BTreeMap::new()),
        }
    }

    /// The source.
    pub fn source(&self) -> &PeerSource {
        &self.source
    }

    /// Node `id`'s address, if known.
    pub fn addr(&self, id: u64) -> Option<String> {
        let recorded = self.recorded.read().unwrap_or_else(PoisonError::into_inner);
        self.source.addr(id, &recorded)
    }

    /// Records the addresses a ring lists.
    pub fn record(&self, addrs: &BTreeMap<u64, String>) {
        let mut recorded = self
            .recorded
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *recorded != *addrs {
            recorded.extend(addrs.iter().map(|(k, v)| (*k, v.clone())));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dns_names_follow_the_statefulset_pattern() {
        let source = PeerSource::Dns {
            pod_prefix: "demo-queue".into(),
            service: "demo-queue-peers.default.svc".into(),
            port: 7080,
        };
        assert_eq!(
            source.addr(2, &BTreeMap::new()).unwrap(),
            "demo-queue-2.demo-queue-peers.default.svc:7080"
        );
    }

    #[test]
    fn recorded_addresses_win_over_static_peers() {
        let source = PeerSource::Static {
            peers: BTreeMap::from([(1, "a:1".to_owned())]),
            join: false,
        };
        let recorded = BTreeMap::from([(1, "b:1".to_owned()), (4, "d:4".to_owned())]);
        assert_eq!(source.addr(1, &recorded).unwrap(), "b:1");
        assert_eq!(source.addr(4, &recorded).unwrap(), "d:4");
        assert_eq!(source.addr(9, &recorded), None);
    }
}
