//! A fresh namespace per test, so tests run in parallel and never see each other's leftovers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

/// Label on every namespace the suite creates, to find leftovers of an interrupted run:
/// `kubectl delete namespace -l syncd.dev/e2e=true`.
pub const LABEL: &str = "syncd.dev/e2e";

/// A namespace with a server-generated random name (`syncd-e2e-xxxxx`), deleted when dropped: at the end of the
/// test, whether it passed, failed or panicked. Deleting a namespace deletes everything in it.
#[derive(Debug)]
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates the namespace.
    pub async fn create(client: &Client) -> anyhow::Result<TestNamespace> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some("syncd-e2e-".to_owned()),
                labels: Some(BTreeMap::from([(LABEL.to_owned(), "true".to_owned())])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        let name = created
            .metadata
            .name
            .ok_or_else(|| anyhow::anyhow!("the API server named no namespace"))?;
        Ok(TestNamespace { name })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace without waiting for it to be gone. Drop cannot await, and the test's runtime may be
    /// single-threaded (blocking it on its own client would deadlock), so this uses a new client on a runtime of its
    /// own, on a thread of its own.
    fn drop(&mut self) {
        if std::env::var("SYNCD_E2E_KEEP_NAMESPACES").is_ok_and(|v| v == "1") {
            eprintln!("keeping namespace {}", self.name);
            return;
        }
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let client = Client::try_default().await?;
                match Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not delete namespace {}: {e:#}", self.name),
            Err(_) => eprintln!(
                "could not delete namespace {}: the thread panicked",
                self.name
            ),
        }
    }
}
