//! `agora bench market` (being built).
use std::process::ExitCode;

/// Arguments of `agora bench market`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs `agora bench market`.
pub fn bench(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora bench market is being built")
}
