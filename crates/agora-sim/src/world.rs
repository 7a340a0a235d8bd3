//! The simulation's world: providers, buyers, jobs in flight, the event queue and the
//! simulated clock, wired to the real cores.
//!
//! One job's life, as the market node lives it (crates/agora-node/src/verification.rs):
//!
//! 1. **Arrive.** A buyer locks `cap × fuel` (× N under `replicate:N:Q`) in escrow
//!    (`OpenEscrow`, through the ledger's rules).
//! 2. **Match.** The order goes to [`agora_market::Market::submit_order`] with one replica,
//!    a minimum stake from the stake rule, and every provider already tried excluded.
//! 3. **Run.** The winner runs it — or, by its [`Behaviour`], returns a wrong result and
//!    skips the cost. The result comes back after the simulated network and run time.
//! 4. **Verify.** [`agora_verify::Flow::on_result`] decides: run another provider (audit,
//!    replica, tie-breaker), accept (and whom to slash), or refund.
//! 5. **Settle.** The buyer pays one run (every agreeing replica under `replicate`), audits
//!    are paid from the verification fund, each disagreeing provider is slashed
//!    `ratio × (C/p − R)` (capped at its stake), reputation and trust history are updated.
//!
//! Every minute of simulated time providers leave, restart and join and the spot index is
//! sampled; every five minutes providers reprice by their utilisation.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use agora_core::{AccountId, Amount, FUEL_PER_COMPUTE_UNIT, Fuel, Hash, Price};
use agora_ledger::{Params, TxBody};
use agora_market::resources::GIB;
use agora_market::{
    Ask, AskId, AttributeConstraint, Demand, Market, MatchId, MatchOutcome, Order, OrderId,
    ReleaseReason, ReputationEvent, Requirements, ResourceClass, Resources,
};
use agora_verify::economics::{detection_ppm, deterrent_stake};
use agora_verify::quorum::{Accepted, ReplicaReceipt, RunResult};
use agora_verify::{
    Checked, Exposure, FaultRecord, Flow, ProviderHistory, Step, SuspensionRule, VerifyPolicy,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::config::{Behaviour, ConfigError, PPM, SimConfig};
use crate::money::Books;
use crate::network::{Network, Region};
use crate::report::{BehaviourStats, PolicyStats, Report, SeriesPoint, Tally};

/// The market's reference price: what a compute unit costs buyers on average, base units.
pub const REFERENCE_PRICE: u64 = 1_000_000;
/// The reference cost of a compute unit to a provider: 60 % of the reference price.
pub const REFERENCE_COST: u64 = REFERENCE_PRICE * 6 / 10;
/// Buyers' price cap: twice the reference price.
pub const BUYER_CAP: Price = Price(2 * REFERENCE_PRICE);
/// Simulated time a compute unit takes to run: one core-second (docs/design.md).
pub const MS_PER_CU: u64 = 1_000;
/// The smallest and largest job, compute units (Pareto-distributed between them).
pub const JOB_CU: (u64, u64) = (20, 2_000);
/// The period of the demand cycle.
pub const DEMAND_CYCLE_MS: u64 = 3_600_000;
/// How far past arrival an order's deadline is.
pub const DEADLINE_MS: u64 = 6 * 3_600_000;
/// A provider's balance at genesis.
pub const PROVIDER_FUNDS: Amount = Amount::agr(1_000);
/// A buyer's balance at genesis.
pub const BUYER_FUNDS: Amount = Amount::agr(1_000_000);
/// The market's verification fund at genesis (pays audits and tie-breakers).
pub const FUND: Amount = Amount::agr(1_000_000);
const MINUTE_MS: u64 = 60_000;
/// Providers reprice every this many simulated minutes.
const REPRICE_EVERY_MIN: usize = 5;
const ASK_EXPIRY_MS: u64 = u64::MAX / 4;
const PROVIDER_ATTR: &str = "provider";

/// A provider as the simulation knows it.
struct Provider {
    account: AccountId,
    ask: AskId,
    name: String,
    behaviour: Behaviour,
    ring: u32,
    region: Region,
    cores: u32,
    cost_per_cu: u64,
    price: Price,
    active: bool,
    online: bool,
    /// Whether its ask is on the market's book now.
    listed: bool,
    epoch: u32,
    running: u32,
    history: ProviderHistory,
    faults: FaultRecord,
    /// Until when (simulated ms) it is suspended from matching.
    suspended_until: u64,
    target_stake: Amount,
    /// Balance + stake when it became active, base units.
    start_worth: u64,
    tally: ProviderTally,
}

#[derive(Default, Clone, Copy)]
struct ProviderTally {
    runs: u64,
    cheats: u64,
    caught: u64,
    slashed: u64,
    cost: u64,
    /// What its cheats saved it: its cost of the jobs it did not run.
    cost_saved: u64,
    /// The pay its caught cheats forfeited (what the run would have earned).
    pay_forfeited: u64,
}

struct Buyer {
    account: AccountId,
    policy: usize,
    region: Region,
}

struct Run {
    provider: u32,
    price: Price,
    cheated: bool,
    receipt: ReplicaReceipt,
}

struct Job {
    id: Hash,
    buyer: u32,
    policy: VerifyPolicy,
    fuel: Fuel,
    cu: u64,
    arrived_ms: u64,
    flow: Flow,
    first: ProviderHistory,
    /// What the first run put at stake for its provider, as the node computes it.
    exposure: Exposure,
    runs: Vec<Run>,
    tried: Vec<u32>,
    correct: Hash,
    /// The wrong digest a colluding ring put forward on this job, if any.
    ring_lie: Option<(u32, Hash)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Arrive,
    RunDone {
        job: u64,
        provider: u32,
        epoch: u32,
        cheated: bool,
        match_id: MatchId,
    },
    Minute,
    Unsuspend {
        provider: u32,
    },
}

/// A simulation ready to run.
pub struct World {
    config: SimConfig,
    rng: ChaCha8Rng,
    net: Network,
    market: Market,
    books: Books,
    authority: AccountId,
    providers: Vec<Provider>,
    by_account: FxHashMap<AccountId, u32>,
    buyers: Vec<Buyer>,
    jobs: FxHashMap<u64, Job>,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    now: u64,
    submitted: u64,
    tally: Tally,
    per_policy: Vec<PolicyStats>,
    series: Vec<SeriesPoint>,
    minute: MinuteTally,
    conservation_checks: u64,
}

#[derive(Default)]
struct MinuteTally {
    settled: u64,
    cu_executed: u128,
    cu_billed: u128,
}

impl World {
    /// Builds the world of `config`: genesis, providers (and a pool of later joiners),
    /// buyers, asks in the market.
    pub fn new(config: SimConfig) -> Result<World, ConfigError> {
        config.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let authority = account("authority", 0);
        let treasury = account("treasury", 0);
        // Joiners come from a pool sized for ten simulated hours of joining.
        let joiners =
            u64::from(config.providers) * u64::from(config.join_per_min_ppm) * 600 / u64::from(PPM);
        let pool = u64::from(config.providers) + joiners;
        let pool = u32::try_from(pool)
            .unwrap_or(u32::MAX)
            .max(config.providers);
        let providers: Vec<Provider> = (0..pool)
            .map(|i| new_provider(&config, &mut rng, i))
            .collect();
        let buyers: Vec<Buyer> = (0..config.buyers)
            .map(|i| Buyer {
                account: account("buyer", i),
                policy: pick_weighted(&config.policies, &mut rng),
                region: rng.random_range(0..config.regions),
            })
            .collect();
        let mut allocations = vec![(authority, FUND)];
        allocations.extend(providers.iter().map(|p| (p.account, PROVIDER_FUNDS)));
        allocations.extend(buyers.iter().map(|b| (b.account, BUYER_FUNDS)));
        let params = Params {
            market_authority: authority,
            treasury,
            fee_bps: 100,
            unbonding_period_blocks: 10,
            slash_beneficiary_bps: 5_000,
            block_producer: authority,
            allow_faulty_providers: false,
        };
        let books = Books::new(allocations, params).map_err(|e| ConfigError::BadPolicy {
            policy: "genesis".into(),
            reason: e.to_string(),
        })?;
        let by_account: FxHashMap<AccountId, u32> = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.account, i as u32))
            .collect();
        let per_policy = config
            .policies
            .iter()
            .map(|(p, _)| PolicyStats::new(p.to_string()))
            .collect();
        let mut world = World {
            net: Network {
                regions: config.regions,
            },
            config,
            rng,
            market: Market::default(),
            books,
            authority,
            providers,
            by_account,
            buyers,
            jobs: FxHashMap::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            submitted: 0,
            tally: Tally::default(),
            per_policy,
            series: Vec::new(),
            minute: MinuteTally::default(),
            conservation_checks: 0,
        };
        for i in 0..world.config.providers {
            world.activate(i);
        }
        Ok(world)
    }

    /// Runs every job to its end and reports.
    pub fn run(mut self) -> Report {
        self.schedule(0, Event::Arrive);
        self.schedule(MINUTE_MS, Event::Minute);
        while let Some(Reverse((at, _, event))) = self.queue.pop() {
            self.now = at;
            match event {
                Event::Arrive => self.arrive(),
                Event::RunDone {
                    job,
                    provider,
                    epoch,
                    cheated,
                    match_id,
                } => self.run_done(job, provider, epoch, cheated, match_id),
                Event::Minute => self.minute(),
                Event::Unsuspend { provider } => self.sync_listing(provider),
            }
        }
        self.finish()
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, event)));
    }

    // ---- providers ----

    /// Brings provider `i` online for the first time: bonds its stake and lists its ask.
    fn activate(&mut self, i: u32) {
        let p = &mut self.providers[i as usize];
        p.active = true;
        let (acct, stake) = (p.account, p.target_stake);
        if !stake.is_zero() {
            let _ = self
                .books
                .apply(acct, &TxBody::Bond { amount: stake }, self.now);
        }
        let p = &mut self.providers[i as usize];
        p.start_worth = self.books.balance(&acct).0 + self.books.bonded(&acct).0;
        self.market.set_stake(acct, self.books.bonded(&acct));
        self.go_online(i);
    }

    fn go_online(&mut self, i: u32) {
        self.providers[i as usize].online = true;
        self.sync_listing(i);
    }

    fn go_offline(&mut self, i: u32) {
        let p = &mut self.providers[i as usize];
        p.online = false;
        p.epoch += 1;
        self.sync_listing(i);
    }

    /// Keeps a provider's ask on the book while it is online with a free slot and not
    /// suspended, and off it otherwise, as a provider agent re-announces capacity (the node
    /// excludes a suspended provider with a constraint per provider; taking its ask off the
    /// book has the same effect on matching and costs nothing per order). The engine would skip a full
    /// ask by itself, but one at a time: at 10,000 providers, with the cheapest third
    /// saturated, that was ~3,000 candidate checks per order (docs/simulation.md).
    fn sync_listing(&mut self, i: u32) {
        let p = &mut self.providers[i as usize];
        let want = p.online && p.running < p.cores && p.suspended_until <= self.now;
        if want == p.listed {
            return;
        }
        if want {
            let ask = ask_of(p);
            p.listed = self.market.upsert_ask(ask, self.now).is_ok();
        } else {
            let _ = self.market.withdraw_ask(&p.ask, &p.account);
            p.listed = false;
        }
    }

    /// Tops a provider's stake back up to its target from its balance (after a slash).
    fn top_up(&mut self, i: u32) {
        let p = &self.providers[i as usize];
        let bonded = self.books.bonded(&p.account);
        let want = p.target_stake.checked_sub(bonded).unwrap_or(Amount::ZERO);
        let amount = want.min(self.books.balance(&p.account));
        if !amount.is_zero() {
            let _ = self
                .books
                .apply(p.account, &TxBody::Bond { amount }, self.now);
        }
        let acct = p.account;
        self.market.set_stake(acct, self.books.bonded(&acct));
    }

    // ---- jobs ----

    fn arrive(&mut self) {
        if self.submitted >= self.config.jobs {
            return;
        }
        self.submitted += 1;
        let seq = self.submitted;
        let buyer = self.rng.random_range(0..self.config.buyers);
        let policy = self.config.policies[self.buyers[buyer as usize].policy].0;
        let cu = pareto_cu(&mut self.rng);
        let fuel = Fuel::compute_units(cu);
        let id = Hash::tagged(
            "agora-sim/order/v1",
            &[&self.config.seed.to_le_bytes(), &seq.to_le_bytes()],
        );
        let runs_paid = match policy {
            VerifyPolicy::Replicate { n, .. } => u64::from(n),
            _ => 1,
        };
        let escrow = Amount(BUYER_CAP.max_cost(fuel).map_or(u64::MAX, |a| a.0) * runs_paid);
        let buyer_acct = self.buyers[buyer as usize].account;
        let open = TxBody::OpenEscrow {
            order_id: id,
            amount: escrow,
            deadline_ms: self.now + DEADLINE_MS,
        };
        if self.books.apply(buyer_acct, &open, self.now).is_ok() {
            self.jobs.insert(
                seq,
                Job {
                    id,
                    buyer,
                    policy,
                    fuel,
                    cu,
                    arrived_ms: self.now,
                    flow: Flow::new(policy),
                    first: ProviderHistory::default(),
                    exposure: Exposure {
                        reward: Amount::ZERO,
                        cost: Amount::ZERO,
                        stake: Amount::ZERO,
                    },
                    runs: Vec::new(),
                    tried: Vec::new(),
                    correct: Hash::tagged("agora-sim/right/v1", &[id.as_bytes()]),
                    ring_lie: None,
                },
            );
            self.place(seq);
        } else {
            self.tally.escrow_refused += 1;
        }
        let next = self.now + self.interarrival_ms();
        self.schedule(next, Event::Arrive);
    }

    /// Exponential gaps around a rate that swings ±50 % over the demand cycle.
    fn interarrival_ms(&mut self) -> u64 {
        let phase = (self.now % DEMAND_CYCLE_MS) as f64 / DEMAND_CYCLE_MS as f64;
        let rate = f64::from(self.config.arrivals_per_s)
            * (1.0 + 0.5 * (phase * std::f64::consts::TAU).sin());
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        ((-u.ln() / rate) * 1_000.0).round() as u64
    }

    /// Matches job `seq` to one more provider, or ends it when none can run it.
    fn place(&mut self, seq: u64) {
        let Some(job) = self.jobs.get(&seq) else {
            return;
        };
        let order = self.order_of(job);
        let outcome = self.market.submit_order(order, self.now);
        let winner = match outcome {
            Ok(MatchOutcome::Filled(fill)) => fill.winners.into_iter().next(),
            _ => None,
        };
        let Some(winner) = winner else {
            self.tally.no_provider += 1;
            return self.without_more(seq);
        };
        let Some(&i) = self.by_account.get(&winner.provider) else {
            return self.without_more(seq);
        };
        self.start_run(seq, i, winner.match_id, winner.price);
    }

    fn order_of(&self, job: &Job) -> Order {
        let mut requirements = Requirements {
            min_stake: self.rule_stake(
                job.policy,
                BUYER_CAP.max_cost(job.fuel).unwrap_or(Amount::ZERO),
                job.fuel,
            ),
            ..Requirements::default()
        };
        requirements.attributes = job
            .tried
            .iter()
            .map(|&i| AttributeConstraint::not(PROVIDER_ATTR, &self.providers[i as usize].name))
            .collect();
        Order {
            id: OrderId(job.id),
            buyer: self.buyers[job.buyer as usize].account,
            demand: Demand {
                cpu_millis: 1_000,
                memory_bytes: GIB,
                disk_bytes: 0,
                gpu: None,
            },
            requirements,
            fuel: job.fuel,
            cap: BUYER_CAP,
            deadline_ms: job.arrived_ms + DEADLINE_MS,
        }
    }

    /// `ratio × (C/p − R)` for a job paying `reward` with `fuel` under `policy`, C at the
    /// reference cost. This is what a proven fault costs and what an order requires bonded.
    fn rule_stake(&self, policy: VerifyPolicy, reward: Amount, fuel: Fuel) -> Amount {
        let cost = Price(REFERENCE_COST).cost(fuel).unwrap_or(Amount::ZERO);
        let rule = deterrent_stake(reward, cost, detection_ppm(&policy));
        Amount(
            (u128::from(rule.0) * u128::from(self.config.stake_ratio_ppm) / u128::from(PPM)) as u64,
        )
    }

    fn start_run(&mut self, seq: u64, i: u32, match_id: MatchId, price: Price) {
        let Some(job) = self.jobs.get_mut(&seq) else {
            return;
        };
        let p = &mut self.providers[i as usize];
        if job.tried.is_empty() {
            job.first = if self.config.suspension {
                SuspensionRule::DEFAULT.trusted_history(p.history, &p.faults, self.now)
            } else {
                p.history
            };
            let reward = price.max_cost(job.fuel).unwrap_or(Amount(u64::MAX));
            job.exposure = Exposure {
                reward,
                cost: reward,
                stake: self.books.bonded(&p.account),
            };
        }
        job.tried.push(i);
        p.running += 1;
        let cheated = decide_cheat(&self.config, p, job, &mut self.rng);
        // A cheater skips the work (and its cost) but answers when an honest run would, and
        // holds its reserved capacity until then: an instant answer would give it away.
        let run_ms = job.cu * MS_PER_CU;
        let buyer_region = self.buyers[job.buyer as usize].region;
        let there = self.net.delay_ms(buyer_region, p.region, &mut self.rng);
        let back = self.net.delay_ms(p.region, buyer_region, &mut self.rng);
        let epoch = p.epoch;
        let at = self.now + there + run_ms + back;
        self.schedule(
            at,
            Event::RunDone {
                job: seq,
                provider: i,
                epoch,
                cheated,
                match_id,
            },
        );
        self.sync_listing(i);
    }

    fn run_done(&mut self, seq: u64, i: u32, epoch: u32, cheated: bool, match_id: MatchId) {
        let info = self
            .market
            .release(&match_id, ReleaseReason::Completed)
            .ok();
        let p = &mut self.providers[i as usize];
        p.running = p.running.saturating_sub(1);
        self.sync_listing(i);
        let p = &mut self.providers[i as usize];
        let account = p.account;
        if p.epoch != epoch {
            // The provider went away mid-run: the run failed; try someone else.
            p.history = ProviderHistory::default();
            self.market
                .record_event(account, ReputationEvent::Failure, self.now);
            self.tally.failed_runs += 1;
            return self.place(seq);
        }
        let Some(job) = self.jobs.get_mut(&seq) else {
            return;
        };
        let price = info.map_or(BUYER_CAP, |m| m.price);
        p.tally.runs += 1;
        if cheated {
            p.tally.cheats += 1;
            p.tally.cost_saved += p.cost_per_cu * job.cu;
        } else {
            p.tally.cost += p.cost_per_cu * job.cu;
        }
        let digest = if !cheated {
            job.correct
        } else if p.behaviour == Behaviour::Colluding {
            let lie = Hash::tagged(
                "agora-sim/ring-lie/v1",
                &[job.id.as_bytes(), &p.ring.to_le_bytes()],
            );
            job.ring_lie.get_or_insert((p.ring, lie));
            lie
        } else {
            Hash::tagged("agora-sim/lie/v1", &[job.id.as_bytes(), account.as_bytes()])
        };
        job.runs.push(Run {
            provider: i,
            price,
            cheated,
            receipt: ReplicaReceipt {
                provider: account,
                result: RunResult {
                    digest,
                    fuel: job.fuel,
                },
            },
        });
        let receipts: Vec<ReplicaReceipt> = job.runs.iter().map(|r| r.receipt).collect();
        let seed = Hash::tagged(
            "agora-sim/audit-seed/v1",
            &[
                &self.config.seed.to_le_bytes(),
                job.id.as_bytes(),
                receipts[0].provider.as_bytes(),
            ],
        );
        let step = if self.config.sample_at_risk {
            job.flow
                .on_result_at_risk(&receipts, &job.first, &job.exposure, Some(seed), job.id)
        } else {
            job.flow
                .on_result(&receipts, &job.first, Some(seed), job.id)
        };
        match step {
            Ok(Step::RunAnother { .. }) => self.place(seq),
            Ok(Step::Accept { accepted, how }) => self.settle(seq, accepted, how),
            Ok(Step::Refund { .. }) | Err(_) => self.refund(seq),
        }
    }

    /// No further provider can run the job: sampling policies accept the lone result
    /// unchecked (the flow decides), everything else refunds.
    fn without_more(&mut self, seq: u64) {
        let Some(job) = self.jobs.get(&seq) else {
            return;
        };
        let receipts: Vec<ReplicaReceipt> = job.runs.iter().map(|r| r.receipt).collect();
        match job.flow.without_more_providers(&receipts) {
            Some(accepted) => self.settle(seq, accepted, Checked::Unchecked),
            None => self.refund(seq),
        }
    }

    fn refund(&mut self, seq: u64) {
        let Some(job) = self.jobs.remove(&seq) else {
            return;
        };
        let body = TxBody::RefundEscrow { order_id: job.id };
        if self.books.apply(self.authority, &body, self.now).is_err() {
            self.tally.ledger_refusals += 1;
        }
        self.tally.refunded += 1;
        let stats = &mut self.per_policy[self.buyers[job.buyer as usize].policy];
        stats.refunded += 1;
        stats.refunded_runs += job.runs.len() as u64;
        stats.jobs += 1;
        stats.latency_ms_sum += u128::from(self.now - job.arrived_ms);
    }

    /// Pays, slashes and records an accepted result (the node's `payments` and `settle`).
    fn settle(&mut self, seq: u64, accepted: Accepted, how: Checked) {
        let Some(job) = self.jobs.remove(&seq) else {
            return;
        };
        let fuel = accepted.billed_fuel();
        let buyer_price = job.runs.first().map_or(BUYER_CAP, |r| r.price);
        let agreeing: Vec<&Run> = job
            .runs
            .iter()
            .filter(|r| accepted.agreeing.contains(&r.receipt.provider))
            .collect();
        let cost_at = |price: Price| price.cost(fuel).unwrap_or(Amount::ZERO);
        let mut from_escrow: Vec<(AccountId, Amount)> = Vec::new();
        let mut from_fund: Vec<(AccountId, Amount)> = Vec::new();
        let mut remaining = self.books.escrow_remaining(&job.id);
        let mut take = |who: AccountId, want: Amount, out: &mut Vec<(AccountId, Amount)>| {
            let paid = want.min(remaining);
            remaining = remaining.checked_sub(paid).unwrap_or(Amount::ZERO);
            if !paid.is_zero() {
                out.push((who, paid));
            }
            paid
        };
        let replicate = matches!(job.policy, VerifyPolicy::Replicate { .. });
        for (k, run) in agreeing.iter().enumerate() {
            let own = cost_at(run.price);
            let paid = if replicate || k == 0 {
                let want = if replicate {
                    own
                } else {
                    own.min(cost_at(buyer_price))
                };
                take(run.receipt.provider, want, &mut from_escrow)
            } else {
                Amount::ZERO
            };
            let rest = own.checked_sub(paid).unwrap_or(Amount::ZERO);
            if !replicate && !rest.is_zero() {
                from_fund.push((run.receipt.provider, rest));
            }
        }
        let buyer_paid = Amount::sum(from_escrow.iter().map(|(_, a)| *a)).unwrap_or(Amount::ZERO);
        self.pay(&job, from_escrow, from_fund);
        let slashed = self.slash_disagreeing(&job, &accepted);
        self.record_outcomes(&job, &accepted);
        let wrong = accepted.result.digest != job.correct;
        let stats = &mut self.per_policy[self.buyers[job.buyer as usize].policy];
        stats.settled += 1;
        stats.buyer_paid += u128::from(buyer_paid.0);
        stats.slashes += slashed;
        if matches!(how, Checked::Unchecked) {
            stats.unchecked += 1;
        }
        if wrong {
            stats.wrong_accepted += 1;
            self.tally.wrong_accepted += 1;
        }
        self.tally.settled += 1;
        self.count_runs(&job, u128::from(fuel.0));
    }

    fn pay(
        &mut self,
        job: &Job,
        from_escrow: Vec<(AccountId, Amount)>,
        from_fund: Vec<(AccountId, Amount)>,
    ) {
        let mut refused = 0;
        if !from_escrow.is_empty() {
            let body = TxBody::ReleaseEscrow {
                order_id: job.id,
                payouts: from_escrow,
            };
            refused += u64::from(self.books.apply(self.authority, &body, self.now).is_err());
        }
        if !self.books.escrow_remaining(&job.id).is_zero() {
            let body = TxBody::RefundEscrow { order_id: job.id };
            refused += u64::from(self.books.apply(self.authority, &body, self.now).is_err());
        }
        for (to, amount) in from_fund {
            let body = TxBody::Transfer { to, amount };
            refused += u64::from(self.books.apply(self.authority, &body, self.now).is_err());
        }
        self.tally.ledger_refusals += refused;
    }

    /// Slashes every provider whose result disagreed with the accepted one; returns how many.
    fn slash_disagreeing(&mut self, job: &Job, accepted: &Accepted) -> u64 {
        let mut count = 0;
        for run in job.runs.iter().filter(|r| {
            accepted
                .disagreeing
                .iter()
                .any(|d| d.provider == r.receipt.provider)
        }) {
            let i = run.provider;
            let reward = run.price.cost(job.fuel).unwrap_or(Amount::ZERO);
            let account = self.providers[i as usize].account;
            let amount = self
                .rule_stake(job.policy, reward, job.fuel)
                .min(self.books.bonded(&account));
            let p = &mut self.providers[i as usize];
            p.tally.caught += 1;
            if run.cheated {
                p.tally.pay_forfeited += reward.0;
            }
            p.history = ProviderHistory::default();
            p.faults.record(self.now);
            if self.config.suspension
                && let Some(until) = SuspensionRule::DEFAULT.until_ms(&p.faults)
            {
                p.suspended_until = until;
                self.schedule(until, Event::Unsuspend { provider: i });
            }
            if !run.cheated {
                self.tally.honest_slashed += 1;
            }
            self.market
                .record_event(account, ReputationEvent::ProvenFault, self.now);
            if !amount.is_zero() {
                let body = TxBody::Slash {
                    provider: account,
                    amount,
                    evidence: Hash::tagged(
                        "agora-sim/evidence/v1",
                        &[job.id.as_bytes(), account.as_bytes()],
                    ),
                    reason: "a quorum of distinct providers agreed on another result".into(),
                    beneficiary: self.authority,
                };
                match self.books.apply(self.authority, &body, self.now) {
                    Ok(()) => self.providers[i as usize].tally.slashed += amount.0,
                    Err(_) => self.tally.ledger_refusals += 1,
                }
            }
            self.top_up(i);
            self.sync_listing(i);
            count += 1;
        }
        count
    }

    fn record_outcomes(&mut self, job: &Job, accepted: &Accepted) {
        for run in &job.runs {
            if accepted.agreeing.contains(&run.receipt.provider) {
                let p = &mut self.providers[run.provider as usize];
                p.history.consecutive_verified = p.history.consecutive_verified.saturating_add(1);
                let account = p.account;
                self.market
                    .record_event(account, ReputationEvent::VerifiedCompletion, self.now);
            }
        }
    }

    /// Counts a settled job's runs: CU executed (every run) against CU billed (the
    /// accepted result, once).
    fn count_runs(&mut self, job: &Job, billed: u128) {
        let executed = job.runs.len() as u128 * u128::from(job.fuel.0);
        let stats = &mut self.per_policy[self.buyers[job.buyer as usize].policy];
        stats.jobs += 1;
        stats.fuel_executed += executed;
        stats.fuel_billed += billed;
        stats.runs += job.runs.len() as u64;
        stats.latency_ms_sum += u128::from(self.now - job.arrived_ms);
        self.minute.settled += 1;
        self.minute.cu_executed += executed;
        self.minute.cu_billed += billed;
    }

    // ---- every simulated minute ----

    fn minute(&mut self) {
        self.churn();
        if self.series.len().is_multiple_of(REPRICE_EVERY_MIN) {
            self.reprice();
        }
        self.sample();
        let _ = self.market.expire(self.now);
        self.books.end_block();
        if self.series.len().is_multiple_of(10) {
            self.check_conservation();
        }
        let done = self.submitted >= self.config.jobs && self.jobs.is_empty();
        if !done {
            self.schedule(self.now + MINUTE_MS, Event::Minute);
        }
    }

    fn check_conservation(&mut self) {
        self.conservation_checks += 1;
        if self.books.check_conservation().is_err() {
            self.tally.conservation_failures += 1;
        }
    }

    fn churn(&mut self) {
        let (leave, restart) = (
            self.config.leave_per_min_ppm,
            self.config.restart_per_min_ppm,
        );
        for i in 0..self.providers.len() as u32 {
            let p = &self.providers[i as usize];
            if !p.active {
                continue;
            }
            let draw = self.rng.random_range(0..PPM);
            if p.online && draw < leave {
                self.go_offline(i);
                self.tally.leaves += 1;
            } else if !p.online && draw < restart {
                self.go_online(i);
                self.tally.restarts += 1;
            }
        }
        let joins = u64::from(self.config.providers) * u64::from(self.config.join_per_min_ppm);
        let mut joins = joins / u64::from(PPM)
            + u64::from(self.rng.random_range(0..PPM) < ((joins % u64::from(PPM)) as u32));
        while joins > 0 {
            let Some(next) = self.providers.iter().position(|p| !p.active) else {
                break;
            };
            self.activate(next as u32);
            self.tally.joins += 1;
            joins -= 1;
        }
    }

    /// Every five minutes busy providers (≥ 80 % of their slots taken) raise their price 5 %,
    /// idle ones lower it 2 % (not below cost + 5 %), within the buyers' cap.
    fn reprice(&mut self) {
        for i in 0..self.providers.len() as u32 {
            let p = &mut self.providers[i as usize];
            if !p.online || p.behaviour != Behaviour::Honest && self.config.cheaters_cheapest {
                continue;
            }
            let busy = p.running * 10 >= p.cores * 8;
            let idle = p.running == 0;
            let floor = p.cost_per_cu * 105 / 100;
            let price = if busy {
                (p.price.0 * 105 / 100).min(BUYER_CAP.0)
            } else if idle {
                (p.price.0 * 98 / 100).max(floor)
            } else {
                p.price.0
            };
            if price != p.price.0 {
                p.price = Price(price);
                self.tally.price_changes += 1;
                if p.listed {
                    let ask = ask_of(p);
                    p.listed = self.market.upsert_ask(ask, self.now).is_ok();
                }
            }
        }
    }

    fn sample(&mut self) {
        let index = self.market.index(&ResourceClass::cpu(), self.now);
        let minute = std::mem::take(&mut self.minute);
        let online = self.providers.iter().filter(|p| p.online).count() as u32;
        self.series.push(SeriesPoint {
            minute: self.now / MINUTE_MS,
            settled: minute.settled,
            overhead: ratio(minute.cu_executed, minute.cu_billed),
            vwap_per_cu: index
                .windows
                .first()
                .and_then(|w| w.vwap)
                .map(|p| agr_per_cu(p.0)),
            best_ask_per_cu: index.best_ask.map(|p| agr_per_cu(p.0)),
            depth_asks: index.depth_asks,
            online,
            wrong_accepted: self.tally.wrong_accepted,
        });
    }

    fn finish(mut self) -> Report {
        self.check_conservation();
        let behaviours = Behaviour::ALL
            .iter()
            .map(|&b| self.behaviour_stats(b))
            .collect();
        let supply = self.books.supply();
        let state_root = self.books.state_root();
        let stats = self.market.stats().clone();
        Report::new(
            self.config,
            self.tally,
            self.per_policy,
            behaviours,
            supply,
            state_root,
            self.books.applied,
            self.conservation_checks,
            stats,
            self.series,
        )
    }

    fn behaviour_stats(&self, behaviour: Behaviour) -> BehaviourStats {
        let mut s = BehaviourStats::new(behaviour);
        for p in self
            .providers
            .iter()
            .filter(|p| p.active && p.behaviour == behaviour)
        {
            let worth = self.books.balance(&p.account).0 + self.books.bonded(&p.account).0;
            s.providers += 1;
            s.runs += p.tally.runs;
            s.cheats += p.tally.cheats;
            s.caught += p.tally.caught;
            s.slashed += u128::from(p.tally.slashed);
            s.cost += u128::from(p.tally.cost);
            s.cost_saved += u128::from(p.tally.cost_saved);
            s.pay_forfeited += u128::from(p.tally.pay_forfeited);
            s.ledger_gain += i128::from(worth) - i128::from(p.start_worth);
        }
        s.finish();
        s
    }
}

/// Whether provider `p` returns a wrong result for `job`, by its behaviour.
fn decide_cheat(config: &SimConfig, p: &Provider, job: &Job, rng: &mut ChaCha8Rng) -> bool {
    match p.behaviour {
        Behaviour::Honest => false,
        Behaviour::Always => true,
        Behaviour::Rarely => rng.random_range(0..PPM) < config.rarely_q_ppm,
        Behaviour::HighValue => job.cu >= config.high_value_cu,
        // A ring member backs its ring's lie when it checks a partner, and lies on its own.
        Behaviour::Colluding => job.ring_lie.is_none_or(|(ring, _)| ring == p.ring),
        Behaviour::AfterTrust => p.history.consecutive_verified >= config.trust_after,
    }
}

fn new_provider(config: &SimConfig, rng: &mut ChaCha8Rng, i: u32) -> Provider {
    let behaviour = pick_behaviour(config, rng);
    let cost_per_cu = REFERENCE_COST * rng.random_range(70..=130) / 100;
    let cheap = behaviour != Behaviour::Honest && config.cheaters_cheapest;
    let price = if cheap {
        REFERENCE_COST * 55 / 100
    } else {
        cost_per_cu * rng.random_range(120..=160) / 100
    };
    let account = account("provider", i);
    Provider {
        account,
        ask: AskId::named(&account, "sim"),
        name: format!("p{i}"),
        behaviour,
        ring: i / config.ring_size.max(1),
        region: rng.random_range(0..config.regions),
        cores: rng.random_range(1..=4),
        cost_per_cu,
        price: Price(price),
        active: false,
        online: false,
        listed: false,
        epoch: 0,
        running: 0,
        history: ProviderHistory::default(),
        faults: FaultRecord::default(),
        suspended_until: 0,
        target_stake: target_stake(config),
        start_worth: 0,
        tally: ProviderTally::default(),
    }
}

/// Enough stake for the largest slash the run can ask of it — the rule's `C/p − R` for the
/// largest job under the least-detecting sampling policy, with R taken as zero — so the
/// stake rule's minimum never keeps an honest provider out of an order.
fn target_stake(config: &SimConfig) -> Amount {
    let cost = Price(REFERENCE_COST)
        .cost(Fuel::compute_units(JOB_CU.1))
        .unwrap_or(Amount::ZERO);
    let most = config
        .policies
        .iter()
        .map(|(p, _)| deterrent_stake(Amount::ZERO, cost, detection_ppm(p)))
        .max()
        .unwrap_or(Amount::ZERO);
    Amount((u128::from(most.0) * u128::from(config.stake_ratio_ppm) / u128::from(PPM)) as u64)
}

fn pick_behaviour(config: &SimConfig, rng: &mut ChaCha8Rng) -> Behaviour {
    let mut draw = rng.random_range(0..PPM);
    for b in &Behaviour::ALL[1..] {
        let share = config.share_ppm(*b);
        if draw < share {
            return *b;
        }
        draw -= share;
    }
    Behaviour::Honest
}

fn pick_weighted(items: &[(VerifyPolicy, u32)], rng: &mut ChaCha8Rng) -> usize {
    let total: u32 = items.iter().map(|(_, w)| *w).sum();
    let mut draw = rng.random_range(0..total.max(1));
    for (i, (_, w)) in items.iter().enumerate() {
        if draw < *w {
            return i;
        }
        draw -= w;
    }
    0
}

/// Job sizes: Pareto with shape 1.5 from the smallest size, capped at the largest.
fn pareto_cu(rng: &mut ChaCha8Rng) -> u64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let cu = JOB_CU.0 as f64 / u.powf(1.0 / 1.5);
    (cu as u64).clamp(JOB_CU.0, JOB_CU.1)
}

fn ask_of(p: &Provider) -> Ask {
    Ask {
        id: p.ask,
        provider: p.account,
        capacity: Resources {
            cpu_millis: u64::from(p.cores) * 1_000,
            memory_bytes: u64::from(p.cores) * 4 * GIB,
            disk_bytes: 0,
            gpus: vec![],
        },
        arch: "x86_64".into(),
        features: Default::default(),
        attributes: BTreeMap::from([(PROVIDER_ATTR.to_string(), p.name.clone())]),
        prices: BTreeMap::from([(ResourceClass::cpu(), p.price)]),
        min_job: Fuel(0),
        max_job: Fuel::compute_units(JOB_CU.1 * 2),
        expires_ms: ASK_EXPIRY_MS,
    }
}

/// A simulation account: a hash of its role and index (the simulation signs nothing).
fn account(role: &str, i: u32) -> AccountId {
    AccountId::from_bytes(
        Hash::tagged("agora-sim/account/v1", &[role.as_bytes(), &i.to_le_bytes()]).0,
    )
}

/// `a ÷ b`, or 0 when nothing was billed.
pub fn ratio(a: u128, b: u128) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// A price in AGR per compute unit, for reports.
pub fn agr_per_cu(price: u64) -> f64 {
    price as f64 / agora_core::money::BASE_UNITS_PER_AGR as f64
}

const _: () = assert!(FUEL_PER_COMPUTE_UNIT > 0);
