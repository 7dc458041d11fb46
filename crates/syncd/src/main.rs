//! The `syncd` binary: parses the command line, sets up logging and hands over to [`syncd::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = syncd::cli::Cli::parse();
    syncd::logging::init(cli.log_format);
    match syncd::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
