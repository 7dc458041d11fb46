//! Latency recording: HDR histograms in microseconds, and the percentiles the reports show.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency recorded exactly, in microseconds (one hour); longer ones are recorded as this.
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept by the histogram (0.1 % relative error).
const SIGFIG: u8 = 3;

/// A latency histogram. One per worker and per call, merged at the end of a run.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Recorder {
    /// An empty histogram covering 1 µs to one hour.
    pub fn new() -> anyhow::Result<Recorder> {
        let hist = Histogram::new_with_bounds(1, MAX_MICROS, SIGFIG)
            .map_err(|e| anyhow::anyhow!("histogram: {e}"))?;
        Ok(Recorder { hist })
    }

    /// Records one latency (sub-microsecond ones count as 1 µs).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(micros.max(1));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Recorder) -> anyhow::Result<()> {
        self.hist
            .add(&other.hist)
            .map_err(|e| anyhow::anyhow!("histogram merge: {e}"))
    }

    /// How many values were recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Count, mean and percentiles, in milliseconds.
    pub fn summary(&self) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.hist.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.hist.len(),
            mean_ms: self.hist.mean() / 1000.0,
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            p999_ms: ms(self.hist.value_at_quantile(0.999)),
            max_ms: ms(self.hist.max()),
        }
    }
}

/// Percentiles of one latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// Percentiles of signed time differences (which may be negative), nearest-rank, in milliseconds.
pub fn signed_summary(mut micros: Vec<i64>) -> Summary {
    if micros.is_empty() {
        return Summary::default();
    }
    micros.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
        micros[rank - 1] as f64 / 1000.0
    };
    let sum: i128 = micros.iter().map(|v| i128::from(*v)).sum();
    Summary {
        count: micros.len() as u64,
        mean_ms: sum as f64 / micros.len() as f64 / 1000.0,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: at(1.0),
    }
}

/// `later - earlier` in microseconds, negative when `later` is in fact earlier.
pub fn signed_micros(later: tokio::time::Instant, earlier: tokio::time::Instant) -> i64 {
    if later >= earlier {
        i64::try_from((later - earlier).as_micros()).unwrap_or(i64::MAX)
    } else {
        -i64::try_from((earlier - later).as_micros()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut r = Recorder::new().unwrap();
        for ms in 1..=1000 {
            r.record(Duration::from_millis(ms));
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.5, "{s:?}");
    }

    #[test]
    fn merging_and_empty() {
        assert_eq!(Recorder::new().unwrap().summary(), Summary::default());
        let mut a = Recorder::new().unwrap();
        let mut b = Recorder::new().unwrap();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_nanos(1));
        b.record(Duration::from_secs(10_000));
        a.merge(&b).unwrap();
        assert_eq!(a.len(), 3);
        assert!(a.summary().max_ms >= 3_600_000.0 * 0.999);
    }

    #[test]
    fn signed_values() {
        let s = signed_summary(vec![-2000, 1000, 3000, 5000]);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, 1.0);
        assert_eq!(s.max_ms, 5.0);
        assert_eq!(s.mean_ms, 1.75);
        assert_eq!(signed_summary(Vec::new()), Summary::default());
        let t = tokio::time::Instant::now();
        let later = t + Duration::from_millis(3);
        assert_eq!(signed_micros(later, t), 3000);
        assert_eq!(signed_micros(t, later), -3000);
    }
}
