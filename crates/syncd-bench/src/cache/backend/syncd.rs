//! Syncd's cache API (`/v1/cache/{key}`) over `reqwest`: one HTTP/1.1 keep-alive connection pool per client, to
//! node i mod n. Every node is a cache peer, so any node answers any key: from its own copy (`X-Cache: hit`) or by
//! asking the key's home node (`X-Cache: miss`).
//!
//! Plain `reqwest` rather than `syncd-client`: the benchmark needs the raw `X-Cache` header of every answer, and
//! the cache calls are a PUT and a GET of raw bytes, nothing a typed client would add to.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{StatusCode, Url};
use tokio::time::{Instant, sleep};

use super::{CacheBackend, CacheSession, HitMeaning, Lookup, ServerCounters};

/// The longest a single call may take before it counts as an error (a stuck node must not stall a run).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Syncd cluster running the cache role.
#[derive(Debug, Clone)]
pub struct SyncdCache {
    endpoints: Vec<Url>,
}

impl SyncdCache {
    /// The cluster whose nodes serve at `endpoints` (base URLs, e.g. `http://127.0.0.1:17280`).
    pub fn new(endpoints: &[String]) -> anyhow::Result<SyncdCache> {
        if endpoints.is_empty() {
            bail!("no endpoint");
        }
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let url = Url::parse(e).with_context(|| format!("bad endpoint URL {e:?}"))?;
                if url.cannot_be_a_base() {
                    bail!("{e:?} cannot be a base URL");
                }
                Ok(url)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(SyncdCache { endpoints })
    }
}

/// An HTTP client with its own connection pool.
fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .timeout(CALL_TIMEOUT)
        .build()
        .context("cannot build an HTTP client")
}

/// `base` followed by the path segments `segments`, each percent-encoded as one segment (a key may hold `/`, `%`,
/// spaces, ...).
pub fn url(base: &Url, segments: &[&str]) -> anyhow::Result<Url> {
    // URL parsers treat `.` and `..` as navigation, never as a segment's text: they would address another path.
    if let Some(bad) = segments.iter().find(|s| matches!(**s, "." | "..")) {
        bail!("{bad:?} cannot be sent as a path segment");
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("{base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The start of an error body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut short: String = text.chars().take(200).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

impl CacheBackend for SyncdCache {
    type Session = SyncdCacheSession;

    fn label(&self) -> String {
        "syncd".to_owned()
    }

    fn hit_meaning(&self) -> HitMeaning {
        HitMeaning::Local
    }

    async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let http = http()?;
        for endpoint in &self.endpoints {
            let readyz = url(endpoint, &["readyz"])?;
            loop {
                match http.get(readyz.clone()).send().await {
                    Ok(answer) if answer.status() == StatusCode::OK => break,
                    _ => {}
                }
                if Instant::now() >= deadline {
                    bail!("{endpoint} is not ready (GET /readyz) after {within:?}");
                }
                sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    async fn connect(&self, client: usize) -> anyhow::Result<SyncdCacheSession> {
        Ok(SyncdCacheSession {
            http: http()?,
            base: self.endpoints[client % self.endpoints.len()].clone(),
        })
    }

    async fn counters(&self) -> Option<ServerCounters> {
        let http = http().ok()?;
        let mut sum = ServerCounters::default();
        for endpoint in &self.endpoints {
            let answer = http
                .get(url(endpoint, &["v1", "cache"]).ok()?)
                .send()
                .await
                .ok()?;
            if !answer.status().is_success() {
                return None;
            }
            sum.add(&answer.json::<ServerCounters>().await.ok()?);
        }
        Some(sum)
    }
}

/// One Syncd client: a connection pool to one node.
#[derive(Debug)]
pub struct SyncdCacheSession {
    http: reqwest::Client,
    base: Url,
}

impl SyncdCacheSession {
    fn key_url(&self, key: &str) -> anyhow::Result<Url> {
        url(&self.base, &["v1", "cache", key])
    }
}

impl CacheSession for SyncdCacheSession {
    async fn get(&mut self, key: &str) -> anyhow::Result<Lookup> {
        let answer = self
            .http
            .get(self.key_url(key)?)
            .send()
            .await
            .with_context(|| format!("GET {key}"))?;
        let status = answer.status();
        let x_cache = answer
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase());
        // Read the whole body in every case: an unread body would cost the pooled connection.
        let body = answer
            .bytes()
            .await
            .with_context(|| format!("GET {key}: reading the body"))?;
        match status {
            StatusCode::OK => match x_cache.as_deref() {
                Some("hit") => Ok(Lookup::Local(body.to_vec())),
                Some("miss") => Ok(Lookup::Remote(body.to_vec())),
                Some(other) => bail!("GET {key}: X-Cache {other:?}, neither hit nor miss"),
                None => bail!("GET {key}: 200 without an X-Cache header"),
            },
            StatusCode::NOT_FOUND => Ok(Lookup::Absent),
            _ => bail!("GET {key}: {status}: {}", excerpt(&body)),
        }
    }

    async fn set(&mut self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let answer = self
            .http
            .put(self.key_url(key)?)
            .body(value.to_vec())
            .send()
            .await
            .with_context(|| format!("PUT {key}"))?;
        let status = answer.status();
        let body = answer
            .bytes()
            .await
            .with_context(|| format!("PUT {key}: reading the body"))?;
        if !status.is_success() {
            bail!("PUT {key}: {status}: {}", excerpt(&body));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_percent_encoded_segment() {
        let base = Url::parse("http://127.0.0.1:17280").unwrap();
        assert_eq!(
            url(&base, &["v1", "cache", "bench-17"]).unwrap().as_str(),
            "http://127.0.0.1:17280/v1/cache/bench-17"
        );
        assert_eq!(
            url(&base, &["v1", "cache", "a/b c%?#"]).unwrap().as_str(),
            "http://127.0.0.1:17280/v1/cache/a%2Fb%20c%25%3F%23"
        );
        let with_slash = Url::parse("http://127.0.0.1:17280/").unwrap();
        assert_eq!(
            url(&with_slash, &["readyz"]).unwrap().as_str(),
            "http://127.0.0.1:17280/readyz"
        );
        assert!(url(&base, &["v1", "cache", ".."]).is_err());
        assert!(SyncdCache::new(&[]).is_err());
        assert!(SyncdCache::new(&["not a url".to_owned()]).is_err());
        assert!(SyncdCache::new(&["http://127.0.0.1:1".to_owned()]).is_ok());
    }

    #[test]
    fn error_excerpts_are_short() {
        assert_eq!(excerpt(b"{\"code\":\"internal\"}"), "{\"code\":\"internal\"}");
        let long = vec![b'x'; 1000];
        assert_eq!(excerpt(&long).chars().count(), 201);
    }
}
