//! A concurrent history of operations, in the style of Jepsen: each client *invokes* an operation, and later
//! *completes* it with an [`Outcome`]. Checkers ([`crate::checker`]) judge the finished history.
//!
//! Times are monotonic ([`Instant`]); dumps print them as milliseconds since the history began.
//!
//! An outcome is one of three, and the difference matters to every checker:
//! - [`Outcome::Ok`]: the operation happened, with this result.
//! - [`Outcome::Fail`]: the operation certainly did not happen (a 409 conflict, a 400 before anything ran).
//! - [`Outcome::Info`]: unknown: it may or may not have happened, at any time from its invocation on (a timeout, a
//!   dropped connection, a 503 after the request was sent). An operation never completed counts as `Info` too.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// How a lock is held; the API's own type.
pub use syncd_api::locks::LockMode as Mode;

/// The identity of one operation in its history: its index, in order of invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub usize);

impl std::fmt::Display for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op {}", self.0)
    }
}

/// What a client asked for. Lock operations only for now; queue operations (send, receive, ack) are meant to be
/// further variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Op {
    /// `POST /v1/locks/{lock}/acquire`.
    Acquire {
        /// The lock.
        lock: String,
        /// Who asks.
        owner: String,
        /// Shared or exclusive.
        mode: Mode,
        /// The lease asked for; workloads should always send it, since the checkers need it.
        ttl_ms: u64,
        /// How long the server may wait for the lock.
        wait_ms: u64,
    },
    /// `POST /v1/locks/{lock}/release`.
    Release {
        /// The lock.
        lock: String,
        /// The holder releasing it.
        owner: String,
        /// The fencing token it names, if any.
        token: Option<u64>,
    },
    /// `GET /v1/locks/{lock}`: a linearizable read of one lock.
    Read {
        /// The lock.
        lock: String,
    },
}

impl Op {
    /// The lock the operation is about.
    pub fn lock(&self) -> &str {
        match self {
            Op::Acquire { lock, .. } | Op::Release { lock, .. } | Op::Read { lock } => lock,
        }
    }
}

/// One holder in a [`Value::ReadValue`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder.
    pub owner: String,
    /// Its fencing token.
    pub token: u64,
    /// The mode the lock is held in.
    pub mode: Mode,
}

/// What a successful operation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Value {
    /// An acquire's grant.
    Granted {
        /// The fencing token.
        token: u64,
        /// The end of the lease on the server's clock.
        expires_at_ms: u64,
    },
    /// A release that released something (`released: true`); a release of nothing is a [`Outcome::Fail`].
    Released,
    /// A read's holders.
    ReadValue {
        /// The holders the read saw; empty when the lock was free.
        holders: Vec<Holder>,
    },
}

impl Value {
    /// The value of a read that returned `info` (a free lock has no mode and no holders).
    pub fn read_of(info: &syncd_api::locks::LockInfo) -> Value {
        let mode = info.mode.unwrap_or(Mode::Exclusive);
        Value::ReadValue {
            holders: info
                .holders
                .iter()
                .map(|holder| Holder {
                    owner: holder.owner.clone(),
                    token: holder.token,
                    mode,
                })
                .collect(),
        }
    }
}

/// The prefix of a [`Outcome::Fail`] reason that says the server refused the operation with a problem code: the
/// operation did not change anything, but its answer is an observation of the state (a `lock_conflict` says the
/// lock was held; a `not_held` says the owner did not hold it).
pub const REFUSED: &str = "refused:";

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Outcome {
    /// It happened, with this result.
    Ok(Value),
    /// It certainly did not happen.
    Fail(String),
    /// It may or may not have happened.
    Info(String),
}

/// The completion of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// When the client learned the outcome.
    pub at: Instant,
    /// The outcome.
    pub outcome: Outcome,
}

/// One operation: its invocation and, once known, its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Its id.
    pub id: OpId,
    /// The client (logical process) that ran it; a client runs one operation at a time.
    pub process: u64,
    /// What was asked.
    pub op: Op,
    /// When it was invoked.
    pub invoked: Instant,
    /// Its completion; `None` while pending (and, in a finished history, for operations that never returned,
    /// which mean the same as [`Outcome::Info`]).
    pub completed: Option<Completion>,
}

impl Outcome {
    /// A definite refusal by the server with the problem `code` (see [`REFUSED`]).
    pub fn refused(code: &str, detail: &str) -> Outcome {
        Outcome::Fail(format!("{REFUSED}{code}: {detail}"))
    }
}

impl Operation {
    /// The problem code when the server definitely refused the operation (see [`REFUSED`]).
    pub fn refused_code(&self) -> Option<&str> {
        match &self.completed {
            Some(Completion {
                outcome: Outcome::Fail(reason),
                ..
            }) => reason.strip_prefix(REFUSED)?.split(':').next(),
            _ => None,
        }
    }

    /// The result when the operation completed `Ok`.
    pub fn ok_value(&self) -> Option<&Value> {
        match &self.completed {
            Some(Completion {
                outcome: Outcome::Ok(value),
                ..
            }) => Some(value),
            _ => None,
        }
    }

    /// When it completed `Ok`.
    pub fn ok_at(&self) -> Option<Instant> {
        self.ok_value()?;
        self.completed.as_ref().map(|c| c.at)
    }

    /// Whether it certainly did not happen.
    pub fn failed(&self) -> bool {
        matches!(
            self.completed,
            Some(Completion {
                outcome: Outcome::Fail(_),
                ..
            })
        )
    }
}

/// One line of a dump: an invocation or a completion.
#[derive(Debug, Serialize)]
struct Event<'a> {
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    kind: &'static str,
    id: usize,
    process: u64,
    /// Milliseconds since the history began.
    at_ms: f64,
    op: &'a Op,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

struct Inner {
    ops: Vec<Operation>,
}

/// A history shared by every client of a test; clones share it.
#[derive(Clone)]
pub struct History {
    start: Instant,
    inner: Arc<Mutex<Inner>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history beginning now.
    pub fn new() -> History {
        History::starting_at(Instant::now())
    }

    /// An empty history whose relative times count from `start` (for synthetic histories).
    pub fn starting_at(start: Instant) -> History {
        History {
            start,
            inner: Arc::new(Mutex::new(Inner { ops: Vec::new() })),
        }
    }

    /// When the history began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// `at` as milliseconds since the history began (negative when earlier).
    pub fn relative_ms(&self, at: Instant) -> f64 {
        relative_ms(self.start, at)
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `process` invokes `op` now.
    pub fn invoke(&self, process: u64, op: Op) -> OpId {
        self.invoke_at(process, op, Instant::now())
    }

    /// Records that `process` invoked `op` at `at`.
    pub fn invoke_at(&self, process: u64, op: Op, at: Instant) -> OpId {
        let mut inner = self.inner();
        let id = OpId(inner.ops.len());
        inner.ops.push(Operation {
            id,
            process,
            op,
            invoked: at,
            completed: None,
        });
        id
    }

    /// Records that operation `id` completes now with `outcome`.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        self.complete_at(id, outcome, Instant::now());
    }

    /// Records that operation `id` completed at `at` with `outcome`. A second completion of one operation, or
    /// one of an unknown id, is ignored.
    pub fn complete_at(&self, id: OpId, outcome: Outcome, at: Instant) {
        let mut inner = self.inner();
        if let Some(operation) = inner.ops.get_mut(id.0)
            && operation.completed.is_none()
        {
            operation.completed = Some(Completion { at, outcome });
        }
    }

    /// A copy of every operation, in order of invocation id.
    pub fn operations(&self) -> Vec<Operation> {
        self.inner().ops.clone()
    }

    /// How many operations were invoked.
    pub fn len(&self) -> usize {
        self.inner().ops.len()
    }

    /// Whether no operation was invoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the history to `path` as JSON lines, one per invocation and one per completion, in time order:
    /// `{"type":"invoke"|"ok"|"fail"|"info","id":..,"process":..,"at_ms":..,"op":{..},"value"|"reason":..}`.
    pub fn dump(&self, path: &Path) -> anyhow::Result<()> {
        let ops = self.operations();
        let mut events: Vec<(Instant, Event<'_>)> = Vec::with_capacity(ops.len() * 2);
        for operation in &ops {
            events.push((
                operation.invoked,
                self.event("invoke", operation, operation.invoked),
            ));
            if let Some(completion) = &operation.completed {
                let event = match &completion.outcome {
                    Outcome::Ok(value) => Event {
                        value: Some(value),
                        ..self.event("ok", operation, completion.at)
                    },
                    Outcome::Fail(reason) => Event {
                        reason: Some(reason),
                        ..self.event("fail", operation, completion.at)
                    },
                    Outcome::Info(reason) => Event {
                        reason: Some(reason),
                        ..self.event("info", operation, completion.at)
                    },
                };
                events.push((completion.at, event));
            }
        }
        // Stable: an invocation stays before a completion at the same instant.
        events.sort_by_key(|(at, _)| *at);
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut out = BufWriter::new(file);
        for (_, event) in &events {
            serde_json::to_writer(&mut out, event)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }

    fn event<'a>(&self, kind: &'static str, operation: &'a Operation, at: Instant) -> Event<'a> {
        Event {
            kind,
            id: operation.id.0,
            process: operation.process,
            at_ms: self.relative_ms(at),
            op: &operation.op,
            value: None,
            reason: None,
        }
    }
}

/// `at` as milliseconds since `start` (negative when earlier), rounded to microseconds.
pub fn relative_ms(start: Instant, at: Instant) -> f64 {
    let ms = |d: Duration| (d.as_micros() as f64) / 1000.0;
    if at >= start {
        ms(at - start)
    } else {
        -ms(start - at)
    }
}

#[cfg(test)]
mod tests {
    // Tests fail loudly on broken setup.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn acquire(owner: &str) -> Op {
        Op::Acquire {
            lock: "l".to_string(),
            owner: owner.to_string(),
            mode: Mode::Exclusive,
            ttl_ms: 1_000,
            wait_ms: 0,
        }
    }

    #[test]
    fn invoke_and_complete_from_many_threads() {
        let history = History::new();
        let threads: Vec<_> = (0..8)
            .map(|process| {
                let history = history.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        let id = history.invoke(process, acquire("a"));
                        history.complete(
                            id,
                            Outcome::Ok(Value::Granted {
                                token: i,
                                expires_at_ms: 0,
                            }),
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let ops = history.operations();
        assert_eq!(ops.len(), 800);
        for (index, operation) in ops.iter().enumerate() {
            assert_eq!(operation.id, OpId(index));
            let completion = operation.completed.as_ref().unwrap();
            assert!(completion.at >= operation.invoked);
            assert!(operation.ok_value().is_some());
        }
    }

    #[test]
    fn a_second_completion_is_ignored() {
        let history = History::new();
        let id = history.invoke(0, acquire("a"));
        history.complete(id, Outcome::Fail("conflict".to_string()));
        history.complete(id, Outcome::Info("late".to_string()));
        history.complete(OpId(99), Outcome::Info("unknown".to_string()));
        let ops = history.operations();
        assert!(ops[0].failed());
        assert_eq!(ops[0].ok_at(), None);
    }

    #[test]
    fn dump_writes_events_in_time_order() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let history = History::starting_at(start);
        let slow = history.invoke_at(0, acquire("a"), at(0));
        let fast = history.invoke_at(1, Op::Read { lock: "l".into() }, at(10));
        history.complete_at(
            fast,
            Outcome::Ok(Value::ReadValue { holders: vec![] }),
            at(20),
        );
        history.complete_at(slow, Outcome::Info("timeout".into()), at(30));
        history.invoke_at(2, acquire("b"), at(40));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        history.dump(&path).unwrap();
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let summary: Vec<(String, u64, f64)> = lines
            .iter()
            .map(|line| {
                (
                    line["type"].as_str().unwrap().to_string(),
                    line["id"].as_u64().unwrap(),
                    line["at_ms"].as_f64().unwrap(),
                )
            })
            .collect();
        let expected = [
            ("invoke", 0, 0.0),
            ("invoke", 1, 10.0),
            ("ok", 1, 20.0),
            ("info", 0, 30.0),
            ("invoke", 2, 40.0),
        ];
        assert_eq!(
            summary,
            expected
                .iter()
                .map(|(kind, id, at)| (kind.to_string(), *id, *at))
                .collect::<Vec<_>>()
        );
        assert_eq!(lines[0]["op"]["f"], "acquire");
        assert_eq!(lines[0]["op"]["mode"], "exclusive");
        assert_eq!(lines[2]["value"]["type"], "read_value");
        assert_eq!(lines[3]["reason"], "timeout");
    }

    #[test]
    fn reads_convert_from_the_api() {
        let info = syncd_api::locks::LockInfo {
            name: "l".into(),
            mode: Some(Mode::Shared),
            holders: vec![syncd_api::locks::Holder {
                owner: "a".into(),
                token: 7,
                expires_at_ms: 0,
            }],
            waiters: vec![],
        };
        assert_eq!(
            Value::read_of(&info),
            Value::ReadValue {
                holders: vec![Holder {
                    owner: "a".into(),
                    token: 7,
                    mode: Mode::Shared
                }]
            }
        );
    }
}
