//! Validation at admission: the API server itself refuses nonsense (schema bounds and CEL rules), with a message a
//! user can act on, before the operator ever sees it.

use serde_json::{Value, json};
use syncd_e2e::client;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, small_spec};

/// `spec` with the JSON merge patch `change` applied (objects merge, anything else replaces).
fn with(mut spec: Value, change: Value) -> Value {
    merge(&mut spec, change);
    spec
}

fn merge(target: &mut Value, change: Value) {
    match (target, change) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, c) => *t = c,
    }
}

/// Asserts that the API server refused with 422 Invalid and a message containing every one of `expected`.
fn assert_rejected(
    result: Result<impl std::fmt::Debug, kube::Error>,
    case: &str,
    expected: &[&str],
) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{case}: {status:?}");
            for text in expected {
                assert!(
                    status.message.contains(text),
                    "{case}: the message should contain {text:?} but is {:?}",
                    status.message
                );
            }
        }
        other => panic!("{case}: expected a 422 rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_clusters_are_rejected_with_readable_messages() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    let cases = [
        (
            "even lock replicas",
            json!({"locks": {"replicas": 4}}),
            vec!["spec.locks", "locks.replicas must be odd"],
        ),
        (
            "replicationFactor above the queue replicas",
            json!({"queues": {"replicas": 2, "replicationFactor": 3}}),
            vec![
                "spec.queues",
                "queues.replicationFactor must not exceed queues.replicas",
            ],
        ),
        (
            "negative replicas",
            json!({"cache": {"replicas": -1}}),
            vec!["spec.cache.replicas", "greater than or equal to 0"],
        ),
        (
            "too many lock replicas",
            json!({"locks": {"replicas": 11}}),
            vec!["spec.locks.replicas", "less than or equal to 9"],
        ),
        (
            "empty image",
            json!({"image": ""}),
            vec!["spec.image", "image must not be empty"],
        ),
        (
            "unknown pull policy",
            json!({"imagePullPolicy": "Sometimes"}),
            vec!["spec.imagePullPolicy", "Unsupported value"],
        ),
        (
            "zero cache capacity",
            json!({"cache": {"capacity": 0}}),
            vec!["spec.cache.capacity", "greater than or equal to 1"],
        ),
    ];
    for (i, (case, change, expected)) in cases.into_iter().enumerate() {
        let result = sync::create(
            &client,
            ns.name(),
            &format!("invalid-{i}"),
            with(small_spec(), change),
        )
        .await;
        assert_rejected(result, case, &expected);
    }

    // Every rejected create left nothing behind; the valid spec they were derived from is accepted.
    let left = sync::api(&client, ns.name())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        left.items.is_empty(),
        "rejected clusters were stored: {left:?}"
    );
    sync::create(&client, ns.name(), "valid", small_spec())
        .await
        .unwrap();
}

#[tokio::test]
async fn storage_cannot_change_after_creation() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    sync::create(&client, ns.name(), "demo", small_spec())
        .await
        .unwrap();

    let result = sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"locks": {"storage": {"size": "2Gi"}}}),
    )
    .await;
    assert_rejected(
        result,
        "lock storage change",
        &["spec.locks.storage", "storage cannot change after creation"],
    );
    let result = sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"queues": {"storageClassName": "fast"}}),
    )
    .await;
    assert_rejected(
        result,
        "queue storage class change",
        &[
            "spec.queues",
            "storageClassName cannot change after creation",
        ],
    );

    // The transition rules only guard storage: other updates of the same object still pass.
    let updated = sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"cache": {"replicas": 3}}),
    )
    .await
    .unwrap();
    assert_eq!(
        sync::field(&updated, "/spec/cache/replicas"),
        Some(&json!(3))
    );
}

#[tokio::test]
async fn updates_are_validated_like_creates() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    sync::create(&client, ns.name(), "demo", small_spec())
        .await
        .unwrap();
    let result = sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"locks": {"replicas": 2}}),
    )
    .await;
    assert_rejected(
        result,
        "even lock replicas on update",
        &["locks.replicas must be odd"],
    );
    let result = sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"queues": {"replicas": 1}}),
    )
    .await;
    assert_rejected(
        result,
        "queue replicas below the replication factor on update",
        &["queues.replicationFactor must not exceed queues.replicas"],
    );
}
