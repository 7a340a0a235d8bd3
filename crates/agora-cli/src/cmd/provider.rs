//! `agora provider status`: a provider's standing as the ledger and the market see it,
//! and, given the agent's data directory, its cost model (power, break-even, floor) and
//! settled earnings per hour of uptime, read from the `stats.json` the agent keeps.

use std::path::PathBuf;
use std::process::ExitCode;

use agora_core::Amount;
use agora_provider::status::Economics;
use agora_provider::{MarketApi, StatsFile};
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
    /// The running agent's data directory (`agora node provider --data-dir`): adds its
    /// power source, break-even, floor, margin and earnings per hour.
    #[arg(long)]
    data_dir: Option<PathBuf>,
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
    let economics = match &args.data_dir {
        Some(dir) => Some(read_economics(dir)?),
        None => None,
    };
    let earnings_per_hour = economics.as_ref().and_then(|e| {
        e.earnings_per_hour(
            view.as_ref().map(|v| v.earned).unwrap_or(Amount::ZERO),
            now_ms(),
        )
    });
    if args.json {
        let body = serde_json::json!({
            "account": account,
            "market": api.base_url(),
            "ledger": ledger,
            "provider": view,
            "economics": economics,
            "earnings_per_hour": earnings_per_hour,
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
    if let Some(economics) = &economics {
        print_economics(economics, earnings_per_hour, now_ms());
    }
    Ok(ExitCode::SUCCESS)
}

/// The cost model and uptime from the agent's `stats.json`.
fn read_economics(dir: &std::path::Path) -> anyhow::Result<Economics> {
    let file = StatsFile::read(dir).with_context(|| {
        format!(
            "reading the agent's stats in {}; is `agora node provider --data-dir {}` running?",
            dir.display(),
            dir.display()
        )
    })?;
    file.economics.with_context(|| {
        format!(
            "the agent in {} predates the cost model; restart it to see break-even and floor",
            dir.display()
        )
    })
}

fn print_economics(economics: &Economics, earnings_per_hour: Option<Amount>, now_ms: u64) {
    let cost = &economics.cost;
    outln!(
        "power      {} ({}){}",
        format_watts(cost.milliwatts),
        cost.power_source,
        if cost.power_note.is_empty() {
            String::new()
        } else {
            format!(": {}", cost.power_note)
        }
    );
    outln!(
        "cost       electricity {}/kWh, hardware {}/h, one CU = {:.2}% of the machine",
        cost.electricity_per_kwh,
        cost.amortization_per_hour,
        f64::from(cost.cu_share_ppm) / 10_000.0
    );
    outln!("break-even {}", cost.break_even);
    outln!(
        "floor      {} (margin {}; no ask or bid goes lower)",
        cost.floor,
        format_bps(cost.margin_bps)
    );
    let uptime_s = now_ms.saturating_sub(economics.started_ms) / 1_000;
    match earnings_per_hour {
        Some(rate) if !rate.is_zero() => outln!("earnings   {rate}/h over {uptime_s} s of uptime"),
        Some(_) => outln!("earnings   no settled jobs yet ({uptime_s} s of uptime)"),
        None if economics.earned_at_start.is_none() => {
            outln!("earnings   unknown: the agent could not read its earnings at start")
        }
        None => outln!("earnings   no rate yet: under a minute of uptime"),
    }
}

/// `95.5 W`.
pub fn format_watts(milliwatts: u64) -> String {
    format!("{}.{} W", milliwatts / 1_000, (milliwatts % 1_000) / 100)
}

/// `20%` or `2.5%`.
pub fn format_bps(bps: u32) -> String {
    if bps.is_multiple_of(100) {
        format!("{}%", bps / 100)
    } else {
        format!("{}.{:02}%", bps / 100, bps % 100)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
