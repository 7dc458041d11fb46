//! Behaviour of the shard log through its public API: appends and reads, recovery from torn tails, corruption,
//! group commit, segments and purge, truncation, reset, destroy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syncd_queue_log::format::{self, SEGMENT_HEADER_LEN};
use syncd_queue_log::{Entry, FsyncPolicy, LogError, LogOptions, ShardLog};

fn entry(lsn: u64, term: u64) -> Entry {
    // Payload sizes vary with the lsn so record boundaries are irregular.
    let len = (lsn % 7) as usize * 5 + 3;
    Entry {
        lsn,
        term,
        payload: (0..len)
            .map(|i| (lsn as u8).wrapping_add(i as u8))
            .collect(),
    }
}

fn entries(lsns: impl IntoIterator<Item = u64>, term: u64) -> Vec<Entry> {
    lsns.into_iter().map(|lsn| entry(lsn, term)).collect()
}

fn lsns(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.lsn).collect()
}

fn opts(segment_bytes: u64) -> LogOptions {
    LogOptions {
        segment_bytes,
        fsync: FsyncPolicy::Always,
    }
}

async fn bounded<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("timed out")
}

/// Segment files of `dir`, sorted.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(format::parse_segment_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

/// Byte offsets of the records of a segment file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as usize;
    while at < bytes.len() {
        match format::decode_record(&bytes[at..]) {
            format::Decoded::Record { len, .. } => {
                offsets.push(at);
                at += len;
            }
            other => panic!("unexpected {other:?} at {at}"),
        }
    }
    offsets
}

/// Writes a log with `entries` in `dir` and closes it.
async fn write_log(dir: &Path, options: LogOptions, entries: Vec<Entry>) {
    let log = ShardLog::open(dir, options).unwrap();
    bounded(log.append(entries)).await.unwrap();
    bounded(log.close()).await.unwrap();
}

#[tokio::test]
async fn append_read_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path().join("shard"), LogOptions::default()).unwrap();
    assert_eq!(log.last(), None);
    assert_eq!(log.first_lsn(), None);
    assert_eq!(log.durable_lsn(), None);
    assert!(log.read_all().unwrap().is_empty());
    assert!(log.read_from(0, 100).unwrap().is_empty());

    // Gaps are allowed; terms change.
    let mut all = entries(1..=5, 1);
    all.extend(entries([8, 9, 20], 2));
    all.push(Entry {
        lsn: 21,
        term: 4,
        payload: Vec::new(),
    });
    bounded(log.append(all[..5].to_vec())).await.unwrap();
    bounded(log.append(all[5..].to_vec())).await.unwrap();
    assert_eq!(log.last(), Some((21, 4)));
    assert_eq!(log.first_lsn(), Some(1));
    assert_eq!(log.durable_lsn(), Some(21));
    assert_eq!(log.term_at(1), Some(1));
    assert_eq!(log.term_at(5), Some(1));
    assert_eq!(log.term_at(6), None);
    assert_eq!(log.term_at(8), Some(2));
    assert_eq!(log.term_at(20), Some(2));
    assert_eq!(log.term_at(21), Some(4));
    assert_eq!(log.term_at(22), None);
    assert_eq!(log.read_all().unwrap(), all);
    bounded(log.close()).await.unwrap();

    let log = ShardLog::open(dir.path().join("shard"), LogOptions::default()).unwrap();
    assert_eq!(log.read_all().unwrap(), all);
    assert_eq!(log.last(), Some((21, 4)));
    assert_eq!(log.durable_lsn(), Some(21));
    assert_eq!(log.term_at(9), Some(2));
    assert_eq!(log.term_at(7), None);
    bounded(log.append(entries([22], 4))).await.unwrap();
    assert_eq!(log.last(), Some((22, 4)));
}

#[tokio::test]
async fn rejects_non_monotonic_and_oversized_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), LogOptions::default()).unwrap();
    bounded(log.append(entries(1..=3, 1))).await.unwrap();
    match bounded(log.append(entries([3], 1))).await {
        Err(LogError::NotMonotonic { last: 3, got: 3 }) => {}
        other => panic!("{other:?}"),
    }
    match bounded(log.append(entries([5, 4], 1))).await {
        Err(LogError::NotMonotonic { last: 5, got: 4 }) => {}
        other => panic!("{other:?}"),
    }
    let huge = Entry {
        lsn: 10,
        term: 1,
        payload: vec![0; format::MAX_PAYLOAD_LEN as usize + 1],
    };
    match bounded(log.append(vec![huge])).await {
        Err(LogError::PayloadTooLarge { lsn: 10, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A rejected batch queues nothing.
    assert_eq!(log.last(), Some((3, 1)));
    bounded(log.append(entries([4], 1))).await.unwrap();
    assert_eq!(lsns(&log.read_all().unwrap()), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn read_from_pages_by_payload_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), opts(300)).unwrap();
    let all = entries(1..=60, 1);
    bounded(log.append(all.clone())).await.unwrap();
    assert!(segment_files(dir.path()).len() > 3);

    // Whole log, any starting point, any page size: pages concatenate to the suffix.
    for from in [0, 1, 2, 17, 33, 59, 60] {
        for max in [0, 1, 20, 100, 1000] {
            let mut got = Vec::new();
            let mut next = from;
            loop {
                let page = log.read_from(next, max).unwrap();
                let Some(last) = page.last() else { break };
                assert!(!page.is_empty());
                let bytes: usize = page.iter().map(|e| e.payload.len()).sum();
                assert!(
                    page.len() == 1 || bytes <= max,
                    "page of {bytes} bytes > {max}"
                );
                next = last.lsn + 1;
                got.extend(page);
            }
            let want: Vec<Entry> = all.iter().filter(|e| e.lsn >= from).cloned().collect();
            assert_eq!(got, want, "from {from} max {max}");
        }
    }
    assert!(log.read_from(61, 1000).unwrap().is_empty());
    let page = log.read_from(10, 30).unwrap();
    assert_eq!(page[0].lsn, 10);
    assert!(page.iter().map(|e| e.payload.len()).sum::<usize>() <= 30);
}

#[tokio::test]
async fn group_commit_200_concurrent_appends_cost_few_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), LogOptions::default()).unwrap();
    let next_lsn = Arc::new(Mutex::new(1u64));
    let before = log.fsync_count();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let log = log.clone();
        let next_lsn = Arc::clone(&next_lsn);
        tasks.push(tokio::spawn(async move {
            let (lsn, durable) = {
                let mut next = next_lsn.lock().unwrap();
                let lsn = *next;
                *next += 1;
                (lsn, log.append(entries([lsn], 1)))
            };
            durable.await.map(|()| lsn)
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(bounded(t).await.unwrap().unwrap());
    }
    let fsyncs = log.fsync_count() - before;
    acked.sort_unstable();
    assert_eq!(acked, (1..=200).collect::<Vec<_>>());
    assert_eq!(log.read_all().unwrap(), entries(1..=200, 1));
    assert_eq!(log.durable_lsn(), Some(200));
    // One segment creation (file + directory) and then one fdatasync per batch.
    println!("200 appends took {fsyncs} fsyncs");
    assert!(fsyncs < 200, "{fsyncs} fsyncs for 200 appends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_on_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), LogOptions::default()).unwrap();
    let next_lsn = Arc::new(Mutex::new(1u64));
    let before = log.fsync_count();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let log = log.clone();
        let next_lsn = Arc::clone(&next_lsn);
        tasks.push(tokio::spawn(async move {
            let durable = {
                let mut next = next_lsn.lock().unwrap();
                let lsn = *next;
                *next += 1;
                log.append(entries([lsn], 1))
            };
            durable.await
        }));
    }
    for t in tasks {
        bounded(t).await.unwrap().unwrap();
    }
    let fsyncs = log.fsync_count() - before;
    assert_eq!(log.read_all().unwrap(), entries(1..=200, 1));
    println!("200 appends took {fsyncs} fsyncs");
    assert!(fsyncs < 200, "{fsyncs} fsyncs for 200 appends");
}

#[tokio::test]
async fn segments_roll_and_purge_removes_only_covered_inactive_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    for lsn in 1..=80 {
        bounded(log.append(entries([lsn], 1))).await.unwrap();
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "{} segments", files.len());
    // Named by first lsn, each within the size limit (every record here is smaller than the limit).
    let mut firsts = Vec::new();
    for f in &files {
        let bytes = fs::read(f).unwrap();
        assert!(bytes.len() <= 256, "{f:?} is {} bytes", bytes.len());
        let first = format::parse_segment_file_name(f.file_name().unwrap().to_str().unwrap());
        let format::Decoded::Record { record, .. } =
            format::decode_record(&bytes[SEGMENT_HEADER_LEN as usize..])
        else {
            panic!("no first record in {f:?}")
        };
        assert_eq!(Some(record.lsn), first);
        firsts.push(record.lsn);
    }

    // Nothing is entirely below the first lsn.
    assert_eq!(bounded(log.purge_before(firsts[0])).await.unwrap(), 0);
    // Exactly the segments whose last lsn is below the cut: the second segment's first lsn covers the first one
    // only; one past it still keeps the second (it holds the cut lsn).
    assert_eq!(bounded(log.purge_before(firsts[1])).await.unwrap(), 1);
    assert_eq!(log.first_lsn(), Some(firsts[1]));
    assert_eq!(bounded(log.purge_before(firsts[2] - 1)).await.unwrap(), 0);
    assert_eq!(segment_files(dir.path()), files[1..]);
    // Everything: all but the active segment go.
    let removed = bounded(log.purge_before(u64::MAX)).await.unwrap();
    assert_eq!(removed, files.len() - 2);
    let last_first = *firsts.last().unwrap();
    assert_eq!(segment_files(dir.path()), files[files.len() - 1..]);
    assert_eq!(log.first_lsn(), Some(last_first));
    assert_eq!(log.term_at(last_first - 1), None);
    assert_eq!(log.term_at(last_first), Some(1));
    assert_eq!(
        lsns(&log.read_all().unwrap()),
        (last_first..=80).collect::<Vec<_>>()
    );
    // Reading from a purged lsn starts at the first stored one.
    assert_eq!(log.read_from(1, usize::MAX).unwrap()[0].lsn, last_first);

    // Appends go on; reopen sees the purged log.
    bounded(log.append(entries(81..=90, 1))).await.unwrap();
    bounded(log.close()).await.unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert_eq!(log.first_lsn(), Some(last_first));
    assert_eq!(log.last(), Some((90, 1)));
    assert_eq!(log.read_all().unwrap(), entries(last_first..=90, 1));
    bounded(log.append(entries([91], 2))).await.unwrap();
    assert_eq!(log.term_at(91), Some(2));
}

#[tokio::test]
async fn truncate_after_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    bounded(log.append(entries(1..=50, 1))).await.unwrap();
    let segments_before = segment_files(dir.path()).len();

    // Nothing to remove.
    bounded(log.truncate_after(50)).await.unwrap();
    assert_eq!(log.last(), Some((50, 1)));
    // Within the last segment, then across segments.
    bounded(log.truncate_after(48)).await.unwrap();
    assert_eq!(log.last(), Some((48, 1)));
    assert_eq!(log.durable_lsn(), Some(48));
    bounded(log.truncate_after(17)).await.unwrap();
    assert_eq!(log.last(), Some((17, 1)));
    assert_eq!(log.durable_lsn(), Some(17));
    assert_eq!(log.term_at(18), None);
    assert!(segment_files(dir.path()).len() < segments_before);
    assert_eq!(log.read_all().unwrap(), entries(1..=17, 1));

    // The divergent suffix is replaced in a new term.
    bounded(log.append(entries(18..=30, 2))).await.unwrap();
    let mut want = entries(1..=17, 1);
    want.extend(entries(18..=30, 2));
    assert_eq!(log.read_all().unwrap(), want);
    bounded(log.close()).await.unwrap();

    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert_eq!(log.read_all().unwrap(), want);
    assert_eq!(log.last(), Some((30, 2)));
    assert_eq!(log.term_at(17), Some(1));
    assert_eq!(log.term_at(18), Some(2));

    // Truncating below the first lsn empties the log.
    bounded(log.truncate_after(0)).await.unwrap();
    assert_eq!(log.last(), None);
    assert_eq!(log.durable_lsn(), None);
    assert!(segment_files(dir.path()).is_empty());
    bounded(log.append(entries([5], 3))).await.unwrap();
    bounded(log.close()).await.unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert_eq!(log.read_all().unwrap(), entries([5], 3));
}

#[tokio::test]
async fn reset_then_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    bounded(log.append(entries(1..=40, 1))).await.unwrap();
    bounded(log.reset()).await.unwrap();
    assert_eq!(log.last(), None);
    assert_eq!(log.first_lsn(), None);
    assert_eq!(log.durable_lsn(), None);
    assert!(log.read_all().unwrap().is_empty());
    assert!(segment_files(dir.path()).is_empty());
    bounded(log.close()).await.unwrap();

    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert!(log.read_all().unwrap().is_empty());
    // The next append may start anywhere (a snapshot was installed up to 1000).
    bounded(log.append(entries(1001..=1010, 5))).await.unwrap();
    bounded(log.close()).await.unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert_eq!(log.read_all().unwrap(), entries(1001..=1010, 5));
    assert_eq!(log.first_lsn(), Some(1001));
}

#[tokio::test]
async fn destroy_removes_the_directory_and_closes_every_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shard-7");
    let log = ShardLog::open(&path, opts(256)).unwrap();
    let other = log.clone();
    bounded(log.append(entries(1..=20, 1))).await.unwrap();
    bounded(log.destroy()).await.unwrap();
    assert!(!path.exists());
    assert!(matches!(
        bounded(other.append(entries([21], 1))).await,
        Err(LogError::Closed)
    ));
    assert!(matches!(
        bounded(other.reset()).await,
        Err(LogError::Closed)
    ));
    // Opening again starts an empty log.
    let log = ShardLog::open(&path, opts(256)).unwrap();
    assert_eq!(log.last(), None);
}

#[tokio::test]
async fn close_completes_queued_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    let other = log.clone();
    let queued = log.append(entries(1..=10, 1));
    bounded(log.close()).await.unwrap();
    bounded(queued).await.unwrap();
    assert!(matches!(
        bounded(other.append(entries([11], 1))).await,
        Err(LogError::Closed)
    ));
    let log = ShardLog::open(dir.path(), opts(256)).unwrap();
    assert_eq!(log.read_all().unwrap(), entries(1..=10, 1));
}

#[test]
fn open_outside_a_runtime_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = ShardLog::open(dir.path(), LogOptions::default()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

// ---- recovery ----

/// A closed log of two segments; returns its entries and the path of the last segment.
async fn two_segment_log(dir: &Path) -> (Vec<Entry>, PathBuf) {
    let all = entries(1..=12, 1);
    let log = ShardLog::open(dir, opts(200)).unwrap();
    for e in &all {
        bounded(log.append(vec![e.clone()])).await.unwrap();
    }
    bounded(log.close()).await.unwrap();
    let files = segment_files(dir);
    assert!(files.len() >= 2, "{files:?}");
    let last = files.last().unwrap().clone();
    assert!(record_offsets(&fs::read(&last).unwrap()).len() >= 2);
    (all, last)
}

/// Opens `dir`, expects exactly `want`, checks the tail was cut durably and the log takes appends again.
async fn expect_recovered(dir: &Path, want: &[Entry], last_segment: &Path, valid_len: usize) {
    let log = ShardLog::open(dir, opts(200)).unwrap();
    assert_eq!(log.read_all().unwrap(), want);
    assert_eq!(fs::metadata(last_segment).unwrap().len(), valid_len as u64);
    let next = want.last().map_or(1, |e| e.lsn + 1);
    bounded(log.append(entries([next], 9))).await.unwrap();
    bounded(log.close()).await.unwrap();
    let log = ShardLog::open(dir, opts(200)).unwrap();
    let mut with_next = want.to_vec();
    with_next.extend(entries([next], 9));
    assert_eq!(log.read_all().unwrap(), with_next);
    bounded(log.close()).await.unwrap();
}

#[tokio::test]
async fn torn_tail_cut_at_every_byte_of_the_last_record_recovers() {
    let base = tempfile::tempdir().unwrap();
    let (all, last_seg) = two_segment_log(base.path()).await;
    let bytes = fs::read(&last_seg).unwrap();
    let last_start = *record_offsets(&bytes).last().unwrap();
    let name = last_seg.file_name().unwrap().to_owned();
    let others: Vec<PathBuf> = segment_files(base.path())
        .into_iter()
        .filter(|p| *p != last_seg)
        .collect();
    for cut in last_start..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        for f in &others {
            fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let seg = dir.path().join(&name);
        fs::write(&seg, &bytes[..cut]).unwrap();
        expect_recovered(dir.path(), &all[..all.len() - 1], &seg, last_start).await;
    }
}

#[tokio::test]
async fn garbage_after_the_last_record_is_cut() {
    let mut zero_len_bad_crc = Vec::new();
    format::encode_record(&mut zero_len_bad_crc, 99, 1, b"").unwrap();
    zero_len_bad_crc[4] ^= 0xFF;
    let mut partial_valid = Vec::new();
    format::encode_record(&mut partial_valid, 13, 1, b"a record that never finished").unwrap();
    partial_valid.truncate(30);
    let garbages: Vec<Vec<u8>> = vec![
        vec![0; 1],
        vec![0; 23],
        vec![0; 24],
        vec![0; 4096],
        vec![0xFF; 100],
        (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        zero_len_bad_crc,
        partial_valid,
    ];
    for garbage in garbages {
        let dir = tempfile::tempdir().unwrap();
        let (all, last_seg) = two_segment_log(dir.path()).await;
        let valid_len = fs::metadata(&last_seg).unwrap().len() as usize;
        let mut bytes = fs::read(&last_seg).unwrap();
        bytes.extend_from_slice(&garbage);
        fs::write(&last_seg, &bytes).unwrap();
        expect_recovered(dir.path(), &all, &last_seg, valid_len).await;
    }
}

#[tokio::test]
async fn bad_crc_in_the_last_record_is_a_torn_tail() {
    // A flipped bit anywhere in the last record (length, CRC, lsn, term or payload).
    let base = tempfile::tempdir().unwrap();
    let (all, last_seg) = two_segment_log(base.path()).await;
    let bytes = fs::read(&last_seg).unwrap();
    let last_start = *record_offsets(&bytes).last().unwrap();
    for at in last_start..bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        for f in segment_files(base.path()) {
            fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let seg = dir.path().join(last_seg.file_name().unwrap());
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        fs::write(&seg, &bad).unwrap();
        expect_recovered(dir.path(), &all[..all.len() - 1], &seg, last_start).await;
    }
}

#[tokio::test]
async fn bad_crc_in_a_segment_that_is_not_the_last_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    two_segment_log(dir.path()).await;
    let first = segment_files(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    let offsets = record_offsets(&bytes);
    // The last record of the first segment: damage at a segment's end is still damage unless it is the last.
    let at = *offsets.last().unwrap();
    let len = bytes.len();
    bytes[len - 1] ^= 0x01;
    fs::write(&first, &bytes).unwrap();
    match ShardLog::open(dir.path(), opts(200)) {
        Err(LogError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, first);
            assert_eq!(offset, at as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn partial_segment_that_is_not_the_last_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    two_segment_log(dir.path()).await;
    let first = segment_files(dir.path())[0].clone();
    let bytes = fs::read(&first).unwrap();
    fs::write(&first, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(
        ShardLog::open(dir.path(), opts(200)),
        Err(LogError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn bad_crc_in_the_middle_of_the_last_segment_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let (_, last_seg) = two_segment_log(dir.path()).await;
    let mut bytes = fs::read(&last_seg).unwrap();
    let offsets = record_offsets(&bytes);
    let victim = offsets[offsets.len() - 2];
    // Flip a payload byte of the second-to-last record: the last record after it is intact.
    bytes[offsets[offsets.len() - 1] - 1] ^= 0x01;
    fs::write(&last_seg, &bytes).unwrap();
    match ShardLog::open(dir.path(), opts(200)) {
        Err(LogError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, last_seg);
            assert_eq!(offset, victim as u64);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn segment_name_must_match_its_first_record() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), opts(1 << 20), entries(1..=3, 1)).await;
    let seg = segment_files(dir.path())[0].clone();
    fs::rename(&seg, dir.path().join(format::segment_file_name(2))).unwrap();
    assert!(matches!(
        ShardLog::open(dir.path(), opts(1 << 20)),
        Err(LogError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn bad_magic_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), opts(1 << 20), entries(1..=3, 1)).await;
    let seg = segment_files(dir.path())[0].clone();
    let mut bytes = fs::read(&seg).unwrap();
    bytes[0] = b'X';
    fs::write(&seg, &bytes).unwrap();
    assert!(matches!(
        ShardLog::open(dir.path(), opts(1 << 20)),
        Err(LogError::Corrupt { offset: 0, .. })
    ));
}

#[tokio::test]
async fn segment_created_but_never_written_is_removed() {
    // What a crash right after rolling leaves: a last segment with a partial header, or only the header.
    for header in [&b""[..], &b"SYNC"[..], &format::SEGMENT_MAGIC[..]] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), opts(1 << 20), entries(1..=3, 1)).await;
        let empty = dir.path().join(format::segment_file_name(4));
        fs::write(&empty, header).unwrap();
        let log = ShardLog::open(dir.path(), opts(1 << 20)).unwrap();
        assert!(!empty.exists());
        assert_eq!(log.read_all().unwrap(), entries(1..=3, 1));
        bounded(log.append(entries([4], 1))).await.unwrap();
        assert_eq!(lsns(&log.read_all().unwrap()), vec![1, 2, 3, 4]);
    }
}

#[tokio::test]
async fn other_files_in_the_directory_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), opts(1 << 20), entries(1..=3, 1)).await;
    fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    fs::write(dir.path().join("12.seg"), b"not a segment name").unwrap();
    let log = ShardLog::open(dir.path(), opts(1 << 20)).unwrap();
    assert_eq!(log.read_all().unwrap(), entries(1..=3, 1));
}
