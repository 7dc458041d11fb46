//! Calls to other queue nodes: one HTTP connection pool per peer address, JSON bodies, problem answers decoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use syncd_api::{ErrorCode, Problem};

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No connection, no answer in time, or an unreadable answer: treat the peer as down for this call.
    #[error("{0}")]
    Unreachable(String),
    /// The peer answered with a problem.
    #[error("{code:?}: {detail}")]
    Problem {
        /// Its code.
        code: ErrorCode,
        /// Its detail.
        detail: String,
    },
}

/// A pool of HTTP clients, one per peer address.
#[derive(Debug, Clone, Default)]
pub struct PeerClient {
    clients: Arc<Mutex<HashMap<String, reqwest::Client>>>,
}

impl PeerClient {
    fn client(&self, addr: &str) -> reqwest::Client {
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

    /// POSTs `body` as JSON to `http://{addr}{path}` and decodes the answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let request = self
            .client(addr)
            .post(format!("http://{addr}{path}"))
            .timeout(timeout)
            .json(body);
        Self::decode(request.send().await).await
    }

    /// GETs `http://{addr}{path}` and decodes the answer.
    pub async fn get<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<T, PeerError> {
        let request = self
            .client(addr)
            .get(format!("http://{addr}{path}"))
            .timeout(timeout);
        Self::decode(request.send().await).await
    }

    async fn decode<T: DeserializeOwned>(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, PeerError> {
        let response = sent.map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| PeerError::Unreachable(format!("unreadable answer: {e}")));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(PeerError::Problem {
                code: problem.code,
                detail: problem.detail.unwrap_or_default(),
            }),
            Err(_) => Err(PeerError::Unreachable(format!(
                "answered {status} without a problem body"
            ))),
        }
    }
}
