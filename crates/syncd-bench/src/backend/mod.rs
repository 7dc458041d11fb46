//! The lock services the workloads drive, behind one trait.
//!
//! A [`LockBackend`] knows a cluster (its endpoints) and opens one [`LockSession`] per simulated client; a
//! session is one client of the service (its own connection, its own owner identity or lease), used by one task.
//! Locks are exclusive throughout.

pub mod etcd;
pub mod syncd;

use std::future::Future;
use std::time::Duration;

/// A lock service under test.
pub trait LockBackend: Send + Sync + 'static {
    /// One client of the service.
    type Session: LockSession;

    /// A short name for tables, e.g. `syncd` or `etcd (lease per cycle)`.
    fn label(&self) -> String;

    /// Waits until every endpoint answers and the cluster has a leader.
    fn wait_ready(&self, within: Duration) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Opens client number `client` (it talks to endpoint `client` mod n). Every lock it takes has a lease of
    /// `lease`, which nothing renews.
    fn connect(
        &self,
        client: usize,
        lease: Duration,
    ) -> impl Future<Output = anyhow::Result<Self::Session>> + Send;
}

/// What an acquire came back with.
#[derive(Debug)]
pub enum Acquired<H> {
    /// The lock is held; release it with this handle.
    Granted(H),
    /// Refused at once because waiting would close a cycle in the wait-for graph.
    Deadlock,
    /// Not granted within the wait.
    Conflict,
}

/// One client of a lock service.
pub trait LockSession: Send + 'static {
    /// What releasing a held lock needs.
    type Held: Send + 'static;

    /// Acquires `name` exclusively, waiting up to `wait` for it (`Duration::ZERO`: answer at once). etcd's lock
    /// call has no try-lock and no wait limit: it always blocks until granted.
    fn acquire(
        &mut self,
        name: &str,
        wait: Duration,
    ) -> impl Future<Output = anyhow::Result<Acquired<Self::Held>>> + Send;

    /// Releases a held lock.
    fn release(&mut self, held: Self::Held) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// How many requests wait for `name` (holders not counted).
    fn waiters(&mut self, name: &str) -> impl Future<Output = anyhow::Result<usize>> + Send;

    /// Ends the session: gives back whatever it holds for its whole life (etcd's session lease).
    fn close(self) -> impl Future<Output = ()> + Send;
}
