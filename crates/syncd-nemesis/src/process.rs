//! Child processes by node id: spawn, SIGKILL, SIGSTOP/SIGCONT, SIGTERM, and liveness checks.
//!
//! Signals other than SIGKILL are sent with the `kill` command (the crate forbids `unsafe`, so no `libc::kill`).
//! [`Procs`] continues every stopped child and kills every child when dropped, so a failing test never leaks
//! processes (not even frozen ones).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Lines of a node's log shown when it is found dead.
const LOG_TAIL_LINES: usize = 40;

/// Picks `n` free loopback ports below the kernel's ephemeral range (32768 and up on Linux), so that no outgoing
/// connection of a concurrently running test can take a port between its choice here and a node binding it.
/// Ports come from a process-wide counter, so concurrent tests in one test binary never pick the same one; the
/// range (10000 to 21899, by process id) is disjoint from that of the `syncd` cluster harness in the same process.
pub fn free_ports(n: usize) -> Vec<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 10_000 + (std::process::id() % 100) as u16 * 100;
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 2_000;
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// One child and where its output goes.
struct Proc {
    child: Child,
    log: PathBuf,
}

#[derive(Default)]
struct State {
    procs: BTreeMap<u64, Proc>,
    stopped: BTreeSet<u64>,
}

/// The child processes of a test, by node id. Every method takes `&self`, so one `Procs` can be shared by the
/// test and its nemesis task. Methods that wait block the calling thread briefly (polling every 20 ms).
#[derive(Default)]
pub struct Procs {
    state: Mutex<State>,
}

impl Procs {
    /// No children yet.
    pub fn new() -> Procs {
        Procs::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts `program` with `args` and extra environment `envs` as node `id`, its stdout and stderr appended to
    /// `log`, its stdin closed. Returns its pid. Fails when a child with that id is already tracked (kill it
    /// first; a child that has exited on its own is replaced).
    pub fn spawn<I, S>(
        &self,
        id: u64,
        program: impl AsRef<OsStr>,
        args: I,
        envs: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<u32>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut state = self.state();
        if let Some(proc) = state.procs.get_mut(&id) {
            if proc.child.try_wait()?.is_none() {
                bail!("node {id} is already running");
            }
            state.procs.remove(&id);
            state.stopped.remove(&id);
        }
        let stderr = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open the log {}", log.display()))?;
        let stdout = stderr.try_clone()?;
        let program = program.as_ref();
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawn {} as node {id}", program.to_string_lossy()))?;
        let pid = child.id();
        state.procs.insert(
            id,
            Proc {
                child,
                log: log.to_path_buf(),
            },
        );
        Ok(pid)
    }

    /// The ids of the tracked children (running, stopped, or exited but not yet noticed).
    pub fn ids(&self) -> Vec<u64> {
        self.state().procs.keys().copied().collect()
    }

    /// The pid of node `id`, if tracked.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.state().procs.get(&id).map(|proc| proc.child.id())
    }

    /// Whether node `id` is tracked and has not exited (a stopped process is running).
    pub fn is_running(&self, id: u64) -> bool {
        let mut state = self.state();
        state
            .procs
            .get_mut(&id)
            .is_some_and(|proc| matches!(proc.child.try_wait(), Ok(None)))
    }

    /// Whether node `id` is frozen by [`Procs::stop`].
    pub fn is_stopped(&self, id: u64) -> bool {
        self.state().stopped.contains(&id)
    }

    /// Fails, naming the node, its exit status and the tail of its log, when any tracked child has exited.
    pub fn assert_alive(&self) -> anyhow::Result<()> {
        let mut state = self.state();
        for (id, proc) in state.procs.iter_mut() {
            if let Some(status) = proc.child.try_wait()? {
                let log = std::fs::read_to_string(&proc.log).unwrap_or_default();
                bail!(
                    "node {id} exited unexpectedly ({status}); last lines of {}:\n{}",
                    proc.log.display(),
                    tail(&log, LOG_TAIL_LINES)
                );
            }
        }
        Ok(())
    }

    /// Kills node `id` with SIGKILL (no shutdown code runs, even when stopped) and reaps it. Returns whether
    /// there was such a child.
    pub fn kill(&self, id: u64) -> anyhow::Result<bool> {
        let mut state = self.state();
        state.stopped.remove(&id);
        let Some(mut proc) = state.procs.remove(&id) else {
            return Ok(false);
        };
        drop(state);
        // Fails only when it has already exited; `wait` reaps it either way.
        let _ = proc.child.kill();
        proc.child.wait().context("reap")?;
        Ok(true)
    }

    /// Freezes node `id` with SIGSTOP: it keeps its sockets but answers nothing (a long GC pause, a VM stall).
    pub fn stop(&self, id: u64) -> anyhow::Result<()> {
        let mut state = self.state();
        let pid = tracked_pid(&state, id)?;
        signal("STOP", pid)?;
        state.stopped.insert(id);
        Ok(())
    }

    /// Resumes node `id` with SIGCONT.
    pub fn cont(&self, id: u64) -> anyhow::Result<()> {
        let mut state = self.state();
        let pid = tracked_pid(&state, id)?;
        signal("CONT", pid)?;
        state.stopped.remove(&id);
        Ok(())
    }

    /// Sends SIGTERM to node `id` (continuing it first if stopped) and waits up to `patience` for it to exit;
    /// returns its exit status. When it does not exit in time it is killed, and this fails.
    pub fn terminate(&self, id: u64, patience: Duration) -> anyhow::Result<ExitStatus> {
        let mut state = self.state();
        let was_stopped = state.stopped.remove(&id);
        let Some(mut proc) = state.procs.remove(&id) else {
            bail!("node {id} is not running");
        };
        drop(state);
        let pid = proc.child.id();
        if let Some(status) = proc.child.try_wait()? {
            return Ok(status);
        }
        signal("TERM", pid)?;
        if was_stopped {
            signal("CONT", pid)?;
        }
        let started = Instant::now();
        loop {
            if let Some(status) = proc.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > patience {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                bail!("node {id} did not exit within {patience:?} of SIGTERM; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log of node `id` as spawned last (empty when unknown or unreadable).
    pub fn log(&self, id: u64) -> String {
        let path = self.state().procs.get(&id).map(|proc| proc.log.clone());
        path.and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let state = std::mem::take(
            self.state
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for (id, mut proc) in state.procs {
            if state.stopped.contains(&id) {
                // SIGKILL works on a stopped process, but continue it anyway so nothing is ever left frozen.
                let _ = signal("CONT", proc.child.id());
            }
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
}

fn tracked_pid(state: &State, id: u64) -> anyhow::Result<u32> {
    match state.procs.get(&id) {
        Some(proc) => Ok(proc.child.id()),
        None => bail!("node {id} is not running"),
    }
}

/// Sends `SIG<name>` to `pid` with the `kill` command.
fn signal(name: &str, pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed ({status})");
    }
    Ok(())
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A child that prints a tick every 20 ms, so stopping and continuing it can be observed in its log.
    fn spawn_ticker(procs: &Procs, id: u64, log: &Path) {
        procs
            .spawn(
                id,
                "sh",
                ["-c", "while true; do echo tick; sleep 0.02; done"],
                &[],
                log,
            )
            .unwrap();
    }

    fn ticks(log: &Path) -> usize {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// Polls `done` until it holds, failing the test after 10 s.
    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the kernel reports `pid` as stopped (state `T` in `/proc/<pid>/stat`).
    fn pid_stopped(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") T ")
    }

    fn pid_alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(20);
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), 20);
        for port in ports {
            assert!((10_000..32_768).contains(&port));
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn spawn_kill_and_liveness() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        let log = dir.path().join("0.log");
        spawn_ticker(&procs, 0, &log);
        assert!(procs.is_running(0));
        assert!(procs.spawn(0, "true", [""; 0], &[], &log).is_err());
        procs.assert_alive().unwrap();
        assert_eq!(procs.ids(), vec![0]);
        assert!(procs.kill(0).unwrap());
        assert!(!procs.is_running(0));
        assert!(!procs.kill(0).unwrap());
        assert!(procs.ids().is_empty());
    }

    #[test]
    fn assert_alive_reports_an_exited_child_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        let log = dir.path().join("3.log");
        procs
            .spawn(3, "sh", ["-c", "echo last words; exit 7"], &[], &log)
            .unwrap();
        wait_for("the child to exit", || !procs.is_running(3));
        let err = procs.assert_alive().unwrap_err().to_string();
        assert!(err.contains("node 3"), "{err}");
        assert!(err.contains("last words"), "{err}");
        // An exited child may be respawned under the same id.
        spawn_ticker(&procs, 3, &log);
        procs.assert_alive().unwrap();
    }

    #[test]
    fn envs_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        let log = dir.path().join("env.log");
        procs
            .spawn(
                1,
                "sh",
                ["-c", "echo \"value=$NEMESIS_TEST\""],
                &[("NEMESIS_TEST".to_string(), "42".to_string())],
                &log,
            )
            .unwrap();
        wait_for("the child's output", || procs.log(1).contains("value=42"));
    }

    #[test]
    fn stop_freezes_and_cont_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        let log = dir.path().join("0.log");
        spawn_ticker(&procs, 0, &log);
        wait_for("a first tick", || ticks(&log) > 0);
        procs.stop(0).unwrap();
        assert!(procs.is_stopped(0));
        assert!(procs.is_running(0));
        // Once the kernel has stopped it, expect silence.
        let pid = procs.pid(0).unwrap();
        wait_for("the child to be stopped", || pid_stopped(pid));
        let frozen = ticks(&log);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(ticks(&log), frozen);
        procs.cont(0).unwrap();
        assert!(!procs.is_stopped(0));
        wait_for("ticks after SIGCONT", || ticks(&log) > frozen);
        assert!(procs.stop(9).is_err());
    }

    #[test]
    fn terminate_a_stopped_child() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        let log = dir.path().join("0.log");
        procs
            .spawn(
                0,
                "sh",
                [
                    "-c",
                    "trap 'exit 0' TERM; echo ready; while true; do sleep 0.02; done",
                ],
                &[],
                &log,
            )
            .unwrap();
        // SIGTERM only after the shell has set its trap.
        wait_for("the trap", || procs.log(0).contains("ready"));
        procs.stop(0).unwrap();
        let status = procs.terminate(0, Duration::from_secs(10)).unwrap();
        assert!(status.success(), "{status}");
        assert!(!procs.is_running(0));
        assert!(procs.terminate(0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn drop_kills_running_and_stopped_children() {
        let dir = tempfile::tempdir().unwrap();
        let procs = Procs::new();
        spawn_ticker(&procs, 0, &dir.path().join("0.log"));
        spawn_ticker(&procs, 1, &dir.path().join("1.log"));
        procs.stop(1).unwrap();
        let pids = [procs.pid(0).unwrap(), procs.pid(1).unwrap()];
        assert!(pids.iter().all(|pid| pid_alive(*pid)));
        drop(procs);
        for pid in pids {
            assert!(!pid_alive(pid), "pid {pid} survived");
        }
    }
}
