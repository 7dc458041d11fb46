//! Lock clients that record every operation in a [`History`], each call through a random node. Two profiles:
//!
//! - [`Profile::Leases`]: acquires (some waiting), holds, releases, some leases abandoned as by a crashed client
//!   (short leases, so expiry is exercised all the time), and linearizable reads;
//! - [`Profile::Linearizable`]: what the sequential model of `syncd_nemesis::checker::linearizable` covers:
//!   acquires that never wait, leases that never run out, releases, reads; after an acquire with an unknown
//!   outcome the client releases that owner's possible grant before it goes on as a new owner.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use syncd_client::syncd_api::locks::{LockInfo, LockMode};
use syncd_nemesis::history::{History, Op, Outcome, Value};

use super::cluster::Rng;

/// The locks the clients fight over: few, so contention is high.
pub const LOCKS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The lease every acquire asks for in [`Profile::Leases`]: short, so abandoned leases expire within a scenario.
pub const TTL_MS: u64 = 2_000;
/// The lease in [`Profile::Linearizable`]: longer than any scenario, so no lease runs out.
const LONG_TTL_MS: u64 = 3_600_000;

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Waits, abandoned leases, expiry.
    Leases,
    /// No waits, no expiry: checkable against the sequential model.
    Linearizable,
}
/// How long a client waits for any answer beyond the server-side wait.
const CLIENT_PATIENCE: Duration = Duration::from_millis(2_500);

/// Clients running against a cluster until stopped.
pub struct Workload {
    stop: Arc<AtomicBool>,
    gate: Gate,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Lets the nemesis hold the clients back: each client step runs under a read guard, so the write guard waits
/// for the steps in flight and keeps new ones out (a quiet moment for a targeted probe).
pub type Gate = Arc<tokio::sync::RwLock<()>>;

impl Workload {
    /// Starts `clients` clients against the nodes at `addrs`, recording into `history`.
    pub fn start(
        history: &History,
        addrs: Vec<String>,
        clients: u64,
        seed: u64,
        profile: Profile,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Gate::default();
        let tasks = (0..clients)
            .map(|process| {
                let client = Client {
                    process,
                    profile,
                    suspects: Vec::new(),
                    generation: 0,
                    history: history.clone(),
                    addrs: addrs.clone(),
                    http: reqwest::Client::builder()
                        .connect_timeout(Duration::from_millis(300))
                        .build()
                        .expect("http client"),
                    rng: Rng(seed.wrapping_add(process.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1),
                };
                tokio::spawn(client.run(stop.clone(), gate.clone()))
            })
            .collect();
        Workload { stop, gate, tasks }
    }

    /// The gate that holds the clients back.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    /// Stops the clients and waits for their last operations to end.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct Client {
    process: u64,
    profile: Profile,
    /// (lock, owner) of recent acquires whose outcome is unknown ([`Profile::Linearizable`]).
    suspects: Vec<(String, String)>,
    /// Bumped after an operation whose outcome is unknown: a fresh owner keeps the checkers sharp (Jepsen's
    /// process ids).
    generation: u64,
    history: History,
    addrs: Vec<String>,
    http: reqwest::Client,
    rng: Rng,
}

/// What one HTTP call came to.
enum Reply {
    Ok(serde_json::Value),
    /// The server refused it (4xx) with this problem code: it certainly did nothing, and the code says why.
    Refused {
        code: String,
        detail: String,
    },
    /// The request never left (connection refused): it certainly did nothing.
    Fail(String),
    /// Anything else: the outcome is unknown.
    Info(String),
}

impl Reply {
    /// The recorded outcome of a call that came to nothing or to an unknown end.
    fn outcome(self) -> Option<Outcome> {
        match self {
            Reply::Ok(_) => None,
            Reply::Refused { code, detail } => Some(Outcome::refused(&code, &detail)),
            Reply::Fail(why) => Some(Outcome::Fail(why)),
            Reply::Info(why) => Some(Outcome::Info(why)),
        }
    }
}

/// What a release came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Released {
    Yes,
    /// Refused: the owner did not hold it (or named a stale token).
    No,
    /// Unknown, or never sent.
    Unknown,
}

/// What an acquire came to.
enum Acquired {
    Granted(u64),
    Refused,
    Unknown,
}

impl Client {
    fn owner(&self) -> String {
        format!("c{}-g{}", self.process, self.generation)
    }

    fn node(&mut self) -> String {
        let i = self.rng.range(0, self.addrs.len() as u64) as usize;
        self.addrs[i].clone()
    }

    async fn run(mut self, stop: Arc<AtomicBool>, gate: Gate) {
        while !stop.load(Ordering::Relaxed) {
            let _step = gate.read().await;
            // An acquire with an unknown outcome can still take effect long after its clean-up (a request held in
            // a cut link and delivered on heal): now and then, release such owners again, as a client recovering
            // its sessions would, so an orphaned grant does not block a lock for the whole run.
            if !self.suspects.is_empty() && self.rng.chance(0.1) {
                let (lock, owner) =
                    self.suspects[self.rng.range(0, self.suspects.len() as u64) as usize].clone();
                self.release_owner(&lock, &owner).await;
                continue;
            }
            let lock = self.rng.pick(&LOCKS);
            if self.rng.chance(0.2) {
                self.read(lock).await;
                continue;
            }
            let mode = if self.rng.chance(0.2) {
                LockMode::Shared
            } else {
                LockMode::Exclusive
            };
            let (wait_ms, ttl_ms) = match self.profile {
                Profile::Leases => (self.rng.pick(&[0, 0, 300, 1_000]), TTL_MS),
                Profile::Linearizable => (0, LONG_TTL_MS),
            };
            let owner = self.owner();
            let token = match self.acquire_as(lock, &owner, mode, ttl_ms, wait_ms).await {
                Acquired::Granted(token) => token,
                Acquired::Refused => {
                    // A short pause so a conflict does not spin.
                    tokio::time::sleep(Duration::from_millis(self.rng.range(5, 40))).await;
                    continue;
                }
                Acquired::Unknown => {
                    if self.profile == Profile::Linearizable {
                        self.clean_up(lock, &owner).await;
                    }
                    continue;
                }
            };
            if self.profile == Profile::Leases && self.rng.chance(0.15) {
                // Abandon the lease, as a client that crashed would; its owner is never used again.
                self.generation += 1;
                continue;
            }
            tokio::time::sleep(Duration::from_millis(self.rng.range(5, 80))).await;
            self.release(lock, token).await;
        }
    }

    async fn call(
        &mut self,
        method: reqwest::Method,
        path: String,
        body: Option<serde_json::Value>,
        patience: Duration,
    ) -> Reply {
        let node = self.node();
        let mut request = self
            .http
            .request(method, format!("http://{node}{path}"))
            .timeout(patience);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Err(e) if e.is_connect() => Reply::Fail(format!("{node}: {e}")),
            Err(e) => Reply::Info(format!("{node}: {e}")),
            Ok(resp) => {
                let status = resp.status();
                let body: serde_json::Value = match resp.json().await {
                    Ok(body) => body,
                    Err(e) => {
                        return Reply::Info(format!("{node}: unreadable answer ({status}): {e}"));
                    }
                };
                if status.is_success() {
                    Reply::Ok(body)
                } else if status.is_client_error() {
                    Reply::Refused {
                        code: body["code"].as_str().unwrap_or("unknown").to_owned(),
                        detail: format!("{node}: {status}"),
                    }
                } else {
                    // 503 can mean "the leader did not answer; the outcome is unknown", 504 a timeout.
                    Reply::Info(format!("{node}: {status} {}", body["code"]))
                }
            }
        }
    }

    async fn acquire_as(
        &mut self,
        lock: &str,
        owner: &str,
        mode: LockMode,
        ttl_ms: u64,
        wait_ms: u64,
    ) -> Acquired {
        let op = Op::Acquire {
            lock: lock.to_owned(),
            owner: owner.to_owned(),
            mode,
            ttl_ms,
            wait_ms,
        };
        let id = self.history.invoke(self.process, op);
        let body =
            serde_json::json!({"owner": owner, "mode": mode, "ttl_ms": ttl_ms, "wait_ms": wait_ms});
        let reply = self
            .call(
                reqwest::Method::POST,
                format!("/v1/locks/{lock}/acquire"),
                Some(body),
                Duration::from_millis(wait_ms) + CLIENT_PATIENCE,
            )
            .await;
        match reply {
            Reply::Ok(body) => {
                let (Some(token), Some(expires_at_ms)) =
                    (body["token"].as_u64(), body["expires_at_ms"].as_u64())
                else {
                    self.history
                        .complete(id, Outcome::Info(format!("odd grant {body}")));
                    self.generation += 1;
                    return Acquired::Unknown;
                };
                self.history.complete(
                    id,
                    Outcome::Ok(Value::Granted {
                        token,
                        expires_at_ms,
                    }),
                );
                Acquired::Granted(token)
            }
            other => {
                let unknown = matches!(other, Reply::Info(_));
                if let Some(outcome) = other.outcome() {
                    self.history.complete(id, outcome);
                }
                if unknown {
                    self.generation += 1;
                    Acquired::Unknown
                } else {
                    Acquired::Refused
                }
            }
        }
    }

    /// After an acquire by `owner` with an unknown outcome: releases whatever it may have been granted, so the lock
    /// does not stay held for the rest of the run (the acquire may still take effect later, which the checkers
    /// allow for).
    async fn clean_up(&mut self, lock: &str, owner: &str) {
        self.suspect(lock, owner);
        for _ in 0..20 {
            if self.release_owner(lock, owner).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Releases whatever `owner` holds on `lock` (no token); true when the answer is definite.
    async fn release_owner(&mut self, lock: &str, owner: &str) -> bool {
        self.release_as(lock, owner, None).await != Released::Unknown
    }

    /// Releases the current owner's grant `token` on `lock`; this owner is done afterwards.
    async fn release(&mut self, lock: &str, token: u64) {
        let owner = self.owner();
        let released = self.release_as(lock, &owner, Some(token)).await;
        if released == Released::Unknown && self.profile == Profile::Linearizable {
            // The release may not have happened: release it again later.
            self.suspect(lock, &owner);
        }
        if released != Released::Yes {
            // Not held any more (its lease ran out), a stale token, or unknown.
            self.generation += 1;
        }
    }

    /// Releases `owner`'s hold on `lock`, naming `token` when given; records the call.
    async fn release_as(&mut self, lock: &str, owner: &str, token: Option<u64>) -> Released {
        let op = Op::Release {
            lock: lock.to_owned(),
            owner: owner.to_owned(),
            token,
        };
        let id = self.history.invoke(self.process, op);
        let body = match token {
            Some(token) => serde_json::json!({"owner": owner, "token": token}),
            None => serde_json::json!({"owner": owner}),
        };
        let reply = self
            .call(
                reqwest::Method::POST,
                format!("/v1/locks/{lock}/release"),
                Some(body),
                CLIENT_PATIENCE,
            )
            .await;
        let released = match reply {
            Reply::Ok(_) => Released::Yes,
            Reply::Refused { .. } => Released::No,
            // Unknown, or never sent: the grant may still be held.
            Reply::Info(_) | Reply::Fail(_) => Released::Unknown,
        };
        match reply {
            Reply::Ok(_) => self.history.complete(id, Outcome::Ok(Value::Released)),
            other => {
                if let Some(outcome) = other.outcome() {
                    self.history.complete(id, outcome);
                }
            }
        }
        released
    }

    /// Remembers an owner that may still hold `lock` (at most the 16 most recent).
    fn suspect(&mut self, lock: &str, owner: &str) {
        self.suspects.push((lock.to_owned(), owner.to_owned()));
        if self.suspects.len() > 16 {
            self.suspects.remove(0);
        }
    }

    async fn read(&mut self, lock: &str) -> bool {
        let id = self.history.invoke(
            self.process,
            Op::Read {
                lock: lock.to_owned(),
            },
        );
        let reply = self
            .call(
                reqwest::Method::GET,
                format!("/v1/locks/{lock}"),
                None,
                CLIENT_PATIENCE,
            )
            .await;
        let outcome = match reply {
            Reply::Ok(body) => match serde_json::from_value::<LockInfo>(body) {
                Ok(info) => Outcome::Ok(Value::read_of(&info)),
                Err(e) => Outcome::Fail(format!("unreadable lock: {e}")),
            },
            // A read changes nothing: whatever went wrong, it did not happen.
            Reply::Fail(why) | Reply::Info(why) => Outcome::Fail(why),
            Reply::Refused { code, detail } => Outcome::Fail(format!("{code}: {detail}")),
        };
        let ok = matches!(outcome, Outcome::Ok(_));
        self.history.complete(id, outcome);
        ok
    }
}

/// A recording client of one node, for the nemesis's own probes.
pub struct Probe(Client);

impl Probe {
    /// A client of the node at `addr` whose operations are recorded as `process`.
    pub fn new(history: &History, process: u64, addr: &str) -> Probe {
        Probe(Client {
            process,
            profile: Profile::Leases,
            suspects: Vec::new(),
            generation: 0,
            history: history.clone(),
            addrs: vec![addr.to_owned()],
            http: reqwest::Client::new(),
            rng: Rng(1),
        })
    }

    /// Acquires `lock` exclusively for `owner` with a lease of `ttl_ms`, without waiting; true when granted.
    pub async fn acquire(&mut self, lock: &str, owner: &str, ttl_ms: u64) -> bool {
        matches!(
            self.0
                .acquire_as(lock, owner, LockMode::Exclusive, ttl_ms, 0)
                .await,
            Acquired::Granted(_)
        )
    }

    /// Reads `lock`; true when the read succeeded.
    pub async fn read(&mut self, lock: &str) -> bool {
        self.0.read(lock).await
    }
}

/// Reads every lock once through every node (recorded), after the faults: every lease still running must show.
pub async fn final_reads(history: &History, addrs: &[String]) {
    for addr in addrs {
        let mut probe = Probe::new(history, u64::MAX, addr);
        for lock in LOCKS {
            probe.read(lock).await;
        }
    }
}
