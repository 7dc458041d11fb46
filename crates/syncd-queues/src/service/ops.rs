//! The client operations, carried out on the shard's leader (any node forwards them there, see [`super::routing`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use syncd_api::queues::{QueueInfo, QueueList, ReceiveRequest, ReceivedMessage, shard_of};
use syncd_queue_core::{Lane, Receipt, Record};

use super::QueueService;
use crate::error::QueueError;
use crate::shard::Shard;
use crate::wire::{Op, OpResult, ShardList, paths};

/// Timeout of a peer's shard listing.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// Wall-clock milliseconds: visibility deadlines are the owner's clock, written into the log.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lane(dead: bool) -> Lane {
    if dead { Lane::Dead } else { Lane::Main }
}

fn parse_receipts(receipts: &[String]) -> Result<Vec<Receipt>, QueueError> {
    receipts
        .iter()
        .map(|r| {
            r.parse::<Receipt>()
                .map_err(|_| QueueError::Invalid(format!("{r:?} is not a receipt")))
        })
        .collect()
}

impl QueueService {
    /// `POST /v1/queues/{q}/messages`. `dedup` holds each body's deduplication key, if any (or is empty): a key
    /// seen on the queue within [`syncd_queue_core::DEDUP_WINDOW_MS`] stores nothing and answers the first
    /// message's id.
    pub async fn produce(
        &self,
        queue: &str,
        bodies: Vec<String>,
        dedup: Vec<Option<String>>,
    ) -> Result<Vec<String>, QueueError> {
        let (shard, dead) = shard_of(queue);
        if dead {
            return Err(QueueError::Invalid(format!(
                "{queue} is a dead-letter queue; messages arrive there only after failing on {shard}"
            )));
        }
        match self
            .execute(shard, Op::Produce { bodies, dedup }, 0)
            .await?
        {
            OpResult::Produced { ids } => Ok(ids),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/receive`.
    pub async fn receive(
        &self,
        queue: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let (shard, dead) = shard_of(queue);
        match self
            .execute(shard, Op::Receive { dead, request }, 0)
            .await?
        {
            OpResult::Received { messages } => Ok(messages),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/ack`.
    pub async fn ack(&self, queue: &str, receipts: Vec<String>) -> Result<usize, QueueError> {
        parse_receipts(&receipts)?;
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Ack { dead, receipts }, 0).await? {
            OpResult::Acked { acked } => Ok(acked),
            other => Err(unexpected(&other)),
        }
    }

    /// `POST /v1/queues/{q}/nack`.
    pub async fn nack(&self, queue: &str, receipts: Vec<String>) -> Result<usize, QueueError> {
        parse_receipts(&receipts)?;
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Nack { dead, receipts }, 0).await? {
            OpResult::Requeued { requeued } => Ok(requeued),
            other => Err(unexpected(&other)),
        }
    }

    /// `GET /v1/queues/{q}`.
    pub async fn info(&self, queue: &str) -> Result<QueueInfo, QueueError> {
        let (shard, dead) = shard_of(queue);
        match self.execute(shard, Op::Info { dead }, 0).await? {
            OpResult::Info(info) => Ok(info),
            other => Err(unexpected(&other)),
        }
    }

    /// `GET /v1/queues`: every queue of the control state, and the dead-letter queues any live node holds
    /// messages in.
    pub async fn list(&self) -> Result<QueueList, QueueError> {
        let mut names: BTreeSet<String> = self.stored_names().into_iter().collect();
        let (shards, members) = self.read_control(|c| {
            (
                c.shards.keys().cloned().collect::<Vec<_>>(),
                c.ring
                    .as_ref()
                    .map(|r| r.members.clone())
                    .unwrap_or_default(),
            )
        });
        names.extend(shards);
        let me = self.config.id;
        let calls = members.into_iter().filter(|id| *id != me).filter_map(|id| {
            let addr = self.addrs.addr(id)?;
            Some(async move {
                self.peers
                    .get_json::<ShardList>(&addr, paths::SHARDS, PEER_TIMEOUT)
                    .await
            })
        });
        for list in join_all(calls).await.into_iter().flatten() {
            names.extend(list.shards);
        }
        Ok(QueueList {
            queues: names.into_iter().collect(),
        })
    }

    pub(super) fn stored_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for shard in self.local_shards() {
            let core = shard.lock();
            if !core.queue.is_empty() || core.last.lsn > 0 {
                out.push(shard.name.clone());
            }
            let (ready, inflight) = core.queue.counts(Lane::Dead, now_ms());
            if ready + inflight > 0 {
                out.push(syncd_api::queues::dlq_name(&shard.name));
            }
        }
        out
    }

    pub(super) async fn execute_local(
        &self,
        name: &str,
        epoch: u64,
        op: Op,
    ) -> Result<OpResult, QueueError> {
        let shard = self.leading_shard(name, epoch)?;
        match op {
            Op::Produce { bodies, dedup } => {
                let ids = produce_local(&shard, bodies, dedup).await?;
                shard.deliverable.notify_waiters();
                Ok(OpResult::Produced {
                    ids: ids.into_iter().map(|id| id.to_string()).collect(),
                })
            }
            Op::Receive { dead, request } => {
                let messages = self.receive_local(&shard, lane(dead), &request).await?;
                Ok(OpResult::Received { messages })
            }
            Op::Ack { dead, receipts } => {
                let acked = settle(&shard, name, lane(dead), &receipts, |lane, receipts| {
                    Record::Ack { lane, receipts }
                })
                .await?;
                Ok(OpResult::Acked { acked })
            }
            Op::Nack { dead, receipts } => {
                let requeued = settle(&shard, name, lane(dead), &receipts, |lane, receipts| {
                    Record::Requeue { lane, receipts }
                })
                .await?;
                shard.deliverable.notify_waiters();
                Ok(OpResult::Requeued { requeued })
            }
            Op::Info { dead } => {
                let replicas = self
                    .read_control(|c| c.shards.get(name).map(|r| r.replicas.clone()))
                    .unwrap_or_default();
                let core = shard.lock();
                let (ready, inflight) = core.queue.counts(lane(dead), now_ms());
                let (term, in_sync) = match core.leading() {
                    Some(leading) => (leading.epoch, leading.isr().into_iter().collect()),
                    None => (0, Vec::new()),
                };
                Ok(OpResult::Info(QueueInfo {
                    name: if dead {
                        syncd_api::queues::dlq_name(name)
                    } else {
                        name.to_owned()
                    },
                    ready,
                    inflight,
                    owner: self.config.id,
                    replicas: replicas
                        .into_iter()
                        .filter(|id| *id != self.config.id)
                        .collect(),
                    in_sync,
                    term,
                }))
            }
        }
    }

    async fn receive_local(
        &self,
        shard: &Arc<Shard>,
        lane: Lane,
        request: &ReceiveRequest,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let deadline = Instant::now() + Duration::from_millis(request.wait_ms);
        let max_attempts = self.config.max_attempts;
        loop {
            let woken = shard.deliverable.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            let delivered = shard
                .write(
                    |state| {
                        Ok(state.plan_receive(
                            lane,
                            request.max,
                            now,
                            request.visibility_ms,
                            max_attempts,
                        ))
                    },
                    |state, first, records| {
                        records
                            .iter()
                            .enumerate()
                            .find_map(|(i, record)| match record {
                                Record::Deliver { ids, .. } => {
                                    Some(state.delivered(first + i as u64, ids))
                                }
                                _ => None,
                            })
                            .unwrap_or_default()
                    },
                )
                .await?;
            if !delivered.is_empty() || Instant::now() >= deadline {
                return Ok(delivered
                    .into_iter()
                    .map(|d| ReceivedMessage {
                        id: d.id.to_string(),
                        body: d.body,
                        receipt: d.receipt.to_string(),
                        attempt: d.attempt,
                    })
                    .collect());
            }
            // Sleep until a message may be deliverable: a produce or nack, a visibility deadline, or the end.
            let mut until = deadline;
            if let Some(next) = shard.lock().queue.next_deadline(lane) {
                let in_ms = next.saturating_sub(now_ms());
                until = until.min(Instant::now() + Duration::from_millis(in_ms));
            }
            let _ = tokio::time::timeout_at(until.into(), woken).await;
            if self.stopping.load(Ordering::Relaxed) {
                return Ok(Vec::new());
            }
        }
    }
}

/// Where each produced body went: a new record (its index among the records written), or an earlier message with
/// the same deduplication key.
#[derive(Clone, Copy)]
enum Placed {
    New(u64),
    Existing(u64),
}

/// Writes the bodies that are not duplicates and answers every body's message id, once each is acknowledged.
async fn produce_local(
    shard: &Shard,
    bodies: Vec<String>,
    dedup: Vec<Option<String>>,
) -> Result<Vec<u64>, QueueError> {
    let now = now_ms();
    let placed = std::sync::Mutex::new(Vec::with_capacity(bodies.len()));
    let ids = shard
        .write(
            |state| {
                let mut placed = placed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut records = Vec::with_capacity(bodies.len());
                let mut in_batch: std::collections::HashMap<&str, usize> =
                    std::collections::HashMap::new();
                for (i, body) in bodies.iter().enumerate() {
                    let key = dedup.get(i).and_then(Option::as_deref);
                    if let Some(key) = key {
                        if let Some(id) = state.deduplicated(key, now) {
                            placed.push(Placed::Existing(id));
                            continue;
                        }
                        if let Some(earlier) = in_batch.get(key) {
                            let same = placed[*earlier];
                            placed.push(same);
                            continue;
                        }
                        in_batch.insert(key, i);
                    }
                    placed.push(Placed::New(records.len() as u64));
                    records.push(Record::Enqueue {
                        body: body.clone(),
                        dedup: key.map(|key| syncd_queue_core::Dedup {
                            key: key.to_owned(),
                            at_ms: now,
                        }),
                    });
                }
                Ok(records)
            },
            |_, first, _| {
                placed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .map(|p| match p {
                        Placed::New(j) => first + j,
                        Placed::Existing(id) => *id,
                    })
                    .collect::<Vec<u64>>()
            },
        )
        .await?;
    // Only duplicates: answer once their first messages are acknowledged too (a write waited for its own records,
    // which come after every earlier message).
    let wrote = placed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|p| matches!(p, Placed::New(_)));
    if !wrote && let Some(last) = ids.iter().copied().max() {
        shard.acknowledged(last).await?;
    }
    Ok(ids)
}

/// Acks or nacks (`record` builds the one record) a batch of receipts, all or nothing: any receipt that is not a
/// current delivery refuses the whole batch. Returns how many messages it settled.
async fn settle(
    shard: &Shard,
    name: &str,
    lane: Lane,
    receipts: &[String],
    record: impl FnOnce(Lane, Vec<Receipt>) -> Record,
) -> Result<usize, QueueError> {
    let receipts = parse_receipts(receipts)?;
    shard
        .write(
            |state| {
                let (current, unknown) = state.check_receipts(lane, &receipts);
                if !unknown.is_empty() {
                    return Err(unknown_receipts(name, &unknown));
                }
                Ok(vec![record(lane, current)])
            },
            |_, _, records| match records.first() {
                Some(Record::Ack { receipts, .. } | Record::Requeue { receipts, .. }) => {
                    receipts.len()
                }
                _ => 0,
            },
        )
        .await
}

fn unknown_receipts(queue: &str, unknown: &[Receipt]) -> QueueError {
    let list: Vec<String> = unknown.iter().take(10).map(|r| r.to_string()).collect();
    QueueError::NotFound(format!(
        "{} receipt(s) of {queue} are not current deliveries (already acked, expired and delivered again, or \
         never issued): {}; nothing was changed",
        unknown.len(),
        list.join(", ")
    ))
}

fn unexpected(result: &OpResult) -> QueueError {
    QueueError::Internal(format!("unexpected answer from the owner: {result:?}"))
}
