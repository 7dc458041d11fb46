//! Results of `syncd-bench queues`: what a run saves as JSON, and the markdown tables that put runs side by side.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::workload::QueuePlan;
use crate::cpu::CpuUse;
use crate::report::{Detail, cell, ms};
use crate::stats::Summary;

/// The `kind` of a queue result file (lock result files have none).
pub const KIND: &str = "queues";

/// Everything one `syncd-bench queues` run measured against one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueReport {
    /// Always [`KIND`]: tells `compare` which kind of file this is.
    pub kind: String,
    /// The label of the service and its setup, e.g. `syncd rf=2 fsync=always`.
    pub backend: String,
    /// The settings of the run.
    pub settings: QueueSettings,
    /// One entry per client count.
    pub runs: Vec<ClientRun>,
}

/// The plan, as recorded with the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Messages per run.
    pub messages: u64,
    /// Body size, bytes.
    pub body_bytes: usize,
    /// Longest wait of one receive, ms.
    pub receive_wait_ms: u128,
    /// Visibility timeout (ack wait), ms.
    pub visibility_ms: u128,
}

impl QueueSettings {
    /// The settings of `plan`.
    pub fn from_plan(plan: &QueuePlan) -> QueueSettings {
        QueueSettings {
            messages: plan.messages,
            body_bytes: plan.body_bytes,
            receive_wait_ms: plan.receive_wait.as_millis(),
            visibility_ms: plan.visibility.as_millis(),
        }
    }
}

/// One client count: a fresh queue, produced into and drained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRun {
    /// Concurrent clients in both phases.
    pub clients: usize,
    /// The queue used.
    pub queue: String,
    /// Where the queue lived (Syncd: owner and replicas).
    pub placement: Option<String>,
    /// The produce phase.
    pub produce: PhaseResult,
    /// The receive+ack phase.
    pub consume: PhaseResult,
    /// What came back.
    pub check: Check,
}

/// A phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Producing the messages.
    Produce,
    /// Receiving and acknowledging them.
    Consume,
}

impl Phase {
    /// The name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Produce => "produce",
            Phase::Consume => "receive+ack",
        }
    }
}

/// The result of one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseResult {
    /// Which phase.
    pub phase: Phase,
    /// Concurrent clients.
    pub clients: usize,
    /// Messages produced, or received and acked.
    pub messages: u64,
    /// Failed calls.
    pub errors: u64,
    /// Wall time from the start to the last completed message, seconds.
    pub seconds: f64,
    /// Messages per second.
    pub ops_per_sec: f64,
    /// Per message: one produce call, or one receive+ack cycle.
    pub latency: Summary,
    /// Single calls.
    pub details: Vec<Detail>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
    /// CPU used during the phase.
    pub cpu: Option<CpuUse>,
}

impl PhaseResult {
    /// A progress line.
    pub fn one_line(&self) -> String {
        let cpu = match self.cpu {
            Some(cpu) => format!(
                ", CPU: servers {}, others {} cores",
                cpu.server_cores
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "?".to_owned()),
                cpu.other_cores()
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "?".to_owned())
            ),
            None => String::new(),
        };
        format!(
            "{:.0} msgs/s, p50 {} ms, p99 {} ms, {} messages in {:.1} s{cpu}, {} errors{}",
            self.ops_per_sec,
            ms(self.latency.p50_ms),
            ms(self.latency.p99_ms),
            self.messages,
            self.seconds,
            self.errors,
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }
}

/// What came back from the queue compared with what went in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Messages whose produce succeeded.
    pub produced: u64,
    /// Distinct produced messages received and acked.
    pub consumed: u64,
    /// Deliveries acked more than once (at-least-once redeliveries), counted beyond the first.
    pub duplicates: u64,
    /// Produced messages never acked.
    pub missing: u64,
    /// Acked messages that were never produced successfully (a failed produce that was stored after all).
    pub unexpected: u64,
    /// Bodies that did not come back byte for byte.
    pub corrupt: u64,
    /// Receives that found nothing within the wait (mostly the tail, when the queue is drained).
    pub empty_receives: u64,
    /// Messages still in the queue afterwards (ready or unacked), if the service could say.
    pub left_in_queue: Option<u64>,
}

impl Check {
    /// Compares the produced message numbers (sorted) with the numbers of the acked bodies.
    pub fn compare(produced: &[u64], mut acked: Vec<u64>) -> Check {
        acked.sort_unstable();
        let total = acked.len() as u64;
        acked.dedup();
        let distinct = acked.len() as u64;
        let mut check = Check {
            produced: produced.len() as u64,
            duplicates: total - distinct,
            ..Check::default()
        };
        for n in &acked {
            if produced.binary_search(n).is_ok() {
                check.consumed += 1;
            } else {
                check.unexpected += 1;
            }
        }
        check.missing = check.produced - check.consumed;
        check
    }

    /// A progress line.
    pub fn one_line(&self) -> String {
        format!(
            "{} produced, {} consumed, {} duplicates, {} missing, {} unexpected, {} corrupt, {} left in the queue",
            self.produced,
            self.consumed,
            self.duplicates,
            self.missing,
            self.unexpected,
            self.corrupt,
            self.left_in_queue
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".to_owned())
        )
    }
}

/// The rows of `report`: (run, phase result), produce then consume for each client count.
fn rows(report: &QueueReport) -> impl Iterator<Item = (&ClientRun, &PhaseResult)> {
    report
        .runs
        .iter()
        .flat_map(|run| [(run, &run.produce), (run, &run.consume)])
}

fn find(report: &QueueReport, phase: Phase, clients: usize) -> Option<&PhaseResult> {
    rows(report)
        .map(|(_, r)| r)
        .find(|r| r.phase == phase && r.clients == clients)
}

/// The order of the table: phases, then client counts as the baseline has them.
fn keys(base: &QueueReport) -> Vec<(Phase, usize)> {
    let mut keys = Vec::new();
    for phase in [Phase::Produce, Phase::Consume] {
        for run in &base.runs {
            keys.push((phase, run.clients));
        }
    }
    keys
}

/// The markdown tables for `reports` (one service each); the first is the baseline of the ratio column.
pub fn markdown(reports: &[QueueReport]) -> String {
    let mut out = String::new();
    let Some(base) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "| phase | clients | backend | msgs/s | p50 ms | p99 ms | p99.9 ms | errors | {} ÷ this (msgs/s) |",
        base.backend
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|");
    for (phase, clients) in keys(base) {
        let Some(mine) = find(base, phase, clients) else {
            continue;
        };
        for report in reports {
            let Some(row) = find(report, phase, clients) else {
                continue;
            };
            let ratio = if std::ptr::eq(report, base) {
                "—".to_owned()
            } else if row.ops_per_sec > 0.0 {
                format!("{:.2}×", mine.ops_per_sec / row.ops_per_sec)
            } else {
                "n/a".to_owned()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                phase.as_str(),
                clients,
                report.backend,
                row.ops_per_sec,
                ms(row.latency.p50_ms),
                ms(row.latency.p99_ms),
                ms(row.latency.p999_ms),
                row.errors,
                ratio
            );
        }
    }
    let settings = &base.settings;
    let _ = writeln!(
        out,
        "\n{} messages of {} bytes per run; latency per message: produce = one produce call until the service \
         confirmed it, receive+ack = one receive (at most one message) plus its ack. Ratio: above 1 means {} \
         moved more messages per second.\n",
        settings.messages, settings.body_bytes, base.backend
    );

    let _ = writeln!(
        out,
        "| phase | clients | backend | call | p50 ms | p99 ms | p99.9 ms | max ms |"
    );
    let _ = writeln!(out, "|---|---:|---|---|---:|---:|---:|---:|");
    for (phase, clients) in keys(base) {
        for report in reports {
            let Some(row) = find(report, phase, clients) else {
                continue;
            };
            for detail in &row.details {
                let s = detail.summary;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    phase.as_str(),
                    clients,
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

    let _ = writeln!(
        out,
        "\n| clients | backend | produced | consumed | duplicates | missing | corrupt | left in queue | empty receives |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &base.runs {
        for report in reports {
            let Some(other) = report.runs.iter().find(|r| r.clients == run.clients) else {
                continue;
            };
            let c = &other.check;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                other.clients,
                report.backend,
                c.produced,
                c.consumed,
                c.duplicates,
                c.missing + c.unexpected,
                c.corrupt,
                c.left_in_queue
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "?".to_owned()),
                c.empty_receives
            );
        }
    }
    for report in reports {
        for run in &report.runs {
            if let Some(placement) = &run.placement {
                let _ = writeln!(
                    out,
                    "\n{} clients={}: queue {}: {placement}.",
                    report.backend, run.clients, run.queue
                );
            }
            for phase in [&run.produce, &run.consume] {
                if let Some(e) = &phase.first_error {
                    let _ = writeln!(
                        out,
                        "\n{} {} clients={}: {} errors, first: {e}",
                        report.backend,
                        phase.phase.as_str(),
                        run.clients,
                        phase.errors
                    );
                }
            }
        }
    }
    out
}

/// CPU use per phase, when the server processes were given (`--server-pids`).
fn cpu_table(out: &mut String, reports: &[QueueReport]) {
    let known = |r: &PhaseResult| r.cpu.and_then(|c| c.server_cores).is_some();
    if !reports.iter().flat_map(rows).any(|(_, r)| known(r)) {
        return;
    }
    let Some(base) = reports.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| phase | clients | backend | server CPU (cores) | server CPU ms/msg | load generator CPU (cores) | other processes (cores) |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|");
    for (phase, clients) in keys(base) {
        for report in reports {
            let Some(row) = find(report, phase, clients) else {
                continue;
            };
            let Some(cpu) = row.cpu else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                phase.as_str(),
                clients,
                report.backend,
                cell(cpu.server_cores, 2),
                cell(cpu.server_ms_per_op, 3),
                cell(cpu.bench_cores, 2),
                cell(cpu.other_cores(), 2)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(phase: Phase, ops_per_sec: f64, p50_ms: f64) -> PhaseResult {
        PhaseResult {
            phase,
            clients: 16,
            messages: 1000,
            errors: 0,
            seconds: 1000.0 / ops_per_sec,
            ops_per_sec,
            latency: Summary {
                count: 1000,
                p50_ms,
                ..Summary::default()
            },
            details: vec![Detail::new("produce", Summary::default())],
            first_error: None,
            cpu: None,
        }
    }

    fn report(backend: &str, produce: f64, consume: f64) -> QueueReport {
        QueueReport {
            kind: KIND.to_owned(),
            backend: backend.to_owned(),
            settings: QueueSettings {
                messages: 1000,
                body_bytes: 1024,
                receive_wait_ms: 1000,
                visibility_ms: 30_000,
            },
            runs: vec![ClientRun {
                clients: 16,
                queue: "q".to_owned(),
                placement: Some("owner node 1".to_owned()),
                produce: phase(Phase::Produce, produce, 2.0),
                consume: phase(Phase::Consume, consume, 4.0),
                check: Check::compare(&[0, 1, 2], vec![2, 0, 1, 1]),
            }],
        }
    }

    #[test]
    fn checks_count_what_came_back() {
        let c = Check::compare(&[0, 1, 2, 3], vec![3, 1, 1, 9]);
        assert_eq!(c.produced, 4);
        assert_eq!(c.consumed, 2);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.missing, 2);
        assert_eq!(c.unexpected, 1);
    }

    #[test]
    fn table_puts_backends_side_by_side() {
        let text = markdown(&[
            report("syncd", 2000.0, 1000.0),
            report("redis", 500.0, 2000.0),
        ]);
        assert!(
            text.contains("| produce | 16 | syncd | 2000 | 2.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| produce | 16 | redis | 500 | 2.00 |"),
            "{text}"
        );
        assert!(text.contains("4.00×"), "{text}");
        assert!(
            text.contains("| receive+ack | 16 | redis | 2000 |"),
            "{text}"
        );
        assert!(text.contains("0.50×"), "{text}");
        assert!(text.contains("| 16 | syncd | 3 | 3 | 1 | 0 |"), "{text}");
        assert!(text.contains("owner node 1"), "{text}");
        let produce_row = text.find("| produce | 16 | redis").unwrap_or(usize::MAX);
        let consume_row = text.find("| receive+ack | 16 | syncd").unwrap_or(0);
        assert!(produce_row < consume_row, "{text}");
    }
}
