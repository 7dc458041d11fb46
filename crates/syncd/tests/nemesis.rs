//! The nemesis suite: real `syncd` processes on loopback under crashes, stalls, partitions, staggered
//! whole-cluster restarts, slow disks and wall-clock steps, with clients recording a history that checkers judge.
//!
//! Each scenario runs a short CI schedule by default; `SYNCD_NEMESIS_SOAK=<seconds>` runs each for that long
//! instead. Scenarios run one at a time (see [`nemesis::cluster::exclusive`]): on 2 cores, two clusters under
//! faults at once would turn CPU starvation into the fault under test. Needs no root; the clock and slow-disk
//! faults need Debian's `libfaketime` and a C compiler (`.ci/run` installs the former; both are checked).

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod nemesis {
    pub mod cluster;
    mod locks;
    mod queues;
    pub mod workload;
}
