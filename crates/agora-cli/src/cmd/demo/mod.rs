//! `agora demo`: a throwaway market, end to end, with a report.
//!
//! The demo creates a fresh ledger from a development genesis, funds a buyer and a few
//! providers, has the providers bond stake and post asks, then acts as the buyer: it
//! renders a frame with the path-tracer sample split into bands across providers and runs
//! Monte Carlo simulations. Every job goes escrow → match → sandboxed run → signed receipt
//! → settlement, one block at a time; at the end the ledger is replayed from genesis and
//! conservation is checked. It exits 0 only if every job settled, the replay verified and
//! conservation held.
//!
//! The market, its providers and the ledger run in this one process here (providers on
//! their own threads with their own keys); the same loop across separate processes over
//! the network is what `agora node` will run.

mod image;
mod local_market;
mod plan;
mod report;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use agora_core::Price;
use agora_exec::{ExecConfig, WasmExecutor};
use anyhow::Context;

use local_market::{InFlight, LocalMarket};
use plan::{Frame, Task};
use report::{JobLine, Report};

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
    /// Where the ledger and the image go [default: a new directory under the system temp dir].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The lowest provider price; the others ask 10%, 20%, ... more.
const BASE_PROVIDER_PRICE: Price = Price(20_000_000);

/// Runs `agora demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let out_dir = output_dir(args.out_dir.clone())?;
    let data_dir = out_dir.join("ledger");
    let frame = Frame {
        width: args.width,
        height: args.height,
        samples: args.samples,
        tiles: args.tiles.unwrap_or(args.providers * 2),
    };
    let tasks = plan::tasks(frame, args.jobs, args.mc_samples);
    progress(format!(
        "agora demo: {} providers, {} jobs, data in {}",
        args.providers,
        tasks.len(),
        out_dir.display()
    ));

    let executor = Arc::new(WasmExecutor::new(ExecConfig {
        cache_dir: Some(out_dir.join("module-cache")),
        ..ExecConfig::default()
    })?);
    warm_module_cache(&executor, &tasks)?;
    let mut market = LocalMarket::start(&data_dir, args.providers as usize, executor)?;
    market.onboard_providers(BASE_PROVIDER_PRICE)?;
    progress(format!(
        "{} providers bonded stake and posted asks",
        args.providers
    ));

    let started = std::time::Instant::now();
    let lines = run_tasks(&mut market, &tasks, args.max_price, args.providers as usize)?;
    let elapsed = started.elapsed();

    let tiles: Vec<_> = lines.iter().filter_map(|l| l.tile.as_ref()).collect();
    let image = assemble_image(&out_dir, &tasks, &lines)?;
    progress(format!("{} tiles assembled", tiles.len()));

    let balances = report::balances(&market);
    let height = market.ledger().height();
    market.shut_down();
    let audit = agora_ledger::verify(&data_dir);
    let report = Report::new(lines, balances, height, audit, image, data_dir, elapsed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        report.print();
    }
    Ok(if report.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Submits every task, keeping at most one job per provider in flight (each provider
/// offers one core), and settles deliveries as they arrive.
fn run_tasks(
    market: &mut LocalMarket,
    tasks: &[Task],
    cap: Price,
    max_in_flight: usize,
) -> anyhow::Result<Vec<JobLine>> {
    let run_seed = agora_core::Keypair::generate()?.account();
    let mut pending: VecDeque<usize> = (0..tasks.len()).collect();
    let mut in_flight: Vec<(agora_core::Hash, InFlight)> = Vec::new();
    let mut lines: Vec<Option<JobLine>> = (0..tasks.len()).map(|_| None).collect();
    while !pending.is_empty() || !in_flight.is_empty() {
        while in_flight.len() < max_in_flight {
            let Some(index) = pending.pop_front() else {
                break;
            };
            let task = &tasks[index];
            let order_id = plan::order_id(run_seed.as_bytes(), index, task);
            match market.submit(
                index,
                order_id,
                &task.module,
                &task.args,
                task.fuel_budget,
                cap,
            )? {
                Ok(flight) => in_flight.push((order_id, flight)),
                Err(refunded) => lines[index] = Some(JobLine::new(task, refunded, None)),
            }
        }
        if in_flight.is_empty() {
            continue;
        }
        let delivery = market.next_delivery()?;
        let position = in_flight
            .iter()
            .position(|(id, _)| *id == delivery.order_id)
            .context("a delivery for an order that is not running")?;
        let (_, flight) = in_flight.swap_remove(position);
        let settled = market.settle(&flight, &delivery)?;
        let task = &tasks[flight.task];
        let tile = delivery
            .result
            .as_ref()
            .ok()
            .filter(|_| task.is_tile)
            .and_then(|(_, outcome)| {
                outcome
                    .outputs
                    .iter()
                    .find(|f| f.name == "tile.ppm")
                    .map(|f| f.data.clone())
            });
        let line = JobLine::new(task, settled, tile);
        progress(format!("  {:<14} {}", line.label, line.summary()));
        lines[flight.task] = Some(line);
    }
    lines
        .into_iter()
        .map(|l| l.context("a task never finished"))
        .collect()
}

/// Compiles each distinct module once before any order is placed, as a provider does
/// when it first sees a workload, so job latencies measure the market loop, not cranelift.
fn warm_module_cache(executor: &WasmExecutor, tasks: &[Task]) -> anyhow::Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for task in tasks.iter().filter(|t| seen.insert(t.module.hash())) {
        let took = executor.prepare(&task.module)?;
        progress(format!(
            "compiled {} in {:.0} ms",
            task.module.hash().short(),
            took.as_secs_f64() * 1e3
        ));
    }
    Ok(())
}

/// Stacks the rendered bands into `frame.png`, or explains why there is no image.
fn assemble_image(
    out_dir: &std::path::Path,
    tasks: &[Task],
    lines: &[JobLine],
) -> anyhow::Result<Option<PathBuf>> {
    let mut tiles = Vec::new();
    for (task, line) in tasks.iter().zip(lines) {
        if !task.is_tile {
            continue;
        }
        let Some(bytes) = &line.tile else {
            return Ok(None);
        };
        tiles.push(image::parse_ppm(bytes).with_context(|| format!("{} output", task.label))?);
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
    if dir.join("ledger").exists() {
        anyhow::bail!(
            "{} already holds a demo ledger; pass a new --out-dir",
            dir.display()
        );
    }
    Ok(dir)
}

/// Progress goes to stderr so `--json` output stays one clean object on stdout.
fn progress(line: String) {
    eprintln!("{line}");
}
