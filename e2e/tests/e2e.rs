//! Control-plane e2e tests: the CRD, the Helm chart and the operator against a real Kubernetes API server, one
//! module per scenario, each test in a fresh namespace. Run them with `bash e2e/run.sh` (envtest + kwok), or against
//! any cluster where the chart is installed (see e2e/README.md).

// Test code: a failed step should stop the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod e2e {
    mod admission;
    mod crd;
    mod deletion;
    mod fake_pods;
    mod objects;
    mod real_pods;
    mod status;
    mod updates;
}
