//! The lock table.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{Command, Outcome};
use crate::deadlock;
use crate::mode::LockMode;

/// One holder's grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Mode held.
    pub mode: LockMode,
    /// Fencing token of the grant.
    pub token: u64,
    /// End of the lease, on the table's clock.
    pub expires_at_ms: u64,
    /// The acquire that granted or last refreshed this hold (0: unnamed).
    #[serde(default)]
    pub request: u64,
}

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Requester.
    pub owner: String,
    /// Requested mode.
    pub mode: LockMode,
    /// Lease length once granted.
    pub ttl_ms: u64,
    /// When the wait ends.
    pub deadline_ms: u64,
    /// The acquire that queued or last refreshed this request (0: unnamed).
    #[serde(default)]
    pub request: u64,
}

/// A lock as readers see it: its mode, holders and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockView {
    /// The lock.
    pub name: String,
    /// The strongest mode held, or `None` when nobody holds it.
    pub mode: Option<LockMode>,
    /// The holders, by owner.
    pub holders: Vec<HolderView>,
    /// The queue, in order.
    pub waiters: Vec<WaiterView>,
}

/// One holder in a [`LockView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderView {
    /// The holder.
    pub owner: String,
    /// Its fencing token.
    pub token: u64,
    /// End of its lease, on the table's clock.
    pub expires_at_ms: u64,
}

/// One queued request in a [`LockView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiterView {
    /// The requester.
    pub owner: String,
    /// The mode it waits for.
    pub mode: LockMode,
}

/// One lock's holders and queue. A lock with neither is removed from the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lock {
    pub(crate) holders: BTreeMap<String, Hold>,
    pub(crate) waiters: VecDeque<Pending>,
}

impl Lock {
    fn is_idle(&self) -> bool {
        self.holders.is_empty() && self.waiters.is_empty()
    }

    /// Whether `owner` could hold `mode` next to every other current holder.
    fn compatible_with_holders(&self, owner: &str, mode: LockMode) -> bool {
        self.holders
            .iter()
            .all(|(o, h)| o == owner || mode.compatible_with(h.mode))
    }

    fn mode(&self) -> Option<LockMode> {
        self.holders.values().map(|h| h.mode).max()
    }
}

/// The replicated part of the table: what a snapshot holds and what replicas must agree on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    /// The largest command stamp applied so far.
    clock_ms: u64,
    /// The last fencing token handed out.
    last_token: u64,
    /// Locks with holders or waiters.
    locks: BTreeMap<String, Lock>,
    /// The storage incarnation of every node that registered one (node id -> incarnation).
    #[serde(default)]
    nodes: BTreeMap<u64, u64>,
}

/// The lock table: the replicated [`TableState`] plus indexes derived from it.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    state: TableState,
    /// (deadline, lock) for every lease and wait. Each command retires the entries it made stale (see
    /// [`Self::retire_stale`]), so the first entry is always a real deadline.
    deadlines: BTreeSet<(u64, String)>,
    /// owner -> locks it waits for: the adjacency of the wait-for graph.
    waiting_on: BTreeMap<String, BTreeSet<String>>,
}

impl PartialEq for LockTable {
    /// Tables are equal when their replicated state is; the indexes are derived.
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Eq for LockTable {}

impl LockTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a table, indexes included, from its replicated state (a snapshot).
    pub fn from_state(state: TableState) -> Self {
        let mut table = LockTable {
            state,
            ..Default::default()
        };
        for (name, lock) in &table.state.locks {
            for hold in lock.holders.values() {
                table.deadlines.insert((hold.expires_at_ms, name.clone()));
            }
            for w in &lock.waiters {
                table.deadlines.insert((w.deadline_ms, name.clone()));
                table
                    .waiting_on
                    .entry(w.owner.clone())
                    .or_default()
                    .insert(name.clone());
            }
        }
        table
    }

    /// The replicated state, for snapshots.
    pub fn state(&self) -> &TableState {
        &self.state
    }

    /// The table's clock: the largest command stamp applied.
    pub fn clock_ms(&self) -> u64 {
        self.state.clock_ms
    }

    /// The last fencing token handed out (0 before the first grant).
    pub fn last_token(&self) -> u64 {
        self.state.last_token
    }

    /// How many (deadline, lock) entries the deadline index holds: one per distinct live lease end or wait deadline
    /// of each lock.
    pub fn deadline_entries(&self) -> usize {
        self.deadlines.len()
    }

    /// The earliest lease or wait deadline, if any. The leader proposes a [`Command::Tick`] once its clock passes it.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The owner's hold on a lock.
    pub fn holder(&self, name: &str, owner: &str) -> Option<&Hold> {
        self.state.locks.get(name)?.holders.get(owner)
    }

    /// The owner's queued request on a lock.
    pub fn waiter(&self, name: &str, owner: &str) -> Option<&Pending> {
        self.state
            .locks
            .get(name)?
            .waiters
            .iter()
            .find(|w| w.owner == owner)
    }

    /// Number of locks with holders or waiters.
    pub fn len(&self) -> usize {
        self.state.locks.len()
    }

    /// Whether no lock has holders or waiters.
    pub fn is_empty(&self) -> bool {
        self.state.locks.is_empty()
    }

    /// The public view of one lock; `None` when it has neither holders nor waiters.
    pub fn lock_info(&self, name: &str) -> Option<LockView> {
        self.state.locks.get(name).map(|lock| info(name, lock))
    }

    /// The public view of every lock with holders or waiters, by name.
    pub fn all_locks(&self) -> Vec<LockView> {
        self.state
            .locks
            .iter()
            .map(|(name, lock)| info(name, lock))
            .collect()
    }

    /// Applies one command stamped `now_ms` by the leader. Deterministic: the same sequence of (stamp, command)
    /// gives the same outcomes and state on every replica.
    pub fn apply(&mut self, now_ms: u64, command: &Command) -> Outcome {
        self.advance(now_ms);
        let touched = command
            .lock_name()
            .map(|name| (name, self.live_deadlines(name)));
        let outcome = match command {
            Command::Acquire {
                name,
                owner,
                mode,
                ttl_ms,
                wait_ms,
                request,
            } => self.acquire(name, owner, *mode, *ttl_ms, *wait_ms, *request),
            Command::Release { name, owner, token } => self.release(name, owner, *token),
            Command::Renew {
                name,
                owner,
                ttl_ms,
                token,
            } => self.renew(name, owner, *ttl_ms, *token),
            Command::CancelWait {
                name,
                owner,
                request,
            } => self.cancel_wait(name, owner, *request),
            Command::Tick => Outcome::Ticked,
            Command::RegisterNode { id, incarnation } => Outcome::Registered {
                previous: self.state.nodes.insert(*id, *incarnation),
            },
        };
        if let Some((name, before)) = touched {
            self.forget_if_idle(name);
            self.retire_stale(name, before);
        }
        outcome
    }

    /// The lease ends and wait deadlines on `name` now (with repeats; the caller only checks membership).
    fn live_deadlines(&self, name: &str) -> Vec<u64> {
        self.state
            .locks
            .get(name)
            .map(|lock| {
                lock.holders
                    .values()
                    .map(|h| h.expires_at_ms)
                    .chain(lock.waiters.iter().map(|w| w.deadline_ms))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops the index entries of `name` among `before` that no lease or wait ends at any more (a renewed or
    /// released lease, a granted or cancelled wait), so the index holds live deadlines only: a stale entry would
    /// make the leader propose a `Tick` for nothing when it came due, and entries would pile up with renewals.
    fn retire_stale(&mut self, name: &str, before: Vec<u64>) {
        for deadline in before {
            if !self.is_live_deadline(name, deadline) {
                self.deadlines.remove(&(deadline, name.to_owned()));
            }
        }
    }

    /// Moves the clock forward (never back) and expires every lease and wait that is due.
    fn advance(&mut self, now_ms: u64) {
        self.state.clock_ms = self.state.clock_ms.max(now_ms);
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > self.state.clock_ms {
                break;
            }
            let Some((deadline, name)) = self.deadlines.pop_first() else {
                break;
            };
            // Skip stale index entries. `expire` handles everything due on a lock,
            // so visiting a lock at a stale entry (a renewed lease's old end, a released hold, a cancelled wait)
            // expired it earlier in the pass than a table rebuilt by `from_state`, which only has live entries:
            // when one clock jump expired several locks, the two handed out the promoted waiters' tokens in a
            // different order. Only live entries now decide the order, and every table has the same live ones.
            if self.is_live_deadline(&name, deadline) {
                self.expire(&name);
            }
        }
    }

    /// Whether a lease or a wait on `name` ends exactly at `deadline`, i.e. the index entry is not stale.
    fn is_live_deadline(&self, name: &str, deadline: u64) -> bool {
        self.state.locks.get(name).is_some_and(|lock| {
            lock.holders.values().any(|h| h.expires_at_ms == deadline)
                || lock.waiters.iter().any(|w| w.deadline_ms == deadline)
        })
    }

    /// Drops the due holders and waiters of one lock, then serves its queue.
    fn expire(&mut self, name: &str) {
        let before = self.live_deadlines(name);
        self.expire_due(name);
        self.retire_stale(name, before);
    }

    fn expire_due(&mut self, name: &str) {
        let clock = self.state.clock_ms;
        let Some(lock) = self.state.locks.get_mut(name) else {
            return;
        };
        lock.holders.retain(|_, h| h.expires_at_ms > clock);
        let mut gone = Vec::new();
        lock.waiters.retain(|w| {
            let keep = w.deadline_ms > clock;
            if !keep {
                gone.push(w.owner.clone());
            }
            keep
        });
        for owner in gone {
            self.unmark_waiting(&owner, name);
        }
        self.promote(name);
        self.forget_if_idle(name);
    }

    fn acquire(
        &mut self,
        name: &str,
        owner: &str,
        mode: LockMode,
        ttl_ms: u64,
        wait_ms: u64,
        request: u64,
    ) -> Outcome {
        let clock = self.state.clock_ms;
        let expires_at_ms = clock.saturating_add(ttl_ms);
        let deadline_ms = clock.saturating_add(wait_ms);
        let lock = self.state.locks.entry(name.to_owned()).or_default();

        // A request already queued for this owner: refresh it, or refuse a second one in another mode.
        if let Some(w) = lock.waiters.iter_mut().find(|w| w.owner == owner) {
            let held_same_mode = lock.holders.get(owner).is_some_and(|h| h.mode == mode);
            if !held_same_mode {
                if w.mode != mode || wait_ms == 0 {
                    return Outcome::Conflict;
                }
                w.deadline_ms = w.deadline_ms.max(deadline_ms);
                w.ttl_ms = ttl_ms;
                // The newest request takes the wait over: withdrawing an older one leaves it queued.
                w.request = request;
                let deadline_ms = w.deadline_ms;
                self.deadlines.insert((deadline_ms, name.to_owned()));
                return Outcome::Waiting { deadline_ms };
            }
        }

        let sole_holder = lock.holders.len() == 1;
        if let Some(hold) = lock.holders.get_mut(owner) {
            match (hold.mode, mode) {
                // Idempotent re-acquire: same token, lease extended.
                (held, wanted) if held == wanted => {
                    hold.expires_at_ms = hold.expires_at_ms.max(expires_at_ms);
                    hold.request = request;
                    let outcome = granted(hold);
                    let expiry = hold.expires_at_ms;
                    self.deadlines.insert((expiry, name.to_owned()));
                    return outcome;
                }
                // Downgrade: always possible, and may let shared waiters in.
                (LockMode::Exclusive, LockMode::Shared) => {
                    hold.mode = LockMode::Shared;
                    hold.expires_at_ms = expires_at_ms;
                    hold.request = request;
                    let outcome = granted(hold);
                    self.deadlines.insert((expires_at_ms, name.to_owned()));
                    self.promote(name);
                    return outcome;
                }
                // Upgrade: at once when no one else holds the lock (a new grant, so a new token) ...
                _ if sole_holder => {
                    *hold = new_hold(&mut self.state.last_token, mode, expires_at_ms, request);
                    let outcome = granted(hold);
                    self.deadlines.insert((expires_at_ms, name.to_owned()));
                    return outcome;
                }
                // ... otherwise at the head of the queue: it already holds the lock, so nobody behind it can go
                // first anyway, and queuing it last would deadlock it against exclusive waiters.
                _ => {
                    if wait_ms == 0 {
                        return Outcome::Conflict;
                    }
                    let pending = Pending {
                        owner: owner.to_owned(),
                        mode,
                        ttl_ms,
                        deadline_ms,
                        request,
                    };
                    return self.enqueue(name, pending, true);
                }
            }
        }

        if lock.waiters.is_empty() && lock.compatible_with_holders(owner, mode) {
            let hold = new_hold(&mut self.state.last_token, mode, expires_at_ms, request);
            let outcome = granted(&hold);
            lock.holders.insert(owner.to_owned(), hold);
            self.deadlines.insert((expires_at_ms, name.to_owned()));
            return outcome;
        }
        if wait_ms == 0 {
            return Outcome::Conflict;
        }
        let pending = Pending {
            owner: owner.to_owned(),
            mode,
            ttl_ms,
            deadline_ms,
            request,
        };
        self.enqueue(name, pending, false)
    }

    /// Queues a request unless its wait would close a cycle in the wait-for graph.
    fn enqueue(&mut self, name: &str, pending: Pending, at_front: bool) -> Outcome {
        let owner = pending.owner.clone();
        let deadline_ms = pending.deadline_ms;
        let Some(lock) = self.state.locks.get_mut(name) else {
            return Outcome::Conflict;
        };
        // Queue it tentatively: the search must see the graph as it would be, including the edges that other
        // waiters gain towards a request queued ahead of them.
        if at_front {
            lock.waiters.push_front(pending);
        } else {
            lock.waiters.push_back(pending);
        }
        self.mark_waiting(&owner, name);
        if deadlock::closes_cycle(self, &owner) {
            if let Some(lock) = self.state.locks.get_mut(name) {
                lock.waiters.retain(|w| w.owner != owner);
            }
            self.unmark_waiting(&owner, name);
            return Outcome::Deadlock;
        }
        self.deadlines.insert((deadline_ms, name.to_owned()));
        Outcome::Waiting { deadline_ms }
    }

    fn release(&mut self, name: &str, owner: &str, token: Option<u64>) -> Outcome {
        let Some(lock) = self.state.locks.get_mut(name) else {
            return Outcome::NotHeld;
        };
        match lock.holders.get(owner) {
            None => Outcome::NotHeld,
            Some(h) if token.is_some_and(|t| t != h.token) => Outcome::StaleToken,
            Some(_) => {
                lock.holders.remove(owner);
                self.promote(name);
                Outcome::Released
            }
        }
    }

    fn renew(&mut self, name: &str, owner: &str, ttl_ms: u64, token: Option<u64>) -> Outcome {
        let expires_at_ms = self.state.clock_ms.saturating_add(ttl_ms);
        let Some(hold) = self
            .state
            .locks
            .get_mut(name)
            .and_then(|l| l.holders.get_mut(owner))
        else {
            return Outcome::NotHeld;
        };
        if token.is_some_and(|t| t != hold.token) {
            return Outcome::StaleToken;
        }
        hold.expires_at_ms = expires_at_ms;
        self.deadlines.insert((expires_at_ms, name.to_owned()));
        Outcome::Renewed { expires_at_ms }
    }

    fn cancel_wait(&mut self, name: &str, owner: &str, request: u64) -> Outcome {
        let Some(lock) = self.state.locks.get_mut(name) else {
            return Outcome::WaitCancelled { removed: false };
        };
        let before = lock.waiters.len();
        lock.waiters
            .retain(|w| w.owner != owner || (request != 0 && w.request != request));
        let mut removed = lock.waiters.len() != before;
        if removed {
            self.unmark_waiting(owner, name);
        } else if request != 0
            && lock
                .holders
                .get(owner)
                .is_some_and(|h| h.request == request)
        {
            // Granted after its caller went away: nobody knows the token, so nobody can use or release it.
            lock.holders.remove(owner);
            removed = true;
        }
        if removed {
            // The withdrawn request may have been what blocked the requests behind it.
            self.promote(name);
        }
        Outcome::WaitCancelled { removed }
    }

    /// Grants queued requests from the head while they are compatible with the holders.
    fn promote(&mut self, name: &str) {
        let clock = self.state.clock_ms;
        loop {
            let Some(lock) = self.state.locks.get_mut(name) else {
                return;
            };
            let Some(head) = lock.waiters.front() else {
                return;
            };
            if !lock.compatible_with_holders(&head.owner, head.mode) {
                return;
            }
            let Some(head) = lock.waiters.pop_front() else {
                return;
            };
            let expires_at_ms = clock.saturating_add(head.ttl_ms);
            lock.holders.insert(
                head.owner.clone(),
                new_hold(
                    &mut self.state.last_token,
                    head.mode,
                    expires_at_ms,
                    head.request,
                ),
            );
            self.deadlines.insert((expires_at_ms, name.to_owned()));
            self.unmark_waiting(&head.owner, name);
        }
    }

    fn forget_if_idle(&mut self, name: &str) {
        if self.state.locks.get(name).is_some_and(Lock::is_idle) {
            self.state.locks.remove(name);
        }
    }

    fn mark_waiting(&mut self, owner: &str, name: &str) {
        self.waiting_on
            .entry(owner.to_owned())
            .or_default()
            .insert(name.to_owned());
    }

    fn unmark_waiting(&mut self, owner: &str, name: &str) {
        if let Some(names) = self.waiting_on.get_mut(owner) {
            names.remove(name);
            if names.is_empty() {
                self.waiting_on.remove(owner);
            }
        }
    }

    /// The owners `owner` waits for: for each lock it is queued on, the incompatible holders and the incompatible
    /// requests queued ahead of it.
    pub(crate) fn blockers_of(&self, owner: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let Some(names) = self.waiting_on.get(owner) else {
            return out;
        };
        for name in names {
            let Some(lock) = self.state.locks.get(name) else {
                continue;
            };
            let Some(pos) = lock.waiters.iter().position(|w| w.owner == owner) else {
                continue;
            };
            let mode = lock.waiters[pos].mode;
            for (holder, hold) in &lock.holders {
                if holder != owner && !mode.compatible_with(hold.mode) {
                    out.push(holder.as_str());
                }
            }
            for ahead in lock.waiters.iter().take(pos) {
                if ahead.owner != owner && !mode.compatible_with(ahead.mode) {
                    out.push(ahead.owner.as_str());
                }
            }
        }
        out
    }
}

/// A new grant: the next fencing token from the table-wide counter.
fn new_hold(last_token: &mut u64, mode: LockMode, expires_at_ms: u64, request: u64) -> Hold {
    *last_token += 1;
    Hold {
        mode,
        token: *last_token,
        expires_at_ms,
        request,
    }
}

fn granted(hold: &Hold) -> Outcome {
    Outcome::Granted {
        mode: hold.mode,
        token: hold.token,
        expires_at_ms: hold.expires_at_ms,
    }
}

fn info(name: &str, lock: &Lock) -> LockView {
    LockView {
        name: name.to_owned(),
        mode: lock.mode(),
        holders: lock
            .holders
            .iter()
            .map(|(owner, h)| HolderView {
                owner: owner.clone(),
                token: h.token,
                expires_at_ms: h.expires_at_ms,
            })
            .collect(),
        waiters: lock
            .waiters
            .iter()
            .map(|w| WaiterView {
                owner: w.owner.clone(),
                mode: w.mode,
            })
            .collect(),
    }
}
