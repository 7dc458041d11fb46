//! etcd through its v3 lock API (`v3lockpb.Lock`), with the `etcd-client` crate: one gRPC (HTTP/2) connection
//! per client.
//!
//! An etcd lock is a key `<name>/<lease id>` attached to a lease; the lock call creates it and blocks until every
//! key of that prefix created before it is gone; unlock deletes it. `etcdctl lock` grants a lease, locks, unlocks
//! and revokes the lease: [`LeaseMode::PerCycle`] does the same for every acquire/release cycle (four raft writes).
//! A long-lived client keeps one lease for many locks instead: [`LeaseMode::Session`] (two raft writes per
//! cycle). Nothing here keeps a lease alive, as a Syncd lock's `ttl_ms` is not renewed either.

use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{Client, ConnectOptions, GetOptions, LockOptions};
use tokio::time::{Instant, sleep, timeout};

use super::{Acquired, LockBackend, LockSession};

/// Where the lease that a lock is attached to comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseMode {
    /// Grant a lease before every lock and revoke it after the unlock, like `etcdctl lock`.
    PerCycle,
    /// One lease per client, granted when it connects and revoked when it closes.
    Session,
}

/// An etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdBackend {
    endpoints: Vec<String>,
    mode: LeaseMode,
}

impl EtcdBackend {
    /// The cluster whose members serve clients at `endpoints` (e.g. `http://127.0.0.1:12379`).
    pub fn new(endpoints: &[String], mode: LeaseMode) -> EtcdBackend {
        EtcdBackend {
            endpoints: endpoints.to_vec(),
            mode,
        }
    }
}

async fn connect_to(endpoint: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    Client::connect([endpoint], Some(options))
        .await
        .with_context(|| format!("cannot connect to etcd at {endpoint}"))
}

/// etcd lease TTLs are whole seconds: `lease` rounded up, at least 1.
fn ttl_seconds(lease: Duration) -> i64 {
    let millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    (millis.saturating_add(999) / 1000).max(1)
}

impl LockBackend for EtcdBackend {
    type Session = EtcdSession;

    fn label(&self) -> String {
        match self.mode {
            LeaseMode::PerCycle => "etcd (lease per cycle)".to_owned(),
            LeaseMode::Session => "etcd (session lease)".to_owned(),
        }
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for endpoint in &self.endpoints {
            loop {
                let leader = match connect_to(endpoint).await {
                    Ok(mut client) => client.status().await.map(|s| s.leader()).unwrap_or(0),
                    Err(_) => 0,
                };
                if leader != 0 {
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

    async fn connect(&self, client: usize, lease: Duration) -> anyhow::Result<EtcdSession> {
        let endpoint = &self.endpoints[client % self.endpoints.len()];
        let mut etcd = connect_to(endpoint).await?;
        let ttl = ttl_seconds(lease);
        let session_lease = match self.mode {
            LeaseMode::PerCycle => None,
            LeaseMode::Session => Some(
                etcd.lease_grant(ttl, None)
                    .await
                    .context("lease grant")?
                    .id(),
            ),
        };
        Ok(EtcdSession {
            client: etcd,
            ttl,
            session_lease,
        })
    }
}

/// One etcd client: a connection to one member and, in session mode, its lease.
pub struct EtcdSession {
    client: Client,
    ttl: i64,
    session_lease: Option<i64>,
}

/// A held etcd lock: its key, and the lease to revoke after the unlock (lease-per-cycle mode).
#[derive(Debug)]
pub struct EtcdHeld {
    key: Vec<u8>,
    cycle_lease: Option<i64>,
}

impl LockSession for EtcdSession {
    type Held = EtcdHeld;

    async fn acquire(&mut self, name: &str, wait: Duration) -> anyhow::Result<Acquired<EtcdHeld>> {
        let (lease, cycle_lease) = match self.session_lease {
            Some(lease) => (lease, None),
            None => {
                let lease = self
                    .client
                    .lease_grant(self.ttl, None)
                    .await
                    .context("lease grant")?
                    .id();
                (lease, Some(lease))
            }
        };
        let options = Some(LockOptions::new().with_lease(lease));
        let call = self.client.lock(name, options);
        let locked = if wait.is_zero() {
            Some(call.await)
        } else {
            // Dropping the call cancels it; the server then deletes the waiting key.
            timeout(wait, call).await.ok()
        };
        match locked {
            Some(Ok(response)) => Ok(Acquired::Granted(EtcdHeld {
                key: response.key().to_vec(),
                cycle_lease,
            })),
            Some(Err(e)) => {
                self.revoke(cycle_lease).await;
                Err(e).with_context(|| format!("lock {name}"))
            }
            None => {
                self.revoke(cycle_lease).await;
                Ok(Acquired::Conflict)
            }
        }
    }

    async fn release(&mut self, held: EtcdHeld) -> anyhow::Result<()> {
        let unlocked = self.client.unlock(held.key).await.context("unlock");
        if let Some(lease) = held.cycle_lease {
            self.client
                .lease_revoke(lease)
                .await
                .context("lease revoke")?;
        }
        unlocked.map(|_| ())
    }

    async fn waiters(&mut self, name: &str) -> anyhow::Result<usize> {
        let options = GetOptions::new().with_prefix().with_count_only();
        let response = self
            .client
            .get(format!("{name}/"), Some(options))
            .await
            .context("count lock keys")?;
        let keys = usize::try_from(response.count()).unwrap_or(0);
        Ok(keys.saturating_sub(1))
    }

    async fn close(mut self) {
        let lease = self.session_lease.take();
        self.revoke(lease).await;
    }
}

impl EtcdSession {
    /// Revokes `lease` if there is one; a lease that already expired is not an error worth reporting.
    async fn revoke(&mut self, lease: Option<i64>) {
        if let Some(lease) = lease {
            let _ = self.client.lease_revoke(lease).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(60)), 60);
    }
}
