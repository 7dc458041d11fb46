//! The two Services of a component: the headless `<cluster>-<component>-peers` that gives each pod a DNS name,
//! and the client `<cluster>-<component>` that load-balances over ready pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::scope::Scope;
use super::{HTTP_PORT, HTTP_PORT_NAME};

/// The headless peers Service.
///
/// `publishNotReadyAddresses`: peers must find each other before any of them is ready, since a raft member is
/// ready only once the group has a quorum.
pub(crate) fn peers_service(scope: &Scope) -> Service {
    Service {
        metadata: scope.meta(scope.component.peers_service_name(&scope.cluster)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![http_port()]),
            selector: Some(scope.selector.clone()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service: ClusterIP, only ready pods.
pub(crate) fn client_service(scope: &Scope) -> Service {
    Service {
        metadata: scope.meta(scope.component.object_name(&scope.cluster)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            ports: Some(vec![http_port()]),
            selector: Some(scope.selector.clone()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn http_port() -> ServicePort {
    ServicePort {
        name: Some(HTTP_PORT_NAME.to_owned()),
        port: HTTP_PORT,
        target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_owned())),
        protocol: Some("TCP".to_owned()),
        app_protocol: Some("http".to_owned()),
        ..ServicePort::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{cluster, ctx};
    use super::super::{Component, selector_labels};
    use super::*;

    fn scope(component: Component) -> Scope {
        Scope::new(&cluster("demo"), component, &ctx()).unwrap()
    }

    #[test]
    fn peers_service_is_headless_and_publishes_unready_pods() {
        let svc = peers_service(&scope(Component::Locks));
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-locks-peers"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            spec.selector,
            Some(selector_labels("demo", Component::Locks))
        );
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].name.as_deref(), Some("http"));
        assert_eq!(ports[0].port, 7080);
    }

    #[test]
    fn client_service_targets_the_named_port() {
        let svc = client_service(&scope(Component::Cache));
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-cache"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(
            spec.selector,
            Some(selector_labels("demo", Component::Cache))
        );
        let ports = spec.ports.unwrap();
        assert_eq!(ports[0].port, 7080);
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("http".to_owned()))
        );
    }
}
