//! The one place errors become HTTP responses: `application/problem+json` with a stable `code`.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use syncd_api::problem::PROBLEM_JSON;
use syncd_api::{ErrorCode, Problem};
use syncd_locks::LockError;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
}

impl ApiError {
    /// An error with this code and a detail safe to show the client.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
        }
    }

    /// A 500 for an unexpected failure in `role`: the detail goes to the log, never to the client.
    pub fn internal(role: &str, detail: &str) -> Self {
        tracing::error!(%detail, "internal error in the {role} role");
        ApiError::new(ErrorCode::Internal, "internal error; see the server log")
    }

    /// A 400 `invalid_request`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }
}

impl From<LockError> for ApiError {
    fn from(e: LockError) -> Self {
        match e {
            // Internal details go to the log, never to the client.
            LockError::Internal(detail) => ApiError::internal("lock", &detail),
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        problem_response(self.code, self.detail)
    }
}

/// Builds a problem+json response.
pub fn problem_response(code: ErrorCode, detail: impl Into<String>) -> Response {
    let problem = Problem::new(code, detail);
    let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (status, [(CONTENT_TYPE, PROBLEM_JSON)], body).into_response()
}

/// A JSON body. Unlike `axum::Json` it does not insist on a `Content-Type` (so `curl -d` works), and every
/// failure is a problem: 413 `too_large` over the body limit, 400 `invalid_request` for anything unparsable.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        json_body(req, state).await?.map(ApiJson).ok_or_else(|| {
            ApiError::invalid("the request body is empty; a JSON object is expected")
        })
    }
}

/// Reads a JSON body with the problems of [`ApiJson`]; `None` when the body is empty or only whitespace.
pub async fn json_body<S, T>(req: Request, state: &S) -> Result<Option<T>, ApiError>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    let bytes = raw_body(req, state).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Reads the whole body as bytes: 413 `too_large` over the route's body limit, 400 if it cannot be read.
pub async fn raw_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::TooLarge, "the request body is over the limit")
        } else {
            ApiError::invalid(format!(
                "could not read the request body: {}",
                r.body_text()
            ))
        }
    })
}

/// A resource name from the path, checked against the name rules.
#[derive(Debug)]
pub struct ResourceName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad name in the path: {}", e.body_text())))?;
        syncd_api::names::validate_name(&name)
            .map_err(|e| ApiError::invalid(format!("the name {e}")))?;
        Ok(ResourceName(name))
    }
}
