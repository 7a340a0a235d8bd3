//! `agora market asks|index|providers`: what a market offers, read over its HTTP API.

use std::process::ExitCode;

use agora_client::progress::short_account;
use agora_client::{DEFAULT_MARKET_URL, MarketClient};
use agora_core::Amount;
use anyhow::Context;

/// Arguments of `agora market`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Query,
    /// The market node's HTTP URL.
    #[arg(long, global = true, env = "AGORA_MARKET", default_value = DEFAULT_MARKET_URL)]
    market: String,
    /// Print JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Query {
    /// The live asks in the order book.
    Asks,
    /// The spot price index per resource class: best ask, depth, VWAP per window.
    Index,
    /// Providers: stake, reputation, jobs, earnings.
    Providers,
}

/// Runs `agora market`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(query(args))
}

async fn query(args: Args) -> anyhow::Result<ExitCode> {
    let client = MarketClient::new(&args.market)?;
    match args.command {
        Query::Asks => {
            let asks = client.asks().await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&asks)?);
            } else if asks.is_empty() {
                outln!("no asks");
            }
            for ask in asks.iter().filter(|_| !args.json) {
                let prices: Vec<String> = ask
                    .prices
                    .iter()
                    .map(|(class, price)| format!("{class} {}/CU", Amount(price.0)))
                    .collect();
                let attributes: Vec<String> = ask
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                outln!(
                    "{}  {:>6} mCPU  {:>6} MiB  {}  {}",
                    short_account(&ask.provider),
                    ask.capacity.cpu_millis,
                    ask.capacity.memory_bytes >> 20,
                    prices.join(", "),
                    attributes.join(" ")
                );
            }
        }
        Query::Index => {
            let index = client.index().await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&index)?);
            } else if index.is_empty() {
                outln!("no price index yet (no asks or trades)");
            }
            for entry in index.iter().filter(|_| !args.json) {
                let best = entry
                    .best_ask
                    .map_or("-".into(), |p| format!("{}/CU", Amount(p.0)));
                let windows: Vec<String> = entry
                    .windows
                    .iter()
                    .map(|w| {
                        let vwap = w.vwap.map_or("-".into(), |p| Amount(p.0).to_string());
                        format!("{}s vwap {vwap} ({} trades)", w.window_ms / 1_000, w.trades)
                    })
                    .collect();
                outln!(
                    "{}  best {best}  depth {}  {}",
                    entry.class,
                    entry.depth_asks,
                    windows.join("  ")
                );
            }
        }
        Query::Providers => {
            let providers = client.providers().await?;
            if args.json {
                outln!("{}", serde_json::to_string_pretty(&providers)?);
            } else if providers.is_empty() {
                outln!("no providers");
            }
            for p in providers.iter().filter(|_| !args.json) {
                outln!(
                    "{}  stake {}  reputation {:.3} ({:.0}% confidence)  running {}  done {}  failed {}  earned {}",
                    p.account,
                    p.stake,
                    p.reputation,
                    p.confidence * 100.0,
                    p.running,
                    p.completed,
                    p.failed,
                    p.earned
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
