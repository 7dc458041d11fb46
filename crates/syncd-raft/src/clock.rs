//! The time the leader stamps on log entries.
//!
//! Lease ends and wait deadlines are decided by the stamps in the log (replicas never read their own clocks), so
//! a stamp that runs ahead of the time that really passed ends leases early: a leader whose wall clock stepped
//! 60 s forward (an NTP step, a resumed VM) would expire every lease at once. Stamps therefore advance with the
//! monotonic clock, never with the wall clock: each stamp is at most the last stamp this node made or applied plus
//! the monotonic time elapsed since then. Carried across leader changes by anchoring on applied entries: a node
//! that applies an entry stamped `s` at instant `t` knows that at least `now - t` has passed since `s` was made.
//!
//! The stamps follow the wall clock only where no running lease or wait can notice: when the table has no
//! deadline, no entry of the log is unapplied and no stamped proposal is in flight, a stamp may jump forward to
//! the wall clock. That keeps `expires_at_ms` close to real time (the first grant of a new group, the first after
//! a long outage) without ever shortening a lease. Stamps never go back, whatever the wall clock does.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The last stamp known and when it became known.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    stamp_ms: u64,
    at: Instant,
}

#[derive(Debug)]
struct State {
    anchor: Anchor,
    /// Stamped proposals of this node not yet answered.
    in_flight: usize,
}

/// The stamp clock of one node (see the module doc).
#[derive(Debug)]
pub struct StampClock {
    state: Mutex<State>,
}

/// A stamp handed out for one proposal; dropping it (once the proposal is answered) ends its "in flight" state.
#[derive(Debug)]
pub struct Stamp<'a> {
    clock: &'a StampClock,
    /// The stamp, in milliseconds.
    pub ms: u64,
}

impl Drop for Stamp<'_> {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl StampClock {
    /// A clock whose last known stamp is `stamp_ms`, known now.
    pub fn new(stamp_ms: u64, now: Instant) -> Self {
        StampClock {
            state: Mutex::new(State {
                anchor: Anchor { stamp_ms, at: now },
                in_flight: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a stamp seen in an applied entry.
    pub fn observe(&self, stamp_ms: u64, now: Instant) {
        let mut state = self.lock();
        if stamp_ms > state.anchor.stamp_ms {
            state.anchor = Anchor { stamp_ms, at: now };
        }
    }

    /// The current time on the stamp clock: the last stamp plus the monotonic time since.
    pub fn now_ms(&self, now: Instant) -> u64 {
        bound(&self.lock().anchor, now)
    }

    /// The stamp for a new proposal. `wall_ms` is the wall clock; `quiet` says whether the table has no deadline
    /// and every log entry is applied. It is asked only when no other stamped proposal of this node is in flight,
    /// so between its answer and this stamp nothing can create a deadline that the jump would cross.
    pub fn stamp(&self, wall_ms: u64, now: Instant, quiet: impl FnOnce() -> bool) -> Stamp<'_> {
        let mut state = self.lock();
        let may_jump = state.in_flight == 0 && quiet();
        let ms = next_stamp(&state.anchor, wall_ms, now, may_jump);
        state.anchor = Anchor {
            stamp_ms: ms,
            at: now,
        };
        state.in_flight += 1;
        Stamp { clock: self, ms }
    }
}

fn bound(anchor: &Anchor, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(anchor.at);
    anchor.stamp_ms.saturating_add(millis(elapsed))
}

/// The next stamp: the anchor plus the monotonic time since it, or the wall clock when a jump is allowed and the
/// wall clock is ahead.
fn next_stamp(anchor: &Anchor, wall_ms: u64, now: Instant, may_jump: bool) -> u64 {
    let bound = bound(anchor, now);
    if may_jump { bound.max(wall_ms) } else { bound }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u64 = 1_800_000_000_000;

    #[test]
    fn the_first_stamp_of_a_new_group_is_the_wall_clock() {
        let t0 = Instant::now();
        let clock = StampClock::new(0, t0);
        assert_eq!(clock.stamp(WALL, t0, || true).ms, WALL);
    }

    #[test]
    fn a_forward_wall_step_does_not_move_stamps_while_a_deadline_runs() {
        let t0 = Instant::now();
        let clock = StampClock::new(WALL, t0);
        let later = t0 + Duration::from_millis(1_000);
        // The wall clock jumped 60 s, but only 1 s really passed.
        assert_eq!(clock.stamp(WALL + 61_000, later, || false).ms, WALL + 1_000);
        assert_eq!(
            clock.now_ms(later + Duration::from_millis(500)),
            WALL + 1_500
        );
    }

    #[test]
    fn stamps_never_go_back_on_a_backward_wall_step() {
        let t0 = Instant::now();
        let clock = StampClock::new(WALL, t0);
        let a = clock
            .stamp(WALL - 60_000, t0 + Duration::from_millis(10), || true)
            .ms;
        let b = clock
            .stamp(WALL - 59_000, t0 + Duration::from_millis(20), || true)
            .ms;
        assert_eq!(a, WALL + 10);
        assert_eq!(b, WALL + 20);
    }

    #[test]
    fn a_quiet_table_catches_up_with_the_wall_clock() {
        let t0 = Instant::now();
        // Restarted after an outage of an hour: the last stamp is old.
        let clock = StampClock::new(WALL - 3_600_000, t0);
        assert_eq!(clock.stamp(WALL, t0, || true).ms, WALL);
    }

    #[test]
    fn no_jump_while_another_proposal_is_in_flight() {
        let t0 = Instant::now();
        let clock = StampClock::new(WALL, t0);
        let first = clock.stamp(WALL, t0, || true);
        // The first proposal may create a lease: a second one must not jump over it, even on a quiet table.
        let second = clock.stamp(WALL + 60_000, t0 + Duration::from_millis(5), || true);
        assert_eq!(second.ms, WALL + 5);
        drop(first);
        drop(second);
        let third = clock.stamp(WALL + 60_000, t0 + Duration::from_millis(6), || true);
        assert_eq!(third.ms, WALL + 60_000);
    }

    #[test]
    fn applied_stamps_carry_time_across_leader_changes() {
        let t0 = Instant::now();
        let clock = StampClock::new(WALL, t0);
        // Another leader's entry, stamped later than anything this node made, applied at t0 + 100 ms.
        clock.observe(WALL + 5_000, t0 + Duration::from_millis(100));
        let s = clock.stamp(WALL + 90_000, t0 + Duration::from_millis(300), || false);
        assert_eq!(s.ms, WALL + 5_200);
        // An older stamp seen later never moves the anchor back.
        clock.observe(WALL + 1_000, t0 + Duration::from_millis(400));
        assert_eq!(clock.now_ms(t0 + Duration::from_millis(400)), WALL + 5_300);
    }
}
