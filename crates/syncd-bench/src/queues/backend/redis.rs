//! Redis Streams used as a work queue, through the `redis` crate (tokio, one connection per client): `XADD` to
//! produce, one consumer group shared by every client, `XREADGROUP ... COUNT 1 BLOCK <wait> STREAMS <q> >` to
//! receive, `XACK` to acknowledge.
//!
//! `XACK` takes the entry out of the group's pending list; the entry itself stays in the stream (a real
//! deployment trims with `MAXLEN`/`MINID`, or `XDEL`s, which is one more write). Durability is the server's
//! `appendfsync` setting: with `always`, Redis fsyncs the append-only file before it sends the replies of an
//! event-loop iteration, so every `XADD`, `XREADGROUP` (a pending-list change) and `XACK` reply here follows an
//! fsync.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Value};
use tokio::time::{Instant, sleep};

use super::{QueueBackend, QueueSession, Received};

/// The consumer group every client reads through.
const GROUP: &str = "bench";
/// The stream field that carries the body.
const FIELD: &str = "b";

/// A Redis server.
#[derive(Debug, Clone)]
pub struct RedisStreams {
    url: String,
    /// Longest time a call may take: the receive wait plus a margin (the crate's default is 500 ms).
    response_timeout: Duration,
}

impl RedisStreams {
    /// The server at `endpoints[0]` (e.g. `redis://127.0.0.1:16379`); receives block for up to `receive_wait`.
    pub fn new(endpoints: &[String], receive_wait: Duration) -> anyhow::Result<RedisStreams> {
        let [url] = endpoints else {
            bail!("the redis backend takes one endpoint, e.g. redis://127.0.0.1:16379");
        };
        Ok(RedisStreams {
            url: url.clone(),
            response_timeout: receive_wait + Duration::from_secs(10),
        })
    }

    async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(self.response_timeout));
        redis::Client::open(self.url.as_str())
            .with_context(|| format!("bad redis URL {}", self.url))?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("cannot connect to {}", self.url))
    }
}

fn int(value: Option<&Value>) -> u64 {
    match value {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

impl QueueBackend for RedisStreams {
    type Session = RedisSession;

    fn label(&self) -> String {
        "redis streams".to_owned()
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(mut con) = self.connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut con).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!("{} does not answer PING after {within:?}", self.url);
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    async fn create_queue(&self, queue: &str) -> anyhow::Result<()> {
        let mut con = self.connection().await?;
        let _: String = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(queue)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await
            .with_context(|| format!("XGROUP CREATE {queue}"))?;
        Ok(())
    }

    async fn connect(&self, client: usize, queue: &str) -> anyhow::Result<RedisSession> {
        Ok(RedisSession {
            con: self.connection().await?,
            key: queue.to_owned(),
            consumer: format!("c{client}"),
        })
    }

    async fn remaining(&self, queue: &str) -> anyhow::Result<u64> {
        // Per group: `pending` (delivered, not acked) and `lag` (entries not yet delivered; Redis 7).
        let mut con = self.connection().await?;
        let groups: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(queue)
            .query_async(&mut con)
            .await
            .with_context(|| format!("XINFO GROUPS {queue}"))?;
        let group = groups
            .iter()
            .find(|g| matches!(g.get("name"), Some(Value::BulkString(n)) if n == GROUP.as_bytes()))
            .with_context(|| format!("no group {GROUP} on {queue}"))?;
        Ok(int(group.get("pending")) + int(group.get("lag")))
    }

    async fn placement(&self, _queue: &str) -> Option<String> {
        None
    }
}

/// One Redis client: its own connection and consumer name.
pub struct RedisSession {
    con: MultiplexedConnection,
    key: String,
    consumer: String,
}

impl QueueSession for RedisSession {
    type Receipt = String;

    async fn warm_up(&mut self) -> anyhow::Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.con).await?;
        Ok(())
    }

    async fn produce(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let _id: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg(FIELD)
            .arg(body)
            .query_async(&mut self.con)
            .await
            .context("XADD")?;
        Ok(())
    }

    async fn receive(&mut self, wait: Duration) -> anyhow::Result<Option<Received<String>>> {
        let block_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut self.con)
            .await
            .context("XREADGROUP")?;
        let Some(entry) = reply
            .and_then(|r| r.keys.into_iter().next())
            .and_then(|k| k.ids.into_iter().next())
        else {
            return Ok(None);
        };
        let body = match entry.map.get(FIELD) {
            Some(Value::BulkString(bytes)) => bytes.clone(),
            other => bail!("entry {} has no body field: {other:?}", entry.id),
        };
        Ok(Some(Received {
            body,
            receipt: entry.id,
        }))
    }

    async fn ack(&mut self, receipt: String) -> anyhow::Result<()> {
        let acked: u64 = redis::cmd("XACK")
            .arg(&self.key)
            .arg(GROUP)
            .arg(&receipt)
            .query_async(&mut self.con)
            .await
            .context("XACK")?;
        if acked != 1 {
            bail!("XACK {receipt} acknowledged {acked} entries, not 1");
        }
        Ok(())
    }

    async fn close(self) {}
}
