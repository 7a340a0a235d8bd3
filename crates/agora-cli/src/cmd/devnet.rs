//! `agora devnet`: a local network to try the API by hand, like a dev stack.
//!
//! Starts one market node and N provider agents as separate processes on loopback
//! (`agora_devnet::LocalNet`: fresh data directories, accounts funded from a development
//! genesis, a buyer wallet written), prints the API URL and the exact `agora job run` line
//! to try, and keeps everything running until Ctrl-C or SIGTERM. If a child dies
//! meanwhile, it says which and where its log is.
//!
//! The providers share one module cache and one image store (`DIR/shared/`), so a
//! module is compiled and an image unpacked once for the whole network, and start-up is
//! bounded: if a provider is not connected with an ask posted within `--ready-timeout`
//! (by default 60 s plus 1 s per provider, for a hundred processes on a small machine),
//! the error names it and quotes its log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agora_client::spec::parse_duration_ms;
use agora_core::Price;
use agora_devnet::{LocalNet, LocalNetConfig};
use anyhow::Context;
use serde_json::json;

/// Arguments of `agora devnet`.
#[derive(clap::Args)]
pub struct Args {
    /// Provider agents to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_PROVIDERS))]
    pub providers: u32,
    /// Funded buyer wallets to write (buyer-0.json, buyer-1.json, ...).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub buyers: u32,
    /// The market's HTTP API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub http: std::net::SocketAddr,
    /// Concurrent jobs per provider [default: one per core].
    #[arg(long)]
    pub slots: Option<u32>,
    /// The cheapest provider's price per CU; the others ask 10%, 20%, ... more.
    #[arg(long, default_value = "0.02")]
    pub base_price: Price,
    /// Where data directories, wallets and logs go [default: a new directory under the
    /// system temp dir, kept on exit].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// How long the market, then all providers, may take to be ready (e.g. 90s, 5m)
    /// [default: 60 s plus 1 s per provider].
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub ready_timeout: Option<u64>,
    /// Do not offer container jobs (skips each provider's runtime probe and calibration,
    /// which is most of a provider's start-up work).
    #[arg(long)]
    pub no_containers: bool,
    /// Print one JSON object (URL, wallets, processes) once the network is up.
    #[arg(long)]
    pub json: bool,
    /// Where the market settles: `embedded` (its own ledger) or `evm` (starts anvil,
    /// deploys the AgoraMarket contract and a test token, funds the dev users there;
    /// needs `cd contracts && npm ci --ignore-scripts`).
    #[arg(long, value_enum, default_value = "embedded")]
    pub settlement: crate::cmd::node_market::SettlementKind,
}

/// The most providers `agora devnet` starts.
pub const MAX_PROVIDERS: i64 = 256;

/// The default `--ready-timeout`: a minute, and a second more per provider, since a
/// provider's start (bonding its stake, building its executor, probing containers) takes
/// a few hundred ms of CPU, and a hundred of them share the machine's cores.
pub fn default_ready_timeout(providers: usize) -> Duration {
    agora_devnet::START_TIMEOUT + Duration::from_secs(providers as u64)
}

/// Runs `agora devnet` until a signal.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::output::keep_running_without_stdout();
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => tempfile::Builder::new()
            .prefix("agora-devnet-")
            .tempdir()
            .context("creating a directory for the devnet")?
            .keep(),
    };
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        &dir,
        args.providers as usize,
    );
    config.buyers = args.buyers as usize;
    config.base_price = args.base_price;
    config.provider_slots = args.slots;
    config.http = args.http.to_string();
    config.shared_caches = true;
    config.settle_on_evm = args.settlement == crate::cmd::node_market::SettlementKind::Evm;
    config.ready_timeout = args
        .ready_timeout
        .map(Duration::from_millis)
        .unwrap_or_else(|| default_ready_timeout(args.providers as usize));
    if args.no_containers {
        config.provider_args.push("--no-containers".into());
    }
    if !args.json {
        eprintln!(
            "starting a market and {} providers in {}",
            args.providers,
            dir.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let started = Instant::now();
    let mut net = LocalNet::start(&config)?;
    runtime.block_on(net.wait_for_providers())?;
    announce(&net, started.elapsed(), args.json);
    let exit = runtime.block_on(watch(&mut net))?;
    if !args.json {
        eprintln!("stopping the devnet...");
    }
    net.stop();
    if !args.json {
        eprintln!("stopped; data kept in {}", dir.display());
    }
    Ok(exit)
}

fn announce(net: &LocalNet, startup: Duration, json: bool) {
    let wallet = net.buyer_wallets[0].display().to_string();
    let try_line = format!(
        "agora job run --market {} --wallet {wallet} examples/jobs/montecarlo.wasm -- 200000 7",
        net.http_url
    );
    if json {
        let providers: Vec<_> = net
            .providers
            .iter()
            .map(|p| {
                json!({
                    "account": p.account,
                    "pid": p.pid,
                    "price": p.price,
                    "data_dir": p.data_dir,
                    "wallet": p.wallet,
                    "log": p.log,
                })
            })
            .collect();
        let out = json!({
            "event": "ready",
            "startup_s": startup.as_secs_f64(),
            "http_url": net.http_url,
            "dir": net.dir(),
            "market": { "pid": net.market_pid, "data_dir": net.market_dir, "log": net.market_log() },
            "providers": providers,
            "buyer_wallets": net.buyer_wallets,
            "evm": net.evm.as_ref().map(|e| json!({
                "rpc_url": e.rpc_url,
                "contract": e.market.to_string(),
                "token": e.token.to_string(),
                "anvil_pid": e.anvil.pid(),
            })),
            "try": try_line,
        });
        outln!("{out}");
        return;
    }
    outln!(
        "Agora devnet is up: a market and {} providers ready in {:.1} s.",
        net.providers.len(),
        startup.as_secs_f64()
    );
    outln!("  API          {}", net.http_url);
    if let Some(evm) = &net.evm {
        outln!(
            "  EVM chain    {} (anvil pid {}), AgoraMarket {}, token {}",
            evm.rpc_url,
            evm.anvil.pid(),
            evm.market,
            evm.token
        );
    }
    outln!("  OpenAPI      {}/openapi.json", net.http_url);
    outln!("  metrics      {}/metrics", net.http_url);
    outln!(
        "  market       pid {}, log {}",
        net.market_pid,
        net.market_log().display()
    );
    for (i, p) in net.providers.iter().enumerate() {
        outln!(
            "  provider {i}   {} at {}, pid {}, log {}",
            agora_client::progress::short_account(&p.account),
            p.price,
            p.pid,
            p.log.display()
        );
    }
    for wallet in &net.buyer_wallets {
        outln!("  buyer wallet {}", wallet.display());
    }
    let containers = container_support();
    match &containers {
        Ok(runtime) => outln!("  job kinds    wasm and oci (containers under {runtime})"),
        Err(why) => outln!("  job kinds    wasm only; providers here cannot run containers: {why}"),
    }
    outln!();
    outln!("Try:");
    outln!("  {try_line}");
    if containers.is_ok() {
        outln!(
            "  agora job run --market {} --wallet {wallet} --image examples/containers/busybox-hash.oci.tar --input data=README.md",
            net.http_url
        );
    }
    outln!("  agora market providers --market {}", net.http_url);
    outln!();
    outln!("Ctrl-C stops every process.");
}

/// Whether this host runs container jobs (the providers probe the same runtime at start):
/// the runtime's version, or why not.
fn container_support() -> Result<String, String> {
    agora_container::probe()
        .map(|runtime| runtime.version)
        .map_err(|e| e.to_string())
}

/// Waits for SIGINT/SIGTERM, or for a child to die (then says which and exits non-zero).
async fn watch(net: &mut LocalNet) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = term.recv() => return Ok(ExitCode::SUCCESS),
            _ = check.tick() => {
                if let Some(dead) = net.dead_child() {
                    eprintln!("error: {dead} exited; see its log. Stopping the rest.");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
}
