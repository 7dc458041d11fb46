//! One node: its roles, its listener and its lifecycle (start, drain, hand over, stop).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use syncd_cache::{CacheConfig, CacheService};
use syncd_locks::{LockService, lock_config};
use syncd_queues::{FsyncPolicy, PeerSource, QueueConfig, QueueService};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{CacheArgs, Discovery, QueueArgs, QueueFsync, Role, Tuning};
use crate::http::{self, AppState, Limits};
use crate::metrics::Metrics;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id.
    pub id: u64,
    /// Listen address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Roles to run.
    pub roles: Vec<Role>,
    /// Every member, this node included (empty with DNS discovery).
    pub peers: BTreeMap<u64, String>,
    /// DNS discovery of queue peers: the pod name prefix (`<statefulset>`) and the headless Service.
    pub discovery: Option<(String, Discovery)>,
    /// Copies of each queue shard.
    pub replication_factor: u32,
    /// Queue options.
    pub queue: QueueArgs,
    /// Cache options.
    pub cache: CacheArgs,
    /// Timing and limits.
    pub tuning: Tuning,
}

/// A running node.
pub struct Node {
    id: u64,
    addr: SocketAddr,
    locks: Option<Arc<LockService>>,
    queues: Option<Arc<QueueService>>,
    cache: Option<Arc<CacheService>>,
    stop_http: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    grace: Duration,
}

impl Node {
    /// Binds the listener, starts the roles and serves.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;

        let mut roles = config.roles.clone();
        roles.sort();
        roles.dedup();

        let locks = if roles.contains(&Role::Lock) {
            let advertise = config
                .peers
                .get(&config.id)
                .cloned()
                .with_context(|| format!("--peers must list this node ({})", config.id))?;
            let mut lock_config = lock_config(
                config.id,
                advertise,
                config.data_dir.join("locks"),
                config.peers.clone(),
            );
            lock_config.heartbeat_ms = config.tuning.raft_heartbeat_ms;
            lock_config.election_timeout_ms = config.tuning.raft_election_timeout_ms;
            lock_config.snapshot_after_entries = config.tuning.snapshot_after_entries;
            lock_config.dial_overrides = dial_overrides(&config);
            Some(LockService::start(lock_config).await?)
        } else {
            None
        };

        let queues = if roles.contains(&Role::Queue) {
            Some(QueueService::start(queue_config(&config)?).await?)
        } else {
            None
        };

        let cache = if roles.contains(&Role::Cache) {
            Some(CacheService::start(cache_config(&config)?).await?)
        } else {
            None
        };

        let state = AppState {
            node_id: config.id,
            roles,
            locks: locks.clone(),
            queues: queues.clone(),
            cache: cache.clone(),
            metrics: Metrics::new(cache.as_ref().map(|c| c.metrics())),
        };
        let limits = Limits {
            max_lock_body_bytes: config.tuning.max_lock_body_bytes,
            request_timeout: Duration::from_millis(config.tuning.request_timeout_ms),
            max_concurrent_requests: config.tuning.max_concurrent_requests,
            peer_request_timeout: Duration::from_millis(config.tuning.peer_request_timeout_ms),
            max_concurrent_peer_requests: config.tuning.max_concurrent_peer_requests,
            queues: http::queues::QueueLimits {
                max_request_bytes: config.queue.max_queue_request_bytes,
                max_message_bytes: config.queue.max_message_bytes,
            },
            max_cache_value_bytes: config.cache.max_cache_value_bytes,
        };
        let app = http::app(state, &limits);
        let (stop_http, mut stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(id = config.id, %addr, "node serving");
        Ok(Node {
            id: config.id,
            addr,
            locks,
            queues,
            cache,
            stop_http,
            server,
            grace: Duration::from_millis(config.tuning.shutdown_grace_ms),
        })
    }

    /// The address the node listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops the node: waiting acquires withdraw, in-flight requests finish (within the grace period), a raft
    /// leader hands leadership over (unless `hand_over` is false because the whole cluster is stopping), storage is
    /// closed.
    pub async fn stop(self, hand_over: bool) {
        if let Some(locks) = &self.locks {
            locks.begin_shutdown();
        }
        if let Some(cache) = &self.cache {
            // Before the listener closes: write-backs need the homes, and the homes may still probe this node.
            cache.shutdown().await;
        }
        self.stop_http.send_replace(true);
        let mut server = self.server;
        match tokio::time::timeout(self.grace, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server task failed"),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within the grace period");
                server.abort();
            }
        }
        if let Some(queues) = &self.queues {
            queues.shutdown().await;
        }
        if let Some(locks) = &self.locks {
            locks.shutdown(hand_over).await;
        }
        tracing::info!(id = self.id, "node stopped");
    }
}

/// The queue role's configuration from the node's.
/// The test-only `--fault-dial-map`, for every role's peer transport.
fn dial_overrides(config: &NodeConfig) -> std::collections::BTreeMap<String, String> {
    config
        .tuning
        .fault_dial_map
        .iter()
        .map(|o| (o.from.clone(), o.to.clone()))
        .collect()
}

fn queue_config(config: &NodeConfig) -> anyhow::Result<QueueConfig> {
    let source = match &config.discovery {
        Some((pod_prefix, discovery)) => PeerSource::Dns {
            pod_prefix: pod_prefix.clone(),
            service: discovery.service.clone(),
            port: discovery.port,
        },
        None => {
            if !config.peers.contains_key(&config.id) {
                anyhow::bail!("--peers must list this node ({})", config.id);
            }
            PeerSource::Static {
                peers: config.peers.clone(),
                join: config.queue.queue_join,
            }
        }
    };
    let mut queue = QueueConfig::new(config.id, config.data_dir.join("queues"), source);
    queue.dial_overrides = dial_overrides(config);
    queue.replication_factor = config.replication_factor.max(1) as usize;
    queue.max_attempts = config.queue.queue_max_attempts;
    queue.fsync = match config.queue.queue_fsync {
        QueueFsync::Always => FsyncPolicy::Always,
        QueueFsync::Interval => FsyncPolicy::Interval(Duration::from_millis(
            config.queue.queue_fsync_interval_ms.max(1),
        )),
    };
    queue.failure_timeout = Duration::from_millis(config.queue.queue_failure_timeout_ms);
    queue.ping_interval = Duration::from_millis(config.queue.queue_ping_interval_ms.max(10));
    queue.raft_heartbeat_ms = config.tuning.raft_heartbeat_ms;
    queue.raft_election_timeout_ms = config.tuning.raft_election_timeout_ms;
    Ok(queue)
}

/// The cache role's configuration from the node's.
fn cache_config(config: &NodeConfig) -> anyhow::Result<CacheConfig> {
    let source = match &config.discovery {
        Some((_, discovery)) => syncd_cache::PeerSource::Dns {
            service: discovery.service.clone(),
            port: discovery.port,
        },
        None => {
            if !config.peers.contains_key(&config.id) {
                anyhow::bail!("--peers must list this node ({})", config.id);
            }
            syncd_cache::PeerSource::Static(config.peers.clone())
        }
    };
    let args = &config.cache;
    let mut cache = CacheConfig::new(config.id, source);
    cache.dial_overrides = dial_overrides(config);
    cache.capacity = usize::try_from(args.cache_capacity).unwrap_or(usize::MAX);
    cache.home_capacity = match args.cache_home_capacity {
        0 => cache.capacity,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    cache.max_bytes = args.cache_max_bytes;
    cache.write_through = args.cache_write_through;
    cache.lease = Duration::from_millis(args.cache_lease_ms);
    cache.ping_interval = Duration::from_millis(args.cache_ping_interval_ms);
    cache.failure_timeout = Duration::from_millis(args.cache_failure_timeout_ms);
    cache.dns_refresh = Duration::from_millis(args.cache_dns_refresh_ms.max(100));
    Ok(cache)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("stop requested");
}
