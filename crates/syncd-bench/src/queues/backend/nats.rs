//! NATS JetStream used as a work queue, through `async-nats`: one NATS connection per client.
//!
//! The queue is a stream with work-queue retention (an acknowledged message is deleted), file storage and one
//! replica, bound to the subject named like the queue, and one durable pull consumer with explicit acks shared by
//! every client (competing consumers).
//!
//! - Produce: a JetStream publish, awaiting its `PubAck` (stored by the server; the file store writes it to the
//!   OS and fsyncs later, in the background).
//! - Receive: a pull request for one message (`fetch`-style batch of 1 that waits up to the receive wait). The
//!   client subscribes to a fresh inbox for every such request (that is how the crate's batch API works).
//! - Ack: an `AckAck` with a reply subject (`double_ack`), awaiting the server's answer, so the ack is a round
//!   trip as in Syncd and Redis.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use tokio::time::{Instant, sleep};

use super::{QueueBackend, QueueSession, Received};

/// The durable consumer every client pulls from.
const CONSUMER: &str = "bench";

/// A NATS server with JetStream enabled.
#[derive(Debug, Clone)]
pub struct NatsJetStream {
    url: String,
    visibility: Duration,
}

/// The stream that holds `queue` (stream names may not hold `.`; the subject is the queue name itself).
fn stream_name(queue: &str) -> String {
    queue
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

impl NatsJetStream {
    /// The server at `endpoints[0]`, e.g. `nats://127.0.0.1:14222`; deliveries not acked within `visibility` are
    /// delivered again (the consumer's `ack_wait`).
    pub fn new(endpoints: &[String], visibility: Duration) -> anyhow::Result<NatsJetStream> {
        let [url] = endpoints else {
            bail!("the nats backend takes one endpoint, e.g. nats://127.0.0.1:14222");
        };
        Ok(NatsJetStream {
            url: url.clone(),
            visibility,
        })
    }

    async fn context(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("cannot connect to {}", self.url))?;
        Ok(jetstream::new(client))
    }
}

impl QueueBackend for NatsJetStream {
    type Session = NatsSession;

    fn label(&self) -> String {
        "nats jetstream".to_owned()
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            // A raw `$JS.API.INFO` request: the crate's typed account info does not parse 2.9's answer.
            let error = match self.context().await {
                Ok(js) => match js.client().request("$JS.API.INFO", "".into()).await {
                    Ok(reply) if !reply.payload.is_empty() => {
                        let info: serde_json::Value =
                            serde_json::from_slice(&reply.payload).unwrap_or_default();
                        match info.get("error") {
                            None => return Ok(()),
                            Some(e) => anyhow!("JetStream: {e}"),
                        }
                    }
                    Ok(_) => anyhow!("empty answer to $JS.API.INFO"),
                    Err(e) => anyhow!("$JS.API.INFO: {e}"),
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(
                    error.context(format!("{} has no JetStream after {within:?}", self.url))
                );
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_queue(&self, queue: &str) -> anyhow::Result<()> {
        let js = self.context().await?;
        let stream = js
            .create_stream(StreamConfig {
                name: stream_name(queue),
                subjects: vec![queue.to_owned()],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: 1,
                ..StreamConfig::default()
            })
            .await
            .map_err(|e| anyhow!("create stream for {queue}: {e}"))?;
        stream
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: self.visibility,
                ..pull::Config::default()
            })
            .await
            .map_err(|e| anyhow!("create consumer for {queue}: {e}"))?;
        Ok(())
    }

    async fn connect(&self, _client: usize, queue: &str) -> anyhow::Result<NatsSession> {
        Ok(NatsSession {
            js: self.context().await?,
            subject: queue.to_owned(),
            stream: stream_name(queue),
            consumer: None,
        })
    }

    async fn remaining(&self, queue: &str) -> anyhow::Result<u64> {
        let js = self.context().await?;
        let mut stream = js
            .get_stream(stream_name(queue))
            .await
            .map_err(|e| anyhow!("stream of {queue}: {e}"))?;
        let info = stream
            .info()
            .await
            .map_err(|e| anyhow!("stream info of {queue}: {e}"))?;
        Ok(info.state.messages)
    }

    async fn placement(&self, _queue: &str) -> Option<String> {
        None
    }
}

/// One NATS client: its connection and (once it receives) the shared pull consumer.
pub struct NatsSession {
    js: jetstream::Context,
    subject: String,
    stream: String,
    consumer: Option<PullConsumer>,
}

impl QueueSession for NatsSession {
    type Receipt = Message;

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        // PING/PONG.
        self.js
            .client()
            .flush()
            .await
            .map_err(|e| anyhow!("flush: {e}"))
    }

    async fn produce(&mut self, body: &[u8]) -> anyhow::Result<()> {
        self.js
            .publish(self.subject.clone(), body.to_vec().into())
            .await
            .map_err(|e| anyhow!("publish: {e}"))?
            .await
            .map_err(|e| anyhow!("publish ack: {e}"))?;
        Ok(())
    }

    async fn receive(&mut self, wait: Duration) -> anyhow::Result<Option<Received<Message>>> {
        if self.consumer.is_none() {
            let consumer: PullConsumer = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| anyhow!("stream {}: {e}", self.stream))?
                .get_consumer(CONSUMER)
                .await
                .map_err(|e| anyhow!("consumer {CONSUMER}: {e}"))?;
            self.consumer = Some(consumer);
        }
        let Some(consumer) = self.consumer.as_ref() else {
            bail!("no consumer");
        };
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| anyhow!("pull request: {e}"))?;
        match batch.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(anyhow!("pull: {e}")),
            Some(Ok(message)) => Ok(Some(Received {
                body: message.payload.to_vec(),
                receipt: message,
            })),
        }
    }

    async fn ack(&mut self, receipt: Message) -> anyhow::Result<()> {
        receipt.double_ack().await.map_err(|e| anyhow!("ack: {e}"))
    }

    async fn close(self) {
        let _ = self.js.client().flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_have_no_dots() {
        assert_eq!(stream_name("bench.ab12.16"), "bench_ab12_16");
    }
}
