//! The market simulation from the command line.
//!
//! ```text
//! cargo run --release -p agora-sim --example simulate -- \
//!     --providers 10000 --jobs 1000000 --seed 1 --json sim.json --plots docs/sim
//! ```
//!
//! Runs one simulation, prints the summary and the simulated jobs per minute of wall time
//! (the issue's target: ≥ 1,000,000 on one core), writes the report as JSON, and with
//! `--sweep` also runs the stake-rule sweep; `--plots` regenerates the SVG figures.

use std::path::PathBuf;
use std::time::Instant;

use agora_sim::shard::{self, ShardConfig};
use agora_sim::{SimConfig, World, plot, sweep};
use agora_verify::VerifyPolicy;
use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Run Agora's deterministic market simulation")]
struct Args {
    /// Providers online at the start.
    #[arg(long, default_value_t = 10_000)]
    providers: u32,
    /// Jobs to simulate.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: u64,
    /// The seed; the same seed gives a byte-identical report.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean job arrivals per simulated second [default: providers / 100].
    #[arg(long)]
    rate: Option<u32>,
    /// Stake slashed per proven fault, as a multiple of the rule's C/p − R.
    #[arg(long, default_value_t = 1.0)]
    stake_ratio: f64,
    /// Cheaters price at the bottom of the market.
    #[arg(long)]
    cheaters_cheapest: bool,
    /// Adaptive draws by the policy alone, not by the value at risk (the node's way).
    #[arg(long)]
    plain_adaptive: bool,
    /// No suspension after a proven fault (the node suspends).
    #[arg(long)]
    no_suspension: bool,
    /// Buyers' policies, comma-separated, equally weighted (e.g. `adaptive,spot:0.1`)
    /// [default: none, spot:0.05, spot:0.2, replicate:3:2 and adaptive ×4].
    #[arg(long, value_delimiter = ',')]
    policies: Vec<VerifyPolicy>,
    /// Cheater shares in percent for always,rarely,high_value,colluding,after_trust
    /// [default: 2,2,2,2,2].
    #[arg(long, value_delimiter = ',')]
    cheaters: Vec<f64>,
    /// Also run the stake-rule sweep (audit rates × slash ratios) at this many providers
    /// and jobs per point, e.g. `--sweep 1000:200000`.
    #[arg(long, value_parser = parse_pair)]
    sweep: Option<(u32, u64)>,
    /// Also run the sharded market with this many shards (1,000 providers, 100,000 jobs).
    #[arg(long)]
    shards: Option<u32>,
    /// Write the SVG figures into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Redraw the figures from a report written by `--json` instead of simulating
    /// (with `--plots`).
    #[arg(long, requires = "plots")]
    replot: Option<PathBuf>,
    /// Write the report here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    print_json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let (Some(from), Some(dir)) = (&args.replot, &args.plots) {
        return replot(from, dir);
    }
    let mut config = SimConfig::scaled(args.providers, args.jobs, args.seed);
    config.arrivals_per_s = args.rate.unwrap_or(config.arrivals_per_s);
    config.cheaters_cheapest = args.cheaters_cheapest;
    config.sample_at_risk = !args.plain_adaptive;
    if !args.policies.is_empty() {
        config.policies = args.policies.iter().map(|p| (*p, 1)).collect();
    }
    match args.cheaters[..] {
        [] => {}
        [a, b, c, d, e] => {
            config.cheater_ppm = [a, b, c, d, e].map(|pct| (pct * 1e4).round() as u32)
        }
        _ => anyhow::bail!("--cheaters takes 5 percentages, e.g. 2,2,2,2,2"),
    }
    config.suspension = !args.no_suspension;
    config.stake_ratio_ppm = (args.stake_ratio * 1e6).round() as u32;
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let world = World::new(config).context("the simulation's configuration")?;
    let setup_s = started.elapsed().as_secs_f64();
    let report = world.run();
    let wall_s = started.elapsed().as_secs_f64();
    // On a shared machine the wall clock counts other processes' turns too; the CPU time
    // this thread ran is what "on one core" means.
    let cpu_s = match (cpu_before, cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => wall_s,
    };
    let per_min = report.config.jobs as f64 / cpu_s * 60.0;
    let per_min_wall = report.config.jobs as f64 / wall_s * 60.0;
    if args.print_json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.summary());
    }
    eprintln!(
        "\nsimulated {} jobs in {cpu_s:.2} s of CPU time ({wall_s:.2} s wall, {setup_s:.2} s set-up): {per_min:.0} simulated jobs per minute on one core ({per_min_wall:.0} per wall-clock minute)",
        report.config.jobs
    );
    let sweep = args.sweep.map(|(providers, jobs)| {
        let base = sweep::base(providers, jobs, args.seed);
        let t = Instant::now();
        let sweep = sweep::run(&base, &sweep::AUDIT_RATES_PPM, &sweep::STAKE_RATIOS_PPM);
        eprintln!(
            "\nstake sweep: {} points in {:.1} s",
            sweep.points.len(),
            t.elapsed().as_secs_f64()
        );
        print!("{}", sweep.summary());
        sweep
    });
    let sharding = args.shards.map(|shards| {
        let config = ShardConfig {
            shards,
            seed: args.seed,
            ..ShardConfig::default()
        };
        let t = Instant::now();
        let report = shard::run(config);
        eprintln!("\nsharded run in {:.1} s", t.elapsed().as_secs_f64());
        print!("{}", report.summary());
        report
    });
    if let Some(dir) = &args.plots {
        let files = plot::all(&report, sweep.as_ref(), dir).context("drawing the figures")?;
        eprintln!("figures: {}", files.join(", "));
    }
    if let Some(path) = &args.json {
        let out = serde_json::json!({
            "run": report,
            "sweep": sweep,
            "sharding": sharding,
            "performance": {
                "cpu_s": cpu_s,
                "wall_s": wall_s,
                "setup_s": setup_s,
                "simulated_jobs_per_cpu_minute": per_min,
                "simulated_jobs_per_wall_minute": per_min_wall,
            },
        });
        let text = serde_json::to_string_pretty(&out).context("encoding the report")?;
        std::fs::write(path, text)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok(())
}

/// Draws the figures of a saved report.
fn replot(from: &std::path::Path, dir: &std::path::Path) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Saved {
        run: agora_sim::Report,
        sweep: Option<sweep::Sweep>,
    }
    let text = std::fs::read_to_string(from)
        .with_context(|| format!("reading the report {}", from.display()))?;
    let saved: Saved = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a report written by --json", from.display()))?;
    let files = plot::all(&saved.run, saved.sweep.as_ref(), dir).context("drawing the figures")?;
    eprintln!("figures: {}", files.join(", "));
    Ok(())
}

/// CPU time this process has run, from Linux's /proc/self/schedstat (None elsewhere).
fn cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Reads `PROVIDERS:JOBS`.
fn parse_pair(text: &str) -> Result<(u32, u64), String> {
    let (a, b) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected PROVIDERS:JOBS, e.g. 1000:50000"))?;
    let providers = a.parse().map_err(|e| format!("providers {a:?}: {e}"))?;
    let jobs = b.parse().map_err(|e| format!("jobs {b:?}: {e}"))?;
    Ok((providers, jobs))
}
