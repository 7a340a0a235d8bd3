//! Sharded markets: N market nodes (one per region) that share providers and settle on one
//! chain without ever assigning one provider slot to two orders.
//!
//! **The rule.** A provider's capacity is a number of slots. A shard may run a job on a
//! provider only while it holds a *lease* on one of the provider's slots, and leases are
//! granted by the chain's sequencer, one transaction at a time, in chain order: a claim
//! for a provider whose slots are all leased is refused. [`LeaseTable`] is that rule; the
//! property tests hold it to "never more leases than slots, never one slot twice".
//!
//! **Gossip** carries the provider's asks (to every shard) and every lease grant and
//! release (from the chain to every shard). A shard matches optimistically against its
//! gossiped view with the real [`Market`] — its book shows a provider's slots minus the
//! leases other shards hold, as far as it has heard — then claims the lease. A claim that
//! loses a race (the view was stale) is refused; the shard releases its match and matches
//! again without that provider. So a stale view costs latency, never a double assignment.
//!
//! **What is measured** (simulated network, [`crate::network`]): the claim round trip
//! (match → lease granted, seen by the claiming shard), the gossip delay until the *other*
//! shards know of a lease (the cross-shard latency), the share of claims refused, and the
//! invariant itself at every grant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use agora_core::{AccountId, Amount, Fuel, Hash, Price};
use agora_ledger::{Params, TxBody};
use agora_market::resources::GIB;
use agora_market::{
    Ask, AskId, AttributeConstraint, Demand, Market, MatchId, MatchOutcome, Order, OrderId,
    ReleaseReason, Requirements, ResourceClass, Resources,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::money::Books;
use crate::network::{Network, Region};

/// A shard (market node) index.
pub type ShardId = u32;

/// Who holds one slot of a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The shard that claimed it.
    pub shard: ShardId,
    /// The order it runs.
    pub order: u64,
}

/// Why a claim was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Every slot of the provider is leased.
    #[error("provider {provider} has all {slots} slots leased; match another provider")]
    Full {
        /// The provider.
        provider: u32,
        /// Its slots.
        slots: u32,
    },
    /// The provider is not known to the chain.
    #[error("provider {0} has no slots registered on the chain")]
    UnknownProvider(u32),
    /// A release for a slot the releaser does not hold.
    #[error("slot {slot} of provider {provider} is not held by that order")]
    NotHeld {
        /// The provider.
        provider: u32,
        /// The slot.
        slot: u32,
    },
}

/// The chain's lease registry: per provider, its slots and who holds each.
#[derive(Clone, Debug, Default)]
pub struct LeaseTable {
    slots: Vec<Vec<Option<Lease>>>,
}

impl LeaseTable {
    /// A table with `slots[i]` slots for provider i.
    pub fn new(slots: &[u32]) -> LeaseTable {
        LeaseTable {
            slots: slots.iter().map(|&n| vec![None; n as usize]).collect(),
        }
    }

    /// Grants `lease` the lowest free slot of `provider`, or refuses.
    pub fn claim(&mut self, provider: u32, lease: Lease) -> Result<u32, LeaseError> {
        let slots = self
            .slots
            .get_mut(provider as usize)
            .ok_or(LeaseError::UnknownProvider(provider))?;
        let n = slots.len() as u32;
        let free = slots
            .iter()
            .position(Option::is_none)
            .ok_or(LeaseError::Full { provider, slots: n })?;
        slots[free] = Some(lease);
        Ok(free as u32)
    }

    /// Frees `slot` of `provider` if `order` holds it.
    pub fn release(&mut self, provider: u32, slot: u32, order: u64) -> Result<Lease, LeaseError> {
        let held = self
            .slots
            .get_mut(provider as usize)
            .and_then(|s| s.get_mut(slot as usize))
            .filter(|l| l.is_some_and(|l| l.order == order))
            .ok_or(LeaseError::NotHeld { provider, slot })?;
        held.take().ok_or(LeaseError::NotHeld { provider, slot })
    }

    /// Leases `provider` has out now.
    pub fn held(&self, provider: u32) -> u32 {
        self.slots
            .get(provider as usize)
            .map_or(0, |s| s.iter().filter(|l| l.is_some()).count() as u32)
    }

    /// Checks the invariant: no order holds two slots of one provider and no slot is held
    /// twice (by construction a slot holds one lease; this checks orders across slots).
    pub fn audit(&self) -> Result<(), String> {
        for (p, slots) in self.slots.iter().enumerate() {
            let mut orders: Vec<u64> = slots.iter().flatten().map(|l| l.order).collect();
            orders.sort_unstable();
            if orders.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("provider {p}: one order holds two slots"));
            }
        }
        Ok(())
    }
}

/// A sharded run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardConfig {
    /// The seed.
    pub seed: u64,
    /// Market shards, one per region.
    pub shards: u32,
    /// Providers, spread over the regions, each listed in every shard.
    pub providers: u32,
    /// Jobs, spread over the shards.
    pub jobs: u64,
    /// Job arrivals per simulated second, all shards together.
    pub arrivals_per_s: u32,
    /// Mean job run time, ms.
    pub mean_run_ms: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            seed: 1,
            shards: 2,
            providers: 1_000,
            jobs: 100_000,
            // About half of the 2,500 slots busy on average.
            arrivals_per_s: 60,
            mean_run_ms: 20_000,
        }
    }
}

/// What a sharded run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// The configuration.
    pub config: ShardConfig,
    /// Jobs that ran and settled on the chain.
    pub settled: u64,
    /// Jobs no provider could take (every one busy or refused).
    pub unplaced: u64,
    /// Lease claims sent.
    pub claims: u64,
    /// Claims the chain refused (the claiming shard's view was stale).
    pub refused: u64,
    /// Claims to a provider whose home is another shard's region.
    pub cross_shard_claims: u64,
    /// Most leases any provider held at once, over its slots (must stay ≤ 1).
    pub max_load: f64,
    /// Invariant violations seen at the chain (must be 0).
    pub double_assignments: u64,
    /// Match → lease granted as seen by the claiming shard, ms: p50, p95, p99.
    pub claim_round_trip_ms: [u64; 3],
    /// Lease granted → every other shard knows it (the cross-shard latency), ms: p50, p95, p99.
    pub cross_shard_gossip_ms: [u64; 3],
    /// Arrival → run started, ms: p50, p95, p99.
    pub time_to_start_ms: [u64; 3],
    /// Whether the chain's money was conserved at the end.
    pub conserved: bool,
}

impl ShardReport {
    /// A few lines a person reads.
    pub fn summary(&self) -> String {
        let c = &self.config;
        format!(
            "{} shards sharing {} providers, {} jobs: settled {}, unplaced {}; lease claims {} ({} cross-shard), refused {} ({:.2} %); double assignments {}; most leases per provider ÷ slots {:.2}\n\
             claim round trip p50/p95/p99 {:?} ms; cross-shard gossip of a lease p50/p95/p99 {:?} ms; arrival → run start {:?} ms; money conserved: {}\n",
            c.shards,
            c.providers,
            c.jobs,
            self.settled,
            self.unplaced,
            self.claims,
            self.cross_shard_claims,
            self.refused,
            100.0 * self.refused as f64 / self.claims.max(1) as f64,
            self.double_assignments,
            self.max_load,
            self.claim_round_trip_ms,
            self.cross_shard_gossip_ms,
            self.time_to_start_ms,
            self.conserved
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive,
    Claim {
        shard: u32,
        job: u64,
        provider: u32,
    },
    Reply {
        shard: u32,
        job: u64,
        provider: u32,
        slot: Option<u32>,
        granted_at: u64,
    },
    Done {
        shard: u32,
        job: u64,
        provider: u32,
        slot: u32,
    },
    ReleaseAtChain {
        provider: u32,
        slot: u32,
        job: u64,
    },
    Gossip {
        to: u32,
        provider: u32,
        from: u32,
        delta: i8,
        sent: u64,
        grant: bool,
    },
}

struct SProvider {
    account: AccountId,
    ask: AskId,
    name: String,
    region: Region,
    slots: u32,
    price: Price,
}

struct SJob {
    id: Hash,
    shard: u32,
    buyer: AccountId,
    fuel: Fuel,
    run_ms: u64,
    arrived: u64,
    matched_at: u64,
    tried: Vec<u32>,
    matched: Option<MatchId>,
}

struct Shard {
    market: Market,
    /// Leases other shards hold per provider, as far as this shard has heard.
    others: Vec<u32>,
    /// This shard's live matches per provider.
    own: Vec<u32>,
}

/// Runs the sharded market simulation.
pub fn run(config: ShardConfig) -> ShardReport {
    ShardSim::new(config).run()
}

struct ShardSim {
    config: ShardConfig,
    rng: ChaCha8Rng,
    net: Network,
    chain_region: Region,
    providers: Vec<SProvider>,
    shards: Vec<Shard>,
    leases: LeaseTable,
    books: Books,
    authority: AccountId,
    jobs: HashMap<u64, SJob>,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    now: u64,
    submitted: u64,
    report: ShardReport,
    round_trips: Vec<u64>,
    gossip: Vec<u64>,
    starts: Vec<u64>,
    index: HashMap<AccountId, u32>,
}

impl ShardSim {
    fn new(config: ShardConfig) -> ShardSim {
        let shards_n = config.shards.max(1);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let providers: Vec<SProvider> = (0..config.providers)
            .map(|i| {
                let account = sim_account("shard-provider", i);
                SProvider {
                    account,
                    ask: AskId::named(&account, "shard"),
                    name: format!("p{i}"),
                    region: i % shards_n,
                    slots: rng.random_range(1..=4),
                    price: Price(rng.random_range(500_000..1_500_000)),
                }
            })
            .collect();
        let authority = sim_account("shard-authority", 0);
        let buyers: Vec<AccountId> = (0..shards_n)
            .map(|s| sim_account("shard-buyer", s))
            .collect();
        let mut alloc: Vec<(AccountId, Amount)> = buyers
            .iter()
            .map(|b| (*b, Amount::agr(10_000_000)))
            .collect();
        alloc.push((authority, Amount::agr(1)));
        let params = Params {
            market_authority: authority,
            treasury: sim_account("shard-treasury", 0),
            fee_bps: 100,
            unbonding_period_blocks: 10,
            slash_beneficiary_bps: 5_000,
            block_producer: authority,
            allow_faulty_providers: false,
        };
        let books = match Books::new(alloc, params) {
            Ok(b) => b,
            Err(e) => unreachable!("a fixed, valid genesis: {e}"),
        };
        let slots: Vec<u32> = providers.iter().map(|p| p.slots).collect();
        let index = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.account, i as u32))
            .collect();
        let mut shards: Vec<Shard> = (0..shards_n)
            .map(|_| Shard {
                market: Market::default(),
                others: vec![0; providers.len()],
                own: vec![0; providers.len()],
            })
            .collect();
        for shard in &mut shards {
            for p in &providers {
                let _ = shard.market.upsert_ask(ask(p, p.slots), 0);
            }
        }
        let report = ShardReport {
            config: config.clone(),
            settled: 0,
            unplaced: 0,
            claims: 0,
            refused: 0,
            cross_shard_claims: 0,
            max_load: 0.0,
            double_assignments: 0,
            claim_round_trip_ms: [0; 3],
            cross_shard_gossip_ms: [0; 3],
            time_to_start_ms: [0; 3],
            conserved: true,
        };
        ShardSim {
            net: Network { regions: shards_n },
            chain_region: 0,
            config,
            rng,
            providers,
            shards,
            leases: LeaseTable::new(&slots),
            books,
            authority,
            jobs: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            submitted: 0,
            report,
            round_trips: Vec::new(),
            gossip: Vec::new(),
            starts: Vec::new(),
            index,
        }
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn run(mut self) -> ShardReport {
        self.schedule(0, Ev::Arrive);
        while let Some(Reverse((at, _, ev))) = self.queue.pop() {
            self.now = at;
            match ev {
                Ev::Arrive => self.arrive(),
                Ev::Claim {
                    shard,
                    job,
                    provider,
                } => self.claim_at_chain(shard, job, provider),
                Ev::Reply {
                    shard,
                    job,
                    provider,
                    slot,
                    granted_at,
                } => self.reply(shard, job, provider, slot, granted_at),
                Ev::Done {
                    shard,
                    job,
                    provider,
                    slot,
                } => self.done(shard, job, provider, slot),
                Ev::ReleaseAtChain {
                    provider,
                    slot,
                    job,
                } => self.release_at_chain(provider, slot, job),
                Ev::Gossip {
                    to,
                    provider,
                    from,
                    delta,
                    sent,
                    grant,
                } => self.hear(to, provider, from, delta, sent, grant),
            }
        }
        self.report.conserved = self.books.check_conservation().is_ok();
        self.report.claim_round_trip_ms = percentiles(&mut self.round_trips);
        self.report.cross_shard_gossip_ms = percentiles(&mut self.gossip);
        self.report.time_to_start_ms = percentiles(&mut self.starts);
        self.report
    }

    fn arrive(&mut self) {
        if self.submitted >= self.config.jobs {
            return;
        }
        self.submitted += 1;
        let seq = self.submitted;
        let shard = self.rng.random_range(0..self.shards.len() as u32);
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let run_ms = ((-u.ln()) * self.config.mean_run_ms as f64) as u64 + 1;
        let fuel = Fuel::compute_units(run_ms.div_ceil(1_000));
        let id = Hash::tagged(
            "agora-sim/shard-order/v1",
            &[&self.config.seed.to_le_bytes(), &seq.to_le_bytes()],
        );
        let buyer = sim_account("shard-buyer", shard);
        let escrow = Price(2_000_000).max_cost(fuel).unwrap_or(Amount::ZERO);
        let open = TxBody::OpenEscrow {
            order_id: id,
            amount: escrow,
            deadline_ms: self.now + 86_400_000,
        };
        if self.books.apply(buyer, &open, self.now).is_ok() {
            self.jobs.insert(
                seq,
                SJob {
                    id,
                    shard,
                    buyer,
                    fuel,
                    run_ms,
                    arrived: self.now,
                    matched_at: 0,
                    tried: Vec::new(),
                    matched: None,
                },
            );
            self.place(seq);
        }
        let rate = f64::from(self.config.arrivals_per_s.max(1));
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let gap = ((-u.ln() / rate) * 1_000.0).round() as u64;
        self.schedule(self.now + gap, Ev::Arrive);
    }

    /// Matches the job in its shard's market and sends the lease claim to the chain.
    fn place(&mut self, seq: u64) {
        let Some(job) = self.jobs.get_mut(&seq) else {
            return;
        };
        let shard = job.shard;
        let order = Order {
            id: OrderId(job.id),
            buyer: job.buyer,
            demand: Demand {
                cpu_millis: 1_000,
                memory_bytes: GIB,
                disk_bytes: 0,
                gpu: None,
            },
            requirements: Requirements {
                attributes: job
                    .tried
                    .iter()
                    .map(|&i| {
                        AttributeConstraint::not("provider", &self.providers[i as usize].name)
                    })
                    .collect(),
                ..Requirements::default()
            },
            fuel: job.fuel,
            cap: Price(2_000_000),
            deadline_ms: job.arrived + 86_400_000,
        };
        let market = &mut self.shards[shard as usize].market;
        let winner = match market.submit_order(order, self.now) {
            Ok(MatchOutcome::Filled(fill)) => fill.winners.into_iter().next(),
            _ => None,
        };
        let Some(winner) = winner else {
            self.report.unplaced += 1;
            if let Some(job) = self.jobs.remove(&seq) {
                let _ = self.books.apply(
                    self.authority,
                    &TxBody::RefundEscrow { order_id: job.id },
                    self.now,
                );
            }
            return;
        };
        let provider = self.index.get(&winner.provider).copied().unwrap_or(0);
        job.matched = Some(winner.match_id);
        job.matched_at = self.now;
        job.tried.push(provider);
        self.shards[shard as usize].own[provider as usize] += 1;
        self.report.claims += 1;
        if self.providers[provider as usize].region != shard {
            self.report.cross_shard_claims += 1;
        }
        let at = self.now + self.net.delay_ms(shard, self.chain_region, &mut self.rng);
        self.schedule(
            at,
            Ev::Claim {
                shard,
                job: seq,
                provider,
            },
        );
    }

    /// The sequencer decides a claim in chain order and gossips a grant to every shard.
    fn claim_at_chain(&mut self, shard: u32, job: u64, provider: u32) {
        let slot = self
            .leases
            .claim(provider, Lease { shard, order: job })
            .ok();
        if self.leases.held(provider) > self.providers[provider as usize].slots
            || self.leases.audit().is_err()
        {
            self.report.double_assignments += 1;
        }
        let load = f64::from(self.leases.held(provider))
            / f64::from(self.providers[provider as usize].slots);
        self.report.max_load = self.report.max_load.max(load);
        let back = self.now + self.net.delay_ms(self.chain_region, shard, &mut self.rng);
        self.schedule(
            back,
            Ev::Reply {
                shard,
                job,
                provider,
                slot,
                granted_at: self.now,
            },
        );
        if slot.is_some() {
            self.gossip_change(provider, shard, 1, true);
        }
    }

    fn gossip_change(&mut self, provider: u32, from: u32, delta: i8, grant: bool) {
        for to in 0..self.shards.len() as u32 {
            if to != from {
                let at = self.now + self.net.delay_ms(self.chain_region, to, &mut self.rng);
                self.schedule(
                    at,
                    Ev::Gossip {
                        to,
                        provider,
                        from,
                        delta,
                        sent: self.now,
                        grant,
                    },
                );
            }
        }
    }

    fn reply(&mut self, shard: u32, seq: u64, provider: u32, slot: Option<u32>, granted_at: u64) {
        let Some(job) = self.jobs.get_mut(&seq) else {
            return;
        };
        let _ = granted_at;
        match slot {
            Some(slot) => {
                self.round_trips.push(self.now - job.matched_at);
                self.starts.push(self.now - job.arrived);
                let region = self.providers[provider as usize].region;
                let run = self.net.delay_ms(shard, region, &mut self.rng)
                    + job.run_ms
                    + self.net.delay_ms(region, shard, &mut self.rng);
                self.schedule(
                    self.now + run,
                    Ev::Done {
                        shard,
                        job: seq,
                        provider,
                        slot,
                    },
                );
            }
            None => {
                self.report.refused += 1;
                if let Some(m) = job.matched.take() {
                    let _ = self.shards[shard as usize]
                        .market
                        .release(&m, ReleaseReason::Cancelled);
                }
                self.shards[shard as usize].own[provider as usize] -= 1;
                self.refresh(shard, provider);
                self.place(seq);
            }
        }
    }

    fn done(&mut self, shard: u32, seq: u64, provider: u32, slot: u32) {
        let Some(mut job) = self.jobs.remove(&seq) else {
            return;
        };
        if let Some(m) = job.matched.take() {
            let _ = self.shards[shard as usize]
                .market
                .release(&m, ReleaseReason::Completed);
        }
        self.shards[shard as usize].own[provider as usize] -= 1;
        self.refresh(shard, provider);
        let p = &self.providers[provider as usize];
        let pay = p.price.cost(job.fuel).unwrap_or(Amount::ZERO);
        if !pay.is_zero() {
            let release = TxBody::ReleaseEscrow {
                order_id: job.id,
                payouts: vec![(p.account, pay)],
            };
            let _ = self.books.apply(self.authority, &release, self.now);
        }
        let _ = self.books.apply(
            self.authority,
            &TxBody::RefundEscrow { order_id: job.id },
            self.now,
        );
        self.report.settled += 1;
        let at = self.now + self.net.delay_ms(shard, self.chain_region, &mut self.rng);
        self.schedule(
            at,
            Ev::ReleaseAtChain {
                provider,
                slot,
                job: seq,
            },
        );
    }

    fn release_at_chain(&mut self, provider: u32, slot: u32, job: u64) {
        if let Ok(lease) = self.leases.release(provider, slot, job) {
            self.gossip_change(provider, lease.shard, -1, false);
        }
    }

    /// Another shard's lease came or went: adjust this shard's view of the provider.
    fn hear(&mut self, to: u32, provider: u32, _from: u32, delta: i8, sent: u64, grant: bool) {
        if grant {
            self.gossip.push(self.now - sent);
        }
        let view = &mut self.shards[to as usize].others[provider as usize];
        *view = if delta > 0 {
            *view + 1
        } else {
            view.saturating_sub(1)
        };
        self.refresh(to, provider);
    }

    /// Re-lists a provider in one shard with the slots that shard believes are free to it.
    fn refresh(&mut self, shard: u32, provider: u32) {
        let p = &self.providers[provider as usize];
        let s = &mut self.shards[shard as usize];
        let visible = p
            .slots
            .saturating_sub(s.others[provider as usize])
            .max(s.own[provider as usize]);
        if visible == 0 {
            let _ = s.market.withdraw_ask(&p.ask, &p.account);
        } else {
            let _ = s.market.upsert_ask(ask(p, visible), self.now);
        }
    }
}

fn ask(p: &SProvider, slots: u32) -> Ask {
    Ask {
        id: p.ask,
        provider: p.account,
        capacity: Resources {
            cpu_millis: u64::from(slots) * 1_000,
            memory_bytes: u64::from(slots) * GIB,
            disk_bytes: 0,
            gpus: vec![],
        },
        arch: "x86_64".into(),
        features: Default::default(),
        attributes: BTreeMap::from([("provider".to_string(), p.name.clone())]),
        prices: BTreeMap::from([(ResourceClass::cpu(), p.price)]),
        min_job: Fuel(0),
        max_job: Fuel::compute_units(1_000_000),
        expires_ms: u64::MAX / 4,
    }
}

fn sim_account(role: &str, i: u32) -> AccountId {
    AccountId::from_bytes(
        Hash::tagged("agora-sim/account/v1", &[role.as_bytes(), &i.to_le_bytes()]).0,
    )
}

fn percentiles(values: &mut [u64]) -> [u64; 3] {
    if values.is_empty() {
        return [0; 3];
    }
    values.sort_unstable();
    let at = |q: usize| values[((values.len() - 1) * q) / 100];
    [at(50), at(95), at(99)]
}
