//! The state of one queue shard: its messages, the per-lane indexes, planning and queries.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::record::{Dedup, Record, Snapshot, StoredMessage};
use crate::{DEDUP_WINDOW_MS, Lane, MessageId, Receipt};

/// Extra candidates a receive looks at beyond its `max`, for the ones it dead-letters instead of delivering.
pub const DEAD_LETTER_SLACK: usize = 1024;

/// What a receive returns for one message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The message.
    pub id: MessageId,
    /// Its body.
    pub body: String,
    /// The receipt of this delivery, for ack and nack.
    pub receipt: Receipt,
    /// Which delivery in this lane this is, from 1.
    pub attempt: u32,
}

/// One live message.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Message {
    lane: Lane,
    body: String,
    attempts: u32,
    /// `(delivery lsn, deadline_ms)` while in flight, `None` while ready.
    delivery: Option<(u64, u64)>,
}

/// The ready and in-flight messages of one lane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LaneIndex {
    /// Ready message ids.
    ready: BTreeSet<MessageId>,
    /// `(deadline_ms, id)` of every in-flight message, expired or not.
    inflight: BTreeSet<(u64, MessageId)>,
}

impl LaneIndex {
    fn insert(&mut self, id: MessageId, delivery: Option<(u64, u64)>) {
        match delivery {
            None => self.ready.insert(id),
            Some((_, deadline)) => self.inflight.insert((deadline, id)),
        };
    }

    fn remove(&mut self, id: MessageId, delivery: Option<(u64, u64)>) {
        match delivery {
            None => self.ready.remove(&id),
            Some((_, deadline)) => self.inflight.remove(&(deadline, id)),
        };
    }

    /// In-flight messages whose visibility expired at `now_ms`, earliest deadline first.
    fn expired(&self, now_ms: u64) -> impl Iterator<Item = MessageId> + '_ {
        self.inflight
            .range(..=(now_ms, MessageId::MAX))
            .map(|&(_, id)| id)
    }
}

fn slot(lane: Lane) -> usize {
    match lane {
        Lane::Main => 0,
        Lane::Dead => 1,
    }
}

/// The delivery state of one queue shard: every live message of its two lanes, plus per-lane indexes of the ready
/// ids and of the in-flight `(deadline, id)` pairs, kept consistent with the messages by every change.
///
/// Replicas change it only through [`apply`](ShardState::apply); the planning and query methods read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardState {
    messages: BTreeMap<MessageId, Message>,
    /// Indexed by [`slot`].
    lanes: [LaneIndex; 2],
    /// Deduplication keys of recent produces: key -> (message id, at_ms).
    dedup: BTreeMap<String, (MessageId, u64)>,
    /// The same keys by age, for expiry.
    dedup_by_age: BTreeSet<(u64, String)>,
}

impl ShardState {
    /// The state a snapshot describes (the same as applying `Record::Snapshot(snapshot)` to any state). When the
    /// snapshot lists one id twice, the last entry wins.
    pub fn from_snapshot(snapshot: &Snapshot) -> ShardState {
        let mut state = ShardState::default();
        for m in &snapshot.messages {
            let message = Message {
                lane: m.lane,
                body: m.body.clone(),
                attempts: m.attempts,
                delivery: m.delivery,
            };
            if let Some(old) = state.messages.insert(m.id, message) {
                state.lanes[slot(old.lane)].remove(m.id, old.delivery);
            }
            state.lanes[slot(m.lane)].insert(m.id, m.delivery);
        }
        for (key, id, at_ms) in &snapshot.dedup {
            state.remember(key, *id, *at_ms);
        }
        state
    }

    fn remember(&mut self, key: &str, id: MessageId, at_ms: u64) {
        if let Some((_, old_at)) = self.dedup.insert(key.to_owned(), (id, at_ms)) {
            self.dedup_by_age.remove(&(old_at, key.to_owned()));
        }
        self.dedup_by_age.insert((at_ms, key.to_owned()));
    }

    /// Forgets keys older than the window before `now_ms`.
    fn expire_dedup(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(DEDUP_WINDOW_MS);
        while let Some((at, key)) = self.dedup_by_age.first().cloned() {
            if at >= horizon {
                break;
            }
            self.dedup_by_age.remove(&(at, key.clone()));
            self.dedup.remove(&key);
        }
    }

    /// The message an earlier produce with deduplication key `key` created, if it is within the window at
    /// `now_ms` (whether or not it was consumed since).
    pub fn deduplicated(&self, key: &str, now_ms: u64) -> Option<MessageId> {
        self.dedup
            .get(key)
            .filter(|(_, at)| at.saturating_add(DEDUP_WINDOW_MS) > now_ms)
            .map(|(id, _)| *id)
    }

    /// Applies one record at `lsn`. Deterministic: the same records in the same order give the same state on every
    /// replica. Items that reference unknown messages, messages of another lane, or stale receipts are ignored.
    ///
    /// A `Deliver` skips a message that cannot have been a candidate when it was planned: one already delivered at
    /// or after `lsn` (an id listed twice), or one in flight until after the record's `deadline_ms` (a planner
    /// only picks messages whose deadline passed, and `deadline_ms` is later than its clock).
    pub fn apply(&mut self, lsn: u64, record: &Record) {
        match record {
            Record::Term => {}
            Record::Enqueue { body, dedup } => {
                if let Some(Dedup { key, at_ms }) = dedup {
                    self.expire_dedup(*at_ms);
                    if self.deduplicated(key, *at_ms).is_some() {
                        // A leader never writes this (it plans against the same state); a replay ignores it.
                        return;
                    }
                    self.remember(key, lsn, *at_ms);
                }
                if let Entry::Vacant(slot_entry) = self.messages.entry(lsn) {
                    slot_entry.insert(Message {
                        lane: Lane::Main,
                        body: body.clone(),
                        attempts: 0,
                        delivery: None,
                    });
                    self.lanes[slot(Lane::Main)].ready.insert(lsn);
                }
            }
            Record::Deliver {
                lane,
                ids,
                deadline_ms,
            } => {
                for &id in ids {
                    self.deliver(*lane, id, lsn, *deadline_ms);
                }
            }
            Record::Ack { lane, receipts } => {
                for receipt in receipts {
                    if self.is_current(*lane, receipt)
                        && let Some(m) = self.messages.remove(&receipt.id)
                    {
                        self.lanes[slot(m.lane)].remove(receipt.id, m.delivery);
                    }
                }
            }
            Record::Requeue { lane, receipts } => {
                for receipt in receipts {
                    if self.is_current(*lane, receipt) {
                        self.set_delivery(receipt.id, None);
                    }
                }
            }
            Record::DeadLetter { ids } => {
                for &id in ids {
                    self.dead_letter(id);
                }
            }
            Record::Snapshot(snapshot) => *self = ShardState::from_snapshot(snapshot),
        }
    }

    fn deliver(&mut self, lane: Lane, id: MessageId, lsn: u64, deadline_ms: u64) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if m.lane != lane {
            return;
        }
        if let Some((delivered_at, deadline)) = m.delivery
            && (delivered_at >= lsn || deadline > deadline_ms)
        {
            return;
        }
        let index = &mut self.lanes[slot(lane)];
        index.remove(id, m.delivery);
        m.attempts = m.attempts.saturating_add(1);
        m.delivery = Some((lsn, deadline_ms));
        index.insert(id, m.delivery);
    }

    fn dead_letter(&mut self, id: MessageId) {
        let Some(m) = self.messages.get_mut(&id) else {
            return;
        };
        if m.lane != Lane::Main {
            return;
        }
        self.lanes[slot(Lane::Main)].remove(id, m.delivery);
        m.lane = Lane::Dead;
        m.attempts = 0;
        m.delivery = None;
        self.lanes[slot(Lane::Dead)].insert(id, None);
    }

    /// Moves a live message to `delivery` within its lane.
    fn set_delivery(&mut self, id: MessageId, delivery: Option<(u64, u64)>) {
        if let Some(m) = self.messages.get_mut(&id) {
            let index = &mut self.lanes[slot(m.lane)];
            index.remove(id, m.delivery);
            m.delivery = delivery;
            index.insert(id, delivery);
        }
    }

    /// Whether `receipt` is the current delivery of a live message of `lane`.
    fn is_current(&self, lane: Lane, receipt: &Receipt) -> bool {
        self.messages.get(&receipt.id).is_some_and(|m| {
            m.lane == lane && matches!(m.delivery, Some((at, _)) if at == receipt.delivery)
        })
    }

    /// Receive candidates of `lane` at `now_ms`, in id order, at most `limit` of them: ready messages, and in-flight
    /// messages whose deadline is at or before `now_ms`.
    ///
    /// At most `limit` ready and `limit` expired ids are looked at. When more than `limit` messages are expired, the
    /// ones that expired first are taken (then ordered by id), so the work stays bounded.
    fn candidates(&self, lane: Lane, now_ms: u64, limit: usize) -> Vec<MessageId> {
        let index = &self.lanes[slot(lane)];
        let mut expired: Vec<MessageId> = index.expired(now_ms).take(limit).collect();
        expired.sort_unstable();
        let mut ready = index.ready.iter().copied().take(limit).peekable();
        let mut expired = expired.into_iter().peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let next = match (ready.peek(), expired.peek()) {
                (Some(r), Some(e)) if r < e => ready.next(),
                (_, Some(_)) => expired.next(),
                (Some(_), None) => ready.next(),
                (None, None) => None,
            };
            match next {
                Some(id) => out.push(id),
                None => break,
            }
        }
        out
    }

    /// Plans a receive on `lane` of up to `max` messages at `now_ms`.
    ///
    /// Candidates are ready messages and in-flight messages whose deadline is at or before `now_ms`, in id order
    /// (FIFO for first deliveries; an expired message goes back in line at its id position). On [`Lane::Main`], a
    /// candidate whose attempts are at least `max_attempts` is not delivered: it goes into a `DeadLetter` record
    /// instead and does not count toward `max` (so `max_attempts == 0` dead-letters every candidate; pass
    /// `u32::MAX` for no limit). At most `max + 1024` candidates are considered; when more messages are expired
    /// than that, the ones that expired first are considered.
    ///
    /// Returns the records to append, in order: optionally one `DeadLetter`, then optionally one `Deliver` with
    /// deadline `now_ms + visibility_ms` (saturating). Empty when there is nothing to do, always when `max == 0`.
    pub fn plan_receive(
        &self,
        lane: Lane,
        max: usize,
        now_ms: u64,
        visibility_ms: u64,
        max_attempts: u32,
    ) -> Vec<Record> {
        let mut dead = Vec::new();
        let mut deliver = Vec::new();
        for id in self.candidates(lane, now_ms, max.saturating_add(DEAD_LETTER_SLACK)) {
            if deliver.len() >= max {
                break;
            }
            let Some(m) = self.messages.get(&id) else {
                continue;
            };
            if lane == Lane::Main && m.attempts >= max_attempts {
                dead.push(id);
            } else {
                deliver.push(id);
            }
        }
        let mut records = Vec::new();
        if !dead.is_empty() {
            records.push(Record::DeadLetter { ids: dead });
        }
        if !deliver.is_empty() {
            records.push(Record::Deliver {
                lane,
                ids: deliver,
                deadline_ms: now_ms.saturating_add(visibility_ms),
            });
        }
        records
    }

    /// After applying a `Deliver` at `lsn`, the messages it delivered (for the response), in the record's order.
    /// Ids it skipped, and ids listed twice, appear once at most.
    pub fn delivered(&self, lsn: u64, ids: &[MessageId]) -> Vec<Delivered> {
        let mut seen = BTreeSet::new();
        ids.iter()
            .filter(|&&id| seen.insert(id))
            .filter_map(|&id| {
                let m = self.messages.get(&id)?;
                match m.delivery {
                    Some((at, _)) if at == lsn => Some(Delivered {
                        id,
                        body: m.body.clone(),
                        receipt: Receipt { id, delivery: lsn },
                        attempt: m.attempts,
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Splits receipts into `(current, unknown)`, each in input order: current means the message exists in `lane`,
    /// is unacked, and its latest delivery is this receipt (even if its visibility expired, as long as it was not
    /// redelivered or nacked). Duplicates in the input count once.
    pub fn check_receipts(&self, lane: Lane, receipts: &[Receipt]) -> (Vec<Receipt>, Vec<Receipt>) {
        let mut seen = BTreeSet::new();
        receipts
            .iter()
            .filter(|&&r| seen.insert(r))
            .partition(|r| self.is_current(lane, r))
    }

    /// `(ready, inflight)` counts of a lane at `now_ms`; a message whose visibility expired but which was not
    /// redelivered yet counts as ready.
    pub fn counts(&self, lane: Lane, now_ms: u64) -> (usize, usize) {
        let index = &self.lanes[slot(lane)];
        let expired = index.expired(now_ms).count();
        (index.ready.len() + expired, index.inflight.len() - expired)
    }

    /// Earliest in-flight deadline in a lane (to wake long-polls), `None` if nothing is in flight. It may already
    /// have passed.
    pub fn next_deadline(&self, lane: Lane) -> Option<u64> {
        self.lanes[slot(lane)]
            .inflight
            .first()
            .map(|&(deadline, _)| deadline)
    }

    /// Whether a receive on `lane` at `now_ms` would find anything: a ready message, or an expired one. (On the
    /// main lane, what it finds may be dead-lettered rather than delivered.)
    pub fn has_deliverable(&self, lane: Lane, now_ms: u64) -> bool {
        let index = &self.lanes[slot(lane)];
        !index.ready.is_empty() || index.expired(now_ms).next().is_some()
    }

    /// Smallest id of any live message (any lane), `None` if empty: log segments entirely below it may be deleted.
    /// Every record below it concerns only messages that are gone, so replaying just the records at or after it
    /// onto an empty state gives this same state (property-tested).
    pub fn min_live_id(&self) -> Option<MessageId> {
        self.messages.first_key_value().map(|(&id, _)| id)
    }

    /// One live message, `None` if it does not exist (never enqueued, or acked).
    pub fn message(&self, id: MessageId) -> Option<StoredMessage> {
        self.messages.get(&id).map(|m| stored(id, m))
    }

    /// The state as a snapshot, messages in id order. `apply(Record::Snapshot(s))` (or [`from_snapshot`]) on any
    /// state reproduces this state exactly.
    ///
    /// [`from_snapshot`]: ShardState::from_snapshot
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            messages: self.messages.iter().map(|(&id, m)| stored(id, m)).collect(),
            dedup: self
                .dedup
                .iter()
                .map(|(key, (id, at))| (key.clone(), *id, *at))
                .collect(),
        }
    }

    /// Number of live messages, both lanes.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether the shard holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Checks that the indexes agree with the messages: each message is in exactly one place (its lane's ready set
    /// when it has no delivery, its lane's in-flight set under its deadline otherwise) and nothing else is
    /// indexed. O(n); for tests and debug assertions.
    pub fn check_consistency(&self) -> Result<(), String> {
        // Each message finds its own entry; with as many entries as messages, no other entry exists.
        for (&id, m) in &self.messages {
            let index = &self.lanes[slot(m.lane)];
            let found = match m.delivery {
                None => index.ready.contains(&id),
                Some((_, deadline)) => index.inflight.contains(&(deadline, id)),
            };
            if !found {
                return Err(format!(
                    "message {id} is not indexed where it belongs: {m:?}"
                ));
            }
        }
        let indexed: usize = self
            .lanes
            .iter()
            .map(|l| l.ready.len() + l.inflight.len())
            .sum();
        if indexed != self.messages.len() {
            return Err(format!(
                "{indexed} index entries for {} messages",
                self.messages.len()
            ));
        }
        Ok(())
    }
}

fn stored(id: MessageId, m: &Message) -> StoredMessage {
    StoredMessage {
        id,
        lane: m.lane,
        body: m.body.clone(),
        attempts: m.attempts,
        delivery: m.delivery,
    }
}
