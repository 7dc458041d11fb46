//! Randomised histories from a simulated lock server: a correct server must never produce an anomaly (the
//! checkers are sound, even with indeterminate operations applied long after their clients gave up), and
//! servers with planted bugs must be caught (the checkers have power).

use super::*;
use crate::history::Completion;

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// Leases last half the asked ttl.
    ShortLeases,
    /// Reads omit the newest holder.
    ReadsLoseNewest,
    /// The token counter goes back by 10 once, half-way.
    TokensGoBack,
}

struct ServerHolder {
    owner: String,
    token: u64,
    mode: Mode,
    expires: u64,
}

/// One lock, applied atomically at a point in time, following the documented semantics.
struct Server {
    bug: Bug,
    holders: Vec<ServerHolder>,
    next_token: u64,
    went_back: bool,
}

impl Server {
    fn token(&mut self, now: u64) -> u64 {
        if self.bug == Bug::TokensGoBack && now > 1_500 && !self.went_back {
            self.went_back = true;
            self.next_token = self.next_token.saturating_sub(10).max(1);
        }
        self.next_token += 1;
        self.next_token
    }

    /// The result, or `None` when refused.
    fn apply(&mut self, op: &Op, now: u64) -> Option<Value> {
        self.holders.retain(|h| h.expires > now);
        match op {
            Op::Acquire {
                owner,
                mode,
                ttl_ms,
                ..
            } => {
                let lease = if self.bug == Bug::ShortLeases {
                    ttl_ms / 2
                } else {
                    *ttl_ms
                };
                let expires = now + lease;
                let only_holder = self.holders.len() == 1;
                if let Some(i) = self.holders.iter().position(|h| h.owner == *owner) {
                    let held = &mut self.holders[i];
                    if held.mode == *mode || *mode == Mode::Shared {
                        // Idempotent re-acquire, or a downgrade: same token, lease extended.
                        held.mode = *mode;
                        held.expires = held.expires.max(expires);
                        let token = held.token;
                        return Some(Value::Granted {
                            token,
                            expires_at_ms: expires,
                        });
                    }
                    if !only_holder {
                        return None;
                    }
                    let token = self.token(now);
                    let held = &mut self.holders[i];
                    held.token = token;
                    held.mode = Mode::Exclusive;
                    held.expires = expires;
                    return Some(Value::Granted {
                        token,
                        expires_at_ms: expires,
                    });
                }
                let compatible = self
                    .holders
                    .iter()
                    .all(|h| h.mode == Mode::Shared && *mode == Mode::Shared);
                if !compatible {
                    return None;
                }
                let token = self.token(now);
                self.holders.push(ServerHolder {
                    owner: owner.clone(),
                    token,
                    mode: *mode,
                    expires,
                });
                Some(Value::Granted {
                    token,
                    expires_at_ms: expires,
                })
            }
            Op::Release { owner, token, .. } => {
                let i = self
                    .holders
                    .iter()
                    .position(|h| h.owner == *owner && token.is_none_or(|t| t == h.token))?;
                self.holders.remove(i);
                Some(Value::Released)
            }
            Op::Read { .. } => {
                let mut holders: Vec<Holder> = self
                    .holders
                    .iter()
                    .map(|h| Holder {
                        owner: h.owner.clone(),
                        token: h.token,
                        mode: h.mode,
                    })
                    .collect();
                if self.bug == Bug::ReadsLoseNewest {
                    holders.sort_by_key(|h| h.token);
                    holders.pop();
                }
                Some(Value::ReadValue { holders })
            }
        }
    }
}

struct Client {
    owner: String,
    generation: u32,
    /// The token it believes it holds.
    token: Option<u64>,
    busy: bool,
}

/// An operation in flight.
struct Flight {
    client: usize,
    id: OpId,
    op: Op,
    /// When the server applies it, if ever.
    apply_at: Option<u64>,
    complete_at: u64,
    /// Whether the client learns the outcome (otherwise: `Info`).
    determinate: bool,
    result: Option<Option<Value>>,
}

fn simulate(seed: u64, bug: Bug) -> History {
    const CLIENTS: usize = 5;
    const END_MS: u64 = 3_000;
    let mut rng = Rng::new(seed);
    let h = H::new();
    let mut server = Server {
        bug,
        holders: Vec::new(),
        next_token: 0,
        went_back: false,
    };
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| Client {
            owner: format!("c{i}"),
            generation: 0,
            token: None,
            busy: false,
        })
        .collect();
    let mut flights: Vec<Flight> = Vec::new();
    for now in 0..END_MS {
        // Invoke.
        for (index, client) in clients.iter_mut().enumerate() {
            if client.busy || !rng.chance(20) {
                continue;
            }
            let mode = if rng.chance(50) {
                Mode::Exclusive
            } else {
                Mode::Shared
            };
            let acquire = Op::Acquire {
                lock: "l".into(),
                owner: client.owner.clone(),
                mode,
                ttl_ms: 20 + rng.below(100),
                wait_ms: 0,
            };
            let op = match (client.token, rng.below(4)) {
                (Some(token), 0 | 1) => Op::Release {
                    lock: "l".into(),
                    owner: client.owner.clone(),
                    token: rng.chance(50).then_some(token),
                },
                (None, 0 | 1) | (Some(_), 2) => acquire,
                _ => Op::Read { lock: "l".into() },
            };
            let id = h.history.invoke_at(index as u64, op.clone(), h.at(now));
            let determinate = rng.chance(85);
            let (apply_at, complete_at) = if determinate {
                let apply = now + rng.below(6);
                (Some(apply), apply + rng.below(6))
            } else {
                // Lost in the network, or delivered long after the client gave up.
                let apply = rng.chance(50).then(|| now + rng.below(300));
                (apply, now + rng.below(20))
            };
            client.busy = true;
            flights.push(Flight {
                client: index,
                id,
                op,
                apply_at,
                complete_at,
                determinate,
                result: None,
            });
        }
        // Apply.
        for flight in flights.iter_mut().filter(|f| f.apply_at == Some(now)) {
            flight.result = Some(server.apply(&flight.op, now));
        }
        // Complete.
        for flight in flights.iter().filter(|f| f.complete_at == now) {
            let client = &mut clients[flight.client];
            client.busy = false;
            if !flight.determinate {
                h.history
                    .complete_at(flight.id, Outcome::Info("timeout".into()), h.at(now));
                client.token = None;
                if rng.chance(50) {
                    client.generation += 1;
                    client.owner = format!("c{}-{}", flight.client, client.generation);
                }
                continue;
            }
            let outcome = match flight.result.clone().flatten() {
                Some(value) => {
                    match (&flight.op, &value) {
                        (_, Value::Granted { token, .. }) => client.token = Some(*token),
                        (Op::Release { .. }, _) => client.token = None,
                        _ => {}
                    }
                    Outcome::Ok(value)
                }
                None => {
                    if matches!(flight.op, Op::Release { .. }) {
                        client.token = None;
                    }
                    Outcome::Fail("refused".into())
                }
            };
            h.history.complete_at(flight.id, outcome, h.at(now));
        }
        flights.retain(|f| f.complete_at > now || f.apply_at.is_some_and(|at| at > now));
    }
    h.history
}

fn all_anomalies(history: &History) -> Vec<Anomaly> {
    let mut found = mutual_exclusion(history);
    found.extend(tokens_monotonic(history));
    found.extend(reads_see_writes(history));
    found
}

#[test]
fn a_correct_server_never_produces_an_anomaly() {
    for seed in 0..40 {
        let history = simulate(seed, Bug::None);
        let ops = history.operations();
        let count = |f: &dyn Fn(&Operation) -> bool| ops.iter().filter(|op| f(op)).count();
        let grants = count(&|op| matches!(op.ok_value(), Some(Value::Granted { .. })));
        let busy_reads = count(
            &|op| matches!(op.ok_value(), Some(Value::ReadValue { holders }) if !holders.is_empty()),
        );
        let unknown = count(&|op| {
            !matches!(
                op.completed,
                Some(Completion {
                    outcome: Outcome::Ok(_) | Outcome::Fail(_),
                    ..
                })
            )
        });
        // Not vacuous: plenty of grants, reads that see holders, and indeterminate operations.
        assert!(
            grants > 150 && busy_reads > 100 && unknown > 100,
            "seed {seed}: {grants} grants, {busy_reads} reads, {unknown} unknown"
        );
        let found = all_anomalies(&history);
        assert!(
            found.is_empty(),
            "seed {seed}:\n{}",
            crate::checker::report(&found)
        );
    }
}

#[test]
fn planted_bugs_are_caught() {
    for (bug, kind) in [
        (Bug::ShortLeases, "mutual_exclusion"),
        (Bug::ReadsLoseNewest, "lost_grant"),
        (Bug::TokensGoBack, "token_order"),
    ] {
        let caught = (0..10).any(|seed| {
            all_anomalies(&simulate(seed, bug))
                .iter()
                .any(|anomaly| anomaly.kind == kind)
        });
        assert!(caught, "{bug:?} was not caught as {kind}");
    }
}
