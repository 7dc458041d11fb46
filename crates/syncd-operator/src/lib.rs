//! `syncd-operator`: reconciles `SyncCluster` resources into the StatefulSets, Services and PodDisruptionBudgets
//! that run Syncd.
//!
//! - [`crd`]: the custom resource and its admission-time validation.
//! - [`build`]: the pure step of reconcile: spec in, desired ConfigMaps, Services, StatefulSets and PDBs out.
pub mod build;
pub mod crd;
