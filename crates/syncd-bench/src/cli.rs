//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::workloads::{Plan, Workload};

/// `syncd-bench`: lock benchmarks against a running Syncd or etcd cluster.
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
    /// Put saved results (`locks --json`) side by side; the first file is the baseline of the ratio columns.
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

/// `syncd-bench compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Result files written by `locks --json`; the first is the baseline.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}
