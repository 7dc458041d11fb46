//! Deadlock detection on the wait-for graph.
//!
//! Nodes are owners; `a -> b` when `a` is queued on a lock and `b` holds it in an incompatible mode or is queued
//! ahead of `a` in an incompatible mode. The graph only gains edges when a request is queued, and every new edge
//! then starts at or points to the new request, so checking for a cycle through the requester at that moment keeps
//! the graph acyclic for ever; the requester is the victim.

use std::collections::BTreeSet;

use crate::table::LockTable;

/// Whether `owner`, just queued, now sits on a cycle of the wait-for graph.
pub(crate) fn closes_cycle(table: &LockTable, owner: &str) -> bool {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = table.blockers_of(owner);
    while let Some(next) = stack.pop() {
        if next == owner {
            return true;
        }
        if seen.insert(next) {
            stack.extend(table.blockers_of(next));
        }
    }
    false
}
