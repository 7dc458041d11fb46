//! `syncd`, the Syncd data-plane daemon: one binary, one HTTP listener, one or more roles.
//!
//! - [`cli`]: the command-line contract (`serve`, `local`), every flag also a `SYNCD_*` variable.
//! - [`node`]: one node's lifecycle: start the roles, serve, drain, hand raft leadership over, stop.
//! - [`http`]: the router: public API, health and metrics, peer endpoints; problem+json errors.
//! - [`metrics`]: the Prometheus registry (`syncd_*`).
//! - [`local`]: `syncd local`, a whole cluster on loopback.
//! - [`logging`]: tracing set-up, human or JSON.
//!
//! The roles themselves live in their own crates (`syncd-locks`, `syncd-queues`, `syncd-cache`); this crate only
//! wires them to HTTP.

pub mod cli;
pub mod http;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod node;

use cli::{Cli, Command};
use node::{Node, NodeConfig, stop_signal};

/// The StatefulSet name from this pod's name (`<statefulset>-<id>`): with DNS discovery, peer `i` is
/// `<statefulset>-<i>.<service>`.
fn pod_prefix(id: u64, pod_name: Option<String>) -> anyhow::Result<String> {
    let name = pod_name
        .or_else(|| std::env::var("HOSTNAME").ok())
        .ok_or_else(|| {
            anyhow::anyhow!("--discovery needs --pod-name (or $HOSTNAME) to name the peers")
        })?;
    name.strip_suffix(&format!("-{id}"))
        .filter(|prefix| !prefix.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the pod name {name:?} does not end in -{id} (the node id)"))
}

/// Runs the parsed command line to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            if args.discovery.is_some() && args.roles.contains(&cli::Role::Lock) {
                anyhow::bail!(
                    "the lock role needs its raft members listed with --peers; DNS discovery is for the queue and cache roles"
                );
            }
            let peers = cli::peer_map(&args.peers).map_err(anyhow::Error::msg)?;
            let discovery = match args.discovery {
                Some(discovery) => Some((pod_prefix(args.id, args.pod_name)?, discovery)),
                None => None,
            };
            let node = Node::start(NodeConfig {
                id: args.id,
                listen: args.listen,
                data_dir: args.data_dir,
                roles: args.roles,
                peers,
                discovery,
                replication_factor: args.replication_factor,
                queue: args.queue,
                cache: args.cache,
                tuning: args.tuning,
            })
            .await?;
            stop_signal().await;
            node.stop(true).await;
            Ok(())
        }
        Command::Local(args) => local::run(args).await,
    }
}
