//! `kubectl`, for what users see and do: `kubectl get sync`, `kubectl apply`. Uses `$KUBECTL` or the `kubectl` on
//! `PATH`, and the same `KUBECONFIG` as the tests' client.

use std::path::PathBuf;

/// The binary to run.
fn binary() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// Runs `kubectl <args>` and returns its standard output.
///
/// Errors: when it cannot start or exits non-zero (the error carries its standard error).
pub async fn run(args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(binary())
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("cannot run {} {args:?}: {e}", binary()))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        anyhow::bail!(
            "kubectl {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdout
        );
    }
    Ok(stdout)
}

/// The repository root (the parent of `e2e/`), for manifests.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}
