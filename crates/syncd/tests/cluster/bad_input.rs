//! Bad input gets the right 4xx problem, never a 500 and never a change.

use syncd_client::{ErrorCode, Problem};

use super::harness::Cluster;

/// Sends a raw request and returns the problem it must answer with.
async fn problem(cluster: &Cluster, method: &str, path: &str, body: &[u8]) -> (u16, Problem) {
    let c = cluster.client(1);
    let (status, bytes) = match method {
        "GET" => c.get_raw(path).await.unwrap(),
        _ => c
            .post_raw(path, body.to_vec(), Some("application/json"))
            .await
            .unwrap(),
    };
    let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: answer {status} is not a problem ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(problem.status, status);
    (status, problem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_problems() {
    let cluster = Cluster::start(3);
    cluster.leader().await;
    let acquire = "/v1/locks/job/acquire";
    let long_name = format!("/v1/locks/{}", "n".repeat(254));
    let cases: Vec<(&str, &str, Vec<u8>, ErrorCode)> = vec![
        (
            "POST",
            acquire,
            b"{not json".to_vec(),
            ErrorCode::InvalidRequest,
        ),
        ("POST", acquire, b"".to_vec(), ErrorCode::InvalidRequest),
        ("POST", acquire, b"[]".to_vec(), ErrorCode::InvalidRequest),
        (
            "POST",
            acquire,
            br#"{"mode":"exclusive"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a","mode":"sideways"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a","ttl":5}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a","ttl_ms":0}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a","ttl_ms":-5}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a","wait_ms":99999999}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":"a b"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            br#"{"owner":""}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            "/v1/locks/bad%20name/acquire",
            br#"{"owner":"a"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            "/v1/locks/%FF/acquire",
            br#"{"owner":"a"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        ("GET", &long_name, Vec::new(), ErrorCode::InvalidRequest),
        (
            "POST",
            "/v1/locks/job/release",
            br#"{"owner":"a","token":"seven"}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            "/v1/locks/job/renew",
            br#"{"ttl_ms":100}"#.to_vec(),
            ErrorCode::InvalidRequest,
        ),
        (
            "POST",
            acquire,
            format!(r#"{{"owner":"a","pad":"{}"}}"#, "x".repeat(70 * 1024)).into_bytes(),
            ErrorCode::TooLarge,
        ),
        ("GET", "/v1/nothing-here", Vec::new(), ErrorCode::NotFound),
        ("GET", acquire, Vec::new(), ErrorCode::MethodNotAllowed),
    ];
    for (method, path, body, want) in cases {
        let (status, p) = problem(&cluster, method, path, &body).await;
        assert_eq!(
            p.code,
            want,
            "{method} {path} {:?}: {p}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!((400..500).contains(&status), "{method} {path}: {status}");
    }
    // Nothing was written by any of that.
    assert!(cluster.client(0).locks().await.unwrap().locks.is_empty());
    // A request without a Content-Type still works (curl -d sends a form type; both are accepted).
    let (status, _) = cluster
        .client(2)
        .post_raw(acquire, br#"{"owner":"curl"}"#.to_vec(), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
}
