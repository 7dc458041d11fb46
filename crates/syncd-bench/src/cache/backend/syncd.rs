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

    /// A stand-in for a cache node, on loopback, following the API contract: answers by method and path, one
    /// request per connection (`Connection: close`).
    fn fake_node() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = stream.read(&mut chunk).unwrap();
                    assert!(n > 0, "the client closed early");
                    request.extend_from_slice(&chunk[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while request.len() < head_end + length {
                    let n = stream.read(&mut chunk).unwrap();
                    request.extend_from_slice(&chunk[..n]);
                }
                let body = &request[head_end..];
                let line = head.lines().next().unwrap_or("").to_owned();
                let (status, headers, answer): (&str, &str, &[u8]) = match line.as_str() {
                    "get /readyz http/1.1" => ("200 OK", "", b""),
                    "get /v1/cache/hot http/1.1" => ("200 OK", "X-Cache: hit\r\nX-Cache-State: S\r\n", b"abc"),
                    "get /v1/cache/a%2fb%20c http/1.1" => ("200 OK", "X-Cache: HIT\r\n", b"odd"),
                    "get /v1/cache/cold http/1.1" => ("200 OK", "X-Cache: miss\r\nX-Cache-State: E\r\n", b"xyz"),
                    "get /v1/cache/bare http/1.1" => ("200 OK", "", b"xyz"),
                    "get /v1/cache/gone http/1.1" => (
                        "404 Not Found",
                        "Content-Type: application/problem+json\r\n",
                        br#"{"code":"not_found"}"#,
                    ),
                    "put /v1/cache/k http/1.1" if body == b"value" => ("204 No Content", "", b""),
                    "get /v1/cache http/1.1" => (
                        "200 OK",
                        "Content-Type: application/json\r\n",
                        br#"{"capacity":10,"entries":2,"hits":5,"misses":1,"evictions":0,"invalidations_sent":3,"invalidations_received":4}"#,
                    ),
                    _ => (
                        "500 Internal Server Error",
                        "Content-Type: application/problem+json\r\n",
                        br#"{"code":"internal"}"#,
                    ),
                };
                let mut out = format!(
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                )
                .into_bytes();
                out.extend_from_slice(answer);
                stream.write_all(&out).unwrap();
            }
        });
        format!("http://{address}")
    }

    #[tokio::test]
    async fn sessions_read_the_contract() {
        let endpoint = fake_node();
        let cache = SyncdCache::new(std::slice::from_ref(&endpoint)).unwrap();
        cache.wait_ready(Duration::from_secs(5)).await.unwrap();
        let mut session = cache.connect(3).await.unwrap();
        assert_eq!(
            session.get("hot").await.unwrap(),
            Lookup::Local(b"abc".to_vec())
        );
        assert_eq!(
            session.get("a/b c").await.unwrap(),
            Lookup::Local(b"odd".to_vec())
        );
        assert_eq!(
            session.get("cold").await.unwrap(),
            Lookup::Remote(b"xyz".to_vec())
        );
        assert_eq!(session.get("gone").await.unwrap(), Lookup::Absent);
        let bare = session.get("bare").await.unwrap_err();
        assert!(
            format!("{bare:#}").contains("without an X-Cache header"),
            "{bare:#}"
        );
        let broken = session.get("broken").await.unwrap_err();
        assert!(format!("{broken:#}").contains("500"), "{broken:#}");
        assert!(format!("{broken:#}").contains("internal"), "{broken:#}");
        session.set("k", b"value").await.unwrap();
        assert!(session.set("k", b"other").await.is_err());
        let counters = cache.counters().await.unwrap();
        assert_eq!(counters.hits, 5);
        assert_eq!(counters.invalidations_received, 4);
    }

    #[test]
    fn error_excerpts_are_short() {
        assert_eq!(
            excerpt(b"{\"code\":\"internal\"}"),
            "{\"code\":\"internal\"}"
        );
        let long = vec![b'x'; 1000];
        assert_eq!(excerpt(&long).chars().count(), 201);
    }
}
