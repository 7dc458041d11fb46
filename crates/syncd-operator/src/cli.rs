//! Command-line arguments of `syncd-operator`; every flag also reads a `SYNCD_OPERATOR_*` variable.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `syncd-operator`: runs Syncd clusters on Kubernetes.
#[derive(Debug, Parser)]
#[command(
    name = "syncd-operator",
    version,
    about = "Reconciles SyncCluster resources"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the SyncCluster CustomResourceDefinition as YAML.
    Crd,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `syncd-operator run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Serve `/healthz`, `/readyz` and `/metrics` here.
    #[arg(long, env = "SYNCD_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The `syncd` image for SyncClusters that name none.
    #[arg(long, env = "SYNCD_OPERATOR_DEFAULT_IMAGE", default_value = concat!("syncd:", env!("CARGO_PKG_VERSION")))]
    pub default_image: String,
    /// URL of a cluster's lock service; `{name}` and `{namespace}` are filled in.
    #[arg(
        long,
        env = "SYNCD_OPERATOR_LOCK_ENDPOINT",
        default_value = "http://{name}-locks.{namespace}.svc:7080"
    )]
    pub lock_endpoint: String,
    /// URL of one queue pod; `{pod}`, `{name}` and `{namespace}` are filled in. The default reaches the pod by its
    /// stable name behind the headless Service.
    #[arg(
        long,
        env = "SYNCD_OPERATOR_QUEUE_ENDPOINT",
        default_value = "http://{pod}.{name}-queues-peers.{namespace}.svc:7080"
    )]
    pub queue_endpoint: String,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "SYNCD_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the election.
    #[arg(long, env = "POD_NAME", default_value = "syncd-operator")]
    pub identity: String,
    /// Log format.
    #[arg(
        long,
        env = "SYNCD_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
