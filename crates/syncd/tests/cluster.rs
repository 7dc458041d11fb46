//! Cluster tests: real `syncd` processes on 127.0.0.1, one module per scenario.

// Test code: a failed setup step should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster {
    mod bad_input;
    mod cache;
    mod failover;
    pub mod harness;
    mod locks_basic;
    mod membership;
    mod peer_budget;
    mod queues;
    mod restart;
}
