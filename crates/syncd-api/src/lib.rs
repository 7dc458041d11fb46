//! Wire types of the Syncd REST API, shared by the server (`syncd`) and the typed client (`syncd-client`).
//!
//! This crate owns the public contract and nothing else: it has no I/O and depends only on serde.
//!
//! - [`problem`]: the RFC 9457 `application/problem+json` error body and the stable [`ErrorCode`]s.
//! - [`names`]: the rules for lock, queue and owner names.
//! - [`locks`]: request and response bodies of `/v1/locks`.
//! - [`queues`]: request and response bodies of `/v1/queues` and `/v1/ring`.
//! - [`status`]: the body of `/v1/status`.

pub mod locks;
pub mod names;
pub mod problem;
pub mod queues;
pub mod status;

pub use problem::{ErrorCode, Problem};
