//! `syncd-bench`: the load generator behind `docs/benchmarks.md`.
//!
//! This crate owns the lock benchmark: it drives a running cluster with many concurrent clients, measures every
//! call with an HDR histogram, and prints the results as a markdown table. The same workloads run against Syncd
//! (over its REST API, through `syncd-client`) and against etcd (its v3 lock API, through the `etcd-client`
//! crate), one cluster at a time, behind one [`backend::LockBackend`] trait, so both figures come from the same
//! load generator. `syncd-bench locks` runs the workloads against one cluster and can save the results as JSON;
//! `syncd-bench compare` puts saved results side by side with a ratio column. It starts no cluster itself:
//! `bench/locks.sh` does that.
//!
//! Modules, one job each: [`cli`] (arguments), [`cpu`] (CPU time from `/proc`), [`stats`] (latency histograms and percentiles), [`backend`] (the
//! backend trait, [`backend::syncd`] and [`backend::etcd`]), [`workloads`] (the load loops), [`report`]
//! (result files and markdown tables).

mod backend;
mod cli;
mod cpu;
mod report;
mod stats;
mod workloads;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::backend::LockBackend;
use crate::backend::etcd::{EtcdBackend, LeaseMode};
use crate::backend::syncd::SyncdBackend;
use crate::cli::{Backend, Cli, Command, CompareArgs, LocksArgs};
use crate::report::RunReport;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Locks(args) => locks(args).await,
        Command::Compare(args) => compare(&args),
    }
}

async fn locks(args: LocksArgs) -> anyhow::Result<()> {
    let report = match args.backend {
        Backend::Syncd => run(SyncdBackend::new(&args.endpoints), &args).await?,
        Backend::Etcd => {
            run(
                EtcdBackend::new(&args.endpoints, LeaseMode::PerCycle),
                &args,
            )
            .await?
        }
        Backend::EtcdSession => {
            run(EtcdBackend::new(&args.endpoints, LeaseMode::Session), &args).await?
        }
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", report::markdown(&[report]));
    Ok(())
}

async fn run<B: LockBackend>(backend: B, args: &LocksArgs) -> anyhow::Result<RunReport> {
    eprintln!(
        "syncd-bench: waiting for {} at {}",
        backend.label(),
        args.endpoints.join(",")
    );
    backend
        .wait_ready(Duration::from_secs(args.ready_timeout_s))
        .await?;
    workloads::run_all(backend, &args.plan()).await
}

fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let report: RunReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a syncd-bench result", path.display()))?;
        reports.push(report);
    }
    print!("{}", report::markdown(&reports));
    Ok(())
}
