//! `agora bench scale`: a market with a hundred provider processes on one machine,
//! beside a small baseline network, under the same load.
//!
//! Each network is a real `agora_devnet::LocalNet` (one market node and N provider agents
//! as processes on loopback, sharing one module cache); a share of the providers is faulty
//! on purpose (they sign wrong results) and every order asks for the verification policy
//! given (adaptive by default). Buyers in this process submit the same trivial WASM job
//! (the one of `agora bench e2e`) over and over, each waiting for its order to end
//! before the next, until the job count is reached. Both networks run the same number of
//! jobs with the same buyers, so the figures compare the market loop at two sizes.
//!
//! Per network the report gives submit → settled p50/p95, settled jobs/s, the market
//! node's CPU seconds (user + system, from `/proc`) and its peak and average RSS, the
//! messages per job (HTTP requests at the market, p2p messages sent by every node,
//! first-time gossip deliveries), and the providers' memory idle and under load
//! ([`proc_stats`]). Then the ratios of the big network to the baseline.
//!
//! With `--churn`, a share of the big network's providers is killed (SIGKILL) every
//! `--churn-every` and restarted `--churn-down` later, round robin, while the jobs run.
//!
//! Whatever the figures, a run fails (non-zero exit, the reasons printed) unless every
//! job ended settled or refunded, no order is left open at the market, the escrow is
//! empty, the supply is conserved (minted = balances + escrow + stakes + burned) and
//! `agora ledger verify` passes on the market's ledger once it is stopped.

mod messages;
mod proc_stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use agora_client::spec::parse_duration_ms;
use agora_client::{Buyer, JobRequest};
use agora_core::{Fuel, Hash, Price};
use agora_devnet::{FaultMode, FaultPlan, LocalNet, LocalNetConfig};
use agora_proto::{JobSpec, OrderState, VerifyPolicy};
use anyhow::Context;
use serde_json::{Value, json};

use messages::{Counts, ProviderTally};
use proc_stats::{Memory, Spread};

/// How often the market's memory is sampled during the load; the providers' every
/// [`PROVIDER_SAMPLE_EVERY`] samples.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const PROVIDER_SAMPLE_EVERY: u32 = 2;
/// The targets of issue 17, reported as met or missed (a benchmark reports; it does not
/// fail on a figure).
const TARGET_JOBS_PER_S_RATIO: f64 = 0.8;
const TARGET_P50_RATIO: f64 = 2.0;
const TARGET_IDLE_RSS_MIB: f64 = 30.0;

/// Arguments of `agora bench scale`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Provider agents of the big network.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub providers: u32,
    /// Provider agents of the baseline network run first under the same load (0 skips it).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub baseline_providers: u32,
    /// Jobs per network (the same count for both, so both do the same work).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: u32,
    /// Jobs each network runs before the measured ones, from the same buyers, so the
    /// figures describe a running market: each provider builds its WASM executor on its
    /// first job (see docs/provider-agent.md), a one-off cost a short run would otherwise
    /// count as throughput. Checked like the measured jobs (settled or refunded), not timed.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(0..))]
    pub warmup: u32,
    /// Buyers submitting at once; each waits for its order to end before the next.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub buyers: u32,
    /// Share of the providers that are faulty on purpose (sign a wrong result), rounded
    /// to the nearest count and spread over the price ladder.
    #[arg(long, default_value_t = 0.1)]
    pub faulty: f64,
    /// The verification policy of every order.
    #[arg(long, default_value = "adaptive", value_name = "POLICY")]
    pub verify: VerifyPolicy,
    /// Kill a share of the big network's providers (SIGKILL) every --churn-every and
    /// restart them --churn-down later, while the jobs run.
    #[arg(long)]
    pub churn: bool,
    /// How often providers are killed under --churn (e.g. 60s, 5s).
    #[arg(long, value_parser = parse_duration_ms, default_value = "60s", value_name = "DURATION")]
    pub churn_every: u64,
    /// How long a killed provider stays down before it is restarted.
    #[arg(long, value_parser = parse_duration_ms, default_value = "5s", value_name = "DURATION")]
    pub churn_down: u64,
    /// Share of the providers killed each time (at least one).
    #[arg(long, default_value_t = 0.1)]
    pub churn_fraction: f64,
    /// How long each network may take to start [default: 60 s plus 1 s per provider].
    #[arg(long, value_parser = parse_duration_ms, value_name = "DURATION")]
    pub ready_timeout: Option<u64>,
    /// How long the providers sit idle before their memory is read.
    #[arg(long, value_parser = parse_duration_ms, default_value = "5s", value_name = "DURATION")]
    pub idle: u64,
    /// The longest the jobs of one network may take; past it the run fails, naming the
    /// jobs still open.
    #[arg(long, value_parser = parse_duration_ms, default_value = "30m", value_name = "DURATION")]
    pub max_duration: u64,
    /// Where the networks' data go [default: a temporary directory, removed after].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if !(0.0..1.0).contains(&self.faulty) {
            anyhow::bail!("--faulty {} must be a share in [0, 1)", self.faulty);
        }
        if !(self.churn_fraction > 0.0 && self.churn_fraction <= 1.0) {
            anyhow::bail!(
                "--churn-fraction {} must be a share in (0, 1]",
                self.churn_fraction
            );
        }
        if self.churn && self.churn_every == 0 {
            anyhow::bail!("--churn-every must be above zero");
        }
        Ok(())
    }

    /// Progress, on stderr even with --json (stdout carries the report alone): a run of
    /// a hundred processes takes minutes.
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Runs the benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.check()?;
    let temp = tempfile::Builder::new()
        .prefix("agora-bench-scale-")
        .tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let module = dir.join("hello.wasm");
    std::fs::write(&module, wat::parse_str(super::bench_e2e::HELLO_WAT)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    if args.baseline_providers > 0 {
        let plan = Plan::new(&args, args.baseline_providers, false, &dir);
        runs.push(one_network(&args, &plan, &module, &runtime)?);
    }
    let plan = Plan::new(&args, args.providers, args.churn, &dir);
    runs.push(one_network(&args, &plan, &module, &runtime)?);
    let report = full_report(&args, &runs);
    if args.json {
        outln!("{report}");
    } else {
        print_human(&report);
    }
    let problems: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.problems.iter().map(String::as_str))
        .collect();
    if problems.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("error: the scale run is NOT sound:");
    for problem in problems {
        eprintln!("  - {problem}");
    }
    Ok(ExitCode::FAILURE)
}

/// One network to run: its size, its faulty providers, whether it churns, where it lives.
struct Plan {
    providers: usize,
    faulty: Vec<usize>,
    churn: Option<Churn>,
    dir: PathBuf,
}

#[derive(Clone, Copy)]
struct Churn {
    every: Duration,
    down: Duration,
    per_round: usize,
}

impl Plan {
    fn new(args: &Args, providers: u32, churn: bool, dir: &Path) -> Plan {
        let n = providers as usize;
        let faulty = faulty_indices(n, args.faulty);
        let churn = churn.then(|| Churn {
            every: Duration::from_millis(args.churn_every),
            down: Duration::from_millis(args.churn_down),
            per_round: ((n as f64 * args.churn_fraction).ceil() as usize).clamp(1, n),
        });
        Plan {
            providers: n,
            faulty,
            churn,
            dir: dir.join(format!("net-{n}")),
        }
    }
}

/// The faulty providers among `n`: the nearest count to `share` of them (never all),
/// spread over the price ladder (1, 11, 21, ... for 10 of 100), so cheap and dear
/// providers alike cheat; the cheapest is honest.
fn faulty_indices(n: usize, share: f64) -> Vec<usize> {
    let k = ((n as f64 * share).round() as usize).min(n.saturating_sub(1));
    (0..k).map(|i| (i * n / k.max(1) + 1).min(n - 1)).collect()
}

/// What one network did.
struct RunReport {
    json: Value,
    problems: Vec<String>,
}

fn one_network(
    args: &Args,
    plan: &Plan,
    module: &Path,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<RunReport> {
    let n = plan.providers;
    let mut config = LocalNetConfig::new(
        std::env::current_exe().context("finding the agora binary")?,
        &plan.dir,
        n,
    );
    config.buyers = args.buyers as usize;
    config.shared_caches = true;
    config.provider_stake = agora_core::Amount::agr(1_000);
    config.ready_timeout = args
        .ready_timeout
        .map(Duration::from_millis)
        .unwrap_or_else(|| crate::cmd::devnet::default_ready_timeout(n));
    // Enough declared slots that every buyer's job finds a free one at once on either
    // network (as in `agora bench e2e`): the figures are the market loop's, not queueing
    // behind a few busy providers. The jobs are WASM, so no provider probes containers.
    let cpus = args.buyers.div_ceil(n as u32) + 2;
    config.provider_args = vec!["--cpus".into(), cpus.to_string(), "--no-containers".into()];
    config.base_price = Price(20_000_000);
    config.faulty = plan
        .faulty
        .iter()
        .map(|&i| (i, FaultPlan::always(FaultMode::WrongOutput)))
        .collect();
    args.note(&format!(
        "{n} providers ({} faulty): starting...",
        plan.faulty.len()
    ));
    let started = Instant::now();
    let mut net = LocalNet::start(&config)?;
    runtime.block_on(net.wait_for_providers())?;
    let startup_s = started.elapsed().as_secs_f64();
    args.note(&format!(
        "{n} providers ready in {startup_s:.1} s; idle for {} ms...",
        args.idle
    ));
    std::thread::sleep(Duration::from_millis(args.idle));
    let idle = idle_memory(&net);
    let load = runtime.block_on(load(&mut net, args, plan, module));
    let load = match load {
        Ok(load) => load,
        Err(e) => {
            net.stop();
            return Err(e.context(format!("the {n}-provider network")));
        }
    };
    net.stop();
    let mut tally = load.tally;
    for (i, p) in net.providers.iter().enumerate() {
        tally.read(i, &p.data_dir);
    }
    let providers_msgs = tally.total().since(&load.providers_before);
    let audit = audit_ledger(&config.agora, net.ledger_dir());
    let mut problems = load.problems;
    problems.extend(audit.problems.iter().cloned());
    let json = run_json(RunFigures {
        plan,
        startup_s,
        idle: &idle,
        load: &load.figures,
        market_msgs: load.market_msgs,
        providers_msgs,
        audit: &audit.json,
    });
    Ok(RunReport { json, problems })
}

/// The providers' and the market's memory after the idle wait.
fn idle_memory(net: &LocalNet) -> Value {
    let providers: Vec<(Memory, Option<u64>)> = net
        .providers
        .iter()
        .filter_map(|p| Some((proc_stats::memory(p.pid)?, proc_stats::pss_kib(p.pid))))
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    json!({
        "providers_read": providers.len(),
        "provider_rss_mib": Spread::of(providers.iter().map(|(m, _)| mib(m.rss_kib))),
        "provider_anon_mib": Spread::of(providers.iter().map(|(m, _)| mib(m.anon_kib))),
        "provider_file_mib": Spread::of(providers.iter().map(|(m, _)| mib(m.file_kib))),
        "provider_pss_mib": Spread::of(providers.iter().filter_map(|(_, p)| p.map(mib))),
        "market_rss_mib": proc_stats::memory(net.market_pid).map(|m| mib(m.rss_kib)),
    })
}

/// What the load phase measured, and what went wrong in it.
struct Load {
    figures: Value,
    market_msgs: Counts,
    providers_before: Counts,
    tally: ProviderTally,
    problems: Vec<String>,
}

/// How one job ended, as its buyer saw it.
struct JobRecord {
    latency: Duration,
    outcome: Result<(Hash, OrderState, Option<String>), String>,
}

/// The trivial job, uploaded once, submitted again and again.
struct Bench {
    request: JobRequest,
    job: JobSpec,
}

impl Bench {
    /// Submits an order labelled `label` as `buyer` and follows it until it ends.
    async fn run(&self, buyer: &Buyer, label: &str) -> JobRecord {
        let mut request = self.request.clone();
        request.label = label.to_string();
        let started = Instant::now();
        let outcome = async {
            let body = request.order_request(self.job.clone(), agora_client::buyer::now_ms())?;
            let submitted = buyer.submit(body).await?;
            let view = buyer.wait(&submitted.order_id, |_| {}).await?;
            anyhow::Ok((view.order_id, view.state, view.refund_reason))
        }
        .await
        .map_err(|e| format!("{e:#}"));
        JobRecord {
            latency: started.elapsed(),
            outcome,
        }
    }
}

/// Memory and CPU samples of the load phase.
#[derive(Default)]
struct Samples {
    market_rss_kib: Vec<u64>,
    /// Per provider index: the largest RSS seen, over all its processes.
    provider_peak_kib: BTreeMap<usize, u64>,
    provider_anon_peak_kib: BTreeMap<usize, u64>,
}

impl Samples {
    fn take(&mut self, net: &LocalNet, providers_too: bool) {
        if let Some(m) = proc_stats::memory(net.market_pid) {
            self.market_rss_kib.push(m.rss_kib);
        }
        if providers_too {
            for (i, p) in net.providers.iter().enumerate() {
                if let Some(m) = proc_stats::memory(p.pid) {
                    let peak = self.provider_peak_kib.entry(i).or_default();
                    *peak = (*peak).max(m.rss_kib).max(m.hwm_kib);
                    let anon = self.provider_anon_peak_kib.entry(i).or_default();
                    *anon = (*anon).max(m.anon_kib);
                }
            }
        }
    }
}

/// Kills and restarts providers round robin while the jobs run.
struct Churner {
    churn: Churn,
    next_victim: usize,
    /// Killed providers and when they come back.
    down: Vec<(usize, Instant)>,
    kills: usize,
    restarts: usize,
}

impl Churner {
    /// Kills the next providers in turn; returns their indices.
    fn kill_round(
        &mut self,
        net: &mut LocalNet,
        tally: &mut ProviderTally,
    ) -> anyhow::Result<Vec<usize>> {
        let n = net.providers.len();
        let mut killed = Vec::new();
        for _ in 0..self.churn.per_round {
            let i = self.next_victim % n;
            self.next_victim += 1;
            if self.down.iter().any(|(d, _)| *d == i) {
                continue;
            }
            // Its counts up to its last rewrite survive it.
            tally.read(i, &net.providers[i].data_dir);
            net.kill_provider(i)?;
            killed.push(i);
            self.kills += 1;
            self.down.push((i, Instant::now() + self.churn.down));
        }
        Ok(killed)
    }

    fn restart_due(&mut self, net: &mut LocalNet, all: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.down.drain(..).partition(|(_, at)| all || *at <= now);
        self.down = later;
        for (i, _) in due {
            net.restart_provider(i)?;
            self.restarts += 1;
        }
        Ok(())
    }
}

/// Runs the jobs: `args.buyers` buyers, each submitting the next job as soon as its last
/// one ended, until `args.jobs` have been submitted; samples memory meanwhile, churns
/// providers if the plan says so, and checks at the end that nothing is left open.
async fn load(net: &mut LocalNet, args: &Args, plan: &Plan, module: &Path) -> anyhow::Result<Load> {
    let client = net.client()?;
    let mut buyers = Vec::new();
    for key in &net.buyer_keys {
        buyers.push(Arc::new(Buyer::connect(key.clone(), &net.http_url).await?));
    }
    let mut request = JobRequest::new(module);
    request.fuel_budget = Fuel(10_000_000);
    request.memory_bytes = 16 << 20;
    request.verify = args.verify;
    let job = buyers[0].upload_job(&request).await?;
    let bench = Arc::new(Bench { request, job });
    let mut problems = Vec::new();
    if args.warmup > 0 {
        args.note(&format!(
            "{} providers: {} warm-up jobs (not measured)...",
            plan.providers, args.warmup
        ));
        let warm = Outcomes::of(&warm_up(&buyers, &bench, args.warmup).await?);
        let lost = args.warmup as usize - warm.settled - warm.refunded;
        if lost > 0 {
            problems.push(format!(
                "{} providers: {lost} of {} warm-up jobs did not end settled or refunded (first error: {})",
                plan.providers,
                args.warmup,
                warm.errors.first().map_or("none", String::as_str)
            ));
        }
    }

    let mut tally = ProviderTally::default();
    for (i, p) in net.providers.iter().enumerate() {
        tally.read(i, &p.data_dir);
    }
    let providers_before = tally.total();
    let market_before = Counts::of_market(&client.metrics_text().await?);
    let cpu_before = proc_stats::cpu_seconds(net.market_pid).unwrap_or(0.0);
    let mut churner = plan.churn.map(|churn| Churner {
        churn,
        next_victim: 0,
        down: Vec::new(),
        kills: 0,
        restarts: 0,
    });

    args.note(&format!(
        "{} providers: {} jobs from {} buyers{}...",
        plan.providers,
        args.jobs,
        args.buyers,
        if churner.is_some() {
            ", with churn"
        } else {
            ""
        }
    ));
    let started = Instant::now();
    let next = Arc::new(AtomicU32::new(0));
    let mut running = spawn_buyers(&buyers, &bench, &next, args.jobs, "scale");
    let mut samples = Samples::default();
    let mut sample_tick = tokio::time::interval(SAMPLE_EVERY);
    let churn_every = plan.churn.map_or(Duration::from_secs(3600), |c| c.every);
    let mut churn_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + churn_every, churn_every);
    let deadline = tokio::time::sleep(Duration::from_millis(args.max_duration));
    tokio::pin!(deadline);
    let mut records = Vec::new();
    let mut ticks = 0u32;
    let mut timed_out = false;
    while !running.is_empty() {
        tokio::select! {
            joined = running.join_next() => {
                if let Some(joined) = joined {
                    records.extend(joined.context("a buyer task panicked")?);
                }
            }
            _ = sample_tick.tick() => {
                ticks += 1;
                samples.take(net, ticks.is_multiple_of(PROVIDER_SAMPLE_EVERY));
                if let Some(churner) = churner.as_mut() {
                    churner.restart_due(net, false)?;
                }
                let done = next.load(Ordering::Relaxed).min(args.jobs);
                if ticks.is_multiple_of(10) {
                    args.note(&format!("  {done}/{} submitted, {:.0} s", args.jobs, started.elapsed().as_secs_f64()));
                }
            }
            _ = churn_tick.tick(), if churner.is_some() => {
                if let Some(churner) = churner.as_mut() {
                    let killed = churner.kill_round(net, &mut tally)?;
                    args.note(&format!("  churn: SIGKILLed providers {killed:?}"));
                }
            }
            _ = &mut deadline => {
                timed_out = true;
                running.abort_all();
                while let Some(joined) = running.join_next().await {
                    if let Ok(done) = joined {
                        records.extend(done);
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    samples.take(net, true);
    let cpu_s = proc_stats::cpu_seconds(net.market_pid).unwrap_or(f64::NAN) - cpu_before;
    let market_hwm = proc_stats::memory(net.market_pid).map(|m| m.hwm_kib);
    if let Some(churner) = churner.as_mut() {
        churner.restart_due(net, true)?;
    }
    let metrics = client.metrics_text().await?;
    let market_msgs = Counts::of_market(&metrics).since(&market_before);

    let outcome = Outcomes::of(&records);
    let submitted = next.load(Ordering::Relaxed).min(args.jobs);
    let lost = args.jobs as usize - outcome.settled - outcome.refunded;
    if timed_out {
        problems.push(format!(
            "{} providers: the jobs took longer than --max-duration ({} ms); {submitted} of {} submitted",
            plan.providers, args.max_duration, args.jobs
        ));
    }
    if lost > 0 {
        problems.push(format!(
            "{} providers: {lost} of {} jobs did not end settled or refunded ({} errors; first: {})",
            plan.providers,
            args.jobs,
            outcome.errors.len(),
            outcome.errors.first().map_or("none", String::as_str)
        ));
    }
    for state in ["escrowed", "matched", "running", "verifying"] {
        let open = messages::sample(&metrics, "agora_orders", Some(("state", state)));
        if open > 0.0 {
            problems.push(format!(
                "{} providers: the market still has {open} order(s) {state} after every buyer finished",
                plan.providers
            ));
        }
    }
    let jobs_done = (outcome.settled + outcome.refunded) as f64;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let figures = json!({
        "jobs": args.jobs,
        "buyers": args.buyers,
        "seconds": elapsed.as_secs_f64(),
        "settled": outcome.settled,
        "refunded": outcome.refunded,
        "refund_reasons": outcome.refund_reasons,
        "errors": outcome.errors.len(),
        "lost_or_stuck": lost,
        "jobs_per_s": outcome.settled as f64 / elapsed.as_secs_f64(),
        "latency_p50_ms": percentile(&outcome.settled_latencies, 0.5),
        "latency_p95_ms": percentile(&outcome.settled_latencies, 0.95),
        "latency_max_ms": percentile(&outcome.settled_latencies, 1.0),
        "market": {
            "cpu_s": cpu_s,
            "cpu_ms_per_job": cpu_s * 1e3 / jobs_done.max(1.0),
            "cpu_share_of_one_core": cpu_s / elapsed.as_secs_f64(),
            "rss_peak_mib": market_hwm.map(mib),
            "rss_avg_mib": Spread::of(samples.market_rss_kib.iter().map(|&k| mib(k))).mean,
        },
        "provider_rss_under_load_mib": Spread::of(samples.provider_peak_kib.values().map(|&k| mib(k))),
        "provider_anon_under_load_mib": Spread::of(samples.provider_anon_peak_kib.values().map(|&k| mib(k))),
        "churn": churner.as_ref().map(|c| json!({
            "every_s": c.churn.every.as_secs_f64(),
            "down_s": c.churn.down.as_secs_f64(),
            "per_round": c.churn.per_round,
            "kills": c.kills,
            "restarts": c.restarts,
        })),
    });
    Ok(Load {
        figures,
        market_msgs,
        providers_before,
        tally,
        problems,
    })
}

/// Runs `jobs` orders from `buyers` as fast as each buyer's last order ends; returns how
/// each ended.
async fn warm_up(
    buyers: &[Arc<Buyer>],
    bench: &Arc<Bench>,
    jobs: u32,
) -> anyhow::Result<Vec<JobRecord>> {
    let next = Arc::new(AtomicU32::new(0));
    let mut running = spawn_buyers(buyers, bench, &next, jobs, "scale-warmup");
    let mut records = Vec::new();
    while let Some(joined) = running.join_next().await {
        records.extend(joined.context("a warm-up buyer task panicked")?);
    }
    Ok(records)
}

/// One task per buyer, each submitting the next of `jobs` orders (numbered by `next`,
/// labelled `PREFIX-i`) as soon as its last one ended; each returns its records.
fn spawn_buyers(
    buyers: &[Arc<Buyer>],
    bench: &Arc<Bench>,
    next: &Arc<AtomicU32>,
    jobs: u32,
    prefix: &'static str,
) -> tokio::task::JoinSet<Vec<JobRecord>> {
    let mut running = tokio::task::JoinSet::new();
    for buyer in buyers {
        let (buyer, bench, next) = (buyer.clone(), bench.clone(), next.clone());
        running.spawn(async move {
            let mut records = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return records;
                }
                records.push(bench.run(&buyer, &format!("{prefix}-{i}")).await);
            }
        });
    }
    running
}

/// The buyers' records summed up.
struct Outcomes {
    settled: usize,
    refunded: usize,
    refund_reasons: BTreeMap<String, usize>,
    errors: Vec<String>,
    settled_latencies: Vec<Duration>,
}

impl Outcomes {
    fn of(records: &[JobRecord]) -> Outcomes {
        let mut out = Outcomes {
            settled: 0,
            refunded: 0,
            refund_reasons: BTreeMap::new(),
            errors: Vec::new(),
            settled_latencies: Vec::new(),
        };
        for record in records {
            match &record.outcome {
                Ok((_, OrderState::Settled, _)) => {
                    out.settled += 1;
                    out.settled_latencies.push(record.latency);
                }
                Ok((_, OrderState::Refunded, reason)) => {
                    out.refunded += 1;
                    let cause = refund_cause(reason.as_deref().unwrap_or("no reason given"));
                    *out.refund_reasons.entry(cause).or_default() += 1;
                }
                Ok((id, state, _)) => out.errors.push(format!("order {id} ended {state}")),
                Err(e) => out.errors.push(e.clone()),
            }
        }
        out.settled_latencies.sort();
        out
    }
}

/// A refund reason with account ids blanked out, so equal causes count together.
fn refund_cause(reason: &str) -> String {
    let words: Vec<&str> = reason
        .split_whitespace()
        .map(|w| {
            let is_account = w.len() >= 40 && w.starts_with("ag");
            if is_account { "<provider>" } else { w }
        })
        .collect();
    words.join(" ").chars().take(200).collect()
}

/// The ledger audit: `agora ledger verify` as a process, and the supply it replays.
struct Audit {
    json: Value,
    problems: Vec<String>,
}

fn audit_ledger(agora: &Path, ledger_dir: &Path) -> Audit {
    let mut problems = Vec::new();
    let command = std::process::Command::new(agora)
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(ledger_dir)
        .output();
    let command_ok = match &command {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            problems.push(format!(
                "`agora ledger verify --data-dir {}` failed ({}): {}{}",
                ledger_dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            false
        }
        Err(e) => {
            problems.push(format!("could not run `agora ledger verify`: {e}"));
            false
        }
    };
    let supply = match agora_ledger::verify(ledger_dir) {
        Ok(report) => {
            let s = report.supply;
            let held = [s.balances, s.escrow, s.stakes, s.burned]
                .into_iter()
                .try_fold(agora_core::Amount::ZERO, |sum, a| sum.checked_add(a).ok());
            if held != Some(s.minted) {
                problems.push(format!(
                    "supply NOT conserved: minted {} but balances {} + escrow {} + stakes {} + burned {} = {:?}",
                    s.minted, s.balances, s.escrow, s.stakes, s.burned, held
                ));
            }
            if !s.escrow.is_zero() {
                problems.push(format!(
                    "{} is still locked in escrow after every order ended",
                    s.escrow
                ));
            }
            json!({
                "height": report.height,
                "txs": report.txs,
                "minted": s.minted.0,
                "balances": s.balances.0,
                "escrow": s.escrow.0,
                "stakes": s.stakes.0,
                "burned": s.burned.0,
                "conserved": held == Some(s.minted),
            })
        }
        Err(e) => {
            problems.push(format!("replaying the ledger failed: {e}"));
            Value::Null
        }
    };
    Audit {
        json: json!({ "ledger_verify_ok": command_ok, "supply": supply }),
        problems,
    }
}

struct RunFigures<'a> {
    plan: &'a Plan,
    startup_s: f64,
    idle: &'a Value,
    load: &'a Value,
    market_msgs: Counts,
    providers_msgs: Counts,
    audit: &'a Value,
}

fn run_json(f: RunFigures<'_>) -> Value {
    let mut out = f.load.clone();
    let jobs = out["jobs"].as_f64().unwrap_or(1.0);
    let market = f.market_msgs;
    let seconds = out["seconds"].as_f64().unwrap_or(1.0);
    let sent = market.http_requests + market.p2p_sent + f.providers_msgs.p2p_sent;
    out["providers"] = json!(f.plan.providers);
    out["faulty_providers"] = json!(f.plan.faulty.len());
    out["startup_s"] = json!(f.startup_s);
    out["idle"] = f.idle.clone();
    out["market_messages"] = json!(market);
    out["provider_messages"] = json!(f.providers_msgs);
    out["messages_per_job"] = json!({
        "total_sent": sent / jobs,
        "http_requests": market.http_requests / jobs,
        "market_p2p_sent": market.p2p_sent / jobs,
        "providers_p2p_sent": f.providers_msgs.p2p_sent / jobs,
        "gossip_published": (market.gossip_published + f.providers_msgs.gossip_published) / jobs,
        "gossip_deliveries": (market.gossip_received + f.providers_msgs.gossip_received) / jobs,
    });
    out["gossip_published_per_s"] =
        json!((market.gossip_published + f.providers_msgs.gossip_published) / seconds);
    out["ledger"] = f.audit.clone();
    out
}

fn full_report(args: &Args, runs: &[RunReport]) -> Value {
    let rows: Vec<Value> = runs.iter().map(|r| r.json.clone()).collect();
    let mut report = json!({
        "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "verify": args.verify.to_string(),
        "faulty_share": args.faulty,
        "churn": args.churn,
        "runs": rows,
    });
    if let [base, big] = rows.as_slice() {
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let jobs_ratio = f(big, "jobs_per_s") / f(base, "jobs_per_s");
        let p50_ratio = f(big, "latency_p50_ms") / f(base, "latency_p50_ms");
        report["ratios"] = json!({
            "jobs_per_s": jobs_ratio,
            "latency_p50": p50_ratio,
            "latency_p95": f(big, "latency_p95_ms") / f(base, "latency_p95_ms"),
            "market_cpu_ms_per_job": big["market"]["cpu_ms_per_job"].as_f64().unwrap_or(f64::NAN)
                / base["market"]["cpu_ms_per_job"].as_f64().unwrap_or(f64::NAN),
        });
        report["targets"] = json!({
            "jobs_per_s_ratio_at_least": TARGET_JOBS_PER_S_RATIO,
            "jobs_per_s_met": jobs_ratio >= TARGET_JOBS_PER_S_RATIO,
            "p50_ratio_at_most": TARGET_P50_RATIO,
            "p50_met": p50_ratio <= TARGET_P50_RATIO,
        });
    }
    if let Some(big) = rows.last() {
        let idle = big["idle"]["provider_rss_mib"]["median"]
            .as_f64()
            .unwrap_or(f64::NAN);
        report["idle_rss_target"] = json!({
            "at_most_mib": TARGET_IDLE_RSS_MIB,
            "median_vm_rss_mib": idle,
            "met": idle <= TARGET_IDLE_RSS_MIB,
        });
    }
    report
}

/// Nearest-rank percentile of sorted durations, in ms (0 for none).
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn print_human(report: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    for run in report["runs"].as_array().into_iter().flatten() {
        outln!(
            "{} providers ({} faulty, {} verification): ready in {:.1} s",
            run["providers"],
            run["faulty_providers"],
            report["verify"].as_str().unwrap_or("?"),
            f(&run["startup_s"])
        );
        outln!(
            "  {} jobs in {:.1} s: {} settled, {} refunded, {} lost or stuck; {:.1} jobs/s; submit → settled p50 {:.1} ms, p95 {:.1} ms",
            run["jobs"],
            f(&run["seconds"]),
            run["settled"],
            run["refunded"],
            run["lost_or_stuck"],
            f(&run["jobs_per_s"]),
            f(&run["latency_p50_ms"]),
            f(&run["latency_p95_ms"])
        );
        let m = &run["market"];
        outln!(
            "  market: {:.1} CPU s ({:.2} ms/job, {:.0}% of a core), RSS peak {:.1} MiB, avg {:.1} MiB",
            f(&m["cpu_s"]),
            f(&m["cpu_ms_per_job"]),
            f(&m["cpu_share_of_one_core"]) * 100.0,
            f(&m["rss_peak_mib"]),
            f(&m["rss_avg_mib"])
        );
        let per = &run["messages_per_job"];
        outln!(
            "  messages per job: {:.1} sent ({:.1} HTTP requests, {:.1} market p2p, {:.1} provider p2p); gossip {:.1} published, {:.1} delivered",
            f(&per["total_sent"]),
            f(&per["http_requests"]),
            f(&per["market_p2p_sent"]),
            f(&per["providers_p2p_sent"]),
            f(&per["gossip_published"]),
            f(&per["gossip_deliveries"])
        );
        let idle = &run["idle"];
        outln!(
            "  provider memory idle: VmRSS median {:.1} MiB (max {:.1}), anon {:.1}, PSS {:.1}; under load: VmRSS median {:.1} MiB (max {:.1})",
            f(&idle["provider_rss_mib"]["median"]),
            f(&idle["provider_rss_mib"]["max"]),
            f(&idle["provider_anon_mib"]["median"]),
            f(&idle["provider_pss_mib"]["median"]),
            f(&run["provider_rss_under_load_mib"]["median"]),
            f(&run["provider_rss_under_load_mib"]["max"])
        );
        if !run["churn"].is_null() {
            outln!(
                "  churn: {} kills, {} restarts ({} every {:.0} s, down {:.0} s)",
                run["churn"]["kills"],
                run["churn"]["restarts"],
                run["churn"]["per_round"],
                f(&run["churn"]["every_s"]),
                f(&run["churn"]["down_s"])
            );
        }
        let ledger = &run["ledger"];
        outln!(
            "  ledger: verify {}, supply conserved {}, escrow left {}",
            if ledger["ledger_verify_ok"] == true {
                "ok"
            } else {
                "FAILED"
            },
            ledger["supply"]["conserved"],
            ledger["supply"]["escrow"]
        );
    }
    if !report["ratios"].is_null() {
        let r = &report["ratios"];
        let t = &report["targets"];
        let met = |v: &Value| if *v == true { "met" } else { "MISSED" };
        outln!(
            "big vs baseline: jobs/s {:.2}× (target ≥ {}: {}), p50 {:.2}× (target ≤ {}: {}), p95 {:.2}×, market CPU per job {:.2}×",
            f(&r["jobs_per_s"]),
            TARGET_JOBS_PER_S_RATIO,
            met(&t["jobs_per_s_met"]),
            f(&r["latency_p50"]),
            TARGET_P50_RATIO,
            met(&t["p50_met"]),
            f(&r["latency_p95"]),
            f(&r["market_cpu_ms_per_job"])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_causes_count_together_whoever_failed() {
        let a = "attempt 3 by agBZAAgZJmhehANMaPpaRTS6vnMgVdnsccHp7b8mvRAK6P failed (the provider disconnected) and no attempts left";
        let b = "attempt 3 by ag56gzohijrAsM6tgsaUfu1ZiUHTuFfz3s5Tcwr1TnJ1rg failed (the provider disconnected) and no attempts left";
        assert_eq!(refund_cause(a), refund_cause(b));
        assert!(refund_cause(a).contains("<provider> failed (the provider disconnected)"));
    }

    #[test]
    fn faulty_providers_are_spread_and_the_cheapest_is_honest() {
        assert_eq!(
            faulty_indices(100, 0.1),
            vec![1, 11, 21, 31, 41, 51, 61, 71, 81, 91]
        );
        assert_eq!(faulty_indices(12, 0.1), vec![1]);
        assert_eq!(faulty_indices(4, 0.1), Vec::<usize>::new());
        assert_eq!(faulty_indices(2, 0.9), vec![1]);
        assert_eq!(faulty_indices(1, 0.5), Vec::<usize>::new());
    }
}
