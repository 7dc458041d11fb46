//! The leader's lease ticker.

use syncd_lock_table::Command;

use syncd_raft::group::WriteReply;

use super::{LockService, TICK_EVERY};

/// On the leader, proposes a `Tick` whenever a lease or a wait is due, so expiry happens without other traffic.
pub(super) async fn tick_leases(service: std::sync::Weak<LockService>) {
    let mut every = tokio::time::interval(TICK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        if service.is_stopping() {
            return;
        }
        let group = service.group();
        let leading = group.is_leader();
        let now = group.shared().clock().now_ms(std::time::Instant::now());
        let due = group.read(|t| t.next_deadline()).is_some_and(|d| d <= now);
        if leading
            && due
            && let WriteReply::Unavailable { reason } = group.write_local(Command::Tick).await
        {
            tracing::debug!(%reason, "lease tick not applied");
        }
    }
}
