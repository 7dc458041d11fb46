//! The queue services the queue workloads drive, behind one trait.
//!
//! A [`QueueBackend`] knows a service (its endpoints) and opens one [`QueueSession`] per simulated client; a
//! session is one client (its own connection), used by one task. Every operation is awaited before the next:
//! a produce returns once the service says the message is stored (Syncd's 201, Redis's `XADD` reply, a
//! RabbitMQ publisher confirm, a JetStream `PubAck`); a receive returns at most one message; an ack returns
//! once the service answered it, where the protocol has an answer (RabbitMQ's `basic.ack` has none).

pub mod nats;
pub mod rabbitmq;
pub mod redis;
pub mod syncd;

use std::future::Future;
use std::time::Duration;

/// A queue service under test.
pub trait QueueBackend: Send + Sync + 'static {
    /// One client of the service.
    type Session: QueueSession;

    /// A short name, e.g. `syncd`; `--label` replaces it in tables.
    fn label(&self) -> String;

    /// Waits until the service answers (and, for Syncd, every node sees the whole ring).
    fn wait_ready(&self, within: Duration) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Creates the empty queue `queue` (stream, consumer group, quorum queue, owner term ...), so that the measured
    /// phases do not pay for it.
    fn create_queue(&self, queue: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Opens client number `client` of `queue` (it talks to endpoint `client` mod n).
    fn connect(
        &self,
        client: usize,
        queue: &str,
    ) -> impl Future<Output = anyhow::Result<Self::Session>> + Send;

    /// Messages still in `queue` (ready or delivered and not acknowledged), for the loss check after a run.
    fn remaining(&self, queue: &str) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// Where the queue lives, for the report (e.g. Syncd's owner and replicas); `None` when there is nothing to say.
    fn placement(&self, queue: &str) -> impl Future<Output = Option<String>> + Send;
}

/// One received message: its body and what acknowledging it needs.
#[derive(Debug)]
pub struct Received<R> {
    /// The payload, as produced.
    pub body: Vec<u8>,
    /// The delivery's receipt (Syncd receipt, Redis entry id, AMQP delivery, JetStream message).
    pub receipt: R,
}

/// One client of a queue service.
pub trait QueueSession: Send + 'static {
    /// What acknowledging a delivery needs.
    type Receipt: Send + 'static;

    /// One round trip that touches the service without changing the queue (opens pooled connections, ...).
    fn warm_up(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Produces one message; returns once the service has stored it.
    fn produce(&mut self, body: &[u8]) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Receives at most one message, waiting up to `wait` for one; `None` when none came.
    fn receive(
        &mut self,
        wait: Duration,
    ) -> impl Future<Output = anyhow::Result<Option<Received<Self::Receipt>>>> + Send;

    /// Acknowledges a delivery: the message is done and is not delivered again.
    fn ack(&mut self, receipt: Self::Receipt) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Ends the session.
    fn close(self) -> impl Future<Output = ()> + Send;
}
