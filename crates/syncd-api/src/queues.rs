//! Bodies of `/v1/queues` and `/v1/ring`.
//!
//! Request bodies reject unknown fields, so a typo such as `"visibility"` for `"visibility_ms"` is a 400.

use serde::{Deserialize, Serialize};

/// Messages a receive returns at most when it names no `max`.
pub const DEFAULT_RECEIVE_MAX: usize = 1;
/// The most messages one receive may ask for.
pub const MAX_RECEIVE: usize = 1_000;
/// The most messages one produce call may carry.
pub const MAX_BATCH: usize = 1_000;
/// Visibility timeout when a receive names none.
pub const DEFAULT_VISIBILITY_MS: u64 = 30_000;
/// The longest visibility timeout (12 hours, as SQS).
pub const MAX_VISIBILITY_MS: u64 = 12 * 60 * 60 * 1000;
/// The longest one receive may long-poll.
pub const MAX_RECEIVE_WAIT_MS: u64 = 60_000;
/// Suffix of a queue's dead-letter queue: `orders.dlq` holds what `orders` gave up on.
pub const DLQ_SUFFIX: &str = ".dlq";

/// One message to produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// The payload (text; encode binary as base64).
    pub body: String,
    /// Optional deduplication key: a produce with a key the queue saw within the last 5 minutes stores nothing
    /// and answers the first message's id (like SQS FIFO's `MessageDeduplicationId` or JetStream's `Nats-Msg-Id`),
    /// so a producer can retry after an unknown outcome (a 504, a timeout) without a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
}

/// `POST /v1/queues/{q}/messages`: one message or a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProduceRequest {
    /// `{"body": "..."}`.
    One(NewMessage),
    /// `{"messages": [{"body": "..."}, ...]}`.
    Batch(Batch),
}

/// A batch of messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The messages, produced in this order.
    pub messages: Vec<NewMessage>,
}

impl ProduceRequest {
    /// The messages, in order.
    pub fn into_messages(self) -> Vec<NewMessage> {
        match self {
            ProduceRequest::One(m) => vec![m],
            ProduceRequest::Batch(b) => b.messages,
        }
    }
}

/// Answer to a single-message produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedOne {
    /// The message id.
    pub id: String,
}

/// Answer to a batch produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducedBatch {
    /// The message ids, in request order.
    pub ids: Vec<String>,
}

/// `POST /v1/queues/{q}/receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// Most messages to return (1..=1000).
    #[serde(default = "default_max")]
    pub max: usize,
    /// How long the messages stay invisible to other consumers (1..=12 h).
    #[serde(default = "default_visibility")]
    pub visibility_ms: u64,
    /// How long to wait for a message when the queue is empty (0..=60 s).
    #[serde(default)]
    pub wait_ms: u64,
}

fn default_max() -> usize {
    DEFAULT_RECEIVE_MAX
}

fn default_visibility() -> u64 {
    DEFAULT_VISIBILITY_MS
}

impl Default for ReceiveRequest {
    fn default() -> Self {
        ReceiveRequest {
            max: DEFAULT_RECEIVE_MAX,
            visibility_ms: DEFAULT_VISIBILITY_MS,
            wait_ms: 0,
        }
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// The message id (the same on every delivery).
    pub id: String,
    /// The payload.
    pub body: String,
    /// Proof of this delivery, for ack and nack.
    pub receipt: String,
    /// 1 on the first delivery, then 2, 3, ...
    pub attempt: u32,
}

/// Answer to a receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveResponse {
    /// The messages, oldest first; empty when none was ready within `wait_ms`.
    pub messages: Vec<ReceivedMessage>,
}

/// `POST /v1/queues/{q}/ack` and `/nack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsRequest {
    /// Receipts from receive answers.
    pub receipts: Vec<String>,
}

/// Answer to an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// Messages removed.
    pub acked: usize,
}

/// Answer to a nack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NackResponse {
    /// Messages made ready again.
    pub requeued: usize,
}

/// `GET /v1/queues/{q}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue.
    pub name: String,
    /// Messages waiting to be received (an expired delivery counts here).
    pub ready: usize,
    /// Messages received and not yet acked, nacked or expired.
    pub inflight: usize,
    /// The node serving the queue.
    pub owner: u64,
    /// The other nodes holding a copy, in ring order.
    pub replicas: Vec<u64>,
    /// Replicas currently in sync with the owner (a 201 waits for these).
    #[serde(default)]
    pub in_sync: Vec<u64>,
    /// The owner's term for this shard (grows on every failover or hand-over).
    #[serde(default)]
    pub term: u64,
}

/// `GET /v1/queues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    /// Queue names known to any live node, sorted (dead-letter queues included once they hold a message).
    pub queues: Vec<String>,
}

/// One ring member as `GET /v1/ring` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingNode {
    /// Node id.
    pub id: u64,
    /// Address, when known.
    pub addr: Option<String>,
    /// Whether this node currently hears from it.
    pub alive: bool,
}

/// `GET /v1/ring`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingInfo {
    /// Membership epoch; 0 before the ring is formed.
    pub epoch: u64,
    /// Member ids.
    pub members: Vec<u64>,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Copies of each shard, owner included.
    pub replication_factor: u32,
    /// Members with their addresses and liveness, as this node sees them.
    pub nodes: Vec<RingNode>,
    /// Shards this node holds that are not yet settled on the current ring's placement (0 when a scale step is done).
    pub pending_handoffs: usize,
    /// How many shards each node leads, from the control state (absent from older nodes).
    #[serde(default)]
    pub leaders: std::collections::BTreeMap<u64, usize>,
}

/// `POST /internal/ring`: the next membership (operator, tests, scripts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingChange {
    /// The new member ids.
    pub members: Vec<u64>,
}

/// The name of `queue`'s dead-letter queue.
pub fn dlq_name(queue: &str) -> String {
    format!("{queue}{DLQ_SUFFIX}")
}

/// Splits a queue name into the shard it lives in and whether it is that shard's dead-letter queue:
/// `orders.dlq` lives in the `orders` shard.
pub fn shard_of(queue: &str) -> (&str, bool) {
    match queue.strip_suffix(DLQ_SUFFIX) {
        Some(base) if !base.is_empty() => (base, true),
        _ => (queue, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_accepts_one_or_batch_and_nothing_else() {
        let one: ProduceRequest = serde_json::from_str(r#"{"body":"x"}"#).unwrap();
        assert_eq!(one.into_messages()[0].body, "x");
        let batch: ProduceRequest =
            serde_json::from_str(r#"{"messages":[{"body":"a"},{"body":"b"}]}"#).unwrap();
        let bodies: Vec<String> = batch.into_messages().into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, vec!["a", "b"]);
        assert!(serde_json::from_str::<ProduceRequest>(r#"{"bodi":"x"}"#).is_err());
        assert!(serde_json::from_str::<ProduceRequest>(r#"{"body":1}"#).is_err());
        assert!(serde_json::from_str::<ProduceRequest>(r#"{"body":"x","messages":[]}"#).is_err());
    }

    #[test]
    fn receive_defaults() {
        let r: ReceiveRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r, ReceiveRequest::default());
        assert!(serde_json::from_str::<ReceiveRequest>(r#"{"visibility":1}"#).is_err());
    }

    #[test]
    fn dead_letter_names_share_the_shard() {
        assert_eq!(shard_of("orders.dlq"), ("orders", true));
        assert_eq!(shard_of("orders"), ("orders", false));
        assert_eq!(shard_of(".dlq"), (".dlq", false));
        assert_eq!(dlq_name("orders"), "orders.dlq");
    }
}
