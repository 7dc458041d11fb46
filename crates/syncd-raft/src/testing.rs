//! A small machine for tests of the group machinery: a counter with node registrations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// A command of [`Counter`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterCommand {
    /// Adds to the counter.
    Add(u64),
    /// Registers a node's storage incarnation.
    Register {
        /// Node.
        id: u64,
        /// Incarnation.
        incarnation: u64,
    },
}

/// What a [`CounterCommand`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterOutcome {
    /// The counter after an add.
    Value(u64),
    /// The incarnation registered before.
    Registered(Option<u64>),
}

/// The state of [`Counter`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// The sum of every add.
    pub value: u64,
    /// The latest stamp applied.
    pub clock_ms: u64,
    /// Registered incarnations.
    pub nodes: BTreeMap<u64, u64>,
}

impl Machine for Counter {
    type Command = CounterCommand;
    type Outcome = CounterOutcome;
    type Snapshot = Counter;

    fn apply(&mut self, now_ms: u64, command: &CounterCommand) -> CounterOutcome {
        self.clock_ms = self.clock_ms.max(now_ms);
        match command {
            CounterCommand::Add(n) => {
                self.value += n;
                CounterOutcome::Value(self.value)
            }
            CounterCommand::Register { id, incarnation } => {
                CounterOutcome::Registered(self.nodes.insert(*id, *incarnation))
            }
        }
    }

    fn snapshot(&self) -> Counter {
        self.clone()
    }

    fn restore(snapshot: Counter) -> Self {
        snapshot
    }

    fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    fn quiet(&self) -> bool {
        true
    }

    fn register(id: u64, incarnation: u64) -> CounterCommand {
        CounterCommand::Register { id, incarnation }
    }

    fn registered(outcome: &CounterOutcome) -> Option<Option<u64>> {
        match outcome {
            CounterOutcome::Registered(previous) => Some(*previous),
            CounterOutcome::Value(_) => None,
        }
    }
}
