//! Fault injection ("nemesis", as in Jepsen) for tests that run real `syncd` processes on loopback, and the
//! checkers that judge what clients saw while the faults were on.
//!
//! - [`proxy`]: a TCP proxy mesh between nodes. Every node dials every peer through its own proxy link
//!   (`SYNCD_FAULT_DIAL_MAP`), so the test can cut, isolate, heal and delay links like an iptables `DROP`.
//! - [`process`]: child processes by node id: spawn, SIGKILL, SIGSTOP/SIGCONT, SIGTERM, liveness checks, and a
//!   `Drop` that never leaks a child; plus a free-port picker.
//! - [`faults`]: faults injected into a process with `LD_PRELOAD`: a per-node wall-clock offset (libfaketime)
//!   and slow `fsync` (a small shim compiled on demand).
//! - [`history`]: a concurrent history of operations (invocations and their outcomes, with monotonic times),
//!   dumped as JSON lines for post-mortems.
//! - [`checker`]: pure checkers over a finished history, each returning the [`checker::Anomaly`]s it found
//!   (for locks: mutual exclusion, monotonic fencing tokens, reads that see held locks, liveness gaps).
//!
//! The crate only ever listens on and dials 127.0.0.1.

pub mod checker;
pub mod faults;
pub mod history;
pub mod process;
pub mod proxy;
