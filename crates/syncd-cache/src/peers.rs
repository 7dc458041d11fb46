//! Calls to other cache peers go through the shared peer transport (`syncd-peer`): protocol messages as binary
//! frames, pings as JSON.

pub use syncd_peer::{PeerClient, PeerError};
