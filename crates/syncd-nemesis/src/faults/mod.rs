//! Faults injected into a child process with `LD_PRELOAD`, each driven at run time through a small file the
//! test rewrites (the preloaded library re-reads it on every call).
//!
//! - [`clock`]: a per-node wall-clock offset, with Debian's libfaketime.
//! - [`slow_disk`]: a per-node delay before every `fsync`, `fdatasync` and `sync_file_range`, with a shim
//!   compiled on demand.
//!
//! Each fault hands out the environment its process needs ([`Clock::env`], [`SlowDisk::env`]); combine several
//! with [`merge_envs`], which joins their `LD_PRELOAD` values.

pub mod clock;
pub mod slow_disk;

use std::path::Path;

pub use clock::{Clock, LIBFAKETIME, faketime_available};
pub use slow_disk::{SlowDisk, cc_available};

/// The variable naming the libraries the dynamic linker loads first.
pub const LD_PRELOAD: &str = "LD_PRELOAD";

/// Joins `LD_PRELOAD` values (each a list separated by spaces or colons, as ld.so accepts) into one
/// colon-separated list, keeping the first occurrence of each library.
pub fn merge_ld_preload<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut libraries: Vec<&str> = Vec::new();
    for value in values {
        for library in value.split([' ', ':']).filter(|lib| !lib.is_empty()) {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    libraries.join(":")
}

/// Merges several environments into one: `LD_PRELOAD` values are joined with [`merge_ld_preload`], and for any
/// other variable the last value wins. Variables keep the order of their first appearance.
pub fn merge_envs(envs: impl IntoIterator<Item = Vec<(String, String)>>) -> Vec<(String, String)> {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (key, value) in envs.into_iter().flatten() {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) if key == LD_PRELOAD => {
                *existing = merge_ld_preload([existing.as_str(), value.as_str()]);
            }
            Some((_, existing)) => *existing = value,
            None => merged.push((key, value)),
        }
    }
    merged
}

/// Writes `contents` to `path` atomically (a temporary file in the same directory, then a rename), so a reader
/// never sees a partial value.
pub(crate) fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&temp, contents)?;
    std::fs::rename(&temp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ld_preload_values_are_joined_without_duplicates() {
        assert_eq!(
            merge_ld_preload(["/a.so", "/b.so /c.so", "/a.so:/d.so", ""]),
            "/a.so:/b.so:/c.so:/d.so"
        );
        assert_eq!(merge_ld_preload([]), "");
    }

    #[test]
    fn envs_merge_ld_preload_and_let_the_last_value_win() {
        let merged = merge_envs([
            env(&[("LD_PRELOAD", "/faketime.so"), ("A", "1")]),
            env(&[("LD_PRELOAD", "/slow.so"), ("A", "2"), ("B", "3")]),
        ]);
        assert_eq!(
            merged,
            env(&[
                ("LD_PRELOAD", "/faketime.so:/slow.so"),
                ("A", "2"),
                ("B", "3")
            ])
        );
    }

    #[test]
    fn atomic_writes_replace_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        write_atomically(&path, "+1").unwrap();
        write_atomically(&path, "+2").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "+2");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
