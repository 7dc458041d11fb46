//! Queue scenarios: producers and consumers on three queues through random nodes while the leaders of the queues
//! are stalled, partitioned from their replicas (clients still reaching them), or crashed, the whole cluster
//! included. Afterwards everything is drained and the history checked (`syncd_nemesis::checker::queues`): every
//! 201 delivered, no ack answered 200 undone, no message visible twice within its visibility; and the queues must
//! serve again (the drain has a bound).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use syncd_nemesis::checker::queues::{
    Delivery, Outcome, Produce, QueueHistory, Settle, check, duplicates,
};
use syncd_nemesis::checker::report;

use super::cluster::{NemesisCluster, Rng, Roles, duration, exclusive};

const QUEUES: [&str; 3] = ["orders", "emails", "jobs"];
/// Short, so deliveries whose ack was lost come back within the run.
const VISIBILITY_MS: u64 = 3_000;
/// How long the final drain may take: the queues must serve again within it.
const DRAIN_PATIENCE: Duration = Duration::from_secs(60);

/// The history being recorded.
struct Recorder {
    start: Instant,
    history: Mutex<QueueHistory>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn with<R>(&self, f: impl FnOnce(&mut QueueHistory) -> R) -> R {
        f(&mut self.history.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What an HTTP call came to.
enum Answer {
    Ok(Value),
    /// Certainly not carried out: a 4xx other than a timeout, or a refused connection.
    Fail,
    /// Unknown.
    Info,
}

async fn call(http: &reqwest::Client, addr: &str, path: &str, body: Option<Value>) -> Answer {
    let url = format!("http://{addr}{path}");
    let request = match body {
        Some(body) => http.post(url).json(&body),
        None => http.get(url),
    };
    match request.send().await {
        Err(e) if e.is_connect() => Answer::Fail,
        Err(_) => Answer::Info,
        Ok(resp) => {
            let status = resp.status().as_u16();
            match resp.json::<Value>().await {
                Ok(v) if (200..300).contains(&status) => Answer::Ok(v),
                _ if (400..500).contains(&status) && status != 408 => Answer::Fail,
                _ => Answer::Info,
            }
        }
    }
}

struct Workload {
    addrs: Vec<String>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
}

impl Workload {
    fn start(cluster: &NemesisCluster, seed: u64) -> (Workload, Vec<tokio::task::JoinHandle<()>>) {
        let workload = Workload {
            addrs: cluster
                .initial_ids()
                .iter()
                .map(|id| cluster.addr(*id).to_owned())
                .collect(),
            recorder: Arc::new(Recorder {
                start: Instant::now(),
                history: Mutex::new(QueueHistory::default()),
            }),
            stop: Arc::new(AtomicBool::new(false)),
            produced: Arc::new(AtomicU64::new(0)),
        };
        let mut tasks = Vec::new();
        for worker in 0..3u64 {
            tasks.push(tokio::spawn(workload.producer(worker, seed ^ worker)));
        }
        for worker in 0..2u64 {
            tasks.push(tokio::spawn(workload.consumer(seed ^ (worker + 100))));
        }
        (workload, tasks)
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(12))
            .build()
            .expect("http client")
    }

    fn producer(&self, worker: u64, seed: u64) -> impl Future<Output = ()> + use<> {
        let (addrs, recorder, stop, produced) = (
            self.addrs.clone(),
            self.recorder.clone(),
            self.stop.clone(),
            self.produced.clone(),
        );
        async move {
            let http = Self::http();
            let mut rng = Rng(seed | 1);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let queue = rng.pick(&QUEUES);
                let body = format!("p{worker}-{n}");
                let addr = &addrs[rng.range(0, addrs.len() as u64) as usize];
                let invoked = recorder.now();
                let answer = call(
                    &http,
                    addr,
                    &format!("/v1/queues/{queue}/messages"),
                    Some(json!({ "body": body })),
                )
                .await;
                let outcome = match answer {
                    Answer::Ok(_) => {
                        produced.fetch_add(1, Ordering::Relaxed);
                        Outcome::Ok
                    }
                    Answer::Fail => Outcome::Fail,
                    Answer::Info => Outcome::Info,
                };
                let completed = recorder.now();
                recorder.with(|h| {
                    h.produces.push(Produce {
                        queue: queue.to_owned(),
                        body,
                        invoked,
                        completed,
                        outcome,
                    })
                });
            }
        }
    }

    fn consumer(&self, seed: u64) -> impl Future<Output = ()> + use<> {
        let (addrs, recorder, stop) =
            (self.addrs.clone(), self.recorder.clone(), self.stop.clone());
        async move {
            let http = Self::http();
            let mut rng = Rng(seed | 1);
            while !stop.load(Ordering::Relaxed) {
                let queue = rng.pick(&QUEUES);
                let addr = addrs[rng.range(0, addrs.len() as u64) as usize].clone();
                // Now and then a delivery is left unacked: it must stay hidden for its visibility.
                let ack = !rng.chance(0.05);
                receive_and_ack(&http, &recorder, &addr, queue, 5, VISIBILITY_MS, 300, ack).await;
            }
        }
    }
}

/// One receive, recorded, and (with `ack`) one ack of everything it got, recorded. Returns how many it got.
#[allow(clippy::too_many_arguments)]
async fn receive_and_ack(
    http: &reqwest::Client,
    recorder: &Recorder,
    addr: &str,
    queue: &str,
    max: u64,
    visibility_ms: u64,
    wait_ms: u64,
    ack: bool,
) -> Option<usize> {
    let invoked = recorder.now();
    let answer = call(
        http,
        addr,
        &format!("/v1/queues/{queue}/receive"),
        Some(json!({ "max": max, "visibility_ms": visibility_ms, "wait_ms": wait_ms })),
    )
    .await;
    let completed = recorder.now();
    let Answer::Ok(value) = answer else {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return None;
    };
    let got: Vec<(String, String)> = value["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some((
                m["body"].as_str()?.to_owned(),
                m["receipt"].as_str()?.to_owned(),
            ))
        })
        .collect();
    recorder.with(|h| {
        for (body, receipt) in &got {
            h.deliveries.push(Delivery {
                queue: queue.to_owned(),
                body: body.clone(),
                receipt: receipt.clone(),
                invoked,
                completed,
                visibility_ms,
            });
        }
    });
    if !ack || got.is_empty() {
        return Some(got.len());
    }
    let receipts: Vec<&str> = got.iter().map(|(_, r)| r.as_str()).collect();
    let invoked = recorder.now();
    let answer = call(
        http,
        addr,
        &format!("/v1/queues/{queue}/ack"),
        Some(json!({ "receipts": receipts })),
    )
    .await;
    let completed = recorder.now();
    let outcome = match answer {
        Answer::Ok(_) => Outcome::Ok,
        Answer::Fail => Outcome::Fail,
        Answer::Info => Outcome::Info,
    };
    recorder.with(|h| {
        for (body, receipt) in &got {
            h.settles.push(Settle {
                queue: queue.to_owned(),
                body: body.clone(),
                receipt: receipt.clone(),
                nack: false,
                invoked,
                completed,
                outcome,
            });
        }
    });
    Some(got.len())
}

/// Drains every queue through any node until each reports nothing ready or in flight (bounded).
async fn drain(workload: &Workload) -> Result<(), String> {
    let http = Workload::http();
    let until = Instant::now() + DRAIN_PATIENCE;
    for queue in QUEUES {
        loop {
            if Instant::now() > until {
                return Err(format!(
                    "queue {queue} did not drain within {DRAIN_PATIENCE:?}"
                ));
            }
            let addr = &workload.addrs[0];
            let got = receive_and_ack(
                &http,
                &workload.recorder,
                addr,
                queue,
                100,
                60_000,
                200,
                true,
            )
            .await;
            if got.is_some_and(|n| n > 0) {
                continue;
            }
            if let Answer::Ok(info) = call(&http, addr, &format!("/v1/queues/{queue}"), None).await
                && info["ready"].as_u64() == Some(0)
                && info["inflight"].as_u64() == Some(0)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The leader of `queue` as some node reports it.
async fn leader_of(cluster: &NemesisCluster, queue: &str) -> Option<u64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    for id in cluster.ids() {
        if let Answer::Ok(info) = call(
            &http,
            cluster.addr(id),
            &format!("/v1/queues/{queue}"),
            None,
        )
        .await
        {
            return info["owner"].as_u64();
        }
    }
    None
}

/// Runs a queue scenario: a 3-node cluster (two copies per shard), the workload, `faults` until the deadline,
/// then healing, the drain and the checks.
async fn scenario<F, Fut>(name: &str, faults: F)
where
    F: FnOnce(Arc<NemesisCluster>, Rng, Instant) -> Fut,
    Fut: Future<Output = ()>,
{
    scenario_with(name, 3, faults).await;
}

/// [`scenario`] over `nodes` node addresses (three start; the others are for scaling, started by the faults).
async fn scenario_with<F, Fut>(name: &str, nodes: u64, faults: F)
where
    F: FnOnce(Arc<NemesisCluster>, Rng, Instant) -> Fut,
    Fut: Future<Output = ()>,
{
    let _one = exclusive().await;
    let rng = Rng::from_env(name);
    let seed = rng.0;
    let cluster = Arc::new(NemesisCluster::start_scalable(nodes, 3, Roles::Queues).await);
    let http = Workload::http();
    // Ready: every queue takes a message through node 0.
    let ready_until = Instant::now() + Duration::from_secs(30);
    for queue in QUEUES {
        loop {
            assert!(
                Instant::now() < ready_until,
                "the queues never became ready\n{}",
                cluster.logs()
            );
            if let Answer::Ok(_) =
                call(&http, cluster.addr(0), &format!("/v1/queues/{queue}"), None).await
            {
                break;
            }
            // Creating the queue is part of the workload; a GET of a missing one answers 404.
            let _ = call(
                &http,
                cluster.addr(0),
                &format!("/v1/queues/{queue}/receive"),
                Some(json!({ "max": 1, "visibility_ms": 1, "wait_ms": 0 })),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (workload, tasks) = Workload::start(&cluster, seed);
    let deadline = Instant::now() + duration(Duration::from_secs(20));
    faults(cluster.clone(), rng, deadline).await;
    cluster.mesh.heal_all();
    for id in cluster.initial_ids() {
        let _ = cluster.procs.cont(id);
        if !cluster.procs.is_running(id) {
            cluster.restart(id);
        }
    }
    workload.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let drained = drain(&workload).await;
    let history = workload.recorder.with(|h| h.clone());
    let anomalies = check(&history);
    let acked = history
        .produces
        .iter()
        .filter(|p| p.outcome == Outcome::Ok)
        .count();
    eprintln!(
        "{name}: {} produces ({acked} answered 201), {} deliveries, {} acks, {} bodies stored twice",
        history.produces.len(),
        history.deliveries.len(),
        history.settles.len(),
        duplicates(&history)
    );
    if anomalies.is_empty() && drained.is_ok() {
        assert!(
            acked > 50,
            "{name}: too little got through ({acked} produces answered 201)"
        );
        return;
    }
    let logs = cluster.logs();
    panic!(
        "{name} (SYNCD_NEMESIS_SEED={seed}): {}\n{}\n{logs}",
        drained.err().unwrap_or_default(),
        report(&anomalies)
    );
}

async fn pause(rng: &mut Rng, lo: u64, hi: u64, deadline: Instant) {
    let until = (Instant::now() + Duration::from_millis(rng.range(lo, hi))).min(deadline);
    tokio::time::sleep_until(until.into()).await;
}

/// The first scenario: the leader of a queue frozen for 1-4 s (2.5 s on average) again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_of_a_queue_leader() {
    scenario(
        "queue leader stalls",
        |cluster, mut rng, deadline| async move {
            while Instant::now() < deadline {
                let queue = rng.pick(&QUEUES);
                let Some(victim) = leader_of(&cluster, queue).await else {
                    pause(&mut rng, 200, 500, deadline).await;
                    continue;
                };
                cluster.stop(victim);
                tokio::time::sleep(Duration::from_millis(rng.range(1_000, 4_000))).await;
                cluster.cont(victim);
                pause(&mut rng, 1_000, 3_000, deadline).await;
            }
        },
    )
    .await;
}

/// The second scenario: a queue's leader cut off from the other nodes for 4 s while clients still reach
/// it, again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_partitioned_from_its_replicas_while_clients_reach_it() {
    scenario(
        "queue leader partitions",
        |cluster, mut rng, deadline| async move {
            while Instant::now() < deadline {
                let queue = rng.pick(&QUEUES);
                let Some(victim) = leader_of(&cluster, queue).await else {
                    pause(&mut rng, 200, 500, deadline).await;
                    continue;
                };
                cluster.mesh.isolate(victim);
                tokio::time::sleep(Duration::from_millis(4_000)).await;
                cluster.mesh.heal_all();
                pause(&mut rng, 1_000, 2_500, deadline).await;
            }
        },
    )
    .await;
}

/// Leaders and replicas SIGKILLed and restarted, and once the whole cluster, restarted in a random order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_and_a_whole_cluster_restart() {
    scenario("queue crashes", |cluster, mut rng, deadline| async move {
        let mut whole = false;
        while Instant::now() < deadline {
            if !whole && rng.chance(0.3) {
                whole = true;
                for id in cluster.ids() {
                    cluster.kill(id);
                }
                let mut order = cluster.ids();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.range(0, i as u64 + 1) as usize);
                }
                for id in order {
                    tokio::time::sleep(Duration::from_millis(rng.range(100, 1_500))).await;
                    cluster.restart(id);
                }
            } else {
                let queue = rng.pick(&QUEUES);
                let victim = match leader_of(&cluster, queue).await {
                    Some(leader) if rng.chance(0.7) => leader,
                    _ => rng.pick(&cluster.ids()),
                };
                cluster.kill(victim);
                tokio::time::sleep(Duration::from_millis(rng.range(500, 3_000))).await;
                cluster.restart(victim);
            }
            pause(&mut rng, 1_000, 3_000, deadline).await;
        }
    })
    .await;
}

/// Waits (bounded) until node `id` answers `/readyz` with 200.
async fn ready(cluster: &NemesisCluster, id: u64, patience: Duration) -> bool {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("http client");
    let until = Instant::now() + patience;
    while Instant::now() < until {
        let answered = http
            .get(format!("http://{}/readyz", cluster.addr(id)))
            .send()
            .await;
        if answered.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A rolling restart, as Kubernetes does one: each node in turn gets SIGTERM (it hands its shards to in-sync
/// replicas, then exits), comes back, and is ready before the next one goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restarts() {
    scenario(
        "queue rolling restarts",
        |cluster, mut rng, deadline| async move {
            while Instant::now() < deadline {
                for id in cluster.ids() {
                    let c = cluster.clone();
                    let exit = tokio::task::spawn_blocking(move || {
                        c.procs.terminate(id, Duration::from_secs(30))
                    })
                    .await
                    .expect("terminate task");
                    assert!(
                        exit.as_ref().is_ok_and(|s| s.success()),
                        "node {id} did not exit cleanly on SIGTERM: {exit:?}\n{}",
                        cluster.logs()
                    );
                    cluster.restart(id);
                    assert!(
                        ready(&cluster, id, Duration::from_secs(30)).await,
                        "node {id} not ready after a restart\n{}",
                        cluster.logs()
                    );
                    pause(&mut rng, 500, 1_500, deadline + Duration::from_secs(60)).await;
                }
            }
        },
    )
    .await;
}

/// Slow fsync on a queue's leader (20-250 ms more per fsync) for a few seconds at a time, sometimes on every node,
/// sometimes with the slow leader killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disks_under_a_queue_leader() {
    scenario(
        "queue slow disks",
        |cluster, mut rng, deadline| async move {
            if !cluster.has_disk_faults() {
                eprintln!(
                    "no C compiler: the slow-fsync shim cannot be built; only the workload ran"
                );
                tokio::time::sleep_until(deadline.into()).await;
                return;
            }
            while Instant::now() < deadline {
                let delay = Duration::from_millis(rng.range(20, 250));
                let everywhere = rng.chance(0.3);
                let queue = rng.pick(&QUEUES);
                let Some(leader) = leader_of(&cluster, queue).await else {
                    pause(&mut rng, 200, 500, deadline).await;
                    continue;
                };
                let slow: Vec<u64> = if everywhere {
                    cluster.ids()
                } else {
                    vec![leader]
                };
                for id in &slow {
                    cluster.slow_disk(*id, delay);
                }
                tokio::time::sleep(Duration::from_millis(rng.range(2_000, 4_000))).await;
                if rng.chance(0.3) {
                    cluster.kill(leader);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    cluster.restart(leader);
                }
                for id in &slow {
                    cluster.slow_disk(*id, Duration::ZERO);
                }
                pause(&mut rng, 500, 1_500, deadline).await;
            }
        },
    )
    .await;
}

/// Asks `cluster`'s node 0 for ring `members` (with the addresses of any new ones) and waits until every running
/// member reports that epoch settled (bounded).
async fn change_ring(cluster: &NemesisCluster, members: &[u64]) {
    let http = Workload::http();
    let addrs: serde_json::Map<String, Value> = members
        .iter()
        .map(|id| (id.to_string(), Value::String(cluster.addr(*id).to_owned())))
        .collect();
    let body = json!({ "members": members, "addrs": addrs });
    let until = Instant::now() + Duration::from_secs(60);
    let epoch = loop {
        assert!(
            Instant::now() < until,
            "the ring change to {members:?} was not taken\n{}",
            cluster.logs()
        );
        if let Answer::Ok(ring) =
            call(&http, cluster.addr(0), "/internal/ring", Some(body.clone())).await
            && let Some(epoch) = ring["epoch"].as_u64()
        {
            break epoch;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        assert!(
            Instant::now() < until,
            "ring epoch {epoch} ({members:?}) did not settle\n{}",
            cluster.logs()
        );
        let mut settled = true;
        for id in members {
            match call(&http, cluster.addr(*id), "/v1/ring", None).await {
                Answer::Ok(ring)
                    if ring["epoch"].as_u64() == Some(epoch)
                        && ring["pending_handoffs"].as_u64() == Some(0) => {}
                _ => settled = false,
            }
        }
        if settled {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Scaling 3 -> 4 -> 3 while producing and consuming: a fourth node joins, shards move to it (new copies first),
/// then it is removed again (its shards move back before it stops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_three_to_four_to_three() {
    scenario_with(
        "queue scaling",
        4,
        |cluster, mut rng, deadline| async move {
            pause(&mut rng, 1_000, 2_000, deadline).await;
            cluster.restart(3);
            change_ring(&cluster, &[0, 1, 2, 3]).await;
            pause(&mut rng, 1_000, 3_000, deadline).await;
            change_ring(&cluster, &[0, 1, 2]).await;
            let c = cluster.clone();
            let exit =
                tokio::task::spawn_blocking(move || c.procs.terminate(3, Duration::from_secs(30)))
                    .await
                    .expect("terminate task");
            assert!(
                exit.is_ok_and(|s| s.success()),
                "node 3 did not stop cleanly\n{}",
                cluster.logs()
            );
            tokio::time::sleep_until(deadline.into()).await;
        },
    )
    .await;
}
