//! The [`Market`]: the book, its providers, live matches, open auctions and the price tape,
//! behind one API whose every call either succeeds or changes nothing.

use std::collections::{BTreeMap, HashMap};

use agora_core::{AccountId, Amount, Fuel, Price};
use serde::{Deserialize, Serialize};

use crate::ask::{Ask, AskId};
use crate::auction::OpenAuction;
use crate::book::{AskEntry, Book, Providers, Reserved};
use crate::engine::{self, Candidate};
use crate::error::MarketError;
use crate::explain::{self, NoMatchExplanation, Pair, Parts};
use crate::order::{Fill, MatchId, MatchOutcome, Order, OrderId, ReleaseReason, Winner};
use crate::pricing::PricingPolicy;
use crate::reputation::{Reputation, ReputationEvent, ReputationPolicy, ReputationRecord};
use crate::resources::{Claim, Demand, GIB, ResourceClass, Resources};
use crate::spot::{DepthLevel, PriceIndex, Tape};

/// Price levels a [`PriceIndex`] lists.
const DEPTH_LEVELS: usize = 10;

/// Bounds that separate real machines and jobs from unit mistakes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most CPU one ask or order may state, millicores.
    pub max_cpu_millis: u64,
    /// Most memory, bytes.
    pub max_memory_bytes: u64,
    /// Most disk, bytes.
    pub max_disk_bytes: u64,
    /// Most GPUs in one group or one demand.
    pub max_gpus: u32,
    /// Most memory per GPU, bytes.
    pub max_vram_bytes: u64,
    /// Most replicas per order.
    pub max_replicas: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_cpu_millis: 1_024_000,
            max_memory_bytes: 64 * 1024 * GIB,
            max_disk_bytes: 1024 * 1024 * GIB,
            max_gpus: 64,
            max_vram_bytes: 1024 * GIB,
            max_replicas: 64,
        }
    }
}

impl Limits {
    /// Checks an ask's capacity.
    pub(crate) fn check_capacity(&self, r: &Resources) -> Result<(), MarketError> {
        let what = "ask";
        positive(what, "cpu_millis", r.cpu_millis)?;
        positive(what, "memory_bytes", r.memory_bytes)?;
        self.check_sizes(what, r.cpu_millis, r.memory_bytes, r.disk_bytes)?;
        for g in &r.gpus {
            if g.model.is_empty() || g.model.contains(char::is_whitespace) {
                return Err(MarketError::UnknownResourceClass {
                    class: format!("gpu:{}", g.model),
                });
            }
            self.check_gpus(what, g.count, g.vram_bytes)?;
            positive(what, "gpu vram_bytes", g.vram_bytes)?;
        }
        Ok(())
    }

    /// Checks an order's demand.
    pub(crate) fn check_demand(&self, d: &Demand) -> Result<(), MarketError> {
        let what = "order";
        positive(what, "cpu_millis", d.cpu_millis)?;
        positive(what, "memory_bytes", d.memory_bytes)?;
        self.check_sizes(what, d.cpu_millis, d.memory_bytes, d.disk_bytes)?;
        if let Some(g) = &d.gpu {
            if g.model
                .as_deref()
                .is_some_and(|m| m.is_empty() || m.contains(char::is_whitespace))
            {
                return Err(MarketError::UnknownResourceClass {
                    class: format!("gpu:{}", g.model.as_deref().unwrap_or_default()),
                });
            }
            self.check_gpus(what, g.count, g.min_vram_bytes)?;
        }
        Ok(())
    }

    fn check_sizes(&self, what: &str, cpu: u64, memory: u64, disk: u64) -> Result<(), MarketError> {
        at_most(what, "cpu_millis", cpu, self.max_cpu_millis)?;
        at_most(what, "memory_bytes", memory, self.max_memory_bytes)?;
        at_most(what, "disk_bytes", disk, self.max_disk_bytes)
    }

    fn check_gpus(&self, what: &str, count: u32, vram: u64) -> Result<(), MarketError> {
        positive(what, "gpu count", u64::from(count))?;
        at_most(
            what,
            "gpu count",
            u64::from(count),
            u64::from(self.max_gpus),
        )?;
        at_most(what, "gpu vram_bytes", vram, self.max_vram_bytes)
    }
}

fn positive(what: &str, field: &str, value: u64) -> Result<(), MarketError> {
    if value == 0 {
        return Err(MarketError::ZeroResource {
            what: what.into(),
            field: field.into(),
        });
    }
    Ok(())
}

fn at_most(what: &str, field: &str, value: u64, limit: u64) -> Result<(), MarketError> {
    if value > limit {
        return Err(MarketError::AbsurdResource {
            what: what.into(),
            field: field.into(),
            value,
            limit,
        });
    }
    Ok(())
}

/// Everything tunable about a market. Every node of one network must use the same.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketConfig {
    /// The effective-price formula.
    pub pricing: PricingPolicy,
    /// The reputation model.
    pub reputation: ReputationPolicy,
    /// Input bounds.
    pub limits: Limits,
}

/// A live match: who runs what at which price until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchInfo {
    /// The match.
    pub match_id: MatchId,
    /// Its order.
    pub order: OrderId,
    /// The provider.
    pub provider: AccountId,
    /// The ask whose capacity it holds.
    pub ask: AskId,
    /// The class it is priced in.
    pub class: ResourceClass,
    /// Price paid per CU.
    pub price: Price,
    /// Effective price it was ranked by.
    pub effective_price: Price,
    /// The job's fuel budget.
    pub fuel: Fuel,
    /// When it expires unless released first.
    pub deadline_ms: u64,
}

/// Running counts of what the market did, for a node's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketStats {
    /// Orders filled (instant or auction).
    pub filled: u64,
    /// Orders (instant or auction) that could not be placed.
    pub unmatched: u64,
    /// Matches released as completed.
    pub completed: u64,
    /// Matches released as failed.
    pub failed: u64,
    /// Matches released by cancellation.
    pub cancelled: u64,
    /// Matches released at their deadline.
    pub expired: u64,
}

impl MarketStats {
    fn count_release(&mut self, reason: ReleaseReason) {
        let counter = match reason {
            ReleaseReason::Completed => &mut self.completed,
            ReleaseReason::Failed => &mut self.failed,
            ReleaseReason::Cancelled => &mut self.cancelled,
            ReleaseReason::Expired => &mut self.expired,
        };
        *counter += 1;
    }
}

/// What [`Market::expire`] released.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expired {
    /// Matches whose order deadline passed, in id order.
    pub matches: Vec<MatchId>,
    /// Asks that lapsed and left the book, in id order.
    pub asks: Vec<AskId>,
}

#[derive(Clone, Debug)]
pub(crate) struct Reservation {
    pub info: MatchInfo,
    pub slot: u32,
    pub claim: Claim,
}

/// The market engine. See the crate docs for the tour.
pub struct Market {
    pub(crate) config: MarketConfig,
    pub(crate) book: Book,
    pub(crate) providers: Providers,
    pub(crate) matches: HashMap<MatchId, Reservation>,
    pub(crate) orders: HashMap<OrderId, Vec<MatchId>>,
    pub(crate) auctions: BTreeMap<OrderId, OpenAuction>,
    pub(crate) tape: Tape,
    pub(crate) stats: MarketStats,
}

impl Default for Market {
    fn default() -> Self {
        Market::with_valid_config(MarketConfig::default())
    }
}

impl Market {
    /// A market with `config`, if it is valid.
    pub fn new(config: MarketConfig) -> Result<Market, MarketError> {
        config.pricing.validate()?;
        config.reputation.validate()?;
        Ok(Market::with_valid_config(config))
    }

    fn with_valid_config(config: MarketConfig) -> Market {
        Market {
            config,
            book: Book::default(),
            providers: Providers::default(),
            matches: HashMap::new(),
            orders: HashMap::new(),
            auctions: BTreeMap::new(),
            tape: Tape::default(),
            stats: MarketStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MarketConfig {
        &self.config
    }

    // ---- asks and providers ----

    /// Adds `ask`, or replaces the ask with the same id. An update keeps the ask's live
    /// matches, so it is refused if it would leave them without their capacity.
    pub fn upsert_ask(&mut self, ask: Ask, now_ms: u64) -> Result<(), MarketError> {
        ask.validate(&self.config.limits, now_ms)?;
        let Some(slot) = self.book.slot_of(&ask.id) else {
            let provider = self.providers.intern(ask.provider);
            self.refresh_bound(provider);
            let slot = self.book.insert(AskEntry::new(ask, provider));
            self.book
                .list(slot, &mut self.providers, &self.config.pricing);
            return Ok(());
        };
        let entry = self
            .book
            .entry(slot)
            .ok_or(MarketError::UnknownAsk(ask.id))?;
        check_owner(entry, &ask.provider)?;
        let reserved = reserved_after_update(entry, &ask)?;
        self.book
            .unlist(slot, &mut self.providers, &self.config.pricing);
        if let Some(entry) = self.book.entry_mut(slot) {
            entry.ask = ask;
            entry.reserved = reserved;
        }
        self.book
            .list(slot, &mut self.providers, &self.config.pricing);
        Ok(())
    }

    /// Withdraws an ask: it takes no new matches at once, and leaves the book when its
    /// last live match is released.
    pub fn withdraw_ask(&mut self, id: &AskId, provider: &AccountId) -> Result<(), MarketError> {
        let slot = self.book.slot_of(id).ok_or(MarketError::UnknownAsk(*id))?;
        let entry = self.book.entry(slot).ok_or(MarketError::UnknownAsk(*id))?;
        check_owner(entry, provider)?;
        self.retire(slot);
        Ok(())
    }

    fn retire(&mut self, slot: u32) {
        self.book
            .unlist(slot, &mut self.providers, &self.config.pricing);
        if self.book.entry(slot).is_some_and(|e| e.live_matches == 0) {
            self.book.remove(slot);
        }
    }

    /// Sets a provider's stake (as the ledger reports it).
    pub fn set_stake(&mut self, provider: AccountId, stake: Amount) {
        let index = self.providers.intern(provider);
        self.providers.get_mut(index).stake = stake;
        self.refresh_bound(index);
    }

    /// Records a reputation event for `provider` at `now_ms`.
    pub fn record_event(&mut self, provider: AccountId, event: ReputationEvent, now_ms: u64) {
        let index = self.providers.intern(provider);
        let policy = &self.config.reputation;
        self.providers
            .get_mut(index)
            .reputation
            .record(event, now_ms, policy);
        self.refresh_bound(index);
    }

    /// Recomputes a provider's discount bound and, if it moved, re-keys its listed asks so
    /// the index stays sorted by a valid lower bound of their effective prices.
    fn refresh_bound(&mut self, index: u32) {
        let state = self.providers.get(index);
        let score_bound = state.reputation.score_bound_ppm(&self.config.reputation);
        let bound = self
            .config
            .pricing
            .discount_bound_bps(score_bound, state.stake);
        if bound == state.bound_bps {
            return;
        }
        let slots = state.listed_slots.clone();
        for &slot in &slots {
            self.book
                .unlist(slot, &mut self.providers, &self.config.pricing);
        }
        self.providers.get_mut(index).bound_bps = bound;
        for &slot in &slots {
            self.book
                .list(slot, &mut self.providers, &self.config.pricing);
        }
    }

    /// A provider's reputation at `now_ms` (the newcomer prior for unknown providers).
    pub fn reputation(&self, provider: &AccountId, now_ms: u64) -> Reputation {
        let record = self
            .providers
            .index_of(provider)
            .map(|i| &self.providers.get(i).reputation);
        record
            .cloned()
            .unwrap_or_else(ReputationRecord::default)
            .at(now_ms, &self.config.reputation)
    }

    /// The ask with `id`, listed or draining.
    pub fn ask(&self, id: &AskId) -> Option<&Ask> {
        self.book
            .slot_of(id)
            .and_then(|s| self.book.entry(s))
            .map(|e| &e.ask)
    }

    /// The capacity of ask `id` not held by live matches.
    pub fn free_capacity(&self, id: &AskId) -> Option<Resources> {
        let entry = self.book.slot_of(id).and_then(|s| self.book.entry(s))?;
        let mut free = entry.ask.capacity.clone();
        free.cpu_millis = entry.free_cpu();
        free.memory_bytes = entry.free_memory();
        free.disk_bytes = entry.free_disk();
        for (i, g) in free.gpus.iter_mut().enumerate() {
            g.count = entry.free_gpus(i);
        }
        Some(free)
    }

    /// Providers with at least one listed ask.
    pub fn provider_count(&self) -> u32 {
        self.providers.listed
    }

    /// Asks in the book (listed, or withdrawn with live matches).
    pub fn ask_count(&self) -> usize {
        self.book.entries().count()
    }

    // ---- instant matching ----

    /// Matches `order` at once: the k lowest effective prices among asks that satisfy every
    /// constraint and have the free capacity win, and their capacity is reserved. If fewer
    /// than k can be placed, nothing is reserved and the outcome explains why.
    pub fn submit_order(&mut self, order: Order, now_ms: u64) -> Result<MatchOutcome, MarketError> {
        self.check_new_order(&order, now_ms)?;
        let classes = order.demand.classes(self.book.classes.keys());
        let (cands, picks) = engine::search(
            &self.book,
            &self.providers,
            &self.config,
            &order,
            &classes,
            now_ms,
        );
        if picks.len() < usize::from(order.requirements.replicas) {
            self.stats.unmatched += 1;
            return Ok(MatchOutcome::NoMatch(self.explain(&order, now_ms)));
        }
        let prices: Vec<Price> = picks.iter().map(|&i| cands[i].price).collect();
        Ok(MatchOutcome::Filled(
            self.commit(&order, &classes, &cands, &picks, &prices, now_ms),
        ))
    }

    /// What [`Market::submit_order`] would do, without reserving anything.
    pub fn preview(&self, order: &Order, now_ms: u64) -> Result<MatchOutcome, MarketError> {
        let winners = self.quote(order, now_ms)?;
        if winners.is_empty() {
            return Ok(MatchOutcome::NoMatch(self.explain(order, now_ms)));
        }
        Ok(MatchOutcome::Filled(Fill {
            order: order.id,
            winners,
        }))
    }

    /// The winners [`Market::submit_order`] would pick, without reserving anything or
    /// explaining a miss: empty if the order cannot be placed now.
    pub fn quote(&self, order: &Order, now_ms: u64) -> Result<Vec<Winner>, MarketError> {
        self.check_new_order(order, now_ms)?;
        let classes = order.demand.classes(self.book.classes.keys());
        let (cands, picks) = engine::search(
            &self.book,
            &self.providers,
            &self.config,
            order,
            &classes,
            now_ms,
        );
        if picks.len() < usize::from(order.requirements.replicas) {
            return Ok(Vec::new());
        }
        Ok(picks
            .iter()
            .map(|&i| self.winner(order, &classes, &cands[i], cands[i].price))
            .collect())
    }

    pub(crate) fn check_new_order(&self, order: &Order, now_ms: u64) -> Result<(), MarketError> {
        order.validate(&self.config.limits, now_ms)?;
        if self.orders.contains_key(&order.id) || self.auctions.contains_key(&order.id) {
            return Err(MarketError::DuplicateOrder(order.id));
        }
        if u32::from(order.requirements.replicas) > self.providers.listed {
            return Err(MarketError::NotEnoughProviders {
                replicas: order.requirements.replicas,
                providers: self.providers.listed,
            });
        }
        Ok(())
    }

    pub(crate) fn winner(
        &self,
        order: &Order,
        classes: &[ResourceClass],
        c: &Candidate,
        price: Price,
    ) -> Winner {
        let provider = self.providers.get(c.provider).account;
        let ask = self
            .book
            .entry(c.slot)
            .map(|e| e.ask.id)
            .unwrap_or(AskId(agora_core::Hash::ZERO));
        Winner {
            match_id: MatchId::of(&order.id, &provider),
            provider,
            ask,
            class: classes[c.class].clone(),
            price,
            effective_price: c.effective,
        }
    }

    /// Reserves the picked candidates' capacity and records the fill.
    pub(crate) fn commit(
        &mut self,
        order: &Order,
        classes: &[ResourceClass],
        cands: &[Candidate],
        picks: &[usize],
        prices: &[Price],
        now_ms: u64,
    ) -> Fill {
        let mut winners = Vec::with_capacity(picks.len());
        for (&i, &price) in picks.iter().zip(prices) {
            let c = &cands[i];
            let winner = self.winner(order, classes, c, price);
            if let Some(entry) = self.book.entry_mut(c.slot) {
                entry.reserve(&c.claim);
            }
            self.tape.record(&winner.class, price, order.fuel, now_ms);
            let info = MatchInfo {
                match_id: winner.match_id,
                order: order.id,
                provider: winner.provider,
                ask: winner.ask,
                class: winner.class.clone(),
                price,
                effective_price: c.effective,
                fuel: order.fuel,
                deadline_ms: order.deadline_ms,
            };
            self.matches.insert(
                winner.match_id,
                Reservation {
                    info,
                    slot: c.slot,
                    claim: c.claim,
                },
            );
            winners.push(winner);
        }
        self.stats.filled += 1;
        self.orders
            .insert(order.id, winners.iter().map(|w| w.match_id).collect());
        Fill {
            order: order.id,
            winners,
        }
    }

    // ---- releasing capacity ----

    /// Gives a match's capacity back at once. Every reason frees the same capacity (the
    /// reason is counted in [`Market::stats`]); reputation is recorded separately with
    /// [`Market::record_event`], by whoever verified the outcome.
    pub fn release(
        &mut self,
        id: &MatchId,
        reason: ReleaseReason,
    ) -> Result<MatchInfo, MarketError> {
        let reservation = self
            .matches
            .remove(id)
            .ok_or(MarketError::UnknownMatch(*id))?;
        let order = reservation.info.order;
        if let Some(ids) = self.orders.get_mut(&order) {
            ids.retain(|m| m != id);
            if ids.is_empty() {
                self.orders.remove(&order);
            }
        }
        let slot = reservation.slot;
        let drained = match self.book.entry_mut(slot) {
            Some(entry) => {
                entry.release(&reservation.claim);
                !entry.listed && entry.live_matches == 0
            }
            None => false,
        };
        if drained {
            self.book.remove(slot);
        }
        self.stats.count_release(reason);
        Ok(reservation.info)
    }

    /// Releases a finished match.
    pub fn complete(&mut self, id: &MatchId) -> Result<MatchInfo, MarketError> {
        self.release(id, ReleaseReason::Completed)
    }

    /// Cancels an order: releases every live match of it, or closes its auction unfilled.
    pub fn cancel_order(&mut self, id: &OrderId) -> Result<Vec<MatchId>, MarketError> {
        if self.auctions.remove(id).is_some() {
            return Ok(Vec::new());
        }
        let mut ids = self
            .orders
            .get(id)
            .cloned()
            .ok_or(MarketError::UnknownOrder(*id))?;
        ids.sort();
        for m in &ids {
            self.release(m, ReleaseReason::Cancelled)?;
        }
        Ok(ids)
    }

    /// Releases matches whose deadline is at or before `now_ms` and drops lapsed asks.
    pub fn expire(&mut self, now_ms: u64) -> Expired {
        let mut matches: Vec<MatchId> = self
            .matches
            .iter()
            .filter(|(_, r)| r.info.deadline_ms <= now_ms)
            .map(|(id, _)| *id)
            .collect();
        matches.sort();
        for id in &matches {
            let _ = self.release(id, ReleaseReason::Expired);
        }
        let lapsed: Vec<(u32, AskId)> = self
            .book
            .entries()
            .filter(|(_, e)| e.listed && e.ask.expires_ms <= now_ms)
            .map(|(slot, e)| (slot, e.ask.id))
            .collect();
        for (slot, _) in &lapsed {
            self.retire(*slot);
        }
        let mut asks: Vec<AskId> = lapsed.into_iter().map(|(_, id)| id).collect();
        asks.sort();
        Expired { matches, asks }
    }

    /// Running counts of fills, misses and releases by reason.
    pub fn stats(&self) -> &MarketStats {
        &self.stats
    }

    /// The live match `id`.
    pub fn match_info(&self, id: &MatchId) -> Option<&MatchInfo> {
        self.matches.get(id).map(|r| &r.info)
    }

    // ---- explanations and prices ----

    /// Why `order` cannot be matched now (or, if it can, the cascade that shows how many
    /// providers each constraint leaves).
    pub fn explain(&self, order: &Order, now_ms: u64) -> NoMatchExplanation {
        let classes = order.demand.classes(self.book.classes.keys());
        let pairs = self.instant_pairs(&classes);
        explain::explain(&self.parts(), order, &classes, &pairs, now_ms, "providers")
    }

    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            book: &self.book,
            providers: &self.providers,
            config: &self.config,
        }
    }

    /// Every listed ask paired with each of the order's classes it quotes (or with none).
    pub(crate) fn instant_pairs(&self, classes: &[ResourceClass]) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (slot, entry) in self.book.entries().filter(|(_, e)| e.listed) {
            let before = pairs.len();
            for (i, class) in classes.iter().enumerate() {
                if let Some(price) = entry.ask.prices.get(class) {
                    pairs.push(Pair {
                        slot,
                        class: Some(i),
                        price: Some(*price),
                    });
                }
            }
            if pairs.len() == before {
                pairs.push(Pair {
                    slot,
                    class: None,
                    price: None,
                });
            }
        }
        pairs
    }

    /// The spot index of `class` at `now_ms`.
    pub fn index(&self, class: &ResourceClass, now_ms: u64) -> PriceIndex {
        let mut levels: Vec<DepthLevel> = Vec::new();
        let mut depth_asks = 0u32;
        if let Some(book) = self.book.classes.get(class) {
            for &(price, slot) in &book.by_price {
                let Some(entry) = self.book.entry(slot) else {
                    continue;
                };
                if entry.ask.expires_ms <= now_ms
                    || entry.free_cpu() == 0
                    || entry.free_memory() == 0
                {
                    continue;
                }
                depth_asks += 1;
                let same_level = levels.last().is_some_and(|l| l.price == price);
                if let (true, Some(level)) = (same_level, levels.last_mut()) {
                    level.asks += 1;
                } else if levels.len() < DEPTH_LEVELS {
                    levels.push(DepthLevel { price, asks: 1 });
                }
            }
        }
        PriceIndex {
            class: class.clone(),
            at_ms: now_ms,
            windows: self.tape.windows(class, now_ms),
            best_ask: levels.first().map(|l| l.price),
            depth_asks,
            levels,
        }
    }

    /// Checks the accounting invariants: no ask reserved beyond its capacity, reservations
    /// equal to the sum of live matches, index membership equal to listing. For tests and
    /// for a node's self-check; `Err` names the first violation.
    pub fn audit(&self) -> Result<(), String> {
        let mut held: HashMap<u32, (Reserved, u32)> = HashMap::new();
        for r in self.matches.values() {
            let entry = self
                .book
                .entry(r.slot)
                .ok_or(format!("{} holds a missing ask", r.info.match_id))?;
            let (sum, n) = held.entry(r.slot).or_insert_with(|| {
                (
                    Reserved {
                        gpus: vec![0; entry.reserved.gpus.len()],
                        ..Reserved::default()
                    },
                    0,
                )
            });
            sum.cpu_millis += r.claim.cpu_millis;
            sum.memory_bytes += r.claim.memory_bytes;
            sum.disk_bytes += r.claim.disk_bytes;
            if let Some((g, count)) = r.claim.gpu {
                *sum.gpus.get_mut(g).ok_or("claim on a missing gpu group")? += count;
            }
            *n += 1;
        }
        for (slot, entry) in self.book.entries() {
            if !entry.within_capacity() {
                return Err(format!(
                    "{} is over-committed: {:?}",
                    entry.ask.id, entry.reserved
                ));
            }
            let empty = (
                Reserved {
                    gpus: vec![0; entry.reserved.gpus.len()],
                    ..Reserved::default()
                },
                0,
            );
            let (sum, n) = held.get(&slot).cloned().unwrap_or(empty);
            if sum != entry.reserved || n != entry.live_matches {
                return Err(format!(
                    "{} reserves {:?} but its matches hold {sum:?}",
                    entry.ask.id, entry.reserved
                ));
            }
            if !entry.listed && entry.live_matches == 0 {
                return Err(format!(
                    "{} is withdrawn and idle but still in the book",
                    entry.ask.id
                ));
            }
            for (class, price) in &entry.ask.prices {
                let indexed = self
                    .book
                    .classes
                    .get(class)
                    .is_some_and(|b| b.by_price.contains(&(*price, slot)));
                if indexed != entry.listed {
                    return Err(format!(
                        "{} index membership differs from its listing",
                        entry.ask.id
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_owner(entry: &AskEntry, caller: &AccountId) -> Result<(), MarketError> {
    if entry.ask.provider != *caller {
        return Err(MarketError::NotYourAsk {
            ask: entry.ask.id,
            owner: entry.ask.provider,
            caller: *caller,
        });
    }
    Ok(())
}

/// The reservations an ask keeps through an update, or why the update would over-commit.
fn reserved_after_update(entry: &AskEntry, new: &Ask) -> Result<Reserved, MarketError> {
    let over = |detail: String| MarketError::UpdateWouldOvercommit {
        ask: new.id,
        detail,
    };
    let r = &entry.reserved;
    let cap = &new.capacity;
    if cap.cpu_millis < r.cpu_millis {
        return Err(over(format!(
            "cpu {} < reserved {}",
            cap.cpu_millis, r.cpu_millis
        )));
    }
    if cap.memory_bytes < r.memory_bytes {
        return Err(over(format!(
            "memory {} < reserved {}",
            cap.memory_bytes, r.memory_bytes
        )));
    }
    if cap.disk_bytes < r.disk_bytes {
        return Err(over(format!(
            "disk {} < reserved {}",
            cap.disk_bytes, r.disk_bytes
        )));
    }
    let old_groups = &entry.ask.capacity.gpus;
    for (i, &held) in r.gpus.iter().enumerate().filter(|(_, h)| **h > 0) {
        let same = cap
            .gpus
            .get(i)
            .filter(|g| g.model == old_groups[i].model && g.vram_bytes == old_groups[i].vram_bytes);
        match same {
            Some(g) if g.count >= held => {}
            _ => {
                return Err(over(format!(
                    "gpu group {i} holds {held} reserved gpus; keep it with at least that many"
                )));
            }
        }
    }
    let mut reserved = r.clone();
    reserved.gpus.resize(cap.gpus.len(), 0);
    Ok(reserved)
}
