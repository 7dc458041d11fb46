//! A fault-injecting TCP proxy mesh between nodes on 127.0.0.1.
//!
//! For every ordered pair of nodes `(from, to)` the [`Mesh`] listens on a free loopback port and forwards each
//! accepted connection to the real address of `to`. Node `from` is started with
//! `SYNCD_FAULT_DIAL_MAP=`[`Mesh::dial_map`]`(from)`, so every connection it opens to a peer goes through the
//! link `from -> to`. A link carries the connections its `from` node initiated, in both byte directions.
//!
//! A cut link is a black hole, like an iptables `DROP` rule: bytes stop flowing both ways on every existing and
//! every new connection of the link (new connections are accepted, and the upstream is not even dialled, but
//! nothing is forwarded). Sockets are never closed by a cut, so the nodes see timeouts, not resets. When the link
//! heals, stalled connections resume where they stopped, as TCP would after retransmission.
//!
//! Each link's state is one `tokio::sync::watch` value; the copy loops check it (a cheap borrow when the link is
//! open) before every read and every write, so forwarding costs one task per direction and no polling.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Size of one forwarded chunk.
const CHUNK: usize = 16 * 1024;

/// What the mesh decided for one directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkState {
    /// Whether bytes flow.
    open: bool,
    /// Added before each chunk is written.
    delay: Duration,
}

/// One directed link: its listener's address, its state, and the task accepting its connections.
struct Link {
    proxy: SocketAddr,
    state: watch::Sender<LinkState>,
    accept: JoinHandle<()>,
}

/// The proxies between every ordered pair of nodes. Dropping it stops every listener and closes every proxied
/// connection.
pub struct Mesh {
    addrs: BTreeMap<u64, String>,
    links: BTreeMap<(u64, u64), Link>,
}

impl Mesh {
    /// Starts one proxy per ordered pair `(from, to)` of the nodes in `addrs` (node id to its real `host:port`),
    /// all links open. Must run inside a tokio runtime.
    pub async fn start(addrs: &BTreeMap<u64, String>) -> anyhow::Result<Mesh> {
        let mut links = BTreeMap::new();
        for &from in addrs.keys() {
            for (&to, target) in addrs {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .with_context(|| format!("bind the proxy of link {from}->{to}"))?;
                let proxy = listener.local_addr()?;
                let (state, link) = watch::channel(LinkState {
                    open: true,
                    delay: Duration::ZERO,
                });
                let accept = tokio::spawn(accept_loop(listener, target.clone(), link));
                links.insert(
                    (from, to),
                    Link {
                        proxy,
                        state,
                        accept,
                    },
                );
            }
        }
        Ok(Mesh {
            addrs: addrs.clone(),
            links,
        })
    }

    /// The node ids of the mesh.
    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    /// The address node `from` must dial to reach node `to` through the link `from -> to`.
    pub fn proxy_addr(&self, from: u64, to: u64) -> Option<SocketAddr> {
        self.links.get(&(from, to)).map(|link| link.proxy)
    }

    /// The value of `SYNCD_FAULT_DIAL_MAP` for node `from`: `<real addr of to>=<proxy addr of from->to>` for every
    /// other node `to`, comma-separated. Empty for an unknown `from`.
    pub fn dial_map(&self, from: u64) -> String {
        self.addrs
            .iter()
            .filter_map(|(to, real)| {
                let proxy = self.proxy_addr(from, *to)?;
                Some(format!("{real}={proxy}"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cuts the single directed link `from -> to`: connections `from` opened to `to` stall both ways, while
    /// connections `to` opened to `from` keep flowing (an asymmetric partition). No-op for an unknown pair.
    pub fn cut_link(&self, from: u64, to: u64) {
        self.set_open(from, to, false);
    }

    /// Heals the single directed link `from -> to`. No-op for an unknown pair.
    pub fn heal_link(&self, from: u64, to: u64) {
        self.set_open(from, to, true);
    }

    /// Cuts `a` and `b` apart: both links `a -> b` and `b -> a`.
    pub fn cut(&self, a: u64, b: u64) {
        self.cut_link(a, b);
        self.cut_link(b, a);
    }

    /// Heals both links between `a` and `b`.
    pub fn heal(&self, a: u64, b: u64) {
        self.heal_link(a, b);
        self.heal_link(b, a);
    }

    /// Cuts `a` from every other node.
    pub fn isolate(&self, a: u64) {
        for b in self.ids() {
            if b != a {
                self.cut(a, b);
            }
        }
    }

    /// Cuts every pair of nodes that are in different groups; links inside a group, and links of nodes in no
    /// group, are left as they are.
    pub fn partition(&self, groups: &[&[u64]]) {
        for (i, left) in groups.iter().enumerate() {
            for right in &groups[i + 1..] {
                for &a in left.iter() {
                    for &b in right.iter() {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    /// Heals every link (delays are kept).
    pub fn heal_all(&self) {
        for link in self.links.values() {
            link.state.send_if_modified(|state| {
                let changed = !state.open;
                state.open = true;
                changed
            });
        }
    }

    /// Whether the directed link `from -> to` is cut (`false` for an unknown pair).
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.links
            .get(&(from, to))
            .is_some_and(|link| !link.state.borrow().open)
    }

    /// Adds `delay` before every chunk forwarded on both links between `a` and `b`, in both byte directions
    /// (`Duration::ZERO` removes it). Chunks of one direction queue behind each other, so the delay also caps the
    /// throughput of a connection; meant for latency, not bandwidth, experiments.
    pub fn set_delay(&self, a: u64, b: u64, delay: Duration) {
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get(&key) {
                link.state.send_if_modified(|state| {
                    let changed = state.delay != delay;
                    state.delay = delay;
                    changed
                });
            }
        }
    }

    fn set_open(&self, from: u64, to: u64, open: bool) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.state.send_if_modified(|state| {
                let changed = state.open != open;
                state.open = open;
                changed
            });
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // Aborting an accept task drops its `JoinSet`, which aborts every connection task it spawned.
        for link in self.links.values() {
            link.accept.abort();
        }
    }
}

/// Accepts the link's connections until aborted; each connection runs in the loop's own `JoinSet`, which also
/// reaps the finished ones.
async fn accept_loop(listener: TcpListener, target: String, link: watch::Receiver<LinkState>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(forward(client, target.clone(), link.clone()));
                }
                // Out of file descriptors, or a connection reset before it was accepted: keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Forwards one accepted connection to `target` until either side closes or fails.
async fn forward(client: TcpStream, target: String, mut link: watch::Receiver<LinkState>) {
    // A cut link drops the SYN: the upstream sees nothing until the link heals.
    if open_delay(&mut link).await.is_none() {
        return;
    }
    // An unreachable upstream (a killed node) closes the client's connection: the nearest thing to a refusal.
    let Ok(upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // Either direction failing ends both (dropping the halves closes the sockets); a clean end of one direction
    // is passed on as a half-close and the other direction carries on.
    let _ = tokio::try_join!(
        pipe(client_read, upstream_write, link.clone()),
        pipe(upstream_read, client_write, link),
    );
}

/// Copies one direction of a connection, chunk by chunk, waiting for the link to be open before each read and
/// each write (so a cut holds back both the data and the end-of-stream).
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut link: watch::Receiver<LinkState>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if open_delay(&mut link).await.is_none() {
            return Ok(());
        }
        let n = from.read(&mut buf).await?;
        let Some(delay) = open_delay(&mut link).await else {
            return Ok(());
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
            // The link may have been cut during the delay.
            if open_delay(&mut link).await.is_none() {
                return Ok(());
            }
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Waits until the link is open and returns its delay; `None` once the mesh is gone.
async fn open_delay(link: &mut watch::Receiver<LinkState>) -> Option<Duration> {
    let state = link.wait_for(|state| state.open).await.ok()?;
    Some(state.delay)
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::Instant;
    use tokio::time::timeout;

    /// A loopback echo server; returns its address. It lives as long as the test's runtime.
    async fn echo_server() -> String {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn mesh_of(n: u64) -> Mesh {
        let mut addrs = BTreeMap::new();
        for id in 0..n {
            addrs.insert(id, echo_server().await);
        }
        Mesh::start(&addrs).await.unwrap()
    }

    async fn connect(mesh: &Mesh, from: u64, to: u64) -> TcpStream {
        TcpStream::connect(mesh.proxy_addr(from, to).unwrap())
            .await
            .unwrap()
    }

    /// Sends `msg` and expects it echoed within `within`; returns whether it was.
    async fn echoes_within(stream: &mut TcpStream, msg: &[u8], within: Duration) -> bool {
        stream.write_all(msg).await.unwrap();
        read_exact_within(stream, msg, within).await
    }

    async fn read_exact_within(stream: &mut TcpStream, expected: &[u8], within: Duration) -> bool {
        let mut buf = vec![0u8; expected.len()];
        match timeout(within, stream.read_exact(&mut buf)).await {
            Ok(read) => {
                read.unwrap();
                assert_eq!(buf, expected);
                true
            }
            Err(_) => false,
        }
    }

    const PATIENCE: Duration = Duration::from_secs(5);
    const SILENCE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn bytes_flow_through_every_link() {
        let mesh = mesh_of(3).await;
        for from in 0..3 {
            for to in 0..3 {
                if from == to {
                    assert!(mesh.proxy_addr(from, to).is_none());
                    continue;
                }
                let mut stream = connect(&mesh, from, to).await;
                assert!(echoes_within(&mut stream, b"hello", PATIENCE).await);
            }
        }
    }

    #[tokio::test]
    async fn dial_map_names_every_peer_through_its_proxy() {
        let mesh = mesh_of(3).await;
        let map = mesh.dial_map(1);
        let entries: Vec<&str> = map.split(',').collect();
        assert_eq!(entries.len(), 2);
        for (entry, to) in entries.iter().zip([0, 2]) {
            let (real, proxy) = entry.split_once('=').unwrap();
            assert_eq!(real, mesh.addrs[&to]);
            assert_eq!(proxy, mesh.proxy_addr(1, to).unwrap().to_string());
        }
        assert_eq!(mesh.dial_map(7), "");
    }

    #[tokio::test]
    async fn many_small_messages_are_fast() {
        let mesh = mesh_of(2).await;
        let mut stream = connect(&mesh, 0, 1).await;
        stream.set_nodelay(true).unwrap();
        let started = Instant::now();
        for i in 0..2_000u32 {
            assert!(echoes_within(&mut stream, &i.to_be_bytes(), PATIENCE).await);
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "2000 round trips took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_cut_stalls_both_directions_and_a_heal_resumes_the_same_connection() {
        let mesh = mesh_of(2).await;
        let mut stream = connect(&mesh, 0, 1).await;
        assert!(echoes_within(&mut stream, b"before", PATIENCE).await);

        mesh.cut(0, 1);
        assert!(mesh.is_cut(0, 1) && mesh.is_cut(1, 0));
        assert!(!echoes_within(&mut stream, b"during", SILENCE).await);

        mesh.heal(0, 1);
        assert!(!mesh.is_cut(0, 1));
        assert!(read_exact_within(&mut stream, b"during", PATIENCE).await);
        assert!(echoes_within(&mut stream, b"after", PATIENCE).await);
    }

    #[tokio::test]
    async fn a_cut_holds_back_replies_already_in_flight() {
        // A server that answers only when told to: the reply is produced while the link is cut.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let slow = listener.local_addr().unwrap().to_string();
        let (received_tx, received) = tokio::sync::oneshot::channel();
        let (answer, answer_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            let _ = received_tx.send(());
            let _ = answer_rx.await;
            stream.write_all(&buf).await.unwrap();
            // Keep the connection open until the test ends.
            std::future::pending::<()>().await;
        });
        let addrs = BTreeMap::from([(0, echo_server().await), (1, slow)]);
        let mesh = Mesh::start(&addrs).await.unwrap();
        let mut stream = connect(&mesh, 0, 1).await;
        stream.write_all(b"ping").await.unwrap();
        timeout(PATIENCE, received).await.unwrap().unwrap();
        mesh.cut(0, 1);
        answer.send(()).unwrap();
        assert!(!read_exact_within(&mut stream, b"ping", Duration::from_millis(500)).await);
        mesh.heal_all();
        assert!(read_exact_within(&mut stream, b"ping", PATIENCE).await);
    }

    #[tokio::test]
    async fn new_connections_on_a_cut_link_are_accepted_but_black_holed() {
        let mesh = mesh_of(2).await;
        mesh.cut(0, 1);
        let mut stream = timeout(PATIENCE, connect(&mesh, 0, 1)).await.unwrap();
        assert!(!echoes_within(&mut stream, b"hello", SILENCE).await);
        mesh.heal_all();
        assert!(read_exact_within(&mut stream, b"hello", PATIENCE).await);
    }

    #[tokio::test]
    async fn a_one_way_cut_leaves_the_reverse_link_alone() {
        let mesh = mesh_of(2).await;
        let mut forward = connect(&mesh, 0, 1).await;
        let mut backward = connect(&mesh, 1, 0).await;
        mesh.cut_link(0, 1);
        assert!(!echoes_within(&mut forward, b"x", SILENCE).await);
        assert!(echoes_within(&mut backward, b"y", PATIENCE).await);
        mesh.heal_link(0, 1);
        assert!(read_exact_within(&mut forward, b"x", PATIENCE).await);
    }

    #[tokio::test]
    async fn isolate_cuts_one_node_from_all_and_leaves_the_rest() {
        let mesh = mesh_of(3).await;
        let mut streams = BTreeMap::new();
        for from in 0..3 {
            for to in 0..3 {
                if from != to {
                    streams.insert((from, to), connect(&mesh, from, to).await);
                }
            }
        }
        mesh.isolate(0);
        for ((from, to), stream) in streams.iter_mut() {
            let involved = *from == 0 || *to == 0;
            let within = if involved { SILENCE } else { PATIENCE };
            assert_eq!(
                echoes_within(stream, b"ping", within).await,
                !involved,
                "link {from}->{to}"
            );
        }
        mesh.heal_all();
        for ((from, to), stream) in streams.iter_mut() {
            if *from == 0 || *to == 0 {
                assert!(read_exact_within(stream, b"ping", PATIENCE).await);
            }
            assert!(echoes_within(stream, b"pong", PATIENCE).await);
        }
    }

    #[tokio::test]
    async fn partition_cuts_across_groups_only() {
        let mesh = mesh_of(3).await;
        mesh.partition(&[&[0, 1], &[2]]);
        assert!(!mesh.is_cut(0, 1) && !mesh.is_cut(1, 0));
        for other in [0, 1] {
            assert!(mesh.is_cut(other, 2) && mesh.is_cut(2, other));
        }
    }

    #[tokio::test]
    async fn delay_slows_each_chunk() {
        let mesh = mesh_of(2).await;
        let mut stream = connect(&mesh, 0, 1).await;
        assert!(echoes_within(&mut stream, b"warm", PATIENCE).await);
        mesh.set_delay(0, 1, Duration::from_millis(100));
        let started = Instant::now();
        assert!(echoes_within(&mut stream, b"slow", PATIENCE).await);
        // One delay on the way there, one on the way back.
        assert!(started.elapsed() >= Duration::from_millis(200));
        mesh.set_delay(0, 1, Duration::ZERO);
        assert!(echoes_within(&mut stream, b"fast", PATIENCE).await);
    }

    #[tokio::test]
    async fn an_upstream_close_reaches_the_client() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let closing = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                drop(stream);
            }
        });
        let addrs = BTreeMap::from([(0, echo_server().await), (1, closing)]);
        let mesh = Mesh::start(&addrs).await.unwrap();
        let mut stream = connect(&mesh, 0, 1).await;
        let mut buf = [0u8; 1];
        let read = timeout(PATIENCE, stream.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)));
    }

    #[tokio::test]
    async fn drop_closes_listeners_and_connections() {
        let mesh = mesh_of(2).await;
        let proxy = mesh.proxy_addr(0, 1).unwrap();
        let mut stream = connect(&mesh, 0, 1).await;
        assert!(echoes_within(&mut stream, b"hello", PATIENCE).await);
        mesh.cut(0, 1);
        drop(mesh);
        let mut buf = [0u8; 1];
        let read = timeout(PATIENCE, stream.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // The listener is gone too (give the aborted task a moment to be dropped).
        let refused = async {
            loop {
                if TcpStream::connect(proxy).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        timeout(PATIENCE, refused).await.unwrap();
    }
}
