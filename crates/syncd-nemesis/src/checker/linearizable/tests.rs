// Synthetic histories fail loudly on broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use super::*;
use crate::history::{Holder, OpId};

const X: Mode = Mode::Exclusive;
const S: Mode = Mode::Shared;

/// A synthetic history; times are milliseconds from its start.
struct H {
    history: History,
    start: Instant,
}

impl H {
    fn new() -> H {
        let start = Instant::now();
        H {
            history: History::starting_at(start),
            start,
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn op(&self, op: Op, from: u64, to: Option<u64>, outcome: Outcome) -> OpId {
        let id = self.history.invoke_at(0, op, self.at(from));
        if let Some(to) = to {
            self.history.complete_at(id, outcome, self.at(to));
        }
        id
    }

    fn acquire(&self, owner: &str, mode: Mode, from: u64, to: u64, granted: bool) {
        let outcome = if granted {
            Outcome::Ok(Value::Granted {
                token: 1,
                expires_at_ms: 0,
            })
        } else {
            Outcome::refused("lock_conflict", "held")
        };
        self.op(acquire_op(owner, mode), from, Some(to), outcome);
    }

    fn acquire_unknown(&self, owner: &str, mode: Mode, from: u64) {
        self.op(
            acquire_op(owner, mode),
            from,
            Some(from + 1),
            Outcome::Info("timeout".into()),
        );
    }

    fn release(&self, owner: &str, from: u64, to: u64, released: bool) {
        let outcome = if released {
            Outcome::Ok(Value::Released)
        } else {
            Outcome::refused("not_held", "not held")
        };
        let op = Op::Release {
            lock: "l".into(),
            owner: owner.into(),
            token: None,
        };
        self.op(op, from, Some(to), outcome);
    }

    fn read(&self, holders: &[(&str, Mode)], from: u64, to: u64) {
        let value = Value::ReadValue {
            holders: holders
                .iter()
                .map(|(owner, mode)| Holder {
                    owner: (*owner).into(),
                    token: 1,
                    mode: *mode,
                })
                .collect(),
        };
        self.op(
            Op::Read { lock: "l".into() },
            from,
            Some(to),
            Outcome::Ok(value),
        );
    }

    fn check(&self) -> Report {
        check(&self.history, 100_000)
    }
}

fn acquire_op(owner: &str, mode: Mode) -> Op {
    Op::Acquire {
        lock: "l".into(),
        owner: owner.into(),
        mode,
        ttl_ms: 600_000,
        wait_ms: 0,
    }
}

#[test]
fn a_sequential_history_is_linearizable() {
    let h = H::new();
    h.acquire("a", X, 0, 10, true);
    h.acquire("b", X, 20, 30, false);
    h.read(&[("a", X)], 40, 50);
    h.release("a", 60, 70, true);
    h.release("a", 80, 90, false);
    h.acquire("b", S, 100, 110, true);
    h.acquire("c", S, 120, 130, true);
    h.read(&[("b", S), ("c", S)], 140, 150);
    let report = h.check();
    assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
    assert!(report.undecided.is_empty());
    assert_eq!(report.operations, 8);
}

#[test]
fn two_exclusive_grants_at_once_are_not_linearizable() {
    let h = H::new();
    h.acquire("a", X, 0, 50, true);
    h.acquire("b", X, 10, 60, true);
    let report = h.check();
    assert_eq!(report.anomalies.len(), 1, "{report:?}");
    assert_eq!(report.anomalies[0].kind, "not_linearizable");
}

#[test]
fn a_read_after_a_completed_release_must_not_show_the_holder() {
    let h = H::new();
    h.acquire("a", X, 0, 10, true);
    h.release("a", 20, 30, true);
    h.read(&[("a", X)], 40, 50);
    assert_eq!(h.check().anomalies.len(), 1);
}

#[test]
fn a_read_concurrent_with_a_release_may_show_either() {
    for holders in [&[("a", X)][..], &[][..]] {
        let h = H::new();
        h.acquire("a", X, 0, 10, true);
        h.release("a", 20, 60, true);
        h.read(holders, 30, 40);
        assert!(h.check().anomalies.is_empty());
    }
}

#[test]
fn an_unknown_acquire_may_have_taken_effect_or_not() {
    for holders in [&[("a", X)][..], &[][..]] {
        let h = H::new();
        h.acquire_unknown("a", X, 0);
        h.read(holders, 100, 110);
        assert!(h.check().anomalies.is_empty());
    }
    // But once a read saw it held, a later read cannot see it free without a release.
    let h = H::new();
    h.acquire_unknown("a", X, 0);
    h.read(&[("a", X)], 100, 110);
    h.read(&[], 120, 130);
    assert_eq!(h.check().anomalies.len(), 1);
}

#[test]
fn a_conflict_on_a_lock_that_was_free_throughout_is_not_linearizable() {
    let h = H::new();
    h.read(&[], 0, 10);
    h.acquire("b", X, 20, 30, false);
    h.read(&[], 40, 50);
    assert_eq!(h.check().anomalies.len(), 1);
}

#[test]
fn not_held_after_a_grant_without_a_release_is_not_linearizable() {
    let h = H::new();
    h.acquire("a", X, 0, 10, true);
    h.release("a", 20, 30, false);
    assert_eq!(h.check().anomalies.len(), 1);
}

#[test]
fn shared_holders_upgrades_and_downgrades_follow_the_table() {
    let h = H::new();
    h.acquire("a", S, 0, 10, true);
    h.acquire("b", S, 20, 30, true);
    // An upgrade next to another holder is refused without waiting.
    h.acquire("a", X, 40, 50, false);
    h.release("b", 60, 70, true);
    // Alone now: the upgrade is granted, and a downgrade is always granted.
    h.acquire("a", X, 80, 90, true);
    h.read(&[("a", X)], 100, 110);
    h.acquire("a", S, 120, 130, true);
    h.acquire("c", S, 140, 150, true);
    h.read(&[("a", S), ("c", S)], 160, 170);
    let report = h.check();
    assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
}

#[test]
fn failed_operations_are_left_out_and_waiting_acquires_are_outside_the_model() {
    let h = H::new();
    h.op(
        acquire_op("a", X),
        0,
        Some(10),
        Outcome::Fail("connection refused".into()),
    );
    let waiting = Op::Acquire {
        lock: "l".into(),
        owner: "w".into(),
        mode: X,
        ttl_ms: 1_000,
        wait_ms: 500,
    };
    h.op(
        waiting,
        0,
        Some(10),
        Outcome::Ok(Value::Granted {
            token: 9,
            expires_at_ms: 0,
        }),
    );
    h.read(&[], 20, 30);
    let report = h.check();
    assert!(report.anomalies.is_empty());
    assert_eq!(report.operations, 1);
}

#[test]
fn a_search_that_runs_out_is_undecided_not_an_anomaly() {
    let h = H::new();
    for i in 0..30 {
        h.acquire_unknown(&format!("o{i}"), S, i);
    }
    h.read(&[("nobody", X)], 100, 110);
    let report = check(&h.history, 50);
    assert!(report.anomalies.is_empty());
    assert_eq!(report.undecided, vec!["l".to_owned()]);
}
