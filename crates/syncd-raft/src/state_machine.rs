//! The raft state machine: a group's [`Machine`], its snapshots, and a watch on the applied index.
//!
//! The machine lives in memory. Durability comes from the log plus snapshots: a snapshot is written to
//! `snapshot.json` in the data directory (write to a temporary file, fsync, rename, fsync the directory) before
//! openraft is told it exists, so openraft only purges log entries that a durable snapshot covers. On start the
//! state machine loads that snapshot and openraft re-applies the committed log after it.

// openraft's storage traits fix `StorageError` (over 200 bytes) as the error type; boxing it here would only add
// conversions at every trait boundary.
#![allow(clippy::result_large_err)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, RaftSnapshotBuilder,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::StampClock;
use crate::log_store::io_err;
use crate::machine::Machine;
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, Types};

const SNAPSHOT_FILE: &str = "snapshot.json";

/// What a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
struct SnapshotPayload<M: Machine> {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// The machine's state (named `table` since the lock service's first snapshots).
    table: M::Snapshot,
}

/// The snapshot file: metadata and payload together, so they can never disagree.
impl<M: Machine> Clone for SnapshotPayload<M> {
    fn clone(&self) -> Self {
        SnapshotPayload {
            last_applied: self.last_applied,
            last_membership: self.last_membership.clone(),
            table: self.table.clone(),
        }
    }
}

impl<M: Machine> Default for SnapshotPayload<M> {
    fn default() -> Self {
        SnapshotPayload {
            last_applied: None,
            last_membership: StoredMembership::default(),
            table: M::Snapshot::default(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
struct SnapshotFile<M: Machine> {
    meta: SnapshotMeta,
    payload: SnapshotPayload<M>,
}

#[derive(Debug, Default)]
struct Data<M> {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    machine: M,
}

/// The part of the state machine a service reads: the machine and the applied index.
#[derive(Debug)]
pub struct Shared<M> {
    data: RwLock<Data<M>>,
    applied: watch::Sender<u64>,
    current_snapshot: Mutex<Option<(SnapshotMeta, Vec<u8>)>>,
    snapshot_seq: Mutex<u64>,
    /// Held while a snapshot is written: builds and installs never overlap on disk.
    persisting: tokio::sync::Mutex<()>,
    clock: StampClock,
}

impl<M> Shared<M> {
    /// Reads the machine under the lock. Keep `f` short: apply waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        let data = self.data.read().unwrap_or_else(PoisonError::into_inner);
        f(&data.machine)
    }

    /// The index of the last applied log entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The snapshot that is durable and served to peers, if any.
    fn current_snapshot(&self) -> Option<(SnapshotMeta, Vec<u8>)> {
        self.current_snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The stamp clock, anchored on every applied stamp.
    pub fn clock(&self) -> &StampClock {
        &self.clock
    }

    /// A receiver that changes whenever entries are applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// The state machine handed to openraft. Cheap to clone: clones share one machine.
#[derive(Debug)]
pub struct StateMachine<M> {
    shared: Arc<Shared<M>>,
    dir: PathBuf,
}

impl<M> Clone for StateMachine<M> {
    fn clone(&self) -> Self {
        StateMachine {
            shared: self.shared.clone(),
            dir: self.dir.clone(),
        }
    }
}

impl<M: Machine> StateMachine<M> {
    /// Opens the state machine in `dir`, starting from the snapshot there, if any.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let path = dir.join(SNAPSHOT_FILE);
        let (data, current) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile<M> = serde_json::from_slice(&bytes)
                    .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
                let encoded = serde_json::to_vec(&file.payload)
                    .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e))?;
                let data = Data {
                    last_applied: file.payload.last_applied,
                    last_membership: file.payload.last_membership,
                    machine: M::restore(file.payload.table),
                };
                (data, Some((file.meta, encoded)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Data::default(), None),
            Err(e) => return Err(io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, &e)),
        };
        let applied = data.last_applied.map(|l| l.index).unwrap_or(0);
        // The time this node was down is unknown, so it counts for nothing: leases resume where they stopped.
        let clock = StampClock::new(data.machine.clock_ms(), std::time::Instant::now());
        Ok(StateMachine {
            shared: Arc::new(Shared {
                data: RwLock::new(data),
                applied: watch::Sender::new(applied),
                current_snapshot: Mutex::new(current),
                snapshot_seq: Mutex::new(0),
                persisting: tokio::sync::Mutex::new(()),
                clock,
            }),
            dir: dir.to_owned(),
        })
    }

    /// The handle a service reads through.
    pub fn shared(&self) -> Arc<Shared<M>> {
        self.shared.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data<M>> {
        self.shared
            .data
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes `file` the durable snapshot and the one served to peers, unless a newer one already is; returns the
    /// snapshot now current. Snapshot builds run in their own tasks and can overlap an install: one at a time,
    /// and never backwards, or an older snapshot could replace a newer one whose log openraft already purged,
    /// leaving a node that cannot start.
    async fn persist(
        &self,
        file: SnapshotFile<M>,
        encoded: Vec<u8>,
    ) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
        let _one_at_a_time = self.shared.persisting.lock().await;
        if let Some((meta, bytes)) = self.shared.current_snapshot()
            && meta.last_log_id > file.meta.last_log_id
        {
            return Ok((meta, bytes));
        }
        let path = self.dir.join(SNAPSHOT_FILE);
        let subject = ErrorSubject::Snapshot(Some(file.meta.signature()));
        let bytes =
            serde_json::to_vec(&file).map_err(|e| io_err(subject.clone(), ErrorVerb::Write, &e))?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Write, &e))?
            .map_err(|e| io_err(subject, ErrorVerb::Write, &e))?;
        let now_current = (file.meta, encoded);
        *self
            .shared
            .current_snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(now_current.clone());
        Ok(now_current)
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl<M: Machine> RaftSnapshotBuilder<Types<M>> for StateMachine<M> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types<M>>, StorageError> {
        let payload = {
            let data = self
                .shared
                .data
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            SnapshotPayload {
                last_applied: data.last_applied,
                last_membership: data.last_membership.clone(),
                table: data.machine.snapshot(),
            }
        };
        let seq = {
            let mut seq = self
                .shared
                .snapshot_seq
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *seq += 1;
            *seq
        };
        let snapshot_id = match payload.last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: payload.last_membership.clone(),
            snapshot_id,
        };
        let encoded = serde_json::to_vec(&payload)
            .map_err(|e| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?;
        let (meta, encoded) = self
            .persist(SnapshotFile { meta, payload }, encoded)
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(encoded)),
        })
    }
}

impl<M: Machine> RaftStateMachine<Types<M>> for StateMachine<M> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = self
            .shared
            .data
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<M::Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry<M>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut latest_stamp = None;
        let last_index = {
            let mut data = self.write();
            for entry in entries {
                let log_id = *entry.get_log_id();
                data.last_applied = Some(log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(stamped) => {
                        latest_stamp = latest_stamp.max(Some(stamped.now_ms));
                        Some(data.machine.apply(stamped.now_ms, &stamped.command))
                    }
                    EntryPayload::Membership(m) => {
                        data.last_membership = StoredMembership::new(Some(log_id), m);
                        None
                    }
                };
                replies.push(reply);
            }
            data.last_applied.map(|l| l.index).unwrap_or(0)
        };
        // After the machine's lock is released: the stamping path holds the clock while it reads the machine.
        if let Some(stamp) = latest_stamp {
            self.shared.clock.observe(stamp, std::time::Instant::now());
        }
        self.shared.applied.send_replace(last_index);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let encoded = snapshot.into_inner();
        let payload: SnapshotPayload<M> = serde_json::from_slice(&encoded)
            .map_err(|e| io_err(subject.clone(), ErrorVerb::Read, &e))?;
        // Persist first: once openraft hears the snapshot is installed it may purge the log it covers.
        self.persist(
            SnapshotFile {
                meta: meta.clone(),
                payload: payload.clone(),
            },
            encoded,
        )
        .await?;
        let (last_index, clock_ms) = {
            let mut data = self.write();
            data.last_applied = payload.last_applied;
            data.last_membership = payload.last_membership;
            data.machine = M::restore(payload.table);
            (
                data.last_applied.map(|l| l.index).unwrap_or(0),
                data.machine.clock_ms(),
            )
        };
        self.shared
            .clock
            .observe(clock_ms, std::time::Instant::now());
        self.shared.applied.send_replace(last_index);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Types<M>>>, StorageError> {
        Ok(self
            .shared
            .current_snapshot()
            .map(|(meta, bytes)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use openraft::CommittedLeaderId;

    use super::*;
    use crate::testing::Counter;

    fn snapshot_at(index: u64) -> (SnapshotFile<Counter>, Vec<u8>) {
        let payload = SnapshotPayload {
            last_applied: Some(LogId::new(CommittedLeaderId::new(1, 0), index)),
            ..SnapshotPayload::<Counter>::default()
        };
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: StoredMembership::default(),
            snapshot_id: format!("at-{index}"),
        };
        let encoded = serde_json::to_vec(&payload).unwrap();
        (SnapshotFile { meta, payload }, encoded)
    }

    fn on_disk(dir: &Path) -> Option<u64> {
        let file: SnapshotFile<Counter> =
            serde_json::from_slice(&std::fs::read(dir.join(SNAPSHOT_FILE)).unwrap()).unwrap();
        file.meta.last_log_id.map(|l| l.index)
    }

    /// A build that read the table before an install finished must not replace the installed snapshot: the log
    /// behind the newer one may already be purged.
    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::<Counter>::open(dir.path()).unwrap();
        let (newer, bytes) = snapshot_at(10);
        sm.persist(newer, bytes).await.unwrap();
        let (older, bytes) = snapshot_at(3);
        let (current, _) = sm.persist(older, bytes).await.unwrap();
        assert_eq!(current.last_log_id.map(|l| l.index), Some(10));
        assert_eq!(on_disk(dir.path()), Some(10));
        let reopened = StateMachine::<Counter>::open(dir.path()).unwrap();
        assert_eq!(reopened.shared.applied_index(), 10);
    }

    /// Builds and installs racing each other leave the newest snapshot, and never a half-written file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_snapshot_writes_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::<Counter>::open(dir.path()).unwrap();
        let tasks: Vec<_> = [7u64, 3, 19, 11, 2, 17, 5, 13, 23, 1, 29, 8]
            .into_iter()
            .map(|index| {
                let sm = sm.clone();
                tokio::spawn(async move {
                    let (file, bytes) = snapshot_at(index);
                    sm.persist(file, bytes).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(on_disk(dir.path()), Some(29));
        let mut sm = sm;
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(29));
    }
}
