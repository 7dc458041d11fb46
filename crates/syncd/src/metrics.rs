//! Prometheus metrics, all prefixed `syncd_`, in one registry per node.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use syncd_cache::metrics::CacheMetrics;
use syncd_locks::LockService;

/// Labels of one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template, e.g. `/v1/locks/{name}/acquire`; `unmatched` otherwise.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status.
    pub status: u16,
}

/// Labels of a request latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    raft_term: Gauge,
    raft_is_leader: Gauge,
    raft_applied_index: Gauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// A fresh registry with every metric registered (the cache role's too, when it runs).
    pub fn new(cache: Option<&CacheMetrics>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("syncd");
        if let Some(cache) = cache {
            cache.register(&mut registry);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let raft_term = Gauge::default();
        let raft_is_leader = Gauge::default();
        let raft_applied_index = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route and method",
            latency.clone(),
        );
        registry.register(
            "lock_raft_term",
            "Current raft term of the lock group",
            raft_term.clone(),
        );
        registry.register(
            "lock_raft_is_leader",
            "1 when this node leads the lock group",
            raft_is_leader.clone(),
        );
        registry.register(
            "lock_raft_applied_index",
            "Last raft log index applied to the lock table",
            raft_applied_index.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            raft_term,
            raft_is_leader,
            raft_applied_index,
        })
    }

    /// Records one answered request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Renders the registry in the Prometheus/OpenMetrics text format, refreshing the gauges read from raft first.
    pub fn render(&self, locks: Option<&LockService>) -> String {
        if let Some(locks) = locks {
            let status = locks.status();
            self.raft_term.set(status.term as i64);
            self.raft_is_leader
                .set(i64::from(status.leader == Some(locks.id())));
            self.raft_applied_index
                .set(status.applied_index.unwrap_or(0) as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "could not render metrics");
        }
        out
    }
}
