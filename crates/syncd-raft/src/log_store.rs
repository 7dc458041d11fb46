//! The durable raft log, in a redb database (`raft.redb` in the data directory).
//!
//! Every write is a redb transaction committed with `Durability::Immediate`, which fsyncs before `commit` returns;
//! only then is openraft told the entries are flushed. A `kill -9` at any point leaves either the old or the new
//! transaction, never a torn one. Log entries are JSON, keyed by index; the vote and the last purged log id live in
//! a metadata table. The committed index is saved without an fsync of its own (the next append's commit persists
//! it), so after a crash it can be older than writes that were acknowledged. Raft itself only needs it as a hint,
//! but openraft restores a node that was leader as leader in its old term, and its read index would then be that
//! stale value: the group raises the read barrier of such a leader to its whole log
//! (`Group::read_index_local`).

// openraft's storage traits fix `StorageError` (over 200 bytes) as the error type; boxing it here would only add
// conversions at every trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::machine::Machine;
use crate::types::{Entry, LogId, NodeId, StorageError, Types};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
const KEY_INCARNATION: &str = "incarnation";
const KEY_REJOIN_PENDING: &str = "rejoin_pending";
const KEY_VOTES_TRUSTED: &str = "votes_trusted";

/// The raft log store of a group of machine `M`. Cheap to clone: clones share one database.
pub struct LogStore<M> {
    db: Arc<Database>,
    incarnation: u64,
    machine: PhantomData<fn() -> M>,
}

impl<M> Clone for LogStore<M> {
    fn clone(&self) -> Self {
        LogStore {
            db: self.db.clone(),
            incarnation: self.incarnation,
            machine: PhantomData,
        }
    }
}

impl<M> Debug for LogStore<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl<M: Machine> LogStore<M> {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path).or_io(ErrorSubject::Store, ErrorVerb::Read)?;
        let tx = db
            .begin_write()
            .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
        {
            tx.open_table(LOGS)
                .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
            tx.open_table(META)
                .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
        }
        tx.commit().or_io(ErrorSubject::Store, ErrorVerb::Write)?;
        let incarnation = match read_meta::<u64>(&db, KEY_INCARNATION)? {
            Some(incarnation) => incarnation,
            None => {
                let incarnation = new_incarnation();
                // New storage: its votes are trusted only once the group has seen it (see `votes_trusted`).
                write_meta(&db, KEY_VOTES_TRUSTED, &false, Durability::Immediate)?;
                write_meta(&db, KEY_INCARNATION, &incarnation, Durability::Immediate)?;
                incarnation
            }
        };
        Ok(LogStore {
            db: Arc::new(db),
            incarnation,
            machine: PhantomData,
        })
    }

    /// The incarnation of this storage: made once, when the database was created, and kept for its life. A node
    /// whose incarnation changed has lost its disk.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether this storage's votes can be trusted: it is known to the group as this node's storage, not a
    /// replacement for a lost one whose votes it forgot. Storage made before this marker existed is trusted.
    pub fn votes_trusted(&self) -> Result<bool, StorageError> {
        Ok(read_meta::<bool>(&self.db, KEY_VOTES_TRUSTED)?.unwrap_or(true))
    }

    /// Records (durably) that this storage's votes can be trusted.
    pub async fn trust_votes(&self) -> Result<(), StorageError> {
        self.blocking(|db| write_meta(db, KEY_VOTES_TRUSTED, &true, Durability::Immediate))
            .await
    }

    /// Whether this node started rejoining the group after a disk loss and has not finished.
    pub fn rejoin_pending(&self) -> Result<bool, StorageError> {
        Ok(read_meta::<bool>(&self.db, KEY_REJOIN_PENDING)?.unwrap_or(false))
    }

    /// Records (durably) that a rejoin started or finished.
    pub async fn set_rejoin_pending(&self, pending: bool) -> Result<(), StorageError> {
        self.blocking(move |db| write_meta(db, KEY_REJOIN_PENDING, &pending, Durability::Immediate))
            .await
    }

    /// Runs a blocking database operation off the async workers: a commit waits for fsync.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .or_io(ErrorSubject::Store, ErrorVerb::Write)?
    }
}

fn read_meta<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StorageError> {
    let tx = db
        .begin_read()
        .or_io(ErrorSubject::Store, ErrorVerb::Read)?;
    let table = tx
        .open_table(META)
        .or_io(ErrorSubject::Store, ErrorVerb::Read)?;
    let Some(raw) = table.get(key).or_io(ErrorSubject::Store, ErrorVerb::Read)? else {
        return Ok(None);
    };
    serde_json::from_slice(raw.value())
        .map(Some)
        .or_io(ErrorSubject::Store, ErrorVerb::Read)
}

fn write_meta<T: Serialize>(
    db: &Database,
    key: &str,
    value: &T,
    durability: Durability,
) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(value).or_io(ErrorSubject::Store, ErrorVerb::Write)?;
    let mut tx = db
        .begin_write()
        .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
    tx.set_durability(durability);
    {
        let mut table = tx
            .open_table(META)
            .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
        table
            .insert(key, bytes.as_slice())
            .or_io(ErrorSubject::Store, ErrorVerb::Write)?;
    }
    tx.commit().or_io(ErrorSubject::Store, ErrorVerb::Write)
}

impl<M: Machine> RaftLogReader<Types<M>> for LogStore<M> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<M>>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        self.blocking(move |db| {
            let tx = db.begin_read().or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
            let table = tx
                .open_table(LOGS)
                .or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
            let iter = table
                .range::<u64>((start, end))
                .or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
            let mut out = Vec::new();
            for item in iter {
                let (_, raw) = item.or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
                let entry: Entry<M> = serde_json::from_slice(raw.value())
                    .or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl<M: Machine> RaftLogStorage<Types<M>> for LogStore<M> {
    type LogReader = LogStore<M>;

    async fn get_log_state(&mut self) -> Result<LogState<Types<M>>, StorageError> {
        self.blocking(|db| {
            let last_purged: Option<LogId> = read_meta(db, KEY_PURGED)?;
            let tx = db.begin_read().or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
            let table = tx
                .open_table(LOGS)
                .or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
            let last = match table.last().or_io(ErrorSubject::Logs, ErrorVerb::Read)? {
                Some((_, raw)) => {
                    let entry: Entry<M> = serde_json::from_slice(raw.value())
                        .or_io(ErrorSubject::Logs, ErrorVerb::Read)?;
                    Some(*entry.get_log_id())
                }
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(move |db| write_meta(db, KEY_VOTE, &vote, Durability::Immediate))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.blocking(|db| read_meta(db, KEY_VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(move |db| {
            // Durability::None: redb 2 fsyncs Eventual commits on Linux too, and openraft awaits this call before
            // applying each commit, so an fsync here doubled the fsyncs per entry (measured with strace). The next
            // append's Immediate commit persists it. A stale value after a crash is safe for raft, and the read
            // path does not trust it (see the module doc).
            write_meta(db, KEY_COMMITTED, &committed, Durability::None)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.blocking(|db| Ok(read_meta::<Option<LogId>>(db, KEY_COMMITTED)?.flatten()))
            .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Types<M>>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<M>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).or_io(ErrorSubject::Logs, ErrorVerb::Write)?;
            encoded.push((entry.get_log_id().index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let mut tx = db
                    .begin_write()
                    .or_io(ErrorSubject::Logs, ErrorVerb::Write)?;
                tx.set_durability(Durability::Immediate);
                {
                    let mut table = tx
                        .open_table(LOGS)
                        .or_io(ErrorSubject::Logs, ErrorVerb::Write)?;
                    for (index, bytes) in &encoded {
                        table
                            .insert(*index, bytes.as_slice())
                            .or_io(ErrorSubject::Logs, ErrorVerb::Write)?;
                    }
                }
                // Durability::Immediate: commit returns after fsync, so the callback below never runs early.
                tx.commit().or_io(ErrorSubject::Logs, ErrorVerb::Write)
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let tx = db
                .begin_write()
                .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
            {
                let mut table = tx
                    .open_table(LOGS)
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
                table
                    .retain_in::<u64, _>(log_id.index.., |_, _| false)
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
            }
            tx.commit().or_io(ErrorSubject::Logs, ErrorVerb::Delete)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(move |db| {
            let bytes =
                serde_json::to_vec(&Some(log_id)).or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
            let tx = db
                .begin_write()
                .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
            {
                // One transaction: the purge marker and the deletion land together or not at all.
                let mut meta = tx
                    .open_table(META)
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
                meta.insert(KEY_PURGED, bytes.as_slice())
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
                let mut table = tx
                    .open_table(LOGS)
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
                table
                    .retain_in::<u64, _>(..=log_id.index, |_, _| false)
                    .or_io(ErrorSubject::Logs, ErrorVerb::Delete)?;
            }
            tx.commit().or_io(ErrorSubject::Logs, ErrorVerb::Delete)
        })
        .await
    }
}

/// A number that differs between two creations of a store: the clock in nanoseconds mixed with the process id
/// and a stack address, which is plenty to tell a node's old disk from its new one.
fn new_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let marker = 0u8;
    let address = std::ptr::addr_of!(marker) as usize as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32) ^ address.rotate_left(17)
}

/// Turns any error into a storage error about `subject`.
trait OrStorageError<T> {
    fn or_io(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> Result<T, StorageError>;
}

impl<T, E: std::error::Error + 'static> OrStorageError<T> for Result<T, E> {
    fn or_io(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> Result<T, StorageError> {
        self.map_err(|e| io_err(subject, verb, &e))
    }
}

pub(crate) fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageIOError::new(subject, verb, openraft::AnyError::new(e)).into()
}
