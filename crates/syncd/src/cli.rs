//! Command-line arguments. Every flag can also come from a `SYNCD_*` environment variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `syncd`: the Syncd data-plane daemon.
#[derive(Debug, Parser)]
#[command(
    name = "syncd",
    version,
    about = "Syncd: locks, queues and a coherent cache for Kubernetes"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        env = "SYNCD_LOG_FORMAT",
        value_enum,
        default_value = "human",
        global = true
    )]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node.
    Serve(ServeArgs),
    /// Run a whole cluster on loopback in this process, every node with every role.
    Local(LocalArgs),
}

/// The roles a node can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Role {
    /// The replicated lock service.
    Lock,
    /// Durable, replicated work queues.
    Queue,
    /// The coherent cache (not in this version yet).
    Cache,
}

impl Role {
    /// The role's name in `/v1/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lock => "lock",
            Role::Queue => "queue",
            Role::Cache => "cache",
        }
    }
}

/// `syncd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// This node's id (the StatefulSet ordinal in Kubernetes).
    #[arg(long, env = "SYNCD_ID")]
    pub id: u64,
    /// Address to serve the public API and the peer endpoints on.
    #[arg(long, env = "SYNCD_LISTEN")]
    pub listen: SocketAddr,
    /// Where this node keeps its data.
    #[arg(long, env = "SYNCD_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Roles to run.
    #[arg(
        long,
        env = "SYNCD_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "lock,queue,cache"
    )]
    pub roles: Vec<Role>,
    /// Every member, this node included: `<id>=<host:port>,...`.
    #[arg(
        long,
        env = "SYNCD_PEERS",
        value_delimiter = ',',
        conflicts_with = "discovery",
        required_unless_present = "discovery"
    )]
    pub peers: Vec<PeerSpec>,
    /// Find peers through DNS: `dns:<headless-service>:<port>`.
    #[arg(long, env = "SYNCD_DISCOVERY")]
    pub discovery: Option<Discovery>,
    /// Copies of each queue shard, owner included.
    #[arg(long, env = "SYNCD_REPLICATION_FACTOR", default_value_t = 2)]
    pub replication_factor: u32,
    /// This pod's name (`<statefulset>-<ordinal>`), for `--discovery`; defaults to `$HOSTNAME`.
    #[arg(long, env = "SYNCD_POD_NAME")]
    pub pod_name: Option<String>,
    /// Queue options.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Cache options.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Tuning.
    #[command(flatten)]
    pub tuning: Tuning,
}

/// `syncd local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// How many nodes.
    #[arg(long, env = "SYNCD_LOCAL_NODES", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=15))]
    pub nodes: u16,
    /// Node i listens on 127.0.0.1:<base-port + i>.
    #[arg(long, env = "SYNCD_LOCAL_BASE_PORT", default_value_t = 7080)]
    pub base_port: u16,
    /// Node i keeps its data in <data-dir>/node-<i>.
    #[arg(long, env = "SYNCD_LOCAL_DATA_DIR", default_value = "./.syncd-local")]
    pub data_dir: PathBuf,
    /// Copies of each queue shard, owner included.
    #[arg(long, env = "SYNCD_REPLICATION_FACTOR", default_value_t = 2)]
    pub replication_factor: u32,
    /// Queue options.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Cache options.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Tuning.
    #[command(flatten)]
    pub tuning: Tuning,
}

/// When queue appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueFsync {
    /// fsync before answering (group commit batches concurrent appends into one fsync).
    Always,
    /// Answer after the write; fsync every `--queue-fsync-interval-ms` (a crash of every copy at once can lose
    /// that window, like NATS JetStream's default or Redis `appendfsync everysec`).
    Interval,
}

/// Options of the queue role.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Deliveries of a message before it moves to the queue's dead-letter queue `<queue>.dlq`.
    #[arg(long, env = "SYNCD_QUEUE_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub queue_max_attempts: u32,
    /// When queue appends reach the disk.
    #[arg(long, env = "SYNCD_QUEUE_FSYNC", value_enum, default_value = "always")]
    pub queue_fsync: QueueFsync,
    /// fsync period with `--queue-fsync interval`.
    #[arg(long, env = "SYNCD_QUEUE_FSYNC_INTERVAL_MS", default_value_t = 100)]
    pub queue_fsync_interval_ms: u64,
    /// Wait to be added to an existing queue ring and control group instead of forming them from `--peers`.
    #[arg(long, env = "SYNCD_QUEUE_JOIN")]
    pub queue_join: bool,
    /// Largest queue message body.
    #[arg(long, env = "SYNCD_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Largest queue request body (a batch of messages).
    #[arg(long, env = "SYNCD_MAX_QUEUE_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_queue_request_bytes: usize,
    /// A queue node whose heartbeats stop this long is fenced (its shards move to in-sync replicas); a replica that
    /// has not caught up this long leaves the in-sync set.
    #[arg(long, env = "SYNCD_QUEUE_FAILURE_TIMEOUT_MS", default_value_t = 1_500)]
    pub queue_failure_timeout_ms: u64,
    /// How often queue nodes heartbeat to the control group's leader, and leaders look at their replicas.
    #[arg(long, env = "SYNCD_QUEUE_PING_INTERVAL_MS", default_value_t = 200)]
    pub queue_ping_interval_ms: u64,
}

/// Options of the cache role.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Lines each cache peer holds before LRU eviction.
    #[arg(long, env = "SYNCD_CACHE_CAPACITY", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_capacity: u64,
    /// Keys each cache peer keeps as their home (directory entries with the backing value) before forgetting
    /// the least recently used ones no copy depends on; 0: the same as `--cache-capacity`.
    #[arg(long, env = "SYNCD_CACHE_HOME_CAPACITY", default_value_t = 0)]
    pub cache_home_capacity: u64,
    /// Bytes of keys and values each cache peer holds before LRU eviction (0: no byte bound).
    #[arg(long, env = "SYNCD_CACHE_MAX_BYTES", default_value_t = 0)]
    pub cache_max_bytes: u64,
    /// Every write goes to the key's home, which keeps the newest value: a crashed peer loses no write, at a
    /// round trip per write (without it a Modified line's writes live only at its holder until written back).
    #[arg(long, env = "SYNCD_CACHE_WRITE_THROUGH")]
    pub cache_write_through: bool,
    /// How long a cache copy is served without asking its home again; a silent peer delays writes to the keys it
    /// holds by at most this (plus 10%).
    #[arg(long, env = "SYNCD_CACHE_LEASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub cache_lease_ms: u64,
    /// How often cache peers are pinged.
    #[arg(long, env = "SYNCD_CACHE_PING_INTERVAL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub cache_ping_interval_ms: u64,
    /// A cache peer silent this long leaves the view (its keys get other homes).
    #[arg(long, env = "SYNCD_CACHE_FAILURE_TIMEOUT_MS", default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(50..))]
    pub cache_failure_timeout_ms: u64,
    /// How often the headless Service is resolved again (`--discovery`).
    #[arg(long, env = "SYNCD_CACHE_DNS_REFRESH_MS", default_value_t = 5_000)]
    pub cache_dns_refresh_ms: u64,
    /// Largest cache value.
    #[arg(long, env = "SYNCD_MAX_CACHE_VALUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_cache_value_bytes: usize,
}

/// Timing and limits shared by `serve` and `local`.
#[derive(Debug, Clone, Args)]
pub struct Tuning {
    /// Raft heartbeat interval.
    #[arg(long, env = "SYNCD_RAFT_HEARTBEAT_MS", default_value_t = 100)]
    pub raft_heartbeat_ms: u64,
    /// Raft minimum election timeout; the maximum and the leader lease are twice this.
    #[arg(long, env = "SYNCD_RAFT_ELECTION_TIMEOUT_MS", default_value_t = 1000)]
    pub raft_election_timeout_ms: u64,
    /// Snapshot the lock table (and purge the log behind it) after this many entries.
    #[arg(long, env = "SYNCD_SNAPSHOT_AFTER_ENTRIES", default_value_t = 10_000)]
    pub snapshot_after_entries: u64,
    /// Largest lock call body.
    #[arg(long, env = "SYNCD_MAX_LOCK_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_lock_body_bytes: usize,
    /// Longest any request may take (a waiting acquire included) before it is answered 504.
    #[arg(long, env = "SYNCD_REQUEST_TIMEOUT_MS", default_value_t = 150_000)]
    pub request_timeout_ms: u64,
    /// Requests served at once; more wait for a slot.
    #[arg(long, env = "SYNCD_MAX_CONCURRENT_REQUESTS", default_value_t = 10_000)]
    pub max_concurrent_requests: usize,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "SYNCD_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Longest a peer request (`/internal/...`) may take. Peers have their own budget, apart from clients, so
    /// waiting clients can never starve raft heartbeats.
    #[arg(long, env = "SYNCD_PEER_REQUEST_TIMEOUT_MS", default_value_t = 60_000)]
    pub peer_request_timeout_ms: u64,
    /// Peer requests served at once; more wait for a slot.
    #[arg(
        long,
        env = "SYNCD_MAX_CONCURRENT_PEER_REQUESTS",
        default_value_t = 1_024
    )]
    pub max_concurrent_peer_requests: usize,
    /// Fault injection for tests: `<addr>=<addr>,...` makes every role dial the second address whenever it means
    /// the first (a fault-injecting proxy). Never set in production.
    #[arg(long, env = "SYNCD_FAULT_DIAL_MAP", hide = true, value_delimiter = ',')]
    pub fault_dial_map: Vec<DialOverride>,
}

/// One `<addr>=<addr>` pair of `--fault-dial-map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOverride {
    /// The address the node means.
    pub from: String,
    /// The address it dials instead.
    pub to: String,
}

impl FromStr for DialOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("expected <addr>=<addr>, got {s:?}"))?;
        if from.is_empty() || to.is_empty() {
            return Err(format!("expected <addr>=<addr>, got {s:?}"));
        }
        Ok(DialOverride {
            from: from.to_owned(),
            to: to.to_owned(),
        })
    }
}

/// One `<id>=<host:port>` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Node id.
    pub id: u64,
    /// Address peers reach it on.
    pub addr: String,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not <id>=<host:port>"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a node id (a number)"))?;
        let addr = addr.trim();
        match addr.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => return Err(format!("{addr:?} is not host:port")),
        }
        Ok(PeerSpec {
            id,
            addr: addr.to_owned(),
        })
    }
}

/// Collects `--peers` into a map, refusing duplicate ids.
pub fn peer_map(peers: &[PeerSpec]) -> Result<BTreeMap<u64, String>, String> {
    let mut map = BTreeMap::new();
    for p in peers {
        if map.insert(p.id, p.addr.clone()).is_some() {
            return Err(format!("node id {} appears twice in --peers", p.id));
        }
    }
    Ok(map)
}

/// `dns:<headless-service>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The headless Service's DNS name.
    pub service: String,
    /// The peers' port.
    pub port: u16,
}

impl FromStr for Discovery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("dns:")
            .ok_or_else(|| format!("{s:?} is not dns:<headless-service>:<port>"))?;
        let (service, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not dns:<headless-service>:<port>"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number"))?;
        if service.is_empty() {
            return Err("the service name is empty".to_owned());
        }
        Ok(Discovery {
            service: service.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peers() {
        let p: PeerSpec = "3=demo-locks-3.demo-locks-peers:7080".parse().unwrap();
        assert_eq!(p.id, 3);
        assert_eq!(p.addr, "demo-locks-3.demo-locks-peers:7080");
        assert!("x=a:1".parse::<PeerSpec>().is_err());
        assert!("1=a".parse::<PeerSpec>().is_err());
        assert!("1=:80".parse::<PeerSpec>().is_err());
        let dup = [p.clone(), p];
        assert!(peer_map(&dup).is_err());
    }

    #[test]
    fn parses_discovery() {
        let d: Discovery = "dns:demo-cache-peers:7080".parse().unwrap();
        assert_eq!(d.service, "demo-cache-peers");
        assert_eq!(d.port, 7080);
        assert!("srv:x:1".parse::<Discovery>().is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
