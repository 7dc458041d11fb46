//! Who the queue nodes are: the ring (membership epochs, persisted), peer addresses and liveness.
//!
//! The ring changes only when someone asks for a new membership (the operator on scale, or `POST /internal/ring`);
//! a crash is not a membership change. Liveness is separate and local: a peer is alive while it answered a ping
//! within the failure timeout. A peer never heard from since this node started counts as alive until the timeout
//! has passed, so a restarting cluster does not declare everybody dead at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use syncd_ring::Ring;

use crate::wire::RingState;

/// How peers are addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// `--peers`: every member's address; the first ring is these ids unless the node joins an existing ring.
    Static {
        /// id -> host:port.
        peers: BTreeMap<u64, String>,
        /// Wait to learn the ring from a peer instead of forming one from `peers`.
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

/// The adopted ring state, the ring built from it, and the previous ring (while a change settles).
type Installed = (RingState, Arc<Ring>, Option<Arc<Ring>>);

/// The ring, addresses and liveness as this node sees them.
#[derive(Debug)]
pub struct Membership {
    me: u64,
    source: PeerSource,
    ring_path: PathBuf,
    ring: RwLock<Option<Installed>>,
    seen: Mutex<HashMap<u64, Instant>>,
    started: Instant,
    failure_timeout: Duration,
}

impl Membership {
    /// Loads the persisted ring, or forms the first one from static peers.
    pub fn open(
        me: u64,
        source: PeerSource,
        dir: &Path,
        vnodes: u32,
        failure_timeout: Duration,
    ) -> anyhow::Result<Membership> {
        std::fs::create_dir_all(dir)?;
        let ring_path = dir.join("ring.json");
        let membership = Membership {
            me,
            source,
            ring_path,
            ring: RwLock::new(None),
            seen: Mutex::new(HashMap::new()),
            started: Instant::now(),
            failure_timeout,
        };
        let stored = match std::fs::read(&membership.ring_path) {
            Ok(bytes) => Some(serde_json::from_slice::<RingState>(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is damaged: {e}", membership.ring_path.display())
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let initial = match (stored, &membership.source) {
            (Some(state), _) => Some(state),
            (None, PeerSource::Static { peers, join: false }) => Some(RingState {
                epoch: 1,
                members: peers.keys().copied().collect(),
                vnodes,
                addrs: BTreeMap::new(),
                previous: Vec::new(),
            }),
            _ => None,
        };
        if let Some(state) = initial {
            membership.install(state)?;
        }
        Ok(membership)
    }

    /// This node's id.
    pub fn me(&self) -> u64 {
        self.me
    }

    fn install(&self, state: RingState) -> anyhow::Result<()> {
        persist(&self.ring_path, &serde_json::to_vec_pretty(&state)?)?;
        let ring = Arc::new(Ring::new(
            state.members.iter().copied(),
            state.vnodes,
            state.epoch,
        ));
        let previous = (!state.previous.is_empty()).then(|| {
            Arc::new(Ring::new(
                state.previous.iter().copied(),
                state.vnodes,
                state.epoch.saturating_sub(1),
            ))
        });
        *self.ring.write().unwrap_or_else(PoisonError::into_inner) = Some((state, ring, previous));
        Ok(())
    }

    /// The ring state, if formed.
    pub fn ring_state(&self) -> Option<RingState> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(s, _, _)| s.clone())
    }

    /// The current ring and the one before it (while a membership change settles).
    pub fn rings(&self) -> Option<(Arc<Ring>, Option<Arc<Ring>>)> {
        self.ring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, r, p)| (r.clone(), p.clone()))
    }

    /// The current epoch, 0 before the ring is formed.
    pub fn epoch(&self) -> u64 {
        self.ring_state().map(|s| s.epoch).unwrap_or(0)
    }

    /// Adopts `state` if it is newer than ours. Returns whether it was adopted.
    pub fn adopt(&self, state: RingState) -> anyhow::Result<bool> {
        if state.epoch <= self.epoch() {
            return Ok(false);
        }
        tracing::info!(epoch = state.epoch, members = ?state.members, "adopting queue ring");
        self.install(state)?;
        Ok(true)
    }

    /// The next ring with `members`, one epoch later; `addrs` adds addresses of new static members.
    pub fn next_ring(
        &self,
        members: Vec<u64>,
        addrs: BTreeMap<u64, String>,
        vnodes: u32,
    ) -> RingState {
        let current = self.ring_state();
        let mut all_addrs = current
            .as_ref()
            .map(|s| s.addrs.clone())
            .unwrap_or_default();
        all_addrs.extend(addrs);
        RingState {
            epoch: current.as_ref().map(|s| s.epoch).unwrap_or(0) + 1,
            members,
            vnodes: current.as_ref().map(|s| s.vnodes).unwrap_or(vnodes),
            addrs: all_addrs,
            previous: current.map(|s| s.members).unwrap_or_default(),
        }
    }

    /// Where node `id` listens.
    pub fn addr(&self, id: u64) -> Option<String> {
        match &self.source {
            PeerSource::Static { peers, .. } => peers.get(&id).cloned().or_else(|| {
                self.ring_state()
                    .and_then(|state| state.addrs.get(&id).cloned())
            }),
            PeerSource::Dns {
                pod_prefix,
                service,
                port,
            } => Some(format!("{pod_prefix}-{id}.{service}:{port}")),
        }
    }

    /// Every node this one should ping: ring members (current and previous) and static peers, except itself.
    pub fn peer_ids(&self) -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        if let Some(state) = self.ring_state() {
            ids.extend(state.members.iter().copied());
            ids.extend(state.previous.iter().copied());
        }
        if let PeerSource::Static { peers, .. } = &self.source {
            ids.extend(peers.keys().copied());
        }
        ids.remove(&self.me);
        ids
    }

    /// How long a silent peer counts as alive.
    pub fn failure_timeout(&self) -> Duration {
        self.failure_timeout
    }

    /// Records an answer from `id`.
    pub fn mark_seen(&self, id: u64) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Instant::now());
    }

    /// Whether `id` answered within the failure timeout (this node is always alive to itself).
    pub fn alive(&self, id: u64) -> bool {
        if id == self.me {
            return true;
        }
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let last = seen.get(&id).copied().unwrap_or(self.started);
        last.elapsed() < self.failure_timeout
    }

    /// The acting owner among `placement`: the first live node.
    pub fn acting_owner(&self, placement: &[u64]) -> Option<u64> {
        placement.iter().copied().find(|id| self.alive(*id))
    }
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub(crate) fn persist(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statics(join: bool) -> PeerSource {
        PeerSource::Static {
            peers: [(0, "127.0.0.1:1".to_owned()), (1, "127.0.0.1:2".to_owned())].into(),
            join,
        }
    }

    #[test]
    fn static_peers_form_the_first_ring_and_it_persists() {
        let dir = tempfile::tempdir().unwrap();
        let m =
            Membership::open(0, statics(false), dir.path(), 16, Duration::from_secs(1)).unwrap();
        assert_eq!(m.epoch(), 1);
        let next = m.next_ring(vec![0, 1, 2], [(2, "127.0.0.1:3".to_owned())].into(), 16);
        assert!(m.adopt(next.clone()).unwrap());
        assert!(
            !m.adopt(next).unwrap(),
            "the same epoch is not adopted twice"
        );
        drop(m);
        let m =
            Membership::open(0, statics(false), dir.path(), 16, Duration::from_secs(1)).unwrap();
        assert_eq!(m.epoch(), 2);
        assert_eq!(m.addr(2).as_deref(), Some("127.0.0.1:3"));
        assert_eq!(m.ring_state().unwrap().previous, vec![0, 1]);
    }

    #[test]
    fn a_joining_node_waits_for_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let m = Membership::open(0, statics(true), dir.path(), 16, Duration::from_secs(1)).unwrap();
        assert_eq!(m.epoch(), 0);
        assert!(m.rings().is_none());
    }

    #[test]
    fn dns_names_follow_the_statefulset_pattern() {
        let dir = tempfile::tempdir().unwrap();
        let source = PeerSource::Dns {
            pod_prefix: "demo-queues".to_owned(),
            service: "demo-queues-peers".to_owned(),
            port: 7080,
        };
        let m = Membership::open(1, source, dir.path(), 16, Duration::from_secs(1)).unwrap();
        assert_eq!(m.epoch(), 0);
        assert_eq!(
            m.addr(2).as_deref(),
            Some("demo-queues-2.demo-queues-peers:7080")
        );
    }

    #[test]
    fn liveness_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let m = Membership::open(0, statics(false), dir.path(), 16, Duration::ZERO).unwrap();
        assert!(m.alive(0));
        assert!(!m.alive(1));
        assert_eq!(m.acting_owner(&[1, 0]), Some(0));
    }
}
