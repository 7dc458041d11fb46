use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use syncd_api::ErrorCode;

use super::{PeerClient, PeerError};

/// A peer on a free loopback port: echoes JSON and frames, and answers a problem and a bare 500.
async fn peer() -> String {
    let app = Router::new()
        .route(
            "/echo",
            post(|axum::Json(v): axum::Json<serde_json::Value>| async move { axum::Json(v) }),
        )
        .route("/frame", post(|body: Bytes| async move { body }))
        .route("/hello", get(|| async { axum::Json("hello") }))
        .route(
            "/problem",
            get(|| async {
                (
                    axum::http::StatusCode::CONFLICT,
                    axum::Json(serde_json::json!({
                        "type": "about:blank", "title": "Conflict", "status": 409,
                        "code": "lock_conflict", "detail": "held"
                    })),
                )
            }),
        )
        .route(
            "/bare",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "oops") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn json_and_frames_round_trip_and_problems_keep_their_code() {
    let addr = peer().await;
    let peers = PeerClient::default();
    let v: serde_json::Value = peers
        .post_json(&addr, "/echo", &serde_json::json!({"a": 1}), T)
        .await
        .unwrap();
    assert_eq!(v["a"], 1);
    let hello: String = peers.get_json(&addr, "/hello", T).await.unwrap();
    assert_eq!(hello, "hello");
    let frame = peers
        .post_frame(&addr, "/frame", Bytes::from_static(b"\x00\x01"), T)
        .await
        .unwrap();
    assert_eq!(&frame[..], b"\x00\x01");
    let problem = peers.get_json::<String>(&addr, "/problem", T).await;
    assert_eq!(
        problem,
        Err(PeerError::Problem {
            code: ErrorCode::LockConflict,
            detail: "held".to_owned()
        })
    );
    assert!(matches!(
        peers.get_json::<String>(&addr, "/bare", T).await,
        Err(PeerError::NoAnswer(_))
    ));
}

#[tokio::test]
async fn dial_overrides_send_calls_elsewhere_and_nothing_answering_is_unreachable() {
    let real = peer().await;
    // Nothing listens on the address the node "means"; the override dials the real peer instead.
    let meant = "127.0.0.1:1".to_owned();
    let peers = PeerClient::with_dial_overrides(BTreeMap::from([(meant.clone(), real.clone())]));
    let hello: String = peers.get_json(&meant, "/hello", T).await.unwrap();
    assert_eq!(hello, "hello");
    assert_eq!(peers.url(&meant, "/x"), format!("http://{real}/x"));
    let plain = PeerClient::default();
    assert!(matches!(
        plain.get_json::<String>(&meant, "/hello", T).await,
        Err(PeerError::Unreachable(_))
    ));
}
