//! Results: what a run saves as JSON, and the markdown tables that put runs side by side.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuUse;
use crate::stats::Summary;
use crate::workloads::{Plan, Workload};

/// Everything one `syncd-bench locks` run measured against one cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The backend's label, e.g. `syncd`.
    pub backend: String,
    /// The settings of the run.
    pub settings: Settings,
    /// One entry per workload and client count.
    pub results: Vec<WorkloadResult>,
}

/// The plan, as recorded with the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Warm-up seconds per run.
    pub warmup_s: f64,
    /// Lease of the locks taken, ms.
    pub ttl_ms: u128,
    /// Longest wait of a waiting acquire, ms.
    pub wait_ms: u128,
    /// Hold time in `handoff`, ms.
    pub hold_ms: u128,
    /// Deadlock rounds.
    pub deadlock_rounds: usize,
    /// Lease of the deadlocked party, ms.
    pub deadlock_ttl_ms: u128,
}

impl Settings {
    /// The settings of `plan`.
    pub fn from_plan(plan: &Plan) -> Settings {
        Settings {
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            ttl_ms: plan.ttl.as_millis(),
            wait_ms: plan.wait.as_millis(),
            hold_ms: plan.hold.as_millis(),
            deadlock_rounds: plan.deadlock_rounds,
            deadlock_ttl_ms: plan.deadlock_ttl.as_millis(),
        }
    }
}

/// The result of one workload at one client count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Which workload.
    pub workload: Workload,
    /// Clients (for `handoff`: waiters besides the holder; for `deadlock`: 2).
    pub clients: usize,
    /// Samples in the headline latency (completed cycles, hand-offs, deadlock rounds).
    pub ops: u64,
    /// Failed calls.
    pub errors: u64,
    /// Completed cycles per second (hand-offs per second for `handoff`); none for `deadlock`.
    pub ops_per_sec: Option<f64>,
    /// The headline latency: a whole acquire+release cycle (`distinct`, `contended`), release issued to next
    /// grant (`handoff`), c2's call (`deadlock`).
    pub latency: Summary,
    /// Further distributions (single calls, signed hand-off gaps, ...).
    pub details: Vec<Detail>,
    /// Counts of how rounds ended (`deadlock`).
    pub outcomes: BTreeMap<String, u64>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// CPU used during the measured window (throughput workloads).
    #[serde(default)]
    pub cpu: Option<CpuUse>,
}

impl WorkloadResult {
    /// A progress line.
    pub fn one_line(&self) -> String {
        let ops = self
            .ops_per_sec
            .map(|o| format!("{o:.0} ops/s, "))
            .unwrap_or_default();
        format!(
            "{ops}p50 {} ms, p99 {} ms, {} samples, {} errors{}",
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            self.ops,
            self.errors,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }

    /// `(this is better than other) ratio`: throughput over throughput for `distinct` and `contended`, the other's
    /// p50 over this one's for the latency workloads. Above 1 means this one is better.
    fn advantage_over(&self, other: &WorkloadResult) -> Option<(f64, &'static str)> {
        match self.workload {
            Workload::Distinct | Workload::Contended => {
                let (mine, theirs) = (self.ops_per_sec?, other.ops_per_sec?);
                (theirs > 0.0).then(|| (mine / theirs, "ops/s"))
            }
            Workload::Handoff | Workload::Deadlock => {
                let (mine, theirs) = (self.latency.p50_ms, other.latency.p50_ms);
                (mine > 0.0 && self.ops > 0 && other.ops > 0).then(|| (theirs / mine, "p50"))
            }
        }
    }
}

/// A named latency distribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Detail {
    /// What was measured.
    pub name: String,
    /// Its distribution.
    pub summary: Summary,
}

impl Detail {
    /// A detail named `name`.
    pub fn new(name: &str, summary: Summary) -> Detail {
        Detail {
            name: name.to_owned(),
            summary,
        }
    }
}

/// A table cell for an optional figure with `digits` decimals, a dash when unknown.
pub(crate) fn cell(value: Option<f64>, digits: usize) -> String {
    value
        .map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "—".to_owned())
}

/// Milliseconds with precision that suits their size.
pub(crate) fn ms(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The markdown tables for `reports` (one backend each); the first is the baseline of the ratio column.
pub fn markdown(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let Some(base) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "| workload | clients | backend | ops/s | p50 ms | p99 ms | p99.9 ms | errors | {} ÷ this |",
        base.backend
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for result in &base.results {
        for report in reports {
            let Some(row) = find(report, result) else {
                continue;
            };
            let ratio = if std::ptr::eq(report, base) {
                "—".to_owned()
            } else {
                result
                    .advantage_over(row)
                    .map(|(r, what)| format!("{r:.2}× ({what})"))
                    .unwrap_or_else(|| "n/a".to_owned())
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                row.workload.as_str(),
                clients_cell(row),
                report.backend,
                row.ops_per_sec
                    .map(|o| format!("{o:.0}"))
                    .unwrap_or_else(|| "—".to_owned()),
                ms(row.latency.p50_ms),
                ms(row.latency.p99_ms),
                ms(row.latency.p999_ms),
                row.errors,
                ratio
            );
        }
    }
    let _ = writeln!(
        out,
        "\nRatio: above 1 means {} is better (more ops/s; for handoff and deadlock, a lower p50). \
         Latency: distinct/contended = one acquire+release cycle; handoff = release issued → next holder's \
         grant (ops/s = hand-offs/s); deadlock = time until c2's request ends.\n",
        base.backend
    );

    let _ = writeln!(
        out,
        "| workload | clients | backend | measured | p50 ms | p99 ms | p99.9 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---:|---|---|---:|---:|---:|---:|");
    for result in &base.results {
        for report in reports {
            let Some(row) = find(report, result) else {
                continue;
            };
            for detail in &row.details {
                let s = detail.summary;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    row.workload.as_str(),
                    clients_cell(row),
                    report.backend,
                    detail.name,
                    ms(s.p50_ms),
                    ms(s.p99_ms),
                    ms(s.p999_ms),
                    ms(s.max_ms)
                );
            }
        }
    }
    cpu_table(&mut out, reports);
    for report in reports {
        for row in &report.results {
            if !row.outcomes.is_empty() {
                let outcomes: Vec<String> = row
                    .outcomes
                    .iter()
                    .map(|(k, v)| format!("{v}× {k}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "\n{} deadlock rounds: {} (c1's lease {} ms).",
                    report.backend,
                    outcomes.join(", "),
                    report.settings.deadlock_ttl_ms
                );
            }
            if let Some(e) = &row.first_error {
                let _ = writeln!(
                    out,
                    "\n{} {} clients={}: {} errors, first: {e}",
                    report.backend,
                    row.workload.as_str(),
                    row.clients,
                    row.errors
                );
            }
        }
    }
    out
}

/// CPU use per run, when the server processes were given (`--server-pids`).
fn cpu_table(out: &mut String, reports: &[RunReport]) {
    let known = |r: &WorkloadResult| r.cpu.and_then(|c| c.server_cores).is_some();
    if !reports.iter().flat_map(|r| &r.results).any(known) {
        return;
    }
    let Some(base) = reports.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| workload | clients | backend | server CPU (cores) | server CPU ms/op | load generator CPU (cores) |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|");
    for result in &base.results {
        for report in reports {
            let Some(row) = find(report, result) else {
                continue;
            };
            let Some(cpu) = row.cpu else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.workload.as_str(),
                clients_cell(row),
                report.backend,
                cell(cpu.server_cores, 2),
                cell(cpu.server_ms_per_op, 3),
                cell(cpu.bench_cores, 2)
            );
        }
    }
}

fn clients_cell(row: &WorkloadResult) -> String {
    match row.workload {
        Workload::Handoff => format!("{}+1", row.clients),
        _ => row.clients.to_string(),
    }
}

fn find<'a>(report: &'a RunReport, like: &WorkloadResult) -> Option<&'a WorkloadResult> {
    report
        .results
        .iter()
        .find(|r| r.workload == like.workload && r.clients == like.clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(workload: Workload, ops_per_sec: Option<f64>, p50_ms: f64) -> WorkloadResult {
        WorkloadResult {
            workload,
            clients: 16,
            ops: 100,
            errors: 0,
            ops_per_sec,
            latency: Summary {
                count: 100,
                p50_ms,
                ..Summary::default()
            },
            details: vec![Detail::new("acquire", Summary::default())],
            outcomes: BTreeMap::new(),
            first_error: None,
            cpu: None,
        }
    }

    fn report(backend: &str, results: Vec<WorkloadResult>) -> RunReport {
        RunReport {
            backend: backend.to_owned(),
            settings: Settings {
                duration_s: 10.0,
                warmup_s: 1.0,
                ttl_ms: 60_000,
                wait_ms: 120_000,
                hold_ms: 1,
                deadlock_rounds: 1,
                deadlock_ttl_ms: 5000,
            },
            results,
        }
    }

    #[test]
    fn ratios_favour_the_baseline_above_one() {
        let fast = result(Workload::Distinct, Some(2000.0), 5.0);
        let slow = result(Workload::Distinct, Some(500.0), 20.0);
        assert_eq!(fast.advantage_over(&slow), Some((4.0, "ops/s")));
        let quick = result(Workload::Deadlock, None, 2.0);
        let lease = result(Workload::Deadlock, None, 5000.0);
        assert_eq!(quick.advantage_over(&lease), Some((2500.0, "p50")));
    }

    #[test]
    fn table_has_one_row_per_backend() {
        let a = report("syncd", vec![result(Workload::Distinct, Some(2000.0), 5.0)]);
        let b = report("etcd", vec![result(Workload::Distinct, Some(500.0), 20.0)]);
        let text = markdown(&[a, b]);
        assert!(
            text.contains("| distinct | 16 | syncd | 2000 | 5.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| distinct | 16 | etcd | 500 | 20.0 |"),
            "{text}"
        );
        assert!(text.contains("4.00× (ops/s)"), "{text}");
        assert!(text.contains("| syncd | acquire |"), "{text}");
    }
}
