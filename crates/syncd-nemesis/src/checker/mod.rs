//! Checkers over a finished [`History`](crate::history::History). Each is a pure function of the history that
//! returns the [`Anomaly`]s it found; an empty list means the history is consistent with the property.
//!
//! - [`locks`]: mutual exclusion, fencing tokens, reads of held locks, and liveness of the lock service.
//! - [`linearizable`]: a linearizability search of the lock API against a sequential model.
//! - [`queues`]: lost messages, undone acks and double visibility in a queue history.

pub mod linearizable;
pub mod locks;
pub mod queues;

use std::fmt;

use crate::history::OpId;

/// One violation found by a checker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// Which rule was broken, e.g. `mutual_exclusion`.
    pub kind: &'static str,
    /// The lock (or other object) concerned, if one.
    pub object: Option<String>,
    /// The operations that together show the violation.
    pub ops: Vec<OpId>,
    /// What happened, naming the operations and their times (milliseconds since the history began).
    pub description: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind, self.description)
    }
}

/// Every anomaly on its own line, for a test's failure message.
pub fn report(anomalies: &[Anomaly]) -> String {
    anomalies
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
