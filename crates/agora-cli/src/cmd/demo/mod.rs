//! `agora demo`: a throwaway market on a real local network, end to end, with a report.
//!
//! The demo starts one market node and N provider agents as separate processes on
//! loopback (`agora_devnet::LocalNet`: fresh data directories, accounts funded from a
//! development genesis), waits until every provider has bonded stake and posted its ask,
//! then acts as a buyer over the market's HTTP API, exactly as `agora job run` does: it
//! renders a frame with the path-tracer sample split into bands across providers and runs
//! Monte Carlo simulations. Every job goes upload → escrow → match → sandboxed run on a
//! provider → signed receipt → settlement. At the end the market is stopped, its ledger is
//! replayed from genesis and conservation is checked. It exits 0 only if every job
//! settled, the replay verified and conservation held. Every child process is stopped on
//! exit, Ctrl-C included.

mod chain;
mod image;
mod plan;
mod report;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use agora_client::{Buyer, JobSummary};
use agora_core::{Amount, Price};
use agora_devnet::{LocalNet, LocalNetConfig};
use anyhow::Context;

use plan::{Frame, Task};
use report::{Audit, Balance, JobLine, Report};

/// Arguments of `agora demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Provider agents to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub providers: u32,
    /// Monte Carlo jobs to run after the frame.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub jobs: u32,
    /// Bands the frame is split into (default: two per provider).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub tiles: Option<u32>,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 240, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub height: u32,
    /// Samples per pixel.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub samples: u32,
    /// Samples per Monte Carlo job.
    #[arg(long, default_value_t = 200_000)]
    pub mc_samples: u64,
    /// The buyer's price cap per compute unit, e.g. `0.05` (AGR/CU).
    #[arg(long, default_value = "0.05")]
    pub max_price: Price,
    /// Where the network's data, the outputs and the image go [default: a new directory
    /// under the system temp dir].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// How every job's result is checked: none, replicate:N:Q, spot:P, adaptive,
    /// challenge:WINDOW (see `agora job run --help`).
    #[arg(long, default_value = "adaptive", value_name = "POLICY")]
    pub verify: agora_proto::VerifyPolicy,
    /// Providers that misbehave on purpose (the K cheapest, so they win work first), to
    /// show what verification catches.
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub byzantine: u32,
    /// How the byzantine providers misbehave: wrong-output, skip-work, silent or crash,
    /// optionally on a share of jobs (`wrong-output:0.5`).
    #[arg(long, default_value = "wrong-output", value_name = "MODE[:RATE]")]
    pub fault: agora_provider::FaultPlan,
    /// Do not run the container (OCI) sample jobs, even where this host can run them.
    #[arg(long)]
    pub no_containers: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Where the market settles: `embedded` (its own ledger, replayed at the end) or
    /// `evm` (a local anvil chain with the AgoraMarket contract; balances and
    /// conservation are read back from the chain; needs
    /// `cd contracts && npm ci --ignore-scripts`).
    #[arg(long, value_enum, default_value = "embedded")]
    pub settlement: crate::cmd::node_market::SettlementKind,
}

/// The lowest provider price; the others ask 10%, 20%, ... more.
const BASE_PROVIDER_PRICE: Price = Price(20_000_000);

/// Runs `agora demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    check_verification_args(&args)?;
    let out_dir = output_dir(args.out_dir.clone())?;
    let frame = Frame {
        width: args.width,
        height: args.height,
        samples: args.samples,
        tiles: args.tiles.unwrap_or(args.providers * 2),
    };
    let mut tasks = plan::tasks(
        &out_dir.join("jobs"),
        frame,
        args.jobs,
        args.mc_samples,
        args.max_price,
    )?;
    let containers =
        verify::ContainerTruth::start(&out_dir.join("local-images"), args.no_containers);
    match &containers {
        Ok(_) => plan::add_container_tasks(&out_dir.join("jobs"), &mut tasks, args.max_price)?,
        Err(why) => progress(format!("agora demo: no container jobs: {why}")),
    }
    for task in &mut tasks {
        task.request.verify = args.verify;
    }
    progress(format!(
        "agora demo: a market and {} providers as processes on loopback, {} jobs, data in {}",
        args.providers,
        tasks.len(),
        out_dir.display()
    ));
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        out_dir.join("net"),
        args.providers as usize,
    );
    config.base_price = BASE_PROVIDER_PRICE;
    // One job at a time per provider, so the frame's bands spread over all of them.
    config.provider_slots = Some(1);
    config.settle_on_evm = args.settlement == crate::cmd::node_market::SettlementKind::Evm;
    let config = config.with_byzantine(args.byzantine as usize, args.fault);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut net = LocalNet::start(&config)?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run_on(&mut net, &tasks, &out_dir) => outcome.map(Some),
            _ = tokio::signal::ctrl_c() => Ok(None),
        }
    });
    let Some((lines, mut balances, height, elapsed)) = outcome? else {
        net.stop();
        eprintln!("interrupted; every process stopped");
        return Ok(ExitCode::from(130));
    };
    // The ledger store is locked while the market runs: stop it, then replay it. On the
    // EVM backend the chain (which outlives the children) is read instead.
    net.stop();
    let audit = if net.evm.is_some() {
        let who = balances
            .iter()
            .map(|b| (b.role.clone(), b.account))
            .collect();
        match chain::read(&net, who) {
            Ok((on_chain, audit)) => {
                balances = on_chain;
                Audit::Chain(Ok(audit))
            }
            Err(e) => Audit::Chain(Err(format!("{e:#}"))),
        }
    } else {
        Audit::Ledger(agora_ledger::verify(net.ledger_dir()))
    };
    let image = assemble_image(&out_dir, &tasks, &lines)?;
    let byzantine = net
        .faulty_providers()
        .into_iter()
        .map(|(_, a, _)| a)
        .collect();
    let checked = check_against_local_runs(&tasks, &lines, containers.as_ref().ok())?;
    let summary = verify::Summary::new(args.verify.to_string(), byzantine, &checked);
    let report = Report::new(
        lines.into_iter().map(|(line, _)| line).collect(),
        balances,
        height,
        audit,
        image,
        net.ledger_dir().to_path_buf(),
        elapsed,
        summary,
    );
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }
    Ok(if report.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Refuses a policy the network is too small for, and more byzantine providers than
/// providers, before anything starts.
fn check_verification_args(args: &Args) -> anyhow::Result<()> {
    if args.byzantine > args.providers {
        anyhow::bail!(
            "--byzantine {} is more than --providers {}; at most every provider can be faulty",
            args.byzantine,
            args.providers
        );
    }
    if let agora_proto::VerifyPolicy::Replicate { n, .. } = args.verify
        && n > args.providers
    {
        anyhow::bail!(
            "--verify {} runs every job on {n} distinct providers but the demo starts {}; pass --providers {n} or more",
            args.verify,
            args.providers
        );
    }
    Ok(())
}

/// Runs every settled job again locally and pairs its digest with the accepted one.
fn check_against_local_runs(
    tasks: &[Task],
    finished: &[Finished],
    containers: Option<&verify::ContainerTruth>,
) -> anyhow::Result<Vec<verify::Checked>> {
    let executor = verify::executor()?;
    let mut checked = Vec::new();
    for (task, (line, _)) in tasks.iter().zip(finished) {
        let (Some(order), Some(accepted), Some(v)) =
            (line.order, line.digest, line.verification.clone())
        else {
            continue;
        };
        let truth = match (&task.request.workload, containers) {
            (agora_proto::Workload::Wasm, _) => verify::local_digest(&executor, task, order)?,
            (agora_proto::Workload::Oci(_), Some(containers)) => containers.digest(task, order)?,
            (agora_proto::Workload::Oci(_), None) => continue,
        };
        checked.push(verify::Checked {
            accepted,
            truth,
            verification: v,
            billed_fuel: line.billed_fuel,
        });
    }
    Ok(checked)
}

/// A finished task: its report line and its local output files.
type Finished = (JobLine, Vec<PathBuf>);

/// Waits for the providers, runs every task as the buyer, and reads the final balances.
async fn run_on(
    net: &mut LocalNet,
    tasks: &[Task],
    out_dir: &Path,
) -> anyhow::Result<(Vec<Finished>, Vec<Balance>, u64, std::time::Duration)> {
    net.wait_for_providers().await?;
    progress(format!(
        "{} providers bonded stake and posted asks; market at {}",
        net.providers.len(),
        net.http_url
    ));
    let buyer = Arc::new(Buyer::connect(net.buyer_keys[0].clone(), &net.http_url).await?);
    let started = std::time::Instant::now();
    let lines = run_tasks(&buyer, tasks, out_dir, net.providers.len()).await?;
    let elapsed = started.elapsed();
    let balances = balances(&buyer, net).await?;
    let height = buyer.client().info().await?.height;
    Ok((lines, balances, height, elapsed))
}

/// Runs every task through the market, at most `in_flight` at once (one per provider
/// slot, so latencies show the market loop rather than time queued for a busy provider).
async fn run_tasks(
    buyer: &Arc<Buyer>,
    tasks: &[Task],
    out_dir: &Path,
    in_flight: usize,
) -> anyhow::Result<Vec<Finished>> {
    let limit = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for (index, task) in tasks.iter().enumerate() {
        let (buyer, limit, task) = (buyer.clone(), limit.clone(), task.clone());
        let dir = out_dir.join("outputs").join(format!("task-{index:04}"));
        running.spawn(async move {
            let _slot = limit.acquire_owned().await;
            let result: anyhow::Result<JobSummary> = buyer
                .run_job(&task.request, &dir, |_| {})
                .await
                .with_context(|| format!("running {}", task.label));
            let finished = match result {
                Ok(summary) => (JobLine::new(&task.label, &summary), summary.outputs),
                Err(err) => (JobLine::failed(&task.label, &err), Vec::new()),
            };
            progress(format!("  {:<14} {}", task.label, finished.0.summary()));
            (index, finished)
        });
    }
    let mut lines: Vec<Option<Finished>> = (0..tasks.len()).map(|_| None).collect();
    while let Some(joined) = running.join_next().await {
        let (index, finished) = joined.context("a task panicked")?;
        lines[index] = Some(finished);
    }
    lines
        .into_iter()
        .map(|l| l.context("a task never finished"))
        .collect()
}

/// The buyer's, each provider's and the treasury's final positions, from the API.
async fn balances(buyer: &Buyer, net: &LocalNet) -> anyhow::Result<Vec<Balance>> {
    let mut who = vec![("buyer".to_string(), buyer.account())];
    for (i, provider) in net.providers.iter().enumerate() {
        who.push((format!("provider {}", i + 1), provider.account));
    }
    who.push(("treasury".into(), buyer.info().treasury));
    // The market authority's balance pays for audits (see docs/verification.md).
    who.push(("audit fund".into(), buyer.info().market));
    let mut out = Vec::with_capacity(who.len());
    for (role, account) in who {
        // On the EVM backend the node does not know every party's address (a buyer's is
        // known per order only): the chain is read instead after the run (`chain::read`).
        if agora_client::evm::evm_settlement(buyer.info()).is_some() {
            out.push(Balance {
                role,
                account,
                balance: Amount::ZERO,
                stake: Amount::ZERO,
            });
            continue;
        }
        let view = buyer.client().account(&account).await?;
        out.push(Balance {
            role,
            account,
            balance: view.balance,
            stake: Amount::sum([view.stake, view.unbonding])?,
        });
    }
    Ok(out)
}

/// Stacks the rendered bands into `frame.png`, or explains why there is no image.
fn assemble_image(
    out_dir: &Path,
    tasks: &[Task],
    finished: &[Finished],
) -> anyhow::Result<Option<PathBuf>> {
    let mut tiles = Vec::new();
    for (task, (line, outputs)) in tasks.iter().zip(finished) {
        if !task.is_tile {
            continue;
        }
        let tile = outputs.iter().find(|p| p.ends_with("tile.ppm"));
        let Some(path) = tile.filter(|_| line.settled()) else {
            return Ok(None);
        };
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        match image::parse_ppm(&bytes) {
            Ok(tile) => tiles.push(tile),
            // A wrong result accepted (under `none`, or a spot-check not drawn) can be
            // any bytes: report it, and the frame is not assembled.
            Err(err) => {
                progress(format!(
                    "{} output is not a valid image: {err:#}",
                    task.label
                ));
                return Ok(None);
            }
        }
    }
    if tiles.is_empty() {
        return Ok(None);
    }
    let path = out_dir.join("frame.png");
    image::write_png(&tiles, &path)?;
    Ok(Some(path))
}

fn output_dir(requested: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match requested {
        Some(dir) => dir,
        None => tempfile::Builder::new()
            .prefix("agora-demo-")
            .tempdir()?
            .keep(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if dir.join("net").exists() {
        anyhow::bail!(
            "{} already holds a demo network; pass a new --out-dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Progress goes to stderr so `--json` output stays one clean object on stdout.
fn progress(line: String) {
    eprintln!("{line}");
}
