//! The order book: asks with their reserved capacity, the providers behind them, and the
//! price-sorted indexes that let matching skip most of the book.
//!
//! Every listed ask appears, per class it quotes, in one sorted list for the class, one per
//! attribute `key=value` and one per feature. Lists are sorted by a *lower bound* on the
//! ask's effective price: its price at its provider's discount bound (the largest discount
//! the provider can have until its stake or reputation next changes, see
//! `PricingPolicy::discount_bound_bps`). For a provider without history the bound is its
//! exact discount, so the lists are in effective-price order up to the drift of decaying
//! reputations. Matching scans whichever list is shortest for the order's constraints and
//! stops as soon as no later entry could beat the winners found so far (see `engine`).
//! When a provider's stake or reputation changes, its asks are re-keyed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use agora_core::{AccountId, Amount, Price};

use crate::ask::{Ask, AskId};
use crate::pricing::PricingPolicy;
use crate::reputation::ReputationRecord;
use crate::resources::{Claim, Demand, ResourceClass};

/// Asks sorted by (effective-price lower bound, slot), carrying the price in the class.
pub(crate) type PriceList = BTreeSet<PriceEntry>;

/// One entry of a [`PriceList`]: the ask's effective-price bound, its slot, its price.
pub(crate) type PriceEntry = (Price, u32, Price);

/// What a provider brings besides its asks.
#[derive(Clone, Debug)]
pub(crate) struct ProviderState {
    pub account: AccountId,
    pub stake: Amount,
    pub reputation: ReputationRecord,
    /// Slots of the provider's listed asks, to re-key them when its discount bound moves.
    pub listed_slots: Vec<u32>,
    /// The discount bound its listed asks are keyed with.
    pub bound_bps: u32,
}

/// All providers the market has heard of, addressed by a dense index.
#[derive(Default)]
pub(crate) struct Providers {
    pub states: Vec<ProviderState>,
    by_id: HashMap<AccountId, u32>,
    /// Providers with at least one listed ask.
    pub listed: u32,
}

impl Providers {
    pub fn index_of(&self, account: &AccountId) -> Option<u32> {
        self.by_id.get(account).copied()
    }

    pub fn get(&self, index: u32) -> &ProviderState {
        &self.states[index as usize]
    }

    pub fn get_mut(&mut self, index: u32) -> &mut ProviderState {
        &mut self.states[index as usize]
    }

    pub fn intern(&mut self, account: AccountId) -> u32 {
        if let Some(i) = self.index_of(&account) {
            return i;
        }
        let index = self.states.len() as u32;
        self.states.push(ProviderState {
            account,
            stake: Amount::ZERO,
            reputation: ReputationRecord::default(),
            listed_slots: Vec::new(),
            bound_bps: 0,
        });
        self.by_id.insert(account, index);
        index
    }

    fn adjust_listed(&mut self, index: u32, slot: u32, listed: bool) {
        let state = &mut self.states[index as usize];
        if listed {
            state.listed_slots.push(slot);
            if state.listed_slots.len() == 1 {
                self.listed += 1;
            }
        } else {
            state.listed_slots.retain(|s| *s != slot);
            if state.listed_slots.is_empty() {
                self.listed -= 1;
            }
        }
    }
}

/// Capacity held by live matches on one ask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// Per GPU group of the ask.
    pub gpus: Vec<u32>,
}

/// An ask and its accounting.
#[derive(Clone, Debug)]
pub(crate) struct AskEntry {
    pub ask: Ask,
    pub provider: u32,
    pub reserved: Reserved,
    pub live_matches: u32,
    /// Listed asks can be matched; a withdrawn ask stays (unlisted) until its last match
    /// is released, so its reservations keep being accounted for.
    pub listed: bool,
    /// The discount bound the ask's index keys were computed with.
    pub bound_bps: u32,
}

impl AskEntry {
    pub fn new(ask: Ask, provider: u32) -> AskEntry {
        let gpus = vec![0; ask.capacity.gpus.len()];
        AskEntry {
            ask,
            provider,
            reserved: Reserved {
                gpus,
                ..Reserved::default()
            },
            live_matches: 0,
            listed: false,
            bound_bps: 0,
        }
    }

    pub fn free_cpu(&self) -> u64 {
        self.ask
            .capacity
            .cpu_millis
            .saturating_sub(self.reserved.cpu_millis)
    }

    pub fn free_memory(&self) -> u64 {
        self.ask
            .capacity
            .memory_bytes
            .saturating_sub(self.reserved.memory_bytes)
    }

    pub fn free_disk(&self) -> u64 {
        self.ask
            .capacity
            .disk_bytes
            .saturating_sub(self.reserved.disk_bytes)
    }

    pub fn free_gpus(&self, group: usize) -> u32 {
        let total = self.ask.capacity.gpus.get(group).map_or(0, |g| g.count);
        total.saturating_sub(self.reserved.gpus.get(group).copied().unwrap_or(0))
    }

    /// The first GPU group of `class`'s model with enough memory and enough free GPUs.
    fn gpu_group_for(&self, class: &ResourceClass, min_vram: u64, count: u32) -> Option<usize> {
        let model = class.gpu_model()?;
        self.ask
            .capacity
            .gpus
            .iter()
            .enumerate()
            .position(|(i, g)| {
                g.model == model && g.vram_bytes >= min_vram && self.free_gpus(i) >= count
            })
    }

    /// The largest per-GPU memory among this ask's GPUs of `class`'s model.
    pub fn max_vram(&self, class: &ResourceClass) -> Option<u64> {
        let model = class.gpu_model()?;
        let groups = self.ask.capacity.gpus.iter().filter(|g| g.model == model);
        groups.map(|g| g.vram_bytes).max()
    }

    /// What `demand` would hold here when priced in `class`, if it fits in the free capacity.
    pub fn claim(&self, demand: &Demand, class: &ResourceClass) -> Option<Claim> {
        if self.free_cpu() < demand.cpu_millis
            || self.free_memory() < demand.memory_bytes
            || self.free_disk() < demand.disk_bytes
        {
            return None;
        }
        let gpu = match &demand.gpu {
            None => None,
            Some(g) => Some((
                self.gpu_group_for(class, g.min_vram_bytes, g.count)?,
                g.count,
            )),
        };
        Some(Claim {
            cpu_millis: demand.cpu_millis,
            memory_bytes: demand.memory_bytes,
            disk_bytes: demand.disk_bytes,
            gpu,
        })
    }

    /// Holds `claim`, which [`AskEntry::claim`] produced against the current state.
    pub fn reserve(&mut self, claim: &Claim) {
        self.reserved.cpu_millis += claim.cpu_millis;
        self.reserved.memory_bytes += claim.memory_bytes;
        self.reserved.disk_bytes += claim.disk_bytes;
        if let Some((group, count)) = claim.gpu {
            self.reserved.gpus[group] += count;
        }
        self.live_matches += 1;
    }

    /// Gives `claim` back.
    pub fn release(&mut self, claim: &Claim) {
        self.reserved.cpu_millis -= claim.cpu_millis;
        self.reserved.memory_bytes -= claim.memory_bytes;
        self.reserved.disk_bytes -= claim.disk_bytes;
        if let Some((group, count)) = claim.gpu {
            self.reserved.gpus[group] -= count;
        }
        self.live_matches -= 1;
    }

    /// Whether nothing is reserved beyond the capacity.
    pub fn within_capacity(&self) -> bool {
        let cap = &self.ask.capacity;
        self.reserved.cpu_millis <= cap.cpu_millis
            && self.reserved.memory_bytes <= cap.memory_bytes
            && self.reserved.disk_bytes <= cap.disk_bytes
            && self.reserved.gpus.len() == cap.gpus.len()
            && self
                .reserved
                .gpus
                .iter()
                .zip(&cap.gpus)
                .all(|(r, g)| *r <= g.count)
    }
}

/// The indexes of one resource class.
#[derive(Default, Debug)]
pub(crate) struct ClassBook {
    /// Listed asks by (price, slot), for best ask and depth.
    pub by_price: BTreeSet<(Price, u32)>,
    /// For GPU classes: how many listed asks have each largest per-GPU memory, so an
    /// order needing more memory than any of them skips the class outright.
    pub vram: BTreeMap<u64, u32>,
    pub all: PriceList,
    pub attributes: HashMap<String, HashMap<String, PriceList>>,
    pub features: HashMap<String, PriceList>,
}

/// Asks by slot, by id, and indexed by class, attribute and feature.
#[derive(Default)]
pub(crate) struct Book {
    entries: Vec<Option<AskEntry>>,
    vacant: Vec<u32>,
    by_id: HashMap<AskId, u32>,
    pub classes: BTreeMap<ResourceClass, ClassBook>,
}

impl Book {
    pub fn slot_of(&self, id: &AskId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn entry(&self, slot: u32) -> Option<&AskEntry> {
        self.entries.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn entry_mut(&mut self, slot: u32) -> Option<&mut AskEntry> {
        self.entries.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Every ask still in the book, listed or draining, in slot order.
    pub fn entries(&self) -> impl Iterator<Item = (u32, &AskEntry)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(slot, e)| e.as_ref().map(|e| (slot as u32, e)))
    }

    /// Adds an entry (unlisted) and returns its slot.
    pub fn insert(&mut self, entry: AskEntry) -> u32 {
        let id = entry.ask.id;
        let slot = match self.vacant.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    /// Removes an unlisted entry.
    pub fn remove(&mut self, slot: u32) -> Option<AskEntry> {
        let entry = self.entries.get_mut(slot as usize)?.take()?;
        self.by_id.remove(&entry.ask.id);
        self.vacant.push(slot);
        Some(entry)
    }

    /// Makes the entry matchable: adds it to every index, keyed with its provider's
    /// current discount bound.
    pub fn list(&mut self, slot: u32, providers: &mut Providers, pricing: &PricingPolicy) {
        let Some(entry) = self.entries.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if entry.listed {
            return;
        }
        entry.listed = true;
        providers.adjust_listed(entry.provider, slot, true);
        let bound = providers.get(entry.provider).bound_bps;
        entry.bound_bps = bound;
        for (class, price) in &entry.ask.prices {
            let book = self.classes.entry(class.clone()).or_default();
            let key = (pricing.discounted(*price, bound), slot, *price);
            book.by_price.insert((*price, slot));
            if let Some(vram) = entry.max_vram(class) {
                *book.vram.entry(vram).or_default() += 1;
            }
            book.all.insert(key);
            for (k, v) in &entry.ask.attributes {
                let by_value = book.attributes.entry(k.clone()).or_default();
                by_value.entry(v.clone()).or_default().insert(key);
            }
            for f in &entry.ask.features {
                book.features.entry(f.clone()).or_default().insert(key);
            }
        }
    }

    /// Takes the entry out of every index; empty lists are dropped so that the classes
    /// left are exactly those some listed ask quotes.
    pub fn unlist(&mut self, slot: u32, providers: &mut Providers, pricing: &PricingPolicy) {
        let Some(entry) = self.entries.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if !entry.listed {
            return;
        }
        entry.listed = false;
        providers.adjust_listed(entry.provider, slot, false);
        for (class, price) in &entry.ask.prices {
            let Some(book) = self.classes.get_mut(class) else {
                continue;
            };
            let key = (pricing.discounted(*price, entry.bound_bps), slot, *price);
            book.by_price.remove(&(*price, slot));
            if let Some(vram) = entry.max_vram(class)
                && let Some(n) = book.vram.get_mut(&vram)
            {
                *n -= 1;
                if *n == 0 {
                    book.vram.remove(&vram);
                }
            }
            book.all.remove(&key);
            for (k, v) in &entry.ask.attributes {
                if let Some(by_value) = book.attributes.get_mut(k) {
                    remove_and_prune(by_value, v, &key);
                    if by_value.is_empty() {
                        book.attributes.remove(k);
                    }
                }
            }
            for f in &entry.ask.features {
                remove_and_prune(&mut book.features, f, &key);
            }
            if book.all.is_empty() {
                self.classes.remove(class);
            }
        }
    }
}

fn remove_and_prune(map: &mut HashMap<String, PriceList>, key: &str, item: &(Price, u32, Price)) {
    if let Some(list) = map.get_mut(key) {
        list.remove(item);
        if list.is_empty() {
            map.remove(key);
        }
    }
}
