//! Calls to other queue nodes go through the shared peer transport (`syncd-peer`): one connection pool per peer
//! address, JSON bodies, problem answers decoded.

pub use syncd_peer::{PeerClient, PeerError};
