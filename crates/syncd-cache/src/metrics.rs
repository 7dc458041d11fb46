//! The cache role's counters and latency histograms. They are the single source of the numbers: `GET /v1/cache`
//! reads them, and the node's Prometheus registry exports them (names prefixed `syncd_cache_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a coherence round trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    /// `read`, `write`, `delete` or `writeback` for requests; `invalidate` or `downgrade` for probes.
    pub kind: &'static str,
}

fn rtt_histogram() -> Histogram {
    // 50 µs .. ~3.3 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 17))
}

/// Every cache metric. Cloning shares the same counters.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Reads served from a local copy.
    pub hits: Counter,
    /// Reads that asked the home.
    pub misses: Counter,
    /// Lines evicted to stay within capacity.
    pub evictions: Counter,
    /// Copies dropped because their lease ran out.
    pub expirations: Counter,
    /// Modified lines written back to their home.
    pub writebacks: Counter,
    /// Invalidation probes received (as a holder).
    pub invalidations_received: Counter,
    /// Recall (downgrade) probes received (as a holder).
    pub recalls_received: Counter,
    /// Invalidation probes sent (as a home).
    pub invalidations_sent: Counter,
    /// Recall (downgrade) probes sent (as a home).
    pub recalls_sent: Counter,
    /// Possibly dirty copies given up by a home (holder restarted or silent past its lease).
    pub lost: Counter,
    /// Directory entries forgotten to stay within capacity.
    pub forgotten: Counter,
    /// Lines holding a copy.
    pub entries: Gauge,
    /// Bytes of keys and values held in lines.
    pub bytes: Gauge,
    /// Keys homed here with a directory entry.
    pub directory_entries: Gauge,
    /// Live peers in this node's view (itself included).
    pub peers: Gauge,
    /// Requester-to-home round trips, by request kind.
    pub request_rtt: Family<KindLabel, Histogram>,
    /// Home-to-holder probe round trips, by probe kind.
    pub probe_rtt: Family<KindLabel, Histogram>,
}

impl Default for CacheMetrics {
    fn default() -> Self {
        CacheMetrics {
            hits: Counter::default(),
            misses: Counter::default(),
            evictions: Counter::default(),
            expirations: Counter::default(),
            writebacks: Counter::default(),
            invalidations_received: Counter::default(),
            recalls_received: Counter::default(),
            invalidations_sent: Counter::default(),
            recalls_sent: Counter::default(),
            lost: Counter::default(),
            forgotten: Counter::default(),
            entries: Gauge::default(),
            bytes: Gauge::default(),
            directory_entries: Gauge::default(),
            peers: Gauge::default(),
            request_rtt: Family::new_with_constructor(rtt_histogram as fn() -> Histogram),
            probe_rtt: Family::new_with_constructor(rtt_histogram as fn() -> Histogram),
        }
    }
}

impl CacheMetrics {
    /// Registers every metric (the registry adds the `syncd_` prefix).
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "cache_hits",
                "Cache reads served from a local copy",
                &self.hits,
            ),
            (
                "cache_misses",
                "Cache reads that asked the key's home",
                &self.misses,
            ),
            (
                "cache_evictions",
                "Cache lines evicted by LRU",
                &self.evictions,
            ),
            (
                "cache_expirations",
                "Cache copies dropped when their lease ran out",
                &self.expirations,
            ),
            (
                "cache_writebacks",
                "Modified cache lines written back to their home",
                &self.writebacks,
            ),
            (
                "cache_invalidations_received",
                "Invalidations received as a holder",
                &self.invalidations_received,
            ),
            (
                "cache_recalls_received",
                "Recalls (downgrades) received as a holder",
                &self.recalls_received,
            ),
            (
                "cache_invalidations_sent",
                "Invalidations sent as a home",
                &self.invalidations_sent,
            ),
            (
                "cache_recalls_sent",
                "Recalls (downgrades) sent as a home",
                &self.recalls_sent,
            ),
            (
                "cache_lost_lines",
                "Possibly dirty copies given up because their holder restarted or went silent",
                &self.lost,
            ),
            (
                "cache_directory_forgotten",
                "Home directory entries forgotten to stay within capacity",
                &self.forgotten,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            ("cache_entries", "Cache lines holding a copy", &self.entries),
            (
                "cache_bytes",
                "Bytes of keys and values in cache lines",
                &self.bytes,
            ),
            (
                "cache_directory_entries",
                "Keys homed here with a directory entry",
                &self.directory_entries,
            ),
            (
                "cache_peers",
                "Live cache peers in this node's view, itself included",
                &self.peers,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "cache_request_rtt_seconds",
            "Coherence round trips from a requester to a key's home, by request kind",
            self.request_rtt.clone(),
        );
        registry.register(
            "cache_probe_rtt_seconds",
            "Coherence round trips from a home to a holder, by probe kind",
            self.probe_rtt.clone(),
        );
    }
}
