//! openraft's own storage test suite against the durable log store and the lock state machine.

// Test support code outside #[test] functions may panic on setup failure; the suite fixes the error type.
#![allow(clippy::expect_used, clippy::result_large_err)]

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use syncd_locks::log_store::LogStore;
use syncd_locks::state_machine::LockStateMachine;
use syncd_locks::types::{NodeId, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, LockStateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, LockStateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft.redb"))?;
        let sm = LockStateMachine::open(dir.path())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder)
}
