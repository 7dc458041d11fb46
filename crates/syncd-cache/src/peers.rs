//! Calls to other cache peers: frames over HTTP/1.1 with one pooled client.

use std::time::Duration;

use bytes::Bytes;

use crate::wire::Pong;

/// A failed peer call: no connection, no answer in time, or an answer that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer call failed: {0}")]
pub struct PeerError(pub String);

/// The HTTP client (reqwest pools connections per peer address).
#[derive(Debug, Clone)]
pub struct PeerClient {
    client: reqwest::Client,
}

impl Default for PeerClient {
    fn default() -> Self {
        PeerClient {
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
        }
    }
}

impl PeerClient {
    /// POSTs a frame to `http://{addr}{path}` and returns the answer frame.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        frame: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, PeerError> {
        let response = self
            .client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/octet-stream")
            .timeout(timeout)
            .body(frame)
            .send()
            .await
            .map_err(|e| PeerError(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| PeerError(e.to_string()))?;
        if !status.is_success() {
            return Err(PeerError(format!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        Ok(body)
    }

    /// Asks `addr` who it is.
    pub async fn ping(&self, addr: &str, timeout: Duration) -> Result<Pong, PeerError> {
        let response = self
            .client
            .get(format!("http://{addr}/internal/cache/ping"))
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| PeerError(e.to_string()))?;
        if !response.status().is_success() {
            return Err(PeerError(format!("ping answered {}", response.status())));
        }
        response.json().await.map_err(|e| PeerError(e.to_string()))
    }
}
