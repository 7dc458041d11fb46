//! Unit tests of the shard state machine, one behaviour per test.

use crate::{
    DecodeError, Delivered, Lane, MessageId, ParseReceiptError, Receipt, Record, ShardState,
    Snapshot, StoredMessage, decode, encode,
};

const VIS: u64 = 1_000;
const MAX_ATTEMPTS: u32 = 3;

/// An owner: a state plus the next lsn; plans, appends (to `log`) and applies like the service would.
#[derive(Default)]
struct Owner {
    state: ShardState,
    next_lsn: u64,
    log: Vec<(u64, Record)>,
}

impl Owner {
    fn new() -> Owner {
        Owner {
            next_lsn: 1,
            ..Owner::default()
        }
    }

    fn append(&mut self, record: Record) -> u64 {
        let lsn = self.next_lsn;
        self.next_lsn += 1;
        self.state.apply(lsn, &record);
        self.state.check_consistency().unwrap();
        self.log.push((lsn, record));
        lsn
    }

    fn enqueue(&mut self, body: &str) -> MessageId {
        self.append(Record::Enqueue {
            body: body.to_owned(),
            dedup: None,
        })
    }

    fn receive_with(
        &mut self,
        lane: Lane,
        max: usize,
        now_ms: u64,
        max_attempts: u32,
    ) -> Vec<Delivered> {
        let mut out = Vec::new();
        for record in self
            .state
            .plan_receive(lane, max, now_ms, VIS, max_attempts)
        {
            let ids = match &record {
                Record::Deliver { ids, .. } => Some(ids.clone()),
                _ => None,
            };
            let lsn = self.append(record);
            if let Some(ids) = ids {
                out = self.state.delivered(lsn, &ids);
                assert_eq!(out.len(), ids.len());
            }
        }
        out
    }

    fn receive(&mut self, lane: Lane, max: usize, now_ms: u64) -> Vec<Delivered> {
        self.receive_with(lane, max, now_ms, MAX_ATTEMPTS)
    }

    fn ack(&mut self, lane: Lane, receipts: &[Receipt]) -> (Vec<Receipt>, Vec<Receipt>) {
        let split = self.state.check_receipts(lane, receipts);
        self.append(Record::Ack {
            lane,
            receipts: receipts.to_vec(),
        });
        split
    }

    fn nack(&mut self, lane: Lane, receipts: &[Receipt]) -> (Vec<Receipt>, Vec<Receipt>) {
        let split = self.state.check_receipts(lane, receipts);
        self.append(Record::Requeue {
            lane,
            receipts: receipts.to_vec(),
        });
        split
    }

    /// A replica that replays the whole log.
    fn replay(&self) -> ShardState {
        let mut replica = ShardState::default();
        for (lsn, record) in &self.log {
            replica.apply(*lsn, record);
        }
        replica
    }
}

fn ids(delivered: &[Delivered]) -> Vec<MessageId> {
    delivered.iter().map(|d| d.id).collect()
}

fn receipts(delivered: &[Delivered]) -> Vec<Receipt> {
    delivered.iter().map(|d| d.receipt).collect()
}

#[test]
fn first_deliveries_are_fifo() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    let c = o.enqueue("c");
    let first = o.receive(Lane::Main, 2, 0);
    assert_eq!(ids(&first), vec![a, b]);
    assert_eq!(first[0].body, "a");
    assert_eq!(first[0].attempt, 1);
    assert_eq!(first[1].receipt.id, b);
    let d = o.enqueue("d");
    assert_eq!(ids(&o.receive(Lane::Main, 10, 0)), vec![c, d]);
    assert!(o.receive(Lane::Main, 10, 0).is_empty());
    assert_eq!(o.replay(), o.state);
}

#[test]
fn enqueue_ids_are_lsns() {
    let mut o = Owner::new();
    o.append(Record::Term);
    let id = o.enqueue("x");
    assert_eq!(id, 2);
    let m = o.state.message(id).unwrap();
    assert_eq!(
        m,
        StoredMessage {
            id,
            lane: Lane::Main,
            body: "x".into(),
            attempts: 0,
            delivery: None,
        }
    );
    // The same lsn applied twice (a duplicate) changes nothing.
    o.state.apply(
        id,
        &Record::Enqueue {
            body: "y".into(),
            dedup: None,
        },
    );
    assert_eq!(o.state.message(id).unwrap().body, "x");
    assert_eq!(o.state.len(), 1);
}

#[test]
fn expired_visibility_redelivers_with_next_attempt_and_old_receipt_is_unknown() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let first = o.receive(Lane::Main, 1, 100);
    let old = first[0].receipt;
    // Not yet expired: nothing to receive.
    assert!(o.receive(Lane::Main, 1, 100 + VIS - 1).is_empty());
    // Expired but not redelivered: the receipt still works.
    assert_eq!(
        o.state.check_receipts(Lane::Main, &[old]),
        (vec![old], vec![])
    );
    let second = o.receive(Lane::Main, 1, 100 + VIS);
    assert_eq!(ids(&second), vec![a]);
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].receipt, old);
    assert_eq!(
        o.state.check_receipts(Lane::Main, &[old]),
        (vec![], vec![old])
    );
    // Acking with the old receipt does nothing; the new one removes the message.
    assert_eq!(o.ack(Lane::Main, &[old]), (vec![], vec![old]));
    assert_eq!(o.state.len(), 1);
    assert_eq!(
        o.ack(Lane::Main, &[second[0].receipt]),
        (vec![second[0].receipt], vec![])
    );
    assert!(o.state.is_empty());
    assert_eq!(o.replay(), o.state);
}

#[test]
fn expired_message_goes_back_in_line_at_its_id_position() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    assert_eq!(ids(&o.receive(Lane::Main, 1, 0)), vec![a]);
    let c = o.enqueue("c");
    // a expired at VIS: it comes before b and c.
    assert_eq!(ids(&o.receive(Lane::Main, 3, VIS)), vec![a, b, c]);
}

#[test]
fn ack_removes() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    let got = o.receive(Lane::Main, 2, 0);
    let (current, unknown) = o.ack(Lane::Main, &[got[0].receipt]);
    assert_eq!(current, vec![got[0].receipt]);
    assert!(unknown.is_empty());
    assert!(o.state.message(a).is_none());
    assert_eq!(o.state.len(), 1);
    // Once acked, never delivered again, even long after its deadline.
    assert_eq!(ids(&o.receive(Lane::Main, 10, 10 * VIS)), vec![b]);
    assert_eq!(o.replay(), o.state);
}

#[test]
fn ack_with_stale_or_foreign_receipt_is_ignored() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let got = o.receive(Lane::Main, 1, 0);
    let r = got[0].receipt;
    let bogus = [
        Receipt {
            id: a,
            delivery: r.delivery + 1,
        },
        Receipt {
            id: 999,
            delivery: r.delivery,
        },
    ];
    let (current, unknown) = o.ack(Lane::Main, &bogus);
    assert!(current.is_empty());
    assert_eq!(unknown, bogus.to_vec());
    // The right receipt on the wrong lane is unknown too.
    assert_eq!(o.ack(Lane::Dead, &[r]), (vec![], vec![r]));
    assert_eq!(o.state.len(), 1);
    // A second ack of the same receipt is unknown.
    assert_eq!(o.ack(Lane::Main, &[r]), (vec![r], vec![]));
    assert_eq!(o.ack(Lane::Main, &[r]), (vec![], vec![r]));
    assert!(o.state.is_empty());
}

#[test]
fn check_receipts_counts_duplicates_once() {
    let mut o = Owner::new();
    o.enqueue("a");
    let r = o.receive(Lane::Main, 1, 0)[0].receipt;
    let stale = Receipt { id: 5, delivery: 6 };
    let (current, unknown) = o.state.check_receipts(Lane::Main, &[r, stale, r, stale]);
    assert_eq!(current, vec![r]);
    assert_eq!(unknown, vec![stale]);
}

#[test]
fn nack_requeues_at_id_position_and_keeps_attempts() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    let c = o.enqueue("c");
    let got = o.receive(Lane::Main, 2, 0);
    assert_eq!(ids(&got), vec![a, b]);
    let (current, _) = o.nack(Lane::Main, &[got[1].receipt]);
    assert_eq!(current, vec![got[1].receipt]);
    // b is ready again now, ahead of c; a stays in flight.
    assert_eq!(o.state.counts(Lane::Main, 0), (2, 1));
    let again = o.receive(Lane::Main, 2, 0);
    assert_eq!(ids(&again), vec![b, c]);
    assert_eq!(again[0].attempt, 2);
    assert_eq!(again[1].attempt, 1);
    // The nacked receipt no longer works.
    assert_eq!(
        o.nack(Lane::Main, &[got[1].receipt]),
        (vec![], vec![got[1].receipt])
    );
    assert_eq!(o.replay(), o.state);
}

#[test]
fn max_attempts_dead_letters_then_delivers_on_dead_lane_with_attempts_reset() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    let mut now = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        let got = o.receive(Lane::Main, 1, now);
        assert_eq!(ids(&got), vec![a]);
        assert_eq!(got[0].attempt, attempt);
        o.nack(Lane::Main, &[got[0].receipt]);
        now += 1;
    }
    // a has had MAX_ATTEMPTS deliveries: the next receive dead-letters it and delivers b instead.
    let plan = o.state.plan_receive(Lane::Main, 1, now, VIS, MAX_ATTEMPTS);
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0], Record::DeadLetter { ids: vec![a] });
    assert!(
        matches!(&plan[1], Record::Deliver { lane: Lane::Main, ids, deadline_ms }
        if *ids == vec![b] && *deadline_ms == now + VIS)
    );
    let got = o.receive(Lane::Main, 1, now);
    assert_eq!(ids(&got), vec![b]);
    let m = o.state.message(a).unwrap();
    assert_eq!((m.lane, m.attempts, m.delivery), (Lane::Dead, 0, None));
    assert_eq!(o.state.counts(Lane::Dead, now), (1, 0));
    assert_eq!(o.state.counts(Lane::Main, now), (0, 1));
    // On the dead lane it is delivered from attempt 1, and never dead-lettered again.
    for attempt in 1..=MAX_ATTEMPTS + 2 {
        let got = o.receive(Lane::Dead, 5, now);
        assert_eq!(ids(&got), vec![a]);
        assert_eq!(got[0].attempt, attempt);
        assert_eq!(got[0].body, "a");
        now += VIS;
    }
    // Acking it on the dead lane removes it.
    let got = o.receive(Lane::Dead, 5, now);
    assert_eq!(o.ack(Lane::Main, &receipts(&got)).0, vec![]);
    assert_eq!(o.ack(Lane::Dead, &receipts(&got)).0, receipts(&got));
    assert!(o.state.message(a).is_none());
    assert_eq!(o.replay(), o.state);
}

#[test]
fn expired_message_at_max_attempts_is_dead_lettered() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    assert_eq!(o.receive_with(Lane::Main, 1, 0, 1).len(), 1);
    // In flight: not a candidate yet.
    assert!(
        o.state
            .plan_receive(Lane::Main, 1, VIS - 1, VIS, 1)
            .is_empty()
    );
    assert_eq!(
        o.state.plan_receive(Lane::Main, 1, VIS, VIS, 1),
        vec![Record::DeadLetter { ids: vec![a] }]
    );
    assert!(o.receive_with(Lane::Main, 1, VIS, 1).is_empty());
    assert_eq!(o.state.message(a).unwrap().lane, Lane::Dead);
}

#[test]
fn dead_letter_applies_only_to_main_lane_messages() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    o.append(Record::DeadLetter {
        ids: vec![a, 12345],
    });
    let got = o.receive(Lane::Dead, 1, 0);
    assert_eq!(got[0].attempt, 1);
    // A second DeadLetter of a dead message does not reset it.
    o.append(Record::DeadLetter { ids: vec![a] });
    let m = o.state.message(a).unwrap();
    assert_eq!((m.lane, m.attempts), (Lane::Dead, 1));
    assert!(m.delivery.is_some());
}

#[test]
fn receive_considers_at_most_max_plus_1024_candidates() {
    let mut o = Owner::new();
    for i in 0..1100 {
        o.enqueue(&format!("m{i}"));
    }
    // Every message delivered once with no visibility: all expired at once.
    let plan = o.state.plan_receive(Lane::Main, usize::MAX, 0, 0, 1);
    assert!(matches!(&plan[..], [Record::Deliver { ids, .. }] if ids.len() == 1100));
    for record in plan {
        o.append(record);
    }
    let plan = o.state.plan_receive(Lane::Main, 1, 0, VIS, 1);
    match &plan[..] {
        [Record::DeadLetter { ids }] => {
            assert_eq!(ids.len(), 1 + 1024);
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        other => panic!("unexpected plan {other:?}"),
    }
}

#[test]
fn plan_receive_of_zero_max_does_nothing() {
    let mut o = Owner::new();
    o.enqueue("a");
    assert!(o.state.plan_receive(Lane::Main, 0, 0, VIS, 0).is_empty());
    assert!(o.state.plan_receive(Lane::Dead, 0, 0, VIS, 0).is_empty());
    // Nothing to receive at all is also an empty plan.
    assert!(o.state.plan_receive(Lane::Dead, 10, 0, VIS, 3).is_empty());
    assert!(
        ShardState::default()
            .plan_receive(Lane::Main, 10, 0, VIS, 3)
            .is_empty()
    );
}

#[test]
fn deliver_skips_unknown_foreign_and_unexpired_messages() {
    let mut o = Owner::new();
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    o.append(Record::DeadLetter { ids: vec![b] });
    let lsn = o.append(Record::Deliver {
        lane: Lane::Main,
        ids: vec![a, a, b, 777],
        deadline_ms: 500,
    });
    assert_eq!(o.state.message(a).unwrap().attempts, 1);
    assert_eq!(o.state.message(b).unwrap().delivery, None);
    let got = o.state.delivered(lsn, &[a, a, b, 777]);
    assert_eq!(ids(&got), vec![a]);
    // A Deliver planned before a's deadline (its own deadline is earlier than a's) is stale: skipped.
    let stale = o.append(Record::Deliver {
        lane: Lane::Main,
        ids: vec![a],
        deadline_ms: 499,
    });
    assert!(o.state.delivered(stale, &[a]).is_empty());
    assert_eq!(o.state.message(a).unwrap().delivery, Some((lsn, 500)));
}

#[test]
fn receipts_print_and_parse() {
    let r = Receipt {
        id: 17,
        delivery: 42,
    };
    assert_eq!(r.to_string(), "17-42");
    assert_eq!("17-42".parse::<Receipt>(), Ok(r));
    assert_eq!("0-0".parse::<Receipt>(), Ok(Receipt { id: 0, delivery: 0 }));
    let max = Receipt {
        id: u64::MAX,
        delivery: u64::MAX,
    };
    assert_eq!(max.to_string().parse::<Receipt>(), Ok(max));
    for bad in [
        "", "-", "17", "17-", "-42", "+17-42", "17-+42", "17--42", "17-42-1", "-17-42", " 17-42",
        "17-42 ", "17 -42", "1a-42", "17-4x", "017-42", "17-042", "00-1", "17_42", "٣-42",
    ] {
        assert_eq!(
            bad.parse::<Receipt>(),
            Err(ParseReceiptError::Format),
            "{bad:?}"
        );
    }
    for bad in [
        "18446744073709551616-1",
        "1-18446744073709551616",
        "99999999999999999999-1",
    ] {
        assert_eq!(
            bad.parse::<Receipt>(),
            Err(ParseReceiptError::OutOfRange),
            "{bad:?}"
        );
    }
    assert!(!ParseReceiptError::Format.to_string().is_empty());
}

#[test]
fn counts_treat_expired_as_ready() {
    let mut o = Owner::new();
    for body in ["a", "b", "c", "d"] {
        o.enqueue(body);
    }
    assert_eq!(o.state.counts(Lane::Main, 0), (4, 0));
    o.receive(Lane::Main, 1, 0); // deadline VIS
    o.receive(Lane::Main, 2, 10); // deadline VIS + 10
    assert_eq!(o.state.counts(Lane::Main, 0), (1, 3));
    assert_eq!(o.state.counts(Lane::Main, VIS - 1), (1, 3));
    assert_eq!(o.state.counts(Lane::Main, VIS), (2, 2));
    assert_eq!(o.state.counts(Lane::Main, VIS + 10), (4, 0));
    assert_eq!(o.state.counts(Lane::Dead, VIS + 10), (0, 0));
    assert_eq!(o.state.len(), 4);
}

#[test]
fn deadlines_and_deliverability() {
    let mut o = Owner::new();
    assert_eq!(o.state.next_deadline(Lane::Main), None);
    assert!(!o.state.has_deliverable(Lane::Main, 0));
    o.enqueue("a");
    o.enqueue("b");
    assert!(o.state.has_deliverable(Lane::Main, 0));
    assert!(!o.state.has_deliverable(Lane::Dead, 0));
    o.receive(Lane::Main, 1, 50);
    assert_eq!(o.state.next_deadline(Lane::Main), Some(50 + VIS));
    o.receive(Lane::Main, 1, 0);
    assert_eq!(o.state.next_deadline(Lane::Main), Some(VIS));
    assert!(!o.state.has_deliverable(Lane::Main, VIS - 1));
    assert!(o.state.has_deliverable(Lane::Main, VIS));
    assert_eq!(o.state.next_deadline(Lane::Dead), None);
}

#[test]
fn min_live_id_is_smallest_id_of_any_lane() {
    let mut o = Owner::new();
    assert_eq!(o.state.min_live_id(), None);
    let a = o.enqueue("a");
    let b = o.enqueue("b");
    o.append(Record::DeadLetter { ids: vec![a] });
    assert_eq!(o.state.min_live_id(), Some(a));
    let got = o.receive(Lane::Dead, 1, 0);
    o.ack(Lane::Dead, &receipts(&got));
    assert_eq!(o.state.min_live_id(), Some(b));
    let got = o.receive(Lane::Main, 1, 0);
    o.ack(Lane::Main, &receipts(&got));
    assert_eq!(o.state.min_live_id(), None);
}

/// A state with messages in every place: ready, in flight, expired, dead ready and dead in flight.
fn busy_owner() -> Owner {
    let mut o = Owner::new();
    for i in 0..8 {
        o.enqueue(&format!("body {i} \"quoted\" \u{e9}\n"));
    }
    o.receive(Lane::Main, 2, 0);
    o.receive(Lane::Main, 1, 5 * VIS);
    let got = o.receive_with(Lane::Main, 1, 6 * VIS, 1);
    o.nack(Lane::Main, &receipts(&got));
    o.receive_with(Lane::Main, 3, 10 * VIS, 1);
    o.receive(Lane::Dead, 1, 10 * VIS);
    o
}

#[test]
fn snapshot_round_trip() {
    let o = busy_owner();
    let snap = o.state.snapshot();
    assert!(snap.messages.iter().any(|m| m.lane == Lane::Dead));
    assert!(snap.messages.iter().any(|m| m.delivery.is_some()));
    assert!(snap.messages.iter().any(|m| m.delivery.is_none()));
    assert!(snap.messages.windows(2).all(|w| w[0].id < w[1].id));

    let mut restored = ShardState::default();
    restored.apply(1_000, &Record::Snapshot(snap.clone()));
    restored.check_consistency().unwrap();
    assert_eq!(restored, o.state);
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(ShardState::from_snapshot(&snap), o.state);

    // A snapshot replaces whatever was there.
    let mut other = busy_owner();
    other.enqueue("extra");
    other.state.apply(99_999, &Record::Snapshot(snap.clone()));
    assert_eq!(other.state, o.state);

    // Restored, it behaves the same from there on.
    for now in [10 * VIS, 20 * VIS] {
        assert_eq!(
            restored.plan_receive(Lane::Main, 3, now, VIS, 2),
            o.state.plan_receive(Lane::Main, 3, now, VIS, 2)
        );
        assert_eq!(
            restored.counts(Lane::Dead, now),
            o.state.counts(Lane::Dead, now)
        );
    }

    // Through JSON too.
    let json = serde_json::to_string(&snap).unwrap();
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snap);

    // The empty snapshot empties the state.
    restored.apply(1_001, &Record::Snapshot(Snapshot::default()));
    assert!(restored.is_empty());
    assert_eq!(restored, ShardState::default());
}

#[test]
fn snapshot_with_a_repeated_id_keeps_the_last_entry() {
    let m = |lane, delivery| StoredMessage {
        id: 7,
        lane,
        body: "x".into(),
        attempts: 1,
        delivery,
    };
    let snap = Snapshot {
        messages: vec![m(Lane::Main, Some((9, 100))), m(Lane::Dead, None)],
        dedup: Vec::new(),
    };
    let state = ShardState::from_snapshot(&snap);
    state.check_consistency().unwrap();
    assert_eq!(state.snapshot().messages, vec![m(Lane::Dead, None)]);
}

#[test]
fn encode_decode_round_trip() {
    let o = busy_owner();
    let mut records: Vec<Record> = o.log.iter().map(|(_, r)| r.clone()).collect();
    records.push(Record::Term);
    records.push(Record::Snapshot(o.state.snapshot()));
    records.push(Record::Enqueue {
        body: String::new(),
        dedup: None,
    });
    records.push(Record::Enqueue {
        body: "k".into(),
        dedup: Some(crate::Dedup {
            key: "order-7".into(),
            at_ms: 42,
        }),
    });
    records.push(Record::Ack {
        lane: Lane::Dead,
        receipts: vec![
            Receipt { id: 1, delivery: 2 },
            Receipt {
                id: u64::MAX,
                delivery: u64::MAX,
            },
        ],
    });
    records.push(Record::Requeue {
        lane: Lane::Main,
        receipts: vec![],
    });
    for record in records {
        let bytes = encode(&record);
        assert_eq!(bytes[0], crate::record::FORMAT_VERSION);
        assert_eq!(decode(&bytes).unwrap(), record);
    }
}

#[test]
fn decoding_garbage_is_an_error() {
    assert!(matches!(decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(
        decode(b"\x02{}"),
        Err(DecodeError::UnsupportedVersion(2))
    ));
    assert!(matches!(
        decode(b"{\"term\":null}"),
        Err(DecodeError::UnsupportedVersion(b'{'))
    ));
    for garbage in [
        &b"\x01"[..],
        b"\x01{",
        b"\x01null",
        b"\x01\"nope\"",
        b"\x01{\"enqueue\":{}}",
        b"\x01{\"enqueue\":{\"body\":1}}",
        b"\x01{\"deliver\":{\"lane\":\"side\",\"ids\":[],\"deadline_ms\":0}}",
        b"\x01{\"deliver\":{\"lane\":\"main\",\"ids\":[-1],\"deadline_ms\":0}}",
        b"\x01{\"dead_letter\":{\"ids\":[18446744073709551616]}}",
        b"\x01\"term\" trailing",
        b"\x01\xff\xfe\x00",
    ] {
        let err = decode(garbage).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{garbage:?}");
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.to_string().starts_with("malformed queue record"));
    }
    // The smallest valid payload, for contrast.
    assert_eq!(decode(b"\x01\"term\"").unwrap(), Record::Term);
}

fn keyed(body: &str, key: &str, at_ms: u64) -> Record {
    Record::Enqueue {
        body: body.into(),
        dedup: Some(crate::Dedup {
            key: key.into(),
            at_ms,
        }),
    }
}

#[test]
fn a_deduplication_key_is_remembered_for_the_window_and_survives_snapshots() {
    use crate::DEDUP_WINDOW_MS;
    let mut o = Owner::default();
    let first = o.append(keyed("a", "k1", 1_000));
    assert_eq!(o.state.deduplicated("k1", 1_000), Some(first));
    assert_eq!(
        o.state.deduplicated("k1", 1_000 + DEDUP_WINDOW_MS - 1),
        Some(first)
    );
    assert_eq!(o.state.deduplicated("k1", 1_000 + DEDUP_WINDOW_MS), None);
    assert_eq!(o.state.deduplicated("k2", 1_000), None);
    // Consumed or not, the key still answers the first message within the window.
    let snapshot = o.state.snapshot();
    let restored = ShardState::from_snapshot(&snapshot);
    assert_eq!(restored, o.state);
    assert_eq!(restored.deduplicated("k1", 2_000), Some(first));
    // A replayed duplicate within the window creates nothing; after it, the key is new again.
    let before = o.state.len();
    o.append(keyed("a", "k1", 2_000));
    assert_eq!(o.state.len(), before);
    let again = o.append(keyed("a", "k1", 1_000 + DEDUP_WINDOW_MS + 5));
    assert_eq!(o.state.len(), before + 1);
    assert_eq!(
        o.state.deduplicated("k1", 1_000 + DEDUP_WINDOW_MS + 5),
        Some(again)
    );
}

#[test]
fn records_without_a_deduplication_key_read_as_before() {
    let old = br#"{"enqueue":{"body":"x"}}"#;
    let mut bytes = vec![crate::record::FORMAT_VERSION];
    bytes.extend_from_slice(old);
    assert_eq!(
        crate::decode(&bytes).unwrap(),
        Record::Enqueue {
            body: "x".into(),
            dedup: None
        }
    );
    assert_eq!(
        crate::encode(&Record::Enqueue {
            body: "x".into(),
            dedup: None
        }),
        bytes
    );
}
