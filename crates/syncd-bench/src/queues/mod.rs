//! The queue benchmark (`syncd-bench queues`): produce throughput, then receive+ack throughput, with per-call
//! latency, against Syncd's queue role or against Redis Streams, RabbitMQ quorum queues or NATS JetStream, all
//! through one load generator and one workload.
//!
//! - [`backend`]: the [`backend::QueueBackend`] trait and one implementation per service.
//! - [`workload`]: the two phases and the check of what came back.
//! - [`report`]: result files and the side-by-side markdown tables.

pub mod backend;
pub mod report;
pub mod workload;
