//! Unit tests that need the crate's internals: fsync failure injection and the ordering of queued cuts.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use super::*;

fn entry(lsn: u64, term: u64) -> Entry {
    Entry {
        lsn,
        term,
        payload: format!("payload-{lsn}-{term}").into_bytes(),
    }
}

fn entries(lsns: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    lsns.map(|lsn| entry(lsn, term)).collect()
}

fn lsns(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.lsn).collect()
}

/// Polls `fut` exactly once (so a command queued on first poll is queued now) and returns it.
async fn poll_once<F: Future>(mut fut: Pin<Box<F>>) -> Pin<Box<F>> {
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    fut
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: 200,
        fsync: FsyncPolicy::Always,
    }
}

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn failed_fsync_fails_every_pending_and_later_operation() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), LogOptions::default()).unwrap();
    bounded(log.append(vec![entry(1, 1)])).await.unwrap();
    assert_eq!(log.durable_lsn(), Some(1));

    // Three appends queued before the writer runs (current-thread runtime): one batch, one failing fsync.
    log.fail_next_fsync();
    let a = log.append(vec![entry(2, 1)]);
    let b = log.append(vec![entry(3, 1)]);
    let c = log.append(vec![entry(4, 1), entry(5, 1)]);
    for r in [bounded(a).await, bounded(b).await, bounded(c).await] {
        let err = r.unwrap_err();
        assert!(matches!(err, LogError::Io(_)), "{err:?}");
    }
    assert_eq!(
        log.durable_lsn(),
        Some(1),
        "nothing after the failed fsync is durable"
    );

    // Never success again, whatever the operation.
    let err = bounded(log.append(vec![entry(6, 1)])).await.unwrap_err();
    assert!(matches!(err, LogError::Io(_)), "{err:?}");
    assert!(err.to_string().contains("injected fsync failure"), "{err}");
    assert!(bounded(log.append(Vec::new())).await.is_err());
    assert!(bounded(log.truncate_after(1)).await.is_err());
    assert!(bounded(log.purge_before(1)).await.is_err());
    assert!(bounded(log.reset()).await.is_err());
    // Reads still work and show only what was acknowledged durable.
    assert_eq!(lsns(&log.read_all().unwrap()), vec![1]);
    drop(log);

    // The data of the failed batch may or may not be on disk; the log reopens cleanly either way.
    let log = ShardLog::open(dir.path(), LogOptions::default()).unwrap();
    let got = lsns(&log.read_all().unwrap());
    assert!(got == vec![1] || got == vec![1, 2, 3, 4, 5], "{got:?}");
}

#[tokio::test]
async fn failed_fsync_on_segment_roll_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small_segments()).unwrap();
    bounded(log.append(entries(1..=3, 1))).await.unwrap();
    log.fail_next_fsync();
    // Enough to roll: the roll's fsync of the old segment (or the new segment's creation) fails.
    let err = bounded(log.append(entries(4..=20, 1))).await.unwrap_err();
    assert!(matches!(err, LogError::Io(_)), "{err:?}");
    assert!(bounded(log.append(vec![entry(21, 1)])).await.is_err());
    assert_eq!(log.durable_lsn(), Some(3));
}

#[tokio::test]
async fn truncate_queued_behind_appends_keeps_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small_segments()).unwrap();
    // Queued, not yet written: the writer has not run (current-thread runtime, nothing awaited yet).
    let a = log.append(entries(1..=10, 1));
    let t = poll_once(Box::pin(log.truncate_after(5))).await;
    assert_eq!(log.last(), Some((5, 1)));
    assert_eq!(log.durable_lsn(), None);
    let b = log.append(vec![entry(6, 2), entry(7, 2)]);
    assert_eq!(log.last(), Some((7, 2)));
    assert_eq!(log.term_at(6), Some(2));
    bounded(a).await.unwrap();
    bounded(t).await.unwrap();
    bounded(b).await.unwrap();
    assert_eq!(log.durable_lsn(), Some(7));
    let all = log.read_all().unwrap();
    assert_eq!(lsns(&all), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(all[5], entry(6, 2));
    log.close().await.unwrap();

    let log = ShardLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.read_all().unwrap(), all);
    assert_eq!(log.last(), Some((7, 2)));
}

#[tokio::test]
async fn purge_then_reset_then_low_lsn_keeps_the_new_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small_segments()).unwrap();
    bounded(log.append(entries(10..=40, 1))).await.unwrap();
    // Purge queued, then a reset, then an entry below everything purged: the purge's completion must not forget
    // the new entry.
    let p = poll_once(Box::pin(log.purge_before(30))).await;
    let r = poll_once(Box::pin(log.reset())).await;
    assert_eq!(log.last(), None);
    let a = log.append(vec![entry(3, 7)]);
    assert!(bounded(p).await.unwrap() > 0);
    bounded(r).await.unwrap();
    bounded(a).await.unwrap();
    assert_eq!(log.first_lsn(), Some(3));
    assert_eq!(log.last(), Some((3, 7)));
    assert_eq!(log.durable_lsn(), Some(3));
    assert_eq!(log.read_all().unwrap(), vec![entry(3, 7)]);
}

#[tokio::test]
async fn purge_then_truncate_below_the_purge_point() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small_segments()).unwrap();
    bounded(log.append(entries(1..=40, 1))).await.unwrap();
    let p = poll_once(Box::pin(log.purge_before(15))).await;
    let t = poll_once(Box::pin(log.truncate_after(20))).await;
    let a = log.append(entries(21..=22, 2));
    let purged = bounded(p).await.unwrap();
    bounded(t).await.unwrap();
    bounded(a).await.unwrap();
    let all = log.read_all().unwrap();
    let first = all[0].lsn;
    assert!(purged > 0 && first > 1, "first {first}");
    assert_eq!(log.first_lsn(), Some(first));
    assert_eq!(all.last().map(|e| (e.lsn, e.term)), Some((22, 2)));
    assert_eq!(lsns(&all), (first..=22).collect::<Vec<_>>());
    assert_eq!(log.term_at(first), Some(1));
    assert_eq!(log.term_at(first - 1), None);
}

#[test]
fn forget_purged_respects_later_cuts() {
    let mut state = State {
        index: LsnIndex::default(),
        durable: None,
        segments: Vec::new(),
        generation: 0,
        cuts: Vec::new(),
        dead: None,
    };
    for lsn in 1..=50 {
        state.index.push(lsn, 1);
    }
    // Purge at generation 0 removed 1..=30; a truncation to 20 (generation 1) was queued after it, then 21..=25
    // were appended again.
    state.generation = 1;
    state.cuts.push((1, Some(20)));
    state.index.truncate_after(20);
    for lsn in 21..=25 {
        state.index.push(lsn, 2);
    }
    state.forget_purged(30, 0);
    assert_eq!(state.index.first(), Some(21));
    assert_eq!(state.index.last(), Some((25, 2)));
    state.processed(1);
    assert!(state.cuts.is_empty());

    // A reset after the purge: nothing the purge removed is still known.
    state.generation = 2;
    state.cuts.push((2, None));
    state.index.clear();
    state.index.push(2, 3);
    state.forget_purged(30, 1);
    assert_eq!(state.index.last(), Some((2, 3)));
    assert_eq!(state.index.first(), Some(2));
}

#[tokio::test]
async fn interval_policy_acknowledges_after_write_and_ticks_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 64 << 20,
        fsync: FsyncPolicy::Interval(Duration::from_millis(5)),
    };
    let log = ShardLog::open(dir.path(), opts.clone()).unwrap();
    bounded(log.append(entries(1..=5, 1))).await.unwrap();
    assert_eq!(log.durable_lsn(), Some(5));
    // The append created the segment (file and directory fsyncs) but did not fsync the records.
    let before = log.fsync_count();
    // The tick fsyncs the written data without any further call.
    bounded(async {
        while log.fsync_count() == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(!log.inner.shared.state().segments.is_empty());
    log.close().await.unwrap();
    let log = ShardLog::open(dir.path(), opts).unwrap();
    assert_eq!(lsns(&log.read_all().unwrap()), vec![1, 2, 3, 4, 5]);
}
