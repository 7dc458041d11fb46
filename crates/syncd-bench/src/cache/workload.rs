//! The cache workload: for each client count, C clients preload the keys, then loop over a GET/SET mix.
//!
//! 1. Preload (not measured): the clients write every key `bench-1` .. `bench-<keys>` once between them, so that
//!    GETs can find what they ask for from the first call.
//! 2. Mix: for warm-up + duration, each client draws a key rank from Zipf(s) over the keys (rank 1 is the hottest;
//!    each client has its own generator, seeded from `--seed` and its number, so a run is reproducible), then GETs
//!    the key with probability read-percent, else SETs a fresh value of value-bytes. One call at a time per client.
//!
//! A call counts (throughput, latency, GET outcomes) when it completes inside the measured window, after the
//! warm-up; throughput is those calls over the window's length. Failed calls are counted whenever they happen
//! (warm-up included) and do not stop the run. Every value names its key, so a GET can tell a value of another key
//! (or of the wrong size) from a right one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until};

use super::backend::{CacheBackend, CacheSession, Lookup};
use super::report::{CacheReport, CacheRun, CacheSettings, GetOutcomes, Op, OpResult, Preload};
use super::zipf::{SplitMix64, Zipf};
use crate::cpu::CpuSample;
use crate::stats::Recorder;

/// What to run.
#[derive(Debug, Clone)]
pub struct CachePlan {
    /// Client counts; each is one run (preload, then the mix).
    pub clients: Vec<usize>,
    /// Measured window of a run.
    pub duration: Duration,
    /// Unmeasured start of the mix.
    pub warmup: Duration,
    /// Distinct keys.
    pub keys: u64,
    /// Zipf exponent of the key choice.
    pub zipf: f64,
    /// Share of calls that are GETs, in percent.
    pub read_percent: u8,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Seed of every client's generator.
    pub seed: u64,
    /// Server processes whose CPU time to report.
    pub server_pids: Vec<u32>,
}

/// The key of rank `rank`.
pub fn key(rank: u64) -> String {
    format!("bench-{rank}")
}

/// Random letters that fill every value after its header: made once per run, so that a SET costs the load
/// generator a copy, not `size` random draws.
fn filler(size: usize, seed: u64) -> Vec<u8> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = SplitMix64::new(seed);
    (0..size)
        .map(|_| LETTERS[(rng.next_u64() >> 58) as usize % LETTERS.len()])
        .collect()
}

/// A value of `key`, `size` bytes: `<key>|<client>|<seq>|` (which makes every write's content different), then
/// `filler`; cut at `size` when the header is longer.
pub fn value(key: &str, client: usize, seq: u64, size: usize, filler: &[u8]) -> Vec<u8> {
    let mut out = format!("{key}|{client}|{seq}|").into_bytes();
    out.truncate(size);
    let missing = size - out.len();
    out.extend_from_slice(&filler[..missing.min(filler.len())]);
    out
}

/// Whether `data` can be a value that [`value`] made for `key`: the right size, starting with `<key>|` (as much
/// of it as fits).
pub fn plausible(key: &str, data: &[u8], size: usize) -> bool {
    let header = key.as_bytes().iter().chain(b"|");
    data.len() == size && data.iter().zip(header).all(|(a, b)| a == b)
}

/// Runs the plan against `backend`; `label` names it in the report.
pub async fn run_all<B: CacheBackend>(
    backend: B,
    plan: &CachePlan,
    label: String,
) -> anyhow::Result<CacheReport> {
    if plan.value_bytes == 0 {
        bail!("values need at least one byte");
    }
    if plan.read_percent > 100 {
        bail!("read-percent is at most 100");
    }
    let zipf = Arc::new(Zipf::new(plan.keys, plan.zipf)?);
    // What the skew means, to read hit rates by: how much of the traffic the hottest keys take.
    let top = (plan.keys / 100).max(1);
    eprintln!(
        "syncd-bench: Zipf s={} over {} keys: the hottest key takes {:.1} % of the calls, the hottest {top} \
         ({:.0} %) {:.1} %",
        plan.zipf,
        plan.keys,
        zipf.top_share(1) * 100.0,
        top as f64 * 100.0 / plan.keys as f64,
        zipf.top_share(top) * 100.0
    );
    let filler: Arc<[u8]> = filler(plan.value_bytes, plan.seed).into();
    let meaning = backend.hit_meaning();
    let backend = Arc::new(backend);
    let mut runs = Vec::new();
    for &clients in &plan.clients {
        if clients == 0 {
            bail!("a run needs at least one client");
        }
        let sessions = open(&backend, clients).await?;
        eprintln!(
            "syncd-bench: {label} clients={clients}: preload {} keys of {} bytes",
            plan.keys, plan.value_bytes
        );
        let (sessions, preload, preload_error) = preload(sessions, plan, &filler).await?;
        eprintln!(
            "syncd-bench:   preload: {:.2} s, {} errors",
            preload.seconds, preload.errors
        );
        eprintln!(
            "syncd-bench: {label} clients={clients}: {} for {:?} after {:?} warm-up",
            CacheSettings::from_plan(plan).mix(),
            plan.duration,
            plan.warmup
        );
        let mut run = mix(&backend, sessions, plan, &zipf, &filler).await?;
        run.preload = preload;
        if run.first_error.is_none() {
            run.first_error = preload_error.map(|e| format!("preload: {e}"));
        }
        eprintln!("syncd-bench:   {}", run.one_line(meaning));
        runs.push(run);
    }
    Ok(CacheReport {
        kind: super::report::KIND.to_owned(),
        backend: label,
        hit_meaning: meaning,
        settings: CacheSettings::from_plan(plan),
        runs,
    })
}

/// Opens `clients` sessions.
async fn open<B: CacheBackend>(
    backend: &Arc<B>,
    clients: usize,
) -> anyhow::Result<Vec<B::Session>> {
    let mut sessions = Vec::with_capacity(clients);
    for client in 0..clients {
        sessions.push(
            backend
                .connect(client)
                .await
                .with_context(|| format!("client {client}"))?,
        );
    }
    Ok(sessions)
}

/// Failed calls of one client.
#[derive(Debug, Default)]
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
        sleep(Duration::from_millis(10)).await;
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }
}

/// Writes every key once, client c taking ranks c+1, c+1+C, ...; hands the sessions back with the result and the
/// first error.
async fn preload<S: CacheSession>(
    sessions: Vec<S>,
    plan: &CachePlan,
    filler: &Arc<[u8]>,
) -> anyhow::Result<(Vec<S>, Preload, Option<String>)> {
    let clients = sessions.len();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for (client, mut session) in sessions.into_iter().enumerate() {
        let (keys, size, filler) = (plan.keys, plan.value_bytes, filler.clone());
        tasks.spawn(async move {
            let mut errors = Errors::default();
            let mut rank = client as u64 + 1;
            while rank <= keys {
                let key = key(rank);
                if let Err(e) = session
                    .set(&key, &value(&key, client, 0, size, &filler))
                    .await
                {
                    errors.record(e).await;
                }
                rank += clients as u64;
            }
            (client, session, errors)
        });
    }
    let mut back: Vec<(usize, S)> = Vec::with_capacity(clients);
    let mut errors = Errors::default();
    while let Some(joined) = tasks.join_next().await {
        let (client, session, e) = joined.context("a preload task failed")?;
        back.push((client, session));
        errors.merge(e);
    }
    // Client i must stay client i: it talks to endpoint i mod n.
    back.sort_by_key(|(client, _)| *client);
    let preload = Preload {
        keys: plan.keys,
        errors: errors.count,
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok((
        back.into_iter().map(|(_, s)| s).collect(),
        preload,
        errors.first,
    ))
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

/// What one client measured.
struct ClientStats {
    get: Recorder,
    set: Recorder,
    all: Recorder,
    gets: GetOutcomes,
    get_errors: Errors,
    set_errors: Errors,
}

impl ClientStats {
    fn new() -> anyhow::Result<ClientStats> {
        Ok(ClientStats {
            get: Recorder::new()?,
            set: Recorder::new()?,
            all: Recorder::new()?,
            gets: GetOutcomes::default(),
            get_errors: Errors::default(),
            set_errors: Errors::default(),
        })
    }

    fn merge(&mut self, other: ClientStats) -> anyhow::Result<()> {
        self.get.merge(&other.get)?;
        self.set.merge(&other.set)?;
        self.all.merge(&other.all)?;
        self.gets.add(&other.gets);
        self.get_errors.merge(other.get_errors);
        self.set_errors.merge(other.set_errors);
        Ok(())
    }
}

/// The GET/SET loop of every client, and the run's result (all but the preload).
async fn mix<B: CacheBackend>(
    backend: &Arc<B>,
    sessions: Vec<B::Session>,
    plan: &CachePlan,
    zipf: &Arc<Zipf>,
    filler: &Arc<[u8]>,
) -> anyhow::Result<CacheRun> {
    let clients = sessions.len();
    let start = Instant::now() + plan.warmup;
    let window = Window {
        start,
        end: start + plan.duration,
    };
    // CPU time and the service's counters at the window's edges, read beside the load.
    let (pids, sampled) = (plan.server_pids.clone(), backend.clone());
    let sampler = tokio::spawn(async move {
        sleep_until(window.start).await;
        let first = (CpuSample::take(&pids), sampled.counters().await);
        sleep_until(window.end).await;
        let last = (CpuSample::take(&pids), sampled.counters().await);
        (first, last)
    });
    let mut tasks = JoinSet::new();
    for (client, session) in sessions.into_iter().enumerate() {
        let (zipf, filler) = (zipf.clone(), filler.clone());
        let rng = SplitMix64::for_client(plan.seed, client);
        let (read_percent, size) = (plan.read_percent, plan.value_bytes);
        tasks.spawn(async move {
            let mut session = session;
            let mut rng = rng;
            client_loop(
                &mut session,
                client,
                &mut rng,
                &zipf,
                &filler,
                read_percent,
                size,
                window,
            )
            .await
        });
    }
    let mut total = ClientStats::new()?;
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a client task failed")??)?;
    }
    let ((cpu_first, counters_first), (cpu_last, counters_last)) =
        sampler.await.context("the CPU sampler failed")?;
    let seconds = plan.duration.as_secs_f64();
    let result = |op: Op, recorder: &Recorder, errors: u64| OpResult {
        op,
        ops: recorder.len(),
        ops_per_sec: recorder.len() as f64 / seconds,
        latency: recorder.summary(),
        errors,
    };
    let (get_errors, set_errors) = (total.get_errors.count, total.set_errors.count);
    Ok(CacheRun {
        clients,
        preload: Preload::default(),
        get: result(Op::Get, &total.get, get_errors),
        set: result(Op::Set, &total.set, set_errors),
        all: result(Op::All, &total.all, get_errors + set_errors),
        gets: total.gets,
        cpu: Some(cpu_last.since(&cpu_first, plan.duration, total.all.len())),
        server: match (counters_first, counters_last) {
            (Some(first), Some(last)) => Some(last.since(&first)),
            _ => None,
        },
        first_error: total.get_errors.first.or(total.set_errors.first),
    })
}

/// One client of the mix.
#[allow(clippy::too_many_arguments)] // one call site; a struct for it would only rename the arguments
async fn client_loop<S: CacheSession>(
    session: &mut S,
    client: usize,
    rng: &mut SplitMix64,
    zipf: &Zipf,
    filler: &[u8],
    read_percent: u8,
    size: usize,
    window: Window,
) -> anyhow::Result<ClientStats> {
    let mut stats = ClientStats::new()?;
    let mut seq = 0u64;
    while Instant::now() < window.end {
        let key = key(zipf.sample(rng));
        if rng.next_f64() * 100.0 < f64::from(read_percent) {
            let sent = Instant::now();
            match session.get(&key).await {
                Ok(lookup) => {
                    let done = Instant::now();
                    if window.contains(done) {
                        stats.get.record(done - sent);
                        stats.all.record(done - sent);
                        let found = match &lookup {
                            Lookup::Local(data) => {
                                stats.gets.local += 1;
                                Some(data)
                            }
                            Lookup::Remote(data) => {
                                stats.gets.remote += 1;
                                Some(data)
                            }
                            Lookup::Absent => {
                                stats.gets.absent += 1;
                                None
                            }
                        };
                        if found.is_some_and(|data| !plausible(&key, data, size)) {
                            stats.gets.wrong += 1;
                        }
                    }
                }
                Err(e) => stats.get_errors.record(e).await,
            }
        } else {
            seq += 1;
            let data = value(&key, client, seq, size, filler);
            let sent = Instant::now();
            match session.set(&key, &data).await {
                Ok(()) => {
                    let done = Instant::now();
                    if window.contains(done) {
                        stats.set.record(done - sent);
                        stats.all.record(done - sent);
                    }
                }
                Err(e) => stats.set_errors.record(e).await,
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_key_and_vary_per_write() {
        let fill = filler(1024, 7);
        assert_eq!(fill.len(), 1024);
        assert!(fill.iter().all(u8::is_ascii_alphanumeric));
        assert_eq!(filler(1024, 7), fill);
        let a = value("bench-17", 3, 1, 1024, &fill);
        let b = value("bench-17", 3, 2, 1024, &fill);
        assert_eq!(a.len(), 1024);
        assert!(a.starts_with(b"bench-17|3|1|"));
        assert_ne!(a, b);
        assert!(plausible("bench-17", &a, 1024));
        assert!(!plausible("bench-1", &a, 1024));
        assert!(!plausible("bench-17", &a[..1000], 1024));
        // Shorter than the header: cut, and still checked as far as it goes.
        let short = value("bench-17", 3, 1, 5, &fill);
        assert_eq!(short, b"bench");
        assert!(plausible("bench-17", &short, 5));
        assert!(plausible("bench-99", &short, 5));
        assert!(!plausible("other", &short, 5));
        let exact = value("bench-17", 3, 1, 9, &fill);
        assert_eq!(exact, b"bench-17|");
        assert!(plausible("bench-17", &exact, 9));
        assert!(!plausible("bench-17", b"bench-17x", 9));
        assert_eq!(key(1), "bench-1");
    }

    #[test]
    fn windows_include_their_edges() {
        let t = Instant::now();
        let w = Window {
            start: t,
            end: t + Duration::from_secs(1),
        };
        assert!(w.contains(t));
        assert!(w.contains(t + Duration::from_secs(1)));
        assert!(!w.contains(t + Duration::from_millis(1001)));
    }
}
