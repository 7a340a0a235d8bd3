//! `agora ledger` (being built).
use std::process::ExitCode;

/// Subcommands of `agora ledger`.
#[derive(clap::Subcommand)]
pub enum Command {}

/// Runs `agora ledger`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}

/// Arguments of `agora bench ledger`.
#[derive(clap::Args)]
pub struct BenchArgs {}

/// Runs `agora bench ledger`.
pub fn bench(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("agora bench ledger is being built")
}
