//! Crash test: a child process (this test binary, re-executed) appends with several concurrent appenders and
//! prints each lsn once its append is acknowledged; the parent SIGKILLs it mid-stream, reopens the log and checks
//! that every acknowledged entry survived and the log is readable. Two rounds, so the second child also recovers
//! the log the first one left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use syncd_queue_log::{Entry, FsyncPolicy, LogOptions, ShardLog};

/// Set (to the log directory) in the child's environment.
const CHILD_ENV: &str = "SYNCD_QUEUE_LOG_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_process";
const APPENDERS: u64 = 4;
const ACKS_PER_ROUND: usize = 300;
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

fn options() -> LogOptions {
    LogOptions {
        // Small segments, so the child also rolls segments while it is killed.
        segment_bytes: 128 << 10,
        fsync: FsyncPolicy::Always,
    }
}

/// The payload of `lsn`: up to ~8 KiB, so a kill often lands inside a write.
fn payload(lsn: u64) -> Vec<u8> {
    let len = (lsn.wrapping_mul(7919) % 8000) as usize;
    (0..len).map(|i| (lsn as u8) ^ (i as u8)).collect()
}

/// The child side. A no-op unless run as the crash child.
#[test]
fn crash_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let log = ShardLog::open(PathBuf::from(dir), options()).unwrap();
        let next = Arc::new(Mutex::new(log.last().map_or(1, |(lsn, _)| lsn + 1)));
        let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel::<u64>();
        for _ in 0..APPENDERS {
            let log = log.clone();
            let next = Arc::clone(&next);
            let acks = acks.clone();
            tokio::spawn(async move {
                loop {
                    let (lsn, durable) = {
                        let mut next = next.lock().unwrap();
                        let lsn = *next;
                        *next += 1;
                        let entry = Entry {
                            lsn,
                            term: 1,
                            payload: payload(lsn),
                        };
                        (lsn, log.append(vec![entry]))
                    };
                    durable.await.unwrap();
                    if acks.send(lsn).is_err() {
                        return;
                    }
                }
            });
        }
        drop(acks);
        // Straight to the process's stdout (not the test harness's capture), flushed per line.
        let mut out = std::io::stdout().lock();
        while let Some(lsn) = acked.recv().await {
            writeln!(out, "ack {lsn}").unwrap();
            out.flush().unwrap();
        }
    });
}

/// Kills the child on every exit path, including a failed assertion.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child until it has acknowledged `ACKS_PER_ROUND` appends, SIGKILLs it, and returns every lsn it
/// acknowledged (including the acks still in the pipe when it died).
fn run_and_kill_child(dir: &Path) -> Vec<u64> {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines, received) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    let parse = |line: &str| {
        line.strip_prefix("ack ")
            .map(|n| n.trim().parse::<u64>().unwrap())
    };
    let deadline = Instant::now() + ROUND_TIMEOUT;
    let mut acks = Vec::new();
    while acks.len() < ACKS_PER_ROUND {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => acks.extend(parse(&line)),
            Err(e) => panic!(
                "child gave {} acks, then {e:?}; exit status {:?}",
                acks.len(),
                child.0.try_wait()
            ),
        }
    }
    // SIGKILL: no destructor, no flush, no close. Then drain what it printed before dying (the pipe closes).
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let deadline = Instant::now() + ROUND_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => acks.extend(parse(&line)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the child's stdout did not close"),
        }
    }
    reader.join().unwrap();
    acks
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut acked = Vec::new();
    for round in 0..2 {
        acked.extend(run_and_kill_child(dir.path()));
        let max_acked = *acked.iter().max().unwrap();

        runtime.block_on(async {
            let log = ShardLog::open(dir.path(), options()).unwrap();
            let all = log.read_all().unwrap();
            // Lsns are assigned contiguously and written in queue order, so a crash can only lose a suffix: the
            // log is exactly 1..=n for some n covering every acknowledged lsn.
            let n = all.len() as u64;
            assert!(
                n >= max_acked,
                "round {round}: log ends at {n}, lsn {max_acked} was acknowledged"
            );
            for (i, e) in all.iter().enumerate() {
                assert_eq!(
                    e.lsn,
                    i as u64 + 1,
                    "round {round}: hole before lsn {}",
                    e.lsn
                );
                assert_eq!(e.term, 1);
                assert_eq!(
                    e.payload,
                    payload(e.lsn),
                    "round {round}: payload of lsn {}",
                    e.lsn
                );
            }
            assert_eq!(log.last(), Some((n, 1)));
            assert_eq!(log.durable_lsn(), Some(n));
            println!(
                "round {round}: {} acks (max {max_acked}), {n} entries recovered",
                acked.len()
            );
            tokio::time::timeout(ROUND_TIMEOUT, log.close())
                .await
                .unwrap()
                .unwrap();
        });
    }
    // The acks themselves were unique.
    let mut unique = acked.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), acked.len());
}
