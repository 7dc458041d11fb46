#!/usr/bin/env bash
# Regenerates the CRD YAML from the Rust types (crates/syncd-operator/src/crd.rs). Never edit the YAML by hand:
# `cargo test -p syncd-operator` fails when the committed copies differ from what this writes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet -p syncd-operator -- crd > manifests/crds/syncclusters.syncd.dev.yaml
cp manifests/crds/syncclusters.syncd.dev.yaml charts/syncd-operator/crds/syncclusters.syncd.dev.yaml
echo "wrote manifests/crds/ and charts/syncd-operator/crds/"
