//! `agora provider status`: a provider's standing as the ledger and the market see it.

use std::path::PathBuf;
use std::process::ExitCode;

use agora_provider::MarketApi;
use anyhow::Context;

/// Arguments of `agora provider`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Stake, balance, jobs, earnings and reputation of the wallet's provider account.
    Status(StatusArgs),
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The market node's HTTP API, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "AGORA_MARKET")]
    market: String,
    /// The provider's wallet (only its account is read).
    #[arg(long)]
    wallet: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `agora provider ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Status(args) => status(args),
    }
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let account = crate::cmd::wallet::load_wallet(&args.wallet)?.account();
    let api = MarketApi::new(&args.market)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (ledger, view) = runtime.block_on(async {
        let ledger = api.account(&account).await?;
        let view = api.provider(&account).await?;
        Ok::<_, agora_provider::ProviderError>((ledger, view))
    })?;
    if args.json {
        let body = serde_json::json!({
            "account": account,
            "market": api.base_url(),
            "ledger": ledger,
            "provider": view,
        });
        outln!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("provider   {account}");
    outln!("market     {}", api.base_url());
    outln!("balance    {}", ledger.balance);
    outln!("stake      {}", ledger.stake);
    if !ledger.unbonding.is_zero() {
        outln!("unbonding  {}", ledger.unbonding);
    }
    match view {
        Some(view) => {
            outln!(
                "jobs       {} completed, {} failed, {} running",
                view.completed,
                view.failed,
                view.running
            );
            outln!("earned     {}", view.earned);
            outln!(
                "reputation {:.3} (confidence {:.2})",
                view.reputation,
                view.confidence
            );
            outln!(
                "asks       {}  {}",
                view.asks.len(),
                if view.peer.is_some() {
                    "connected"
                } else {
                    "not connected"
                }
            );
        }
        None => outln!("the market has not seen this provider yet (no ask received)"),
    }
    Ok(ExitCode::SUCCESS)
}
