//! Cache role on real processes: coherence across nodes, MESI states, concurrent writers, LRU with write-back,
//! peers that die and come back, bad input.

use std::time::Duration;

use super::harness::{Cluster, eventually};

/// The `/v1/cache` API of one node, over raw HTTP (values are bytes).
struct Cache {
    http: reqwest::Client,
    base: String,
}

/// A GET's answer: status, body, `X-Cache`, `X-Cache-State`.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    status: u16,
    body: Vec<u8>,
    cache: String,
    state: String,
}

fn encode(key: &[u8]) -> String {
    key.iter().map(|b| format!("%{b:02X}")).collect()
}

impl Cache {
    fn new(cluster: &Cluster, id: u64) -> Cache {
        Cache {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: format!("http://{}", cluster.addr(id)),
        }
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> u16 {
        self.http
            .put(format!("{}/v1/cache/{}", self.base, encode(key)))
            .body(value.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn get(&self, key: &[u8]) -> Got {
        let response = self
            .http
            .get(format!("{}/v1/cache/{}", self.base, encode(key)))
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (cache, state) = (header("x-cache"), header("x-cache-state"));
        Got {
            status: response.status().as_u16(),
            cache,
            state,
            body: response.bytes().await.unwrap().to_vec(),
        }
    }

    async fn delete(&self, key: &[u8]) -> u16 {
        self.http
            .delete(format!("{}/v1/cache/{}", self.base, encode(key)))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// This node's state of `key` (`M`, `E`, `S` or `I`) and the key's home.
    async fn state(&self, key: &[u8]) -> (String, u64) {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/v1/cache/{}/state", self.base, encode(key)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            v["state"].as_str().unwrap().to_owned(),
            v["home"].as_u64().unwrap(),
        )
    }

    async fn stats(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/v1/cache", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, String) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// Waits until every running node is ready and sees every running node in its view.
async fn views_agree(cluster: &Cluster) {
    let running = cluster.running();
    eventually("every cache node ready with the same view", || async {
        cluster.assert_alive();
        let mut views = Vec::new();
        for id in &running {
            let status = cluster.client(*id).status().await.ok()?;
            let cache = status.cache?;
            if !cache.ready || cache.peers != running {
                return None;
            }
            views.push(cache.view);
        }
        views.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await
}

/// A key whose home is `home`.
async fn key_homed_at(node: &Cache, home: u64, prefix: &str) -> Vec<u8> {
    for i in 0..10_000 {
        let key = format!("{prefix}-{i}").into_bytes();
        if node.state(&key).await.1 == home {
            return key;
        }
    }
    panic!("no key homed at {home}");
}

#[tokio::test]
async fn writes_are_seen_everywhere_and_states_follow_mesi() {
    // Capacity 2 so that two more writes on node 0 evict (and write back) its Modified line; homes keep more.
    let cluster = Cluster::start_cache(
        3,
        &["--cache-capacity", "2", "--cache-home-capacity", "1000"],
    );
    views_agree(&cluster).await;
    let [a, b, c] = [0, 1, 2].map(|id| Cache::new(&cluster, id));
    // Node 2 is the home, so the copies on 0 and 1 are remote copies.
    let key = key_homed_at(&a, 2, "mesi").await;

    assert_eq!(a.put(&key, b"v1").await, 204);
    assert_eq!(a.state(&key).await.0, "M", "a writer holds M");
    let got = b.get(&key).await;
    assert_eq!((got.status, got.body.as_slice()), (200, &b"v1"[..]));
    assert_eq!((got.cache.as_str(), got.state.as_str()), ("miss", "S"));
    assert_eq!(
        a.state(&key).await.0,
        "S",
        "a reader recalled the M copy to S"
    );
    let got = b.get(&key).await;
    assert_eq!((got.cache.as_str(), got.state.as_str()), ("hit", "S"));

    // A write invalidates every other copy before it returns.
    assert_eq!(c.put(&key, b"v2").await, 204);
    assert_eq!(c.state(&key).await.0, "M");
    assert_eq!(a.state(&key).await.0, "I");
    assert_eq!(
        b.state(&key).await.0,
        "I",
        "B's copy goes to I after another node writes"
    );
    for node in [&a, &b, &c] {
        assert_eq!(node.get(&key).await.body, b"v2");
    }

    // LRU: node 0 holds `lru` (M) plus one more line; two more lines push the least recently used one out, and
    // its write-back makes the home's copy current.
    let lru = key_homed_at(&a, 1, "lru").await;
    assert_eq!(a.put(&lru, b"dirty").await, 204);
    assert_eq!(a.state(&lru).await.0, "M");
    let evictions = a.stats().await["evictions"].as_u64().unwrap();
    assert_eq!(a.put(b"filler-1", b"x").await, 204);
    assert_eq!(a.put(b"filler-2", b"x").await, 204);
    assert_eq!(
        a.state(&lru).await.0,
        "I",
        "the least recently used line went"
    );
    assert!(a.stats().await["evictions"].as_u64().unwrap() > evictions);
    // The write-back runs in the background once the line is evicted.
    eventually("the evicted M line written back", || async {
        (a.stats().await["writebacks"].as_u64()? >= 1).then_some(())
    })
    .await;
    // The first reader after the write-back is alone: E. E takes a write without asking anyone (to M); a
    // second reader then makes both S.
    let got = c.get(&lru).await;
    assert_eq!((got.status, got.body.as_slice()), (200, &b"dirty"[..]));
    assert_eq!(got.state, "E", "the first reader holds E");
    let sent = cluster_invalidations(&[&a, &b, &c]).await;
    assert_eq!(c.put(&lru, b"mine").await, 204);
    assert_eq!(c.state(&lru).await.0, "M", "E becomes M silently");
    assert_eq!(cluster_invalidations(&[&a, &b, &c]).await, sent);
    let got = b.get(&lru).await;
    assert_eq!(
        (got.body.as_slice(), got.state.as_str()),
        (&b"mine"[..], "S")
    );
    assert_eq!(c.state(&lru).await.0, "S", "the second reader makes both S");
    // Deletes reach every node.
    assert_eq!(a.delete(&lru).await, 204);
    for node in [&a, &b, &c] {
        assert_eq!(node.get(&lru).await.status, 404);
    }

    let stats = b.stats().await;
    for field in [
        "capacity",
        "entries",
        "hits",
        "misses",
        "evictions",
        "invalidations_sent",
        "invalidations_received",
    ] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }
    assert!(stats["hits"].as_u64().unwrap() >= 1);
    assert!(stats["invalidations_received"].as_u64().unwrap() >= 1);
}

async fn cluster_invalidations(nodes: &[&Cache]) -> u64 {
    let mut total = 0;
    for node in nodes {
        total += node.stats().await["invalidations_sent"].as_u64().unwrap();
    }
    total
}

#[tokio::test]
async fn concurrent_writers_leave_one_value_everywhere() {
    let cluster = Cluster::start_cache(3, &[]);
    views_agree(&cluster).await;
    let nodes = [0, 1, 2].map(|id| Cache::new(&cluster, id));
    for round in 0..15 {
        let key = format!("contended-{}", round % 3).into_bytes();
        // Everyone reads first, so the writes must invalidate shared copies.
        for node in &nodes {
            let _ = node.get(&key).await;
        }
        let w1 = format!("from-0-round-{round}");
        let w2 = format!("from-1-round-{round}");
        let (s1, s2) = tokio::join!(
            nodes[0].put(&key, w1.as_bytes()),
            nodes[1].put(&key, w2.as_bytes())
        );
        assert_eq!((s1, s2), (204, 204));
        let mut seen = Vec::new();
        for node in &nodes {
            let got = node.get(&key).await;
            assert_eq!(got.status, 200);
            seen.push(String::from_utf8(got.body).unwrap());
        }
        assert!(
            seen.iter().all(|v| *v == seen[0]) && (seen[0] == w1 || seen[0] == w2),
            "round {round}: nodes disagree after both writes returned: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_peer_that_dies_and_comes_back_serves_nothing_stale() {
    let mut cluster = Cluster::start_cache(3, &[]);
    views_agree(&cluster).await;
    let [a, b, c] = [0, 1, 2].map(|id| Cache::new(&cluster, id));

    // A sharer dies: the next write waits out its lease instead of failing, and the sharer comes back empty.
    let key = key_homed_at(&a, 0, "sharer").await;
    assert_eq!(a.put(&key, b"old").await, 204);
    assert_eq!(c.get(&key).await.body, b"old");
    assert_eq!(c.state(&key).await.0, "S");
    cluster.kill(2);
    assert_eq!(
        b.put(&key, b"new").await,
        204,
        "a dead sharer delays a write, it does not fail it"
    );
    cluster.restart(2);
    views_agree(&cluster).await;
    let c = Cache::new(&cluster, 2);
    let got = c.get(&key).await;
    assert_eq!((got.status, got.body.as_slice()), (200, &b"new"[..]));

    // A home dies with a value and comes back: nobody may serve the value from before a newer write.
    let key = key_homed_at(&a, 1, "home").await;
    assert_eq!(a.put(&key, b"before").await, 204);
    assert_eq!(c.get(&key).await.body, b"before");
    cluster.kill(1);
    // Node 1 leaves the views; the key gets another home, which waits out the old home's leases.
    eventually("a write through the key's new home", || async {
        (a.put(&key, b"after").await == 204).then_some(())
    })
    .await;
    cluster.restart(1);
    views_agree(&cluster).await;
    let b = Cache::new(&cluster, 1);
    for node in [&a, &b, &c] {
        let got = node.get(&key).await;
        assert!(
            got.status == 404 || got.body == b"after",
            "a value from before the last write came back: {got:?}"
        );
    }
    // And the key works again.
    assert_eq!(b.put(&key, b"again").await, 204);
    for node in [&a, &b, &c] {
        assert_eq!(node.get(&key).await.body, b"again");
    }
}

#[tokio::test]
async fn bad_cache_input_gets_4xx_problems() {
    let cluster = Cluster::start_cache(1, &["--max-cache-value-bytes", "1024"]);
    views_agree(&cluster).await;
    let node = Cache::new(&cluster, 0);

    let long_key = vec![b'k'; 1025];
    let (status, body) = node
        .raw(
            reqwest::Method::GET,
            &format!("/v1/cache/{}", encode(&long_key)),
            Vec::new(),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_request"), "{body}");

    let (status, body) = node
        .raw(reqwest::Method::PUT, "/v1/cache/big", vec![0; 2048])
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("too_large"), "{body}");

    let (status, body) = node
        .raw(reqwest::Method::GET, "/v1/cache/missing", Vec::new())
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"), "{body}");

    let (status, body) = node
        .raw(reqwest::Method::POST, "/v1/cache/k", b"x".to_vec())
        .await;
    assert_eq!(status, 405, "{body}");

    let (status, _) = node
        .raw(reqwest::Method::GET, "/v1/cache/", Vec::new())
        .await;
    assert!(
        (400..500).contains(&status),
        "an empty key is a client error"
    );

    // Keys are bytes: any of them, percent-encoded; values are bytes, empty included.
    let odd_key = [0xff, 0x00, b'/', b' ', 0xc3];
    assert_eq!(node.put(&odd_key, b"").await, 204);
    let got = node.get(&odd_key).await;
    assert_eq!((got.status, got.body.len()), (200, 0));
    assert_eq!(node.put(&long_key[..1024], b"max key").await, 204);
    assert_eq!(node.get(&long_key[..1024]).await.body, b"max key");

    // Internal routes refuse frames that are not frames, without a 500.
    let (status, _) = node
        .raw(
            reqwest::Method::POST,
            "/internal/cache/request",
            b"garbage".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    cluster.assert_alive();
}
