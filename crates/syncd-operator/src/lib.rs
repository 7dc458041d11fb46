//! `syncd-operator`: reconciles `SyncCluster` resources into the StatefulSets, Services, ConfigMaps and
//! PodDisruptionBudgets that run Syncd, and reports their state back.
//!
//! - [`crd`]: the custom resource and its admission-time validation.
//! - [`build`]: pure builders from a spec to the desired objects (most unit tests live here).
//! - [`lockgroup`]: pure decisions for the lock raft group: the next scaling step, the next pod to roll.
//! - [`status`]: pure computation of the status and its conditions.
//! - [`controller`]: the reconcile pipeline (fetch, validate, build, apply, status) and the controller loop.
//! - [`lock_api`]: the lock service calls the operator makes (raft view, membership changes).
//! - [`queuering`]: pure decisions for the queue ring: grow, set the ring, shrink after the hand-off.
//! - [`queue_api`]: the queue pod calls the operator makes (ring views, ring changes).
//! - [`election`]: leader election through a Lease.
//! - [`metrics`], [`server`]: the operator's own metrics and health endpoints.
//! - [`cli`]: flags; [`run`] wires everything together.

pub mod build;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod election;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod lock_api;
pub mod lockgroup;
pub mod metrics;
pub mod queue_api;
pub mod queuering;
pub mod server;
pub mod status;

use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, CustomResourceExt};

use cli::{Cli, Command, LogFormat, RunArgs};
use controller::Context;
use lock_api::HttpLockGroup;
use metrics::Metrics;

/// The CRD as YAML, exactly as `manifests/` and the chart carry it.
pub fn crd_yaml() -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(&crd::SyncCluster::crd())?)
}

/// Runs the parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Crd => {
            use std::io::Write;
            match std::io::stdout().write_all(crd_yaml()?.as_bytes()) {
                // `syncd-operator crd | head` is fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => Ok(other?),
            }
        }
        Command::Run(args) => run_controller(args).await,
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run_controller(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let client = Client::try_default().await?;
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(server::serve(
        args.listen,
        metrics.clone(),
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        stop_signal().await;
        stop_tx.send_replace(true);
    });

    let election = if args.leader_election {
        let (mut leading, renewer) =
            election::contend(client.clone(), &args.lease_namespace, &args.identity).await?;
        tracing::info!(identity = %args.identity, "waiting for the leader lease");
        let mut stop = stop_rx.clone();
        tokio::select! {
            won = leading.wait_for(|l| *l) => { won?; }
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        Some((leading, renewer))
    } else {
        None
    };
    metrics.set_leader(true);
    tracing::info!(identity = %args.identity, "leading: starting the controller");

    let reporter = Reporter {
        controller: build::FIELD_MANAGER.to_owned(),
        instance: Some(args.identity.clone()),
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(HttpLockGroup),
            Recorder::new(client, reporter),
            metrics.clone(),
            args.default_image,
            args.lock_endpoint,
        )
        .with_queues(Arc::new(queue_api::HttpQueueRing), args.queue_endpoint),
    );
    // The controller stops on a stop signal or when the lease is lost.
    let mut lease_lost = election.as_ref().map(|(leading, _)| leading.clone());
    let shutdown = {
        let mut stop = stop_rx.clone();
        async move {
            let lost = async {
                match lease_lost.as_mut() {
                    Some(leading) => {
                        let _ = leading.wait_for(|l| !*l).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = lost => {}
            }
        }
    };
    controller::run(ctx, shutdown).await;
    metrics.set_leader(false);
    let lost = election
        .as_ref()
        .is_some_and(|(leading, _)| !*leading.borrow());
    if let Some((leading, renewer)) = election {
        // Dropping the last receiver makes the renewer release the lease; wait (briefly) until it has.
        drop(leading);
        if tokio::time::timeout(std::time::Duration::from_secs(5), renewer)
            .await
            .is_err()
        {
            tracing::warn!("the leader lease was not released in time");
        }
    }
    let _ = server.await;
    if lost {
        // Another replica may already reconcile: stop rather than race it; the Deployment restarts this one.
        anyhow::bail!("lost the leader lease");
    }
    Ok(())
}

async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
