//! Harness for the control-plane e2e tests in `tests/e2e.rs`: a real Kubernetes API server, the CRD, the Helm
//! chart and the operator, reached through `KUBECONFIG` like any client would.
//!
//! The suite runs against any cluster: the envtest-style control plane of `e2e/run.sh` (fake kwok pods, the
//! operator running outside as the chart's ServiceAccount), or kind/minikube with the chart installed and real pods
//! (`SYNCD_E2E_REAL_PODS=1`). See `e2e/README.md`.
//!
//! - [`namespace`]: a fresh namespace per test, deleted when the test ends, pass or fail.
//! - [`wait`]: bounded polling until a condition holds.
//! - [`sync`]: SyncCluster manifests, the dynamic API for them, and readers for their status.
//! - [`kubectl`]: shelling out to `kubectl`, for what users see (`kubectl get sync`, `kubectl apply`).
//! - [`forward`]: a loopback listener that port-forwards each connection to a pod through the API server.

pub mod forward;
pub mod kubectl;
pub mod namespace;
pub mod sync;
pub mod wait;

/// Whether the cluster runs real pods that serve (`SYNCD_E2E_REAL_PODS=1`, the kind workflow). Without it, pods
/// are fake (kwok) or absent, and the operator cannot reach the lock service.
pub fn real_pods() -> bool {
    std::env::var("SYNCD_E2E_REAL_PODS").is_ok_and(|v| v == "1")
}

/// The `syncd` image test clusters run (`SYNCD_E2E_IMAGE`, default `syncd:e2e`). With fake pods it is never
/// pulled; on kind it must be loaded into the nodes (`kind load docker-image`).
pub fn image() -> String {
    std::env::var("SYNCD_E2E_IMAGE").unwrap_or_else(|_| "syncd:e2e".to_owned())
}

/// A client from `KUBECONFIG` (or the in-cluster config).
pub async fn client() -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_default().await?)
}

/// Prints why a test does nothing in this environment; cargo shows it with the test's output.
pub fn skip(test: &str, why: &str) {
    eprintln!("skipping {test}: {why}");
}
