//! Who the cache peers are: addresses (static `--peers` or the headless Service's DNS records), liveness from
//! pings, and the membership view (the live peers and their incarnations) whose ring places each key's home.
//!
//! Unlike the queue ring, the cache ring follows liveness: a peer that stops answering pings for the failure
//! timeout leaves the view, and a peer that answers joins it. Every peer computes its view on its own; requests
//! carry the view's fingerprint and a home refuses a request made under another view, so a key is served only
//! where requester and home agree on its home.
//!
//! Grace: a node serves a key as its home only once it has been that key's home, in every view it held, for the
//! grace period (the longest lease a previous home could have granted, plus the failure timeout). A new or
//! restarted home therefore never answers while copies granted by a previous home could still be served.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use syncd_ring::Ring;
use xxhash_rust::xxh3::xxh3_64;

use crate::store::HomeRef;
use crate::wire::Pong;

/// How peers are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSource {
    /// `--peers`: every member's address.
    Static(BTreeMap<u64, String>),
    /// `--discovery dns:<service>:<port>`: the headless Service's A/AAAA records, re-resolved periodically; each
    /// address is pinged to learn the node id behind it.
    Dns {
        /// The headless Service's DNS name.
        service: String,
        /// The peers' port.
        port: u16,
    },
}

/// One membership view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Local sequence number of this view (1 for the first).
    pub epoch: u64,
    /// Fingerprint of the members and their incarnations; the same set gives the same fingerprint everywhere.
    pub id: u64,
    /// Live members: id -> (address, incarnation). This node's address may be empty (it never dials itself).
    pub members: BTreeMap<u64, (String, u64)>,
    /// The ring over the members.
    pub ring: Ring,
}

impl View {
    fn new(epoch: u64, members: BTreeMap<u64, (String, u64)>, vnodes: u32) -> View {
        let mut fingerprint = Vec::with_capacity(members.len() * 16);
        for (id, (_, inc)) in &members {
            fingerprint.extend_from_slice(&id.to_be_bytes());
            fingerprint.extend_from_slice(&inc.to_be_bytes());
        }
        View {
            epoch,
            id: xxh3_64(&fingerprint),
            ring: Ring::new(members.keys().copied(), vnodes, epoch),
            members,
        }
    }

    /// The home of `key` in this view.
    pub fn home_of(&self, key: &[u8]) -> Option<HomeRef> {
        let id = self.ring.owner_of_bytes(key)?;
        let (_, inc) = self.members.get(&id)?;
        Some(HomeRef { id, inc: *inc })
    }

    /// The address of member `id`.
    pub fn addr(&self, id: u64) -> Option<&str> {
        self.members.get(&id).map(|(addr, _)| addr.as_str())
    }
}

#[derive(Debug)]
struct PeerInfo {
    addr: String,
    inc: u64,
    last_ok: Instant,
}

#[derive(Debug)]
struct State {
    /// Addresses to ping (static list, or the last DNS answer).
    candidates: Vec<String>,
    /// Peers that answered a ping, by id (this node excluded).
    peers: BTreeMap<u64, PeerInfo>,
    view: Arc<View>,
    /// Views adopted within the grace period (and the one current when it began), oldest first.
    history: VecDeque<(Instant, Arc<View>)>,
}

/// The membership as this node sees it.
#[derive(Debug)]
pub struct Membership {
    me: u64,
    inc: u64,
    source: PeerSource,
    vnodes: u32,
    failure_timeout: Duration,
    grace: Duration,
    started: Instant,
    state: RwLock<State>,
}

impl Membership {
    /// Starts with a view of this node alone.
    pub fn new(
        me: u64,
        inc: u64,
        source: PeerSource,
        vnodes: u32,
        failure_timeout: Duration,
        grace: Duration,
        now: Instant,
    ) -> Membership {
        let candidates = match &source {
            PeerSource::Static(peers) => peers
                .iter()
                .filter(|(id, _)| **id != me)
                .map(|(_, addr)| addr.clone())
                .collect(),
            PeerSource::Dns { .. } => Vec::new(),
        };
        let members = BTreeMap::from([(me, (String::new(), inc))]);
        let view = Arc::new(View::new(1, members, vnodes));
        Membership {
            me,
            inc,
            source,
            vnodes,
            failure_timeout,
            grace,
            started: now,
            state: RwLock::new(State {
                candidates,
                peers: BTreeMap::new(),
                view: view.clone(),
                history: VecDeque::from([(now, view)]),
            }),
        }
    }

    /// This node's id.
    pub fn me(&self) -> u64 {
        self.me
    }

    /// This node's incarnation.
    pub fn inc(&self) -> u64 {
        self.inc
    }

    /// How peers are found.
    pub fn source(&self) -> &PeerSource {
        &self.source
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.read().view.clone()
    }

    /// The addresses to ping.
    pub fn candidates(&self) -> Vec<String> {
        self.read().candidates.clone()
    }

    /// Replaces the addresses to ping (a fresh DNS answer).
    pub fn set_candidates(&self, mut addrs: Vec<String>) {
        addrs.sort();
        addrs.dedup();
        self.write().candidates = addrs;
    }

    /// Whether the grace period since start has passed (the node is ready to serve as a home).
    pub fn warmed_up(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.grace
    }

    /// The last known address of peer `id`, live or not (a home keeps probing a silent holder until its lease
    /// runs out).
    pub fn addr_of(&self, id: u64) -> Option<String> {
        self.read().peers.get(&id).map(|p| p.addr.clone())
    }

    /// Records a ping answer from `addr`.
    pub fn record_pong(&self, addr: &str, pong: Pong, now: Instant) {
        if pong.id == self.me {
            return;
        }
        let mut state = self.write();
        let peer = state.peers.entry(pong.id).or_insert_with(|| PeerInfo {
            addr: addr.to_owned(),
            inc: pong.inc,
            last_ok: now,
        });
        peer.addr = addr.to_owned();
        peer.inc = pong.inc;
        peer.last_ok = now;
    }

    /// Recomputes the view from liveness; returns the new view when it changed.
    pub fn refresh(&self, now: Instant) -> Option<Arc<View>> {
        let mut state = self.write();
        let mut members = BTreeMap::from([(self.me, (String::new(), self.inc))]);
        for (id, peer) in &state.peers {
            if now.saturating_duration_since(peer.last_ok) < self.failure_timeout {
                members.insert(*id, (peer.addr.clone(), peer.inc));
            }
        }
        // Forget peers silent for long: their addresses may belong to someone else by now.
        let forget_after = self.failure_timeout * 10;
        state
            .peers
            .retain(|_, p| now.saturating_duration_since(p.last_ok) < forget_after);
        if members == state.view.members {
            return None;
        }
        let view = Arc::new(View::new(state.view.epoch + 1, members, self.vnodes));
        state.view = view.clone();
        state.history.push_back((now, view.clone()));
        // Keep the views adopted within the grace period and the one current when it began.
        while state.history.len() > 1
            && state
                .history
                .get(1)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.grace)
        {
            state.history.pop_front();
        }
        Some(view)
    }

    /// Whether this node may serve `key` as its home now: it is the home in the current view and has been in
    /// every view for the whole grace period.
    pub fn servable(&self, key: &[u8], now: Instant) -> bool {
        if !self.warmed_up(now) {
            return false;
        }
        let state = self.read();
        for (at, view) in state.history.iter().rev() {
            if view.ring.owner_of_bytes(key) != Some(self.me) {
                return false;
            }
            if now.saturating_duration_since(*at) >= self.grace {
                break;
            }
        }
        true
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resolves the headless Service to `ip:port` addresses (A and AAAA records through the system resolver, which
/// applies the pod's DNS search path).
pub async fn resolve(service: &str, port: u16) -> std::io::Result<Vec<String>> {
    let addrs = tokio::net::lookup_host((service, port)).await?;
    Ok(addrs.map(|a| a.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(now: Instant) -> Membership {
        Membership::new(
            1,
            100,
            PeerSource::Static(BTreeMap::from([
                (1, "a:1".to_owned()),
                (2, "b:1".to_owned()),
            ])),
            64,
            Duration::from_secs(1),
            Duration::from_secs(3),
            now,
        )
    }

    #[test]
    fn peers_join_on_a_pong_and_leave_after_the_failure_timeout() {
        let t0 = Instant::now();
        let m = membership(t0);
        assert_eq!(m.candidates(), vec!["b:1".to_owned()]);
        m.record_pong(
            "b:1",
            Pong {
                id: 2,
                inc: 7,
                view: 0,
            },
            t0,
        );
        let view = m.refresh(t0).unwrap();
        assert_eq!(view.members.len(), 2);
        assert_eq!(view.epoch, 2);
        assert!(m.refresh(t0).is_none(), "no change, no new view");
        let gone = m.refresh(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(gone.members.keys().copied().collect::<Vec<_>>(), vec![1]);
        // The same set gives the same fingerprint.
        assert_eq!(gone.id, View::new(9, gone.members.clone(), 64).id);
    }

    #[test]
    fn a_home_waits_out_the_grace_period_for_keys_it_gained() {
        let t0 = Instant::now();
        let m = membership(t0);
        let key = b"some-key";
        assert!(
            !m.servable(key, t0),
            "nothing is served during the start-up grace"
        );
        assert!(
            m.servable(key, t0 + Duration::from_secs(3)),
            "alone, it homes every key"
        );
        // Peer 2 joins at t=3 and leaves at t=5: keys that were 2's while it was here wait until t=8.
        m.record_pong(
            "b:1",
            Pong {
                id: 2,
                inc: 7,
                view: 0,
            },
            t0 + Duration::from_secs(3),
        );
        let with_two = m.refresh(t0 + Duration::from_secs(3)).unwrap();
        let moved: Vec<u8> = (0..=255u8)
            .find(|i| with_two.ring.owner_of_bytes(&[*i]) == Some(2))
            .into_iter()
            .collect();
        let moved = moved.first().copied().unwrap();
        m.refresh(t0 + Duration::from_secs(5)).unwrap();
        assert!(!m.servable(&[moved], t0 + Duration::from_secs(7)));
        assert!(m.servable(&[moved], t0 + Duration::from_secs(8)));
    }
}
