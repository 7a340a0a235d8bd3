//! `agora bench auction`: auctions on a real local network (one market node and N
//! provider agents, `agora_devnet::LocalNet`), side by side with instant matching in the
//! same run.
//!
//! - **Instant**: orders matched at once; the latency is from the escrow's block (when the
//!   node matches) to the provider's acceptance of the assignment (the `matched` event).
//! - **Sealed**: `sealed:WINDOW` auctions every agent bids in; the latency is from the
//!   window's end to the same `matched` event, so the two figures measure the same step
//!   (decision → accepted assignment). The engine's own close (`awarded_ms − closes_ms`)
//!   is reported too, with the bid count and whether the cheapest provider won.
//! - **Dutch**: rising clocks; the settled price against the cheapest provider's
//!   reservation price (its ask, never below its cost floor), in clock steps.
//!
//! Provider `i` asks 20 M × (1 + i/10) base units per CU (LocalNet's ladder), so provider
//! 0 is the cheapest.

use std::path::PathBuf;
use std::process::ExitCode;

use agora_client::{Buyer, JobRequest};
use agora_core::{Fuel, Price};
use agora_devnet::{LocalNet, LocalNetConfig};
use agora_market::{DutchSchedule, MatchTerms};
use agora_proto::OrderState;
use agora_proto::api::{AuctionView, OrderView};
use anyhow::Context;
use serde_json::{Value, json};

/// `agora bench auction` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Provider agents (every one bids in each sealed auction).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=256))]
    pub providers: u32,
    /// Sealed auctions to run, one after the other.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub auctions: u32,
    /// Instant orders to run, one after the other, as the baseline.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub instant: u32,
    /// Dutch clocks to run, one after the other.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub dutch: u32,
    /// The sealed auctions' window.
    #[arg(long, default_value = "sealed:1s")]
    pub sealed: MatchTerms,
    /// The Dutch clocks' schedule (it must reach the cheapest price, 20 M per CU).
    #[arg(long, default_value = "dutch:10000000..40000000/6sx30")]
    pub clock: MatchTerms,
    /// Keep the network's files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The cheapest provider's price per CU (LocalNet's `base_price`).
const CHEAPEST: Price = Price(20_000_000);

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !matches!(args.sealed, MatchTerms::Sealed { .. }) {
        anyhow::bail!(
            "--sealed must be sealed:WINDOW[:first|uniform], not {}",
            args.sealed
        );
    }
    let MatchTerms::Dutch(schedule) = args.clock else {
        anyhow::bail!(
            "--clock must be dutch:FROM..TO/DURATION[xSTEPS], not {}",
            args.clock
        );
    };
    let temp = tempfile::Builder::new()
        .prefix("agora-bench-auction-")
        .tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let module = dir.join("hello.wasm");
    std::fs::write(&module, wat::parse_str(super::bench_e2e::HELLO_WAT)?)?;
    let n = args.providers as usize;
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        dir.join("net"),
        n,
    );
    config.shared_caches = true;
    config.provider_stake = agora_core::Amount::agr(1_000);
    config.ready_timeout = crate::cmd::devnet::default_ready_timeout(n);
    config.provider_args = vec!["--cpus".into(), "2".into(), "--no-containers".into()];
    config.base_price = CHEAPEST;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!("starting {n} providers...");
    let mut net = LocalNet::start(&config)?;
    let report = runtime.block_on(async {
        net.wait_for_providers().await?;
        let buyer = Buyer::connect(net.buyer_keys[0].clone(), &net.http_url).await?;
        let bench = Bench {
            buyer,
            client: net.client()?,
            module,
            cheapest: net.provider_account(0).context("no provider")?,
        };
        bench.report(&args, schedule).await
    });
    net.stop();
    let report = report?;
    if args.json {
        outln!("{report}");
    } else {
        print_human(&report);
    }
    Ok(ExitCode::SUCCESS)
}

struct Bench {
    buyer: Buyer,
    client: agora_client::MarketClient,
    module: PathBuf,
    cheapest: agora_core::AccountId,
}

impl Bench {
    /// Runs one order with `terms` to its end; its final view.
    async fn one(&self, terms: MatchTerms) -> anyhow::Result<OrderView> {
        let mut request = JobRequest::new(&self.module);
        request.verify = agora_proto::VerifyPolicy::None;
        request.auction = terms;
        // Every provider of the ladder is within the cap (100 providers ask up to 218 M).
        request.max_price = Price(400_000_000);
        request.fuel_budget = Fuel::compute_units(1);
        let submitted = self.buyer.submit_job(&request).await?;
        let view = self.buyer.wait(&submitted.order_id, |_| {}).await?;
        if view.state != OrderState::Settled {
            anyhow::bail!(
                "order {} ended {:?}: {:?}",
                view.order_id,
                view.state,
                view.refund_reason
            );
        }
        Ok(view)
    }

    async fn auction(&self, view: &OrderView) -> anyhow::Result<AuctionView> {
        Ok(self.client.auction(&view.order_id).await?)
    }

    async fn report(&self, args: &Args, schedule: DutchSchedule) -> anyhow::Result<Value> {
        // A first order so every figure describes a running market (the winner builds
        // its executor on its first job).
        self.one(MatchTerms::Instant).await?;
        let mut instant = Vec::new();
        for _ in 0..args.instant {
            let view = self.one(MatchTerms::Instant).await?;
            let escrowed = event_at(&view, |d| d.contains("locked in block"))?;
            instant.push(matched_at(&view)?.saturating_sub(escrowed));
        }
        let (mut sealed, mut close, mut bids, mut cheapest_won) = (Vec::new(), Vec::new(), 0, 0);
        for i in 0..args.auctions {
            eprintln!("sealed auction {}/{}...", i + 1, args.auctions);
            let view = self.one(args.sealed).await?;
            let auction = self.auction(&view).await?;
            sealed.push(matched_at(&view)?.saturating_sub(auction.closes_ms));
            close.push(
                auction
                    .awarded_ms
                    .unwrap_or(auction.closes_ms)
                    .saturating_sub(auction.closes_ms),
            );
            bids += u64::from(auction.bid_count);
            cheapest_won += u32::from(auction.winner == Some(self.cheapest));
        }
        let mut dutch = Vec::new();
        let rise = schedule.max_step_rise().0.max(1);
        for i in 0..args.dutch {
            eprintln!("Dutch clock {}/{}...", i + 1, args.dutch);
            let view = self.one(args.clock).await?;
            let price = view.price.context("a settled order has a price")?;
            dutch.push(json!({
                "price": price.0,
                "above_cheapest": price.0.saturating_sub(CHEAPEST.0),
                "steps_above": price.0.saturating_sub(CHEAPEST.0) as f64 / rise as f64,
                "winner_is_cheapest": view.provider == Some(self.cheapest),
            }));
        }
        Ok(json!({
            "providers": args.providers,
            "instant_ms": stats(&mut instant),
            "sealed": {
                "terms": args.sealed.to_string(),
                "close_to_matched_ms": stats(&mut sealed),
                "engine_close_ms": stats(&mut close),
                "mean_bids": bids as f64 / f64::from(args.auctions),
                "cheapest_won": cheapest_won,
                "auctions": args.auctions,
            },
            "dutch": {
                "terms": args.clock.to_string(),
                "step": rise,
                "cheapest_price": CHEAPEST.0,
                "runs": dutch,
            },
        }))
    }
}

fn matched_at(view: &OrderView) -> anyhow::Result<u64> {
    view.events
        .iter()
        .find(|e| e.state == OrderState::Matched)
        .map(|e| e.at_ms)
        .context("no matched event")
}

fn event_at(view: &OrderView, what: impl Fn(&str) -> bool) -> anyhow::Result<u64> {
    view.events
        .iter()
        .find(|e| what(&e.detail))
        .map(|e| e.at_ms)
        .context("no such event")
}

/// p50, p95 and max of `samples` (ms).
fn stats(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples.get(i).copied().unwrap_or(0)
    };
    json!({ "n": samples.len(), "p50": at(0.5), "p95": at(0.95), "max": at(1.0) })
}

fn print_human(report: &Value) {
    let s = &report["sealed"];
    outln!("providers              {}", report["providers"]);
    outln!(
        "instant  escrow→matched      p50 {} ms  p95 {} ms  (n={})",
        report["instant_ms"]["p50"],
        report["instant_ms"]["p95"],
        report["instant_ms"]["n"]
    );
    outln!(
        "sealed   window end→matched  p50 {} ms  p95 {} ms  (n={}, {})",
        s["close_to_matched_ms"]["p50"],
        s["close_to_matched_ms"]["p95"],
        s["close_to_matched_ms"]["n"],
        s["terms"].as_str().unwrap_or_default()
    );
    outln!(
        "sealed   engine close        p50 {} ms  p95 {} ms; mean bids {:.1}; cheapest won {}/{}",
        s["engine_close_ms"]["p50"],
        s["engine_close_ms"]["p95"],
        s["mean_bids"].as_f64().unwrap_or(0.0),
        s["cheapest_won"],
        s["auctions"]
    );
    let d = &report["dutch"];
    for run in d["runs"].as_array().into_iter().flatten() {
        outln!(
            "dutch    settled {} vs cheapest {}: {:.2} steps above (step {}), cheapest won: {}",
            run["price"],
            d["cheapest_price"],
            run["steps_above"].as_f64().unwrap_or(0.0),
            d["step"],
            run["winner_is_cheapest"]
        );
    }
}
