//! One node: its roles, its listener and its lifecycle (start, drain, hand over, stop).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use syncd_locks::{LockConfig, LockService};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::{Role, Tuning};
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
    /// Every member, this node included.
    pub peers: BTreeMap<u64, String>,
    /// Timing and limits.
    pub tuning: Tuning,
}

/// A running node.
pub struct Node {
    id: u64,
    addr: SocketAddr,
    locks: Option<Arc<LockService>>,
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
        for role in &roles {
            if *role != Role::Lock {
                tracing::warn!(
                    role = role.as_str(),
                    "this role is not available in this version yet; skipping it"
                );
            }
        }
        roles.retain(|r| *r == Role::Lock);

        let locks = if roles.contains(&Role::Lock) {
            let advertise = config
                .peers
                .get(&config.id)
                .cloned()
                .with_context(|| format!("--peers must list this node ({})", config.id))?;
            let mut lock_config = LockConfig::new(
                config.id,
                advertise,
                config.data_dir.join("locks"),
                config.peers.clone(),
            );
            lock_config.heartbeat_ms = config.tuning.raft_heartbeat_ms;
            lock_config.election_timeout_ms = config.tuning.raft_election_timeout_ms;
            lock_config.snapshot_after_entries = config.tuning.snapshot_after_entries;
            Some(LockService::start(lock_config).await?)
        } else {
            None
        };

        let state = AppState {
            node_id: config.id,
            roles,
            locks: locks.clone(),
            metrics: Metrics::new(),
        };
        let limits = Limits {
            max_lock_body_bytes: config.tuning.max_lock_body_bytes,
            request_timeout: Duration::from_millis(config.tuning.request_timeout_ms),
            max_concurrent_requests: config.tuning.max_concurrent_requests,
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
        if let Some(locks) = &self.locks {
            locks.shutdown(hand_over).await;
        }
        tracing::info!(id = self.id, "node stopped");
    }
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
