//! `agora devnet`: a local network to try the API by hand, like a dev stack.
//!
//! Starts one market node and N provider agents as separate processes on loopback
//! (`agora_devnet::LocalNet`: fresh data directories, accounts funded from a development
//! genesis, a buyer wallet written), prints the API URL and the exact `agora job run` line
//! to try, and keeps everything running until Ctrl-C or SIGTERM. If a child dies
//! meanwhile, it says which and where its log is.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agora_core::Price;
use agora_devnet::{LocalNet, LocalNetConfig};
use anyhow::Context;
use serde_json::json;

/// Arguments of `agora devnet`.
#[derive(clap::Args)]
pub struct Args {
    /// Provider agents to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
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
    /// Print one JSON object (URL, wallets, processes) once the network is up.
    #[arg(long)]
    pub json: bool,
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
    if !args.json {
        eprintln!(
            "starting a market and {} providers in {}",
            args.providers,
            dir.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut net = LocalNet::start(&config)?;
    runtime.block_on(net.wait_for_providers())?;
    announce(&net, args.json);
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

fn announce(net: &LocalNet, json: bool) {
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
            "http_url": net.http_url,
            "dir": net.dir(),
            "market": { "pid": net.market_pid, "data_dir": net.market_dir, "log": net.market_log() },
            "providers": providers,
            "buyer_wallets": net.buyer_wallets,
            "try": try_line,
        });
        outln!("{out}");
        return;
    }
    outln!("Agora devnet is up.");
    outln!("  API          {}", net.http_url);
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
