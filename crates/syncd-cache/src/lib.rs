//! The Syncd cache role: peers that keep MESI-coherent copies of keys, a home node per key (on the ring over the
//! live peers) acting as the directory, bounded LRU lines, and leases so a silent peer delays a write instead of
//! breaking it.
//!
//! The protocol itself is [`syncd_cache_core`] (pure, model-checked); this crate is its runtime:
//! - [`service`]: [`CacheService`]: client operations, the home side, probes, write-backs, the membership loop;
//! - [`store`]: this peer's lines (LRU with leases, capacity in lines and bytes);
//! - [`directory`]: the directory entries of the keys this node homes, and the requesters waiting on them;
//! - [`membership`]: discovery (`--peers` or the headless Service's DNS records), liveness, views and grace;
//! - [`peers`]: HTTP calls to other peers; [`peer_api`]: the `/internal/cache/...` routes they call;
//! - [`wire`]: the frames on those routes; [`metrics`]: counters and round-trip histograms; [`error`]:
//!   [`CacheError`].
//!
//! `docs/cache.md` describes the protocol, its guarantees and what happens when peers join, leave or die.

pub mod directory;
pub mod error;
pub mod membership;
pub mod metrics;
pub mod peer_api;
pub mod peers;
pub mod service;
pub mod store;
pub mod wire;

pub use error::CacheError;
pub use membership::PeerSource;
pub use service::{CacheConfig, CacheRead, CacheService, CacheStats};
pub use syncd_cache_core::LineState;
