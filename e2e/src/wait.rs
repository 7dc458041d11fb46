//! Bounded waits: poll a check until it holds, or fail with what was last seen. No test sleeps a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long an operator reaction may take: a reconcile is triggered by the watch at once, so this only bounds a
/// slow machine.
pub const RECONCILE: Duration = Duration::from_secs(60);
/// How long real pods may take to pull, start and form their raft group (kind).
pub const REAL_PODS: Duration = Duration::from_secs(300);
/// Time between two checks.
const INTERVAL: Duration = Duration::from_millis(250);

/// What one check found.
#[derive(Debug)]
pub enum Check<T> {
    /// The condition holds; the wait returns this value.
    Done(T),
    /// Not yet; the text says what was seen instead, for the timeout message.
    Pending(String),
}

/// Runs `check` every 250 ms until it answers [`Check::Done`], and returns that value.
///
/// Errors: after `timeout`, an error naming `what` and the last [`Check::Pending`] text or check error (errors of
/// a check, e.g. a 404 before the object exists, count as "not yet").
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(Check::Done(value)) => return Ok(value),
            Ok(Check::Pending(seen)) => seen,
            Err(e) => format!("error: {e:#}"),
        };
        if started.elapsed() >= timeout {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// [`Check::Done`] when `ok`, else [`Check::Pending`] with `seen`.
pub fn check<T>(ok: bool, value: T, seen: impl FnOnce() -> String) -> Check<T> {
    if ok {
        Check::Done(value)
    } else {
        Check::Pending(seen())
    }
}
