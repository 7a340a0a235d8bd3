//! `agora bench dispute`: what a dispute over a checkpointed job costs the referee.
//!
//! Runs the checkpointed sample job (`examples/jobs/life.wasm`) in full, then plays the
//! bisection game of `agora_verify::bisect` between the honest trace and one corrupted from
//! a step `k` on (a different `k` each run), with the executor as referee: it restores the
//! agreed state before `k` (a party's preimage, checked against the agreed hash) and runs that
//! one `agora_step`. Reported, as medians over the runs: the full job's fuel and wall time
//! (ordinary and checkpointed), the referee's fuel and wall time, their ratio (the issue's
//! target is ≤ 1 %), the bisection rounds against ⌈log₂ steps⌉, and the party's cost of
//! producing the preimage (a re-run to `k − 1`, paid by the parties, not the referee).
//!
//! The corrupted trace differs in its hashes from `k` on, as a wrong state propagates; the
//! rounds and the referee's work depend only on where the traces first differ.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agora_core::{Fuel, Hash};
use agora_exec::checkpoint::Trace;
use agora_exec::{ExecConfig, Executor, JobSpec, Limits, WasmExecutor, WasmModule};
use agora_verify::bisect::{Bisection, Commitment, Opening, Party, Progress, max_rounds};
use anyhow::{Context, bail};
use serde::Serialize;

/// Arguments of `agora bench dispute`.
#[derive(clap::Args)]
pub struct Args {
    /// Runs (each with its own first corrupted step); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Steps of the sample job.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// Game of Life generations per step (the work per step).
    #[arg(long, default_value_t = 4)]
    pub gens: u64,
    /// Directory with the sample jobs (`life.wasm`).
    #[arg(long, default_value = "examples/jobs")]
    pub jobs_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One dispute.
#[derive(Serialize)]
struct Round {
    /// The first corrupted step, which the referee re-ran.
    step: u64,
    /// Bisection rounds played.
    rounds: u32,
    /// Whether the corrupted party lost and the honest one did not.
    convicted: bool,
    /// The referee's fuel: instantiation and `_initialize` (which a restore replays) plus
    /// the one step.
    referee_fuel: u64,
    /// The referee's wall time: restore (with the hash check of the preimage) + one step.
    referee_ms: f64,
    /// A party's wall time to produce the preimage of state `step − 1` by re-running.
    preimage_ms: f64,
    /// Size of that preimage (memory image, globals, WASI state), in bytes.
    preimage_bytes: usize,
}

#[derive(Serialize)]
struct Report {
    module: String,
    args: Vec<String>,
    steps: u64,
    runs: usize,
    job_fuel: u64,
    /// Median wall time of an ordinary run (what re-executing the whole job costs).
    job_ms: f64,
    /// Median wall time of the checkpointed run (hashing the state after every step).
    checkpointed_ms: f64,
    referee_fuel: u64,
    referee_ms: f64,
    /// Referee fuel / job fuel, in percent.
    fuel_fraction_pct: f64,
    /// Referee wall time / ordinary run wall time, in percent.
    wall_fraction_pct: f64,
    rounds_max: u32,
    rounds_bound: u32,
    preimage_ms: f64,
    all_convicted: bool,
    disputes: Vec<Round>,
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.runs == 0 || args.steps < 2 {
        bail!("--runs must be at least 1 and --steps at least 2");
    }
    let path = args.jobs_dir.join("life.wasm");
    let bytes = std::fs::read(&path)
        .with_context(|| format!("reading {} (run from the repository root)", path.display()))?;
    let module = WasmModule::new(bytes);
    let executor = WasmExecutor::new(ExecConfig::default())?;
    executor.prepare(&module)?;
    let mut job = JobSpec::new(Hash::of(b"agora bench dispute"), module);
    job.args = vec![args.steps.to_string(), args.gens.to_string(), "1".into()];
    job.limits = Limits {
        fuel: Fuel::compute_units(1_000),
        wall_timeout: Duration::from_secs(3_600),
        ..Limits::default()
    };

    let mut job_times = Vec::new();
    let mut checkpointed_times = Vec::new();
    let mut trace = None;
    let mut job_fuel = 0;
    for run in 1..=args.runs {
        eprintln!(
            "run {run}/{}: the whole job, ordinary and checkpointed",
            args.runs
        );
        let started = Instant::now();
        let ordinary = executor.run(&job)?;
        job_times.push(started.elapsed());
        if ordinary.exit_code != 0 {
            bail!(
                "life.wasm exited {}: {}",
                ordinary.exit_code,
                ordinary.stderr.text()
            );
        }
        let started = Instant::now();
        let checkpointed = executor.run_checkpointed(&job)?;
        checkpointed_times.push(started.elapsed());
        if checkpointed.outcome.digest != ordinary.digest {
            bail!("the checkpointed run's digest differs from the ordinary run's");
        }
        job_fuel = checkpointed.outcome.fuel_used.0;
        trace = Some(checkpointed.trace);
    }
    let trace = trace.context("no run")?;
    let initial_fuel = executor.checkpoint_session(&job)?.fuel_used().0;

    let mut disputes = Vec::new();
    for (run, k) in first_steps(args.runs, trace.steps())
        .into_iter()
        .enumerate()
    {
        eprintln!(
            "dispute {}/{}: first corrupted step {k}",
            run + 1,
            args.runs
        );
        disputes.push(dispute(&executor, &job, &trace, k, initial_fuel)?);
    }
    let mut referee_times: Vec<Duration> = disputes
        .iter()
        .map(|d| Duration::from_secs_f64(d.referee_ms / 1e3))
        .collect();
    let mut preimage_times: Vec<Duration> = disputes
        .iter()
        .map(|d| Duration::from_secs_f64(d.preimage_ms / 1e3))
        .collect();
    let mut referee_fuel: Vec<u64> = disputes.iter().map(|d| d.referee_fuel).collect();
    referee_fuel.sort_unstable();
    let referee_fuel = referee_fuel[referee_fuel.len() / 2];
    let job_ms = median_ms(&mut job_times);
    let referee_ms = median_ms(&mut referee_times);
    let report = Report {
        module: path.display().to_string(),
        args: job.args.clone(),
        steps: trace.steps(),
        runs: args.runs,
        job_fuel,
        job_ms,
        checkpointed_ms: median_ms(&mut checkpointed_times),
        referee_fuel,
        referee_ms,
        fuel_fraction_pct: 100.0 * referee_fuel as f64 / job_fuel.max(1) as f64,
        wall_fraction_pct: 100.0 * referee_ms / job_ms.max(f64::MIN_POSITIVE),
        rounds_max: disputes.iter().map(|d| d.rounds).max().unwrap_or(0),
        rounds_bound: max_rounds(trace.steps()),
        preimage_ms: median_ms(&mut preimage_times),
        all_convicted: disputes.iter().all(|d| d.convicted),
        disputes,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// First corrupted steps in `1..=steps`, one per run, from a fixed pseudo-random sequence so
/// reruns measure the same disputes.
fn first_steps(runs: usize, steps: u64) -> Vec<u64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..runs)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            1 + (x >> 33) % steps
        })
        .collect()
}

fn dispute(
    executor: &WasmExecutor,
    job: &JobSpec,
    honest: &Trace,
    k: u64,
    initial_fuel: u64,
) -> anyhow::Result<Round> {
    let corrupted: Vec<Hash> = honest
        .step_hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i as u64 + 1 >= k {
                Hash::tagged("agora/bench-dispute/corrupted", &[h.as_bytes()])
            } else {
                *h
            }
        })
        .collect();
    let liar = Trace::new(honest.initial_state, corrupted);
    let commitment = |t: &Trace| Commitment::from(t.commitment());
    let end = honest.steps();
    let opening = Opening {
        initial_state: executor.checkpoint_initial_state(job)?,
        claimant: commitment(&liar),
        challenger: commitment(honest),
        claimant_end: liar.answer(end).context("no end state")?,
        challenger_end: honest.answer(end).context("no end state")?,
    };
    let mut game = Bisection::open(opening, 0, 60_000)?;
    let task = loop {
        match game.progress() {
            Progress::Waiting { step, .. } => {
                let ours = liar.answer(step).context("asked past the end")?;
                let theirs = honest.answer(step).context("asked past the end")?;
                game.answer(Party::Claimant, ours, 1)?;
                game.answer(Party::Challenger, theirs, 1)?;
            }
            Progress::NeedsReferee(task) => break task,
            Progress::Decided(verdict) => bail!("decided without the referee: {verdict:?}"),
        }
    };
    let started = Instant::now();
    let preimage = (task.step > 1)
        .then(|| executor.checkpoint_preimage(job, task.step - 1))
        .transpose()?;
    let preimage_ms = started.elapsed().as_secs_f64() * 1e3;
    let preimage_bytes = preimage
        .as_ref()
        .map_or(0, |p| agora_core::canonical::encode(p).len());
    let started = Instant::now();
    let computed = executor.referee_step(job, task.step, task.from_state, preimage.as_ref())?;
    let referee_ms = started.elapsed().as_secs_f64() * 1e3;
    let verdict = game.referee(computed)?;
    let step_fuel = honest_step_fuel(executor, job, preimage.as_ref())?;
    Ok(Round {
        step: task.step,
        rounds: verdict.rounds,
        convicted: verdict.lost(Party::Claimant) && !verdict.lost(Party::Challenger),
        referee_fuel: initial_fuel + step_fuel,
        referee_ms,
        preimage_ms,
        preimage_bytes,
    })
}

/// The fuel of the one step after `preimage` (or of step 1).
fn honest_step_fuel(
    executor: &WasmExecutor,
    job: &JobSpec,
    preimage: Option<&agora_exec::checkpoint::StatePreimage>,
) -> anyhow::Result<u64> {
    let mut session = match preimage {
        Some(p) => executor.restore_session(job, p)?,
        None => executor.checkpoint_session(job)?,
    };
    let before = session.fuel_used().0;
    session.step()?;
    Ok(session.fuel_used().0 - before)
}

fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

fn print_report(r: &Report) {
    outln!(
        "dispute cost for a checkpointed job (median of {} runs)",
        r.runs
    );
    outln!(
        "  job        {} {}  ({} steps)",
        r.module,
        r.args.join(" "),
        r.steps
    );
    outln!(
        "  whole job  {} fuel, {:.1} ms ordinary, {:.1} ms checkpointed",
        r.job_fuel,
        r.job_ms,
        r.checkpointed_ms
    );
    outln!(
        "  referee    {} fuel, {:.2} ms (restore + one step)",
        r.referee_fuel,
        r.referee_ms
    );
    outln!(
        "  fraction   {:.3} % of the fuel, {:.3} % of the wall time (target <= 1 %)",
        r.fuel_fraction_pct,
        r.wall_fraction_pct
    );
    outln!(
        "  rounds     at most {} (bound ceil(log2 {}) = {}); every corrupted trace convicted: {}",
        r.rounds_max,
        r.steps,
        r.rounds_bound,
        r.all_convicted
    );
    outln!(
        "  parties    {:.1} ms to produce the preimage (re-run to the step before)",
        r.preimage_ms
    );
    for d in &r.disputes {
        outln!(
            "    step {:>5}: {} rounds, referee {} fuel {:.2} ms, preimage {} bytes",
            d.step,
            d.rounds,
            d.referee_fuel,
            d.referee_ms,
            d.preimage_bytes
        );
    }
}
