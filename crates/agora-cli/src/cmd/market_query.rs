//! Placeholder while this command is built (issue 5); replaced by its owner.

use std::process::ExitCode;

/// Arguments (placeholder).
#[derive(clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command (placeholder).
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this command is not built yet")
}
