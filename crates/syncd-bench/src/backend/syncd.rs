//! Syncd through its REST API and `syncd-client`: one HTTP/1.1 keep-alive connection pool per client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use syncd_client::syncd_api::locks::{AcquireRequest, LockMode, ReleaseRequest};
use syncd_client::{Client, ErrorCode};
use tokio::time::{Instant, sleep};

use super::{Acquired, LockBackend, LockSession};

/// Owners must be unique per session (the owner is the unit of deadlock detection and idempotence).
static NEXT_OWNER: AtomicU64 = AtomicU64::new(0);

/// A Syncd cluster.
#[derive(Debug, Clone)]
pub struct SyncdBackend {
    endpoints: Vec<String>,
    /// Distinguishes this process's owners from those of earlier runs against the same cluster.
    run: String,
}

impl SyncdBackend {
    /// The cluster whose nodes serve at `endpoints` (base URLs).
    pub fn new(endpoints: &[String]) -> SyncdBackend {
        SyncdBackend {
            endpoints: endpoints.to_vec(),
            run: crate::workloads::run_id(),
        }
    }

    fn client(&self, endpoint: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Client::with_http(endpoint, http))
    }
}

impl LockBackend for SyncdBackend {
    type Session = SyncdSession;

    fn label(&self) -> String {
        "syncd".to_owned()
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for endpoint in &self.endpoints {
            let client = self.client(endpoint)?;
            loop {
                let ready = client.readyz().await.unwrap_or(false);
                let leader = match client.status().await {
                    Ok(status) => status.locks.and_then(|l| l.leader),
                    Err(_) => None,
                };
                if ready && leader.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("{endpoint} is not ready after {within:?}");
                }
                sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn connect(&self, client: usize, lease: Duration) -> anyhow::Result<SyncdSession> {
        let endpoint = &self.endpoints[client % self.endpoints.len()];
        let seq = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
        Ok(SyncdSession {
            client: self.client(endpoint)?,
            owner: format!("bench-{}-{seq}", self.run),
            ttl_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// One Syncd client: an owner name and a connection pool to one node.
#[derive(Debug)]
pub struct SyncdSession {
    client: Client,
    owner: String,
    ttl_ms: u64,
}

/// A held Syncd lock: its name and fencing token.
#[derive(Debug)]
pub struct SyncdHeld {
    name: String,
    token: u64,
}

impl LockSession for SyncdSession {
    type Held = SyncdHeld;

    async fn acquire(&mut self, name: &str, wait: Duration) -> anyhow::Result<Acquired<SyncdHeld>> {
        let request = AcquireRequest {
            owner: self.owner.clone(),
            mode: LockMode::Exclusive,
            ttl_ms: self.ttl_ms,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        match self.client.acquire(name, &request).await {
            Ok(grant) => Ok(Acquired::Granted(SyncdHeld {
                name: name.to_owned(),
                token: grant.token,
            })),
            Err(e) if e.code() == Some(ErrorCode::Deadlock) => Ok(Acquired::Deadlock),
            Err(e) if e.code() == Some(ErrorCode::LockConflict) => Ok(Acquired::Conflict),
            Err(e) => Err(e).with_context(|| format!("acquire {name}")),
        }
    }

    async fn release(&mut self, held: SyncdHeld) -> anyhow::Result<()> {
        let request = ReleaseRequest {
            owner: self.owner.clone(),
            token: Some(held.token),
        };
        self.client
            .release(&held.name, &request)
            .await
            .with_context(|| format!("release {}", held.name))?;
        Ok(())
    }

    async fn waiters(&mut self, name: &str) -> anyhow::Result<usize> {
        let info = self
            .client
            .lock(name)
            .await
            .with_context(|| format!("read {name}"))?;
        Ok(info.waiters.len())
    }

    async fn close(self) {}
}
