//! Unit tests of the lock table, one behaviour of the design's "Locks" section per test.

use crate::{Command, LockMode, LockTable, Outcome};

const SH: LockMode = LockMode::Shared;
const EX: LockMode = LockMode::Exclusive;

fn acquire(name: &str, owner: &str, mode: LockMode, ttl_ms: u64, wait_ms: u64) -> Command {
    Command::Acquire {
        name: name.to_owned(),
        owner: owner.to_owned(),
        mode,
        ttl_ms,
        wait_ms,
        request: 0,
    }
}

fn release(name: &str, owner: &str, token: Option<u64>) -> Command {
    Command::Release {
        name: name.to_owned(),
        owner: owner.to_owned(),
        token,
    }
}

fn renew(name: &str, owner: &str, ttl_ms: u64, token: Option<u64>) -> Command {
    Command::Renew {
        name: name.to_owned(),
        owner: owner.to_owned(),
        ttl_ms,
        token,
    }
}

fn cancel(name: &str, owner: &str) -> Command {
    Command::CancelWait {
        name: name.to_owned(),
        owner: owner.to_owned(),
        request: 0,
    }
}

/// Applies and expects a grant; returns its token.
fn granted(t: &mut LockTable, now: u64, cmd: &Command) -> u64 {
    match t.apply(now, cmd) {
        Outcome::Granted { token, .. } => token,
        other => panic!("{cmd:?} at {now}: expected Granted, got {other:?}"),
    }
}

/// Applies and expects the request to be queued.
fn waiting(t: &mut LockTable, now: u64, cmd: &Command) {
    match t.apply(now, cmd) {
        Outcome::Waiting { .. } => {}
        other => panic!("{cmd:?} at {now}: expected Waiting, got {other:?}"),
    }
}

fn holders(t: &LockTable, name: &str) -> Vec<String> {
    t.lock_info(name)
        .map(|i| i.holders.into_iter().map(|h| h.owner).collect())
        .unwrap_or_default()
}

fn waiters(t: &LockTable, name: &str) -> Vec<(String, LockMode)> {
    t.lock_info(name)
        .map(|i| i.waiters.into_iter().map(|w| (w.owner, w.mode)).collect())
        .unwrap_or_default()
}

fn w(owner: &str, mode: LockMode) -> (String, LockMode) {
    (owner.to_owned(), mode)
}

#[test]
fn shared_holders_coexist() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    let b = granted(&mut t, 1, &acquire("l", "b", SH, 100, 0));
    let c = granted(&mut t, 2, &acquire("l", "c", SH, 100, 0));
    assert!(a < b && b < c);
    assert_eq!(holders(&t, "l"), ["a", "b", "c"]);
    let info = t.lock_info("l").unwrap();
    assert_eq!(info.mode, Some(SH));
    assert!(info.waiters.is_empty());
}

#[test]
fn exclusive_excludes() {
    let mut t = LockTable::new();
    let tok = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(
        t.apply(1, &acquire("l", "b", EX, 100, 0)),
        Outcome::Conflict
    );
    assert_eq!(
        t.apply(1, &acquire("l", "b", SH, 100, 0)),
        Outcome::Conflict
    );
    assert_eq!(t.lock_info("l").unwrap().mode, Some(EX));
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(t.holder("l", "a").unwrap().token, tok);

    // And a shared hold excludes an exclusive request.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    assert_eq!(
        t.apply(1, &acquire("l", "b", EX, 100, 0)),
        Outcome::Conflict
    );
}

#[test]
fn wait_zero_conflict_changes_nothing() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    let before = t.state().clone();
    assert_eq!(
        t.apply(0, &acquire("l", "b", EX, 100, 0)),
        Outcome::Conflict
    );
    assert_eq!(t.state(), &before);
    assert!(t.waiter("l", "b").is_none());
}

#[test]
fn waiters_are_granted_on_release_in_fifo_order() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(
        t.apply(1, &acquire("l", "b", EX, 50, 1000)),
        Outcome::Waiting { deadline_ms: 1001 }
    );
    waiting(&mut t, 2, &acquire("l", "c", EX, 50, 1000));
    waiting(&mut t, 3, &acquire("l", "d", EX, 50, 1000));
    assert_eq!(waiters(&t, "l"), [w("b", EX), w("c", EX), w("d", EX)]);

    assert_eq!(t.apply(10, &release("l", "a", Some(a))), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["b"]);
    let b = t.holder("l", "b").unwrap().clone();
    assert!(b.token > a);
    // The lease starts at the grant, not at the request.
    assert_eq!(b.expires_at_ms, 60);
    assert_eq!(waiters(&t, "l"), [w("c", EX), w("d", EX)]);
    assert!(t.waiter("l", "b").is_none());

    assert_eq!(t.apply(20, &release("l", "b", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["c"]);
    assert!(t.holder("l", "c").unwrap().token > b.token);
    assert_eq!(t.apply(30, &release("l", "c", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["d"]);
    assert!(waiters(&t, "l").is_empty());
}

#[test]
fn shared_request_queues_behind_waiting_exclusive() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    waiting(&mut t, 1, &acquire("l", "x", EX, 100, 1000));
    // Compatible with the holder, but an exclusive request waits: no overtaking.
    assert_eq!(
        t.apply(2, &acquire("l", "b", SH, 100, 0)),
        Outcome::Conflict
    );
    waiting(&mut t, 3, &acquire("l", "b", SH, 100, 1000));
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(waiters(&t, "l"), [w("x", EX), w("b", SH)]);

    // The writer goes first, then the reader.
    assert_eq!(t.apply(4, &release("l", "a", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["x"]);
    assert_eq!(waiters(&t, "l"), [w("b", SH)]);
    assert_eq!(t.apply(5, &release("l", "x", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["b"]);
}

#[test]
fn consecutive_shared_waiters_are_granted_together() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 1, &acquire("l", "b", SH, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "c", SH, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "d", EX, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "e", SH, 100, 1000));

    assert_eq!(t.apply(2, &release("l", "a", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["b", "c"]);
    assert_eq!(t.lock_info("l").unwrap().mode, Some(SH));
    let b = t.holder("l", "b").unwrap().token;
    let c = t.holder("l", "c").unwrap().token;
    // Granted in queue order, each with its own token.
    assert!(a < b && b < c);
    assert_eq!(t.last_token(), c);
    // `e` is compatible with the holders but stays behind `d`.
    assert_eq!(waiters(&t, "l"), [w("d", EX), w("e", SH)]);
}

#[test]
fn reacquire_is_idempotent_and_extends_the_lease() {
    let mut t = LockTable::new();
    assert_eq!(
        t.apply(0, &acquire("l", "a", EX, 100, 0)),
        Outcome::Granted {
            mode: EX,
            token: 1,
            expires_at_ms: 100
        }
    );
    assert_eq!(
        t.apply(50, &acquire("l", "a", EX, 100, 0)),
        Outcome::Granted {
            mode: EX,
            token: 1,
            expires_at_ms: 150
        }
    );
    assert_eq!(t.last_token(), 1);
    assert_eq!(t.holder("l", "a").unwrap().expires_at_ms, 150);
    // The old lease end no longer applies.
    t.apply(120, &Command::Tick);
    assert_eq!(holders(&t, "l"), ["a"]);
    t.apply(150, &Command::Tick);
    assert!(t.lock_info("l").is_none());

    // Same for shared.
    let mut t = LockTable::new();
    let tok = granted(&mut t, 0, &acquire("l", "a", SH, 10, 0));
    granted(&mut t, 0, &acquire("l", "b", SH, 10, 0));
    assert_eq!(
        t.apply(5, &acquire("l", "a", SH, 10, 0)),
        Outcome::Granted {
            mode: SH,
            token: tok,
            expires_at_ms: 15
        }
    );
}

#[test]
fn downgrade_lets_shared_waiters_in() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 1, &acquire("l", "b", SH, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "c", SH, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "d", EX, 100, 1000));

    match t.apply(2, &acquire("l", "a", SH, 100, 0)) {
        Outcome::Granted { mode, token, .. } => {
            assert_eq!(mode, SH);
            // The hold goes on, weaker: no new grant.
            assert_eq!(token, a);
        }
        other => panic!("downgrade: {other:?}"),
    }
    assert_eq!(holders(&t, "l"), ["a", "b", "c"]);
    assert_eq!(t.holder("l", "a").unwrap().mode, SH);
    assert_eq!(t.lock_info("l").unwrap().mode, Some(SH));
    assert_eq!(waiters(&t, "l"), [w("d", EX)]);
}

#[test]
fn upgrade_by_sole_holder_is_immediate_with_a_new_token() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    // Someone else waiting does not stop it: the sole holder goes first anyway.
    waiting(&mut t, 1, &acquire("l", "x", EX, 100, 1000));
    match t.apply(2, &acquire("l", "a", EX, 100, 0)) {
        Outcome::Granted {
            mode,
            token,
            expires_at_ms,
        } => {
            assert_eq!(mode, EX);
            assert!(token > a);
            assert_eq!(token, t.last_token());
            assert_eq!(expires_at_ms, 102);
        }
        other => panic!("upgrade: {other:?}"),
    }
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(t.holder("l", "a").unwrap().mode, EX);
    assert_eq!(waiters(&t, "l"), [w("x", EX)]);
}

#[test]
fn upgrade_with_other_holders_queues_at_the_front() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    granted(&mut t, 0, &acquire("l", "b", SH, 100, 0));
    waiting(&mut t, 1, &acquire("l", "x", EX, 100, 1000));
    waiting(&mut t, 1, &acquire("l", "y", SH, 100, 1000));

    assert_eq!(
        t.apply(2, &acquire("l", "a", EX, 100, 0)),
        Outcome::Conflict
    );
    waiting(&mut t, 3, &acquire("l", "a", EX, 100, 1000));
    assert_eq!(waiters(&t, "l"), [w("a", EX), w("x", EX), w("y", SH)]);
    // Still holds its shared lock meanwhile, and re-asking for it is idempotent.
    assert_eq!(t.holder("l", "a").unwrap().mode, SH);
    assert_eq!(
        t.apply(4, &acquire("l", "a", SH, 100, 0)),
        Outcome::Granted {
            mode: SH,
            token: a,
            expires_at_ms: 104
        }
    );

    let before = t.last_token();
    assert_eq!(t.apply(5, &release("l", "b", None)), Outcome::Released);
    let hold = t.holder("l", "a").unwrap();
    assert_eq!(hold.mode, EX);
    assert!(hold.token > before);
    assert_eq!(hold.expires_at_ms, 105);
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(waiters(&t, "l"), [w("x", EX), w("y", SH)]);
}

#[test]
fn two_shared_holders_upgrading_deadlock() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    granted(&mut t, 0, &acquire("l", "b", SH, 100, 0));
    waiting(&mut t, 1, &acquire("l", "a", EX, 100, 1000));
    let before = t.state().clone();
    assert_eq!(
        t.apply(1, &acquire("l", "b", EX, 100, 1000)),
        Outcome::Deadlock
    );
    assert_eq!(t.state(), &before);
    assert_eq!(waiters(&t, "l"), [w("a", EX)]);
    assert_eq!(t.holder("l", "b").unwrap().mode, SH);

    // The victim gives up its shared hold and the other upgrade goes through.
    assert_eq!(t.apply(2, &release("l", "b", None)), Outcome::Released);
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(t.holder("l", "a").unwrap().mode, EX);
}

#[test]
fn lease_expiry_on_tick_grants_the_waiter() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 10, &acquire("l", "b", EX, 30, 1000));
    assert_eq!(t.next_deadline(), Some(100));

    assert_eq!(t.apply(99, &Command::Tick), Outcome::Ticked);
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(t.apply(100, &Command::Tick), Outcome::Ticked);
    assert_eq!(holders(&t, "l"), ["b"]);
    assert_eq!(t.holder("l", "b").unwrap().expires_at_ms, 130);
    assert_eq!(t.clock_ms(), 100);
    // The old holder can no longer act on it.
    assert_eq!(t.apply(101, &release("l", "a", None)), Outcome::NotHeld);
    assert_eq!(t.apply(101, &renew("l", "a", 100, None)), Outcome::NotHeld);
}

#[test]
fn lease_expiry_on_any_later_command() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 10, &acquire("l", "b", EX, 30, 1000));
    // A command on another lock, stamped after the lease end, expires it first.
    granted(&mut t, 150, &acquire("other", "c", EX, 10, 0));
    assert_eq!(holders(&t, "l"), ["b"]);
    assert_eq!(t.holder("l", "b").unwrap().expires_at_ms, 180);

    // A lapsed lease without waiters frees the lock for anyone, with a fresh token.
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    let b = granted(&mut t, 100, &acquire("l", "b", EX, 100, 0));
    assert!(b > a);
}

#[test]
fn wait_deadline_expiry_removes_the_waiter() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 1000, 0));
    assert_eq!(
        t.apply(0, &acquire("l", "x", EX, 100, 50)),
        Outcome::Waiting { deadline_ms: 50 }
    );
    waiting(&mut t, 0, &acquire("l", "y", SH, 100, 500));
    t.apply(49, &Command::Tick);
    assert_eq!(waiters(&t, "l"), [w("x", EX), w("y", SH)]);
    t.apply(50, &Command::Tick);
    assert!(t.waiter("l", "x").is_none());
    // `y` was only held back by `x`.
    assert_eq!(holders(&t, "l"), ["a", "y"]);
    assert!(waiters(&t, "l").is_empty());
    // The lapsed waiter is no longer waiting.
    assert_eq!(
        t.apply(51, &cancel("l", "x")),
        Outcome::WaitCancelled { removed: false }
    );
}

#[test]
fn renewing_a_wait_keeps_the_later_deadline() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 1000, 0));
    waiting(&mut t, 0, &acquire("l", "b", EX, 100, 50));
    assert_eq!(
        t.apply(40, &acquire("l", "b", EX, 100, 60)),
        Outcome::Waiting { deadline_ms: 100 }
    );
    // Asking again without waiting does not drop the queued request.
    assert_eq!(
        t.apply(41, &acquire("l", "b", EX, 100, 0)),
        Outcome::Conflict
    );
    // Asking in the other mode while queued is refused.
    assert_eq!(
        t.apply(42, &acquire("l", "b", SH, 100, 100)),
        Outcome::Conflict
    );
    t.apply(99, &Command::Tick);
    assert_eq!(waiters(&t, "l"), [w("b", EX)]);
    t.apply(100, &Command::Tick);
    assert!(waiters(&t, "l").is_empty());
}

#[test]
fn clock_never_goes_backwards() {
    let mut t = LockTable::new();
    t.apply(100, &Command::Tick);
    assert_eq!(t.clock_ms(), 100);
    assert_eq!(
        t.apply(50, &acquire("l", "a", EX, 10, 0)),
        Outcome::Granted {
            mode: EX,
            token: 1,
            expires_at_ms: 110
        }
    );
    assert_eq!(t.clock_ms(), 100);
    assert_eq!(
        t.apply(20, &renew("l", "a", 30, None)),
        Outcome::Renewed { expires_at_ms: 130 }
    );
    assert_eq!(
        t.apply(0, &acquire("l", "b", EX, 10, 5)),
        Outcome::Waiting { deadline_ms: 105 }
    );
    // A late stamp does not bring back what an earlier one expired.
    t.apply(105, &Command::Tick);
    t.apply(104, &Command::Tick);
    assert!(t.waiter("l", "b").is_none());
    assert_eq!(t.clock_ms(), 105);
}

#[test]
fn release_checks_holder_and_token() {
    let mut t = LockTable::new();
    assert_eq!(t.apply(0, &release("l", "a", None)), Outcome::NotHeld);
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 0, &acquire("l", "b", EX, 100, 1000));
    assert_eq!(
        t.apply(1, &release("l", "a", Some(a + 1))),
        Outcome::StaleToken
    );
    assert_eq!(t.apply(1, &release("l", "a", Some(0))), Outcome::StaleToken);
    assert_eq!(holders(&t, "l"), ["a"]);
    // Neither another owner nor a waiter holds it.
    assert_eq!(t.apply(1, &release("l", "c", None)), Outcome::NotHeld);
    assert_eq!(t.apply(1, &release("l", "b", None)), Outcome::NotHeld);
    assert_eq!(
        t.apply(1, &release("other", "a", Some(a))),
        Outcome::NotHeld
    );
    assert!(t.lock_info("other").is_none());

    assert_eq!(t.apply(2, &release("l", "a", Some(a))), Outcome::Released);
    assert_eq!(t.apply(3, &release("l", "a", Some(a))), Outcome::NotHeld);
    // A token from an older grant of the same owner is stale.
    let b = t.holder("l", "b").unwrap().token;
    assert_eq!(t.apply(4, &release("l", "b", None)), Outcome::Released);
    let a2 = granted(&mut t, 5, &acquire("l", "a", EX, 100, 0));
    assert!(a2 > b);
    assert_eq!(t.apply(6, &release("l", "a", Some(a))), Outcome::StaleToken);
}

#[test]
fn renew_extends_the_lease() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(
        t.apply(90, &renew("l", "a", 100, None)),
        Outcome::Renewed { expires_at_ms: 190 }
    );
    assert_eq!(
        t.apply(95, &renew("l", "a", 100, Some(a))),
        Outcome::Renewed { expires_at_ms: 195 }
    );
    assert_eq!(
        t.apply(96, &renew("l", "a", 100, Some(a + 1))),
        Outcome::StaleToken
    );
    assert_eq!(t.holder("l", "a").unwrap().expires_at_ms, 195);
    assert_eq!(t.holder("l", "a").unwrap().token, a);
    assert_eq!(t.last_token(), a);
    t.apply(194, &Command::Tick);
    assert_eq!(holders(&t, "l"), ["a"]);
    t.apply(195, &Command::Tick);
    assert!(t.lock_info("l").is_none());
}

#[test]
fn renew_when_not_held() {
    let mut t = LockTable::new();
    assert_eq!(t.apply(0, &renew("l", "a", 100, None)), Outcome::NotHeld);
    assert!(t.is_empty());
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 0, &acquire("l", "b", EX, 100, 1000));
    assert_eq!(t.apply(1, &renew("l", "b", 100, None)), Outcome::NotHeld);
    assert_eq!(t.apply(1, &renew("l", "c", 100, None)), Outcome::NotHeld);
    // After the lease lapsed, renewing is too late.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(t.apply(100, &renew("l", "a", 100, None)), Outcome::NotHeld);
    assert!(t.is_empty());
}

#[test]
fn cancel_wait_removes_the_waiter_and_promotes_the_ones_behind() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    waiting(&mut t, 0, &acquire("l", "x", EX, 100, 1000));
    waiting(&mut t, 0, &acquire("l", "y", SH, 100, 1000));
    waiting(&mut t, 0, &acquire("l", "z", SH, 100, 1000));
    waiting(&mut t, 0, &acquire("l", "q", EX, 100, 1000));

    assert_eq!(
        t.apply(1, &cancel("l", "nobody")),
        Outcome::WaitCancelled { removed: false }
    );
    assert_eq!(
        t.apply(1, &cancel("l", "a")),
        Outcome::WaitCancelled { removed: false }
    );
    assert_eq!(holders(&t, "l"), ["a"]);

    assert_eq!(
        t.apply(2, &cancel("l", "x")),
        Outcome::WaitCancelled { removed: true }
    );
    assert_eq!(holders(&t, "l"), ["a", "y", "z"]);
    assert_eq!(waiters(&t, "l"), [w("q", EX)]);
    assert_eq!(
        t.apply(3, &cancel("l", "x")),
        Outcome::WaitCancelled { removed: false }
    );
    assert_eq!(
        t.apply(3, &cancel("nolock", "x")),
        Outcome::WaitCancelled { removed: false }
    );
    assert!(t.lock_info("nolock").is_none());
}

#[test]
fn classic_deadlock_is_refused_and_changes_nothing() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", EX, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    waiting(&mut t, 1, &acquire("b", "c1", EX, 100, 1000));
    let before = t.state().clone();
    let all_before = t.all_locks();
    assert_eq!(
        t.apply(1, &acquire("a", "c2", EX, 100, 1000)),
        Outcome::Deadlock
    );
    assert_eq!(t.state(), &before);
    assert_eq!(t.all_locks(), all_before);
    assert!(t.waiter("a", "c2").is_none());

    // The table keeps working: the victim gives up and the survivor gets through.
    assert_eq!(t.apply(2, &release("b", "c2", None)), Outcome::Released);
    assert_eq!(holders(&t, "b"), ["c1"]);
    // And c2 may now wait for `a` without closing anything.
    waiting(&mut t, 3, &acquire("a", "c2", EX, 100, 1000));

    // A shared request closes a cycle just as well.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", EX, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", SH, 100, 0));
    waiting(&mut t, 1, &acquire("b", "c1", EX, 100, 1000));
    let before = t.state().clone();
    assert_eq!(
        t.apply(1, &acquire("a", "c2", SH, 100, 1000)),
        Outcome::Deadlock
    );
    assert_eq!(t.state(), &before);
}

#[test]
fn three_party_cycle_is_refused() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", EX, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    granted(&mut t, 0, &acquire("c", "c3", EX, 100, 0));
    waiting(&mut t, 1, &acquire("b", "c1", EX, 100, 1000));
    waiting(&mut t, 1, &acquire("c", "c2", SH, 100, 1000));
    let before = t.state().clone();
    assert_eq!(
        t.apply(1, &acquire("a", "c3", SH, 100, 1000)),
        Outcome::Deadlock
    );
    assert_eq!(t.state(), &before);
    // Without waiting it is a plain conflict.
    assert_eq!(
        t.apply(1, &acquire("a", "c3", SH, 100, 0)),
        Outcome::Conflict
    );
    assert_eq!(t.state(), &before);
}

#[test]
fn cycle_through_a_queued_request_is_refused() {
    // c3 does not hold `a`, it waits ahead of c2 in an incompatible mode: that is an edge too.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", SH, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    waiting(&mut t, 1, &acquire("a", "c3", EX, 100, 1000));
    waiting(&mut t, 1, &acquire("b", "c3", EX, 100, 1000));
    let before = t.state().clone();
    // Compatible with the holder c1, but behind c3, which waits for c2.
    assert_eq!(
        t.apply(1, &acquire("a", "c2", SH, 100, 1000)),
        Outcome::Deadlock
    );
    assert_eq!(t.state(), &before);
}

#[test]
fn no_false_deadlock_on_a_chain() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", EX, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    granted(&mut t, 0, &acquire("c", "c3", EX, 100, 0));
    // c1 -> c2 -> c3: a chain, not a cycle.
    waiting(&mut t, 1, &acquire("b", "c1", EX, 100, 1000));
    waiting(&mut t, 1, &acquire("c", "c2", EX, 100, 1000));
    // c4 joins the chain at either end.
    waiting(&mut t, 1, &acquire("a", "c4", EX, 100, 1000));
    granted(&mut t, 1, &acquire("d", "c4", EX, 100, 0));
    // c3 holding `c` and asking for `d`, held by c4 which waits on c1, ... -> c3: a cycle.
    assert_eq!(
        t.apply(1, &acquire("d", "c3", EX, 100, 1000)),
        Outcome::Deadlock
    );
    // But someone waiting behind the whole chain is fine.
    waiting(&mut t, 1, &acquire("d", "c5", EX, 100, 1000));
    // Waiting on two locks held by the same chain is fine too.
    waiting(&mut t, 1, &acquire("c", "c5", SH, 100, 1000));

    // Shared holders do not block each other: no edge, no deadlock.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", SH, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    waiting(&mut t, 1, &acquire("b", "c1", SH, 100, 1000));
    granted(&mut t, 1, &acquire("a", "c2", SH, 100, 0));

    // Shared waiters queued one behind another do not block each other either.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", EX, 100, 0));
    granted(&mut t, 0, &acquire("b", "c2", EX, 100, 0));
    waiting(&mut t, 1, &acquire("a", "c2", SH, 100, 1000));
    waiting(&mut t, 1, &acquire("b", "c3", EX, 100, 1000));
    // c3 -> c2 (holder of b) -> c1; c3 queues on `a` behind c2 in the same, compatible, mode.
    waiting(&mut t, 1, &acquire("a", "c3", SH, 100, 1000));
}

#[test]
fn idle_locks_are_forgotten() {
    let mut t = LockTable::new();
    let a = granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(t.len(), 1);
    assert_eq!(t.apply(1, &release("l", "a", Some(a))), Outcome::Released);
    assert!(t.all_locks().is_empty());
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert!(t.lock_info("l").is_none());
    assert_eq!(t.last_token(), a);

    // A refused request leaves no trace.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    assert_eq!(
        t.apply(0, &acquire("l", "b", EX, 100, 0)),
        Outcome::Conflict
    );
    assert_eq!(t.len(), 1);

    // Expired leases and waits leave no trace.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", EX, 100, 0));
    waiting(&mut t, 0, &acquire("l", "b", EX, 100, 10));
    granted(&mut t, 0, &acquire("m", "a", EX, 5, 0));
    t.apply(10, &Command::Tick);
    assert_eq!(t.len(), 1);
    t.apply(100, &Command::Tick);
    assert!(t.all_locks().is_empty());

    // Cancelling the last waiter after the holder left.
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("l", "a", SH, 100, 0));
    granted(&mut t, 0, &acquire("l", "b", SH, 100, 0));
    waiting(&mut t, 0, &acquire("l", "a", EX, 100, 1000));
    assert_eq!(t.apply(1, &release("l", "a", None)), Outcome::Released);
    assert_eq!(t.apply(1, &release("l", "b", None)), Outcome::Released);
    // `a` was still queued for the upgrade, so it got the lock as a fresh grant.
    assert_eq!(holders(&t, "l"), ["a"]);
    assert_eq!(t.apply(2, &release("l", "a", None)), Outcome::Released);
    assert!(t.all_locks().is_empty());
}

/// A table with a bit of everything: holders in both modes, queued upgrades, waiters on several locks, renewed
/// leases.
fn busy_table() -> LockTable {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("a", "c1", SH, 100, 0));
    granted(&mut t, 0, &acquire("a", "c2", SH, 80, 0));
    waiting(&mut t, 1, &acquire("a", "c1", EX, 100, 500));
    waiting(&mut t, 1, &acquire("a", "c3", EX, 60, 400));
    waiting(&mut t, 1, &acquire("a", "c4", SH, 60, 300));
    granted(&mut t, 2, &acquire("b", "c3", EX, 50, 0));
    t.apply(3, &renew("b", "c3", 200, None));
    waiting(&mut t, 4, &acquire("b", "c4", EX, 40, 600));
    granted(&mut t, 5, &acquire("c", "c5", EX, 30, 0));
    t
}

#[test]
fn from_state_rebuilds_an_equal_table_that_behaves_the_same() {
    let mut t = busy_table();
    let mut r = LockTable::from_state(t.state().clone());
    assert_eq!(r, t);
    assert_eq!(r.state(), t.state());
    assert_eq!(r.all_locks(), t.all_locks());
    assert_eq!(r.clock_ms(), t.clock_ms());
    assert_eq!(r.last_token(), t.last_token());
    assert_eq!(r.next_deadline(), t.next_deadline());

    let next = [
        // Deadlock detection needs the rebuilt wait-for index: c2 -> c3 (b) while c3 -> c1, c2 (a).
        (6, acquire("b", "c2", EX, 10, 100)),
        (6, acquire("c", "c4", EX, 10, 100)),
        (7, cancel("a", "c4")),
        (8, release("a", "c2", None)),
        (9, Command::Tick),
        (30, Command::Tick),
        (35, acquire("c", "c1", SH, 10, 0)),
        (80, Command::Tick),
        (150, Command::Tick),
        (210, renew("b", "c4", 10, None)),
        (1000, Command::Tick),
    ];
    for (now, cmd) in &next {
        let expected = t.apply(*now, cmd);
        assert_eq!(r.apply(*now, cmd), expected, "{cmd:?} at {now}");
        assert_eq!(r, t, "after {cmd:?} at {now}");
    }
    assert_eq!(
        r.apply(6, &Command::Tick),
        t.apply(6, &Command::Tick),
        "late stamp"
    );
}

#[test]
fn from_state_survives_json() {
    let t = busy_table();
    let json = serde_json::to_string(t.state()).unwrap();
    let r = LockTable::from_state(serde_json::from_str(&json).unwrap());
    assert_eq!(r, t);
}

/// Regression: the deadline index keeps stale entries (a renewed lease leaves its old end behind). When one clock
/// jump expired leases on several locks, the original table visited a lock at its stale entry, i.e. earlier than
/// a table restored with `from_state` (which only has live entries), so the two handed out the fencing tokens of
/// the promoted waiters in a different order: a replica restored from a snapshot diverged from the others.
#[test]
fn snapshot_restore_grants_in_the_same_order_despite_stale_deadlines() {
    let mut t = LockTable::new();
    granted(&mut t, 0, &acquire("b", "c1", EX, 3, 0));
    // (3, b) is now stale: the lease ends at 6.
    t.apply(0, &renew("b", "c1", 6, None));
    waiting(&mut t, 0, &acquire("b", "c2", EX, 100, 100));
    granted(&mut t, 0, &acquire("a", "c3", EX, 5, 0));
    waiting(&mut t, 0, &acquire("a", "c4", EX, 100, 100));

    let mut r = LockTable::from_state(t.state().clone());
    assert_eq!(r, t);
    // Both leases (a at 5, b at 6) end within one jump of the clock.
    assert_eq!(t.apply(10, &Command::Tick), Outcome::Ticked);
    assert_eq!(r.apply(10, &Command::Tick), Outcome::Ticked);
    assert_eq!(r, t);
    // In deadline order: `a`'s lease ended first, so its waiter has the smaller token.
    assert!(t.holder("a", "c4").unwrap().token < t.holder("b", "c2").unwrap().token);
}

#[test]
fn node_registration_reports_the_previous_incarnation() {
    let mut t = LockTable::new();
    let register = |incarnation| Command::RegisterNode { id: 2, incarnation };
    assert_eq!(
        t.apply(1, &register(7)),
        Outcome::Registered { previous: None }
    );
    assert_eq!(
        t.apply(2, &register(7)),
        Outcome::Registered { previous: Some(7) }
    );
    assert_eq!(
        t.apply(3, &register(9)),
        Outcome::Registered { previous: Some(7) }
    );
    // It survives a snapshot round trip.
    let json = serde_json::to_string(t.state()).unwrap();
    let mut restored = LockTable::from_state(serde_json::from_str(&json).unwrap());
    assert_eq!(
        restored.apply(4, &register(9)),
        Outcome::Registered { previous: Some(9) }
    );
}

#[test]
fn renewals_and_reacquires_leave_no_stale_deadlines() {
    let mut t = LockTable::default();
    let token = granted(&mut t, 0, &acquire("a", "o", LockMode::Exclusive, 1_000, 0));
    for i in 1..=100 {
        t.apply(i, &renew("a", "o", 1_000, Some(token)));
        t.apply(i, &acquire("a", "o", LockMode::Exclusive, 1_000, 0));
    }
    // One live lease, one index entry, and the leader's next tick is due only when that lease really ends.
    assert_eq!(t.deadline_entries(), 1);
    assert_eq!(t.next_deadline(), Some(1_100));
}

#[test]
fn granted_cancelled_and_released_requests_leave_no_stale_deadlines() {
    let mut t = LockTable::default();
    let token = granted(
        &mut t,
        0,
        &acquire("a", "x", LockMode::Exclusive, 60_000, 0),
    );
    waiting(
        &mut t,
        1,
        &acquire("a", "y", LockMode::Exclusive, 60_000, 5_000),
    );
    waiting(
        &mut t,
        2,
        &acquire("a", "z", LockMode::Exclusive, 60_000, 9_000),
    );
    t.apply(3, &cancel("a", "z"));
    // y is granted on release: its wait deadline (5,001) is no longer a deadline.
    t.apply(4, &release("a", "x", Some(token)));
    assert_eq!(holders(&t, "a"), vec!["y".to_owned()]);
    assert_eq!(t.next_deadline(), Some(60_004));
    assert_eq!(t.deadline_entries(), 1);
    t.apply(5, &release("a", "y", None));
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.deadline_entries(), 0);
}

#[test]
fn a_waiter_granted_by_an_expiry_leaves_no_stale_deadline() {
    let mut t = LockTable::default();
    granted(&mut t, 0, &acquire("a", "x", LockMode::Exclusive, 100, 0));
    waiting(
        &mut t,
        1,
        &acquire("a", "y", LockMode::Exclusive, 60_000, 30_000),
    );
    t.apply(100, &Command::Tick);
    assert_eq!(holders(&t, "a"), vec!["y".to_owned()]);
    assert_eq!(t.next_deadline(), Some(60_100));
    assert_eq!(t.deadline_entries(), 1);
}

fn acquire_as(name: &str, owner: &str, wait_ms: u64, request: u64) -> Command {
    Command::Acquire {
        name: name.to_owned(),
        owner: owner.to_owned(),
        mode: LockMode::Exclusive,
        ttl_ms: 60_000,
        wait_ms,
        request,
    }
}

fn withdraw(name: &str, owner: &str, request: u64) -> Command {
    Command::CancelWait {
        name: name.to_owned(),
        owner: owner.to_owned(),
        request,
    }
}

#[test]
fn withdrawing_a_request_granted_after_its_caller_left_releases_the_grant() {
    let mut t = LockTable::default();
    let token = granted(&mut t, 0, &acquire_as("a", "x", 0, 1));
    waiting(&mut t, 1, &acquire_as("a", "y", 5_000, 7));
    // x releases; y's request is granted before its withdrawal (its caller left) is applied.
    t.apply(2, &release("a", "x", Some(token)));
    assert_eq!(holders(&t, "a"), vec!["y".to_owned()]);
    assert_eq!(
        t.apply(3, &withdraw("a", "y", 7)),
        Outcome::WaitCancelled { removed: true }
    );
    assert!(t.lock_info("a").is_none());
    assert_eq!(t.deadline_entries(), 0);
}

#[test]
fn withdrawing_a_request_leaves_what_a_later_request_took_over() {
    let mut t = LockTable::default();
    granted(&mut t, 0, &acquire_as("a", "y", 0, 7));
    // The caller of request 7 retried as request 8 and was told it holds the lock: 7's withdrawal is moot.
    granted(&mut t, 1, &acquire_as("a", "y", 0, 8));
    assert_eq!(
        t.apply(2, &withdraw("a", "y", 7)),
        Outcome::WaitCancelled { removed: false }
    );
    assert_eq!(holders(&t, "a"), vec!["y".to_owned()]);
    // Same for a wait refreshed by a later request.
    granted(&mut t, 3, &acquire_as("b", "x", 0, 1));
    waiting(&mut t, 4, &acquire_as("b", "z", 5_000, 2));
    waiting(&mut t, 5, &acquire_as("b", "z", 5_000, 3));
    t.apply(6, &withdraw("b", "z", 2));
    assert_eq!(waiters(&t, "b"), vec![w("z", LockMode::Exclusive)]);
    t.apply(7, &withdraw("b", "z", 3));
    assert!(waiters(&t, "b").is_empty());
}
