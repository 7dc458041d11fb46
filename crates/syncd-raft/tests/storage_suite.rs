//! openraft's own storage test suite against the durable log store and the state machine.

// Test support code outside #[test] functions may panic on setup failure; the suite fixes the error type.
#![allow(clippy::expect_used, clippy::result_large_err)]

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use syncd_raft::log_store::LogStore;
use syncd_raft::state_machine::StateMachine;
use syncd_raft::testing::Counter;
use syncd_raft::types::{NodeId, Types};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<Types<Counter>, LogStore<Counter>, StateMachine<Counter>, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<Counter>, StateMachine<Counter>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft.redb"))?;
        let sm = StateMachine::open(dir.path())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder)
}
