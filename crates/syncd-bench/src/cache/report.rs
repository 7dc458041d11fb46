//! Results of `syncd-bench cache`: what a run saves as JSON, and the markdown tables that put runs side by side.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::backend::{HitMeaning, ServerCounters};
use super::workload::CachePlan;
use crate::cpu::CpuUse;
use crate::report::{cell, ms};
use crate::stats::Summary;

/// The `kind` of a cache result file (lock result files have none).
pub const KIND: &str = "cache";

/// Everything one `syncd-bench cache` run measured against one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheReport {
    /// Always [`KIND`]: tells `compare` which kind of file this is.
    pub kind: String,
    /// The label of the service and its setup, e.g. `syncd (3 nodes)`.
    pub backend: String,
    /// What this service's hit rate counts.
    pub hit_meaning: HitMeaning,
    /// The settings of the run.
    pub settings: CacheSettings,
    /// One entry per client count.
    pub runs: Vec<CacheRun>,
}

/// The plan, as recorded with the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Measured seconds per run.
    pub duration_s: f64,
    /// Warm-up seconds per run.
    pub warmup_s: f64,
    /// Distinct keys.
    pub keys: u64,
    /// Zipf exponent of the key choice.
    pub zipf: f64,
    /// Share of calls that are GETs, in percent; the rest are SETs.
    pub read_percent: u8,
    /// Bytes per value.
    pub value_bytes: usize,
    /// Seed of the clients' key and operation choices.
    pub seed: u64,
}

impl CacheSettings {
    /// The settings of `plan`.
    pub fn from_plan(plan: &CachePlan) -> CacheSettings {
        CacheSettings {
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            keys: plan.keys,
            zipf: plan.zipf,
            read_percent: plan.read_percent,
            value_bytes: plan.value_bytes,
            seed: plan.seed,
        }
    }

    /// `95 % GET / 5 % SET`.
    pub fn mix(&self) -> String {
        format!(
            "{} % GET / {} % SET",
            self.read_percent,
            100u8.saturating_sub(self.read_percent)
        )
    }

    /// One line that says everything the settings hold.
    fn one_line(&self) -> String {
        format!(
            "{}, {} keys, Zipf s={}, {}-byte values, {} s measured after {} s warm-up, seed {}",
            self.mix(),
            self.keys,
            self.zipf,
            self.value_bytes,
            self.duration_s,
            self.warmup_s,
            self.seed
        )
    }
}

/// One client count: a preload, then the measured mix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRun {
    /// Concurrent clients.
    pub clients: usize,
    /// Writing every key once before the measured loop.
    pub preload: Preload,
    /// GETs.
    pub get: OpResult,
    /// SETs.
    pub set: OpResult,
    /// Every call, GETs and SETs together.
    pub all: OpResult,
    /// What the measured GETs found.
    pub gets: GetOutcomes,
    /// CPU used during the measured window.
    pub cpu: Option<CpuUse>,
    /// The service's own counters over the measured window (Syncd only).
    pub server: Option<ServerCounters>,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl CacheRun {
    /// The hit rate, as `meaning` defines it.
    pub fn hit_rate(&self, meaning: HitMeaning) -> Option<f64> {
        self.gets.hit_rate(meaning)
    }

    /// A progress line.
    pub fn one_line(&self, meaning: HitMeaning) -> String {
        format!(
            "{:.0} ops/s; GET {:.0}/s p50 {} ms p99 {} ms, hit rate {}; SET {:.0}/s p50 {} ms p99 {} ms; \
             {} errors{}{}",
            self.all.ops_per_sec,
            self.get.ops_per_sec,
            ms(self.get.latency.p50_ms),
            ms(self.get.latency.p99_ms),
            percent(self.hit_rate(meaning)),
            self.set.ops_per_sec,
            ms(self.set.latency.p50_ms),
            ms(self.set.latency.p99_ms),
            self.all.errors,
            if self.gets.wrong > 0 {
                format!(", {} wrong values", self.gets.wrong)
            } else {
                String::new()
            },
            self.first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        )
    }
}

/// The preload: every key written once, not measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Preload {
    /// Keys written.
    pub keys: u64,
    /// Failed writes.
    pub errors: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// A kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Reads.
    Get,
    /// Writes.
    Set,
    /// Both.
    All,
}

impl Op {
    /// The name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::All => "all",
        }
    }
}

/// The calls of one kind in the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpResult {
    /// Which calls.
    pub op: Op,
    /// Calls completed in the measured window.
    pub ops: u64,
    /// Those per second.
    pub ops_per_sec: f64,
    /// Their latency.
    pub latency: Summary,
    /// Failed calls, warm-up included.
    pub errors: u64,
}

/// What the GETs completed in the measured window found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOutcomes {
    /// Served from the asked node's own copy (Syncd `X-Cache: hit`).
    pub local: u64,
    /// Found elsewhere (Syncd `X-Cache: miss`; every answer of a remote store).
    pub remote: u64,
    /// The key had no value.
    pub absent: u64,
    /// Found values that were not a value of their key (wrong size, or another key's value): among `local` and
    /// `remote`.
    pub wrong: u64,
}

impl GetOutcomes {
    /// GETs counted.
    pub fn total(&self) -> u64 {
        self.local + self.remote + self.absent
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &GetOutcomes) {
        self.local += other.local;
        self.remote += other.remote;
        self.absent += other.absent;
        self.wrong += other.wrong;
    }

    /// The share of GETs that were hits, as `meaning` defines them; `None` without GETs.
    pub fn hit_rate(&self, meaning: HitMeaning) -> Option<f64> {
        let hits = match meaning {
            HitMeaning::Local => self.local,
            HitMeaning::Found => self.local + self.remote,
        };
        let total = self.total();
        (total > 0).then(|| hits as f64 / total as f64)
    }
}

/// A share as a percentage with one decimal, a dash when unknown.
fn percent(share: Option<f64>) -> String {
    share
        .map(|s| format!("{:.1} %", s * 100.0))
        .unwrap_or_else(|| "—".to_owned())
}

fn result(run: &CacheRun, op: Op) -> &OpResult {
    match op {
        Op::Get => &run.get,
        Op::Set => &run.set,
        Op::All => &run.all,
    }
}

fn find(report: &CacheReport, clients: usize) -> Option<&CacheRun> {
    report.runs.iter().find(|r| r.clients == clients)
}

/// The order of the table: operations, then client counts as the baseline has them.
fn keys(base: &CacheReport) -> Vec<(Op, usize)> {
    let mut keys = Vec::new();
    for op in [Op::Get, Op::Set, Op::All] {
        for run in &base.runs {
            keys.push((op, run.clients));
        }
    }
    keys
}

/// The labels of `reports` whose hit rate means `meaning`, joined for a sentence.
fn labels_with(reports: &[CacheReport], meaning: HitMeaning) -> Option<String> {
    let labels: Vec<&str> = reports
        .iter()
        .filter(|r| r.hit_meaning == meaning)
        .map(|r| r.backend.as_str())
        .collect();
    (!labels.is_empty()).then(|| labels.join(", "))
}

/// The markdown tables for `reports` (one service each); the first is the baseline of the ratio column.
pub fn markdown(reports: &[CacheReport]) -> String {
    let mut out = String::new();
    let Some(base) = reports.first() else {
        return out;
    };
    let _ = writeln!(
        out,
        "| op | clients | backend | ops/s | p50 ms | p99 ms | p99.9 ms | hit rate | errors | {} ÷ this (ops/s) |",
        base.backend
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (op, clients) in keys(base) {
        let Some(mine) = find(base, clients).map(|r| result(r, op)) else {
            continue;
        };
        for report in reports {
            let Some(run) = find(report, clients) else {
                continue;
            };
            let row = result(run, op);
            let ratio = if std::ptr::eq(report, base) {
                "—".to_owned()
            } else if row.ops_per_sec > 0.0 {
                format!("{:.2}×", mine.ops_per_sec / row.ops_per_sec)
            } else {
                "n/a".to_owned()
            };
            let hit_rate = match op {
                Op::Get => percent(run.hit_rate(report.hit_meaning)),
                Op::Set | Op::All => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
                op.as_str(),
                clients,
                report.backend,
                row.ops_per_sec,
                ms(row.latency.p50_ms),
                ms(row.latency.p99_ms),
                ms(row.latency.p999_ms),
                hit_rate,
                row.errors,
                ratio
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{}; every key written once before each run (not measured). Latency: one call until the answer. \
         Ratio: above 1 means {} did more calls per second.",
        base.settings.one_line(),
        base.backend
    );
    if let Some(labels) = labels_with(reports, HitMeaning::Local) {
        let _ = writeln!(
            out,
            "Hit rate of {labels}: the share of GETs served from the asked node's own copy (`X-Cache: hit`), \
             without asking another node."
        );
    }
    if let Some(labels) = labels_with(reports, HitMeaning::Found) {
        let _ = writeln!(
            out,
            "Hit rate of {labels}: the share of GETs that found the key. These are remote stores: every GET is a \
             network round trip to the server."
        );
    }
    for report in reports {
        if report.settings != base.settings {
            let _ = writeln!(
                out,
                "Note: {} ran with other settings: {}.",
                report.backend,
                report.settings.one_line()
            );
        }
    }

    let _ = writeln!(
        out,
        "\n| clients | backend | GETs | served locally | found elsewhere | not found | wrong value | preload s | preload errors |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for run in &base.runs {
        for report in reports {
            let Some(other) = find(report, run.clients) else {
                continue;
            };
            let g = &other.gets;
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                other.clients,
                report.backend,
                g.total(),
                g.local,
                g.remote,
                g.absent,
                g.wrong,
                other.preload.seconds,
                other.preload.errors
            );
        }
    }

    cpu_table(&mut out, reports);

    for report in reports {
        for run in &report.runs {
            if let Some(c) = &run.server {
                let _ = writeln!(
                    out,
                    "\n{} clients={}: the nodes counted {} hits, {} misses, {} evictions, {} invalidations sent \
                     and {} received in the measured window; {} of their {} lines in use at its end (all nodes together).",
                    report.backend,
                    run.clients,
                    c.hits,
                    c.misses,
                    c.evictions,
                    c.invalidations_sent,
                    c.invalidations_received,
                    c.entries,
                    c.capacity
                );
            }
            if let Some(e) = &run.first_error {
                let _ = writeln!(
                    out,
                    "\n{} clients={}: {} errors ({} GET, {} SET, {} preload), first: {e}",
                    report.backend,
                    run.clients,
                    run.all.errors + run.preload.errors,
                    run.get.errors,
                    run.set.errors,
                    run.preload.errors
                );
            }
        }
    }
    out
}

/// CPU use per run, when the server processes were given (`--server-pids`).
fn cpu_table(out: &mut String, reports: &[CacheReport]) {
    let known = |r: &CacheRun| r.cpu.and_then(|c| c.server_cores).is_some();
    if !reports.iter().flat_map(|r| &r.runs).any(known) {
        return;
    }
    let Some(base) = reports.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "\n| clients | backend | server CPU (cores) | server CPU ms/op | load generator CPU (cores) | other processes (cores) |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|");
    for run in &base.runs {
        for report in reports {
            let Some(cpu) = find(report, run.clients).and_then(|r| r.cpu) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                run.clients,
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

    fn op(op: Op, ops_per_sec: f64, p50_ms: f64) -> OpResult {
        OpResult {
            op,
            ops: (ops_per_sec * 10.0) as u64,
            ops_per_sec,
            latency: Summary {
                count: (ops_per_sec * 10.0) as u64,
                p50_ms,
                p99_ms: p50_ms * 4.0,
                ..Summary::default()
            },
            errors: 0,
        }
    }

    fn report(backend: &str, meaning: HitMeaning, get: f64, gets: GetOutcomes) -> CacheReport {
        CacheReport {
            kind: KIND.to_owned(),
            backend: backend.to_owned(),
            hit_meaning: meaning,
            settings: CacheSettings {
                duration_s: 10.0,
                warmup_s: 1.0,
                keys: 10_000,
                zipf: 0.99,
                read_percent: 95,
                value_bytes: 1024,
                seed: 1,
            },
            runs: vec![CacheRun {
                clients: 16,
                preload: Preload {
                    keys: 10_000,
                    errors: 0,
                    seconds: 1.5,
                },
                get: op(Op::Get, get, 0.5),
                set: op(Op::Set, get / 19.0, 2.0),
                all: op(Op::All, get * 20.0 / 19.0, 0.6),
                gets,
                cpu: None,
                server: None,
                first_error: None,
            }],
        }
    }

    #[test]
    fn hit_rates_follow_their_meaning() {
        let g = GetOutcomes {
            local: 90,
            remote: 8,
            absent: 2,
            wrong: 0,
        };
        assert_eq!(g.total(), 100);
        assert_eq!(g.hit_rate(HitMeaning::Local), Some(0.9));
        assert_eq!(g.hit_rate(HitMeaning::Found), Some(0.98));
        assert_eq!(GetOutcomes::default().hit_rate(HitMeaning::Found), None);
        let mut sum = g;
        sum.add(&g);
        assert_eq!(sum.total(), 200);
        assert_eq!(percent(Some(0.9)), "90.0 %");
        assert_eq!(percent(None), "—");
    }

    #[test]
    fn table_puts_backends_side_by_side() {
        let syncd = report(
            "syncd",
            HitMeaning::Local,
            40_000.0,
            GetOutcomes {
                local: 900,
                remote: 100,
                absent: 0,
                wrong: 0,
            },
        );
        let redis = report(
            "redis",
            HitMeaning::Found,
            20_000.0,
            GetOutcomes {
                local: 0,
                remote: 1000,
                absent: 0,
                wrong: 0,
            },
        );
        let text = markdown(&[syncd, redis]);
        assert!(
            text.contains("| GET | 16 | syncd | 40000 | 0.50 | 2.00 | 0.00 | 90.0 % | 0 | — |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| GET | 16 | redis | 20000 | 0.50 | 2.00 | 0.00 | 100.0 % | 0 | 2.00× |"
            ),
            "{text}"
        );
        assert!(text.contains("| SET | 16 | redis | 1053 |"), "{text}");
        assert!(text.contains("| all | 16 | syncd | 42105 |"), "{text}");
        assert!(
            text.contains("| 16 | syncd | 1000 | 900 | 100 | 0 | 0 | 1.50 | 0 |"),
            "{text}"
        );
        assert!(
            text.contains("Hit rate of syncd: the share of GETs served"),
            "{text}"
        );
        assert!(
            text.contains("Hit rate of redis: the share of GETs that found"),
            "{text}"
        );
        assert!(text.contains("every GET is a network round trip"), "{text}");
        assert!(
            text.contains("95 % GET / 5 % SET, 10000 keys, Zipf s=0.99"),
            "{text}"
        );
        assert!(!text.contains("Note:"), "{text}");
        let get_row = text.find("| GET | 16 | redis").unwrap_or(usize::MAX);
        let set_row = text.find("| SET | 16 | syncd").unwrap_or(0);
        assert!(get_row < set_row, "{text}");
    }

    #[test]
    fn other_settings_and_counters_are_mentioned() {
        let mut a = report("syncd", HitMeaning::Local, 100.0, GetOutcomes::default());
        a.runs[0].server = Some(ServerCounters {
            capacity: 30_000,
            entries: 12_000,
            hits: 5,
            misses: 6,
            evictions: 7,
            invalidations_sent: 8,
            invalidations_received: 9,
        });
        a.runs[0].first_error = Some("GET bench-1: 500".to_owned());
        a.runs[0].get.errors = 3;
        a.runs[0].all.errors = 3;
        let mut b = report("memcached", HitMeaning::Found, 0.0, GetOutcomes::default());
        b.settings.read_percent = 50;
        let text = markdown(&[a, b]);
        assert!(
            text.contains("Note: memcached ran with other settings: 50 % GET / 50 % SET"),
            "{text}"
        );
        assert!(
            text.contains("5 hits, 6 misses, 7 evictions, 8 invalidations sent and 9 received"),
            "{text}"
        );
        assert!(text.contains("12000 of their 30000 lines"), "{text}");
        assert!(
            text.contains("3 errors (3 GET, 0 SET, 0 preload), first: GET bench-1: 500"),
            "{text}"
        );
        assert!(text.contains("| GET | 16 | memcached | 0 |"), "{text}");
        assert!(text.contains("n/a"), "{text}");
        assert!(
            text.contains("| GET | 16 | syncd | 100 | 0.50 | 2.00 | 0.00 | — |"),
            "{text}"
        );
    }
}
