//! `agora exec` (being built).
use std::process::ExitCode;

/// Arguments of `agora exec`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `agora exec`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora exec is being built")
}

/// Arguments of `agora bench exec`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs `agora bench exec`.
pub fn bench(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora bench exec is being built")
}
