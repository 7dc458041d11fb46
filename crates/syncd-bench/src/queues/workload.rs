//! The queue workload: for each client count, a fresh queue, then two phases with the same C clients.
//!
//! 1. `produce`: the clients produce M messages of B bytes between them, one call at a time each (a shared
//!    counter hands out message numbers, so every run produces exactly M messages whatever the client count).
//! 2. `consume`: the clients receive (at most one message per call, waiting up to the receive wait) and ack what
//!    they received, one message at a time each, until every produced message has been acked.
//!
//! Throughput is messages over the phase's wall time (from the start to the last completed operation). Latency
//! is recorded for every call: produce; receive (calls that returned a message) and ack; and their sum, one
//! receive+ack cycle, which is the consume headline. Afterwards the run checks the bodies: every produced
//! message must come back exactly once with its body intact, and the queue must be empty.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::backend::{QueueBackend, QueueSession};
use super::report::{Check, ClientRun, Phase, PhaseResult, QueueReport, QueueSettings};
use crate::cpu::CpuSample;
use crate::report::Detail;
use crate::stats::Recorder;

/// What to run.
#[derive(Debug, Clone)]
pub struct QueuePlan {
    /// Client counts; each is one run (a fresh queue, both phases).
    pub clients: Vec<usize>,
    /// Messages produced (and then consumed) per run.
    pub messages: u64,
    /// Size of every message body.
    pub body_bytes: usize,
    /// How long one receive waits for a message when none is ready.
    pub receive_wait: Duration,
    /// How long a received, unacknowledged message stays invisible.
    pub visibility: Duration,
    /// A phase that has not finished after this long stops (and the run reports what is missing).
    pub phase_timeout: Duration,
    /// Server processes whose CPU time to report.
    pub server_pids: Vec<u32>,
}

/// Digits of the message number at the start of every body.
const NUMBER_DIGITS: usize = 10;

/// The body of message `n`: its number, `|`, then letters that depend on `n` (incompressible enough, and
/// checkable), `size` bytes in all (at least the number and the separator).
pub fn body(n: u64, size: usize) -> Vec<u8> {
    let mut out = format!("{n:0NUMBER_DIGITS$}|").into_bytes();
    // xorshift64*, seeded by the number: cheap, deterministic.
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.push(LETTERS[(r >> 58) as usize % LETTERS.len()]);
    }
    out
}

/// The message number a body starts with.
pub fn number_of(body: &[u8]) -> Option<u64> {
    let digits = body.get(..NUMBER_DIGITS)?;
    if body.get(NUMBER_DIGITS) != Some(&b'|') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Runs the plan against `backend`; `label` names it in the report.
pub async fn run_all<B: QueueBackend>(
    backend: B,
    plan: &QueuePlan,
    label: String,
) -> anyhow::Result<QueueReport> {
    if plan.body_bytes < NUMBER_DIGITS + 1 {
        bail!("bodies need at least {} bytes", NUMBER_DIGITS + 1);
    }
    let backend = Arc::new(backend);
    let run = crate::workloads::run_id();
    let mut runs = Vec::new();
    for &clients in &plan.clients {
        if clients == 0 {
            bail!("a run needs at least one client");
        }
        let queue = format!("bench.{run}.{clients}");
        backend
            .create_queue(&queue)
            .await
            .with_context(|| format!("create {queue}"))?;
        eprintln!(
            "syncd-bench: {label} clients={clients}: produce {} messages of {} bytes to {queue}",
            plan.messages, plan.body_bytes
        );
        let (produce, produced) = produce_phase(&backend, &queue, clients, plan).await?;
        eprintln!("syncd-bench:   produce: {}", produce.one_line());
        eprintln!("syncd-bench: {label} clients={clients}: receive + ack");
        let (consume, mut check) =
            consume_phase(&backend, &queue, clients, plan, &produced).await?;
        eprintln!("syncd-bench:   consume: {}", consume.one_line());
        check.left_in_queue = match backend.remaining(&queue).await {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("syncd-bench:   cannot count what is left in {queue}: {e:#}");
                None
            }
        };
        let placement = backend.placement(&queue).await;
        eprintln!("syncd-bench:   check: {}", check.one_line());
        runs.push(ClientRun {
            clients,
            queue,
            placement,
            produce,
            consume,
            check,
        });
    }
    Ok(QueueReport {
        kind: super::report::KIND.to_owned(),
        backend: label,
        settings: QueueSettings::from_plan(plan),
        runs,
    })
}

/// Opens `clients` sessions on `queue` and makes one warm-up call on each.
async fn open<B: QueueBackend>(
    backend: &Arc<B>,
    queue: &str,
    clients: usize,
) -> anyhow::Result<Vec<B::Session>> {
    let mut sessions = Vec::with_capacity(clients);
    for client in 0..clients {
        let mut session = backend
            .connect(client, queue)
            .await
            .with_context(|| format!("client {client}"))?;
        session
            .warm_up()
            .await
            .with_context(|| format!("client {client} warm-up"))?;
        sessions.push(session);
    }
    Ok(sessions)
}

/// Failed calls of one client.
#[derive(Default)]
struct Errors {
    count: u64,
    first: Option<String>,
}

impl Errors {
    async fn record(&mut self, e: anyhow::Error) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{e:#}"));
        }
        // Do not spin on a failing service.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// What one producer did.
struct Produced {
    latency: Recorder,
    ok: Vec<u64>,
    last: Option<Instant>,
    errors: Errors,
}

/// The produce phase; answers the result and the numbers of the messages whose produce succeeded.
async fn produce_phase<B: QueueBackend>(
    backend: &Arc<B>,
    queue: &str,
    clients: usize,
    plan: &QueuePlan,
) -> anyhow::Result<(PhaseResult, Vec<u64>)> {
    let sessions = open(backend, queue, clients).await?;
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = CpuSample::take(&plan.server_pids);
    let start = Instant::now();
    let deadline = start + plan.phase_timeout;
    let mut tasks = JoinSet::new();
    for mut session in sessions {
        let next = next.clone();
        let (messages, size) = (plan.messages, plan.body_bytes);
        tasks.spawn(async move {
            let mut done = Produced {
                latency: Recorder::new()?,
                ok: Vec::new(),
                last: None,
                errors: Errors::default(),
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages || Instant::now() >= deadline {
                    break;
                }
                let payload = body(n, size);
                let sent = Instant::now();
                match session.produce(&payload).await {
                    Ok(()) => {
                        let now = Instant::now();
                        done.latency.record(now - sent);
                        done.ok.push(n);
                        done.last = Some(now);
                    }
                    Err(e) => done.errors.record(e).await,
                }
            }
            session.close().await;
            anyhow::Ok(done)
        });
    }
    let mut latency = Recorder::new()?;
    let mut ok = Vec::new();
    let mut last = start;
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        let done = joined.context("a producer task failed")??;
        latency.merge(&done.latency)?;
        ok.extend(done.ok);
        last = last.max(done.last.unwrap_or(start));
        errors.merge(done.errors);
    }
    let cpu_after = CpuSample::take(&plan.server_pids);
    let wall = last - start;
    let count = ok.len() as u64;
    let summary = latency.summary();
    let result = PhaseResult {
        phase: Phase::Produce,
        clients,
        messages: count,
        errors: errors.count,
        seconds: wall.as_secs_f64(),
        ops_per_sec: rate(count, wall),
        latency: summary,
        details: vec![Detail::new("produce", summary)],
        first_error: errors.first,
        cpu: Some(cpu_after.since(&cpu_before, wall, count)),
    };
    ok.sort_unstable();
    Ok((result, ok))
}

fn rate(count: u64, wall: Duration) -> f64 {
    let seconds = wall.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// What one consumer did.
struct Consumed {
    receive: Recorder,
    ack: Recorder,
    cycle: Recorder,
    numbers: Vec<u64>,
    corrupt: u64,
    empty: u64,
    errors: Errors,
}

/// The consume phase; answers the result and the check of what came back (all but `left_in_queue`).
async fn consume_phase<B: QueueBackend>(
    backend: &Arc<B>,
    queue: &str,
    clients: usize,
    plan: &QueuePlan,
    produced: &[u64],
) -> anyhow::Result<(PhaseResult, Check)> {
    let sessions = open(backend, queue, clients).await?;
    let target = produced.len() as u64;
    let acked = Arc::new(AtomicU64::new(0));
    // When the last message was acked, and the servers' CPU time then (long-polls still waiting do not count).
    let finished: Arc<OnceLock<(Instant, CpuSample)>> = Arc::new(OnceLock::new());
    let cpu_before = CpuSample::take(&plan.server_pids);
    let start = Instant::now();
    let deadline = start + plan.phase_timeout;
    let mut tasks = JoinSet::new();
    for mut session in sessions {
        let (acked, finished) = (acked.clone(), finished.clone());
        let (wait, size, pids) = (plan.receive_wait, plan.body_bytes, plan.server_pids.clone());
        tasks.spawn(async move {
            let mut done = Consumed {
                receive: Recorder::new()?,
                ack: Recorder::new()?,
                cycle: Recorder::new()?,
                numbers: Vec::new(),
                corrupt: 0,
                empty: 0,
                errors: Errors::default(),
            };
            while acked.load(Ordering::Relaxed) < target && Instant::now() < deadline {
                let sent = Instant::now();
                let message = match session.receive(wait).await {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        done.empty += 1;
                        continue;
                    }
                    Err(e) => {
                        done.errors.record(e).await;
                        continue;
                    }
                };
                let received = Instant::now();
                if let Err(e) = session.ack(message.receipt).await {
                    done.errors.record(e).await;
                    continue;
                }
                let now = Instant::now();
                done.receive.record(received - sent);
                done.ack.record(now - received);
                done.cycle.record(now - sent);
                match number_of(&message.body) {
                    Some(n) if message.body == body(n, size) => done.numbers.push(n),
                    _ => done.corrupt += 1,
                }
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == target {
                    let _ = finished.set((now, CpuSample::take(&pids)));
                }
            }
            session.close().await;
            anyhow::Ok(done)
        });
    }
    let mut receive = Recorder::new()?;
    let mut ack = Recorder::new()?;
    let mut cycle = Recorder::new()?;
    let mut numbers = Vec::new();
    let (mut corrupt, mut empty) = (0, 0);
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        let done = joined.context("a consumer task failed")??;
        receive.merge(&done.receive)?;
        ack.merge(&done.ack)?;
        cycle.merge(&done.cycle)?;
        numbers.extend(done.numbers);
        corrupt += done.corrupt;
        empty += done.empty;
        errors.merge(done.errors);
    }
    let (end, cpu_after) = match finished.get() {
        Some((end, cpu)) => (*end, *cpu),
        None => (Instant::now(), CpuSample::take(&plan.server_pids)),
    };
    let wall = end - start;
    let count = cycle.len();
    let result = PhaseResult {
        phase: Phase::Consume,
        clients,
        messages: count,
        errors: errors.count,
        seconds: wall.as_secs_f64(),
        ops_per_sec: rate(count, wall),
        latency: cycle.summary(),
        details: vec![
            Detail::new("receive", receive.summary()),
            Detail::new("ack", ack.summary()),
            Detail::new("receive + ack", cycle.summary()),
        ],
        first_error: errors.first,
        cpu: Some(cpu_after.since(&cpu_before, wall, count)),
    };
    let mut check = Check::compare(produced, numbers);
    check.corrupt = corrupt;
    check.empty_receives = empty;
    Ok((result, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_number_and_size() {
        let b = body(42, 1024);
        assert_eq!(b.len(), 1024);
        assert!(b.starts_with(b"0000000042|"));
        assert!(b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'|'));
        assert_eq!(number_of(&b), Some(42));
        assert_eq!(body(42, 1024), b);
        assert_ne!(body(43, 1024)[11..], b[11..]);
        assert_eq!(number_of(b"12|"), None);
        assert_eq!(number_of(b"000000000x|abc"), None);
        assert_eq!(body(7, 11), b"0000000007|");
    }
}
