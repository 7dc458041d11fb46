//! Slow `fsync`: an `LD_PRELOAD` shim that sleeps before every `fsync`, `fdatasync` and `sync_file_range`.
//!
//! The delay, in whole milliseconds, is read from the file named by `SYNCD_FAULT_FSYNC_DELAY_FILE` on every call
//! (one small `open` and `read`, negligible next to an `fsync`); a missing, empty or unparsable file means no
//! delay. The real function is then called through `dlsym(RTLD_NEXT, ...)`, so the data is still made durable:
//! this models a slow disk, not a lying one. Rust's `File::sync_all` / `sync_data` call the libc symbols
//! dynamically, so `syncd`'s storage is affected.
//!
//! The shim is C, embedded in [`SHIM_SOURCE`], and compiled with `cc` at most once per test process into the
//! system temporary directory, under a name that carries a hash of the source (so concurrent test processes
//! share one build and a changed shim gets a new file).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::{LD_PRELOAD, write_atomically};

/// The variable naming the delay file.
pub const DELAY_FILE_ENV: &str = "SYNCD_FAULT_FSYNC_DELAY_FILE";

/// The C source of the shim.
pub const SHIM_SOURCE: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Milliseconds to wait before the next sync call: the decimal number in the delay file, 0 when there is none. */
static long fault_delay_ms(void) {
    const char *path = getenv("SYNCD_FAULT_FSYNC_DELAY_FILE");
    if (path == NULL || *path == '\0') return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *end;
    long ms = strtol(buf, &end, 10);
    if (end == buf || ms <= 0) return 0;
    for (; *end != '\0'; end++) {
        if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') return 0;
    }
    return ms > 600000 ? 600000 : ms;
}

static void fault_pause(void) {
    int saved = errno;
    long ms = fault_delay_ms();
    if (ms > 0) {
        struct timespec left = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&left, &left) == -1 && errno == EINTR) {}
    }
    errno = saved;
}

/* The next definition of `name`, looked up once; concurrent first calls store the same pointer. */
static void *fault_real(void **slot, const char *name) {
    void *real = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (real == NULL) {
        real = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, real, __ATOMIC_RELEASE);
    }
    return real;
}

int fsync(int fd) {
    static void *slot;
    int (*real)(int) = (int (*)(int))fault_real(&slot, "fsync");
    if (real == NULL) { errno = ENOSYS; return -1; }
    fault_pause();
    return real(fd);
}

int fdatasync(int fd) {
    static void *slot;
    int (*real)(int) = (int (*)(int))fault_real(&slot, "fdatasync");
    if (real == NULL) { errno = ENOSYS; return -1; }
    fault_pause();
    return real(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    static void *slot;
    int (*real)(int, off64_t, off64_t, unsigned int) =
        (int (*)(int, off64_t, off64_t, unsigned int))fault_real(&slot, "sync_file_range");
    if (real == NULL) { errno = ENOSYS; return -1; }
    fault_pause();
    return real(fd, offset, nbytes, flags);
}
"#;

/// Whether a C compiler (`cc`) is on the `PATH`; tests using [`SlowDisk`] should skip when it is not.
pub fn cc_available() -> bool {
    Command::new("cc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The compiled shim, built on first use.
fn library() -> anyhow::Result<PathBuf> {
    static LIBRARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| compile().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn compile() -> anyhow::Result<PathBuf> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    SHIM_SOURCE.hash(&mut hasher);
    let dir =
        std::env::temp_dir().join(format!("syncd-nemesis-slowfsync-{:016x}", hasher.finish()));
    let library = dir.join("libslowfsync.so");
    if library.is_file() {
        return Ok(library);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    // Build under names of this process, then rename: a concurrent process never loads a half-written library.
    let source = dir.join(format!("shim-{}.c", std::process::id()));
    let built = dir.join(format!(".libslowfsync-{}.so", std::process::id()));
    std::fs::write(&source, SHIM_SOURCE)?;
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&built)
        .arg(&source)
        .arg("-ldl")
        .output()
        .context("run cc (is a C compiler installed?)")?;
    let _ = std::fs::remove_file(&source);
    if !output.status.success() {
        bail!(
            "cc failed to build the slow-fsync shim ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&built, &library)?;
    Ok(library)
}

/// The `fsync` delay of one node, through its delay file.
#[derive(Debug)]
pub struct SlowDisk {
    file: PathBuf,
    library: PathBuf,
}

impl SlowDisk {
    /// Builds the shim if this process has not yet, and creates node `id`'s delay file in `dir` with no delay.
    pub fn new(dir: &Path, id: u64) -> anyhow::Result<SlowDisk> {
        let disk = SlowDisk {
            file: dir.join(format!("fsync-delay-{id}")),
            library: library()?,
        };
        disk.set_delay(Duration::ZERO)?;
        Ok(disk)
    }

    /// The compiled shim.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The delay file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The environment of a process whose syncs this slows.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (LD_PRELOAD.to_string(), self.library.display().to_string()),
            (DELAY_FILE_ENV.to_string(), self.file.display().to_string()),
        ]
    }

    /// Sets the delay before each sync call, rounded down to whole milliseconds (the shim caps it at 10 minutes).
    pub fn set_delay(&self, delay: Duration) -> anyhow::Result<()> {
        write_atomically(&self.file, &delay.as_millis().to_string())
            .with_context(|| format!("write the fsync delay {}", self.file.display()))
    }
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::faults::{Clock, faketime_available, merge_envs};

    /// Times one `os.fsync` of a fresh file in a Python process with `envs`; prints the seconds it took.
    const TIME_FSYNC: &str = "import os, sys, time
f = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
os.write(f, b'x')
t = time.monotonic()
os.fsync(f)
print(time.monotonic() - t)
print(time.time())";

    fn python_available() -> bool {
        Command::new("python3").arg("-V").output().is_ok()
    }

    /// Seconds one fsync took, and the wall clock the process saw.
    fn time_fsync(dir: &Path, envs: Vec<(String, String)>) -> (f64, f64) {
        let output = Command::new("python3")
            .args(["-c", TIME_FSYNC])
            .arg(dir.join("data"))
            .envs(envs)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let mut lines = stdout
            .lines()
            .map(|line| line.trim().parse::<f64>().unwrap());
        (lines.next().unwrap(), lines.next().unwrap())
    }

    fn skip() -> bool {
        if !cc_available() {
            eprintln!("skipping: no C compiler (cc) to build the slow-fsync shim");
            return true;
        }
        if !python_available() {
            eprintln!("skipping: python3 is not installed");
            return true;
        }
        false
    }

    #[test]
    fn fsync_waits_for_the_configured_delay() {
        if skip() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = SlowDisk::new(dir.path(), 0).unwrap();
        assert_eq!(std::fs::read_to_string(disk.path()).unwrap(), "0");

        disk.set_delay(Duration::from_millis(200)).unwrap();
        let (took, _) = time_fsync(dir.path(), disk.env());
        assert!(took >= 0.2, "fsync took {took} s with a 200 ms delay");

        disk.set_delay(Duration::ZERO).unwrap();
        let (took, _) = time_fsync(dir.path(), disk.env());
        assert!(took < 0.2, "fsync took {took} s with no delay");
    }

    #[test]
    fn a_missing_or_garbage_delay_file_means_no_delay() {
        if skip() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = SlowDisk::new(dir.path(), 1).unwrap();
        for garbage in ["", "soon", "500ms", "-300"] {
            std::fs::write(disk.path(), garbage).unwrap();
            let (took, _) = time_fsync(dir.path(), disk.env());
            assert!(
                took < 0.2,
                "fsync took {took} s with delay file {garbage:?}"
            );
        }
        std::fs::remove_file(disk.path()).unwrap();
        let (took, _) = time_fsync(dir.path(), disk.env());
        assert!(took < 0.2, "fsync took {took} s with no delay file");
    }

    #[test]
    fn combines_with_a_clock_offset() {
        if skip() {
            return;
        }
        if !faketime_available() {
            eprintln!("skipping: libfaketime is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = SlowDisk::new(dir.path(), 2).unwrap();
        let clock = Clock::new(dir.path(), 2).unwrap();
        disk.set_delay(Duration::from_millis(200)).unwrap();
        clock.step(3600.0).unwrap();
        let (took, wall) = time_fsync(dir.path(), merge_envs([disk.env(), clock.env()]));
        assert!(took >= 0.2, "fsync took {took} s with a 200 ms delay");
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (wall - real - 3600.0).abs() < 5.0,
            "wall {wall}, real {real}"
        );
    }
}
