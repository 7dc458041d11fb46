//! RabbitMQ quorum queues over AMQP 0.9.1, through `lapin`: one connection and channel per client.
//!
//! - Produce: `basic.publish` (persistent) on a channel in confirm mode, awaiting the publisher confirm. A quorum
//!   queue confirms once the message is in its raft log on a majority, fsynced (RabbitMQ's WAL syncs before it
//!   confirms); with one node, on that node's disk.
//! - Receive: a `basic.consume` consumer with manual acks and a prefetch of 1, so a client holds at most one
//!   unacknowledged message, like a Syncd `receive` with `max: 1`. RabbitMQ pushes: a receive waits for the next
//!   delivery, which the queue sends once the previous one's ack has been applied (it frees the prefetch slot).
//! - Ack: `basic.ack`. AMQP 0.9.1 has no answer to it: the call returns once the frame is handed to the
//!   connection, so its latency is client-side only; the server's work on it shows in the next receive.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::time::{Instant, sleep, timeout};

use super::{QueueBackend, QueueSession, Received};

/// `delivery_mode` 2: persistent (quorum queues store every message anyway).
const PERSISTENT: u8 = 2;

/// A RabbitMQ broker.
#[derive(Debug, Clone)]
pub struct RabbitQueues {
    uri: String,
}

impl RabbitQueues {
    /// The broker at `endpoints[0]`, e.g. `amqp://127.0.0.1:15673/%2f`.
    pub fn new(endpoints: &[String]) -> anyhow::Result<RabbitQueues> {
        let [uri] = endpoints else {
            bail!("the rabbitmq backend takes one endpoint, e.g. amqp://127.0.0.1:15673/%2f");
        };
        Ok(RabbitQueues { uri: uri.clone() })
    }

    async fn connection(&self) -> anyhow::Result<Connection> {
        Connection::connect(&self.uri, ConnectionProperties::default())
            .await
            .with_context(|| format!("cannot connect to {}", self.uri))
    }

    fn quorum() -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        arguments
    }

    /// Declares `queue` as a durable quorum queue (or checks that it is one) and answers its ready messages.
    async fn declare(channel: &Channel, queue: &str, passive: bool) -> anyhow::Result<u64> {
        let options = QueueDeclareOptions {
            durable: true,
            passive,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, RabbitQueues::quorum())
            .await
            .with_context(|| format!("declare quorum queue {queue}"))?;
        Ok(u64::from(declared.message_count()))
    }
}

impl QueueBackend for RabbitQueues {
    type Session = RabbitSession;

    fn label(&self) -> String {
        "rabbitmq quorum queue".to_owned()
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            match self.connection().await {
                Ok(connection) => {
                    let _ = connection.close(200, "ready".into()).await;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("not ready after {within:?}")));
                }
                Err(_) => sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn create_queue(&self, queue: &str) -> anyhow::Result<()> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let ready = RabbitQueues::declare(&channel, queue, false).await?;
        let _ = connection.close(200, "created".into()).await;
        if ready > 0 {
            bail!("queue {queue} is not empty");
        }
        Ok(())
    }

    async fn connect(&self, client: usize, queue: &str) -> anyhow::Result<RabbitSession> {
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        Ok(RabbitSession {
            connection,
            channel,
            queue: queue.to_owned(),
            tag: format!("c{client}"),
            confirming: false,
            consumer: None,
        })
    }

    async fn remaining(&self, queue: &str) -> anyhow::Result<u64> {
        // Counts ready messages; run after the clients closed, so anything left unacked is ready again.
        let connection = self.connection().await?;
        let channel = connection.create_channel().await?;
        let ready = RabbitQueues::declare(&channel, queue, true).await;
        let _ = connection.close(200, "counted".into()).await;
        ready
    }

    async fn placement(&self, _queue: &str) -> Option<String> {
        None
    }
}

/// One AMQP client: a connection, one channel, and (once it receives) a consumer with a prefetch of 1.
pub struct RabbitSession {
    connection: Connection,
    channel: Channel,
    queue: String,
    tag: String,
    confirming: bool,
    consumer: Option<Consumer>,
}

impl QueueSession for RabbitSession {
    type Receipt = Acker;

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        // A passive declare: one round trip that changes nothing.
        RabbitQueues::declare(&self.channel, &self.queue, true).await?;
        Ok(())
    }

    async fn produce(&mut self, body: &[u8]) -> anyhow::Result<()> {
        if !self.confirming {
            self.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("confirm.select")?;
            self.confirming = true;
        }
        let confirmation = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(PERSISTENT),
            )
            .await
            .context("basic.publish")?
            .await
            .context("publisher confirm")?;
        if !confirmation.is_ack() {
            bail!("the broker refused the message (basic.nack)");
        }
        Ok(())
    }

    async fn receive(&mut self, wait: Duration) -> anyhow::Result<Option<Received<Acker>>> {
        if self.consumer.is_none() {
            self.channel
                .basic_qos(1, BasicQosOptions::default())
                .await
                .context("basic.qos")?;
            let consumer = self
                .channel
                .basic_consume(
                    self.queue.as_str().into(),
                    self.tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .context("basic.consume")?;
            self.consumer = Some(consumer);
        }
        let Some(consumer) = self.consumer.as_mut() else {
            bail!("no consumer");
        };
        match timeout(wait, consumer.next()).await {
            Err(_) => Ok(None),
            Ok(None) => bail!("the broker cancelled the consumer"),
            Ok(Some(delivery)) => {
                let delivery = delivery.context("delivery")?;
                Ok(Some(Received {
                    body: delivery.data,
                    receipt: delivery.acker,
                }))
            }
        }
    }

    async fn ack(&mut self, receipt: Acker) -> anyhow::Result<()> {
        if !receipt
            .ack(BasicAckOptions::default())
            .await
            .context("basic.ack")?
        {
            bail!("basic.ack: the delivery was already settled or its channel is gone");
        }
        Ok(())
    }

    async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}
