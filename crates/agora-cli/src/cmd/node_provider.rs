//! `agora node provider`: runs a provider agent until SIGINT or SIGTERM.
//!
//! The agent itself lives in `agora-provider`; this module turns flags into a
//! `ProviderConfig`, prints what the agent offers, waits for a signal, and shuts the agent
//! down cleanly (running jobs get a grace period to deliver, then are cancelled). The
//! process then exits even if a sandbox thread has not returned.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_client::spec::parse_duration_ms;
use agora_core::{Amount, Price};
use agora_provider::ContainerPolicy;
use agora_provider::hardware::parse_size;
use agora_provider::{
    CapacityOverrides, FaultPlan, MarketLink, PricingStrategy, ProviderAgent, ProviderConfig,
    ProviderStatus, RunningProvider,
};
use anyhow::Context;

/// The price asked when neither `--price` nor `--follow-index` is given (the demo's).
const DEFAULT_PRICE: Price = Price(20_000_000);
/// How long the runtime waits, once the agent has stopped, for blocking threads still
/// busy (a sandbox still compiling a module, say). Dropping the runtime would wait for
/// them forever, and the process must not outlive its "stopped" line.
const LEFTOVER_THREADS_WAIT: Duration = Duration::from_secs(1);

/// Arguments of `agora node provider`.
#[derive(clap::Args)]
pub struct Args {
    /// The market node's HTTP API, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "AGORA_MARKET")]
    pub market: String,
    /// The provider's wallet (its key signs asks and receipts and is its p2p identity).
    #[arg(long)]
    pub wallet: PathBuf,
    /// Where blobs, the module cache, job scratch space and provider.json live.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Where compiled WASM modules are cached [default: DATA_DIR/module-cache]. Several
    /// providers on one host may share one directory: each module is then compiled once.
    #[arg(long, value_name = "DIR")]
    pub module_cache: Option<PathBuf>,
    /// Where container images are unpacked [default: DATA_DIR/images]. Several providers
    /// on one host (one PID namespace) may share one store: each image is unpacked once.
    #[arg(long, value_name = "DIR")]
    pub image_store: Option<PathBuf>,
    /// Stake to hold bonded; the difference is bonded at start (e.g. 100 or 100 AGR).
    #[arg(long, default_value = "0")]
    pub stake: Amount,
    /// A fixed price per compute unit (e.g. 0.02 or 20000000u). Default 0.02 AGR/CU.
    #[arg(long, conflicts_with = "follow_index")]
    pub price: Option<Price>,
    /// Follow the market's 1-minute VWAP (or best ask) within --floor and --ceiling.
    #[arg(long, requires_all = ["floor", "ceiling"])]
    pub follow_index: bool,
    /// The lowest price when following the index.
    #[arg(long, requires = "follow_index")]
    pub floor: Option<Price>,
    /// The highest price when following the index.
    #[arg(long, requires = "follow_index")]
    pub ceiling: Option<Price>,
    /// The `region` attribute of the asks (buyers may require one).
    #[arg(long)]
    pub region: Option<String>,
    /// Cores to offer (default: all this process may use).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Memory to offer, e.g. 8G (default: what is available now).
    #[arg(long)]
    pub memory: Option<String>,
    /// Scratch disk to offer, e.g. 50G (default: free space of the data dir less 1 GiB).
    #[arg(long)]
    pub disk: Option<String>,
    /// Jobs to run at once (default: one per offered core).
    #[arg(long)]
    pub slots: Option<u32>,
    /// p2p listen address (default /ip4/127.0.0.1/tcp/0; the market reaches the agent
    /// over the connection the agent opens).
    #[arg(long)]
    pub listen: Option<String>,
    /// On SIGINT/SIGTERM, how long running jobs get to deliver before they are
    /// cancelled and given back to the market (e.g. 10, 500ms, 1m).
    #[arg(long, value_parser = parse_duration_ms, default_value = "10s")]
    pub shutdown_grace: u64,
    /// TEST NETWORKS ONLY: misbehave on purpose, to test the market's verification.
    /// MODE is wrong-output (run, then sign a corrupted result), skip-work (sign a
    /// made-up result without running), silent (deliver the receipt, never serve the
    /// outputs) or crash (exit mid-job); :RATE in (0, 1] misbehaves on that share of
    /// jobs, chosen by the order id (e.g. silent:0.25). Refused unless the market's
    /// genesis sets allow_faulty_providers (`agora node market --dev` does).
    #[arg(long, env = "AGORA_PROVIDER_FAULTY", value_name = "MODE[:RATE]")]
    pub faulty: Option<FaultPlan>,
    /// Do not offer container (OCI) jobs, even where a runtime works.
    #[arg(long)]
    pub no_containers: bool,
    /// Give a network to container jobs whose order asks for one (default: every
    /// container has a loopback device alone).
    #[arg(long)]
    pub allow_network: bool,
    /// Fuel one second of this machine's CPU is worth, instead of measuring it at start
    /// (docs/container-metering.md).
    #[arg(long, value_name = "FUEL")]
    pub fuel_per_cpu_second: Option<u64>,
    /// Do not measure the GPUs' TFLOPS at start.
    #[arg(long)]
    pub no_gpu_benchmark: bool,
    /// Clear setuid/setgid bits in container images instead of refusing such images
    /// (Debian and Ubuntu base images have setuid programs; jobs run without capabilities
    /// and with no_new_privs either way).
    #[arg(long)]
    pub strip_setuid: bool,
    /// A GPU class's price per CU as a multiple of the CPU price.
    #[arg(long, default_value_t = agora_provider::config::DEFAULT_GPU_PRICE_MULTIPLE)]
    pub gpu_price_multiple: u64,
    /// This machine's power draw in watts (e.g. 95.5), for the cost model; overrides the
    /// RAPL/hwmon sensors (a wall meter sees what they cannot). Without it and without a
    /// readable sensor, 10 W per core is assumed.
    #[arg(long, env = "AGORA_PROVIDER_WATTS", value_parser = agora_provider::cost::parse_watts, value_name = "WATTS")]
    pub watts: Option<u64>,
    /// Electricity price per kWh (e.g. 0.15 or 150000000u).
    #[arg(long, env = "AGORA_PROVIDER_ELECTRICITY_PRICE", default_value_t = agora_provider::cost::DEFAULT_ELECTRICITY_PER_KWH, value_name = "AMOUNT")]
    pub electricity_price: Amount,
    /// Hardware write-off per hour of the whole machine (e.g. 0.05).
    #[arg(
        long,
        env = "AGORA_PROVIDER_AMORTIZATION",
        default_value = "0",
        value_name = "AMOUNT"
    )]
    pub amortization_per_hour: Amount,
    /// Margin over break-even: basis points (2000) or percent (20%). The agent never asks
    /// below break-even plus this margin.
    #[arg(long, env = "AGORA_PROVIDER_MARGIN", value_parser = agora_provider::cost::parse_margin_bps, default_value = "2000", value_name = "BPS|PCT%")]
    pub margin: u32,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::output::keep_running_without_stdout();
    init_logging();
    let config = config_from(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let served = runtime.block_on(serve(config, args.json));
    runtime.shutdown_timeout(LEFTOVER_THREADS_WAIT);
    served
}

fn config_from(args: &Args) -> anyhow::Result<ProviderConfig> {
    let key = crate::cmd::wallet::load_wallet(&args.wallet)?;
    let pricing = match (args.follow_index, args.floor, args.ceiling) {
        (true, Some(floor), Some(ceiling)) => PricingStrategy::FollowIndex { floor, ceiling },
        (true, _, _) => anyhow::bail!("--follow-index needs both --floor and --ceiling"),
        _ => PricingStrategy::Fixed(args.price.unwrap_or(DEFAULT_PRICE)),
    };
    let mut config = ProviderConfig::new(
        key,
        &args.data_dir,
        MarketLink::Http(args.market.clone()),
        DEFAULT_PRICE,
    );
    config.pricing = pricing;
    config.stake = args.stake;
    config.region = args.region.clone();
    config.overrides = CapacityOverrides {
        cpus: args.cpus,
        memory_bytes: args.memory.as_deref().map(parse_size).transpose()?,
        disk_bytes: args.disk.as_deref().map(parse_size).transpose()?,
        slots: args.slots,
    };
    config.shutdown_grace = Duration::from_millis(args.shutdown_grace);
    config.module_cache = args.module_cache.clone();
    config.fault = args.faulty;
    config.containers = ContainerPolicy {
        enabled: !args.no_containers,
        allow_network: args.allow_network,
        fuel_per_cpu_second: args.fuel_per_cpu_second,
        gpu_benchmark: !args.no_gpu_benchmark,
        strip_setuid: args.strip_setuid,
        image_store: args.image_store.clone(),
    };
    config.gpu_price_multiple = args.gpu_price_multiple;
    config.cost = agora_provider::CostConfig {
        milliwatts: args.watts,
        electricity_per_kwh: args.electricity_price,
        amortization_per_hour: args.amortization_per_hour,
        margin_bps: args.margin,
        ..agora_provider::CostConfig::default()
    };
    if let Some(listen) = &args.listen {
        config.listen = vec![
            listen
                .parse()
                .with_context(|| format!("--listen {listen:?} is not a multiaddr"))?,
        ];
    }
    Ok(config)
}

async fn serve(config: ProviderConfig, json: bool) -> anyhow::Result<ExitCode> {
    let market = match &config.market {
        MarketLink::Http(url) => url.clone(),
        MarketLink::Direct(info) => info.peer_id.clone(),
    };
    let fault = config.fault;
    let data_dir = config.data_dir.clone();
    let provider = ProviderAgent::start(config)
        .await
        .context("starting the provider agent")?;
    let status = provider.status().await;
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "event": "started",
                "market": market,
                "status": status,
                "faulty": fault.map(|f| f.to_string()),
            })
        );
    } else {
        print_started(&market, &status, fault);
    }
    report_until_signal(&provider, &data_dir, json).await?;
    write_stats_file(&provider, &data_dir);
    if !json {
        outln!("stopping: waiting for running jobs to deliver...");
    }
    let stats = provider.shutdown().await.context("shutting down")?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "event": "stopped", "jobs": stats })
        );
    } else {
        outln!(
            "stopped: {} accepted, {} delivered, {} failed, {} declined; billed {}",
            stats.accepted,
            stats.delivered,
            stats.failed,
            stats.declined,
            stats.billed
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_started(market: &str, status: &ProviderStatus, fault: Option<FaultPlan>) {
    let cap = &status.capacity;
    outln!("provider {} serving {market}", status.account);
    outln!("peer     {}", status.peer_id);
    outln!(
        "offering {} cores, {} MiB memory, {} MiB disk, {} slots ({})",
        cap.cpus,
        cap.memory_bytes >> 20,
        cap.disk_bytes >> 20,
        cap.slots,
        cap.arch
    );
    let containers = &status.containers;
    match &containers.why_not {
        None => outln!(
            "oci      container jobs offered: {}, {} fuel per CPU second ({})",
            containers.runtime.as_deref().unwrap_or("?"),
            containers.fuel_per_cpu_second.unwrap_or(0),
            containers.calibration.as_deref().unwrap_or("?")
        ),
        Some(why) => outln!("oci      container jobs NOT offered: {why}"),
    }
    for gpu in &containers.gpus {
        outln!(
            "gpu      #{} {} ({} MiB, {}) offered to container jobs",
            gpu.index,
            gpu.class_model,
            gpu.memory_bytes >> 20,
            gpu.uuid
        );
    }
    if let Some(tflops) = containers.gpu_fp32_tflops {
        outln!("gpu      {tflops:.1} TFLOPS FP32 measured at start");
    }
    if let Some(note) = &containers.gpu_note {
        outln!("gpu      {note}");
    }
    outln!("price    {}", status.price);
    let cost = &status.economics.cost;
    outln!(
        "cost     break-even {}, floor {} (+{}), power {} from {}",
        cost.break_even,
        cost.floor,
        crate::cmd::provider::format_bps(cost.margin_bps),
        crate::cmd::provider::format_watts(cost.milliwatts),
        cost.power_source
    );
    if let Some(fault) = fault {
        outln!("FAULTY   {fault} (on purpose, test networks only)");
    }
    if let Some(ledger) = &status.ledger {
        outln!("stake    {}  balance {}", ledger.stake, ledger.balance);
    }
    outln!("running; Ctrl-C to stop");
}

/// How often the work counters are printed (only when they changed).
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often `DATA_DIR/stats.json` is rewritten: often enough that a provider killed
/// without warning loses only a couple of seconds of counts.
const STATS_FILE_EVERY: Duration = Duration::from_secs(2);

/// Prints the work counters whenever they changed, and keeps `stats.json` current,
/// until SIGINT (Ctrl-C) or SIGTERM.
async fn report_until_signal(
    provider: &RunningProvider,
    data_dir: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut ticker = tokio::time::interval(REPORT_EVERY);
    let mut stats_ticker = tokio::time::interval(STATS_FILE_EVERY);
    let mut last = provider.stats();
    loop {
        tokio::select! {
            result = tokio::signal::ctrl_c() => return result.context("waiting for Ctrl-C"),
            _ = term.recv() => return Ok(()),
            _ = stats_ticker.tick() => {
                write_stats_file(provider, data_dir);
                continue;
            }
            _ = ticker.tick() => {}
        }
        let stats = provider.stats();
        if stats == last {
            continue;
        }
        if json {
            outln!("{}", serde_json::json!({ "event": "stats", "jobs": stats }));
        } else {
            outln!(
                "jobs: {} running, {} delivered, {} failed, {} declined; billed {}",
                stats.running,
                stats.delivered,
                stats.failed,
                stats.declined,
                stats.billed
            );
        }
        last = stats;
    }
}

/// Rewrites `stats.json`; a failure is logged, not fatal (the file is for observers).
fn write_stats_file(provider: &RunningProvider, data_dir: &std::path::Path) {
    let file = agora_provider::StatsFile {
        pid: std::process::id(),
        jobs: provider.stats(),
        net: provider.net().stats(),
        economics: Some(provider.economics()),
    };
    if let Err(e) = file.write(data_dir) {
        eprintln!("warning: could not write the stats file: {e}");
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default of info for the agent.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,agora_provider=info"));
    // Another command in this process may have installed one already; keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
