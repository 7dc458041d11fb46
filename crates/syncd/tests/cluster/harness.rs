//! Starts, kills and restarts `syncd serve` child processes on loopback, and waits for conditions with bounds.
//!
//! Children are killed when the [`Cluster`] is dropped, so a failing test never leaks processes.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use syncd_client::Client;
use tempfile::TempDir;

/// Raft timing for tests: shorter than production, long enough for a loaded 2-core CI machine.
const HEARTBEAT_MS: u64 = 100;
const ELECTION_TIMEOUT_MS: u64 = 600;

/// How long any wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A cluster of `syncd` processes.
pub struct Cluster {
    dir: TempDir,
    peers: BTreeMap<u64, String>,
    children: Mutex<BTreeMap<u64, Child>>,
    extra_args: Vec<String>,
    roles: &'static str,
}

/// Picks free loopback ports below the kernel's ephemeral range (32768 and up on Linux), so that no outgoing
/// connection of a concurrently running test can take a port between its choice here and the node binding it.
/// Ports come from a process-wide counter, so concurrent tests in this binary never pick the same one.
fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 100) as u16 * 100;
    let mut ports = Vec::new();
    while ports.len() < n {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 2_700;
        let port = base + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

impl Cluster {
    /// Starts `n` lock nodes with ids 0..n.
    pub fn start(n: u64) -> Cluster {
        Self::start_with(n, &[])
    }

    /// Starts `n` lock nodes with extra `syncd serve` flags.
    pub fn start_with(n: u64, extra_args: &[&str]) -> Cluster {
        Self::start_roles(n, "lock", extra_args)
    }

    /// Starts `n` queue nodes (fast failure detection for tests) with extra flags.
    pub fn start_queues(n: u64, extra_args: &[&str]) -> Cluster {
        let mut args = vec![
            "--queue-ping-interval-ms",
            "100",
            "--queue-failure-timeout-ms",
            "1000",
        ];
        args.extend_from_slice(extra_args);
        Self::start_roles(n, "queue", &args)
    }

    /// Starts `n` cache nodes with test timings (fast pings and failure detection, 3 s leases) and extra flags.
    pub fn start_cache(n: u64, extra_args: &[&str]) -> Cluster {
        let mut args = vec![
            "--cache-ping-interval-ms",
            "100",
            "--cache-failure-timeout-ms",
            "1000",
            "--cache-lease-ms",
            "3000",
        ];
        args.extend_from_slice(extra_args);
        Self::start_roles(n, "cache", &args)
    }

    fn start_roles(n: u64, roles: &'static str, extra_args: &[&str]) -> Cluster {
        let ports = free_ports(n as usize);
        let peers = (0..n)
            .zip(ports)
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let mut cluster = Cluster {
            dir: tempfile::tempdir().expect("temp dir"),
            peers,
            children: Mutex::new(BTreeMap::new()),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            roles,
        };
        for id in 0..n {
            cluster.spawn(id);
        }
        cluster
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn spawn(&mut self, id: u64) {
        self.spawn_with(id, &[]);
    }

    fn spawn_with(&mut self, id: u64, more_args: &[&str]) {
        let peers = self
            .peers
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_syncd"))
            .arg("serve")
            .args(["--id", &id.to_string()])
            .args(["--listen", &self.peers[&id]])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--roles", self.roles, "--peers", &peers])
            .args(["--raft-heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .args([
                "--raft-election-timeout-ms",
                &ELECTION_TIMEOUT_MS.to_string(),
            ])
            .args(&self.extra_args)
            .args(more_args)
            .env(
                "RUST_LOG",
                std::env::var("SYNCD_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn syncd");
        self.children.get_mut().unwrap().insert(id, child);
    }

    /// Node ids, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.peers.keys().copied().collect()
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        self.children.lock().unwrap().keys().copied().collect()
    }

    /// Fails the test at once, with the node's log, when a node that should be running has exited.
    pub fn assert_alive(&self) {
        for (id, child) in self.children.lock().unwrap().iter_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "node {id} exited unexpectedly ({status}):\n{}",
                    tail(&self.log(*id), 40)
                );
            }
        }
    }

    /// A client for node `id`.
    pub fn client(&self, id: u64) -> Client {
        Client::new(format!("http://{}", self.peers[&id]))
    }

    /// Kills node `id` with SIGKILL: no shutdown code runs.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children.get_mut().unwrap().remove(&id) {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }

    /// Sends SIGTERM to node `id` and waits (bounded) for it to exit; returns whether it exited with status 0.
    pub fn terminate(&mut self, id: u64) -> bool {
        let Some(mut child) = self.children.get_mut().unwrap().remove(&id) else {
            return false;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status.success();
            }
            if started.elapsed() > PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not exit within {PATIENCE:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new node (the next id) that knows every member so far; it joins only once added to raft (or,
    /// for queue nodes, to the ring).
    pub fn add_node(&mut self) -> u64 {
        let id = self.peers.keys().max().map_or(0, |m| m + 1);
        let port = free_ports(1)[0];
        self.peers.insert(id, format!("127.0.0.1:{port}"));
        if self.roles.contains("queue") {
            self.spawn_with(id, &["--queue-join"]);
        } else {
            self.spawn(id);
        }
        id
    }

    /// The address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.peers[&id].clone()
    }

    /// Deletes the data directory of node `id` (which must be stopped): a lost disk.
    pub fn wipe(&mut self, id: u64) {
        assert!(!self.running().contains(&id), "node {id} is running");
        std::fs::remove_dir_all(self.data_dir(id)).expect("remove the data directory");
    }

    /// Starts node `id` again on its old address and data directory.
    pub fn restart(&mut self, id: u64) {
        assert!(!self.running().contains(&id), "node {id} is running");
        self.spawn(id);
    }

    /// The server log of node `id`, for failure messages.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log"))).unwrap_or_default()
    }

    /// Waits until every running node names the same leader, which is itself running, and returns it.
    pub async fn leader(&self) -> u64 {
        eventually("a leader every running node agrees on", || async {
            self.assert_alive();
            let running = self.running();
            let mut seen = None;
            for id in running.iter().copied() {
                let status = self.client(id).status().await.ok()?;
                let leader = status.locks?.leader?;
                if seen.is_some_and(|s| s != leader) || !running.contains(&leader) {
                    return None;
                }
                seen = Some(leader);
            }
            seen
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn applied_at_least(&self, id: u64, index: u64) {
        eventually(&format!("node {id} to apply index {index}"), || async {
            self.assert_alive();
            let status = self.client(id).status().await.ok()?;
            (status.locks?.applied_index? >= index).then_some(())
        })
        .await
    }

    /// The applied index of node `id`.
    pub async fn applied(&self, id: u64) -> u64 {
        let status = self.client(id).status().await.expect("status");
        status.locks.and_then(|l| l.applied_index).unwrap_or(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let children = std::mem::take(self.children.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (_, mut child) in children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in self.ids() {
                eprintln!("----- log of node {id} -----\n{}", tail(&self.log(id), 400));
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `check` until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
