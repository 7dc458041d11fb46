//! The routes other cache peers call: `/internal/cache/{ping,request,probe}`. Bodies are [`crate::wire`] frames.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::service::{CacheService, ServeResult};
use crate::wire::{self, AnswerHeader, ProbeHeader, ReplyHeader, RequestHeader};

/// The peer routes of the cache role.
pub fn router(cache: Arc<CacheService>) -> Router {
    Router::new()
        .route("/internal/cache/ping", get(ping))
        .route("/internal/cache/request", post(request))
        .route("/internal/cache/probe", post(probe))
        .with_state(cache)
}

async fn ping(State(cache): State<Arc<CacheService>>) -> Response {
    axum::Json(cache.pong()).into_response()
}

fn bad_frame(e: wire::FrameError) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

fn frame_response(frame: Bytes) -> Response {
    ([("content-type", "application/octet-stream")], frame).into_response()
}

async fn request(State(cache): State<Arc<CacheService>>, body: Bytes) -> Response {
    let (header, key, value): (RequestHeader, _, _) = match wire::decode(body) {
        Ok(parts) => parts,
        Err(e) => return bad_frame(e),
    };
    let request = wire::join_request(header.request, value);
    // Run in its own task: a requester that hangs up must not cancel a transaction half-way at the home.
    let served = tokio::spawn(async move {
        let result = cache.serve(&key, header.from, request).await;
        (key, result)
    })
    .await;
    let Ok((key, result)) = served else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "request task failed").into_response();
    };
    match result {
        ServeResult::Reply(reply) => {
            let (reply, value) = wire::split_reply(reply);
            frame_response(wire::encode(
                &ReplyHeader::Reply(reply),
                &key,
                value.as_ref(),
            ))
        }
        ServeResult::Refused(refusal) => {
            frame_response(wire::encode(&ReplyHeader::Refused(refusal), &key, None))
        }
        ServeResult::Failed(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn probe(State(cache): State<Arc<CacheService>>, body: Bytes) -> Response {
    let (header, key, _): (ProbeHeader, _, _) = match wire::decode(body) {
        Ok(parts) => parts,
        Err(e) => return bad_frame(e),
    };
    let answer = cache.answer_probe(&key, header.probe);
    let (answer, value) = wire::split_answer(answer);
    let inc = cache.incarnation();
    frame_response(wire::encode(
        &AnswerHeader { inc, answer },
        &key,
        value.as_ref(),
    ))
}
