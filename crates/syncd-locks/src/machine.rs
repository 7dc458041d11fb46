//! The lock table as the lock group's replicated [`Machine`].

use std::ops::Deref;

use syncd_lock_table::{Command, LockTable, Outcome, TableState};
use syncd_raft::Machine;

/// The lock table, replicated by the lock group.
#[derive(Debug, Default)]
pub struct LockMachine(LockTable);

impl Deref for LockMachine {
    type Target = LockTable;

    fn deref(&self) -> &LockTable {
        &self.0
    }
}

impl Machine for LockMachine {
    type Command = Command;
    type Outcome = Outcome;
    type Snapshot = TableState;

    fn apply(&mut self, now_ms: u64, command: &Command) -> Outcome {
        self.0.apply(now_ms, command)
    }

    fn snapshot(&self) -> TableState {
        self.0.state().clone()
    }

    fn restore(snapshot: TableState) -> Self {
        LockMachine(LockTable::from_state(snapshot))
    }

    fn clock_ms(&self) -> u64 {
        self.0.clock_ms()
    }

    /// No lease and no wait: nothing notices when stamps jump to the wall clock.
    fn quiet(&self) -> bool {
        self.0.next_deadline().is_none()
    }

    fn register(id: u64, incarnation: u64) -> Command {
        Command::RegisterNode { id, incarnation }
    }

    fn registered(outcome: &Outcome) -> Option<Option<u64>> {
        match outcome {
            Outcome::Registered { previous } => Some(*previous),
            _ => None,
        }
    }
}

/// The lock group's raft types.
pub type TypeConfig = syncd_raft::Types<LockMachine>;
