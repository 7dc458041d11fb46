//! The lock workloads. Each one opens its clients, runs, and hands back one [`WorkloadResult`].
//!
//! - `distinct`: C clients, each acquiring and releasing its own lock in a loop (no contention; measures the
//!   write path: every cycle is at least two replicated, fsynced writes).
//! - `contended`: C clients acquire (waiting) and release one lock; the latency includes the queueing.
//! - `handoff`: one hot lock, W waiters plus the holder; each holder keeps it `hold` then releases. Measures the
//!   hand-off: from the holder's release call being issued (and, separately, returning) to the next grant.
//! - `deadlock`: c1 holds a, c2 holds b, c1 waits for b, c2 asks for a. Measures how long c2's call takes to end:
//!   Syncd refuses it with `deadlock`; etcd has no detection, so c2 is granted a only when c1's lease runs out.
//!
//! Throughput runs have a warm-up, then a measured window; a cycle counts (for ops/s and latency) when it
//! completes inside the window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::backend::{Acquired, LockBackend, LockSession};
use crate::cpu::CpuSample;
use crate::report::{Detail, RunReport, Settings, WorkloadResult};
use crate::stats::{Recorder, signed_micros, signed_summary};

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Every client on its own lock.
    Distinct,
    /// Every client on one lock, waiting for it.
    Contended,
    /// One hot lock with many waiters: hand-off latency.
    Handoff,
    /// A two-client wait-for cycle: time to detection (or to lease expiry).
    Deadlock,
}

impl Workload {
    /// The name used in tables and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Distinct => "distinct",
            Workload::Contended => "contended",
            Workload::Handoff => "handoff",
            Workload::Deadlock => "deadlock",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Client counts; each is one run of each throughput workload (for `handoff`, the number of waiters).
    pub clients: Vec<usize>,
    /// Measured window of a run.
    pub duration: Duration,
    /// Unmeasured start of a run.
    pub warmup: Duration,
    /// Lease of the locks taken.
    pub ttl: Duration,
    /// Longest wait of a waiting acquire.
    pub wait: Duration,
    /// How long a `handoff` holder keeps the lock.
    pub hold: Duration,
    /// Number of deadlock rounds.
    pub deadlock_rounds: usize,
    /// Lease of the deadlock victim-to-be whose expiry ends an undetected deadlock.
    pub deadlock_ttl: Duration,
    /// Server processes whose CPU time to report.
    pub server_pids: Vec<u32>,
}

/// A short id that keeps lock names and owners of this process apart from earlier runs on the same cluster.
pub fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos % (1 << 40))
}

/// Runs the plan against `backend`.
pub async fn run_all<B: LockBackend>(backend: B, plan: &Plan) -> anyhow::Result<RunReport> {
    let backend = Arc::new(backend);
    let run = run_id();
    let mut results = Vec::new();
    for workload in &plan.workloads {
        match workload {
            Workload::Distinct | Workload::Contended | Workload::Handoff => {
                for &clients in &plan.clients {
                    eprintln!(
                        "syncd-bench: {} {} clients={clients} for {:?}",
                        backend.label(),
                        workload.as_str(),
                        plan.duration
                    );
                    let result = hot_loop(backend.clone(), plan, *workload, clients, &run).await?;
                    eprintln!("syncd-bench:   {}", result.one_line());
                    results.push(result);
                }
            }
            Workload::Deadlock => {
                eprintln!(
                    "syncd-bench: {} deadlock x{}",
                    backend.label(),
                    plan.deadlock_rounds
                );
                let result = deadlock(backend.as_ref(), plan, &run).await?;
                eprintln!("syncd-bench:   {}", result.one_line());
                results.push(result);
            }
        }
    }
    Ok(RunReport {
        backend: backend.label(),
        settings: Settings::from_plan(plan),
        results,
    })
}

/// The measured window of a run.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t <= self.end
    }
}

/// One completed acquire/release cycle of a `handoff` client.
#[derive(Debug, Clone, Copy)]
struct Cycle {
    granted: Instant,
    release_sent: Instant,
    release_returned: Instant,
}

/// What one client measured.
struct ClientStats {
    cycle: Recorder,
    acquire: Recorder,
    release: Recorder,
    cycles: Vec<Cycle>,
    errors: u64,
    first_error: Option<String>,
}

impl ClientStats {
    fn new() -> anyhow::Result<ClientStats> {
        Ok(ClientStats {
            cycle: Recorder::new()?,
            acquire: Recorder::new()?,
            release: Recorder::new()?,
            cycles: Vec::new(),
            errors: 0,
            first_error: None,
        })
    }

    async fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
        // Do not spin on a failing cluster.
        sleep(Duration::from_millis(10)).await;
    }

    fn merge(&mut self, other: ClientStats) -> anyhow::Result<()> {
        self.cycle.merge(&other.cycle)?;
        self.acquire.merge(&other.acquire)?;
        self.release.merge(&other.release)?;
        self.cycles.extend(other.cycles);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        Ok(())
    }
}

/// The lock that client `client` uses in a throughput workload (one per client in `distinct`, one shared otherwise).
fn lock_name(run: &str, workload: Workload, clients: usize, client: usize) -> String {
    match workload {
        Workload::Distinct => format!("bench.{run}.distinct.{clients}.{client}"),
        _ => format!("bench.{run}.{}.{clients}", workload.as_str()),
    }
}

/// `distinct`, `contended` and `handoff`: every client acquires, (holds,) releases, until the window ends.
async fn hot_loop<B: LockBackend>(
    backend: Arc<B>,
    plan: &Plan,
    workload: Workload,
    clients: usize,
    run: &str,
) -> anyhow::Result<WorkloadResult> {
    if clients == 0 {
        bail!("a run needs at least one client");
    }
    // `handoff` counts waiters: the holder is one more client.
    let sessions = if workload == Workload::Handoff {
        clients + 1
    } else {
        clients
    };
    let (wait, hold) = match workload {
        Workload::Distinct => (Duration::ZERO, Duration::ZERO),
        Workload::Contended => (plan.wait, Duration::ZERO),
        _ => (plan.wait, plan.hold),
    };

    let mut opened = Vec::with_capacity(sessions);
    for client in 0..sessions {
        opened.push(
            backend
                .connect(client, plan.ttl)
                .await
                .with_context(|| format!("client {client}"))?,
        );
    }
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    let pids = plan.server_pids.clone();
    let cpu_sampler = tokio::spawn(async move {
        sleep_until(window.start).await;
        let first = CpuSample::take(&pids);
        sleep_until(window.end).await;
        (first, CpuSample::take(&pids))
    });
    let mut tasks = JoinSet::new();
    for (client, session) in opened.into_iter().enumerate() {
        let name = lock_name(run, workload, clients, client);
        let track = workload == Workload::Handoff;
        tasks.spawn(client_loop(session, name, wait, hold, window, track));
    }
    let mut total = ClientStats::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a client task failed")??)?;
    }

    let seconds = plan.duration.as_secs_f64();
    let ops = total.cycle.len();
    let (first, last) = cpu_sampler.await.context("the CPU sampler failed")?;
    let mut details = vec![
        Detail::new("acquire", total.acquire.summary()),
        Detail::new("release", total.release.summary()),
    ];
    let latency = if workload == Workload::Handoff {
        let (issued, returned) = handoffs(total.cycles, window)?;
        details.push(Detail::new(
            "cycle (acquire wait + hold + release)",
            total.cycle.summary(),
        ));
        details.push(Detail::new(
            "release returned -> next grant",
            signed_summary(returned),
        ));
        issued.summary()
    } else {
        total.cycle.summary()
    };
    Ok(WorkloadResult {
        workload,
        clients,
        ops,
        errors: total.errors,
        ops_per_sec: Some(ops as f64 / seconds),
        latency,
        details,
        outcomes: BTreeMap::new(),
        first_error: total.first_error,
        cpu: Some(last.since(&first, plan.duration, ops)),
    })
}

/// One client of a throughput workload.
async fn client_loop<S: LockSession>(
    mut session: S,
    name: String,
    wait: Duration,
    hold: Duration,
    window: Window,
    track: bool,
) -> anyhow::Result<ClientStats> {
    let mut stats = ClientStats::new()?;
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let held = match session.acquire(&name, wait).await {
            Ok(Acquired::Granted(held)) => held,
            Ok(Acquired::Deadlock) => {
                stats.error(anyhow!("acquire {name}: deadlock")).await;
                continue;
            }
            Ok(Acquired::Conflict) => {
                stats.error(anyhow!("acquire {name}: not granted")).await;
                continue;
            }
            Err(e) => {
                stats.error(e).await;
                continue;
            }
        };
        let granted = Instant::now();
        if !hold.is_zero() {
            sleep(hold).await;
        }
        let release_sent = Instant::now();
        if let Err(e) = session.release(held).await {
            stats.error(e).await;
            continue;
        }
        let done = Instant::now();
        if window.contains(done) {
            stats.acquire.record(granted - sent);
            stats.release.record(done - release_sent);
            stats.cycle.record(done - sent);
        }
        if track {
            stats.cycles.push(Cycle {
                granted,
                release_sent,
                release_returned: done,
            });
        }
    }
    session.close().await;
    Ok(stats)
}

/// Hand-off latencies of an exclusive lock from every client's cycles: sorted by grant time, cycle k+1 was granted
/// after cycle k's release. Answers the histogram of (next grant - release issued) and the signed differences
/// (next grant - release returned), for hand-offs whose grant falls in the window.
fn handoffs(mut cycles: Vec<Cycle>, window: Window) -> anyhow::Result<(Recorder, Vec<i64>)> {
    cycles.sort_by_key(|c| c.granted);
    let mut issued = Recorder::new()?;
    let mut returned = Vec::new();
    for pair in cycles.windows(2) {
        let (held, next) = (pair[0], pair[1]);
        if !window.contains(next.granted) || next.granted < held.release_sent {
            continue;
        }
        issued.record(next.granted - held.release_sent);
        returned.push(signed_micros(next.granted, held.release_returned));
    }
    Ok((issued, returned))
}

/// Takes `acquired` as a grant or says why it is not one.
fn granted<H>(acquired: Acquired<H>, what: &str) -> anyhow::Result<H> {
    match acquired {
        Acquired::Granted(held) => Ok(held),
        Acquired::Deadlock => bail!("{what}: refused as a deadlock"),
        Acquired::Conflict => bail!("{what}: not granted"),
    }
}

/// `deadlock`: builds the two-client cycle `rounds` times and times c2's call.
async fn deadlock<B: LockBackend>(
    backend: &B,
    plan: &Plan,
    run: &str,
) -> anyhow::Result<WorkloadResult> {
    let mut answered = Recorder::new()?;
    let mut after_ttl = Vec::new();
    let mut outcomes = BTreeMap::new();
    for round in 0..plan.deadlock_rounds {
        let a = format!("bench.{run}.deadlock.{round}.a");
        let b = format!("bench.{run}.deadlock.{round}.b");
        // c1 is the party whose lease ends an undetected deadlock; c2's lease outlives the round.
        let mut c1 = backend.connect(0, plan.deadlock_ttl).await?;
        let mut c2 = backend.connect(1, plan.ttl).await?;
        let c1_lease_from = Instant::now();
        let held_a = granted(c1.acquire(&a, Duration::ZERO).await?, "c1 acquires a")?;
        let held_b = granted(c2.acquire(&b, Duration::ZERO).await?, "c2 acquires b")?;

        let (wait, b_for_c1) = (plan.wait, b.clone());
        let c1_waits = tokio::spawn(async move {
            let result = c1.acquire(&b_for_c1, wait).await;
            (c1, result)
        });
        let queued_by = Instant::now() + Duration::from_secs(10);
        while c2.waiters(&b).await? < 1 {
            if Instant::now() >= queued_by {
                bail!("c1's request for {b} never showed up as waiting");
            }
            sleep(Duration::from_millis(2)).await;
        }

        let sent = Instant::now();
        let outcome = c2.acquire(&a, plan.wait).await?;
        let done = Instant::now();
        answered.record(done - sent);
        after_ttl.push(signed_micros(done, c1_lease_from + plan.deadlock_ttl));
        let key = match outcome {
            Acquired::Deadlock => "c2 refused: deadlock",
            Acquired::Granted(held) => {
                let _ = c2.release(held).await;
                "c2 granted (c1's lease expired)"
            }
            Acquired::Conflict => "c2 timed out waiting",
        };
        *outcomes.entry(key.to_owned()).or_insert(0) += 1;

        // Untangle: c2 lets go of b, which lets c1's wait end; then c1 lets go of everything.
        let _ = c2.release(held_b).await;
        match timeout(plan.deadlock_ttl + Duration::from_secs(10), c1_waits).await {
            Ok(Ok((mut c1, result))) => {
                if let Ok(Acquired::Granted(held)) = result {
                    let _ = c1.release(held).await;
                }
                let _ = c1.release(held_a).await;
                c1.close().await;
            }
            Ok(Err(e)) => bail!("c1's task failed: {e}"),
            Err(_) => bail!("c1's wait for {b} did not end after c2 released it"),
        }
        c2.close().await;
    }
    let mut details = Vec::new();
    if outcomes.keys().any(|k| k.starts_with("c2 granted")) {
        details.push(Detail::new(
            "c2 granted, after c1's lease TTL",
            signed_summary(after_ttl),
        ));
    }
    Ok(WorkloadResult {
        workload: Workload::Deadlock,
        clients: 2,
        ops: answered.len(),
        errors: 0,
        ops_per_sec: None,
        latency: answered.summary(),
        details,
        outcomes,
        first_error: None,
        cpu: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoffs_pair_each_release_with_the_next_grant() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let window = Window {
            start: ms(0),
            end: ms(1000),
        };
        // Client order is scrambled; grant order is 10, 20, 35.
        let cycles = vec![
            Cycle {
                granted: ms(20),
                release_sent: ms(25),
                release_returned: ms(40),
            },
            Cycle {
                granted: ms(10),
                release_sent: ms(12),
                release_returned: ms(22),
            },
            Cycle {
                granted: ms(35),
                release_sent: ms(36),
                release_returned: ms(38),
            },
        ];
        let (issued, returned) = handoffs(cycles, window).unwrap();
        let s = issued.summary();
        assert_eq!(s.count, 2);
        assert!((s.max_ms - 10.0).abs() < 0.1, "{s:?}"); // 35 - 25
        let mut returned = returned;
        returned.sort_unstable();
        assert_eq!(returned, vec![-5000, -2000]); // 20 - 22, 35 - 40
    }

    #[test]
    fn lock_names_are_valid_syncd_names() {
        for w in [Workload::Distinct, Workload::Contended, Workload::Handoff] {
            let name = lock_name("ab12", w, 16, 3);
            assert!(name.len() <= 253);
            assert!(
                name.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(&c)),
                "{name}"
            );
        }
        assert_ne!(
            lock_name("r", Workload::Distinct, 16, 1),
            lock_name("r", Workload::Distinct, 16, 2)
        );
        assert_eq!(
            lock_name("r", Workload::Contended, 16, 1),
            lock_name("r", Workload::Contended, 16, 2)
        );
    }
}
