//! Property tests: random command sequences over a few locks and owners, with the table's invariants checked
//! after every step, and replay / snapshot-restore checked against the original table.

// `clippy.toml` allows `expect` in `#[test]` functions only; the checking helpers of this test crate need it too.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use syncd_lock_table::{Command, LockMode, LockTable, Outcome, TableState};

const LOCKS: [&str; 4] = ["l0", "l1", "l2", "l3"];
const OWNERS: [&str; 5] = ["o0", "o1", "o2", "o3", "o4"];

/// Which token a release or renew carries; resolved against the table when the step runs, so that the right
/// token is actually exercised. The resolved, concrete command is what every table replays.
#[derive(Debug, Clone, Copy)]
enum TokenChoice {
    None,
    /// The token the owner holds (or a token no one holds when it holds nothing).
    Current,
    /// The current token minus this much (0 can coincide with the current one; that is fine).
    Older(u64),
    /// A token not handed out yet.
    Future,
}

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        lock: usize,
        owner: usize,
        mode: LockMode,
        ttl_ms: u64,
        wait_ms: u64,
        /// 0 (unnamed) or one of a few ids, so withdrawals by id hit and miss.
        request: u64,
    },
    Release {
        lock: usize,
        owner: usize,
        token: TokenChoice,
    },
    Renew {
        lock: usize,
        owner: usize,
        ttl_ms: u64,
        token: TokenChoice,
    },
    CancelWait {
        lock: usize,
        owner: usize,
        request: u64,
    },
    Tick,
}

#[derive(Debug, Clone)]
struct Step {
    /// Added to the previous stamp (saturating at 0): mostly forward, sometimes back.
    dt: i64,
    op: Op,
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![Just(LockMode::Shared), Just(LockMode::Exclusive)]
}

fn token_choice() -> impl Strategy<Value = TokenChoice> {
    prop_oneof![
        4 => Just(TokenChoice::None),
        4 => Just(TokenChoice::Current),
        1 => (0u64..3).prop_map(TokenChoice::Older),
        1 => Just(TokenChoice::Future),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let lock = 0..LOCKS.len();
    let owner = 0..OWNERS.len();
    // ttl_ms >= 1: a lease that ends the moment it starts is not a lease (see the report on ttl_ms = 0).
    let ttl = 1u64..40;
    let wait = prop_oneof![1 => Just(0u64), 2 => 1u64..60];
    prop_oneof![
        8 => (lock.clone(), owner.clone(), mode(), ttl.clone(), wait, 0u64..4).prop_map(
            |(lock, owner, mode, ttl_ms, wait_ms, request)| Op::Acquire {
                lock,
                owner,
                mode,
                ttl_ms,
                wait_ms,
                request,
            }
        ),
        3 => (lock.clone(), owner.clone(), token_choice())
            .prop_map(|(lock, owner, token)| Op::Release { lock, owner, token }),
        2 => (lock.clone(), owner.clone(), ttl, token_choice()).prop_map(
            |(lock, owner, ttl_ms, token)| Op::Renew {
                lock,
                owner,
                ttl_ms,
                token
            }
        ),
        2 => (lock, owner, 0u64..4)
            .prop_map(|(lock, owner, request)| Op::CancelWait { lock, owner, request }),
        1 => Just(Op::Tick),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let dt = prop_oneof![
        3 => Just(0i64),
        6 => 1i64..8,
        2 => 8i64..60,
        2 => -15i64..0,
    ];
    (dt, op()).prop_map(|(dt, op)| Step { dt, op })
}

fn resolve_token(table: &LockTable, lock: &str, owner: &str, choice: TokenChoice) -> Option<u64> {
    let current = table.holder(lock, owner).map(|h| h.token);
    match choice {
        TokenChoice::None => None,
        TokenChoice::Current => Some(current.unwrap_or(table.last_token() + 1)),
        TokenChoice::Older(k) => Some(current.unwrap_or(table.last_token()).saturating_sub(k)),
        TokenChoice::Future => Some(table.last_token() + 1),
    }
}

/// The concrete command of a step, given the table it is about to be applied to.
fn resolve(table: &LockTable, op: &Op) -> Command {
    match *op {
        Op::Acquire {
            lock,
            owner,
            mode,
            ttl_ms,
            wait_ms,
            request,
        } => Command::Acquire {
            name: LOCKS[lock].to_owned(),
            owner: OWNERS[owner].to_owned(),
            mode,
            ttl_ms,
            wait_ms,
            request,
        },
        Op::Release { lock, owner, token } => Command::Release {
            name: LOCKS[lock].to_owned(),
            owner: OWNERS[owner].to_owned(),
            token: resolve_token(table, LOCKS[lock], OWNERS[owner], token),
        },
        Op::Renew {
            lock,
            owner,
            ttl_ms,
            token,
        } => Command::Renew {
            name: LOCKS[lock].to_owned(),
            owner: OWNERS[owner].to_owned(),
            ttl_ms,
            token: resolve_token(table, LOCKS[lock], OWNERS[owner], token),
        },
        Op::CancelWait {
            lock,
            owner,
            request,
        } => Command::CancelWait {
            name: LOCKS[lock].to_owned(),
            owner: OWNERS[owner].to_owned(),
            request,
        },
        Op::Tick => Command::Tick,
    }
}

/// (lock, owner) -> (mode, token, lease end) of every current hold.
type Holds = BTreeMap<(String, String), (LockMode, u64, u64)>;

fn holds(table: &LockTable) -> Holds {
    let mut out = Holds::new();
    for info in table.all_locks() {
        for h in &info.holders {
            let hold = table
                .holder(&info.name, &h.owner)
                .expect("all_locks lists a holder that holder() does not know");
            assert_eq!(hold.token, h.token);
            assert_eq!(hold.expires_at_ms, h.expires_at_ms);
            out.insert(
                (info.name.clone(), h.owner.clone()),
                (hold.mode, hold.token, hold.expires_at_ms),
            );
        }
    }
    out
}

/// lock -> its waiters (owner, wait deadline), in queue order.
type Queues = BTreeMap<String, Vec<(String, u64)>>;

fn queues(table: &LockTable) -> Queues {
    table
        .all_locks()
        .into_iter()
        .map(|info| {
            let queue = info
                .waiters
                .iter()
                .map(|w| {
                    let pending = table.waiter(&info.name, &w.owner);
                    (w.owner.clone(), pending.map_or(0, |p| p.deadline_ms))
                })
                .collect();
            (info.name, queue)
        })
        .collect()
}

fn is_queued(queues: &Queues, name: &str, owner: &str) -> bool {
    queues
        .get(name)
        .is_some_and(|q| q.iter().any(|(o, _)| o == owner))
}

/// FIFO: a waiter is never granted while one queued ahead of it still waits, and a request that neither held nor
/// waited for the lock is only granted at once when nobody waits for it. "Still waits" excludes an owner whose wait
/// ended in this step, by expiry or by a grant, and whom the step's command then queued again.
fn check_order(
    table: &LockTable,
    cmd: &Command,
    outcome: &Outcome,
    holds_before: &Holds,
    queues_before: &Queues,
) {
    let after = holds(table);
    let queues_after = queues(table);
    let clock = table.clock_ms();
    let newly_granted = |name: &str, owner: &str| {
        let key = (name.to_owned(), owner.to_owned());
        after
            .get(&key)
            .is_some_and(|(_, t, _)| holds_before.get(&key).is_none_or(|(_, t0, _)| t0 != t))
    };
    for (name, queue) in queues_before {
        for (i, (owner, _)) in queue.iter().enumerate() {
            if !newly_granted(name, owner) {
                continue;
            }
            for (ahead, deadline) in &queue[..i] {
                let kept_waiting = *deadline > clock
                    && !newly_granted(name, ahead)
                    && is_queued(&queues_after, name, ahead);
                assert!(
                    !kept_waiting,
                    "{owner} granted {name} while {ahead}, queued ahead of it, still waits"
                );
            }
        }
    }
    if let (Command::Acquire { name, owner, .. }, Outcome::Granted { .. }) = (cmd, outcome) {
        let key = (name.clone(), owner.clone());
        let was_waiting = is_queued(queues_before, name, owner);
        if !holds_before.contains_key(&key) && !was_waiting {
            assert!(
                queues_after.get(name).is_none_or(Vec::is_empty),
                "{owner} overtook the queue of {name}: {:?}",
                queues_after.get(name)
            );
        }
    }
}

/// The wait-for graph, re-derived from the public view: `w -> x` when `w` waits on a lock that `x` holds in an
/// incompatible mode, or that `x` waits for ahead of `w` in an incompatible mode.
fn wait_for_graph(table: &LockTable) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for info in table.all_locks() {
        for (i, waiter) in info.waiters.iter().enumerate() {
            let edges = graph.entry(waiter.owner.clone()).or_default();
            for h in &info.holders {
                let mode = table.holder(&info.name, &h.owner).map(|h| h.mode);
                if h.owner != waiter.owner && mode.is_some_and(|m| !waiter.mode.compatible_with(m))
                {
                    edges.insert(h.owner.clone());
                }
            }
            for ahead in &info.waiters[..i] {
                if ahead.owner != waiter.owner && !waiter.mode.compatible_with(ahead.mode) {
                    edges.insert(ahead.owner.clone());
                }
            }
        }
    }
    graph
}

fn assert_acyclic(graph: &BTreeMap<String, BTreeSet<String>>) {
    // Kahn-style: repeatedly drop nodes without outgoing edges into the remaining set.
    let mut left: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    loop {
        let sinks: Vec<&str> = left
            .iter()
            .copied()
            .filter(|n| {
                graph
                    .get(*n)
                    .is_none_or(|out| out.iter().all(|m| !left.contains(m.as_str())))
            })
            .collect();
        if sinks.is_empty() {
            break;
        }
        for s in sinks {
            left.remove(s);
        }
    }
    assert!(
        left.is_empty(),
        "wait-for graph has a cycle among {left:?}: {graph:?}"
    );
}

/// What an acquire answers, where that follows from the state before the step alone:
/// - an owner whose hold outlives the step's clock, and that was not queued for an upgrade (so it cannot have been
///   re-granted meanwhile), keeps its token when it asks again for the same mode or downgrades;
/// - a `Deadlock` is never false: queuing the request where the design says (at the front for a holder's upgrade,
///   at the back otherwise) really closes a cycle of the wait-for graph. The table is unchanged by a refusal, so
///   the graph after the step is the one the request met.
fn check_acquire_outcome(
    table: &LockTable,
    cmd: &Command,
    outcome: &Outcome,
    holds_before: &Holds,
    queues_before: &Queues,
) {
    let Command::Acquire {
        name, owner, mode, ..
    } = cmd
    else {
        return;
    };
    let held = holds_before
        .get(&(name.clone(), owner.clone()))
        .filter(|(_, _, expires)| *expires > table.clock_ms())
        .filter(|_| !is_queued(queues_before, name, owner));
    // Same mode again, or a downgrade (an upgrade is a new grant).
    if let Some((held_mode, token, _)) = held
        && (held_mode == mode || *mode == LockMode::Shared)
    {
        assert!(
            matches!(outcome, Outcome::Granted { mode: m, token: t, .. } if m == mode && t == token),
            "{owner} holding {name} as {held_mode:?} with token {token} asked for {mode:?}: {outcome:?}"
        );
    }
    if *outcome == Outcome::Deadlock {
        let mut graph = wait_for_graph(table);
        let info = table
            .lock_info(name)
            .expect("a refused request leaves the lock as it was, and it was not idle");
        let upgrade = table.holder(name, owner).is_some();
        let ahead: &[syncd_lock_table::WaiterView] = if upgrade { &[] } else { &info.waiters };
        let edges = graph.entry(owner.clone()).or_default();
        for h in &info.holders {
            let m = table.holder(name, &h.owner).map(|h| h.mode);
            if h.owner != *owner && m.is_some_and(|m| !mode.compatible_with(m)) {
                edges.insert(h.owner.clone());
            }
        }
        for w in ahead {
            if w.owner != *owner && !mode.compatible_with(w.mode) {
                edges.insert(w.owner.clone());
            }
        }
        if upgrade {
            // Everyone already queued is now behind the upgrade.
            for w in &info.waiters {
                if w.owner != *owner && !w.mode.compatible_with(*mode) {
                    graph
                        .entry(w.owner.clone())
                        .or_default()
                        .insert(owner.clone());
                }
            }
        }
        assert!(
            reaches(&graph, owner, owner),
            "false deadlock for {cmd:?}: {graph:?}"
        );
    }
}

/// Whether a path of at least one edge leads from `from` to `to`.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = graph
        .get(from)
        .map(|s| s.iter().map(String::as_str).collect())
        .unwrap_or_default();
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            stack.extend(graph.get(n).into_iter().flatten().map(String::as_str));
        }
    }
    false
}

/// Checks every invariant of one table; `before` is the table's holds before the step, `max_token` the largest
/// token granted before the step (updated here).
fn check_invariants(
    table: &LockTable,
    cmd: &Command,
    outcome: &Outcome,
    before: &Holds,
    max_token: &mut u64,
    last_token_before: u64,
) {
    let clock = table.clock_ms();
    let infos = table.all_locks();

    // Tokens: last_token never decreases; every grant that is not the continuation of an existing hold gets a
    // token above every token granted before.
    assert!(
        table.last_token() >= last_token_before,
        "last_token went back"
    );
    let after = holds(table);
    let mut new_tokens = BTreeSet::new();
    for (key, (_, token, _)) in &after {
        let continued = before.get(key).is_some_and(|(_, t, _)| t == token);
        if !continued {
            assert!(
                *token > *max_token,
                "new hold {key:?} got token {token}, not above {max_token}"
            );
            assert!(*token <= table.last_token());
            assert!(new_tokens.insert(*token), "token {token} granted twice");
        }
    }
    if let (
        Command::Acquire {
            name, owner, mode, ..
        },
        Outcome::Granted {
            mode: granted_mode,
            token,
            expires_at_ms,
        },
    ) = (cmd, outcome)
    {
        assert_eq!(mode, granted_mode);
        let key = (name.clone(), owner.clone());
        assert_eq!(
            after.get(&key).map(|(m, t, _)| (*m, *t)),
            Some((*mode, *token))
        );
        assert_eq!(
            table.holder(name, owner).map(|h| h.expires_at_ms),
            Some(*expires_at_ms)
        );
        match before.get(&key) {
            // Idempotent re-acquire or downgrade: the hold goes on with its token.
            Some((held, t, _)) if t == token => {
                assert!(
                    held == mode || (*held == LockMode::Exclusive && *mode == LockMode::Shared),
                    "kept token {token} across {held:?} -> {mode:?}"
                );
            }
            _ => assert!(*token > *max_token, "fresh grant {token} <= {max_token}"),
        }
    }
    if let Some(m) = new_tokens.last() {
        *max_token = (*max_token).max(*m);
    }
    if let Outcome::Granted { token, .. } = outcome {
        *max_token = (*max_token).max(*token);
    }

    for info in &infos {
        // Idle locks are forgotten; the per-lock view agrees with the list.
        assert!(
            !info.holders.is_empty() || !info.waiters.is_empty(),
            "idle lock {info:?}"
        );
        assert_eq!(table.lock_info(&info.name).as_ref(), Some(info));

        // Many shared holders or exactly one exclusive holder.
        let modes: Vec<LockMode> = info
            .holders
            .iter()
            .map(|h| after[&(info.name.clone(), h.owner.clone())].0)
            .collect();
        let exclusive = modes.iter().filter(|m| **m == LockMode::Exclusive).count();
        assert!(
            exclusive == 0 || modes.len() == 1,
            "lock {} held as {modes:?}",
            info.name
        );
        assert_eq!(info.mode, modes.iter().copied().max());

        // Nobody queued twice on one lock.
        let mut seen = BTreeSet::new();
        for w in &info.waiters {
            assert!(
                seen.insert(w.owner.as_str()),
                "{} queued twice on {}",
                w.owner,
                info.name
            );
        }

        // The head waiter is not grantable (it would have been granted).
        if let Some(head) = info.waiters.first() {
            let blocked = info.holders.iter().any(|h| {
                h.owner != head.owner
                    && !head
                        .mode
                        .compatible_with(after[&(info.name.clone(), h.owner.clone())].0)
            });
            assert!(
                blocked,
                "head waiter {head:?} of {} is grantable: {info:?}",
                info.name
            );
        }

        // Leases and waits still running; the table's next deadline covers them.
        for h in &info.holders {
            assert!(
                h.expires_at_ms > clock,
                "expired holder {h:?} of {} at {clock}",
                info.name
            );
            assert!(table.next_deadline().is_some_and(|d| d <= h.expires_at_ms));
        }
        for w in &info.waiters {
            let pending = table
                .waiter(&info.name, &w.owner)
                .expect("all_locks lists a waiter that waiter() does not know");
            assert_eq!(pending.mode, w.mode);
            assert!(
                pending.deadline_ms > clock,
                "waiter {pending:?} of {} past its deadline at {clock}",
                info.name
            );
            assert!(
                table
                    .next_deadline()
                    .is_some_and(|d| d <= pending.deadline_ms)
            );
        }
    }
    if let Some(d) = table.next_deadline() {
        assert!(d > clock, "next deadline {d} is already due at {clock}");
    }

    assert_acyclic(&wait_for_graph(table));
}

/// Serializes a state through JSON, as a snapshot does, and rebuilds a table from it.
fn restore(state: &TableState) -> LockTable {
    let json = serde_json::to_string(state).expect("serialize state");
    let back: TableState = serde_json::from_str(&json).expect("deserialize state");
    assert_eq!(&back, state);
    LockTable::from_state(back)
}

fn run(steps: &[Step], snapshot_at: &[usize]) {
    let mut table = LockTable::new();
    let mut replica = LockTable::new();
    // Tables restored from a snapshot taken before step `i`, fed the rest of the sequence.
    let mut restored: Vec<(usize, LockTable)> = Vec::new();
    let mut now: u64 = 0;
    let mut max_token = 0;
    for (i, step) in steps.iter().enumerate() {
        if snapshot_at.contains(&i) {
            let r = restore(table.state());
            assert_eq!(r, table);
            restored.push((i, r));
        }
        now = now.saturating_add_signed(step.dt);
        let cmd = resolve(&table, &step.op);
        let before = holds(&table);
        let queues_before = queues(&table);
        let last_token_before = table.last_token();
        let clock_before = table.clock_ms();

        let outcome = table.apply(now, &cmd);

        assert_eq!(table.clock_ms(), clock_before.max(now), "clock");
        check_invariants(
            &table,
            &cmd,
            &outcome,
            &before,
            &mut max_token,
            last_token_before,
        );
        check_order(&table, &cmd, &outcome, &before, &queues_before);
        check_acquire_outcome(&table, &cmd, &outcome, &before, &queues_before);

        assert_eq!(
            replica.apply(now, &cmd),
            outcome,
            "replay of step {i}: {cmd:?} at {now}"
        );
        assert_eq!(replica, table, "replayed state after step {i}");

        for (from, r) in &mut restored {
            assert_eq!(
                r.apply(now, &cmd),
                outcome,
                "table restored before step {from}, step {i}: {cmd:?} at {now}"
            );
            assert_eq!(
                *r, table,
                "restored before step {from}, state after step {i}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_replay_and_snapshots(
        steps in prop::collection::vec(step(), 1..80),
        snaps in prop::collection::vec(any::<Index>(), 0..3),
    ) {
        let snapshot_at: Vec<usize> = snaps.iter().map(|ix| ix.index(steps.len())).collect();
        run(&steps, &snapshot_at);
    }

    /// Few owners and one lock: conflicts, upgrades and deadlocks on one queue are much more frequent.
    #[test]
    fn one_contended_lock(
        steps in prop::collection::vec(step(), 1..80)
            .prop_map(|steps| steps.into_iter().map(|mut s| {
                match &mut s.op {
                    Op::Acquire { lock, owner, .. }
                    | Op::Release { lock, owner, .. }
                    | Op::Renew { lock, owner, .. }
                    | Op::CancelWait { lock, owner, .. } => {
                        *lock = 0;
                        *owner %= 3;
                    }
                    Op::Tick => {}
                }
                s
            }).collect::<Vec<_>>()),
        snap in any::<Index>(),
    ) {
        let at = snap.index(steps.len());
        run(&steps, &[at]);
    }
}
