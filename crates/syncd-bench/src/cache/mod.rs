//! The cache benchmark (`syncd-bench cache`): a read-mostly (or mixed) key-value load with Zipf-distributed keys,
//! against Syncd's cache role or against Redis or memcached, all through one load generator and one workload.
//!
//! - [`backend`]: the [`backend::CacheBackend`] trait and one implementation per service.
//! - [`zipf`]: the key-rank distribution and the seeded random numbers behind it.
//! - [`workload`]: the preload, then the measured GET/SET loop.
//! - [`report`]: result files and the side-by-side markdown tables.

pub mod backend;
pub mod report;
pub mod workload;
pub mod zipf;
