//! The `syncd-operator` binary: parses the command line and hands over to [`syncd_operator::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = syncd_operator::cli::Cli::parse();
    match syncd_operator::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncd-operator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
