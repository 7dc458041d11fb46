//! Finding a shard's leader in the control state and forwarding an operation to it.
//!
//! A shard without a control record is created (through the control group) by the operations that create
//! queues (produce, receive); the others answer 404 once a linearizable read of the control state confirms it
//! does not exist. While a shard has no leader (its in-sync copies are all down) or its leader is starting, the
//! operation is retried for a while, then answered 503.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use syncd_queue_engine::control::{ControlCommand, ControlOutcome, ShardControl};

use super::QueueService;
use crate::error::QueueError;
use crate::peers::PeerError;
use crate::shard::Shard;
use crate::wire::{Op, OpRequest, OpResult, paths};

/// How long an operation keeps retrying while its shard fails over or a forward loops.
const ROUTE_PATIENCE: Duration = Duration::from_secs(8);
/// Forwards allowed before answering 503 (views of the control state differ for a moment during changes).
pub(super) const MAX_HOPS: u32 = 2;

/// A peer call's failure: not sent is retryable; sent but unanswered is an unknown outcome when the call
/// changes state (`mutates`).
pub(super) fn peer_error(e: PeerError, mutates: bool) -> QueueError {
    match e {
        PeerError::Unreachable(detail) => {
            QueueError::Unavailable(format!("peer unreachable: {detail}"))
        }
        PeerError::NoAnswer(detail) if mutates => QueueError::Indeterminate(format!(
            "the shard's leader did not answer ({detail}); the operation may or may not have been carried out"
        )),
        PeerError::NoAnswer(detail) => {
            QueueError::Unavailable(format!("peer did not answer: {detail}"))
        }
        PeerError::Problem { code, detail } => QueueError::from_code(code, detail),
    }
}

impl QueueService {
    /// Runs `op` on `shard`'s leader, retrying while the shard fails over.
    pub(super) async fn execute(
        &self,
        shard: &str,
        op: Op,
        hops: u32,
    ) -> Result<OpResult, QueueError> {
        let wait = match &op {
            Op::Receive { request, .. } => Duration::from_millis(request.wait_ms),
            _ => Duration::ZERO,
        };
        let deadline = Instant::now() + ROUTE_PATIENCE + wait;
        loop {
            match self.route_once(shard, &op, hops).await {
                Err(QueueError::Unavailable(detail))
                    if Instant::now() < deadline && !self.stopping.load(Ordering::Relaxed) =>
                {
                    tracing::debug!(shard, %detail, "retrying a queue operation");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// The shard's control record; created if `create` and it has none.
    async fn record(&self, shard: &str, create: bool) -> Result<ShardControl, QueueError> {
        if let Some(record) = self.read_control(|c| c.shards.get(shard).cloned()) {
            return Ok(record);
        }
        if !create {
            // This node's view may lag: look again after a linearizable read.
            self.group.linearizable_read().await?;
            return self
                .read_control(|c| c.shards.get(shard).cloned())
                .ok_or_else(|| QueueError::NotFound(format!("queue {shard} does not exist")));
        }
        let command = ControlCommand::CreateShard {
            shard: shard.to_owned(),
        };
        match self.group.propose(command).await?.1 {
            ControlOutcome::Shard(record) => Ok(record),
            ControlOutcome::Refused(why) => Err(QueueError::Unavailable(why)),
            other => Err(QueueError::Internal(format!(
                "unexpected answer to a shard creation: {other:?}"
            ))),
        }
    }

    async fn route_once(&self, shard: &str, op: &Op, hops: u32) -> Result<OpResult, QueueError> {
        let create = matches!(op, Op::Produce { .. } | Op::Receive { .. });
        let record = self.record(shard, create).await?;
        let leader = record.leader.ok_or_else(|| {
            QueueError::Unavailable(format!(
                "queue {shard} has no leader: every copy known to be in sync ({:?}) is down",
                record.isr
            ))
        })?;
        if leader == self.config.id {
            return self.execute_local(shard, record.epoch, op.clone()).await;
        }
        if hops >= MAX_HOPS {
            return Err(QueueError::Unavailable(format!(
                "nodes disagree about who leads queue {shard}; retry"
            )));
        }
        let addr = self
            .addrs
            .addr(leader)
            .ok_or_else(|| QueueError::Unavailable(format!("no address for node {leader}")))?;
        let timeout = match op {
            Op::Receive { request, .. } => {
                Duration::from_millis(request.wait_ms) + ROUTE_PATIENCE * 2
            }
            _ => ROUTE_PATIENCE * 2,
        };
        let request = OpRequest {
            shard: shard.to_owned(),
            op: op.clone(),
            hops: hops + 1,
        };
        let mutates = !matches!(op, Op::Info { .. });
        self.peers
            .post_json(&addr, paths::OP, &request, timeout)
            .await
            .map_err(|e| peer_error(e, mutates))
    }

    /// The local shard, if this node leads it in `epoch` (that of the control record the call was routed by).
    pub(super) fn leading_shard(&self, name: &str, epoch: u64) -> Result<Arc<Shard>, QueueError> {
        match self.shard(name) {
            Some(shard) if shard.lock().leading().is_some_and(|l| l.epoch == epoch) => Ok(shard),
            _ => Err(QueueError::Unavailable(format!(
                "queue {name}: this node is starting to lead it or just stopped; retry"
            ))),
        }
    }

    /// `POST /internal/queues/op`.
    pub async fn on_op(&self, request: OpRequest) -> Result<OpResult, QueueError> {
        self.execute(&request.shard, request.op, request.hops).await
    }

    /// `POST /internal/queues/append`: refused until this node has caught up with the control group after
    /// starting (it must know every epoch handed out before it judges one).
    pub async fn on_append(
        &self,
        request: crate::wire::AppendRequest,
    ) -> Result<crate::wire::AppendResponse, QueueError> {
        if !self.caught_up.load(Ordering::Relaxed) {
            return Err(QueueError::Unavailable(
                "this node has not caught up with the queue control group yet".to_owned(),
            ));
        }
        let control_epoch = self
            .read_control(|c| c.shards.get(&request.shard).map(|r| r.epoch))
            .unwrap_or(0);
        let shard = self.open_shard(&request.shard).await?;
        shard.on_append(request, control_epoch).await
    }
}
