//! A per-node wall-clock offset with Debian's libfaketime (package `libfaketime`).
//!
//! The process runs with libfaketime preloaded and `FAKETIME_TIMESTAMP_FILE` naming a file that holds a relative
//! offset in seconds (`+60`, `-1.5`, `+0`). With `FAKETIME_NO_CACHE=1` the library re-reads the file on every
//! time call, so [`Clock::step`] moves the node's clock at once. `FAKETIME_DONT_FAKE_MONOTONIC=1` leaves
//! `CLOCK_MONOTONIC` alone: only the wall clock (`CLOCK_REALTIME`, `time`, `gettimeofday`) jumps, which is what a
//! misconfigured NTP or a VM migration does to a node.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{LD_PRELOAD, write_atomically};

/// Where Debian and Ubuntu install libfaketime on x86-64.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Whether libfaketime is installed at [`LIBFAKETIME`]; tests using [`Clock`] should skip when it is not.
pub fn faketime_available() -> bool {
    Path::new(LIBFAKETIME).is_file()
}

/// The wall-clock offset of one node, through its offset file.
#[derive(Debug)]
pub struct Clock {
    file: PathBuf,
}

impl Clock {
    /// Creates node `id`'s offset file in `dir`, holding `+0` (the real time).
    pub fn new(dir: &Path, id: u64) -> anyhow::Result<Clock> {
        let clock = Clock {
            file: dir.join(format!("faketime-{id}")),
        };
        clock.step(0.0)?;
        Ok(clock)
    }

    /// The offset file.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The environment of a process whose clock this controls.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (LD_PRELOAD.to_string(), LIBFAKETIME.to_string()),
            (
                "FAKETIME_TIMESTAMP_FILE".to_string(),
                self.file.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
        ]
    }

    /// Sets the node's wall clock to real time plus `offset_secs` (negative: behind). Not cumulative: `step(5.0)`
    /// twice leaves the clock 5 s ahead. Written atomically, so the node never reads a partial offset.
    pub fn step(&self, offset_secs: f64) -> anyhow::Result<()> {
        if !offset_secs.is_finite() {
            bail!("clock offset {offset_secs} is not finite");
        }
        write_atomically(&self.file, &format_offset(offset_secs))
            .with_context(|| format!("write the clock offset {}", self.file.display()))
    }
}

/// `+60`, `-1.5`, `+0`: the relative form libfaketime reads from its timestamp file. `f64`'s `Display` never uses
/// an exponent.
fn format_offset(offset_secs: f64) -> String {
    if offset_secs < 0.0 {
        format!("{offset_secs}")
    } else {
        // `+0` for negative zero too.
        format!("+{}", offset_secs.abs())
    }
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn offsets_are_written_in_libfaketime_form() {
        assert_eq!(format_offset(60.0), "+60");
        assert_eq!(format_offset(1.5), "+1.5");
        assert_eq!(format_offset(0.0), "+0");
        assert_eq!(format_offset(-0.0), "+0");
        assert_eq!(format_offset(-2.25), "-2.25");
        assert_eq!(format_offset(1e-7), "+0.0000001");
    }

    #[test]
    fn new_writes_zero_and_step_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new(dir.path(), 4).unwrap();
        assert_eq!(std::fs::read_to_string(clock.path()).unwrap(), "+0");
        clock.step(-30.0).unwrap();
        assert_eq!(std::fs::read_to_string(clock.path()).unwrap(), "-30");
        assert!(clock.step(f64::NAN).is_err());
        let env = clock.env();
        assert!(env.contains(&(LD_PRELOAD.to_string(), LIBFAKETIME.to_string())));
        assert!(env.contains(&("FAKETIME_NO_CACHE".to_string(), "1".to_string())));
    }

    fn now_secs() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    /// A running process under the clock moves when the clock is stepped, with no restart.
    #[test]
    fn a_running_process_sees_each_step() {
        if !faketime_available() {
            eprintln!("skipping: libfaketime is not installed at {LIBFAKETIME}");
            return;
        }
        if Command::new("python3").arg("-V").output().is_err() {
            eprintln!("skipping: python3 is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::new(dir.path(), 0).unwrap();
        // Prints its wall clock each time it reads a line.
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sys, time\nfor _ in sys.stdin:\n    print(time.time(), flush=True)",
            ])
            .envs(clock.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut offset_now = || {
            writeln!(stdin).unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().parse::<f64>().unwrap() - now_secs()
        };
        let near = |seen: f64, expected: f64| (seen - expected).abs() < 2.0;

        let seen = offset_now();
        assert!(near(seen, 0.0), "{seen}");
        clock.step(3600.0).unwrap();
        let seen = offset_now();
        assert!(near(seen, 3600.0), "{seen}");
        clock.step(-120.5).unwrap();
        let seen = offset_now();
        assert!(near(seen, -120.5), "{seen}");
        clock.step(0.0).unwrap();
        let seen = offset_now();
        assert!(near(seen, 0.0), "{seen}");

        let _ = child.kill();
        let _ = child.wait();
    }
}
