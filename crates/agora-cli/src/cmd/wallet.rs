//! `agora wallet` (being built).
use std::process::ExitCode;

/// Subcommands of `agora wallet`.
#[derive(clap::Subcommand)]
pub enum Command {}

/// Runs `agora wallet`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}
