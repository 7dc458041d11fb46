//! The Syncd lock table: a pure, deterministic state machine for named shared/exclusive locks.
//!
//! It does no I/O and reads no clock. Every input is a [`Command`] stamped with the time the raft leader proposed it
//! ([`LockTable::apply`]); the table's clock is the largest stamp seen so far, so leases and wait deadlines expire at
//! the same log position on every replica, and replaying one log always yields one state.
//!
//! - [`mode`]: shared and exclusive, and which may coexist.
//! - [`command`]: the log entries and their outcomes.
//! - [`table`]: the table itself: holders, FIFO waiters, leases, fencing tokens, conversions.
//! - [`deadlock`]: the wait-for graph search that refuses a request which would close a cycle.
//!
//! Everything here is a domain type: the raft log and the snapshots carry them, never the REST types, so the API
//! can change without changing a stored format.
//!
//! The replicated state also records each node's storage incarnation ([`Command::RegisterNode`]), so a node that
//! lost its disk can be told apart from one that restarted.
//!
//! Guarantees, for every sequence of commands:
//! - a lock has either any number of shared holders or exactly one exclusive holder;
//! - fencing tokens come from one counter, so each grant's token is greater than every token granted before it;
//! - waiters are granted in arrival order; a shared request never overtakes a waiting exclusive one;
//! - a request whose wait would close a wait-for cycle is refused and changes nothing.

pub mod command;
pub mod deadlock;
pub mod mode;
pub mod table;

#[cfg(test)]
mod tests;

pub use command::{Command, Outcome};
pub use mode::LockMode;
pub use table::{Hold, HolderView, LockTable, LockView, Pending, TableState, WaiterView};
