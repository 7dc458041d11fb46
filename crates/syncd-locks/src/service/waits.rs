//! Waiting acquires: proposing one so a caller that goes away cannot strand it, watching the table until the
//! grant or the end of the wait, and withdrawing requests nobody waits for any more.

use std::sync::Arc;
use std::time::Duration;

use syncd_api::locks::{AcquireRequest, AcquireResponse};
use syncd_lock_table::{Command, Outcome};
use tokio::time::{Instant, timeout_at};

use super::{LockService, QUORUM_WAIT, WAIT_GRACE};
use crate::convert;
use crate::error::LockError;

pub(super) enum WaitState {
    Granted(AcquireResponse),
    Queued,
    Ended,
}

/// Withdraws a queued acquire when its HTTP call is dropped (the client went away) before it resolved.
pub(super) struct CancelOnDrop {
    service: Arc<LockService>,
    /// The `CancelWait` to propose; `None` once the call resolved.
    cancel: Option<Command>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            withdraw(&self.service, cancel, None);
        }
    }
}

/// Withdraws a possibly queued acquire whose caller went away while it was being proposed: once the proposal
/// answers, a request that queued is cancelled.
pub(super) struct WithdrawIfAbandoned {
    service: Arc<LockService>,
    cancel: Option<Command>,
    proposal: Option<tokio::task::JoinHandle<Result<(u64, Outcome), LockError>>>,
}

impl Drop for WithdrawIfAbandoned {
    fn drop(&mut self) {
        if let (Some(proposal), Some(cancel)) = (self.proposal.take(), self.cancel.take()) {
            withdraw(&self.service, cancel, Some(proposal));
        }
    }
}

/// A `CancelWait` that withdraws request `request` of `owner` on `name`, whatever became of it: its wait, or the
/// grant it received after its caller left.
fn cancel_of(name: &str, owner: &str, request: u64) -> Command {
    Command::CancelWait {
        name: name.to_owned(),
        owner: owner.to_owned(),
        request,
    }
}

/// Proposes `cancel` in the background: at once, or once `after` (the acquire's own proposal) has answered that
/// the request is waiting, so the cancel is ordered after it.
fn withdraw(
    service: &Arc<LockService>,
    cancel: Command,
    after: Option<tokio::task::JoinHandle<Result<(u64, Outcome), LockError>>>,
) {
    let service = service.clone();
    tokio::spawn(async move {
        if let Some(proposal) = after
            && !matches!(proposal.await, Ok(Ok((_, Outcome::Waiting { .. }))))
        {
            return;
        }
        if let Err(e) = service.propose(cancel).await {
            tracing::warn!(error = %e, "could not withdraw an abandoned lock request");
        }
    });
}

pub(super) fn wait_ended(name: &str, wait_ms: u64) -> LockError {
    LockError::Conflict(format!("{name} was not granted within {wait_ms} ms"))
}

impl LockService {
    /// Proposes an acquire that may queue. The proposal runs in its own task, so a client that goes away while it
    /// is under way cannot leave its outcome unknown: the proposal finishes, and a request it queued is withdrawn
    /// (a `CancelWait` ordered after it) instead of being granted later to nobody and held until its lease ends.
    pub(super) async fn propose_wait(
        self: &Arc<Self>,
        name: &str,
        owner: &str,
        request: u64,
        command: Command,
    ) -> Result<(u64, Outcome), LockError> {
        let service = self.clone();
        let mut guard = WithdrawIfAbandoned {
            service: self.clone(),
            cancel: Some(cancel_of(name, owner, request)),
            proposal: Some(tokio::spawn(async move { service.propose(command).await })),
        };
        let Some(proposal) = guard.proposal.as_mut() else {
            return Err(LockError::Internal("no proposal".to_owned()));
        };
        let result = proposal.await;
        guard.proposal = None;
        result.map_err(|e| LockError::Internal(format!("the proposal task failed: {e}")))?
    }

    /// Waits until the queued acquire at `index` is granted or its wait ends.
    pub(super) async fn await_grant(
        self: &Arc<Self>,
        name: &str,
        req: &AcquireRequest,
        request: u64,
        index: u64,
    ) -> Result<AcquireResponse, LockError> {
        let mut guard = CancelOnDrop {
            service: self.clone(),
            cancel: Some(cancel_of(name, &req.owner, request)),
        };
        let until = Instant::now() + Duration::from_millis(req.wait_ms) + WAIT_GRACE;
        let mut applied = self.group.shared().subscribe();
        let mut stopping = self.group.stopping();
        loop {
            if *applied.borrow_and_update() >= index {
                match self.wait_state(name, &req.owner, convert::mode_in(req.mode)) {
                    WaitState::Granted(resp) => {
                        guard.cancel = None;
                        return Ok(resp);
                    }
                    WaitState::Ended => {
                        guard.cancel = None;
                        return Err(wait_ended(name, req.wait_ms));
                    }
                    WaitState::Queued => {}
                }
            }
            tokio::select! {
                changed = timeout_at(until, applied.changed()) => match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(LockError::Unavailable("shutting down".to_owned())),
                    Err(_) => break,
                },
                // The guard withdraws the request on the way out.
                _ = stopping.wait_for(|s| *s) => {
                    return Err(LockError::Unavailable("the node is shutting down".to_owned()));
                }
            }
        }
        // The leader did not expire the wait in time (no leader, or a slow tick): withdraw the wait ourselves (only
        // the wait: the caller is still here), then report whatever the table decided first.
        guard.cancel = None;
        let (cancel_index, _) = self.propose(cancel_of(name, &req.owner, 0)).await?;
        self.group
            .wait_applied(cancel_index, Instant::now() + QUORUM_WAIT)
            .await?;
        match self.wait_state(name, &req.owner, convert::mode_in(req.mode)) {
            WaitState::Granted(resp) => Ok(resp),
            _ => Err(wait_ended(name, req.wait_ms)),
        }
    }

    pub(super) fn wait_state(
        &self,
        name: &str,
        owner: &str,
        mode: syncd_lock_table::LockMode,
    ) -> WaitState {
        self.group.read(|t| {
            if let Some(hold) = t.holder(name, owner).filter(|h| h.mode == mode) {
                WaitState::Granted(AcquireResponse {
                    name: name.to_owned(),
                    owner: owner.to_owned(),
                    mode: convert::mode_out(hold.mode),
                    token: hold.token,
                    expires_at_ms: hold.expires_at_ms,
                })
            } else if t.waiter(name, owner).is_some() {
                WaitState::Queued
            } else {
                WaitState::Ended
            }
        })
    }
}
