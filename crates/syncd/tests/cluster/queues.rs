//! Queue role on real processes: delivery semantics, competing consumers, owner loss, restart, scaling, bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use syncd_client::syncd_api::queues::ReceiveRequest;
use syncd_client::{Client, ErrorCode};

use super::harness::{Cluster, eventually};

fn receive(max: usize, visibility_ms: u64, wait_ms: u64) -> ReceiveRequest {
    ReceiveRequest {
        max,
        visibility_ms,
        wait_ms,
    }
}

/// Waits until every running node sees the ring formed and every member alive.
async fn ring_ready(cluster: &Cluster) {
    eventually("the queue ring on every node", || async {
        cluster.assert_alive();
        for id in cluster.running() {
            let ring = cluster.client(id).ring().await.ok()?;
            if ring.epoch == 0 || !ring.nodes.iter().all(|n| n.alive) {
                return None;
            }
        }
        Some(())
    })
    .await
}

/// Produces with retries on 503 (a failover in progress): returns the id once a 201 came back.
async fn produce_retrying(client: &Client, queue: &str, body: &str) -> Option<String> {
    for _ in 0..5 {
        match client.produce(queue, body).await {
            Ok(id) => return Some(id),
            // 503 during the failover, or a connection refused by the killed node: try again.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    None
}

/// Receives and acks everything in `queue` through `client` until it stays empty; returns the bodies seen.
async fn drain(client: &Client, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut empty_rounds = 0;
    let deadline = std::time::Instant::now() + super::harness::PATIENCE;
    while empty_rounds < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "draining {queue} took too long"
        );
        let got = match client.receive(queue, &receive(100, 30_000, 200)).await {
            Ok(got) => got,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => panic!("receive from {queue}: {e}"),
        };
        if got.is_empty() {
            empty_rounds += 1;
            continue;
        }
        empty_rounds = 0;
        let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
        client.ack(queue, &receipts).await.expect("ack");
        bodies.extend(got.into_iter().map(|m| m.body));
    }
    bodies
}

/// A produce retried with the same deduplication key, through any node, stores one message and answers its id;
/// after the leader fails over too (the keys are replicated with the messages).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deduplication_key_makes_a_retried_produce_store_once() {
    let mut cluster = Cluster::start_queues(3, &[]);
    ring_ready(&cluster).await;
    let first = cluster
        .client(0)
        .produce_dedup("orders", "o-1", "order-1")
        .await
        .unwrap();
    for id in 0..3 {
        let again = cluster
            .client(id)
            .produce_dedup("orders", "o-1 (retry)", "order-1")
            .await
            .unwrap();
        assert_eq!(again, first, "node {id}");
    }
    let other = cluster
        .client(1)
        .produce_dedup("orders", "o-2", "order-2")
        .await
        .unwrap();
    assert_ne!(other, first);
    let info = cluster.client(2).queue("orders").await.unwrap();
    assert_eq!((info.ready, info.inflight), (2, 0));

    // The leader dies: its successor remembers the keys.
    cluster.kill(info.owner);
    let survivor = cluster.running()[0];
    let after = eventually("a produce after the failover", || async {
        cluster
            .client(survivor)
            .produce_dedup("orders", "o-1 (after failover)", "order-1")
            .await
            .ok()
    })
    .await;
    assert_eq!(after, first);
    let got = drain(&cluster.client(survivor), "orders").await;
    assert_eq!(got, vec!["o-1".to_owned(), "o-2".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_semantics_across_nodes() {
    let cluster = Cluster::start_queues(3, &["--queue-max-attempts", "2"]);
    ring_ready(&cluster).await;
    let (a, b, c) = (cluster.client(0), cluster.client(1), cluster.client(2));

    // FIFO for first deliveries, whichever node produces or consumes.
    for i in 0..5 {
        a.produce("jobs", &format!("m{i}")).await.unwrap();
    }
    let ids = b
        .produce_batch("jobs", &["m5".to_owned(), "m6".to_owned()])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let got = c.receive("jobs", &receive(3, 30_000, 0)).await.unwrap();
    let bodies: Vec<_> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["m0", "m1", "m2"]);
    assert!(got.iter().all(|m| m.attempt == 1));

    let info = a.queue("jobs").await.unwrap();
    assert_eq!((info.ready, info.inflight), (4, 3));
    assert_eq!(info.replicas.len(), 1, "replication factor 2: one replica");
    assert!(!info.replicas.contains(&info.owner));

    // Ack removes; an ack with the same receipt again is a 404 and changes nothing.
    let first = got[0].receipt.clone();
    assert_eq!(
        b.ack("jobs", std::slice::from_ref(&first)).await.unwrap(),
        1
    );
    let again = b.ack("jobs", &[first]).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::NotFound));

    // Nack makes m1 ready again at its place in line, ahead of m3.
    assert_eq!(c.nack("jobs", &[got[1].receipt.clone()]).await.unwrap(), 1);
    let next = a.receive("jobs", &receive(1, 30_000, 0)).await.unwrap();
    assert_eq!(next[0].body, "m1");
    assert_eq!(next[0].attempt, 2);

    // A consumer that never acks sees the message again after visibility_ms, with attempt + 1; the old receipt
    // no longer works.
    a.produce("slow", "x").await.unwrap();
    let once = b.receive("slow", &receive(1, 300, 0)).await.unwrap();
    assert_eq!(once[0].attempt, 1);
    let twice = c.receive("slow", &receive(1, 300, 5_000)).await.unwrap();
    assert_eq!(twice[0].id, once[0].id);
    assert_eq!(twice[0].attempt, 2);
    let stale = a.ack("slow", &[once[0].receipt.clone()]).await.unwrap_err();
    assert_eq!(stale.code(), Some(ErrorCode::NotFound));

    // After max attempts (2) it moves to slow.dlq instead of a third delivery.
    let third = a.receive("slow", &receive(1, 300, 1_500)).await.unwrap();
    assert!(third.is_empty(), "a third delivery happened: {third:?}");
    let dead = b
        .receive("slow.dlq", &receive(10, 30_000, 0))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "x");
    assert_eq!(
        c.ack("slow.dlq", &[dead[0].receipt.clone()]).await.unwrap(),
        1
    );

    // Long-poll: a receive waiting on an empty queue returns as soon as a message arrives.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.receive("later", &receive(1, 30_000, 10_000)).await })
    };
    // A head start so the receive is already parked when the message arrives. No condition shows that from
    // outside; if the receive were slower, it would find the message at once and the test would still hold.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.produce("later", "now").await.unwrap();
    let woke = waiter.await.unwrap().unwrap();
    assert_eq!(woke[0].body, "now");

    let list = a.queues().await.unwrap();
    for q in ["jobs", "slow", "later"] {
        assert!(
            list.queues.contains(&q.to_owned()),
            "{q} missing from {list:?}"
        );
    }
    let ring = c.ring().await.unwrap();
    assert_eq!(ring.members, vec![0, 1, 2]);
    assert_eq!(ring.epoch, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_producers_and_competing_consumers_get_exactly_the_produced_set() {
    let cluster = Cluster::start_queues(3, &[]);
    ring_ready(&cluster).await;
    let queues = ["q-a", "q-b", "q-c"];
    let mut producers = Vec::new();
    for p in 0..6u64 {
        let client = cluster.client(p % 3);
        producers.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            for i in 0..60 {
                let queue = queues[(i + p as usize) % queues.len()];
                let body = format!("p{p}-{i}");
                client.produce(queue, &body).await.unwrap();
                sent.push((queue, body));
            }
            sent
        }));
    }
    let mut consumers = Vec::new();
    for c in 0..6u64 {
        let client = cluster.client((c + 1) % 3);
        consumers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut idle = 0;
            while idle < 6 {
                let mut any = false;
                for queue in queues {
                    let got = client
                        .receive(queue, &receive(7, 30_000, 100))
                        .await
                        .unwrap();
                    if got.is_empty() {
                        continue;
                    }
                    any = true;
                    let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                    assert_eq!(client.ack(queue, &receipts).await.unwrap(), got.len());
                    seen.extend(got.into_iter().map(|m| (queue, m.body)));
                }
                idle = if any { 0 } else { idle + 1 };
            }
            seen
        }));
    }
    let mut produced = BTreeSet::new();
    for p in producers {
        produced.extend(p.await.unwrap());
    }
    let mut consumed = Vec::new();
    for c in consumers {
        consumed.extend(c.await.unwrap());
    }
    // The consumers may stop before late messages: drain what is left.
    for queue in queues {
        consumed.extend(
            drain(&cluster.client(0), queue)
                .await
                .into_iter()
                .map(|b| (queue, b)),
        );
    }
    let unique: BTreeSet<_> = consumed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        consumed.len(),
        "a message was delivered twice without a timeout or crash"
    );
    assert_eq!(
        unique, produced,
        "consumed set differs from the produced set"
    );
    assert_eq!(produced.len(), 360);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_owner_mid_traffic_loses_no_acknowledged_message() {
    let mut cluster = Cluster::start_queues(3, &[]);
    ring_ready(&cluster).await;
    let info = cluster.client(0).queue("orders").await;
    // The queue does not exist yet: create it, then find its owner.
    assert!(info.is_err());
    cluster.client(0).produce("orders", "first").await.unwrap();
    let info = cluster.client(0).queue("orders").await.unwrap();
    let owner = info.owner;
    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != owner)
        .collect();

    let producer = {
        let clients: Vec<Client> = others.iter().map(|id| cluster.client(*id)).collect();
        tokio::spawn(async move {
            let mut acked = vec!["first".to_owned()];
            let deadline = std::time::Instant::now() + super::harness::PATIENCE * 2;
            for i in 0..300 {
                if std::time::Instant::now() > deadline {
                    break;
                }
                let body = format!("o{i}");
                if produce_retrying(&clients[i % clients.len()], "orders", &body)
                    .await
                    .is_some()
                {
                    acked.push(body);
                }
            }
            acked
        })
    };
    // Kill the owner once traffic is flowing.
    eventually("traffic before the kill", || async {
        let info = cluster.client(others[0]).queue("orders").await.ok()?;
        (info.ready > 50).then_some(())
    })
    .await;
    cluster.kill(owner);
    let acked = producer.await.unwrap();
    assert!(
        acked.len() > 250,
        "too few produces succeeded: {}",
        acked.len()
    );

    let survivor = cluster.client(others[0]);
    let info = survivor.queue("orders").await.unwrap();
    assert_ne!(info.owner, owner);
    assert!(info.term > 1, "the new owner serves in a new term");
    let bodies: BTreeSet<String> = drain(&survivor, "orders").await.into_iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|b| !bodies.contains(*b)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged messages lost: {missing:?}"
    );

    // The old owner comes back, catches up from the new one before serving, and serves the queue again.
    cluster.restart(owner);
    survivor.produce("orders", "after-restart").await.unwrap();
    let back = eventually("the old owner to serve again", || async {
        let info = cluster.client(owner).queue("orders").await.ok()?;
        (info.owner == owner).then_some(info)
    })
    .await;
    assert_eq!(
        back.ready, 1,
        "the returning owner has exactly what the other copy had"
    );
    let last = drain(&cluster.client(owner), "orders").await;
    assert_eq!(last, vec!["after-restart".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_restarted_from_disk_keeps_every_message() {
    let mut cluster = Cluster::start_queues(3, &[]);
    ring_ready(&cluster).await;
    let client = cluster.client(1);
    let mut produced = BTreeMap::new();
    for q in 0..5 {
        let queue = format!("durable-{q}");
        let bodies: Vec<String> = (0..40).map(|i| format!("{queue}-{i}")).collect();
        client.produce_batch(&queue, &bodies).await.unwrap();
        produced.insert(queue, bodies);
    }
    // One in flight, unacked: it must come back after the restart too.
    let inflight = client
        .receive("durable-0", &receive(1, 60_000, 0))
        .await
        .unwrap();
    assert_eq!(inflight.len(), 1);

    for id in cluster.ids() {
        cluster.kill(id);
    }
    for id in cluster.ids() {
        cluster.restart(id);
    }
    ring_ready(&cluster).await;
    for (queue, bodies) in &produced {
        let info = eventually(&format!("{queue} served after the restart"), || async {
            cluster.client(2).queue(queue).await.ok()
        })
        .await;
        let expected_inflight = usize::from(queue == "durable-0");
        assert_eq!(info.inflight, expected_inflight, "{queue}: {info:?}");
        assert_eq!(
            info.ready + info.inflight,
            bodies.len(),
            "{queue}: {info:?}"
        );
        if queue != "durable-0" {
            let got = drain(&cluster.client(0), queue).await;
            assert_eq!(&got, bodies, "{queue} lost messages or their order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_three_to_four_to_three_keeps_every_unacked_message() {
    let mut cluster = Cluster::start_queues(3, &[]);
    ring_ready(&cluster).await;
    let client = cluster.client(0);
    let queues: Vec<String> = (0..16).map(|i| format!("scale-{i}")).collect();
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for queue in &queues {
        let bodies: Vec<String> = (0..10).map(|i| format!("{queue}-{i}")).collect();
        client.produce_batch(queue, &bodies).await.unwrap();
        expected.insert(queue.clone(), bodies.into_iter().collect());
    }
    // A few in flight (long visibility): they survive the moves as in flight.
    for queue in queues.iter().take(4) {
        assert_eq!(
            client
                .receive(queue, &receive(2, 120_000, 0))
                .await
                .unwrap()
                .len(),
            2
        );
    }
    let counts = |cluster_client: Client| {
        let queues = queues.clone();
        async move {
            let mut out = BTreeMap::new();
            for queue in &queues {
                let info = cluster_client.queue(queue).await.ok()?;
                out.insert(queue.clone(), (info.ready, info.inflight));
            }
            Some(out)
        }
    };
    let before = counts(cluster.client(1)).await.unwrap();

    let added = cluster.add_node();
    let addrs = BTreeMap::from([(added, cluster.addr(added))]);
    cluster
        .client(2)
        .change_ring(&[0, 1, 2, added], &addrs)
        .await
        .unwrap();
    settled(&cluster, 2).await;
    let moved: usize = {
        let mut n = 0;
        for queue in &queues {
            if cluster.client(0).queue(queue).await.unwrap().owner == added {
                n += 1;
            }
        }
        n
    };
    assert!(moved > 0, "the new node owns no queue");
    assert_eq!(counts(cluster.client(added)).await.unwrap(), before);

    cluster
        .client(1)
        .change_ring(&[0, 1, 2], &BTreeMap::new())
        .await
        .unwrap();
    settled(&cluster, 3).await;
    cluster.kill(added);
    assert_eq!(counts(cluster.client(0)).await.unwrap(), before);
    for queue in queues.iter().skip(4) {
        let got: BTreeSet<String> = drain(&cluster.client(1), queue).await.into_iter().collect();
        assert_eq!(&got, &expected[queue], "{queue}");
    }
}

/// Waits until every running node is on ring `epoch` with no hand-off pending.
async fn settled(cluster: &Cluster, epoch: u64) {
    eventually(&format!("ring epoch {epoch} settled"), || async {
        cluster.assert_alive();
        for id in cluster.running() {
            let ring = cluster.client(id).ring().await.ok()?;
            if ring.epoch != epoch || ring.pending_handoffs != 0 {
                return None;
            }
        }
        Some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_input_gets_4xx_problems() {
    let cluster = Cluster::start_queues(3, &["--max-message-bytes", "1024"]);
    ring_ready(&cluster).await;
    let client = cluster.client(0);
    client.produce("fine", "x").await.unwrap();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "/v1/queues/fine/messages",
            String::new(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/messages",
            "{".to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/messages",
            r#"{"body":""}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/messages",
            r#"{"body":5}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/messages",
            r#"{"messages":[]}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/messages",
            format!(r#"{{"body":"{}"}}"#, "y".repeat(2048)),
            413,
            "too_large",
        ),
        (
            "/v1/queues/bad%20name/messages",
            r#"{"body":"x"}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine.dlq/messages",
            r#"{"body":"x"}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/receive",
            r#"{"max":0}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/receive",
            r#"{"visibility_ms":0}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/receive",
            r#"{"wait_ms":600000}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/receive",
            r#"{"maxx":1}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/ack",
            r#"{"receipts":[]}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/ack",
            r#"{"receipts":["nope"]}"#.to_owned(),
            400,
            "invalid_request",
        ),
        (
            "/v1/queues/fine/ack",
            r#"{"receipts":["999-999"]}"#.to_owned(),
            404,
            "not_found",
        ),
        (
            "/v1/queues/fine/nack",
            r#"{"receipts":["1-2"]}"#.to_owned(),
            404,
            "not_found",
        ),
        (
            "/v1/queues/fine/ack",
            "[]".to_owned(),
            400,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, text) = client
            .post_raw(path, body.clone().into_bytes(), None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&text).into_owned();
        assert_eq!(got, status, "{path} {body:.80}: {text}");
        let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["code"], code, "{path} {body:.80}: {text}");
    }
    let (status, text) = client.get_raw("/v1/queues/never-made").await.unwrap();
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&text));
    // Nothing above changed the queue.
    let info = client.queue("fine").await.unwrap();
    assert_eq!((info.ready, info.inflight), (1, 0));
}
