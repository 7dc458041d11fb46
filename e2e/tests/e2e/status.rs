//! The status subresource: observedGeneration, the four conditions with reasons, per-component counts, and the
//! printer columns `kubectl get sync` shows.

use serde_json::json;
use syncd_e2e::namespace::TestNamespace;
use syncd_e2e::sync::{self, COMPONENTS, CONDITIONS, small_spec};
use syncd_e2e::wait::RECONCILE;
use syncd_e2e::{client, kubectl};

#[tokio::test]
async fn status_reports_generation_conditions_and_counts() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    sync::create(&client, ns.name(), "demo", small_spec())
        .await
        .unwrap();

    let cluster = sync::wait_for_status(
        &client,
        ns.name(),
        "demo",
        "a status with every condition",
        RECONCILE,
        |c| CONDITIONS.iter().all(|t| sync::condition(c, t).is_some()),
    )
    .await
    .unwrap();
    for type_ in CONDITIONS {
        let c = sync::condition(&cluster, type_).unwrap();
        assert!(
            c.status == "True" || c.status == "False",
            "{type_}: status {:?}",
            c.status
        );
        assert!(!c.reason.is_empty(), "{type_} has a reason");
        assert_eq!(
            c.observed_generation, cluster.metadata.generation,
            "{type_}"
        );
    }
    for component in COMPONENTS {
        let desired = sync::field(&cluster, &format!("/status/{component}/desiredReplicas"));
        let expected = if component == "locks" { 3 } else { 2 };
        assert_eq!(desired, Some(&json!(expected)), "{component}");
        let summary = sync::field(&cluster, &format!("/status/{component}/summary"))
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        assert!(
            summary.ends_with(&format!("/{expected}")),
            "{component} summary {summary:?}"
        );
    }

    // A spec change is a new generation, and the status catches up with it.
    let before = cluster.metadata.generation.unwrap();
    sync::patch_spec(
        &client,
        ns.name(),
        "demo",
        json!({"cache": {"replicas": 3}}),
    )
    .await
    .unwrap();
    let after = sync::wait_for_status(
        &client,
        ns.name(),
        "demo",
        "the status of the next generation",
        RECONCILE,
        |c| c.metadata.generation > Some(before),
    )
    .await
    .unwrap();
    assert_eq!(
        sync::field(&after, "/status/cache/desiredReplicas"),
        Some(&json!(3))
    );
}

#[tokio::test]
async fn kubectl_get_sync_shows_the_printer_columns() {
    let client = client().await.unwrap();
    let ns = TestNamespace::create(&client).await.unwrap();
    sync::create(&client, ns.name(), "demo", small_spec())
        .await
        .unwrap();
    sync::wait_for_status(
        &client,
        ns.name(),
        "demo",
        "a status with summaries",
        RECONCILE,
        |c| sync::field(c, "/status/cache/summary").is_some(),
    )
    .await
    .unwrap();

    // The short name, the printer columns, and their values from the status.
    let table = kubectl::run(&["get", "sync", "-n", ns.name()])
        .await
        .unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "LOCKS",
            "QUEUES",
            "CACHE",
            "LEADER",
            "AVAILABLE",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"demo"), "{table}");
    assert!(
        row.get(1).is_some_and(|v| v.ends_with("/3")),
        "locks column: {table}"
    );
    assert!(
        row.get(2).is_some_and(|v| v.ends_with("/2")),
        "queues column: {table}"
    );
    assert!(
        row.get(3).is_some_and(|v| v.ends_with("/2")),
        "cache column: {table}"
    );

    // The category works too, and a jsonpath over the status reads what the operator wrote.
    let names = kubectl::run(&["get", "syncd", "-n", ns.name(), "-o", "name"])
        .await
        .unwrap();
    assert_eq!(names.trim(), "synccluster.syncd.dev/demo");
    let generation = kubectl::run(&[
        "get",
        "synccluster",
        "demo",
        "-n",
        ns.name(),
        "-o",
        "jsonpath={.status.observedGeneration}",
    ])
    .await
    .unwrap();
    assert_eq!(generation.trim(), "1");
}
