//! memcached, through the `async-memcached` crate (tokio, text protocol): `get` and `set` on one TCP connection
//! per client, each call awaited before the next.
//!
//! memcached is a remote store: every GET is a network round trip to the one server, and its "hit" is only "the
//! key was there".

use std::time::Duration;

use anyhow::{Context, bail};
use async_memcached::{AsciiProtocol, Client};
use tokio::time::{Instant, sleep, timeout};

use super::{CacheBackend, CacheSession, HitMeaning, Lookup};

/// The longest a single call may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A memcached server.
#[derive(Debug, Clone)]
pub struct MemcachedCache {
    /// `tcp://host:port`, as the crate takes it.
    address: String,
}

/// `address` with a `tcp://` in front if it has no scheme: the crate parses its address as a URL, and a bare
/// `127.0.0.1:11311` is no URL (a scheme must start with a letter), whatever its documentation says.
fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("tcp://{address}")
    }
}

impl MemcachedCache {
    /// The server at `endpoints[0]` (`tcp://127.0.0.1:11311`, or `127.0.0.1:11311`).
    pub fn new(endpoints: &[String]) -> anyhow::Result<MemcachedCache> {
        let [address] = endpoints else {
            bail!("the memcached backend takes one endpoint, e.g. tcp://127.0.0.1:11311");
        };
        Ok(MemcachedCache {
            address: with_scheme(address),
        })
    }

    async fn connection(&self) -> anyhow::Result<Client> {
        match timeout(Duration::from_secs(5), Client::new(&self.address)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(e).with_context(|| format!("cannot connect to {}", self.address)),
            Err(_) => bail!("cannot connect to {}: timed out", self.address),
        }
    }
}

impl CacheBackend for MemcachedCache {
    type Session = MemcachedSession;

    fn label(&self) -> String {
        "memcached".to_owned()
    }

    fn hit_meaning(&self) -> HitMeaning {
        HitMeaning::Found
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.connection().await {
                Ok(mut client) => match timeout(Duration::from_secs(5), client.version()).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => format!("version: {e}"),
                    Err(_) => "version: no answer".to_owned(),
                },
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} does not answer `version` after {within:?} ({last})",
                    self.address
                );
            }
            sleep(Duration::from_millis(200)).await;
        }
    }

    async fn connect(&self, _client: usize) -> anyhow::Result<MemcachedSession> {
        Ok(MemcachedSession {
            client: self.connection().await?,
            server: self.clone(),
        })
    }
}

/// One memcached client: its own connection.
pub struct MemcachedSession {
    client: Client,
    server: MemcachedCache,
}

impl MemcachedSession {
    /// The connection, opened again if a failed or timed-out call closed it (the crate closes a connection whose
    /// answer was not read to the end, since the rest would be taken for the next answer).
    async fn client(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.is_closed() {
            self.client = self.server.connection().await?;
        }
        Ok(&mut self.client)
    }
}

impl CacheSession for MemcachedSession {
    async fn get(&mut self, key: &str) -> anyhow::Result<Lookup> {
        let client = self.client().await?;
        let found = match timeout(CALL_TIMEOUT, client.get(key)).await {
            Ok(found) => found.with_context(|| format!("get {key}"))?,
            Err(_) => bail!("get {key}: no answer after {CALL_TIMEOUT:?}"),
        };
        Ok(match found {
            Some(value) => Lookup::Remote(value.data.unwrap_or_default()),
            None => Lookup::Absent,
        })
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let client = self.client().await?;
        match timeout(CALL_TIMEOUT, client.set(key, value, None, None)).await {
            Ok(stored) => stored.with_context(|| format!("set {key}")),
            Err(_) => bail!("set {key}: no answer after {CALL_TIMEOUT:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(with_scheme("127.0.0.1:11311"), "tcp://127.0.0.1:11311");
        assert_eq!(
            with_scheme("tcp://127.0.0.1:11311"),
            "tcp://127.0.0.1:11311"
        );
        assert_eq!(
            with_scheme("unix:///run/memcached.sock"),
            "unix:///run/memcached.sock"
        );
        assert!(MemcachedCache::new(&[]).is_err());
        let two = ["a:1".to_owned(), "b:2".to_owned()];
        assert!(MemcachedCache::new(&two).is_err());
    }
}
