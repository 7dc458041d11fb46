//! Checks of a queue history: what clients were told against what they later saw.
//!
//! - `lost_message`: a produce answered 201 whose body was never delivered (the run ends with a drain);
//! - `ack_undone`: a message delivered again by a receive that began after an ack of it was answered 200 (an ack
//!   is refused unless its receipt is the current delivery, so a 200 means the message was acknowledged);
//!   messages are told apart by id (the receipt's first part): one body stored twice (a produce retried after an
//!   unknown outcome) is two messages, which at-least-once delivery allows;
//! - `visible_twice`: a message delivered again while its previous delivery's visibility certainly had not
//!   ended (the second receive finished before the first could have hidden it for its whole visibility), when
//!   that first delivery was not acked or nacked;
//! - `phantom`: a delivered body no produce sent.
//!
//! Times are milliseconds since the history began, on the client's monotonic clock; a receive's delivery happened
//! somewhere between its invocation and its completion.

use std::collections::{BTreeMap, BTreeSet};

use super::Anomaly;

/// How a call ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with success.
    Ok,
    /// Certainly not carried out (a 4xx, or a refused connection).
    Fail,
    /// Unknown: a timeout, a 503 after the call may have reached the leader.
    Info,
}

/// A produce of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    /// Queue.
    pub queue: String,
    /// The body (unique in the run).
    pub body: String,
    /// Invoked at.
    pub invoked: u64,
    /// Completed at.
    pub completed: u64,
    /// Outcome.
    pub outcome: Outcome,
}

/// One message handed out by a receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Queue.
    pub queue: String,
    /// The body.
    pub body: String,
    /// The receipt.
    pub receipt: String,
    /// The receive's invocation.
    pub invoked: u64,
    /// The receive's completion.
    pub completed: u64,
    /// The visibility the receive asked for.
    pub visibility_ms: u64,
}

/// An ack (or nack) of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// Queue.
    pub queue: String,
    /// The body of the message.
    pub body: String,
    /// The receipt acked.
    pub receipt: String,
    /// A nack (requeue) rather than an ack.
    pub nack: bool,
    /// Invoked at.
    pub invoked: u64,
    /// Completed at.
    pub completed: u64,
    /// Outcome.
    pub outcome: Outcome,
}

/// A queue run's history.
#[derive(Debug, Clone, Default)]
pub struct QueueHistory {
    /// Produces.
    pub produces: Vec<Produce>,
    /// Deliveries (the final drain's included).
    pub deliveries: Vec<Delivery>,
    /// Acks and nacks.
    pub settles: Vec<Settle>,
}

/// Allowance for the client's and the server's views of time to differ (scheduling on a loaded machine).
const MARGIN_MS: u64 = 100;

fn anomaly(kind: &'static str, queue: &str, description: String) -> Anomaly {
    Anomaly {
        kind,
        object: Some(queue.to_owned()),
        ops: Vec::new(),
        description,
    }
}

/// The message id a receipt names (`<id>-<delivery lsn>`).
fn message_id(receipt: &str) -> &str {
    receipt.split('-').next().unwrap_or(receipt)
}

/// Bodies delivered under more than one message id: produces stored twice (allowed, counted for the report).
pub fn duplicates(history: &QueueHistory) -> usize {
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for d in &history.deliveries {
        ids.entry(d.body.as_str())
            .or_default()
            .insert(message_id(&d.receipt));
    }
    ids.values().filter(|ids| ids.len() > 1).count()
}

/// Every anomaly of `history` (see the module doc).
pub fn check(history: &QueueHistory) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let produced: BTreeSet<&str> = history.produces.iter().map(|p| p.body.as_str()).collect();
    let delivered: BTreeSet<&str> = history.deliveries.iter().map(|d| d.body.as_str()).collect();
    for p in &history.produces {
        if p.outcome == Outcome::Ok && !delivered.contains(p.body.as_str()) {
            out.push(anomaly(
                "lost_message",
                &p.queue,
                format!(
                    "{} was answered 201 at {} ms and never delivered",
                    p.body, p.completed
                ),
            ));
        }
    }
    let mut by_id: BTreeMap<(&str, &str), Vec<&Delivery>> = BTreeMap::new();
    for d in &history.deliveries {
        if !produced.contains(d.body.as_str()) {
            out.push(anomaly(
                "phantom",
                &d.queue,
                format!(
                    "{} was delivered at {} ms but never produced",
                    d.body, d.completed
                ),
            ));
        }
        by_id
            .entry((d.queue.as_str(), message_id(&d.receipt)))
            .or_default()
            .push(d);
    }
    for ack in history
        .settles
        .iter()
        .filter(|s| !s.nack && s.outcome == Outcome::Ok)
    {
        let id = (ack.queue.as_str(), message_id(&ack.receipt));
        for d in by_id.get(&id).into_iter().flatten() {
            if d.invoked > ack.completed {
                out.push(anomaly(
                    "ack_undone",
                    &ack.queue,
                    format!(
                        "{} was acked (receipt {}) with 200 at {} ms, then delivered again (receipt {}) by a receive \
                         invoked at {} ms",
                        ack.body, ack.receipt, ack.completed, d.receipt, d.invoked
                    ),
                ));
            }
        }
    }
    let settled: BTreeSet<&str> = history
        .settles
        .iter()
        .filter(|s| s.outcome != Outcome::Fail)
        .map(|s| s.receipt.as_str())
        .collect();
    for deliveries in by_id.values() {
        let mut sorted = deliveries.clone();
        sorted.sort_by_key(|d| d.invoked);
        for pair in sorted.windows(2) {
            let (first, second) = (pair[0], pair[1]);
            if settled.contains(first.receipt.as_str()) {
                continue;
            }
            let hidden_until = first.invoked + first.visibility_ms;
            if second.completed + MARGIN_MS < hidden_until {
                out.push(anomaly(
                    "visible_twice",
                    &first.queue,
                    format!(
                        "{} was delivered (receipt {}) by a receive invoked at {} ms with visibility {} ms, and \
                         again (receipt {}) by one that completed at {} ms",
                        first.body,
                        first.receipt,
                        first.invoked,
                        first.visibility_ms,
                        second.receipt,
                        second.completed
                    ),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce(body: &str, outcome: Outcome) -> Produce {
        Produce {
            queue: "q".into(),
            body: body.into(),
            invoked: 0,
            completed: 10,
            outcome,
        }
    }

    fn delivery(body: &str, receipt: &str, invoked: u64, completed: u64) -> Delivery {
        Delivery {
            queue: "q".into(),
            body: body.into(),
            receipt: receipt.into(),
            invoked,
            completed,
            visibility_ms: 1_000,
        }
    }

    fn ack(body: &str, receipt: &str, completed: u64, outcome: Outcome) -> Settle {
        Settle {
            queue: "q".into(),
            body: body.into(),
            receipt: receipt.into(),
            nack: false,
            invoked: completed - 5,
            completed,
            outcome,
        }
    }

    fn kinds(history: &QueueHistory) -> Vec<&'static str> {
        check(history).iter().map(|a| a.kind).collect()
    }

    #[test]
    fn a_clean_run_has_no_anomaly() {
        let h = QueueHistory {
            produces: vec![produce("a", Outcome::Ok), produce("b", Outcome::Info)],
            deliveries: vec![delivery("a", "1-2", 20, 30)],
            settles: vec![ack("a", "1-2", 40, Outcome::Ok)],
        };
        assert!(kinds(&h).is_empty());
    }

    #[test]
    fn an_acknowledged_produce_never_delivered_is_lost() {
        let h = QueueHistory {
            produces: vec![produce("a", Outcome::Ok)],
            ..QueueHistory::default()
        };
        assert_eq!(kinds(&h), vec!["lost_message"]);
    }

    #[test]
    fn a_delivery_after_an_acknowledged_ack_is_an_undone_ack() {
        let h = QueueHistory {
            produces: vec![produce("a", Outcome::Ok)],
            deliveries: vec![
                delivery("a", "1-2", 20, 30),
                delivery("a", "1-9", 5_000, 5_010),
            ],
            settles: vec![ack("a", "1-2", 40, Outcome::Ok)],
        };
        assert_eq!(kinds(&h), vec!["ack_undone"]);
        // The same body stored twice is another message: a duplicate, not an undone ack.
        let mut twice = h.clone();
        twice.deliveries[1].receipt = "7-9".into();
        assert!(kinds(&twice).is_empty());
        assert_eq!(duplicates(&twice), 1);
        // An ack whose outcome is unknown proves nothing.
        let mut unknown = h.clone();
        unknown.settles[0].outcome = Outcome::Info;
        assert!(kinds(&unknown).is_empty());
    }

    #[test]
    fn a_redelivery_within_the_visibility_is_visible_twice() {
        let h = QueueHistory {
            produces: vec![produce("a", Outcome::Ok)],
            deliveries: vec![delivery("a", "1-2", 20, 30), delivery("a", "1-3", 100, 200)],
            settles: Vec::new(),
        };
        assert_eq!(kinds(&h), vec!["visible_twice"]);
        // After the visibility: fine.
        let mut later = h.clone();
        later.deliveries[1] = delivery("a", "1-3", 1_100, 1_200);
        assert!(kinds(&later).is_empty());
    }

    #[test]
    fn a_body_nobody_produced_is_a_phantom() {
        let h = QueueHistory {
            deliveries: vec![delivery("z", "1-2", 20, 30)],
            ..QueueHistory::default()
        };
        assert_eq!(kinds(&h), vec!["phantom"]);
    }
}
