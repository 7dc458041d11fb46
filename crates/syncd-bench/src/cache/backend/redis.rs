//! Redis as a remote cache, through the `redis` crate (tokio): `GET` and `SET` on one multiplexed connection per
//! client, each call awaited before the next, so a client has one request in flight like a Syncd client.
//!
//! Redis is a remote store: every GET is a network round trip to the one server, and its "hit" is only "the key
//! was there". Run it without persistence (`--save '' --appendonly no`) to compare with a cache.

use std::time::Duration;

use anyhow::{Context, bail};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::time::{Instant, sleep};

use super::{CacheBackend, CacheSession, HitMeaning, Lookup};

/// The longest a single call may take before it counts as an error (the crate's default is 500 ms, which a
/// loaded 2-core machine can exceed without anything being wrong).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis server.
#[derive(Debug, Clone)]
pub struct RedisCache {
    url: String,
}

impl RedisCache {
    /// The server at `endpoints[0]` (e.g. `redis://127.0.0.1:16389`).
    pub fn new(endpoints: &[String]) -> anyhow::Result<RedisCache> {
        let [url] = endpoints else {
            bail!("the redis backend takes one endpoint, e.g. redis://127.0.0.1:16389");
        };
        Ok(RedisCache { url: url.clone() })
    }

    async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(CALL_TIMEOUT));
        redis::Client::open(self.url.as_str())
            .with_context(|| format!("bad redis URL {}", self.url))?
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .with_context(|| format!("cannot connect to {}", self.url))
    }
}

impl CacheBackend for RedisCache {
    type Session = RedisCacheSession;

    fn label(&self) -> String {
        "redis".to_owned()
    }

    fn hit_meaning(&self) -> HitMeaning {
        HitMeaning::Found
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.connection().await {
                Ok(mut con) => {
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut con).await;
                    match pong {
                        Ok(_) => return Ok(()),
                        Err(e) => format!("PING: {e}"),
                    }
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} does not answer PING after {within:?} ({last})",
                    self.url
                );
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    async fn connect(&self, _client: usize) -> anyhow::Result<RedisCacheSession> {
        Ok(RedisCacheSession {
            con: self.connection().await?,
        })
    }
}

/// One Redis client: its own connection.
pub struct RedisCacheSession {
    con: MultiplexedConnection,
}

impl CacheSession for RedisCacheSession {
    async fn get(&mut self, key: &str) -> anyhow::Result<Lookup> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.con)
            .await
            .with_context(|| format!("GET {key}"))?;
        Ok(value.map_or(Lookup::Absent, Lookup::Remote))
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let _: String = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.con)
            .await
            .with_context(|| format!("SET {key}"))?;
        Ok(())
    }
}
