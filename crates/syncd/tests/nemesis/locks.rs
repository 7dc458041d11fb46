//! The lock service under each kind of fault. Every scenario runs the same workload (5 clients, 3 locks, waits,
//! abandoned leases, reads) while its nemesis acts, heals everything, checks that grants flow again within a
//! bound, reads every lock through every node, and runs the checkers over the whole history.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncd_client::syncd_api::locks::LockMode;
use syncd_nemesis::checker::{Anomaly, linearizable, locks, report};
use syncd_nemesis::history::{History, Op};

use super::cluster::{NemesisCluster, Rng, duration, exclusive};
use super::workload::{Gate, Probe, Profile, Workload, final_reads};

/// Once every fault is healed, a grant must complete within this long, again and again.
const LIVENESS_BOUND: Duration = Duration::from_secs(4);
/// How long the healthy window after the faults lasts.
const HEALTHY: Duration = Duration::from_secs(5);
/// How many states the linearizability search of one lock may visit before it calls the lock undecided.
const MAX_STATES: usize = 2_000_000;
/// The CI length of a scenario's fault phase.
const CI_FAULTS: Duration = Duration::from_secs(16);

/// What a nemesis works with.
struct Ctx {
    cluster: Arc<NemesisCluster>,
    /// For the nemesis's own recorded probes.
    history: History,
    /// Holds the workload's clients back while it is written.
    gate: Gate,
    rng: Rng,
    /// When to stop injecting faults.
    deadline: Instant,
}

/// Runs one scenario: `nemesis` acts until its deadline and must leave every node running and every link healed.
async fn scenario<F, Fut>(name: &str, profile: Profile, nemesis: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let _one_at_a_time = exclusive().await;
    let mut rng = Rng::from_env(name);
    let cluster = Arc::new(NemesisCluster::start(3).await);
    assert!(
        cluster.leader(Duration::from_secs(30)).await.is_some(),
        "{name}: no leader at the start\n{}",
        cluster.logs()
    );
    let history = History::new();
    let addrs: Vec<String> = cluster
        .ids()
        .iter()
        .map(|id| cluster.addr(*id).to_owned())
        .collect();
    let workload = Workload::start(&history, addrs.clone(), 5, rng.next(), profile);

    let deadline = Instant::now() + duration(CI_FAULTS);
    nemesis(Ctx {
        cluster: cluster.clone(),
        history: history.clone(),
        gate: workload.gate(),
        rng: Rng(rng.next() | 1),
        deadline,
    })
    .await;

    // Heal whatever is left, then a healthy window in which grants must keep flowing.
    cluster.mesh.heal_all();
    for id in cluster.ids() {
        cluster.slow_disk(id, Duration::ZERO);
        if cluster.procs.is_stopped(id) {
            cluster.cont(id);
        }
        if !cluster.procs.is_running(id) {
            cluster.restart(id);
        }
    }
    let healed = Instant::now();
    let leader = cluster.leader(Duration::from_secs(20)).await;
    tokio::time::sleep(HEALTHY).await;
    let window = (healed, Instant::now());
    workload.stop().await;
    final_reads(&history, &addrs).await;
    cluster.assert_alive();

    let mut anomalies: Vec<Anomaly> = Vec::new();
    anomalies.extend(locks::mutual_exclusion(&history));
    anomalies.extend(locks::tokens_monotonic(&history));
    anomalies.extend(locks::reads_see_writes(&history));
    let linearizable =
        (profile == Profile::Linearizable).then(|| linearizable::check(&history, MAX_STATES));
    if let Some(report) = &linearizable {
        anomalies.extend(report.anomalies.iter().cloned());
    }
    anomalies.extend(locks::liveness(
        &history,
        &[window],
        LIVENESS_BOUND + Duration::from_secs(3),
    ));
    let ops = history.operations();
    let granted = ops
        .iter()
        .filter(|op| matches!(op.op, Op::Acquire { .. }) && op.ok_value().is_some())
        .count();
    let search = linearizable.as_ref().map_or(String::new(), |r| {
        format!(
            ", linearizability: {} locks, {} operations, undecided {:?}",
            r.locks, r.operations, r.undecided
        )
    });
    let summary = format!(
        "{name}: {} operations, {granted} grants, leader after healing {leader:?}, {} anomalies{search}",
        ops.len(),
        anomalies.len()
    );
    eprintln!("{summary}");
    if !anomalies.is_empty() || granted < 20 || leader.is_none() {
        let cluster = Arc::try_unwrap(cluster)
            .ok()
            .expect("the nemesis let go of the cluster");
        let logs = cluster.logs();
        let dir = cluster.keep_dir();
        let dump = dir.join("history.jsonl");
        history.dump(&dump).expect("dump the history");
        panic!(
            "{summary}\nhistory: {}\n{}\n{logs}",
            dump.display(),
            report(&anomalies)
        );
    }
}

/// Sleeps for a random time in `lo..hi` milliseconds, but not past `deadline`.
async fn pause(rng: &mut Rng, lo: u64, hi: u64, deadline: Instant) {
    let wanted = Instant::now() + Duration::from_millis(rng.range(lo, hi));
    tokio::time::sleep_until(wanted.min(deadline).max(Instant::now()).into()).await;
}

/// The leader if one is agreed on quickly, else any node.
async fn leader_or_any(cluster: &NemesisCluster, rng: &mut Rng) -> u64 {
    match cluster.leader(Duration::from_secs(3)).await {
        Some(leader) => leader,
        None => rng.pick(&cluster.ids()),
    }
}

/// The leader (as [`leader_or_any`]) with probability `p_leader`, else any node.
async fn victim(cluster: &NemesisCluster, rng: &mut Rng, p_leader: f64) -> u64 {
    if rng.chance(p_leader) {
        leader_or_any(cluster, rng).await
    } else {
        rng.pick(&cluster.ids())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_of_the_leader_and_of_followers() {
    scenario("crashes", Profile::Leases, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        while Instant::now() < deadline {
            let victim = victim(&cluster, &mut rng, 0.5).await;
            cluster.kill(victim);
            pause(&mut rng, 300, 1_500, deadline).await;
            cluster.restart(victim);
            pause(&mut rng, 1_000, 2_500, deadline).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_of_one_to_five_seconds() {
    scenario("stalls", Profile::Leases, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        while Instant::now() < deadline {
            let victim = victim(&cluster, &mut rng, 0.6).await;
            cluster.stop(victim);
            // Not cut short by the deadline: the stall is the fault.
            tokio::time::sleep(Duration::from_millis(rng.range(1_000, 5_000))).await;
            cluster.cont(victim);
            pause(&mut rng, 500, 2_000, deadline).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_crashes_with_staggered_restarts_in_every_order() {
    scenario(
        "whole-cluster restarts",
        Profile::Leases,
        |ctx| async move {
            let Ctx {
                cluster,
                history,
                gate,
                mut rng,
                deadline,
            } = ctx;
            let orders: [[u64; 3]; 6] = [
                [0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0],
            ];
            let mut round = 0;
            // Every order once, whatever the deadline; then random orders until it.
            while round < orders.len() || Instant::now() < deadline {
                let order = if round < orders.len() {
                    orders[round]
                } else {
                    orders[rng.range(0, 6) as usize]
                };
                round += 1;
                // The old leader first half of the time: it comes back as leader in its old term.
                let leader = cluster.leader(Duration::from_secs(3)).await;
                let order: Vec<u64> = match leader {
                    Some(l) if rng.chance(0.5) => std::iter::once(l)
                        .chain(order.iter().copied().filter(|id| *id != l))
                        .collect(),
                    _ => order.to_vec(),
                };
                // A probe lock taken through a follower just before the crash, read at once after the restart through
                // the node restarted last: the read must see it, although the last acknowledged write may be past the
                // commit index the nodes saved.
                let follower = order
                    .iter()
                    .rev()
                    .copied()
                    .find(|id| Some(*id) != leader)
                    .unwrap_or(order[order.len() - 1]);
                let probe_lock = format!("probe-{round}");
                let mut writer = Probe::new(&history, 1_000 + round as u64, cluster.addr(follower));
                // The probe is the last write before the crash and the first read after it: the clients wait
                // meanwhile.
                let quiet = gate.write().await;
                let probed = writer.acquire(&probe_lock, &probe_lock, 120_000).await;
                for id in cluster.ids() {
                    cluster.kill(id);
                }
                for (i, id) in order.iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(rng.range(0, 400))).await;
                    }
                    cluster.restart(*id);
                }
                if probed {
                    let mut reader =
                        Probe::new(&history, 2_000 + round as u64, cluster.addr(follower));
                    let until = Instant::now() + Duration::from_secs(10);
                    while !reader.read(&probe_lock).await && Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                drop(quiet);
                tokio::time::sleep(Duration::from_millis(rng.range(300, 1_500))).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_the_leader_of_a_follower_and_flapping_links() {
    scenario("partitions", Profile::Leases, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        let mut kind = 0;
        while Instant::now() < deadline {
            match kind % 3 {
                0 => {
                    // The leader cut off from its followers while clients still reach it.
                    let leader = leader_or_any(&cluster, &mut rng).await;
                    cluster.mesh.isolate(leader);
                    tokio::time::sleep(Duration::from_millis(rng.range(1_500, 4_000))).await;
                }
                1 => {
                    let leader = leader_or_any(&cluster, &mut rng).await;
                    let followers: Vec<u64> = cluster
                        .ids()
                        .into_iter()
                        .filter(|id| *id != leader)
                        .collect();
                    cluster.mesh.isolate(rng.pick(&followers));
                    tokio::time::sleep(Duration::from_millis(rng.range(1_500, 4_000))).await;
                }
                _ => {
                    // Flapping: random links cut and healed every few hundred milliseconds.
                    let until = Instant::now() + Duration::from_millis(3_000);
                    while Instant::now() < until {
                        let ids = cluster.ids();
                        let a = rng.pick(&ids);
                        let b = rng.pick(&ids);
                        if a != b {
                            if rng.chance(0.5) {
                                cluster.mesh.cut(a, b);
                            } else {
                                cluster.mesh.heal(a, b);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(rng.range(100, 400))).await;
                    }
                }
            }
            kind += 1;
            cluster.mesh.heal_all();
            pause(&mut rng, 1_000, 2_000, deadline).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disks_on_the_leader_and_everywhere() {
    scenario("slow disks", Profile::Leases, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        assert!(
            cluster.has_disk_faults(),
            "slow-disk faults need a C compiler (cc)"
        );
        while Instant::now() < deadline {
            let delay = Duration::from_millis(rng.range(20, 250));
            let victims = if rng.chance(0.5) {
                vec![leader_or_any(&cluster, &mut rng).await]
            } else {
                cluster.ids()
            };
            for id in &victims {
                cluster.slow_disk(*id, delay);
            }
            tokio::time::sleep(Duration::from_millis(rng.range(1_500, 4_000))).await;
            // Sometimes the slow node dies with writes in its fsync.
            if rng.chance(0.3) {
                let victim = victims[0];
                cluster.kill(victim);
                cluster.slow_disk(victim, Duration::ZERO);
                tokio::time::sleep(Duration::from_millis(500)).await;
                cluster.restart(victim);
            }
            for id in &victims {
                cluster.slow_disk(*id, Duration::ZERO);
            }
            pause(&mut rng, 500, 1_500, deadline).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_on_the_leader() {
    scenario("clock steps", Profile::Leases, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        assert!(
            cluster.has_clock_faults(),
            "clock faults need libfaketime (apt-get install libfaketime)"
        );
        let steps = [60.0, -60.0, 3_600.0, 5.0, -3_600.0];
        let mut i = 0;
        while Instant::now() < deadline {
            let leader = leader_or_any(&cluster, &mut rng).await;
            cluster.step_clock(leader, steps[i % steps.len()]);
            i += 1;
            tokio::time::sleep(Duration::from_millis(rng.range(1_500, 3_000))).await;
            if rng.chance(0.5) {
                // The stepped leader loses its leadership while its clock is off.
                cluster.kill(leader);
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster.restart(leader);
            }
            pause(&mut rng, 500, 1_500, deadline).await;
        }
        for id in cluster.ids() {
            cluster.step_clock(id, 0.0);
        }
    })
    .await;
}

/// Crashes, stalls, partitions and clock steps in turn, with a workload the sequential model covers (no waits, no
/// expiry), and the whole history searched for a linearization lock by lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_checked_for_linearizability() {
    scenario("linearizability", Profile::Linearizable, |ctx| async move {
        let Ctx {
            cluster,
            mut rng,
            deadline,
            ..
        } = ctx;
        let mut kind = 0;
        while Instant::now() < deadline {
            let victim = victim(&cluster, &mut rng, 0.7).await;
            match kind % 4 {
                0 => {
                    cluster.kill(victim);
                    pause(&mut rng, 300, 1_500, deadline).await;
                    cluster.restart(victim);
                }
                1 => {
                    cluster.stop(victim);
                    tokio::time::sleep(Duration::from_millis(rng.range(1_000, 4_000))).await;
                    cluster.cont(victim);
                }
                2 => {
                    cluster.mesh.isolate(victim);
                    tokio::time::sleep(Duration::from_millis(rng.range(1_000, 3_000))).await;
                    cluster.mesh.heal_all();
                }
                _ => {
                    cluster.step_clock(victim, 60.0);
                    tokio::time::sleep(Duration::from_millis(rng.range(1_000, 3_000))).await;
                    cluster.step_clock(victim, 0.0);
                }
            }
            kind += 1;
            pause(&mut rng, 500, 1_500, deadline).await;
        }
    })
    .await;
}

/// The case from the field: a 20 s lease, the leader's wall clock jumps 60 s ahead while other clients keep
/// the log busy, and another client asks for the lock. The lease must hold; a waiter's wait must last its
/// length too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_clock_step_on_the_leader_ends_no_lease_and_no_wait_early() {
    let _one_at_a_time = exclusive().await;
    let cluster = NemesisCluster::start(3).await;
    assert!(
        cluster.has_clock_faults(),
        "clock faults need libfaketime (apt-get install libfaketime)"
    );
    let leader = cluster
        .leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let http = reqwest::Client::new();
    let acquire = |node: u64, lock: &str, owner: &str, ttl_ms: u64, wait_ms: u64| {
        let http = http.clone();
        let url = format!("http://{}/v1/locks/{lock}/acquire", cluster.addr(node));
        let body = serde_json::json!({"owner": owner, "mode": LockMode::Exclusive, "ttl_ms": ttl_ms, "wait_ms": wait_ms});
        async move {
            let resp = http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("acquire sent");
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let (status, _) = acquire(leader, "held", "a", 20_000, 0).await;
    assert_eq!(status, 200);
    cluster.step_clock(leader, 60.0);
    // Other clients keep the log moving: every entry is stamped by the stepped leader.
    for i in 0..10 {
        let (status, _) = acquire(leader, &format!("other-{i}"), "busy", 1_000, 0).await;
        assert_eq!(status, 200);
    }
    let (status, body) = acquire(leader, "held", "b", 20_000, 0).await;
    assert_eq!(
        status, 409,
        "b was granted a's lock while a's 20 s lease ran: {body}"
    );
    // A waiter's wait of 3 s is not cut short by the step either.
    let started = Instant::now();
    let (status, body) = acquire(leader, "held", "c", 20_000, 3_000).await;
    assert_eq!(status, 409, "c was granted a's lock: {body}");
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "a 3 s wait ended after {:?}",
        started.elapsed()
    );
    let read: serde_json::Value = http
        .get(format!("http://{}/v1/locks/held", cluster.addr(leader)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["holders"][0]["owner"], "a", "{read}");
}

/// A client that gives up on a waiting acquire while its proposal is held up (here: the leader is stalled, so the
/// follower's forward is in flight) must not leave a request queued for nobody, later granted and held until its
/// lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_acquire_abandoned_before_it_was_proposed_is_withdrawn() {
    let _one_at_a_time = exclusive().await;
    let cluster = NemesisCluster::start(3).await;
    let leader = cluster
        .leader(Duration::from_secs(30))
        .await
        .expect("a leader");
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let http = reqwest::Client::new();
    let url =
        |node: u64, path: &str| format!("http://{}/v1/locks/contended/{path}", cluster.addr(node));
    let held = http
        .post(url(leader, "acquire"))
        .json(&serde_json::json!({"owner": "a", "ttl_ms": 60_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    // The leader stalls for less than an election timeout; b's waiting acquire reaches the follower, which
    // forwards it, and b gives up before anything comes back.
    cluster.stop(leader);
    let abandoned = http
        .post(url(follower, "acquire"))
        .json(&serde_json::json!({"owner": "b", "ttl_ms": 60_000, "wait_ms": 20_000}))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(
        abandoned.is_err(),
        "b's call should have timed out: {abandoned:?}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.cont(leader);
    let released = http
        .post(url(leader, "release"))
        .json(&serde_json::json!({"owner": "a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    // b is neither granted nor left waiting: the lock ends up free.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let info: serde_json::Value = http
            .get(format!(
                "http://{}/v1/locks/contended",
                cluster.addr(leader)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if info["holders"].as_array().is_some_and(Vec::is_empty)
            && info["waiters"].as_array().is_some_and(Vec::is_empty)
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "an abandoned request still holds or waits for the lock: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
