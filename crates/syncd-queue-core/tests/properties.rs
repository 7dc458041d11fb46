//! Property tests: random operation sequences planned and applied on an owner, replayed from the record log on a
//! replica, with snapshot restores midway. After every record the two states are equal and the delivery invariants
//! hold; every plan is checked against a naive model of the candidates.

// `clippy.toml` allows `expect` in `#[test]` functions only; the checking helpers of this test crate need it too.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;
use syncd_queue_core::{
    Delivered, Lane, MessageId, Receipt, Record, ShardState, Snapshot, decode, encode,
};

const MAX_ATTEMPTS: u32 = 3;

/// Which receipt an ack or nack carries, resolved against the receipts handed out so far when the step runs.
#[derive(Debug, Clone)]
enum Pick {
    /// One of the receipts handed out (current or stale).
    Issued(Index),
    /// A receipt never handed out (an unknown delivery of a possibly live message).
    Forged(Index, u64),
}

#[derive(Debug, Clone)]
enum Op {
    Enqueue,
    Receive {
        lane: Lane,
        max: usize,
        visibility_ms: u64,
    },
    Ack {
        lane: LanePick,
        picks: Vec<Pick>,
    },
    Nack {
        lane: LanePick,
        picks: Vec<Pick>,
    },
    /// A new owner term (a no-op record).
    Term,
    /// The owner appends a snapshot of its state (a replica catching up after a purge applies it).
    SnapshotRecord,
    /// The owner restarts from a snapshot of its state (no record).
    RestoreOwner,
    /// The replica restarts from a snapshot of its own state (no record).
    RestoreReplica,
}

/// The lane of an ack or nack: the receipt's own lane (mostly), or a fixed one.
#[derive(Debug, Clone, Copy)]
enum LanePick {
    Own,
    Fixed(Lane),
}

#[derive(Debug, Clone)]
struct Step {
    /// Added to the owner's clock (saturating at 0): mostly forward, sometimes back (a new owner whose clock is
    /// behind).
    dt: i64,
    op: Op,
}

fn lane() -> impl Strategy<Value = Lane> {
    prop_oneof![3 => Just(Lane::Main), 1 => Just(Lane::Dead)]
}

fn lane_pick() -> impl Strategy<Value = LanePick> {
    prop_oneof![6 => Just(LanePick::Own), 1 => lane().prop_map(LanePick::Fixed)]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        8 => any::<Index>().prop_map(Pick::Issued),
        1 => (any::<Index>(), 0u64..3).prop_map(|(i, d)| Pick::Forged(i, d)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let picks = || proptest::collection::vec(pick(), 1..4);
    prop_oneof![
        6 => Just(Op::Enqueue),
        6 => (lane(), prop_oneof![1 => Just(0usize), 8 => 1usize..5], prop_oneof![1 => Just(0u64), 6 => 1u64..40])
            .prop_map(|(lane, max, visibility_ms)| Op::Receive { lane, max, visibility_ms }),
        3 => (lane_pick(), picks()).prop_map(|(lane, picks)| Op::Ack { lane, picks }),
        2 => (lane_pick(), picks()).prop_map(|(lane, picks)| Op::Nack { lane, picks }),
        1 => Just(Op::Term),
        1 => Just(Op::SnapshotRecord),
        1 => Just(Op::RestoreOwner),
        1 => Just(Op::RestoreReplica),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let dt = prop_oneof![
        3 => Just(0i64),
        6 => 1i64..10,
        2 => 10i64..60,
        1 => -15i64..0,
    ];
    (dt, op()).prop_map(|(dt, op)| Step { dt, op })
}

/// The owner, a replica replaying its log, and what the test has seen so far.
struct World {
    owner: ShardState,
    replica: ShardState,
    next_lsn: u64,
    now_ms: u64,
    /// Every record appended, with its lsn.
    log: Vec<(u64, Record)>,
    /// Every receipt handed out, with its lane.
    issued: Vec<(Lane, Receipt)>,
    enqueued: BTreeSet<MessageId>,
    acked: BTreeSet<MessageId>,
    /// Ids of first main-lane deliveries (attempt 1), in delivery order.
    first_main: Vec<MessageId>,
    /// Attempts of each live message, per the Delivered answers (reset when dead-lettered).
    attempts: BTreeMap<MessageId, u32>,
}

impl World {
    fn new() -> World {
        World {
            owner: ShardState::default(),
            replica: ShardState::default(),
            next_lsn: 1,
            now_ms: 0,
            log: Vec::new(),
            issued: Vec::new(),
            enqueued: BTreeSet::new(),
            acked: BTreeSet::new(),
            first_main: Vec::new(),
            attempts: BTreeMap::new(),
        }
    }

    /// Appends a record: the owner applies it, the "log" carries it (encoded, as the payload would be) to the
    /// replica, which applies the decoded copy. Returns its lsn.
    fn append(&mut self, record: Record) -> Result<u64, TestCaseError> {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.owner.apply(lsn, &record);
        let shipped = decode(&encode(&record)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&shipped, &record);
        self.replica.apply(lsn, &shipped);
        self.log.push((lsn, record));
        self.check()?;
        Ok(lsn)
    }

    fn resolve(&self, pick: &Pick) -> Option<(Lane, Receipt)> {
        match pick {
            Pick::Issued(i) if !self.issued.is_empty() => Some(*i.get(&self.issued)),
            Pick::Forged(i, d) if !self.issued.is_empty() => {
                let (lane, r) = *i.get(&self.issued);
                Some((
                    lane,
                    Receipt {
                        id: r.id,
                        delivery: r.delivery + 1 + d,
                    },
                ))
            }
            _ => None,
        }
    }

    fn settle(&mut self, ack: bool, lane: LanePick, picks: &[Pick]) -> Result<(), TestCaseError> {
        let resolved: Vec<(Lane, Receipt)> = picks.iter().filter_map(|p| self.resolve(p)).collect();
        let Some(&(first_lane, _)) = resolved.first() else {
            return Ok(());
        };
        let lane = match lane {
            LanePick::Own => first_lane,
            LanePick::Fixed(lane) => lane,
        };
        let receipts: Vec<Receipt> = resolved.iter().map(|&(_, r)| r).collect();
        let (current, unknown) = self.owner.check_receipts(lane, &receipts);
        // Each distinct receipt lands in exactly one of the two lists.
        let distinct: BTreeSet<Receipt> = receipts.iter().copied().collect();
        prop_assert_eq!(current.len() + unknown.len(), distinct.len());
        let split: BTreeSet<Receipt> = current.iter().chain(&unknown).copied().collect();
        prop_assert_eq!(&split, &distinct);
        for r in &current {
            let m = self
                .owner
                .message(r.id)
                .expect("a current receipt's message is live");
            prop_assert_eq!(m.lane, lane);
            prop_assert_eq!(m.delivery.map(|(at, _)| at), Some(r.delivery));
        }
        // The record carries every receipt, stale ones included: apply must ignore those.
        let before = self.owner.len();
        if ack {
            // Recorded first: `append` checks live == enqueued - acked.
            for r in &current {
                self.acked.insert(r.id);
                self.attempts.remove(&r.id);
            }
            self.append(Record::Ack { lane, receipts })?;
            prop_assert_eq!(self.owner.len(), before - current.len());
        } else {
            self.append(Record::Requeue { lane, receipts })?;
            prop_assert_eq!(self.owner.len(), before);
            for r in &current {
                let m = self.owner.message(r.id).expect("a nacked message stays");
                prop_assert_eq!(m.delivery, None);
                prop_assert_eq!(Some(&m.attempts), self.attempts.get(&r.id));
            }
        }
        Ok(())
    }

    fn receive(&mut self, lane: Lane, max: usize, visibility_ms: u64) -> Result<(), TestCaseError> {
        let now = self.now_ms;
        let plan = self
            .owner
            .plan_receive(lane, max, now, visibility_ms, MAX_ATTEMPTS);
        let (want_dead, want_deliver) = model_plan(&self.owner.snapshot(), lane, max, now);
        let mut got_dead = Vec::new();
        let mut got_deliver = Vec::new();
        prop_assert!(plan.len() <= 2);
        for (i, record) in plan.iter().enumerate() {
            match record {
                Record::DeadLetter { ids } => {
                    prop_assert_eq!(i, 0, "DeadLetter comes first");
                    prop_assert!(!ids.is_empty());
                    got_dead = ids.clone();
                }
                Record::Deliver {
                    lane: l,
                    ids,
                    deadline_ms,
                } => {
                    prop_assert_eq!(i, plan.len() - 1, "Deliver comes last");
                    prop_assert_eq!(*l, lane);
                    prop_assert_eq!(*deadline_ms, now + visibility_ms);
                    prop_assert!(!ids.is_empty());
                    got_deliver = ids.clone();
                }
                other => prop_assert!(false, "unexpected record in a plan: {:?}", other),
            }
        }
        prop_assert_eq!(&got_dead, &want_dead);
        prop_assert_eq!(&got_deliver, &want_deliver);
        prop_assert_eq!(
            plan.is_empty(),
            max == 0 || !self.owner.has_deliverable(lane, now)
        );

        for record in plan {
            let deliver_ids = match &record {
                Record::Deliver { ids, .. } => Some(ids.clone()),
                Record::DeadLetter { ids } => {
                    for id in ids {
                        self.attempts.insert(*id, 0);
                    }
                    None
                }
                _ => None,
            };
            let lsn = self.append(record)?;
            if let Some(ids) = deliver_ids {
                let delivered = self.owner.delivered(lsn, &ids);
                prop_assert_eq!(&self.replica.delivered(lsn, &ids), &delivered);
                self.record_deliveries(lane, &ids, &delivered, lsn)?;
            }
        }
        Ok(())
    }

    fn record_deliveries(
        &mut self,
        lane: Lane,
        ids: &[MessageId],
        delivered: &[Delivered],
        lsn: u64,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            delivered.iter().map(|d| d.id).collect::<Vec<_>>(),
            ids.to_vec()
        );
        for d in delivered {
            prop_assert!(
                !self.acked.contains(&d.id),
                "acked message {} delivered again",
                d.id
            );
            prop_assert_eq!(
                d.receipt,
                Receipt {
                    id: d.id,
                    delivery: lsn
                }
            );
            prop_assert_eq!(&d.body, &body(d.id));
            let before = self.attempts.get(&d.id).copied().unwrap_or(0);
            prop_assert_eq!(d.attempt, before + 1);
            self.attempts.insert(d.id, d.attempt);
            if lane == Lane::Main {
                prop_assert!(d.attempt <= MAX_ATTEMPTS);
                if d.attempt == 1 {
                    self.first_main.push(d.id);
                }
            }
            self.issued.push((lane, d.receipt));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let snap = self.owner.snapshot();
        // Determinism: the replica that replays the log equals the owner.
        prop_assert_eq!(&self.replica.snapshot(), &snap);
        prop_assert_eq!(&self.replica, &self.owner);
        self.owner
            .check_consistency()
            .map_err(TestCaseError::fail)?;
        self.replica
            .check_consistency()
            .map_err(TestCaseError::fail)?;

        // Live = enqueued - acked.
        let live: BTreeSet<MessageId> = snap.messages.iter().map(|m| m.id).collect();
        let expected: BTreeSet<MessageId> =
            self.enqueued.difference(&self.acked).copied().collect();
        prop_assert_eq!(&live, &expected);
        prop_assert_eq!(self.owner.len(), live.len());
        prop_assert_eq!(self.owner.is_empty(), live.is_empty());
        prop_assert_eq!(self.owner.min_live_id(), live.first().copied());

        // Every message in exactly one place: the per-lane ready/in-flight counts add up to the snapshot's.
        for lane in [Lane::Main, Lane::Dead] {
            let of_lane: Vec<_> = snap.messages.iter().filter(|m| m.lane == lane).collect();
            let expired = |m: &&&syncd_queue_core::StoredMessage| {
                m.delivery
                    .is_none_or(|(_, deadline)| deadline <= self.now_ms)
            };
            let ready = of_lane.iter().filter(expired).count();
            prop_assert_eq!(
                self.owner.counts(lane, self.now_ms),
                (ready, of_lane.len() - ready)
            );
            prop_assert_eq!(
                self.owner.next_deadline(lane),
                of_lane
                    .iter()
                    .filter_map(|m| m.delivery.map(|(_, d)| d))
                    .min()
            );
            prop_assert_eq!(self.owner.has_deliverable(lane, self.now_ms), ready > 0);
        }

        // The records before the smallest live id can go: replaying only the rest gives the same state.
        let from = self.owner.min_live_id().unwrap_or(u64::MAX);
        let mut suffix = ShardState::default();
        for (lsn, record) in self.log.iter().filter(|(lsn, _)| *lsn >= from) {
            suffix.apply(*lsn, record);
        }
        prop_assert_eq!(&suffix, &self.owner, "replay from lsn {}", from);

        // First main-lane deliveries in id order.
        prop_assert!(
            self.first_main.windows(2).all(|w| w[0] < w[1]),
            "first deliveries out of order: {:?}",
            self.first_main
        );
        Ok(())
    }
}

fn body(id: MessageId) -> String {
    format!("message {id}")
}

/// The candidates a receive should take, computed naively from a snapshot: (dead-lettered, delivered).
fn model_plan(
    snap: &Snapshot,
    lane: Lane,
    max: usize,
    now: u64,
) -> (Vec<MessageId>, Vec<MessageId>) {
    let mut dead = Vec::new();
    let mut deliver = Vec::new();
    // Snapshots list messages in id order.
    for m in &snap.messages {
        if deliver.len() >= max {
            break;
        }
        let candidate = m.lane == lane && m.delivery.is_none_or(|(_, deadline)| deadline <= now);
        if !candidate {
            continue;
        }
        if lane == Lane::Main && m.attempts >= MAX_ATTEMPTS {
            dead.push(m.id);
        } else {
            deliver.push(m.id);
        }
    }
    (dead, deliver)
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::new();
    for step in steps {
        w.now_ms = w.now_ms.saturating_add_signed(step.dt);
        match &step.op {
            Op::Enqueue => {
                let lsn = w.next_lsn;
                w.enqueued.insert(lsn);
                let id = w.append(Record::Enqueue {
                    body: body(lsn),
                    dedup: None,
                })?;
                prop_assert_eq!(id, lsn);
            }
            Op::Receive {
                lane,
                max,
                visibility_ms,
            } => w.receive(*lane, *max, *visibility_ms)?,
            Op::Ack { lane, picks } => w.settle(true, *lane, picks)?,
            Op::Nack { lane, picks } => w.settle(false, *lane, picks)?,
            Op::Term => {
                w.append(Record::Term)?;
            }
            Op::SnapshotRecord => {
                let snap = w.owner.snapshot();
                w.append(Record::Snapshot(snap))?;
            }
            Op::RestoreOwner => {
                let mut restored = ShardState::default();
                restored.apply(w.next_lsn, &Record::Snapshot(w.owner.snapshot()));
                w.owner = restored;
                w.check()?;
            }
            Op::RestoreReplica => {
                w.replica = ShardState::from_snapshot(&w.replica.snapshot());
                w.check()?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn owner_and_replica_agree_and_deliveries_are_sound(steps in proptest::collection::vec(step(), 1..80)) {
        run(&steps)?;
    }

    #[test]
    fn receipts_round_trip_through_text(id in any::<u64>(), delivery in any::<u64>()) {
        let r = Receipt { id, delivery };
        let text = r.to_string();
        prop_assert_eq!(text.parse::<Receipt>(), Ok(r));
    }

    #[test]
    fn parsed_receipt_text_is_canonical(text in "[-+0-9a]{0,24}") {
        if let Ok(r) = text.parse::<Receipt>() {
            prop_assert_eq!(r.to_string(), text);
        }
    }

    #[test]
    fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes);
        let mut versioned = vec![1u8];
        versioned.extend_from_slice(&bytes);
        let _ = decode(&versioned);
    }
}
