// Synthetic histories fail loudly on broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::history::{OpId, Outcome};

mod sim;

const X: Mode = Mode::Exclusive;
const S: Mode = Mode::Shared;

/// How a synthetic operation ends.
#[derive(Clone, Copy)]
enum End {
    /// `Ok` at this time.
    Ok(u64),
    /// `Fail` at this time.
    Fail(u64),
    /// `Info` at this time.
    Info(u64),
    /// Never.
    Pending,
}

/// A synthetic history: times are milliseconds from its start.
struct H {
    history: History,
}

impl H {
    fn new() -> H {
        H {
            history: History::starting_at(Instant::now()),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.history.start() + Duration::from_millis(ms)
    }

    fn record(&self, op: Op, invoked: u64, end: End, value: Value) -> OpId {
        let id = self.history.invoke_at(0, op, self.at(invoked));
        let (outcome, at) = match end {
            End::Ok(at) => (Outcome::Ok(value), at),
            End::Fail(at) => (Outcome::Fail("refused".into()), at),
            End::Info(at) => (Outcome::Info("timeout".into()), at),
            End::Pending => return id,
        };
        self.history.complete_at(id, outcome, self.at(at));
        id
    }

    /// An acquire of lock `l` with a 1 s lease.
    fn acq(&self, owner: &str, mode: Mode, token: u64, invoked: u64, end: End) -> OpId {
        self.acq_on("l", owner, mode, 1_000, token, invoked, end)
    }

    #[allow(clippy::too_many_arguments)]
    fn acq_on(
        &self,
        lock: &str,
        owner: &str,
        mode: Mode,
        ttl_ms: u64,
        token: u64,
        invoked: u64,
        end: End,
    ) -> OpId {
        let op = Op::Acquire {
            lock: lock.into(),
            owner: owner.into(),
            mode,
            ttl_ms,
            wait_ms: 0,
        };
        let value = Value::Granted {
            token,
            expires_at_ms: 0,
        };
        self.record(op, invoked, end, value)
    }

    fn rel(&self, owner: &str, token: Option<u64>, invoked: u64, end: End) -> OpId {
        let op = Op::Release {
            lock: "l".into(),
            owner: owner.into(),
            token,
        };
        self.record(op, invoked, end, Value::Released)
    }

    fn read(&self, holders: &[(&str, u64, Mode)], invoked: u64, end: End) -> OpId {
        let holders = holders
            .iter()
            .map(|(owner, token, mode)| Holder {
                owner: owner.to_string(),
                token: *token,
                mode: *mode,
            })
            .collect();
        self.record(
            Op::Read { lock: "l".into() },
            invoked,
            end,
            Value::ReadValue { holders },
        )
    }
}

fn kinds(anomalies: &[Anomaly]) -> Vec<(&'static str, Vec<OpId>)> {
    anomalies.iter().map(|a| (a.kind, a.ops.clone())).collect()
}

// ----- mutual exclusion -----

#[test]
fn sequential_grants_with_a_release_between_are_fine() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.rel("a", Some(1), 20, End::Ok(30));
    h.acq("b", X, 2, 25, End::Ok(40));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
}

#[test]
fn a_grant_during_a_live_lease_is_an_anomaly() {
    let h = H::new();
    let a = h.acq("a", X, 1, 0, End::Ok(10));
    let b = h.acq("b", X, 2, 20, End::Ok(30));
    let found = mutual_exclusion(&h.history);
    assert_eq!(kinds(&found), vec![("mutual_exclusion", vec![a, b])]);
    let text = found[0].to_string();
    assert!(text.contains("op 0") && text.contains("op 1"), "{text}");
    assert!(
        text.contains("owner a") && text.contains("token 2"),
        "{text}"
    );
    assert!(text.contains("1000.0 ms"), "{text}");
}

#[test]
fn the_lease_ends_ttl_after_the_invocation() {
    let h = H::new();
    h.acq_on("l", "a", X, 100, 1, 0, End::Ok(10));
    h.acq("b", X, 2, 50, End::Ok(100));
    assert_eq!(mutual_exclusion(&h.history), vec![]);

    let h = H::new();
    h.acq_on("l", "a", X, 100, 1, 0, End::Ok(10));
    h.acq("b", X, 2, 50, End::Ok(99));
    assert_eq!(mutual_exclusion(&h.history).len(), 1);
}

#[test]
fn a_grant_seen_before_the_earlier_grant_completes_still_counts() {
    // Token order says a's grant came first; b learned of its own while a's lease surely ran.
    let h = H::new();
    let a = h.acq("a", X, 1, 0, End::Ok(100));
    let b = h.acq("b", X, 2, 10, End::Ok(50));
    assert_eq!(
        kinds(&mutual_exclusion(&h.history)),
        vec![("mutual_exclusion", vec![a, b])]
    );
}

#[test]
fn a_slow_release_ends_the_lease_at_its_invocation() {
    for end in [End::Ok(2_000), End::Info(2_000), End::Pending] {
        let h = H::new();
        h.acq("a", X, 1, 0, End::Ok(10));
        h.rel("a", None, 50, end);
        h.acq("b", X, 2, 20, End::Ok(60));
        assert_eq!(mutual_exclusion(&h.history), vec![]);
    }
}

#[test]
fn an_indeterminate_release_from_before_the_acquire_empties_its_interval() {
    // The old release may be delivered after the grant, releasing it at once.
    let h = H::new();
    h.rel("a", None, 0, End::Info(5));
    h.acq("a", X, 1, 10, End::Ok(20));
    h.acq("b", X, 2, 30, End::Ok(40));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
}

#[test]
fn failed_or_mismatched_releases_do_not_end_the_lease() {
    let h = H::new();
    let a = h.acq("a", X, 1, 0, End::Ok(10));
    h.rel("a", None, 20, End::Fail(25));
    h.rel("a", Some(99), 26, End::Info(28));
    let b = h.acq("b", X, 2, 30, End::Ok(40));
    assert_eq!(
        kinds(&mutual_exclusion(&h.history)),
        vec![("mutual_exclusion", vec![a, b])]
    );
}

#[test]
fn an_earlier_finished_release_does_not_shorten_a_later_grant() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(5));
    h.rel("a", Some(1), 6, End::Ok(8));
    let a2 = h.acq("a", X, 3, 10, End::Ok(15));
    let b = h.acq("b", X, 4, 20, End::Ok(25));
    assert_eq!(
        kinds(&mutual_exclusion(&h.history)),
        vec![("mutual_exclusion", vec![a2, b])]
    );
}

#[test]
fn indeterminate_acquires_are_never_evidence() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Info(10));
    h.acq("c", X, 2, 1, End::Pending);
    h.acq("b", X, 3, 20, End::Ok(30));
    h.acq("d", X, 4, 21, End::Fail(31));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
}

#[test]
fn shared_holders_coexist_but_not_with_an_exclusive_one() {
    let h = H::new();
    h.acq("a", S, 1, 0, End::Ok(10));
    h.acq("b", S, 2, 20, End::Ok(30));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
    let c = h.acq("c", X, 3, 40, End::Ok(50));
    let found = kinds(&mutual_exclusion(&h.history));
    assert_eq!(
        found,
        vec![
            ("mutual_exclusion", vec![OpId(0), c]),
            ("mutual_exclusion", vec![OpId(1), c])
        ]
    );
}

#[test]
fn idempotent_reacquires_are_one_grant_and_reported_once() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.acq("a", X, 1, 20, End::Ok(30));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
    h.acq("b", X, 2, 40, End::Ok(50));
    assert_eq!(mutual_exclusion(&h.history).len(), 1);
}

#[test]
fn a_downgrade_lets_shared_holders_in() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.acq("a", S, 1, 20, End::Ok(30));
    h.acq("b", S, 2, 40, End::Ok(50));
    assert_eq!(mutual_exclusion(&h.history), vec![]);

    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.acq("b", S, 2, 40, End::Ok(50));
    assert_eq!(mutual_exclusion(&h.history).len(), 1);
}

#[test]
fn an_owner_does_not_exclude_itself() {
    // An upgrade: a new token for the same owner while its shared grant runs.
    let h = H::new();
    h.acq("a", S, 1, 0, End::Ok(10));
    h.acq("a", X, 2, 20, End::Ok(30));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
}

#[test]
fn locks_are_independent() {
    let h = H::new();
    h.acq_on("l", "a", X, 1_000, 1, 0, End::Ok(10));
    h.acq_on("m", "b", X, 1_000, 2, 20, End::Ok(30));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
}

#[test]
fn a_read_showing_an_exclusive_holder_among_others_is_an_anomaly() {
    let h = H::new();
    h.read(&[("a", 1, S), ("b", 2, S)], 0, End::Ok(10));
    h.read(&[("a", 1, X)], 0, End::Ok(10));
    assert_eq!(mutual_exclusion(&h.history), vec![]);
    let r = h.read(&[("a", 1, X), ("b", 2, X)], 20, End::Ok(30));
    assert_eq!(
        kinds(&mutual_exclusion(&h.history)),
        vec![("mutual_exclusion", vec![r])]
    );
}

// ----- tokens -----

#[test]
fn increasing_tokens_are_fine() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.rel("a", None, 20, End::Ok(30));
    h.acq("b", X, 5, 40, End::Ok(50));
    h.acq_on("m", "c", X, 1_000, 7, 60, End::Ok(70));
    assert_eq!(tokens_monotonic(&h.history), vec![]);
}

#[test]
fn a_smaller_token_after_a_larger_one_is_an_anomaly() {
    let h = H::new();
    let a = h.acq("a", X, 5, 0, End::Ok(10));
    h.rel("a", None, 20, End::Ok(30));
    let b = h.acq("b", X, 3, 40, End::Ok(50));
    assert_eq!(
        kinds(&tokens_monotonic(&h.history)),
        vec![("token_order", vec![a, b])]
    );
}

#[test]
fn token_order_holds_across_locks() {
    let h = H::new();
    let a = h.acq_on("l", "a", X, 1_000, 5, 0, End::Ok(10));
    let b = h.acq_on("m", "b", X, 1_000, 3, 40, End::Ok(50));
    assert_eq!(
        kinds(&tokens_monotonic(&h.history)),
        vec![("token_order", vec![a, b])]
    );
}

#[test]
fn concurrent_grants_may_come_in_any_order() {
    let h = H::new();
    h.acq("a", S, 5, 0, End::Ok(30));
    h.acq("b", S, 3, 10, End::Ok(20));
    assert_eq!(tokens_monotonic(&h.history), vec![]);
}

#[test]
fn a_retry_may_return_a_grant_made_by_an_earlier_indeterminate_acquire() {
    let h = H::new();
    h.acq("b", S, 3, 0, End::Info(5));
    h.acq("a", S, 5, 10, End::Ok(20));
    h.acq("b", S, 3, 30, End::Ok(40));
    assert_eq!(tokens_monotonic(&h.history), vec![]);

    // Without the earlier attempt, b's grant was made after a's: its token must be larger.
    let h = H::new();
    h.acq("a", S, 5, 10, End::Ok(20));
    h.acq("b", S, 3, 30, End::Ok(40));
    assert_eq!(tokens_monotonic(&h.history).len(), 1);
}

#[test]
fn an_ok_release_bounds_when_the_next_grant_was_made() {
    // b's indeterminate acquire may have been granted any time; but b released after a's grant completed, so
    // the grant b holds later was made after that release.
    let h = H::new();
    let a = h.acq("a", S, 5, 0, End::Ok(10));
    h.acq("b", S, 2, 1, End::Info(3));
    h.rel("b", None, 20, End::Ok(25));
    let b = h.acq("b", S, 3, 30, End::Ok(40));
    assert_eq!(
        kinds(&tokens_monotonic(&h.history)),
        vec![("token_order", vec![a, b])]
    );

    let h = H::new();
    h.acq("a", S, 5, 0, End::Ok(10));
    h.acq("b", S, 2, 1, End::Info(3));
    h.acq("b", S, 3, 30, End::Ok(40));
    assert_eq!(tokens_monotonic(&h.history), vec![]);
}

#[test]
fn a_token_given_to_two_grants_is_an_anomaly() {
    let h = H::new();
    h.acq("a", S, 4, 0, End::Ok(10));
    h.acq("a", S, 4, 20, End::Ok(30));
    assert_eq!(tokens_monotonic(&h.history), vec![]);
    let b = h.acq("b", S, 4, 40, End::Ok(50));
    let c = h.acq_on("m", "a", S, 1_000, 4, 60, End::Ok(70));
    assert_eq!(
        kinds(&tokens_monotonic(&h.history)),
        vec![
            ("token_reused", vec![OpId(0), b]),
            ("token_reused", vec![OpId(0), c])
        ]
    );
}

// ----- reads -----

#[test]
fn a_read_during_a_lease_must_list_the_holder() {
    let h = H::new();
    h.acq("a", X, 1, 0, End::Ok(10));
    h.read(&[("a", 1, X)], 20, End::Ok(30));
    assert_eq!(reads_see_writes(&h.history), vec![]);

    for shown in [
        vec![],
        vec![("a", 2, X)],
        vec![("a", 1, S)],
        vec![("b", 1, X)],
    ] {
        let h = H::new();
        let a = h.acq("a", X, 1, 0, End::Ok(10));
        let r = h.read(&shown, 20, End::Ok(30));
        let found = reads_see_writes(&h.history);
        assert_eq!(kinds(&found), vec![("lost_grant", vec![a, r])], "{shown:?}");
    }
}

#[test]
fn shared_holders_must_be_listed_too() {
    let h = H::new();
    h.acq("a", S, 1, 0, End::Ok(10));
    h.acq("b", S, 2, 0, End::Ok(10));
    h.read(&[("a", 1, S), ("b", 2, S)], 20, End::Ok(30));
    assert_eq!(reads_see_writes(&h.history), vec![]);
    h.read(&[("b", 2, S)], 20, End::Ok(30));
    assert_eq!(reads_see_writes(&h.history).len(), 1);
}

#[test]
fn reads_not_surely_inside_the_lease_may_miss_the_holder() {
    let h = H::new();
    // Concurrent with the acquire.
    h.acq_on("l", "a", X, 100, 1, 0, End::Ok(30));
    h.read(&[], 10, End::Ok(20));
    // Ending after the lease may have run out.
    h.read(&[], 50, End::Ok(100));
    // Failed and indeterminate reads say nothing.
    h.read(&[], 40, End::Info(45));
    h.read(&[], 40, End::Fail(45));
    assert_eq!(reads_see_writes(&h.history), vec![]);
}

#[test]
fn a_release_in_flight_excuses_a_read_without_the_holder() {
    for end in [End::Ok(100), End::Info(100), End::Pending] {
        let h = H::new();
        h.acq("a", X, 1, 0, End::Ok(10));
        h.rel("a", Some(1), 15, end);
        h.read(&[], 20, End::Ok(30));
        assert_eq!(reads_see_writes(&h.history), vec![]);
    }
}

#[test]
fn a_read_must_not_list_a_released_grant() {
    let h = H::new();
    let a = h.acq("a", X, 1, 0, End::Ok(10));
    let rel = h.rel("a", None, 20, End::Ok(30));
    let r = h.read(&[("a", 1, X)], 40, End::Ok(50));
    assert_eq!(
        kinds(&reads_see_writes(&h.history)),
        vec![("resurrected_grant", vec![a, rel, r])]
    );
}

#[test]
fn a_release_that_may_precede_the_grant_proves_nothing() {
    let h = H::new();
    // Invoked before the acquire completed: it may have been applied first (and failed).
    h.acq("a", X, 1, 0, End::Ok(10));
    h.rel("a", None, 5, End::Ok(30));
    h.read(&[("a", 1, X)], 40, End::Ok(50));
    // Indeterminate or failed releases prove nothing either.
    h.acq("b", S, 2, 100, End::Ok(110));
    h.rel("b", None, 120, End::Info(130));
    h.read(&[("b", 2, S)], 140, End::Ok(150));
    assert_eq!(
        reads_see_writes(&h.history)
            .iter()
            .filter(|a| a.kind == "resurrected_grant")
            .count(),
        0
    );
}

// ----- liveness -----

#[test]
fn gaps_are_measured_inside_windows() {
    let h = H::new();
    for at in [100, 300, 350] {
        h.acq("a", X, at, at - 1, End::Ok(at));
    }
    // Failures and other ops do not count.
    h.acq("b", X, 0, 500, End::Fail(600));
    h.read(&[], 500, End::Ok(600));
    let w = |from: u64, to: u64| (h.at(from), h.at(to));
    let gap = |windows: &[(Instant, Instant)]| max_gap_without_success(&h.history, windows);
    assert_eq!(gap(&[]), Duration::ZERO);
    assert_eq!(gap(&[w(0, 400)]), Duration::from_millis(200));
    assert_eq!(gap(&[w(0, 1_000)]), Duration::from_millis(650));
    assert_eq!(
        gap(&[w(0, 400), w(2_000, 2_100)]),
        Duration::from_millis(200)
    );
    assert_eq!(gap(&[w(2_000, 2_500)]), Duration::from_millis(500));

    assert_eq!(
        liveness(&h.history, &[w(0, 400)], Duration::from_millis(300)),
        vec![]
    );
    let found = liveness(
        &h.history,
        &[w(0, 400), w(0, 1_000)],
        Duration::from_millis(300),
    );
    assert_eq!(found.len(), 1);
    assert!(
        found[0].description.contains("350.0 ms to 1000.0 ms"),
        "{}",
        found[0]
    );
}
