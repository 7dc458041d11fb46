//! The CRD as the API server serves it: established, with the names and printer columns the design promises, and
//! a schema the API server accepts (structural, CEL rules within the cost budget).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use syncd_e2e::sync::CRD_NAME;
use syncd_e2e::wait::{self, RECONCILE};
use syncd_e2e::{client, kubectl};

#[tokio::test]
async fn the_crd_is_established_with_its_names_and_columns() {
    let client = client().await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let crd = wait::until(
        "the SyncCluster CRD to be established",
        RECONCILE,
        || async {
            let crd = crds.get(CRD_NAME).await?;
            let conditions = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let established = ["Established", "NamesAccepted"].iter().all(|t| {
                conditions
                    .iter()
                    .any(|c| c.type_ == *t && c.status == "True")
            });
            Ok(wait::check(established, crd, || {
                format!("conditions {conditions:?}")
            }))
        },
    )
    .await
    .unwrap();

    let spec = &crd.spec;
    assert_eq!(spec.group, "syncd.dev");
    assert_eq!(spec.scope, "Namespaced");
    assert_eq!(spec.names.kind, "SyncCluster");
    assert_eq!(spec.names.short_names, Some(vec!["sync".to_owned()]));
    let version = spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("v1alpha1 is served");
    assert!(version.served && version.storage);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "the status subresource is enabled"
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Locks", "Queues", "Cache", "Leader", "Available", "Age"]
    );
}

/// The committed manifest (what `kubectl apply -f manifests/crds/` installs) passes the API server's own
/// validation: a server-side dry run, so this holds however the CRD was installed (chart or manifest).
#[tokio::test]
async fn the_committed_crd_manifest_applies() {
    let path = kubectl::repo_root().join("manifests/crds/syncclusters.syncd.dev.yaml");
    let path = path.to_str().unwrap();
    let out = kubectl::run(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager=syncd-e2e",
        "-f",
        path,
    ])
    .await
    .unwrap();
    assert!(out.contains(CRD_NAME), "kubectl apply said: {out}");
}
