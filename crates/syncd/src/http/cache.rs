//! The `/v1/cache` routes: raw-byte values, any-byte keys (percent-encoded in the path), MESI state headers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use syncd_api::ErrorCode;
use syncd_cache::{CacheError, CacheService};

use super::error::{ApiError, raw_body};

/// Longest cache key, in bytes (after percent-decoding).
pub const MAX_KEY_BYTES: usize = 1024;

/// The cache routes; `max_value_bytes` bounds a PUT body.
pub fn routes<S: Clone + Send + Sync + 'static>(
    cache: Arc<CacheService>,
    max_value_bytes: usize,
) -> Router<S> {
    Router::new()
        .route("/v1/cache", get(stats))
        .route(
            "/v1/cache/{key}",
            get(read)
                .put(write)
                .delete(delete)
                .layer(axum::extract::DefaultBodyLimit::max(max_value_bytes)),
        )
        .route("/v1/cache/{key}/state", get(state))
        .with_state(cache)
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

/// A cache key from the path: percent-decoded to bytes, 1..=1024 of them.
struct CacheKey(Bytes);

impl<S: Send + Sync> FromRequestParts<S> for CacheKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The key is the fourth segment of `/v1/cache/{key}[/state]`, taken from the raw path: axum's path
        // parameters must decode to UTF-8, and cache keys need not.
        let raw = parts.uri.path().split('/').nth(3).unwrap_or_default();
        let key: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(ApiError::invalid(format!(
                "a cache key is 1..={MAX_KEY_BYTES} bytes (percent-encoded in the path); this one is {}",
                key.len()
            )));
        }
        Ok(CacheKey(Bytes::from(key)))
    }
}

async fn read(
    State(cache): State<Arc<CacheService>>,
    CacheKey(key): CacheKey,
) -> Result<Response, ApiError> {
    let read = cache.get(key).await?;
    let Some(value) = read.value else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no value under this key",
        ));
    };
    let mut response = ([("content-type", "application/octet-stream")], value).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-cache",
        HeaderValue::from_static(if read.hit { "hit" } else { "miss" }),
    );
    headers.insert(
        "x-cache-state",
        HeaderValue::from_static(read.state.as_str()),
    );
    Ok(response)
}

async fn write(
    State(cache): State<Arc<CacheService>>,
    CacheKey(key): CacheKey,
    request: Request,
) -> Result<StatusCode, ApiError> {
    let value = raw_body(request, &()).await?;
    cache.put(key, value).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(
    State(cache): State<Arc<CacheService>>,
    CacheKey(key): CacheKey,
) -> Result<StatusCode, ApiError> {
    cache.delete(key).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn state(
    State(cache): State<Arc<CacheService>>,
    CacheKey(key): CacheKey,
) -> Json<serde_json::Value> {
    let (state, home) = cache.state(&key);
    Json(serde_json::json!({
        "key": String::from_utf8_lossy(&key),
        "state": state.as_str(),
        "home": home,
    }))
}

async fn stats(State(cache): State<Arc<CacheService>>) -> Json<syncd_cache::CacheStats> {
    Json(cache.stats())
}
