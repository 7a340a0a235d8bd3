//! `agora bench market`: instant matches per second and auction close time on a large,
//! heterogeneous book, and the indexed engine against a brute-force scan of the same book.
//!
//! The workload is synthetic and seeded (SplitMix64, so a seed gives the same book and
//! orders on every machine): providers with two machines each, a mix of CPU and GPU models,
//! regions, operators, tiers, stakes and reputations; orders that mostly fit, with
//! constraints on region, features, GPU model and memory, replicas and distinctness. The
//! clock is simulated (1 ms per order), so expiry and the price index behave as in a market
//! clearing a thousand orders a second, while the timings are real wall-clock time on one
//! core.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agora_core::{AccountId, Amount, Fuel, Hash, Price};
use agora_market::reference::reference_match;
use agora_market::resources::GIB;
use agora_market::{
    Ask, AskId, AttributeConstraint, AuctionTerms, Bid, Demand, GpuDemand, GpuGroup, Market,
    MatchId, MatchOutcome, Order, OrderId, PricingRule, ReleaseReason, ReputationEvent,
    Requirements, ResourceClass, Resources,
};
use anyhow::{Context, bail};
use serde::Serialize;

/// Arguments of `agora bench market`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Asks in the book (two per provider).
    #[arg(long, default_value_t = 100_000)]
    asks: usize,
    /// Instant orders to match.
    #[arg(long, default_value_t = 300_000)]
    orders: usize,
    /// Live matches kept before the oldest is released (releases interleave with orders).
    /// More live matches fill up more of the cheap end of the book, which every order
    /// then scans past.
    #[arg(long, default_value_t = 2_000)]
    live: usize,
    /// Sealed bids per auction.
    #[arg(long, default_value_t = 1_000)]
    bids: usize,
    /// Auctions to close (the median close time is reported).
    #[arg(long, default_value_t = 50)]
    auctions: usize,
    /// Orders matched by both the indexed engine and the brute-force scan.
    #[arg(long, default_value_t = 200)]
    reference_orders: usize,
    /// Seed of the synthetic book and orders.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `agora bench market`.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.asks < 2 || args.orders == 0 {
        bail!("--asks must be at least 2 and --orders at least 1");
    }
    let mut rng = SplitMix64(args.seed);
    let started = Instant::now();
    let mut market = build_book(&mut rng, args.asks)?;
    let build_ms = started.elapsed().as_secs_f64() * 1e3;
    progress(
        &args,
        &format!(
            "book: {} asks, {} providers in {build_ms:.0} ms",
            market.ask_count(),
            market.provider_count()
        ),
    );

    let reference = compare_with_reference(&market, &mut rng, args.reference_orders);
    progress(
        &args,
        &format!("brute force vs index: {:.1}x", reference.speedup),
    );
    let instant = run_instant(&mut market, &mut rng, &args)?;
    progress(
        &args,
        &format!("instant: {:.0} orders/s", instant.orders_per_s),
    );
    let auction = run_auctions(&mut market, &mut rng, &args)?;
    let (explain_us, explanation) = time_explain(&market, &mut rng);
    market
        .audit()
        .map_err(anyhow::Error::msg)
        .context("market invariants after the benchmark")?;

    let report = Report {
        asks: args.asks,
        providers: market.provider_count(),
        seed: args.seed,
        build_ms,
        orders: instant.orders,
        filled: instant.filled,
        no_match: instant.no_match,
        releases: instant.releases,
        orders_per_s: instant.orders_per_s,
        match_p50_us: instant.p50_us,
        match_p99_us: instant.p99_us,
        no_match_explain_p50_us: instant.explain_p50_us,
        explain_us,
        explanation,
        auction_bids: auction.bids,
        auction_close_p50_us: auction.close_p50_us,
        auction_close_max_us: auction.close_max_us,
        bid_submit_p50_us: auction.bid_p50_us,
        reference,
        targets: Targets {
            orders_per_s: 200_000.0,
            match_p50_us: 5.0,
            auction_close_us: 100.0,
        },
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Report {
    asks: usize,
    providers: u32,
    seed: u64,
    build_ms: f64,
    orders: usize,
    filled: usize,
    no_match: usize,
    releases: usize,
    orders_per_s: f64,
    match_p50_us: f64,
    match_p99_us: f64,
    no_match_explain_p50_us: Option<f64>,
    explain_us: f64,
    explanation: String,
    auction_bids: usize,
    auction_close_p50_us: f64,
    auction_close_max_us: f64,
    bid_submit_p50_us: f64,
    reference: ReferenceReport,
    targets: Targets,
}

#[derive(Serialize)]
struct Targets {
    orders_per_s: f64,
    match_p50_us: f64,
    auction_close_us: f64,
}

#[derive(Serialize)]
struct ReferenceReport {
    orders: usize,
    indexed_us_per_order: f64,
    brute_force_us_per_order: f64,
    speedup: f64,
    disagreements: usize,
}

fn progress(args: &BenchArgs, line: &str) {
    if !args.json {
        eprintln!("  {line}");
    }
}

fn print_human(r: &Report) {
    let mark = |ok: bool| if ok { "ok" } else { "MISSED" };
    outln!(
        "market benchmark: {} asks, {} providers (seed {})",
        r.asks,
        r.providers,
        r.seed
    );
    outln!(
        "  instant: {:.0} orders/s [{} ≥ {:.0}], p50 {:.2} µs [{} ≤ {} µs], p99 {:.2} µs",
        r.orders_per_s,
        mark(r.orders_per_s >= r.targets.orders_per_s),
        r.targets.orders_per_s,
        r.match_p50_us,
        mark(r.match_p50_us <= r.targets.match_p50_us),
        r.targets.match_p50_us,
        r.match_p99_us
    );
    outln!(
        "           {} orders: {} filled, {} no match, {} releases",
        r.orders,
        r.filled,
        r.no_match,
        r.releases
    );
    outln!(
        "  explain an impossible order over the whole book: {:.0} µs",
        r.explain_us
    );
    if let Some(line) = r.explanation.lines().next() {
        outln!("           {line}");
    }
    if let Some(us) = r.no_match_explain_p50_us {
        outln!("           a no-match with its explanation: p50 {us:.0} µs");
    }
    outln!(
        "  auction: close with {} bids p50 {:.1} µs [{} ≤ {} µs] (max {:.1} µs), bid submit p50 {:.2} µs",
        r.auction_bids,
        r.auction_close_p50_us,
        mark(r.auction_close_p50_us <= r.targets.auction_close_us),
        r.targets.auction_close_us,
        r.auction_close_max_us,
        r.bid_submit_p50_us
    );
    outln!(
        "  brute force {:.1} µs/order vs indexed {:.2} µs/order: {:.0}x ({} orders, {} disagreements)",
        r.reference.brute_force_us_per_order,
        r.reference.indexed_us_per_order,
        r.reference.speedup,
        r.reference.orders,
        r.reference.disagreements
    );
}

// ---- the workload ----

/// SplitMix64: a tiny, well-mixed, seeded generator, so the workload is the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (hi > lo).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.next() as usize % items.len()]
    }
}

const REGIONS: [&str; 6] = ["eu", "eu", "us", "us", "asia", "sa"];
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];
/// (model, vram GiB, price range in base units per CU)
const GPUS: [(&str, u64, u64, u64); 5] = [
    ("A100", 80, 40_000_000, 80_000_000),
    ("H100", 80, 60_000_000, 120_000_000),
    ("L4", 24, 10_000_000, 20_000_000),
    ("RTX4090", 24, 8_000_000, 16_000_000),
    ("T4", 16, 4_000_000, 8_000_000),
];
const CORES: [u64; 6] = [4, 8, 16, 32, 64, 96];
const CPU_PRICE: (u64, u64) = (1_000_000, 3_000_000);
const DAY_MS: u64 = 86_400_000;

fn account(i: u64) -> AccountId {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    bytes[31] = 0x5A;
    AccountId::from_bytes(bytes)
}

fn build_book(rng: &mut SplitMix64, asks: usize) -> anyhow::Result<Market> {
    let mut market = Market::default();
    let providers = asks.div_ceil(2) as u64;
    for p in 0..providers {
        if rng.chance(70) {
            market.set_stake(account(p), Amount::agr(rng.range(1, 2_000)));
        }
        if rng.chance(20) {
            for _ in 0..rng.range(1, 20) {
                let event = if rng.chance(90) {
                    ReputationEvent::VerifiedCompletion
                } else {
                    ReputationEvent::Failure
                };
                market.record_event(account(p), event, 0);
            }
        }
    }
    for i in 0..asks as u64 {
        let ask = random_ask(rng, i / 2, i % 2);
        market
            .upsert_ask(ask, 0)
            .context("building the synthetic book")?;
    }
    Ok(market)
}

fn random_ask(rng: &mut SplitMix64, p: u64, machine: u64) -> Ask {
    let provider = account(p);
    let cores = *rng.pick(&CORES);
    let mut prices = std::collections::BTreeMap::new();
    let mut gpus = Vec::new();
    let mut features: std::collections::BTreeSet<String> = ["wasm".to_string()].into();
    if rng.chance(30) {
        let (model, vram, lo, hi) = *rng.pick(&GPUS);
        let vram = if model == "A100" && rng.chance(50) {
            40
        } else {
            vram
        };
        gpus.push(GpuGroup {
            model: model.into(),
            vram_bytes: vram * GIB,
            count: rng.range(1, 9) as u32,
        });
        prices.insert(ResourceClass::gpu(model), Price(rng.range(lo, hi)));
        features.insert("gpu".into());
    }
    if gpus.is_empty() || rng.chance(50) {
        prices.insert(
            ResourceClass::cpu(),
            Price(rng.range(CPU_PRICE.0, CPU_PRICE.1)),
        );
    }
    if rng.chance(50) {
        features.insert("oci".into());
    }
    let attributes = [
        ("region".to_string(), rng.pick(&REGIONS).to_string()),
        ("operator".to_string(), format!("op{}", p % 500)),
        ("tier".to_string(), rng.pick(&TIERS).to_string()),
    ]
    .into();
    Ask {
        id: AskId::named(&provider, &format!("machine-{machine}")),
        provider,
        capacity: Resources {
            cpu_millis: cores * 1000,
            memory_bytes: cores * 4 * GIB,
            disk_bytes: rng.range(200, 2_000) * GIB,
            gpus,
        },
        arch: if rng.chance(80) { "x86_64" } else { "aarch64" }.into(),
        features,
        attributes,
        prices,
        min_job: Fuel(0),
        max_job: Fuel::compute_units(if rng.chance(10) { 100 } else { 1_000_000 }),
        expires_ms: 30 * DAY_MS,
    }
}

fn random_order(rng: &mut SplitMix64, n: u64, now_ms: u64) -> Order {
    let gpu = rng.chance(25).then(|| {
        let (model, vram, _, _) = *rng.pick(&GPUS);
        GpuDemand {
            model: rng.chance(85).then(|| model.to_string()),
            min_vram_bytes: if rng.chance(50) { vram * GIB } else { 0 },
            count: rng.range(1, 3) as u32,
        }
    });
    let cap = match &gpu {
        Some(_) => Price(140_000_000),
        None => Price(rng.range(2_500_000, 3_500_000)),
    };
    let mut requirements = Requirements::default();
    if rng.chance(40) {
        requirements.attributes.push(AttributeConstraint::equals(
            "region",
            rng.pick::<&str>(&REGIONS),
        ));
    } else if rng.chance(15) {
        requirements
            .attributes
            .push(AttributeConstraint::one_of("region", &["eu", "us"]));
    }
    if rng.chance(10) {
        requirements
            .attributes
            .push(AttributeConstraint::not("tier", "bronze"));
    }
    if rng.chance(15) {
        requirements.features.insert("oci".into());
    }
    if rng.chance(10) {
        requirements.arch = Some("x86_64".into());
    }
    if rng.chance(5) {
        requirements.min_reputation_ppm = 400_000;
    }
    if rng.chance(10) {
        requirements.min_stake = Amount::agr(100);
    }
    requirements.replicas = match rng.range(0, 100) {
        0..80 => 1,
        80..95 => 2,
        _ => 3,
    };
    if requirements.replicas > 1 && rng.chance(30) {
        requirements.distinct_by = Some("operator".into());
    }
    let cores = rng.range(1, 9);
    Order {
        id: OrderId(Hash::tagged("agora/bench/order", &[&n.to_le_bytes()])),
        buyer: account(u64::MAX),
        demand: Demand {
            cpu_millis: cores * 1000,
            memory_bytes: rng.range(1, 2 * cores + 1) * GIB,
            disk_bytes: rng.range(0, 50) * GIB,
            gpu,
        },
        requirements,
        fuel: Fuel::compute_units(rng.range(1, 60)),
        cap,
        deadline_ms: now_ms + DAY_MS,
    }
}

// ---- the measurements ----

struct InstantResult {
    orders: usize,
    filled: usize,
    no_match: usize,
    releases: usize,
    orders_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    explain_p50_us: Option<f64>,
}

/// Matches `args.orders` orders one after another, releasing the oldest match whenever
/// more than `args.live` are live, so the book neither fills up nor stays empty.
fn run_instant(
    market: &mut Market,
    rng: &mut SplitMix64,
    args: &BenchArgs,
) -> anyhow::Result<InstantResult> {
    let start_ms = 1_000;
    let orders: Vec<Order> = (0..args.orders as u64)
        .map(|n| random_order(rng, n, start_ms + n))
        .collect();
    let mut live: VecDeque<MatchId> = VecDeque::with_capacity(args.live + 4);
    let mut latencies = Vec::with_capacity(orders.len());
    let mut explain_latencies = Vec::new();
    let (mut filled, mut no_match, mut releases) = (0, 0, 0);
    let started = Instant::now();
    for (n, order) in orders.into_iter().enumerate() {
        let now_ms = start_ms + n as u64;
        let t0 = Instant::now();
        let outcome = market
            .submit_order(order, now_ms)
            .context("a benchmark order was refused")?;
        let took = t0.elapsed();
        latencies.push(took);
        match outcome {
            MatchOutcome::Filled(fill) => {
                filled += 1;
                live.extend(fill.winners.iter().map(|w| w.match_id));
            }
            MatchOutcome::NoMatch(_) => {
                no_match += 1;
                explain_latencies.push(took);
            }
        }
        while live.len() > args.live {
            if let Some(id) = live.pop_front() {
                market
                    .release(&id, ReleaseReason::Completed)
                    .context("releasing a live match")?;
                releases += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(InstantResult {
        orders: args.orders,
        filled,
        no_match,
        releases,
        orders_per_s: args.orders as f64 / elapsed,
        p50_us: percentile_us(&mut latencies, 50),
        p99_us: percentile_us(&mut latencies, 99),
        explain_p50_us: (!explain_latencies.is_empty())
            .then(|| percentile_us(&mut explain_latencies, 50)),
    })
}

struct AuctionResult {
    bids: usize,
    close_p50_us: f64,
    close_max_us: f64,
    bid_p50_us: f64,
}

/// Opens auctions for 3-replica CPU orders, collects `args.bids` sealed bids from
/// distinct providers, and times the close (ranking, picking, reserving).
fn run_auctions(
    market: &mut Market,
    rng: &mut SplitMix64,
    args: &BenchArgs,
) -> anyhow::Result<AuctionResult> {
    let providers = args.asks.div_ceil(2) as u64;
    let mut closes = Vec::with_capacity(args.auctions);
    let mut bid_times = Vec::new();
    let mut accepted_total = 0;
    for round in 0..args.auctions as u64 {
        let now_ms = 10_000_000 + round * 1_000;
        let mut order = random_order(rng, 1 << 40 | round, now_ms);
        order.demand = Demand {
            cpu_millis: 1000,
            memory_bytes: GIB,
            disk_bytes: 0,
            gpu: None,
        };
        order.requirements = Requirements {
            replicas: 3,
            ..Requirements::default()
        };
        order.cap = Price(CPU_PRICE.1);
        let id = order.id;
        market.open_auction(
            order,
            AuctionTerms {
                closes_ms: now_ms + 500,
                rule: PricingRule::FirstPrice,
            },
            now_ms,
        )?;
        let mut accepted = 0;
        let first = rng.range(0, providers);
        for k in 0..providers {
            if accepted == args.bids {
                break;
            }
            let p = (first + k) % providers;
            let ask = AskId::named(&account(p), "machine-0");
            let bid = Bid {
                order: id,
                provider: account(p),
                ask,
                price: Price(rng.range(CPU_PRICE.0, CPU_PRICE.1)),
            };
            let t0 = Instant::now();
            let result = market.submit_bid(bid, now_ms + 1);
            bid_times.push(t0.elapsed());
            accepted += usize::from(result.is_ok());
        }
        accepted_total += accepted;
        let t0 = Instant::now();
        let outcome = market.close_auction(&id, now_ms + 500)?;
        closes.push(t0.elapsed());
        if let MatchOutcome::Filled(fill) = outcome {
            for w in &fill.winners {
                market.release(&w.match_id, ReleaseReason::Completed)?;
            }
        }
    }
    let max = closes.iter().max().copied().unwrap_or_default();
    Ok(AuctionResult {
        bids: accepted_total / args.auctions.max(1),
        close_p50_us: percentile_us(&mut closes, 50),
        close_max_us: max.as_secs_f64() * 1e6,
        bid_p50_us: percentile_us(&mut bid_times, 50),
    })
}

/// Times the indexed engine and the brute-force scan on the same orders and book (neither
/// reserves anything), and counts orders where they disagree (should be none).
fn compare_with_reference(market: &Market, rng: &mut SplitMix64, orders: usize) -> ReferenceReport {
    let now_ms = 500;
    let orders: Vec<Order> = (0..orders as u64)
        .map(|n| random_order(rng, 1 << 50 | n, now_ms))
        .collect();
    let mut indexed = Duration::ZERO;
    let mut brute = Duration::ZERO;
    let mut disagreements = 0;
    for order in &orders {
        let t0 = Instant::now();
        let fast = market.quote(order, now_ms);
        indexed += t0.elapsed();
        let t0 = Instant::now();
        let slow = reference_match(market, order, now_ms);
        brute += t0.elapsed();
        disagreements += usize::from(fast.unwrap_or_default() != slow);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / orders.len().max(1) as f64;
    ReferenceReport {
        orders: orders.len(),
        indexed_us_per_order: per(indexed),
        brute_force_us_per_order: per(brute),
        speedup: brute.as_secs_f64() / indexed.as_secs_f64().max(1e-12),
        disagreements,
    }
}

/// Times the "why no match" explanation of an order nobody can serve (an A100 with more
/// memory than any has), which walks every ask in the book.
fn time_explain(market: &Market, rng: &mut SplitMix64) -> (f64, String) {
    let mut order = random_order(rng, 1 << 60, 20_000_000);
    order.demand.gpu = Some(GpuDemand {
        model: Some("A100".into()),
        min_vram_bytes: 160 * GIB,
        count: 1,
    });
    order.requirements = Requirements::default();
    order
        .requirements
        .attributes
        .push(AttributeConstraint::equals("region", "eu"));
    let t0 = Instant::now();
    let why = market.explain(&order, 20_000_000);
    (t0.elapsed().as_secs_f64() * 1e6, why.to_string())
}

fn percentile_us(samples: &mut [Duration], pct: usize) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let i = (samples.len() - 1) * pct / 100;
    samples[i].as_secs_f64() * 1e6
}
