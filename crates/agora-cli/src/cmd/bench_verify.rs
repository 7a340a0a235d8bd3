//! `agora bench verify`: what each verification policy costs and catches, on the same
//! workload, with a share of the providers faulty.
//!
//! For every policy a fresh local network starts (one market node, N provider agents as
//! processes on loopback, so trust starts from nothing for each), some providers with
//! `--faulty` (each signs its own wrong result). One buyer runs the same hash-chain jobs
//! under the policy, a few at a time. Every settled result is compared with a local run of
//! the same job (the truth), and for each policy the report gives: wrong results accepted,
//! cheating runs and how many were caught (against p), frauds slashed, honest providers
//! slashed, and the overhead — compute units executed ÷ compute units billed — over all
//! jobs and over the jobs after the warm-up (every provider's first jobs), counted two
//! ways: as the issue counts it (runs of every job submitted before) and strictly (runs
//! of jobs that had finished before the job was submitted). For sampling policies it
//! recomputes each re-run job's audit draw from the seed signature the market published.

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use agora_client::{Buyer, JobRequest, JobSummary};
use agora_core::{AccountId, Fuel, Hash};
use agora_devnet::{FaultMode, FaultPlan, LocalNet, LocalNetConfig};
use agora_exec::{ExecConfig, Executor, WasmExecutor, WasmModule};
use agora_proto::{OrderState, VerifyPolicy};
use anyhow::Context;
use serde_json::json;

const HASHCHAIN_WASM: &[u8] = include_bytes!("../../../../examples/jobs/hashchain.wasm");

/// Arguments of `agora bench verify`.
#[derive(clap::Args)]
pub struct Args {
    /// Policies to compare, comma-separated.
    #[arg(
        long,
        default_value = "none,replicate:3:2,spot:0.2,adaptive",
        value_delimiter = ','
    )]
    pub policies: Vec<VerifyPolicy>,
    /// Provider agents per network.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=32))]
    pub providers: u32,
    /// Faulty providers among them (30 % by default).
    #[arg(long, default_value_t = 3)]
    pub faulty: u32,
    /// Make the faulty providers the cheapest (they win first runs) instead of spreading
    /// them over the price ladder.
    #[arg(long)]
    pub faulty_cheapest: bool,
    /// Jobs per policy.
    #[arg(long, default_value_t = 200)]
    pub jobs: u32,
    /// A provider's first jobs of the workload, counted as its warm-up: the steady-state
    /// figures count only jobs whose first run went to a provider past them.
    #[arg(long, default_value_t = 10)]
    pub warmup: u32,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 8)]
    pub in_flight: u32,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.faulty >= args.providers {
        anyhow::bail!(
            "--faulty {} leaves no honest provider among --providers {}",
            args.faulty,
            args.providers
        );
    }
    let temp = tempfile::Builder::new()
        .prefix("agora-bench-verify-")
        .tempdir()?;
    let module = temp.path().join("hashchain.wasm");
    std::fs::write(&module, HASHCHAIN_WASM)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let executor = Arc::new(WasmExecutor::new(ExecConfig::default())?);
    let mut rows = Vec::new();
    for (i, policy) in args.policies.iter().enumerate() {
        if !args.json {
            eprintln!(
                "{policy}: starting {} providers ({} faulty)...",
                args.providers, args.faulty
            );
        }
        let dir = temp.path().join(format!("net-{i}"));
        let (jobs, faulty) = runtime.block_on(one_policy(&args, *policy, &module, &dir))?;
        let row = tally(&args, *policy, &module, &executor, &jobs, &faulty)?;
        if !args.json {
            print_row(&row);
        }
        rows.push(row);
    }
    if args.json {
        outln!(
            "{}",
            json!({ "providers": args.providers, "faulty": args.faulty, "jobs": args.jobs, "policies": rows })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn faulty_indices(args: &Args) -> Vec<usize> {
    let (n, k) = (args.providers as usize, args.faulty as usize);
    if args.faulty_cheapest {
        return (0..k).collect();
    }
    // Spread over the price ladder: 1, 4, 7 for 3 of 10.
    (0..k).map(|i| (i * n / k.max(1) + 1).min(n - 1)).collect()
}

/// Runs the workload under `policy` on a fresh network; returns every job's summary and
/// timing, and the faulty providers.
async fn one_policy(
    args: &Args,
    policy: VerifyPolicy,
    module: &Path,
    dir: &Path,
) -> anyhow::Result<(Vec<TimedJob>, HashSet<AccountId>)> {
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        dir,
        args.providers as usize,
    );
    config.provider_stake = agora_core::Amount::agr(1_000);
    config.provider_slots = Some(2);
    config.faulty = faulty_indices(args)
        .into_iter()
        .map(|i| (i, FaultPlan::always(FaultMode::WrongOutput)))
        .collect();
    let mut net = LocalNet::start(&config)?;
    let outcome = run_jobs(&mut net, args, policy, module).await;
    let faulty: HashSet<AccountId> = net.faulty_providers().into_iter().map(|f| f.1).collect();
    net.stop();
    Ok((outcome?, faulty))
}

/// Compares every result with a local run (off the async runtime: the executor blocks)
/// and sums the figures: over all jobs, over the jobs after warm-up as the issue counts it
/// (the first run went to a provider that had already run `warmup` jobs of the workload,
/// counting every run of every job submitted before), and over the jobs after a strict
/// warm-up (counting only runs of jobs that had finished before this one was submitted —
/// what the market could have verified by then).
fn tally(
    args: &Args,
    policy: VerifyPolicy,
    module: &Path,
    executor: &WasmExecutor,
    jobs: &[TimedJob],
    faulty: &HashSet<AccountId>,
) -> anyhow::Result<serde_json::Value> {
    let mut total = Tally::default();
    let mut steady = Tally::default();
    let mut strict = Tally::default();
    // Jobs each provider ran so far, in submission order.
    let mut ran: std::collections::HashMap<AccountId, u32> = Default::default();
    for (i, job) in jobs.iter().enumerate() {
        let summary = &job.summary;
        let truth = truth(executor, module, i, summary.order_id)?;
        let tally = Tally::of(summary, truth, faulty);
        total.add(&tally);
        let runs = &summary.verification.runs;
        let Some(first) = runs.first().map(|r| r.provider) else {
            continue;
        };
        if ran.get(&first).copied().unwrap_or(0) >= args.warmup {
            steady.add(&tally);
        }
        if runs_finished_before(jobs, first, job.submitted) >= args.warmup as usize {
            strict.add(&tally);
        }
        for run in runs {
            *ran.entry(run.provider).or_default() += 1;
        }
    }
    let p = agora_verify::economics::detection_ppm(&policy) as f64 / 1e6;
    Ok(json!({
        "policy": policy.to_string(),
        "jobs": jobs.len(),
        "settled": total.settled,
        "wrong_results_accepted": total.wrong,
        "wrong_results_accepted_after_warmup": steady.wrong,
        "cheating_first_runs": total.cheats,
        "cheats_caught": total.caught,
        "detection_rate": total.caught as f64 / total.cheats.max(1) as f64,
        "p": p,
        "frauds_slashed": total.slashed,
        "honest_slashed": total.honest_slashed,
        "overhead": total.overhead(),
        "overhead_after_warmup": steady.overhead(),
        "jobs_rerun": total.rerun,
        "jobs_rerun_after_warmup": steady.rerun,
        "jobs_rerun_after_warmup_drawn_under_min_audit": steady.rerun_low_draw,
        "steady_jobs": steady.jobs,
        "overhead_after_strict_warmup": strict.overhead(),
        "wrong_results_accepted_after_strict_warmup": strict.wrong,
        "jobs_rerun_after_strict_warmup": strict.rerun,
        "strict_steady_jobs": strict.jobs,
        "warmup_jobs_per_provider": args.warmup,
    }))
}

/// Runs by `provider` in jobs that had finished by `at`.
fn runs_finished_before(jobs: &[TimedJob], provider: AccountId, at: std::time::Duration) -> usize {
    jobs.iter()
        .filter(|job| job.finished <= at)
        .flat_map(|job| &job.summary.verification.runs)
        .filter(|run| run.provider == provider)
        .count()
}

/// The `i`th job of the workload: a hash chain with its own seed.
fn request(module: &Path, i: usize, policy: VerifyPolicy) -> JobRequest {
    let mut request = JobRequest::new(module);
    request.args = vec!["20000".into(), i.to_string()];
    request.fuel_budget = Fuel::compute_units(1);
    request.verify = policy;
    request.label = format!("bench-verify {i}");
    request
}

/// One job's summary and when it ran, relative to the start of the workload.
struct TimedJob {
    summary: JobSummary,
    /// When the order was submitted (its slot among those in flight acquired).
    submitted: std::time::Duration,
    /// When the buyer had its final state.
    finished: std::time::Duration,
}

async fn run_jobs(
    net: &mut LocalNet,
    args: &Args,
    policy: VerifyPolicy,
    module: &Path,
) -> anyhow::Result<Vec<TimedJob>> {
    net.wait_for_providers().await?;
    let buyer = Arc::new(Buyer::connect(net.buyer_keys[0].clone(), &net.http_url).await?);
    let limit = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1) as usize));
    let out = net.dir().join("outputs");
    let mut running = tokio::task::JoinSet::new();
    let start = std::time::Instant::now();
    for i in 0..args.jobs as usize {
        let (buyer, limit) = (buyer.clone(), limit.clone());
        let request = request(module, i, policy);
        let out = out.join(i.to_string());
        running.spawn(async move {
            let _slot = limit.acquire_owned().await;
            let submitted = start.elapsed();
            let summary = buyer.run_job(&request, &out, |_| {}).await;
            (i, summary, submitted, start.elapsed())
        });
    }
    let mut jobs: Vec<Option<TimedJob>> = (0..args.jobs).map(|_| None).collect();
    while let Some(joined) = running.join_next().await {
        let (i, summary, submitted, finished) = joined.context("a job task panicked")?;
        let summary = summary.with_context(|| format!("job {i}"))?;
        jobs[i] = Some(TimedJob {
            summary,
            submitted,
            finished,
        });
    }
    Ok(jobs.into_iter().flatten().collect())
}

/// The digest a local run of job `i` gives as order `order`.
fn truth(executor: &WasmExecutor, module: &Path, i: usize, order: Hash) -> anyhow::Result<Hash> {
    let request = request(module, i, VerifyPolicy::None);
    let mut spec = executor.job(order, WasmModule::new(std::fs::read(module)?));
    spec.args = request.args;
    spec.limits.fuel = request.fuel_budget;
    spec.limits.memory_bytes = request.memory_bytes;
    Ok(executor.run(&spec)?.digest)
}

#[derive(Default)]
struct Tally {
    jobs: usize,
    settled: usize,
    wrong: usize,
    cheats: usize,
    caught: usize,
    slashed: usize,
    honest_slashed: usize,
    /// Jobs run more than once (replicated, audited or tie-broken).
    rerun: usize,
    /// Of those, jobs whose audit draw (recomputed from the published seed) was under
    /// [`agora_verify::MIN_AUDIT_PPM`]: re-runs that a trusted provider whose stake covers
    /// the job would also get. The others were replicated because the provider was not
    /// trusted yet, or audited at a higher rate.
    rerun_low_draw: usize,
    executed: u64,
    billed: u64,
}

impl Tally {
    fn of(summary: &JobSummary, truth: Hash, faulty: &HashSet<AccountId>) -> Tally {
        let v = &summary.verification;
        let settled = summary.state == OrderState::Settled;
        let cheated = v.runs.first().is_some_and(|r| faulty.contains(&r.provider));
        let slashed = v
            .slashes
            .iter()
            .filter(|s| faulty.contains(&s.provider))
            .count();
        Tally {
            jobs: 1,
            settled: usize::from(settled),
            wrong: usize::from(settled && summary.digest != Some(truth)),
            cheats: usize::from(cheated),
            caught: usize::from(cheated && v.runs.len() > 1),
            slashed,
            honest_slashed: v.slashes.len() - slashed,
            rerun: usize::from(v.runs.len() > 1),
            rerun_low_draw: usize::from(
                v.runs.len() > 1
                    && audit_draw(summary).is_some_and(|d| d < agora_verify::MIN_AUDIT_PPM),
            ),
            executed: v.fuel_executed.0,
            billed: summary
                .compute_units
                .map_or(0, |cu| (cu * 1e9).round() as u64),
        }
    }

    fn add(&mut self, other: &Tally) {
        self.jobs += other.jobs;
        self.settled += other.settled;
        self.wrong += other.wrong;
        self.cheats += other.cheats;
        self.caught += other.caught;
        self.slashed += other.slashed;
        self.honest_slashed += other.honest_slashed;
        self.rerun += other.rerun;
        self.rerun_low_draw += other.rerun_low_draw;
        self.executed += other.executed;
        self.billed += other.billed;
    }

    fn overhead(&self) -> f64 {
        self.executed as f64 / self.billed.max(1) as f64
    }
}

/// The audit draw of a sampled order, recomputed from the seed signature the market
/// published, as anyone can.
fn audit_draw(summary: &JobSummary) -> Option<u32> {
    let signature = hex::decode(summary.verification.audit_seed_signature.as_ref()?).ok()?;
    let seed = agora_verify::flow::audit_seed(&signature);
    Some(agora_verify::sampling::audit_draw_ppm(
        seed,
        summary.order_id,
    ))
}

fn print_row(row: &serde_json::Value) {
    outln!(
        "{:<14} settled {}/{}  wrong accepted {} ({} after warm-up)  cheats {} caught {} (rate {:.3}, p {:.3})  slashed {}  honest slashed {}  re-run {} ({} after warm-up, {} of them drawn under 1 %)  overhead {:.3} ({:.3} over the {} jobs after warm-up)",
        row["policy"].as_str().unwrap_or(""),
        row["settled"],
        row["jobs"],
        row["wrong_results_accepted"],
        row["wrong_results_accepted_after_warmup"],
        row["cheating_first_runs"],
        row["cheats_caught"],
        row["detection_rate"].as_f64().unwrap_or(0.0),
        row["p"].as_f64().unwrap_or(0.0),
        row["frauds_slashed"],
        row["honest_slashed"],
        row["jobs_rerun"],
        row["jobs_rerun_after_warmup"],
        row["jobs_rerun_after_warmup_drawn_under_min_audit"],
        row["overhead"].as_f64().unwrap_or(0.0),
        row["overhead_after_warmup"].as_f64().unwrap_or(0.0),
        row["steady_jobs"],
    );
    outln!(
        "{:<14} after a strict warm-up (runs of jobs finished before): {} jobs, wrong accepted {}, re-run {}, overhead {:.3}",
        "",
        row["strict_steady_jobs"],
        row["wrong_results_accepted_after_strict_warmup"],
        row["jobs_rerun_after_strict_warmup"],
        row["overhead_after_strict_warmup"].as_f64().unwrap_or(0.0),
    );
}
