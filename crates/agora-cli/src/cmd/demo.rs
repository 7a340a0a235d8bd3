//! `agora demo` (being built).
use std::process::ExitCode;

/// Arguments of `agora demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs `agora demo`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora demo is being built")
}
