//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cache::workload::CachePlan;
use crate::queues::workload::QueuePlan;
use crate::workloads::{Plan, Workload};

/// `syncd-bench`: lock, queue and cache benchmarks against a running Syncd cluster or a peer (etcd, Redis, RabbitMQ,
/// NATS, memcached).
#[derive(Debug, Parser)]
#[command(name = "syncd-bench", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the lock workloads against one running cluster and print a markdown table.
    Locks(LocksArgs),
    /// Run the queue workload (produce, then receive+ack) against one running service and print a markdown table.
    Queues(QueuesArgs),
    /// Run the cache workload (preload every key, then a Zipf-distributed GET/SET mix) against one running service
    /// and print a markdown table.
    Cache(CacheArgs),
    /// Put saved results (`locks --json`, `queues --json` or `cache --json`, one kind per call) side by side; the
    /// first file is the baseline of the ratio columns.
    Compare(CompareArgs),
}

/// Which lock service to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Syncd's REST API (`/v1/locks`).
    Syncd,
    /// etcd's v3 lock API the way `etcdctl lock` uses it: lease grant, lock, unlock, lease revoke per cycle.
    Etcd,
    /// etcd's v3 lock API with one lease per client for the whole run (a long-lived `concurrency.Session`).
    EtcdSession,
}

/// `syncd-bench locks`.
#[derive(Debug, Clone, Args)]
pub struct LocksArgs {
    /// The service to drive.
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// Base URLs of every node, e.g. `http://127.0.0.1:17080,...`; client i talks to endpoint i mod n.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Workloads to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "distinct,contended,handoff,deadlock"
    )]
    pub workloads: Vec<Workload>,
    /// Concurrent clients (for `handoff`: waiters besides the holder); each value is one run.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub clients: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Unmeasured seconds at the start of each run (connections, leader caches).
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Lease of every lock taken by the throughput workloads (Syncd `ttl_ms`; etcd lease TTL, rounded up to s).
    #[arg(long, default_value_t = 60_000)]
    pub ttl_ms: u64,
    /// How long a waiting acquire may wait (Syncd `wait_ms`; etcd's lock call has no limit and blocks).
    #[arg(long, default_value_t = 120_000)]
    pub wait_ms: u64,
    /// `handoff`: how long each holder keeps the hot lock before releasing it.
    #[arg(long, default_value_t = 1)]
    pub hold_ms: u64,
    /// `deadlock`: how many times to build the two-client cycle.
    #[arg(long, default_value_t = 20)]
    pub deadlock_rounds: usize,
    /// `deadlock`: lease of the party whose lease ends the deadlock where nothing detects it (etcd); etcd's
    /// minimum with a 1000 ms election timeout is 2 s.
    #[arg(long, default_value_t = 5_000)]
    pub deadlock_ttl_ms: u64,
    /// How long to wait for the cluster to have a leader before starting.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_s: u64,
    /// Process ids of the cluster's servers, to report their CPU use per operation (Linux `/proc`).
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Also save the results here as JSON, for `compare`.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl LocksArgs {
    /// The workload plan these arguments describe.
    pub fn plan(&self) -> Plan {
        Plan {
            workloads: self.workloads.clone(),
            clients: self.clients.clone(),
            duration: Duration::from_secs(self.duration_s),
            warmup: Duration::from_secs(self.warmup_s),
            ttl: Duration::from_millis(self.ttl_ms),
            wait: Duration::from_millis(self.wait_ms),
            hold: Duration::from_millis(self.hold_ms),
            deadlock_rounds: self.deadlock_rounds,
            deadlock_ttl: Duration::from_millis(self.deadlock_ttl_ms),
            server_pids: self.server_pids.clone(),
        }
    }
}

/// Which queue service to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueSystem {
    /// Syncd's REST API (`/v1/queues`); endpoints are the nodes' base URLs.
    Syncd,
    /// Redis Streams with one consumer group (`XADD`, `XREADGROUP`, `XACK`); endpoint `redis://host:port`.
    Redis,
    /// A RabbitMQ quorum queue (publisher confirms, prefetch 1, manual acks); endpoint `amqp://host:port/%2f`.
    Rabbitmq,
    /// A NATS JetStream work-queue stream on file storage with an explicit-ack pull consumer; endpoint
    /// `nats://host:port`.
    Nats,
}

/// `syncd-bench queues`.
#[derive(Debug, Clone, Args)]
pub struct QueuesArgs {
    /// The service to drive.
    #[arg(long, value_enum)]
    pub backend: QueueSystem,
    /// Where it serves: Syncd node base URLs (client i talks to endpoint i mod n), or the one URL of the peer.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Concurrent clients; each value is one run on a fresh queue (produce, then receive+ack).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub clients: Vec<usize>,
    /// Messages produced, then consumed, per run (the same for every client count and service).
    #[arg(long, default_value_t = 10_000)]
    pub messages: u64,
    /// Bytes per message body.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// How long one receive waits for a message when none is ready.
    #[arg(long, default_value_t = 1_000)]
    pub receive_wait_ms: u64,
    /// How long a received message stays invisible before it is delivered again (JetStream `ack_wait`; RabbitMQ
    /// and Redis have no such timer: an unacked message waits for its consumer to go away or to be claimed).
    #[arg(long, default_value_t = 30_000)]
    pub visibility_ms: u64,
    /// A phase still running after this long stops; the report then shows what is missing.
    #[arg(long, default_value_t = 300)]
    pub phase_timeout_s: u64,
    /// The name of this service and setup in the tables (default: the backend's name).
    #[arg(long)]
    pub label: Option<String>,
    /// How long to wait for the service to answer before starting.
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_s: u64,
    /// Process ids of the service's servers, to report their CPU use per message (Linux `/proc`).
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Also save the results here as JSON, for `compare`.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl QueuesArgs {
    /// The plan these arguments describe.
    pub fn plan(&self) -> QueuePlan {
        QueuePlan {
            clients: self.clients.clone(),
            messages: self.messages,
            body_bytes: self.body_bytes,
            receive_wait: Duration::from_millis(self.receive_wait_ms),
            visibility: Duration::from_millis(self.visibility_ms),
            phase_timeout: Duration::from_secs(self.phase_timeout_s),
            server_pids: self.server_pids.clone(),
        }
    }
}

/// Which key-value service to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CacheSystem {
    /// Syncd's REST API (`/v1/cache`); endpoints are the nodes' base URLs. Hit = answered from the asked node's
    /// own copy (`X-Cache: hit`).
    Syncd,
    /// Redis `GET`/`SET`; endpoint `redis://host:port`. Hit = the key was found (a remote store).
    Redis,
    /// memcached `get`/`set` (text protocol); endpoint `tcp://host:port`. Hit = the key was found (a remote store).
    Memcached,
}

/// `syncd-bench cache`.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// The service to drive.
    #[arg(long, value_enum)]
    pub backend: CacheSystem,
    /// Where it serves: Syncd node base URLs (client i talks to endpoint i mod n), or the one address of the peer.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Concurrent clients; each value is one run (preload, then the mix).
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    pub clients: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration_s: u64,
    /// Unmeasured seconds at the start of the mix (connections, first copies).
    #[arg(long, default_value_t = 1)]
    pub warmup_s: u64,
    /// Distinct keys (`bench-1` .. `bench-<keys>`), each written once before every run.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Exponent s of the Zipf distribution of the keys (rank 1 hottest; 0 = uniform).
    #[arg(long, default_value_t = 0.99)]
    pub zipf: f64,
    /// Share of calls that are GETs, in percent; the rest are SETs.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub value_bytes: u64,
    /// Seed of the clients' key and operation choices (client i's generator is derived from it and i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The name of this service and setup in the tables (default: the backend's name).
    #[arg(long)]
    pub label: Option<String>,
    /// How long to wait for the service to answer before starting.
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_s: u64,
    /// Process ids of the service's servers, to report their CPU use per call (Linux `/proc`).
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// Also save the results here as JSON, for `compare`.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl CacheArgs {
    /// The plan these arguments describe.
    pub fn plan(&self) -> anyhow::Result<CachePlan> {
        Ok(CachePlan {
            clients: self.clients.clone(),
            duration: Duration::from_secs(self.duration_s),
            warmup: Duration::from_secs(self.warmup_s),
            keys: self.keys,
            zipf: self.zipf,
            read_percent: self.read_percent,
            value_bytes: usize::try_from(self.value_bytes)?,
            seed: self.seed,
            server_pids: self.server_pids.clone(),
        })
    }
}

/// `syncd-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Result files written by `locks --json`, `queues --json` or `cache --json` (one kind per call); the first is
    /// the baseline.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}
