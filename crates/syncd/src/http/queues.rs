//! `/v1/queues` and `/v1/ring`: validation and the mapping to the queue role. The semantics live in
//! `syncd-queues`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use syncd_api::ErrorCode;
use syncd_api::queues::{
    AckResponse, MAX_BATCH, MAX_RECEIVE, MAX_RECEIVE_WAIT_MS, MAX_VISIBILITY_MS, NackResponse,
    ProduceRequest, ProducedBatch, ProducedOne, QueueInfo, QueueList, ReceiptsRequest,
    ReceiveRequest, ReceiveResponse, RingInfo,
};
use syncd_queues::peer_api::detached;
use syncd_queues::{QueueError, QueueService};

use super::error::{ApiError, ApiJson, ResourceName, json_body};

/// Limits of the queue routes.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Largest request body (a batch).
    pub max_request_bytes: usize,
    /// Largest single message body.
    pub max_message_bytes: usize,
}

#[derive(Clone)]
struct QueueState {
    queues: Arc<QueueService>,
    limits: QueueLimits,
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Internal(detail) => ApiError::internal("queue", &detail),
            other => ApiError::new(other.code(), other.to_string()),
        }
    }
}

/// The queue routes, with their own body limit.
pub fn routes<S: Clone + Send + Sync + 'static>(
    queues: Arc<QueueService>,
    limits: QueueLimits,
) -> Router<S> {
    Router::new()
        .route("/v1/queues", get(list))
        .route("/v1/queues/{name}", get(info))
        .route("/v1/queues/{name}/messages", post(produce))
        .route("/v1/queues/{name}/receive", post(receive))
        .route("/v1/queues/{name}/ack", post(ack))
        .route("/v1/queues/{name}/nack", post(nack))
        .route("/v1/ring", get(ring))
        .layer(DefaultBodyLimit::max(limits.max_request_bytes))
        .with_state(QueueState { queues, limits })
}

type Queues = State<QueueState>;

/// Longest deduplication key a produce may carry.
const MAX_DEDUP_ID_BYTES: usize = 256;

async fn produce(
    State(s): Queues,
    ResourceName(name): ResourceName,
    ApiJson(request): ApiJson<ProduceRequest>,
) -> Result<Response, ApiError> {
    let single = matches!(request, ProduceRequest::One(_));
    let messages = request.into_messages();
    if messages.is_empty() {
        return Err(ApiError::invalid("messages is empty; send at least one"));
    }
    if messages.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!(
            "at most {MAX_BATCH} messages per call, got {}",
            messages.len()
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        if m.body.is_empty() {
            return Err(ApiError::invalid(format!("message {i} has an empty body")));
        }
        if m.body.len() > s.limits.max_message_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "message {i} is {} bytes; the limit is {}",
                    m.body.len(),
                    s.limits.max_message_bytes
                ),
            ));
        }
        if let Some(key) = &m.dedup_id
            && (key.is_empty() || key.len() > MAX_DEDUP_ID_BYTES)
        {
            return Err(ApiError::invalid(format!(
                "message {i}: dedup_id must be 1 to {MAX_DEDUP_ID_BYTES} bytes, got {}",
                key.len()
            )));
        }
    }
    let (bodies, dedup): (Vec<String>, Vec<Option<String>>) =
        messages.into_iter().map(|m| (m.body, m.dedup_id)).unzip();
    let dedup = if dedup.iter().all(Option::is_none) {
        Vec::new()
    } else {
        dedup
    };
    let queues = s.queues.clone();
    let mut ids = detached(async move { queues.produce(&name, bodies, dedup).await }).await?;
    let response = if single {
        let id = ids.pop().unwrap_or_default();
        (StatusCode::CREATED, Json(ProducedOne { id })).into_response()
    } else {
        (StatusCode::CREATED, Json(ProducedBatch { ids })).into_response()
    };
    Ok(response)
}

/// A JSON body that may be absent (then the defaults apply), with the same errors as [`ApiJson`].
struct OptionalJson<T>(T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(OptionalJson(
            json_body(req, state).await?.unwrap_or_default(),
        ))
    }
}

async fn receive(
    State(s): Queues,
    ResourceName(name): ResourceName,
    OptionalJson(request): OptionalJson<ReceiveRequest>,
) -> Result<Json<ReceiveResponse>, ApiError> {
    if request.max == 0 || request.max > MAX_RECEIVE {
        return Err(ApiError::invalid(format!(
            "max must be between 1 and {MAX_RECEIVE}, got {}",
            request.max
        )));
    }
    if request.visibility_ms == 0 || request.visibility_ms > MAX_VISIBILITY_MS {
        return Err(ApiError::invalid(format!(
            "visibility_ms must be between 1 and {MAX_VISIBILITY_MS}, got {}",
            request.visibility_ms
        )));
    }
    if request.wait_ms > MAX_RECEIVE_WAIT_MS {
        return Err(ApiError::invalid(format!(
            "wait_ms must be at most {MAX_RECEIVE_WAIT_MS}, got {}",
            request.wait_ms
        )));
    }
    let queues = s.queues.clone();
    let messages = detached(async move { queues.receive(&name, request).await }).await?;
    Ok(Json(ReceiveResponse { messages }))
}

fn check_receipts(request: &ReceiptsRequest) -> Result<(), ApiError> {
    if request.receipts.is_empty() {
        return Err(ApiError::invalid("receipts is empty"));
    }
    if request.receipts.len() > MAX_RECEIVE {
        return Err(ApiError::invalid(format!(
            "at most {MAX_RECEIVE} receipts per call, got {}",
            request.receipts.len()
        )));
    }
    Ok(())
}

async fn ack(
    State(s): Queues,
    ResourceName(name): ResourceName,
    ApiJson(request): ApiJson<ReceiptsRequest>,
) -> Result<Json<AckResponse>, ApiError> {
    check_receipts(&request)?;
    let queues = s.queues.clone();
    let acked = detached(async move { queues.ack(&name, request.receipts).await }).await?;
    Ok(Json(AckResponse { acked }))
}

async fn nack(
    State(s): Queues,
    ResourceName(name): ResourceName,
    ApiJson(request): ApiJson<ReceiptsRequest>,
) -> Result<Json<NackResponse>, ApiError> {
    check_receipts(&request)?;
    let queues = s.queues.clone();
    let requeued = detached(async move { queues.nack(&name, request.receipts).await }).await?;
    Ok(Json(NackResponse { requeued }))
}

async fn info(
    State(s): Queues,
    ResourceName(name): ResourceName,
) -> Result<Json<QueueInfo>, ApiError> {
    let queues = s.queues.clone();
    Ok(Json(
        detached(async move { queues.info(&name).await }).await?,
    ))
}

async fn list(State(s): Queues) -> Result<Json<QueueList>, ApiError> {
    Ok(Json(s.queues.list().await?))
}

async fn ring(State(s): Queues) -> Json<RingInfo> {
    Json(s.queues.ring_info())
}
