//! `syncd-bench`: the load generator behind `docs/benchmarks.md`.
//!
//! This crate owns the lock, queue and cache benchmarks. The lock benchmark drives a running cluster with many
//! concurrent clients, measures every call with an HDR histogram, and prints the results as a markdown table. The
//! same workloads run against Syncd (over its REST API, through `syncd-client`) and against etcd (its v3 lock API,
//! through the `etcd-client` crate), one cluster at a time, behind one [`backend::LockBackend`] trait, so both
//! figures come from the same load generator. `syncd-bench locks` runs the workloads against one cluster and can
//! save the results as JSON; `syncd-bench compare` puts saved results side by side with a ratio column. It starts
//! no cluster itself: `bench/locks.sh` does that.
//!
//! The queue benchmark (`syncd-bench queues`, module [`queues`]) produces M messages with C clients, then
//! receives and acks them with C clients, against Syncd's queue role or against Redis Streams, a RabbitMQ quorum
//! queue or a NATS JetStream stream, behind one [`queues::backend::QueueBackend`] trait; `compare` puts its
//! result files side by side too. `bench/queues.sh` starts the services.
//!
//! The cache benchmark (`syncd-bench cache`, module [`cache`]) writes every key once, then has C clients GET and
//! SET Zipf-distributed keys for a fixed time, against Syncd's cache role (every node a peer; the hit rate counts
//! GETs a node served from its own copy) or against Redis or memcached (remote stores: the hit rate counts GETs
//! that found their key), behind one [`cache::backend::CacheBackend`] trait; `compare` takes its result files
//! as well. `bench/cache.sh` starts the services.
//!
//! Modules, one job each: [`cli`] (arguments), [`cpu`] (CPU time from `/proc`), [`stats`] (latency histograms and
//! percentiles), [`backend`] (the lock backend trait, [`backend::syncd`] and [`backend::etcd`]), [`workloads`]
//! (the lock load loops), [`report`] (lock result files and markdown tables); [`queues`] and [`cache`] hold the
//! same parts for their benchmarks.

mod backend;
mod cache;
mod cli;
mod cpu;
mod queues;
mod report;
mod stats;
mod workloads;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::backend::LockBackend;
use crate::backend::etcd::{EtcdBackend, LeaseMode};
use crate::backend::syncd::SyncdBackend;
use crate::cache::backend::CacheBackend;
use crate::cache::backend::memcached::MemcachedCache;
use crate::cache::backend::redis::RedisCache;
use crate::cache::backend::syncd::SyncdCache;
use crate::cache::report::CacheReport;
use crate::cli::{
    Backend, CacheArgs, CacheSystem, Cli, Command, CompareArgs, LocksArgs, QueueSystem, QueuesArgs,
};
use crate::queues::backend::QueueBackend;
use crate::queues::backend::nats::NatsJetStream;
use crate::queues::backend::rabbitmq::RabbitQueues;
use crate::queues::backend::redis::RedisStreams;
use crate::queues::backend::syncd::SyncdQueues;
use crate::queues::report::QueueReport;
use crate::report::RunReport;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Locks(args) => locks(args).await,
        Command::Queues(args) => queues(args).await,
        Command::Cache(args) => cache(args).await,
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

async fn queues(args: QueuesArgs) -> anyhow::Result<()> {
    let plan = args.plan();
    let visibility = plan.visibility;
    let report = match args.backend {
        QueueSystem::Syncd => {
            run_queues(SyncdQueues::new(&args.endpoints, visibility), &args).await?
        }
        QueueSystem::Redis => {
            run_queues(
                RedisStreams::new(&args.endpoints, plan.receive_wait)?,
                &args,
            )
            .await?
        }
        QueueSystem::Rabbitmq => run_queues(RabbitQueues::new(&args.endpoints)?, &args).await?,
        QueueSystem::Nats => {
            run_queues(NatsJetStream::new(&args.endpoints, visibility)?, &args).await?
        }
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", queues::report::markdown(&[report]));
    Ok(())
}

async fn run_queues<B: QueueBackend>(backend: B, args: &QueuesArgs) -> anyhow::Result<QueueReport> {
    let label = args.label.clone().unwrap_or_else(|| backend.label());
    eprintln!(
        "syncd-bench: waiting for {label} at {}",
        args.endpoints.join(",")
    );
    backend
        .wait_ready(Duration::from_secs(args.ready_timeout_s))
        .await?;
    queues::workload::run_all(backend, &args.plan(), label).await
}

async fn cache(args: CacheArgs) -> anyhow::Result<()> {
    let report = match args.backend {
        CacheSystem::Syncd => run_cache(SyncdCache::new(&args.endpoints)?, &args).await?,
        CacheSystem::Redis => run_cache(RedisCache::new(&args.endpoints)?, &args).await?,
        CacheSystem::Memcached => run_cache(MemcachedCache::new(&args.endpoints)?, &args).await?,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", cache::report::markdown(&[report]));
    Ok(())
}

async fn run_cache<B: CacheBackend>(backend: B, args: &CacheArgs) -> anyhow::Result<CacheReport> {
    let label = args.label.clone().unwrap_or_else(|| backend.label());
    eprintln!(
        "syncd-bench: waiting for {label} at {}",
        args.endpoints.join(",")
    );
    backend
        .wait_ready(Duration::from_secs(args.ready_timeout_s))
        .await?;
    cache::workload::run_all(backend, &args.plan()?, label).await
}

/// A saved result file: the lock, queue or cache benchmark's.
enum Saved {
    Locks(RunReport),
    Queues(QueueReport),
    Cache(CacheReport),
}

fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let mut locks = Vec::new();
    let mut queue_reports = Vec::new();
    let mut cache_reports = Vec::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        // Lock result files have no `kind`.
        let parsed = match value.get("kind").and_then(|k| k.as_str()) {
            Some(queues::report::KIND) => serde_json::from_value(value).map(Saved::Queues),
            Some(cache::report::KIND) => serde_json::from_value(value).map(Saved::Cache),
            _ => serde_json::from_value(value).map(Saved::Locks),
        };
        match parsed.with_context(|| format!("{} is not a syncd-bench result", path.display()))? {
            Saved::Locks(r) => locks.push(r),
            Saved::Queues(r) => queue_reports.push(r),
            Saved::Cache(r) => cache_reports.push(r),
        }
    }
    let kinds = [
        !locks.is_empty(),
        !queue_reports.is_empty(),
        !cache_reports.is_empty(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        anyhow::bail!(
            "lock, queue and cache results cannot share one table: compare one kind at a time"
        );
    }
    if !locks.is_empty() {
        print!("{}", report::markdown(&locks));
    } else if !queue_reports.is_empty() {
        print!("{}", queues::report::markdown(&queue_reports));
    } else {
        print!("{}", cache::report::markdown(&cache_reports));
    }
    Ok(())
}
