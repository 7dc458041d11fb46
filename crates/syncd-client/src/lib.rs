//! A typed async client for the Syncd REST API, used by integration tests, the benchmark tool and `syncctl`.
//!
//! This crate owns the HTTP side of the public contract from the caller's end: building URLs (lock names are
//! percent-encoded into the path), per-request timeouts, sending the [`syncd_api`] request bodies, decoding the
//! response bodies, and turning `application/problem+json` answers into [`ClientError::Api`]. It holds no state
//! beyond a connection pool; any node of a role accepts any call, so one [`Client`] per node address is enough.
//!
//! [`Client`] is cheap to clone (clones share the pool). Calls time out after [`DEFAULT_TIMEOUT`] (see
//! [`Client::with_timeout`]), except an acquire that waits, which gets at least `wait_ms` +
//! [`ACQUIRE_TIMEOUT_SLACK`]. For tests that send malformed input, [`Client::post_raw`] and [`Client::get_raw`]
//! send bytes as given and return the status and body unparsed.
//!
//! ```no_run
//! use syncd_client::syncd_api::locks::{AcquireRequest, LockMode, ReleaseRequest};
//! use syncd_client::{Client, ClientError, ErrorCode};
//!
//! # async fn run() -> Result<(), ClientError> {
//! let client = Client::new("http://127.0.0.1:7080");
//! let request = AcquireRequest {
//!     owner: "worker-1".into(),
//!     mode: LockMode::Exclusive,
//!     ttl_ms: 30_000,
//!     wait_ms: 5_000,
//! };
//! match client.acquire("orders", &request).await {
//!     Ok(grant) => {
//!         println!("holding orders with fencing token {}", grant.token);
//!         let release = ReleaseRequest { owner: "worker-1".into(), token: Some(grant.token) };
//!         client.release("orders", &release).await?;
//!     }
//!     Err(e) if e.code() == Some(ErrorCode::LockConflict) => println!("busy, try later"),
//!     Err(e) if e.is_retryable() => println!("cluster not ready: {e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(())
//! # }
//! ```

mod error;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use syncd_api::locks::{
    AcquireRequest, AcquireResponse, LockInfo, LockList, ReleaseRequest, ReleaseResponse,
    RenewRequest, RenewResponse,
};
use syncd_api::queues::{
    AckResponse, Batch, NackResponse, NewMessage, ProducedBatch, ProducedOne, QueueInfo, QueueList,
    ReceiptsRequest, ReceiveRequest, ReceiveResponse, ReceivedMessage, RingInfo,
};
use syncd_api::status::NodeStatus;

pub use error::ClientError;
pub use syncd_api::{self, ErrorCode, Problem};

/// Smallest timeout of a membership change (the server allows a learner 20 s to catch up).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(40);
/// The time limit of a call, unless set with [`Client::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// An acquire with `wait_ms` gets at least `wait_ms` plus this long before the client gives up on it.
pub const ACQUIRE_TIMEOUT_SLACK: Duration = Duration::from_secs(10);

/// A client for one Syncd node.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// The parsed base URL, or why it does not parse (reported by every call).
    base: Result<Url, String>,
    timeout: Duration,
}

impl Client {
    /// A client for the node at `base_url`, e.g. `http://127.0.0.1:7080` (a path prefix is kept).
    ///
    /// Never fails: a base URL that does not parse makes every call fail with [`ClientError::InvalidUrl`].
    pub fn new(base_url: impl Into<String>) -> Client {
        Client::with_http(base_url, reqwest::Client::new())
    }

    /// Like [`Client::new`], over a `reqwest::Client` configured by the caller (pool size, proxies, ...).
    /// Per-request timeouts set by this client override the one configured on `http`.
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Client {
        Client {
            http,
            base: parse_base(base_url.into()),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with a different time limit for calls other than waiting acquires.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The time limit for calls other than waiting acquires.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The base URL, as given when it does not parse.
    pub fn base_url(&self) -> &str {
        match &self.base {
            Ok(url) => url.as_str(),
            Err(given) => given,
        }
    }

    /// `POST /v1/locks/{name}/acquire`. With `wait_ms > 0` the call blocks until granted or until the wait ends
    /// (then `lock_conflict`); its timeout is at least `wait_ms` + [`ACQUIRE_TIMEOUT_SLACK`].
    pub async fn acquire(
        &self,
        name: &str,
        request: &AcquireRequest,
    ) -> Result<AcquireResponse, ClientError> {
        let url = self.url(&["v1", "locks", name, "acquire"])?;
        let timeout = acquire_timeout(self.timeout, request.wait_ms);
        self.call(Method::POST, url, Some(request), timeout).await
    }

    /// `POST /v1/locks/{name}/release`.
    pub async fn release(
        &self,
        name: &str,
        request: &ReleaseRequest,
    ) -> Result<ReleaseResponse, ClientError> {
        let url = self.url(&["v1", "locks", name, "release"])?;
        self.call(Method::POST, url, Some(request), self.timeout)
            .await
    }

    /// `POST /v1/locks/{name}/renew`.
    pub async fn renew(
        &self,
        name: &str,
        request: &RenewRequest,
    ) -> Result<RenewResponse, ClientError> {
        let url = self.url(&["v1", "locks", name, "renew"])?;
        self.call(Method::POST, url, Some(request), self.timeout)
            .await
    }

    /// `GET /v1/locks/{name}`: holders and waiters of one lock.
    pub async fn lock(&self, name: &str) -> Result<LockInfo, ClientError> {
        let url = self.url(&["v1", "locks", name])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `GET /v1/locks`: every lock with holders or waiters.
    pub async fn locks(&self) -> Result<LockList, ClientError> {
        let url = self.url(&["v1", "locks"])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `GET /v1/status`: the node's id, roles, version and raft view.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let url = self.url(&["v1", "status"])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `POST /internal/locks/membership`: changes the lock raft group (the operator's call; any lock node forwards
    /// it to the leader). Adding a learner waits until it has caught up, so give this call a generous timeout.
    pub async fn change_lock_membership(
        &self,
        change: &syncd_api::locks::MembershipChange,
    ) -> Result<(), ClientError> {
        let url = self.url(&["internal", "locks", "membership"])?;
        let _: serde_json::Value = self
            .call(
                Method::POST,
                url,
                Some(change),
                self.timeout.max(MEMBERSHIP_TIMEOUT),
            )
            .await?;
        Ok(())
    }

    /// `POST /v1/queues/{queue}/messages` with one message: its id once it is durable on every in-sync copy.
    pub async fn produce(&self, queue: &str, body: &str) -> Result<String, ClientError> {
        self.produce_once(queue, body, None).await
    }

    /// Like [`Self::produce`] with a deduplication key: retrying with the same key within 5 minutes stores
    /// nothing more and answers the first message's id, so a producer can retry after an unknown outcome.
    pub async fn produce_dedup(
        &self,
        queue: &str,
        body: &str,
        dedup_id: &str,
    ) -> Result<String, ClientError> {
        self.produce_once(queue, body, Some(dedup_id)).await
    }

    async fn produce_once(
        &self,
        queue: &str,
        body: &str,
        dedup_id: Option<&str>,
    ) -> Result<String, ClientError> {
        let url = self.url(&["v1", "queues", queue, "messages"])?;
        let request = NewMessage {
            body: body.to_owned(),
            dedup_id: dedup_id.map(str::to_owned),
        };
        let produced: ProducedOne = self
            .call(Method::POST, url, Some(&request), self.timeout)
            .await?;
        Ok(produced.id)
    }

    /// `POST /v1/queues/{queue}/messages` with a batch: the ids in order.
    pub async fn produce_batch(
        &self,
        queue: &str,
        bodies: &[String],
    ) -> Result<Vec<String>, ClientError> {
        let url = self.url(&["v1", "queues", queue, "messages"])?;
        let request = Batch {
            messages: bodies
                .iter()
                .map(|body| NewMessage {
                    body: body.clone(),
                    dedup_id: None,
                })
                .collect(),
        };
        let produced: ProducedBatch = self
            .call(Method::POST, url, Some(&request), self.timeout)
            .await?;
        Ok(produced.ids)
    }

    /// `POST /v1/queues/{queue}/receive`; a long-poll gets `wait_ms` on top of the timeout.
    pub async fn receive(
        &self,
        queue: &str,
        request: &ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, ClientError> {
        let url = self.url(&["v1", "queues", queue, "receive"])?;
        let timeout = acquire_timeout(self.timeout, request.wait_ms);
        let received: ReceiveResponse =
            self.call(Method::POST, url, Some(request), timeout).await?;
        Ok(received.messages)
    }

    /// `POST /v1/queues/{queue}/ack`: how many messages were removed.
    pub async fn ack(&self, queue: &str, receipts: &[String]) -> Result<usize, ClientError> {
        let url = self.url(&["v1", "queues", queue, "ack"])?;
        let request = ReceiptsRequest {
            receipts: receipts.to_vec(),
        };
        let acked: AckResponse = self
            .call(Method::POST, url, Some(&request), self.timeout)
            .await?;
        Ok(acked.acked)
    }

    /// `POST /v1/queues/{queue}/nack`: how many messages are ready again.
    pub async fn nack(&self, queue: &str, receipts: &[String]) -> Result<usize, ClientError> {
        let url = self.url(&["v1", "queues", queue, "nack"])?;
        let request = ReceiptsRequest {
            receipts: receipts.to_vec(),
        };
        let requeued: NackResponse = self
            .call(Method::POST, url, Some(&request), self.timeout)
            .await?;
        Ok(requeued.requeued)
    }

    /// `GET /v1/queues/{queue}`.
    pub async fn queue(&self, queue: &str) -> Result<QueueInfo, ClientError> {
        let url = self.url(&["v1", "queues", queue])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `GET /v1/queues`.
    pub async fn queues(&self) -> Result<QueueList, ClientError> {
        let url = self.url(&["v1", "queues"])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `GET /v1/ring`.
    pub async fn ring(&self) -> Result<RingInfo, ClientError> {
        let url = self.url(&["v1", "ring"])?;
        self.call(Method::GET, url, None::<&()>, self.timeout).await
    }

    /// `POST /internal/ring`: the next queue ring membership (`addrs` names new members' addresses when peers
    /// are static). Any member accepts it and spreads it.
    pub async fn change_ring(
        &self,
        members: &[u64],
        addrs: &std::collections::BTreeMap<u64, String>,
    ) -> Result<RingInfo, ClientError> {
        let url = self.url(&["internal", "ring"])?;
        let request = serde_json::json!({ "members": members, "addrs": addrs });
        self.call(Method::POST, url, Some(&request), self.timeout)
            .await
    }

    /// `GET /healthz`: `Ok` when the process answers with a 2xx.
    pub async fn healthz(&self) -> Result<(), ClientError> {
        let url = self.url(&["healthz"])?;
        let (status, body) = self.exchange(self.http.get(url), self.timeout).await?;
        if is_success(status) {
            Ok(())
        } else {
            Err(ClientError::from_response(status, &body))
        }
    }

    /// `GET /readyz`: `true` on 2xx, `false` on 503 (not ready yet), an error on anything else.
    pub async fn readyz(&self) -> Result<bool, ClientError> {
        let url = self.url(&["readyz"])?;
        let (status, body) = self.exchange(self.http.get(url), self.timeout).await?;
        match status {
            _ if is_success(status) => Ok(true),
            503 => Ok(false),
            _ => Err(ClientError::from_response(status, &body)),
        }
    }

    /// `POST {base}{path}` with `body` as given and, when `content_type` is `Some`, that `Content-Type` (none
    /// otherwise). `path` is used verbatim (already encoded, query allowed). Answers the status and body whatever
    /// the status; only transport failures and an unusable URL are errors. For tests of malformed input.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut request = self.http.post(self.raw_url(path)?).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.exchange(request, self.timeout).await
    }

    /// `GET {base}{path}`, like [`Client::post_raw`].
    pub async fn get_raw(&self, path: &str) -> Result<(u16, Vec<u8>), ClientError> {
        let request = self.http.get(self.raw_url(path)?);
        self.exchange(request, self.timeout).await
    }

    /// The base URL followed by `segments`, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        // URL parsers treat `.`, `..` and their encodings (`%2e`, ...) as navigation, never as a segment's text;
        // `Url` would silently drop them and send the call elsewhere, so refuse them here.
        if let Some(bad) = segments.iter().find(|s| matches!(**s, "." | "..")) {
            return Err(ClientError::InvalidUrl(format!(
                "{bad:?} cannot be sent as a path segment"
            )));
        }
        let mut url = self.base.clone().map_err(ClientError::InvalidUrl)?;
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidUrl("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The base URL followed by `path` verbatim.
    fn raw_url(&self, path: &str) -> Result<Url, ClientError> {
        let base = self
            .base
            .as_ref()
            .map_err(|e| ClientError::InvalidUrl(e.clone()))?;
        let joined = join_raw(base.as_str(), path);
        Url::parse(&joined).map_err(|e| ClientError::InvalidUrl(format!("{joined:?}: {e}")))
    }

    /// Sends a JSON request (or none) and decodes a 2xx JSON answer.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let (status, bytes) = self.exchange(request, timeout).await?;
        decode(status, &bytes)
    }

    /// Sends `request` with `timeout` and reads the whole answer.
    async fn exchange(
        &self,
        request: RequestBuilder,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let response = request.timeout(timeout).send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok((status, body.to_vec()))
    }
}

/// Parses and checks a base URL; the error is a message for [`ClientError::InvalidUrl`].
fn parse_base(given: String) -> Result<Url, String> {
    let url = Url::parse(&given).map_err(|e| format!("base URL {given:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!("base URL {given:?}: not an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "base URL {given:?}: must not have a query or fragment"
        ));
    }
    Ok(url)
}

/// `base` without its trailing slashes, then `path` with exactly one slash between them.
fn join_raw(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The time limit of an acquire that may wait `wait_ms`.
fn acquire_timeout(default: Duration, wait_ms: u64) -> Duration {
    default.max(Duration::from_millis(wait_ms).saturating_add(ACQUIRE_TIMEOUT_SLACK))
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A 2xx answer's body as `T`; any other answer as the error it carries.
fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, ClientError> {
    if !is_success(status) {
        return Err(ClientError::from_response(status, body));
    }
    serde_json::from_slice(body).map_err(|e| {
        ClientError::Decode(format!(
            "status {status}, expected {}: {e}; body: {}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use syncd_api::locks::LockMode;

    fn path(client: &Client, segments: &[&str]) -> String {
        client.url(segments).unwrap().path().to_owned()
    }

    #[test]
    fn lock_names_are_one_encoded_segment() {
        let c = Client::new("http://127.0.0.1:7080");
        let cases = [
            ("orders", "orders"),
            ("Orders-2024.v1:shard_7", "Orders-2024.v1:shard_7"),
            ("a/b", "a%2Fb"),
            ("a b", "a%20b"),
            ("100%", "100%25"),
            ("%2e%2E", "%252e%252E"),
            ("q?x=1#f", "q%3Fx=1%23f"),
            ("é", "%C3%A9"),
            ("...", "..."),
            ("", ""),
        ];
        for (name, encoded) in cases {
            assert_eq!(
                path(&c, &["v1", "locks", name, "acquire"]),
                format!("/v1/locks/{encoded}/acquire"),
                "name {name:?}"
            );
        }
    }

    #[test]
    fn dot_names_are_refused_not_dropped() {
        let c = Client::new("http://127.0.0.1:7080");
        for name in [".", ".."] {
            let err = c.url(&["v1", "locks", name, "acquire"]).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl(_)),
                "{name:?}: {err:?}"
            );
        }
    }

    #[test]
    fn base_urls() {
        for base in ["http://h:1", "http://h:1/"] {
            assert_eq!(path(&Client::new(base), &["v1", "locks"]), "/v1/locks");
        }
        for base in ["http://h:1/prefix", "http://h:1/prefix/"] {
            assert_eq!(path(&Client::new(base), &["readyz"]), "/prefix/readyz");
        }
        for base in [
            "127.0.0.1:7080",
            "not a url",
            "mailto:x@y",
            "http://h/?q=1",
            "",
        ] {
            let c = Client::new(base);
            assert!(
                matches!(c.url(&["healthz"]), Err(ClientError::InvalidUrl(_))),
                "{base:?}"
            );
            assert!(
                matches!(c.raw_url("/healthz"), Err(ClientError::InvalidUrl(_))),
                "{base:?}"
            );
        }
        assert_eq!(Client::new("http://h:1").base_url(), "http://h:1/");
        assert_eq!(
            Client::new("nope").base_url(),
            "base URL \"nope\": relative URL without a base"
        );
    }

    #[test]
    fn raw_paths_are_verbatim() {
        let c = Client::new("http://h:1/");
        let url = c.raw_url("/v1/locks/a%2Fb/acquire?x=1").unwrap();
        assert_eq!(url.as_str(), "http://h:1/v1/locks/a%2Fb/acquire?x=1");
        assert_eq!(c.raw_url("healthz").unwrap().as_str(), "http://h:1/healthz");
        let prefixed = Client::new("http://h:1/p");
        assert_eq!(
            prefixed.raw_url("/readyz").unwrap().as_str(),
            "http://h:1/p/readyz"
        );
    }

    #[test]
    fn acquire_timeouts() {
        let d = DEFAULT_TIMEOUT;
        assert_eq!(acquire_timeout(d, 0), d);
        assert_eq!(acquire_timeout(d, 5_000), Duration::from_secs(15));
        assert_eq!(
            acquire_timeout(Duration::from_secs(60), 5_000),
            Duration::from_secs(60)
        );
        assert_eq!(acquire_timeout(d, 120_000), Duration::from_secs(130));
        assert!(acquire_timeout(d, u64::MAX) > Duration::from_secs(1 << 40));
        let c = Client::new("http://h").with_timeout(Duration::from_secs(3));
        assert_eq!(c.clone().timeout(), Duration::from_secs(3));
    }

    #[test]
    fn decoding() {
        let ok: RenewResponse = decode(200, br#"{"expires_at_ms":42}"#).unwrap();
        assert_eq!(ok.expires_at_ms, 42);
        let bad = decode::<RenewResponse>(200, b"<html>").unwrap_err();
        assert!(
            matches!(&bad, ClientError::Decode(m) if m.contains("RenewResponse")),
            "{bad:?}"
        );
        let problem =
            br#"{"type":"about:blank","title":"Lock not held","status":404,"code":"not_held"}"#;
        let err = decode::<RenewResponse>(404, problem).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotHeld));
    }

    /// A one-shot HTTP/1.1 peer on a std thread: answers `status` with `body`, hands back the request head.
    fn canned(status: u16, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let peer = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut request_body = vec![0; length];
            reader.read_exact(&mut request_body).unwrap();
            head.push_str(&String::from_utf8(request_body).unwrap());
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = stream;
            stream.write_all(answer.as_bytes()).unwrap();
            head
        });
        (base, peer)
    }

    #[tokio::test]
    async fn acquire_over_the_wire() {
        let grant = r#"{"name":"a b","owner":"w","mode":"shared","token":7,"expires_at_ms":9}"#;
        let (base, peer) = canned(200, grant);
        let request = AcquireRequest {
            owner: "w".into(),
            mode: LockMode::Shared,
            ttl_ms: 1_000,
            wait_ms: 0,
        };
        let got = Client::new(base).acquire("a b", &request).await.unwrap();
        assert_eq!(got.token, 7);
        assert_eq!(got.mode, LockMode::Shared);
        let head = peer.join().unwrap();
        assert!(
            head.starts_with("POST /v1/locks/a%20b/acquire HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        assert!(
            head.ends_with(r#"{"owner":"w","mode":"shared","ttl_ms":1000,"wait_ms":0}"#),
            "{head}"
        );
    }

    #[tokio::test]
    async fn problems_over_the_wire() {
        let problem =
            r#"{"type":"about:blank","title":"Lock conflict","status":409,"code":"lock_conflict"}"#;
        let (base, peer) = canned(409, problem);
        let err = Client::new(base).lock("x").await.unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::LockConflict));
        assert!(
            peer.join()
                .unwrap()
                .starts_with("GET /v1/locks/x HTTP/1.1\r\n")
        );

        let (base, peer) = canned(503, "{}");
        assert!(!Client::new(base).readyz().await.unwrap());
        peer.join().unwrap();

        let (base, peer) = canned(400, "not json");
        let (status, body) = Client::new(base)
            .post_raw("/v1/locks/x/acquire", b"{".to_vec(), None)
            .await
            .unwrap();
        assert_eq!((status, body.as_slice()), (400, &b"not json"[..]));
        let head = peer.join().unwrap();
        assert!(
            !head.to_ascii_lowercase().contains("content-type"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_a_retryable_transport_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Client::new(format!("http://127.0.0.1:{port}"))
            .healthz()
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
        assert!(err.is_retryable());
    }
}
