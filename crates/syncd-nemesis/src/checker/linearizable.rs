//! A linearizability check of the lock API against a sequential model, by search (Wing & Gong, with Lowe's
//! memoisation, as in Knossos and Porcupine).
//!
//! Every lock is checked alone (locks are independent in the model, so a history is linearizable iff each lock's
//! sub-history is). The model is the lock table without time: acquires that do not wait (`wait_ms` 0), releases
//! without a token check beyond "the owner holds it", and reads of the holders with their mode. So the workload
//! must not let leases run out (a long `ttl_ms`) and must not wait; the other checkers cover leases and waits.
//!
//! What each recorded operation means to the search:
//! - `ok` (and a definite refusal, [`crate::history::REFUSED`]): it took effect at one instant between its
//!   invocation and its completion, and the model must give the answer observed (`granted`, `lock_conflict`,
//!   `released`, `not_held`, the holders read);
//! - `info` or never completed: it may have taken effect at any instant after its invocation, or never; any answer
//!   is accepted (it can be placed after everything else, which is the same as not at all);
//! - any other `fail`: it did not happen, and is left out.
//!
//! The search tries, at each step, every operation that may come next (invoked before every not yet placed definite
//! operation completed; an operation with an unknown outcome is skipped where it would change nothing, since it can
//! always go last instead), applies it to the model and checks its answer, and remembers each (placed set,
//! model state) it has seen. It is exponential in the worst case: `max_states` bounds it, and a lock whose search
//! ran out is reported as undecided, never as an anomaly.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use super::Anomaly;
use crate::history::{History, Mode, Op, Operation, Outcome, Value};

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// One per lock whose sub-history has no linearization.
    pub anomalies: Vec<Anomaly>,
    /// Locks whose search hit `max_states` before it decided.
    pub undecided: Vec<String>,
    /// Locks checked.
    pub locks: usize,
    /// Operations placed, over all locks.
    pub operations: usize,
}

/// What an operation observed, when it is definite.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Granted,
    Conflict,
    Released,
    NotHeld,
    Holders(Vec<(u32, Mode)>),
    /// Unknown: any answer is accepted.
    Anything,
}

#[derive(Debug, Clone)]
enum Call {
    Acquire { owner: u32, mode: Mode },
    Release { owner: u32 },
    Read,
}

#[derive(Debug)]
struct Entry<'a> {
    op: &'a Operation,
    call: Call,
    seen: Seen,
    invoked: Instant,
    /// `None`: may take effect at any time after its invocation.
    completed: Option<Instant>,
}

/// The model: the holders of one lock, sorted by owner.
type State = Vec<(u32, Mode)>;

fn step(state: &State, call: &Call) -> (State, Seen) {
    let mut next = state.clone();
    let seen = match *call {
        Call::Acquire { owner, mode } => {
            let held = state.iter().find(|(o, _)| *o == owner).map(|(_, m)| *m);
            let others_compatible = state
                .iter()
                .filter(|(o, _)| *o != owner)
                .all(|(_, m)| *m == Mode::Shared && mode == Mode::Shared);
            match held {
                // Re-acquire in the mode held, or a downgrade: always granted.
                Some(h) if h == mode || mode == Mode::Shared => {
                    set(&mut next, owner, mode);
                    Seen::Granted
                }
                // An upgrade, or a new holder: granted when nobody else is in the way.
                _ if others_compatible => {
                    set(&mut next, owner, mode);
                    Seen::Granted
                }
                _ => Seen::Conflict,
            }
        }
        Call::Release { owner } => {
            if state.iter().any(|(o, _)| *o == owner) {
                next.retain(|(o, _)| *o != owner);
                Seen::Released
            } else {
                Seen::NotHeld
            }
        }
        Call::Read => Seen::Holders(state.clone()),
    };
    (next, seen)
}

fn set(state: &mut State, owner: u32, mode: Mode) {
    match state.iter_mut().find(|(o, _)| *o == owner) {
        Some(entry) => entry.1 = mode,
        None => {
            state.push((owner, mode));
            state.sort();
        }
    }
    // One lock has one mode: a downgrade next to other shared holders keeps them all shared.
}

/// Checks every lock of `history`; each search visits at most `max_states` states.
pub fn check(history: &History, max_states: usize) -> Report {
    let ops = history.operations();
    let mut owners: BTreeMap<String, u32> = BTreeMap::new();
    let mut by_lock: BTreeMap<String, Vec<Entry<'_>>> = BTreeMap::new();
    for op in &ops {
        let Some(entry) = entry(op, &mut owners) else {
            continue;
        };
        by_lock
            .entry(op.op.lock().to_owned())
            .or_default()
            .push(entry);
    }
    let mut report = Report::default();
    for (lock, entries) in by_lock {
        report.locks += 1;
        report.operations += entries.len();
        match search(&entries, max_states) {
            Search::Linearizable => {}
            Search::NotLinearizable { stuck } => {
                let blocker = &entries[stuck];
                report.anomalies.push(Anomaly {
                    kind: "not_linearizable",
                    object: Some(lock.clone()),
                    ops: vec![blocker.op.id],
                    description: format!(
                        "lock {lock:?}: no order of its {} operations, each at one instant within its call, \
                         explains what they observed; the furthest orders found could not place {} ({:?} by \
                         owner index, invoked {:.1} ms, observed {:?})",
                        entries.len(),
                        blocker.op.id,
                        blocker.call,
                        history.relative_ms(blocker.invoked),
                        blocker.seen,
                    ),
                });
            }
            Search::Undecided => report.undecided.push(lock),
        }
    }
    report
}

fn entry<'a>(op: &'a Operation, owners: &mut BTreeMap<String, u32>) -> Option<Entry<'a>> {
    let mut intern = |owner: &str| {
        let next = owners.len() as u32;
        *owners.entry(owner.to_owned()).or_insert(next)
    };
    let call = match &op.op {
        // A waiting acquire is outside the model.
        Op::Acquire { wait_ms, .. } if *wait_ms > 0 => return None,
        Op::Acquire { owner, mode, .. } => Call::Acquire {
            owner: intern(owner),
            mode: *mode,
        },
        Op::Release { owner, .. } => Call::Release {
            owner: intern(owner),
        },
        Op::Read { .. } => Call::Read,
    };
    let (seen, completed) = match &op.completed {
        None
        | Some(crate::history::Completion {
            outcome: Outcome::Info(_),
            ..
        }) => (Seen::Anything, None),
        Some(c) => {
            let seen = match (&c.outcome, &call) {
                (Outcome::Ok(Value::Granted { .. }), Call::Acquire { .. }) => Seen::Granted,
                (Outcome::Ok(Value::Released), Call::Release { .. }) => Seen::Released,
                (Outcome::Ok(Value::ReadValue { holders }), Call::Read) => {
                    let mut seen: Vec<(u32, Mode)> =
                        holders.iter().map(|h| (intern(&h.owner), h.mode)).collect();
                    seen.sort();
                    Seen::Holders(seen)
                }
                (Outcome::Fail(_), Call::Acquire { .. })
                    if op.refused_code() == Some("lock_conflict") =>
                {
                    Seen::Conflict
                }
                (Outcome::Fail(_), Call::Release { .. })
                    if op.refused_code() == Some("not_held") =>
                {
                    Seen::NotHeld
                }
                // Did not happen: left out.
                (Outcome::Fail(_), _) => return None,
                // An answer of another kind than the call: nothing the model can match.
                _ => Seen::Holders(vec![(u32::MAX, Mode::Exclusive)]),
            };
            (seen, Some(c.at))
        }
    };
    Some(Entry {
        op,
        call,
        seen,
        invoked: op.invoked,
        completed,
    })
}

/// What the search of one lock found.
enum Search {
    Linearizable,
    /// Not linearizable; `stuck` is the definite operation, still unplaced in the deepest orders found, that
    /// completed first: the one no order could explain.
    NotLinearizable {
        stuck: usize,
    },
    Undecided,
}

fn search(entries: &[Entry<'_>], max_states: usize) -> Search {
    let n = entries.len();
    let words = n.div_ceil(64);
    let definite = entries.iter().filter(|e| e.completed.is_some()).count();
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // Depth-first, with an explicit stack of (placed set, state, placed definite count).
    let mut stack: Vec<(Vec<u64>, State, usize)> = vec![(vec![0; words], Vec::new(), 0)];
    let mut deepest: (usize, Vec<u64>) = (0, vec![0; words]);
    while let Some((placed, state, done)) = stack.pop() {
        if done == definite {
            return Search::Linearizable;
        }
        if !seen.insert((placed.clone(), state.clone())) {
            continue;
        }
        if seen.len() > max_states {
            return Search::Undecided;
        }
        if done > deepest.0 {
            deepest = (done, placed.clone());
        }
        let is_placed = |i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
        // The next operation must have been invoked before every definite operation still to place completed.
        let horizon = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_placed(*i))
            .filter_map(|(_, e)| e.completed)
            .min();
        for (i, e) in entries.iter().enumerate() {
            if is_placed(i) || horizon.is_some_and(|h| e.invoked > h) {
                continue;
            }
            let (next, answer) = step(&state, &e.call);
            if e.seen != Seen::Anything && e.seen != answer {
                continue;
            }
            // An operation with an unknown outcome that would change nothing here need not be placed here: placing
            // it after everything else (where nothing observes it) is the same, and that is always possible.
            if e.completed.is_none() && next == state {
                continue;
            }
            let mut placed = placed.clone();
            placed[i / 64] |= 1 << (i % 64);
            let done = done + usize::from(e.completed.is_some());
            stack.push((placed, next, done));
        }
    }
    let placed = deepest.1;
    let stuck = entries
        .iter()
        .enumerate()
        .filter(|(i, e)| placed[i / 64] & (1 << (i % 64)) == 0 && e.completed.is_some())
        .min_by_key(|(_, e)| e.completed)
        .map_or(0, |(i, _)| i);
    Search::NotLinearizable { stuck }
}

#[cfg(test)]
mod tests;
