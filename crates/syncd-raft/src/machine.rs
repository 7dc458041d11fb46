//! What a replicated state machine provides to its group.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A deterministic state machine replicated by a [`crate::Group`]: every replica applies the same stamped
/// commands in the same order and reaches the same state. Commands carry the time the leader stamped on them
/// ([`crate::clock`]); a machine reads time only from there, never from its own clock.
pub trait Machine: Debug + Default + Send + Sync + 'static {
    /// A command in the log. Its serialized form is the log format: change it compatibly.
    type Command: Debug
        + Clone
        + PartialEq
        + Eq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// What applying a command answers.
    type Outcome: Debug
        + Clone
        + PartialEq
        + Eq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    /// The machine's snapshot form.
    type Snapshot: Debug + Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Applies one command stamped `now_ms`.
    fn apply(&mut self, now_ms: u64, command: &Self::Command) -> Self::Outcome;

    /// The snapshot of the current state.
    fn snapshot(&self) -> Self::Snapshot;

    /// The machine a snapshot describes.
    fn restore(snapshot: Self::Snapshot) -> Self;

    /// The latest stamp the machine has seen (anchors the stamp clock after a restart).
    fn clock_ms(&self) -> u64;

    /// Whether nothing in the state depends on the passing of time (no lease or deadline): stamps may then jump
    /// to the wall clock ([`crate::clock`]).
    fn quiet(&self) -> bool;

    /// The command that registers storage `incarnation` as node `id`'s ([`crate::group`]'s rejoin logic).
    fn register(id: u64, incarnation: u64) -> Self::Command;

    /// What a registration answered: `Some(previous incarnation)` (`Some(None)` for a node's first), `None` if
    /// `outcome` is not a registration's.
    fn registered(outcome: &Self::Outcome) -> Option<Option<u64>>;
}
