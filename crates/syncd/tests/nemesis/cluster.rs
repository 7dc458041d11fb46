//! A lock or queue cluster wired for faults: every peer link goes through the proxy mesh, every node's wall clock and
//! fsync can be bent, and the processes can be killed, stopped and restarted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use syncd_nemesis::faults::{Clock, SlowDisk, cc_available, faketime_available, merge_envs};
use syncd_nemesis::process::{Procs, free_ports, tail};
use syncd_nemesis::proxy::Mesh;
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

/// Raft timing for the suite: the production ratio, scaled down so a scenario sees many elections.
const HEARTBEAT_MS: u64 = 100;
const ELECTION_TIMEOUT_MS: u64 = 600;

/// Serialises the scenarios of this binary (see the crate doc). Each test has its own runtime, so the lock is
/// tokio's, which works across runtimes; a failed scenario does not poison it.
pub async fn exclusive() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

/// How long the scenarios run: the CI default, or `SYNCD_NEMESIS_SOAK` seconds.
pub fn duration(ci: Duration) -> Duration {
    std::env::var("SYNCD_NEMESIS_SOAK")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(ci, Duration::from_secs)
}

/// A small deterministic generator; the seed is printed so a failing schedule can be replayed.
pub struct Rng(pub u64);

impl Rng {
    /// From `SYNCD_NEMESIS_SEED`, else from the clock.
    pub fn from_env(what: &str) -> Rng {
        let seed = std::env::var("SYNCD_NEMESIS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{what}: SYNCD_NEMESIS_SEED={seed}");
        Rng(seed | 1)
    }

    /// The next number (xorshift64*).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// True with probability `p` (0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) < (p * 10_000.0) as u64
    }
}

/// Three (or more) lock nodes whose peer links run through a fault-injecting proxy.
/// Which role the cluster's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// `--roles lock`.
    Locks,
    /// `--roles queue` with two copies of each shard.
    Queues,
}

pub struct NemesisCluster {
    roles: Roles,
    /// Nodes `0..initial` form the cluster; later ids are spare addresses for scaling (queue nodes that join).
    initial: u64,
    dir: TempDir,
    addrs: BTreeMap<u64, String>,
    /// The peer links.
    pub mesh: Mesh,
    /// The processes.
    pub procs: Procs,
    clocks: BTreeMap<u64, Clock>,
    disks: BTreeMap<u64, SlowDisk>,
}

impl NemesisCluster {
    /// Starts `n` lock nodes. Clock and disk faults are wired in when their tools are present.
    pub async fn start(n: u64) -> NemesisCluster {
        Self::start_with(n, Roles::Locks).await
    }

    /// Starts `n` nodes of `roles`.
    pub async fn start_with(n: u64, roles: Roles) -> NemesisCluster {
        Self::start_scalable(n, n, roles).await
    }

    /// Starts the first `initial` of `n` nodes of `roles`; the others have addresses and proxy links and are started
    /// with [`Self::restart`] later, joining an existing queue ring (`--queue-join`).
    pub async fn start_scalable(n: u64, initial: u64, roles: Roles) -> NemesisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let addrs: BTreeMap<u64, String> = (0..n)
            .zip(free_ports(n as usize))
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let mesh = Mesh::start(&addrs).await.expect("proxy mesh");
        let mut clocks = BTreeMap::new();
        let mut disks = BTreeMap::new();
        for id in addrs.keys().copied() {
            if faketime_available() {
                clocks.insert(id, Clock::new(dir.path(), id).expect("clock file"));
            }
            if cc_available() {
                disks.insert(id, SlowDisk::new(dir.path(), id).expect("slow-disk shim"));
            }
        }
        let cluster = NemesisCluster {
            roles,
            initial,
            dir,
            addrs,
            mesh,
            procs: Procs::new(),
            clocks,
            disks,
        };
        for id in cluster.initial_ids() {
            cluster.spawn(id);
        }
        cluster
    }

    /// The nodes the cluster started with.
    pub fn initial_ids(&self) -> Vec<u64> {
        (0..self.initial).collect()
    }

    /// Whether wall-clock steps can be injected (libfaketime is installed).
    pub fn has_clock_faults(&self) -> bool {
        !self.clocks.is_empty()
    }

    /// Whether slow fsync can be injected (a C compiler built the shim).
    pub fn has_disk_faults(&self) -> bool {
        !self.disks.is_empty()
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: u64) -> &str {
        &self.addrs[&id]
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    fn spawn(&self, id: u64) {
        // A spare node knows everyone; the initial ones know only each other (a joiner is added by a ring change).
        let joins = id >= self.initial;
        let peers = self
            .addrs
            .iter()
            .filter(|(peer, _)| joins || **peer < self.initial)
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut args = vec![
            "serve".to_owned(),
            "--id".to_owned(),
            id.to_string(),
            "--listen".to_owned(),
            self.addrs[&id].clone(),
            "--data-dir".to_owned(),
            self.data_dir(id).display().to_string(),
            "--peers".to_owned(),
            peers,
            "--raft-heartbeat-ms".to_owned(),
            HEARTBEAT_MS.to_string(),
            "--raft-election-timeout-ms".to_owned(),
            ELECTION_TIMEOUT_MS.to_string(),
            // Snapshots (and their installs on lagging nodes) happen during the scenarios too.
            "--snapshot-after-entries".to_owned(),
            "500".to_owned(),
        ];
        match self.roles {
            Roles::Locks => args.extend(["--roles".to_owned(), "lock".to_owned()]),
            Roles::Queues => args.extend(
                [
                    "--roles",
                    "queue",
                    "--replication-factor",
                    "2",
                    "--queue-ping-interval-ms",
                    "100",
                    "--queue-failure-timeout-ms",
                    "1000",
                ]
                .map(str::to_owned),
            ),
        }
        if joins && self.roles == Roles::Queues {
            args.push("--queue-join".to_owned());
        }
        let mut envs = vec![
            ("RUST_LOG".to_owned(), "info,openraft=warn".to_owned()),
            ("SYNCD_FAULT_DIAL_MAP".to_owned(), self.mesh.dial_map(id)),
        ];
        let mut preloads = Vec::new();
        if let Some(clock) = self.clocks.get(&id) {
            preloads.push(clock.env());
        }
        if let Some(disk) = self.disks.get(&id) {
            preloads.push(disk.env());
        }
        envs.extend(merge_envs(preloads));
        self.procs
            .spawn(
                id,
                env!("CARGO_BIN_EXE_syncd"),
                args,
                &envs,
                &self.log_path(id),
            )
            .expect("spawn syncd");
    }

    /// SIGKILL node `id`.
    pub fn kill(&self, id: u64) {
        self.procs.kill(id).expect("SIGKILL");
    }

    /// Starts node `id` again from its data directory.
    pub fn restart(&self, id: u64) {
        self.spawn(id);
    }

    /// SIGSTOP node `id`.
    pub fn stop(&self, id: u64) {
        self.procs.stop(id).expect("SIGSTOP");
    }

    /// SIGCONT node `id`.
    pub fn cont(&self, id: u64) {
        self.procs.cont(id).expect("SIGCONT");
    }

    /// Steps node `id`'s wall clock to `offset_secs` from real time (monotonic time is untouched).
    pub fn step_clock(&self, id: u64, offset_secs: f64) {
        if let Some(clock) = self.clocks.get(&id) {
            clock.step(offset_secs).expect("step the clock");
        }
    }

    /// Makes every fsync of node `id` take `delay` longer.
    pub fn slow_disk(&self, id: u64, delay: Duration) {
        if let Some(disk) = self.disks.get(&id) {
            disk.set_delay(delay).expect("set the fsync delay");
        }
    }

    /// Fails with the node's log when a node that should run has died.
    pub fn assert_alive(&self) {
        if let Err(e) = self.procs.assert_alive() {
            panic!("{e:#}");
        }
    }

    /// The leader every running node that answers agrees on, waiting up to `patience`.
    pub async fn leader(&self, patience: Duration) -> Option<u64> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .ok()?;
        let until = Instant::now() + patience;
        while Instant::now() < until {
            let mut seen = None;
            let mut agreed = true;
            for id in self
                .ids()
                .into_iter()
                .filter(|id| self.procs.is_running(*id))
            {
                let leader = async {
                    let status: serde_json::Value = http
                        .get(format!("http://{}/v1/status", self.addr(id)))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    status["locks"]["leader"].as_u64()
                }
                .await;
                match (leader, seen) {
                    (None, _) => agreed = false,
                    (Some(l), Some(s)) if l != s => agreed = false,
                    (Some(l), _) => seen = Some(l),
                }
            }
            if agreed && seen.is_some() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Every node's log tail, for a failure message.
    pub fn logs(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| {
                let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
                format!("----- node {id} -----\n{}", tail(&log, 60))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where a history dump of a failed scenario goes (kept: the directory is leaked on failure).
    pub fn keep_dir(self) -> PathBuf {
        self.dir.keep()
    }
}
