//! Checkers of the lock service over a history of [`Op::Acquire`], [`Op::Release`] and [`Op::Read`].
//!
//! # What the checkers may assume
//!
//! A *grant* is one fencing token given to one owner on one lock. The server's documented rules make the
//! following facts true of a correct service, and every rule below is derived from them alone:
//!
//! 1. Tokens increase strictly over every grant in the cluster, and each token belongs to one grant (one owner,
//!    one lock). An owner holds at most one grant per lock; an idempotent re-acquire in the same mode returns the
//!    same token and extends the lease, never shortens it; a re-acquire in the other mode (an upgrade or a
//!    downgrade) changes the grant.
//! 2. A lease lasts at least `ttl_ms` from the moment the acquire took effect, which is after its invocation. So an
//!    `Ok` acquire `g` is held until at least `g.invoke + ttl`, unless its owner released it or changed its mode.
//!    This takes the cluster's lease clock to run no faster than the test's monotonic clock: a clock fault that
//!    breaks this shows up here as lost exclusion, which is the point of injecting it.
//! 3. An operation takes effect at one instant between its invocation and its completion.
//!
//! Outcomes: an `Ok` acquire is evidence of a grant, taking effect no later than its completion. A `Fail` op did
//! not happen and is ignored. An `Info` (or never-completed) op may take effect at *any* time after its invocation,
//! even long after the client gave up (a request held in a partitioned link can be delivered on heal). So an
//! indeterminate acquire never serves as evidence of a grant, and never makes an anomaly by itself; and an
//! indeterminate release, or an indeterminate change of mode, by an owner is assumed to end that owner's grant
//! as early as its invocation. That keeps the checkers sound (no false alarms) at the price of power: a workload
//! should switch its client to a fresh owner after an indeterminate op, as Jepsen does with process ids.
//!
//! # The lease end of a grant
//!
//! For an `Ok` acquire `g` of owner `o`, `lease_end(g)` is the earliest of `g.invoke + ttl` and the invocation of
//! every release by `o` of that lock (naming `g`'s token or none), and every acquire by `o` of that lock in the
//! other mode, that did not fail and did not complete `Ok` before `g` was invoked. Until `lease_end(g)` the grant is
//! certainly still held: it took effect before `g` completed, nothing that could end it was invoked, and its lease
//! had not run out. (When such an op was invoked before `g` completed, the interval is simply empty.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::Anomaly;
use crate::history::{History, Holder, Mode, Op, Operation, Value};

/// An `Ok` acquire: evidence that `owner` held `token` on `lock` in `mode` by the time it completed.
struct Grant<'a> {
    op: &'a Operation,
    lock: &'a str,
    owner: &'a str,
    mode: Mode,
    ttl: Duration,
    token: u64,
    completed: Instant,
}

/// The history arranged for the checkers.
struct Index<'a> {
    history: &'a History,
    grants: Vec<Grant<'a>>,
    /// Acquires and releases by (lock, owner), in invocation-id order.
    by_owner: BTreeMap<(&'a str, &'a str), Vec<&'a Operation>>,
}

impl<'a> Index<'a> {
    fn new(history: &'a History, ops: &'a [Operation]) -> Index<'a> {
        let mut grants = Vec::new();
        let mut by_owner: BTreeMap<(&str, &str), Vec<&Operation>> = BTreeMap::new();
        for op in ops {
            match &op.op {
                Op::Acquire {
                    lock,
                    owner,
                    mode,
                    ttl_ms,
                    ..
                } => {
                    by_owner.entry((lock, owner)).or_default().push(op);
                    if let (Some(Value::Granted { token, .. }), Some(completed)) =
                        (op.ok_value(), op.ok_at())
                    {
                        grants.push(Grant {
                            op,
                            lock,
                            owner,
                            mode: *mode,
                            ttl: Duration::from_millis(*ttl_ms),
                            token: *token,
                            completed,
                        });
                    }
                }
                Op::Release { lock, owner, .. } => {
                    by_owner.entry((lock, owner)).or_default().push(op);
                }
                Op::Read { .. } => {}
            }
        }
        Index {
            history,
            grants,
            by_owner,
        }
    }

    fn owner_ops<'s>(&'s self, lock: &'s str, owner: &'s str) -> &'s [&'a Operation] {
        self.by_owner
            .get(&(lock, owner))
            .map_or(&[], |ops| ops.as_slice())
    }

    /// The grants of each lock.
    fn grants_by_lock(&self) -> BTreeMap<&'a str, Vec<&Grant<'a>>> {
        let mut by_lock: BTreeMap<&str, Vec<&Grant<'a>>> = BTreeMap::new();
        for grant in &self.grants {
            by_lock.entry(grant.lock).or_default().push(grant);
        }
        by_lock
    }

    /// Until when `g` is certainly held (see the module documentation).
    fn lease_end(&self, g: &Grant<'_>) -> Instant {
        let mut end = g.op.invoked + g.ttl;
        for op in self.owner_ops(g.lock, g.owner) {
            // An `Info` op may take effect after its completion, so only an `Ok` one is known to be over.
            if op.id == g.op.id || op.failed() || op.ok_at().is_some_and(|at| at < g.op.invoked) {
                continue;
            }
            let may_end_it = match &op.op {
                Op::Release { token, .. } => token.is_none_or(|token| token == g.token),
                Op::Acquire { mode, .. } => *mode != g.mode,
                Op::Read { .. } => false,
            };
            if may_end_it {
                end = end.min(op.invoked);
            }
        }
        end
    }

    /// A time before which `g`'s grant certainly did not exist yet: the grant was made by an acquire of its owner
    /// that did not fail (and returned no other token), so not before the earliest such invocation; and it came
    /// after every `Ok` op of its owner on the lock that completed before `g` was invoked and showed the owner
    /// without it (a release, or an acquire returning another token), so after that op's invocation.
    fn granted_after(&self, g: &Grant<'_>) -> Instant {
        let own = self.owner_ops(g.lock, g.owner);
        let earliest_creator = own
            .iter()
            .filter(|op| matches!(op.op, Op::Acquire { .. }) && !op.failed())
            .filter(|op| match op.ok_value() {
                Some(Value::Granted { token, .. }) => *token == g.token,
                _ => true,
            })
            .map(|op| op.invoked)
            .min()
            .unwrap_or(g.op.invoked);
        let last_without_it = own
            .iter()
            .filter(|op| op.ok_at().is_some_and(|at| at < g.op.invoked))
            .filter(|op| !matches!(op.ok_value(), Some(Value::Granted { token, .. }) if *token == g.token))
            .map(|op| op.invoked)
            .max();
        last_without_it.map_or(earliest_creator, |at| at.max(earliest_creator))
    }

    fn ms(&self, at: Instant) -> String {
        format!("{:.1} ms", self.history.relative_ms(at))
    }

    fn describe(&self, g: &Grant<'_>) -> String {
        format!(
            "{} (owner {}, {}, token {}, invoked {}, granted by {})",
            g.op.id,
            g.owner,
            g.mode.as_str(),
            g.token,
            self.ms(g.op.invoked),
            self.ms(g.completed),
        )
    }
}

/// Mutual exclusion: no two owners ever hold a lock at once unless both hold it shared.
///
/// Rule 1, over acquires: for two `Ok` acquires `g1`, `g2` of one lock by different owners, with tokens
/// `t1 < t2` and at least one exclusive, it is an anomaly if `g2` completed before `lease_end(g1)`. Sound: by
/// token order `g1`'s grant was made before `g2`'s, which took effect no later than `g2`'s completion; at that
/// moment `g1`'s grant was still certainly held (see the module documentation), so both were held at once.
/// Pairs with the same token are one grant (idempotent re-acquires) and pairs of one owner are its own upgrades or
/// successive grants; both are skipped. Each pair of tokens is reported once.
///
/// Rule 2, over reads: an `Ok` read showing an exclusive holder next to any other holder.
pub fn mutual_exclusion(history: &History) -> Vec<Anomaly> {
    let ops = history.operations();
    let index = Index::new(history, &ops);
    let mut anomalies = Vec::new();
    for (lock, mut grants) in index.grants_by_lock() {
        grants.sort_by_key(|g| g.token);
        let mut reported = BTreeSet::new();
        for (i, g1) in grants.iter().enumerate() {
            let end1 = index.lease_end(g1);
            for g2 in &grants[i + 1..] {
                if g2.token == g1.token
                    || g2.owner == g1.owner
                    || (g1.mode == Mode::Shared && g2.mode == Mode::Shared)
                    || g2.completed >= end1
                    || !reported.insert((g1.token, g2.token))
                {
                    continue;
                }
                anomalies.push(Anomaly {
                    kind: "mutual_exclusion",
                    object: Some(lock.to_string()),
                    ops: vec![g1.op.id, g2.op.id],
                    description: format!(
                        "lock {lock:?}: {} was certainly held until {}, but {} was granted by then",
                        index.describe(g1),
                        index.ms(end1),
                        index.describe(g2),
                    ),
                });
            }
        }
    }
    for op in &ops {
        let (Op::Read { lock }, Some(Value::ReadValue { holders })) = (&op.op, op.ok_value())
        else {
            continue;
        };
        if holders.len() > 1 && holders.iter().any(|h| h.mode == Mode::Exclusive) {
            anomalies.push(Anomaly {
                kind: "mutual_exclusion",
                object: Some(lock.clone()),
                ops: vec![op.id],
                description: format!(
                    "lock {lock:?}: read {} (invoked {}) shows an exclusive holder among {}",
                    op.id,
                    index.ms(op.invoked),
                    describe_holders(holders),
                ),
            });
        }
    }
    anomalies
}

/// Fencing tokens: unique per grant, and increasing in real time.
///
/// Rule 1: two `Ok` acquires returning the same token must be by the same owner on the same lock (tokens are one
/// counter for the whole cluster, so this holds across locks too).
///
/// Rule 2: if `g1`'s grant certainly existed before `g2`'s grant was made, `g2`'s token is larger. `g1`'s grant
/// existed by `g1`'s completion; `g2`'s was made after `granted_after(g2)`: not before the earliest acquire of
/// its owner that could have made it (an indeterminate retry can make it long before the `Ok` one), and after
/// the last `Ok` op of its owner on the lock that showed the owner without it. (A plain "`g1` completed before
/// `g2` was invoked" would be wrong: `g2` may be an idempotent re-acquire of an older grant.) Each `g2` is reported
/// once, against the largest earlier token.
pub fn tokens_monotonic(history: &History) -> Vec<Anomaly> {
    let ops = history.operations();
    let index = Index::new(history, &ops);
    let mut anomalies = Vec::new();

    let mut first_of_token: BTreeMap<u64, &Grant<'_>> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    for g in &index.grants {
        let first = *first_of_token.entry(g.token).or_insert(g);
        if (first.lock, first.owner) != (g.lock, g.owner)
            && reported.insert((first.op.id, g.lock, g.owner))
        {
            anomalies.push(Anomaly {
                kind: "token_reused",
                object: Some(g.lock.to_string()),
                ops: vec![first.op.id, g.op.id],
                description: format!(
                    "token {} was granted on lock {:?} by {} and on lock {:?} by {}",
                    g.token,
                    first.lock,
                    index.describe(first),
                    g.lock,
                    index.describe(g),
                ),
            });
        }
    }

    let mut by_completion: Vec<&Grant<'_>> = index.grants.iter().collect();
    by_completion.sort_by_key(|g| g.completed);
    // For each prefix of `by_completion`, the position of its largest token.
    let mut largest: Vec<usize> = Vec::with_capacity(by_completion.len());
    for (i, g) in by_completion.iter().enumerate() {
        let best = match largest.last() {
            Some(&best) if by_completion[best].token >= g.token => best,
            _ => i,
        };
        largest.push(best);
    }
    for g2 in &index.grants {
        let after = index.granted_after(g2);
        let earlier = by_completion.partition_point(|g| g.completed < after);
        let Some(&best) = earlier.checked_sub(1).and_then(|last| largest.get(last)) else {
            continue;
        };
        let g1 = by_completion[best];
        if g1.token > g2.token {
            anomalies.push(Anomaly {
                kind: "token_order",
                object: Some(g2.lock.to_string()),
                ops: vec![g1.op.id, g2.op.id],
                description: format!(
                    "{} on lock {:?} existed before {}, but {} on lock {:?} was made after {} with a smaller token",
                    index.describe(g1),
                    g1.lock,
                    index.ms(after),
                    index.describe(g2),
                    g2.lock,
                    index.ms(after),
                ),
            });
        }
    }
    anomalies
}

/// Reads see the lock table as it is: no lost grants, no resurrected ones.
///
/// Rule 1: for an `Ok` read `r` and an `Ok` acquire `g` of the same lock that completed before `r` was invoked
/// and whose `lease_end(g)` is after `r` completed, `r` must list `g`'s owner with `g`'s token and mode. Sound:
/// reads are linearizable, so `r` took effect within its own interval, during which `g`'s grant was certainly
/// held. Shared grants are checked too: the argument does not depend on the mode.
///
/// Rule 2: an `Ok` read must not list owner `o` with token `t` if some `Ok` acquire gave `t` to `o` and then an
/// `Ok` release by `o` of that lock, invoked after that acquire completed, completed before the read was invoked.
/// Sound: the release ended whatever grant `o` then held, which was `t` or a later one; a token is never given
/// again.
pub fn reads_see_writes(history: &History) -> Vec<Anomaly> {
    let ops = history.operations();
    let index = Index::new(history, &ops);
    let grants_by_lock = index.grants_by_lock();
    let mut anomalies = Vec::new();
    for r in &ops {
        let (Op::Read { lock }, Some(Value::ReadValue { holders }), Some(read_done)) =
            (&r.op, r.ok_value(), r.ok_at())
        else {
            continue;
        };
        let describe_read = || {
            format!(
                "read {} (invoked {}, completed {}) showing {}",
                r.id,
                index.ms(r.invoked),
                index.ms(read_done),
                describe_holders(holders),
            )
        };
        let grants = grants_by_lock
            .get(lock.as_str())
            .map_or(&[][..], Vec::as_slice);
        for g in grants.iter().filter(|g| g.completed < r.invoked) {
            let end = index.lease_end(g);
            let listed = holders
                .iter()
                .any(|h| h.owner == g.owner && h.token == g.token && h.mode == g.mode);
            if end > read_done && !listed {
                anomalies.push(Anomaly {
                    kind: "lost_grant",
                    object: Some(lock.clone()),
                    ops: vec![g.op.id, r.id],
                    description: format!(
                        "lock {lock:?}: {} was certainly held until {}, but {} does not list it",
                        index.describe(g),
                        index.ms(end),
                        describe_read(),
                    ),
                });
            }
        }
        for holder in holders {
            let released = index
                .owner_ops(lock, &holder.owner)
                .iter()
                .find_map(|release| {
                    let (Op::Release { .. }, Some(Value::Released), Some(done)) =
                        (&release.op, release.ok_value(), release.ok_at())
                    else {
                        return None;
                    };
                    if done >= r.invoked {
                        return None;
                    }
                    grants
                        .iter()
                        .find(|g| {
                            g.owner == holder.owner
                                && g.token == holder.token
                                && g.completed < release.invoked
                        })
                        .map(|g| (g, release, done))
                });
            if let Some((g, release, done)) = released {
                anomalies.push(Anomaly {
                    kind: "resurrected_grant",
                    object: Some(lock.clone()),
                    ops: vec![g.op.id, release.id, r.id],
                    description: format!(
                        "lock {lock:?}: {} was released by {} (invoked {}, completed {}), but {} still lists it",
                        index.describe(g),
                        release.id,
                        index.ms(release.invoked),
                        index.ms(done),
                        describe_read(),
                    ),
                });
            }
        }
    }
    anomalies
}

/// The longest stretch, within any of `windows` (each `(start, end)`, typically the periods with no fault
/// active), without an `Ok` acquire completing: counted from the window's start to the first success, between
/// successes, and from the last success to the window's end. Zero when there are no windows.
pub fn max_gap_without_success(history: &History, windows: &[(Instant, Instant)]) -> Duration {
    let successes = success_times(history);
    windows
        .iter()
        .map(|&(start, end)| longest_gap(&successes, start, end).0)
        .max()
        .unwrap_or(Duration::ZERO)
}

/// One anomaly for each of `windows` in which no `Ok` acquire completed for longer than `bound` (see
/// [`max_gap_without_success`]): the service was not live while healthy.
pub fn liveness(
    history: &History,
    windows: &[(Instant, Instant)],
    bound: Duration,
) -> Vec<Anomaly> {
    let successes = success_times(history);
    let ms = |at: Instant| format!("{:.1} ms", history.relative_ms(at));
    windows
        .iter()
        .filter_map(|&(start, end)| {
            let (gap, from, to) = longest_gap(&successes, start, end);
            (gap > bound).then(|| Anomaly {
                kind: "liveness",
                object: None,
                ops: Vec::new(),
                description: format!(
                    "no acquire succeeded from {} to {} ({gap:?}, more than {bound:?}) in the healthy window {} to {}",
                    ms(from),
                    ms(to),
                    ms(start),
                    ms(end),
                ),
            })
        })
        .collect()
}

/// Completion times of every `Ok` acquire, sorted.
fn success_times(history: &History) -> Vec<Instant> {
    let mut times: Vec<Instant> = history
        .operations()
        .iter()
        .filter(|op| matches!(op.op, Op::Acquire { .. }))
        .filter_map(Operation::ok_at)
        .collect();
    times.sort();
    times
}

/// The longest gap in `[start, end]` between `start`, the sorted `successes` inside it, and `end`; with its
/// bounds.
fn longest_gap(
    successes: &[Instant],
    start: Instant,
    end: Instant,
) -> (Duration, Instant, Instant) {
    let inside = successes
        .iter()
        .copied()
        .filter(|at| (start..=end).contains(at));
    let mut best = (Duration::ZERO, start, start);
    let mut previous = start;
    for at in inside.chain(std::iter::once(end.max(start))) {
        let gap = at - previous;
        if gap > best.0 {
            best = (gap, previous, at);
        }
        previous = at;
    }
    best
}

fn describe_holders(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "no holders".to_string();
    }
    holders
        .iter()
        .map(|h| format!("{} ({}, token {})", h.owner, h.mode.as_str(), h.token))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
