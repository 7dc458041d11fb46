//! Syncd's queue API (`/v1/queues`) through `syncd-client`: one HTTP/1.1 keep-alive connection pool per client.
//! Any node accepts any call and forwards it to the queue's owner, so client i talks to node i mod n.

use std::time::Duration;

use anyhow::{Context, bail};
use syncd_client::Client;
use syncd_client::syncd_api::queues::ReceiveRequest;
use tokio::time::{Instant, sleep};

use super::{QueueBackend, QueueSession, Received};

/// A Syncd cluster running the queue role.
#[derive(Debug, Clone)]
pub struct SyncdQueues {
    endpoints: Vec<String>,
    visibility: Duration,
}

impl SyncdQueues {
    /// The cluster whose nodes serve at `endpoints` (base URLs); received messages stay invisible for `visibility`.
    pub fn new(endpoints: &[String], visibility: Duration) -> SyncdQueues {
        SyncdQueues {
            endpoints: endpoints.to_vec(),
            visibility,
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

    fn first(&self) -> anyhow::Result<Client> {
        match self.endpoints.first() {
            Some(endpoint) => self.client(endpoint),
            None => bail!("no endpoint"),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl QueueBackend for SyncdQueues {
    type Session = SyncdQueueSession;

    fn label(&self) -> String {
        "syncd".to_owned()
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        for endpoint in &self.endpoints {
            let client = self.client(endpoint)?;
            loop {
                let ready = client.readyz().await.unwrap_or(false);
                let ring = match client.status().await {
                    Ok(status) => status.queues.is_some_and(|q| {
                        q.epoch > 0 && !q.members.is_empty() && q.members == q.alive
                    }),
                    Err(_) => false,
                };
                if ready && ring {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "{endpoint} is not ready (queue ring formed, every member alive) after {within:?}"
                    );
                }
                sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn create_queue(&self, queue: &str) -> anyhow::Result<()> {
        // A receive creates the shard on its owner (an owner term written and replicated); it finds nothing.
        let request = ReceiveRequest {
            max: 1,
            visibility_ms: millis(self.visibility),
            wait_ms: 0,
        };
        let got = self
            .first()?
            .receive(queue, &request)
            .await
            .with_context(|| format!("create queue {queue}"))?;
        if !got.is_empty() {
            bail!("queue {queue} is not empty");
        }
        Ok(())
    }

    async fn connect(&self, client: usize, queue: &str) -> anyhow::Result<SyncdQueueSession> {
        let endpoint = &self.endpoints[client % self.endpoints.len()];
        Ok(SyncdQueueSession {
            client: self.client(endpoint)?,
            queue: queue.to_owned(),
            visibility_ms: millis(self.visibility),
        })
    }

    async fn remaining(&self, queue: &str) -> anyhow::Result<u64> {
        let info = self.first()?.queue(queue).await?;
        Ok((info.ready + info.inflight) as u64)
    }

    async fn placement(&self, queue: &str) -> Option<String> {
        let info = self.first().ok()?.queue(queue).await.ok()?;
        Some(format!(
            "owner node {}, replicas {:?}, in sync {:?}, term {}",
            info.owner, info.replicas, info.in_sync, info.term
        ))
    }
}

/// One Syncd client: a connection pool to one node.
#[derive(Debug)]
pub struct SyncdQueueSession {
    client: Client,
    queue: String,
    visibility_ms: u64,
}

impl QueueSession for SyncdQueueSession {
    type Receipt = String;

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        // Forwarded to the owner like every queue call: opens this node's peer connection too.
        self.client.queue(&self.queue).await?;
        Ok(())
    }

    async fn produce(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let body = std::str::from_utf8(body).context("Syncd bodies are text")?;
        self.client.produce(&self.queue, body).await?;
        Ok(())
    }

    async fn receive(&mut self, wait: Duration) -> anyhow::Result<Option<Received<String>>> {
        let request = ReceiveRequest {
            max: 1,
            visibility_ms: self.visibility_ms,
            wait_ms: millis(wait),
        };
        let mut got = self.client.receive(&self.queue, &request).await?;
        Ok(got.pop().map(|m| Received {
            body: m.body.into_bytes(),
            receipt: m.receipt,
        }))
    }

    async fn ack(&mut self, receipt: String) -> anyhow::Result<()> {
        let acked = self.client.ack(&self.queue, &[receipt]).await?;
        if acked != 1 {
            bail!("ack removed {acked} messages, not 1");
        }
        Ok(())
    }

    async fn close(self) {}
}
