//! The one peer transport of the Syncd roles (locks, queues, cache): calls from a node to the `/internal/...`
//! routes of its peers.
//!
//! - One `reqwest` client (one connection pool) per peer address, kept for the life of the process, so calls reuse
//!   warm connections; short connect timeouts, `TCP_NODELAY`.
//! - JSON calls whose failures are decoded into [`PeerError`]: a problem+json answer keeps its code; no connection
//!   is [`PeerError::Unreachable`] (the call was certainly not carried out); a call sent but not answered (in time,
//!   or readably) is [`PeerError::NoAnswer`] (it may have been carried out).
//! - Binary frames for the cache's protocol messages.
//! - Fault injection for tests: `dial_overrides` make the node dial some peer addresses through others (the
//!   partitioning proxy of `syncd-nemesis`). Production never sets them.
//!
//! Raft's own RPCs (in `syncd-locks`) use [`PeerClient::http`] and [`PeerClient::url`] directly, because openraft
//! wants to know whether a request was ever sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use syncd_api::{ErrorCode, Problem};

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No connection: the call was not carried out; treat the peer as down for this call.
    #[error("{0}")]
    Unreachable(String),
    /// Sent, but no answer in time or no readable answer: the call may or may not have been carried out.
    #[error("{0}")]
    NoAnswer(String),
    /// The peer answered with a problem.
    #[error("{code:?}: {detail}")]
    Problem {
        /// Its code.
        code: ErrorCode,
        /// Its detail.
        detail: String,
    },
}

/// HTTP clients for a node's peers, one pool per address. Cheap to clone: clones share the pools.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    clients: Arc<Mutex<HashMap<String, reqwest::Client>>>,
    dial_overrides: Arc<BTreeMap<String, String>>,
}

impl PeerClient {
    /// A client that dials the addresses in `dial_overrides` through their values (tests only).
    pub fn with_dial_overrides(dial_overrides: BTreeMap<String, String>) -> Self {
        PeerClient {
            clients: Arc::default(),
            dial_overrides: Arc::new(dial_overrides),
        }
    }

    /// The pooled HTTP client for the peer at `addr` (`host:port`).
    pub fn http(&self, addr: &str) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(addr.to_owned())
            .or_insert_with(|| {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }

    /// The URL of `path` on the peer at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        let dialled = self.dial_overrides.get(addr).map_or(addr, String::as_str);
        format!("http://{dialled}{path}")
    }

    /// POSTs `body` as JSON to `path` on `addr` and decodes the JSON answer.
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let request = self
            .http(addr)
            .post(self.url(addr, path))
            .timeout(timeout)
            .json(body);
        let bytes = answer(request.send().await).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| PeerError::NoAnswer(format!("unreadable answer: {e}")))
    }

    /// GETs `path` on `addr` and decodes the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let request = self.http(addr).get(self.url(addr, path)).timeout(timeout);
        let bytes = answer(request.send().await).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| PeerError::NoAnswer(format!("unreadable answer: {e}")))
    }

    /// POSTs a binary frame to `path` on `addr` and returns the answer frame.
    pub async fn post_frame(
        &self,
        addr: &str,
        path: &str,
        frame: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        let request = self
            .http(addr)
            .post(self.url(addr, path))
            .header("content-type", "application/octet-stream")
            .timeout(timeout)
            .body(frame);
        answer(request.send().await).await
    }
}

/// The body of a successful answer, or the error it stands for.
async fn answer(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Bytes, PeerError> {
    let response = sent.map_err(|e| {
        if e.is_connect() {
            PeerError::Unreachable(e.to_string())
        } else {
            PeerError::NoAnswer(e.to_string())
        }
    })?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| PeerError::NoAnswer(e.to_string()))?;
    if status.is_success() {
        return Ok(bytes);
    }
    match serde_json::from_slice::<Problem>(&bytes) {
        Ok(problem) => Err(PeerError::Problem {
            code: problem.code,
            detail: problem.detail.unwrap_or_default(),
        }),
        Err(_) => Err(PeerError::NoAnswer(format!(
            "answered {status} without a problem body: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))),
    }
}

#[cfg(test)]
mod tests;
