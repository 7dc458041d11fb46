//! Port-forwarding through the API server (`pods/portforward`), like `kubectl port-forward`: a listener on
//! 127.0.0.1 whose every connection becomes a forwarded stream to a pod. The only addresses dialled are loopback
//! and the API server's; never a pod or service IP.

use std::net::SocketAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use tokio::net::TcpListener;

/// A running forward; stops accepting when dropped.
#[derive(Debug)]
pub struct Forward {
    addr: SocketAddr,
    pod: String,
    task: tokio::task::JoinHandle<()>,
}

impl Forward {
    /// Forwards a loopback port to `port` of `pod`.
    pub async fn to_pod(
        client: &Client,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> anyhow::Result<Forward> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let target = pod.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let pods = pods.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    let mut forwarder = match pods.portforward(&target, &[port]).await {
                        Ok(f) => f,
                        Err(e) => {
                            eprintln!("port-forward to {target}:{port} failed: {e}");
                            return;
                        }
                    };
                    if let Some(mut upstream) = forwarder.take_stream(port) {
                        // Either side closing ends the copy; errors only mean the connection is gone.
                        let _ = tokio::io::copy_bidirectional(&mut connection, &mut upstream).await;
                    }
                    forwarder.abort();
                });
            }
        });
        Ok(Forward {
            addr,
            pod: pod.to_owned(),
            task,
        })
    }

    /// Forwards a loopback port to the port `port_name` of `service`, through one of its ready pods, as
    /// `kubectl port-forward service/<name>` does (the Service's selector picks the pods; its targetPort the port).
    pub async fn to_service(
        client: &Client,
        namespace: &str,
        service: &str,
        port_name: &str,
    ) -> anyhow::Result<Forward> {
        let svc = Api::<Service>::namespaced(client.clone(), namespace)
            .get(service)
            .await?;
        let spec = svc
            .spec
            .ok_or_else(|| anyhow::anyhow!("service {service} has no spec"))?;
        let selector = spec
            .selector
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let service_port = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(port_name))
            .ok_or_else(|| anyhow::anyhow!("service {service} has no port {port_name}"))?;
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().labels(&selector))
            .await?;
        let pod = pods
            .items
            .into_iter()
            .find(pod_ready)
            .ok_or_else(|| anyhow::anyhow!("service {service} has no ready pod"))?;
        let port = match service_port.target_port {
            Some(IntOrString::Int(n)) => u16::try_from(n)?,
            Some(IntOrString::String(name)) => container_port(&pod, &name)
                .ok_or_else(|| anyhow::anyhow!("pod {} has no port {name}", pod.name_any()))?,
            None => u16::try_from(service_port.port)?,
        };
        Forward::to_pod(client, namespace, &pod.name_any(), port).await
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The pod the connections go to.
    pub fn pod(&self) -> &str {
        &self.pod
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the pod's Ready condition is True (and it is not being deleted).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn container_port(pod: &Pod, name: &str) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}
