//! "Why no match": a structured account of whom each constraint excluded.
//!
//! The explanation cascades through the order's constraints (see `constraint`) in a fixed
//! order — what the machine is, then the order's terms, then what is free right now — and
//! after each one counts the providers that still have at least one ask passing every
//! constraint so far. It also lists the nearest candidates: the asks failing the fewest
//! constraints, with what each lacks. Its `Display` is one line a person can act on:
//!
//! ```text
//! 0 of 120 providers match: region=eu (31 match) ∧ gpu=A100 (2 of those) ∧ vram ≥ 40 GiB (0 of those; nearest has 24 GiB)
//! ```
//!
//! It also says whether the order is blocked only by capacity that is in use right now
//! ([`NoMatchExplanation::only_busy`]): `capable` counts the replicas that could be placed
//! if every ask that passes the machine and terms constraints were idle. A market node
//! queues such an order until capacity frees instead of refunding it; an order no idle
//! provider could take is refused at once.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fmt;

use agora_core::{AccountId, Price};
use serde::{Deserialize, Serialize};

use crate::ask::AskId;
use crate::book::{Book, Providers};
use crate::constraint::{Constraint, Has, PairView, constraints_of};
use crate::engine::{Candidate, pick, rank};
use crate::market::MarketConfig;
use crate::order::{Order, OrderId};
use crate::resources::ResourceClass;

/// Nearest candidates listed per explanation.
const NEAREST: usize = 3;

/// One constraint's effect in the cascade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainStep {
    /// The constraint, e.g. `region=eu`.
    pub constraint: String,
    /// Providers still matching after this and every earlier constraint.
    pub remaining: u32,
    /// Providers this constraint excluded.
    pub excluded: u32,
    /// What the nearest excluded candidate has, for measurable constraints.
    pub nearest_has: Option<String>,
}

/// A candidate that came close, and what it lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearMiss {
    /// The provider.
    pub provider: AccountId,
    /// Its ask.
    pub ask: AskId,
    /// Each failed constraint with what the ask has, e.g. `vram ≥ 40 GiB (has 24 GiB)`.
    pub lacks: Vec<String>,
}

/// Why an order could not be matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoMatchExplanation {
    /// The order.
    pub order: OrderId,
    /// Whom the explanation counts: `providers` (instant) or `bidders` (auction).
    pub scope: String,
    /// How many were considered.
    pub total: u32,
    /// How many could be placed together (at most the replicas needed).
    pub matching: u32,
    /// Replicas needed.
    pub replicas: u16,
    /// How many replicas could be placed together if every ask were idle: the candidates
    /// passing every constraint except the free-capacity ones, whose whole capacity holds
    /// a replica, distinct as the order requires (at most the replicas needed, as
    /// `matching`). Explanations written before this field read as 0: not capable.
    #[serde(default)]
    pub capable: u32,
    /// The cascade, one step per constraint that excluded someone.
    pub steps: Vec<ExplainStep>,
    /// The closest candidates that failed.
    pub nearest: Vec<NearMiss>,
}

/// One (ask, class) pair to explain over, with the price it offers.
pub(crate) struct Pair {
    pub slot: u32,
    pub class: Option<usize>,
    pub price: Option<Price>,
}

/// Read access to what an explanation needs.
pub(crate) struct Parts<'a> {
    pub book: &'a Book,
    pub providers: &'a Providers,
    pub config: &'a MarketConfig,
}

impl Parts<'_> {
    fn view<'b>(
        &'b self,
        pair: &Pair,
        classes: &'b [ResourceClass],
        now_ms: u64,
    ) -> Option<PairView<'b>> {
        let entry = self.book.entry(pair.slot)?;
        let provider = self.providers.get(entry.provider);
        Some(PairView {
            entry,
            provider,
            class: pair.class.map(|i| &classes[i]),
            price: pair.price,
            score_ppm: provider
                .reputation
                .score_ppm(now_ms, &self.config.reputation),
            now_ms,
        })
    }

    fn provider_of(&self, pair: &Pair) -> Option<u32> {
        self.book.entry(pair.slot).map(|e| e.provider)
    }
}

/// Explains `order` over `pairs` (all listed asks for instant orders, the bids for auctions).
pub(crate) fn explain(
    parts: &Parts<'_>,
    order: &Order,
    classes: &[ResourceClass],
    pairs: &[Pair],
    now_ms: u64,
    scope: &str,
) -> NoMatchExplanation {
    let constraints = constraints_of(order);
    let views: Vec<Option<PairView<'_>>> = pairs
        .iter()
        .map(|p| parts.view(p, classes, now_ms))
        .collect();
    // Provider of each pair, looked up once: the cascade counts providers after every step.
    let owners: Vec<Option<u32>> = pairs.iter().map(|p| parts.provider_of(p)).collect();
    let total = count_providers(parts, &owners, |_| true);
    let mut alive: Vec<bool> = views.iter().map(Option::is_some).collect();
    // The step at which each pair was excluded; the nearest candidates are drawn from
    // those that got furthest.
    let mut excluded_at: Vec<usize> = vec![usize::MAX; pairs.len()];
    let mut steps = Vec::new();
    let mut remaining = total;
    let mut capable = None;
    for (step, c) in constraints.iter().enumerate() {
        // The free-capacity constraints come last: what is alive before the first of them
        // is what an idle market could offer.
        if capable.is_none() && is_free_capacity(c) {
            capable = Some(capable_if_idle(parts, order, &views, &alive));
        }
        let mut nearest: Option<(u64, Has<'_>)> = None;
        let mut any_excluded = false;
        for (i, view) in views.iter().enumerate() {
            let Some(view) = view.as_ref().filter(|_| alive[i]) else {
                continue;
            };
            let verdict = c.check(view);
            if !verdict.ok {
                alive[i] = false;
                excluded_at[i] = step;
                any_excluded = true;
                if let Some(has) = verdict.has
                    && nearest.as_ref().is_none_or(|n| has.0 > n.0)
                {
                    nearest = Some(has);
                }
            }
        }
        if !any_excluded {
            continue;
        }
        let now_remaining = count_providers(parts, &owners, |i| alive[i]);
        if now_remaining < remaining {
            steps.push(ExplainStep {
                constraint: c.label(),
                remaining: now_remaining,
                excluded: remaining - now_remaining,
                nearest_has: nearest.map(|(_, has)| has.to_string()),
            });
        }
        remaining = now_remaining;
    }
    let matching = placeable(
        parts, order, pairs, &alive, classes, remaining, now_ms, &mut steps,
    );
    NoMatchExplanation {
        order: order.id,
        scope: scope.to_owned(),
        total,
        matching,
        replicas: order.requirements.replicas,
        capable: capable.unwrap_or(0),
        steps,
        nearest: nearest(&constraints, pairs, &views, &excluded_at),
    }
}

/// How many replicas the feasible pairs can fill together; adds a distinctness step when
/// distinctness is what falls short. The candidates are ranked by the effective price the
/// engine ranks them by (reputation and stake included), so its greedy distinct picking
/// gives the engine's answer: ranked by the bare price, a different order of picks could
/// place replicas the engine cannot, and the explanation would claim a match that is not.
#[allow(clippy::too_many_arguments)]
fn placeable(
    parts: &Parts<'_>,
    order: &Order,
    pairs: &[Pair],
    alive: &[bool],
    classes: &[ResourceClass],
    remaining: u32,
    now_ms: u64,
    steps: &mut Vec<ExplainStep>,
) -> u32 {
    let mut cands: Vec<Candidate> = Vec::new();
    for (pair, _) in pairs.iter().zip(alive).filter(|(_, alive)| **alive) {
        let (Some(entry), Some(class), Some(price)) =
            (parts.book.entry(pair.slot), pair.class, pair.price)
        else {
            continue;
        };
        if let Some(claim) = entry.claim(&order.demand, &classes[class]) {
            let provider = parts.providers.get(entry.provider);
            let score = provider
                .reputation
                .score_ppm(now_ms, &parts.config.reputation);
            let effective = parts.config.pricing.effective(price, score, provider.stake);
            cands.push(Candidate::new(
                pair.slot,
                entry.provider,
                class,
                price,
                effective,
                claim,
            ));
        }
    }
    rank(&mut cands, order, parts.book, parts.providers);
    let k = usize::from(order.requirements.replicas);
    let placed = pick(&cands, k, order, parts.book).len() as u32;
    if placed < remaining.min(u32::from(order.requirements.replicas)) {
        let key = order
            .requirements
            .distinct_by
            .as_deref()
            .unwrap_or("provider");
        steps.push(ExplainStep {
            constraint: format!("distinct by {key}"),
            remaining: placed,
            excluded: remaining - placed,
            nearest_has: None,
        });
    }
    placed
}

impl NoMatchExplanation {
    /// Whether the order cannot be placed now only because capable providers are busy:
    /// with their capacity free it would match. Such an order is worth queuing; any other
    /// miss will not be cured by waiting for capacity.
    pub fn only_busy(&self) -> bool {
        let needed = u32::from(self.replicas);
        self.matching < needed && self.capable >= needed
    }
}

fn is_free_capacity(c: &Constraint<'_>) -> bool {
    matches!(
        c,
        Constraint::FreeCpu(_)
            | Constraint::FreeMemory(_)
            | Constraint::FreeDisk(_)
            | Constraint::FreeGpus { .. }
    )
}

/// Replicas the `alive` pairs could hold together if their asks were idle (at most the
/// replicas needed). One pass over the pairs, plus a small matching when `distinct_by`
/// is set.
fn capable_if_idle(
    parts: &Parts<'_>,
    order: &Order,
    views: &[Option<PairView<'_>>],
    alive: &[bool],
) -> u32 {
    let key = order.requirements.distinct_by.as_deref();
    let mut seen = vec![false; parts.providers.states.len()];
    let mut providers = 0u32;
    let mut edges: Vec<(u32, &str)> = Vec::new();
    for view in views
        .iter()
        .zip(alive)
        .filter_map(|(v, a)| v.as_ref().filter(|_| *a))
    {
        if !fits_idle(view, order) {
            continue;
        }
        let provider = view.entry.provider;
        let slot = &mut seen[provider as usize];
        providers += u32::from(!*slot);
        *slot = true;
        if let Some(value) = key.and_then(|k| view.entry.ask.attributes.get(k)) {
            edges.push((provider, value));
        }
    }
    let needed = u32::from(order.requirements.replicas);
    match key {
        None => providers.min(needed),
        Some(_) => distinct_matching(edges, needed),
    }
}

/// Whether one replica fits in the ask's whole capacity (what it would have free with
/// nothing running). GPUs come from one group of the pair's model, as in a claim.
fn fits_idle(view: &PairView<'_>, order: &Order) -> bool {
    let cap = &view.entry.ask.capacity;
    let demand = &order.demand;
    let gpus_fit = demand.gpu.as_ref().is_none_or(|need| {
        let model = view.class.and_then(ResourceClass::gpu_model);
        cap.gpus.iter().any(|g| {
            model == Some(g.model.as_str())
                && g.vram_bytes >= need.min_vram_bytes
                && g.count >= need.count
        })
    });
    cap.cpu_millis >= demand.cpu_millis
        && cap.memory_bytes >= demand.memory_bytes
        && cap.disk_bytes >= demand.disk_bytes
        && gpus_fit
}

/// The largest set (up to `needed`) of (provider, value) edges with no provider and no
/// value twice: a bipartite matching by augmenting paths. Some idle state places that
/// many replicas (free exactly those asks and greedy picking takes one per ask), and none
/// places more, so this is what waiting for capacity can achieve.
fn distinct_matching(mut edges: Vec<(u32, &str)>, needed: u32) -> u32 {
    edges.sort_unstable();
    edges.dedup();
    let mut values: Vec<&str> = edges.iter().map(|e| e.1).collect();
    values.sort_unstable();
    values.dedup();
    // Adjacency: for each provider (a run of `edges`), the indexes of its values.
    let mut adjacency: Vec<Vec<usize>> = Vec::new();
    let mut last = None;
    for &(provider, value) in &edges {
        if last != Some(provider) {
            adjacency.push(Vec::new());
            last = Some(provider);
        }
        if let (Ok(v), Some(list)) = (values.binary_search(&value), adjacency.last_mut()) {
            list.push(v);
        }
    }
    let mut search = Augment {
        adjacency: &adjacency,
        owner: vec![None; values.len()],
        // Visit marks are search numbers, so no per-search clearing.
        visited: vec![usize::MAX; values.len()],
    };
    let mut matched = 0u32;
    let cap = needed.min(values.len() as u32);
    for p in 0..adjacency.len() {
        if matched == cap {
            break;
        }
        if search.augment(p, p) {
            matched += 1;
        }
    }
    matched
}

/// Kuhn's augmenting-path search over provider → value edges.
struct Augment<'a> {
    adjacency: &'a [Vec<usize>],
    /// The provider holding each value.
    owner: Vec<Option<usize>>,
    /// The search that last visited each value.
    visited: Vec<usize>,
}

impl Augment<'_> {
    /// Finds a value for provider `p` in search `round`, moving providers matched earlier
    /// to other values where that frees one. Depth is bounded by the matching size.
    fn augment(&mut self, p: usize, round: usize) -> bool {
        let adjacency = self.adjacency;
        for &v in &adjacency[p] {
            if self.visited[v] == round {
                continue;
            }
            self.visited[v] = round;
            let free = match self.owner[v] {
                None => true,
                Some(q) => self.augment(q, round),
            };
            if free {
                self.owner[v] = Some(p);
                return true;
            }
        }
        false
    }
}

fn count_providers(parts: &Parts<'_>, owners: &[Option<u32>], keep: impl Fn(usize) -> bool) -> u32 {
    // A bitmap over provider indexes: an explanation counts after every constraint over
    // the whole book, so this must be linear and allocation-light.
    let mut seen = vec![false; parts.providers.states.len()];
    let mut count = 0;
    for (i, owner) in owners.iter().enumerate() {
        if let Some(p) = owner.filter(|_| keep(i)) {
            let slot = &mut seen[p as usize];
            count += u32::from(!*slot);
            *slot = true;
        }
    }
    count
}

/// Pairs considered for the nearest candidates: those that got furthest in the cascade.
const SHORTLIST: usize = 64;

/// The nearest candidates: among the pairs that got furthest through the cascade, those
/// failing the fewest constraints (then the lowest price), one per provider. Only the short
/// list is checked against every constraint, and words are built only for those shown, so
/// this stays cheap on a large book.
fn nearest(
    constraints: &[Constraint<'_>],
    pairs: &[Pair],
    views: &[Option<PairView<'_>>],
    excluded_at: &[usize],
) -> Vec<NearMiss> {
    let mut reached: Vec<(Reverse<usize>, Price, u32, usize)> = excluded_at
        .iter()
        .enumerate()
        .filter(|(i, step)| **step != usize::MAX && views[*i].is_some())
        .map(|(i, step)| {
            (
                Reverse(*step),
                pairs[i].price.unwrap_or(Price(u64::MAX)),
                pairs[i].slot,
                i,
            )
        })
        .collect();
    if reached.len() > SHORTLIST {
        reached.select_nth_unstable(SHORTLIST - 1);
        reached.truncate(SHORTLIST);
    }
    let mut ranked: Vec<(usize, Price, u32, usize)> = reached
        .iter()
        .filter_map(|&(_, price, slot, i)| {
            let view = views[i].as_ref()?;
            let fails = constraints.iter().filter(|c| !c.check(view).ok).count();
            Some((fails, price, slot, i))
        })
        .collect();
    ranked.sort_unstable();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for &(_, _, _, i) in &ranked {
        let Some(view) = &views[i] else { continue };
        if out.len() == NEAREST {
            break;
        }
        if !seen.insert(view.provider.account) {
            continue;
        }
        let lacks = constraints
            .iter()
            .filter_map(|c| {
                let verdict = c.check(view);
                (!verdict.ok).then(|| match verdict.has {
                    Some((_, has)) => format!("{} (has {has})", c.label()),
                    None => c.label(),
                })
            })
            .collect();
        out.push(NearMiss {
            provider: view.provider.account,
            ask: view.entry.ask.id,
            lacks,
        });
    }
    out
}

impl fmt::Display for NoMatchExplanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} {} match",
            self.matching, self.total, self.scope
        )?;
        if self.replicas > 1 {
            write!(f, " ({} needed)", self.replicas)?;
        }
        for (i, step) in self.steps.iter().enumerate() {
            let sep = if i == 0 { ": " } else { " ∧ " };
            let of = if i == 0 { "match" } else { "of those" };
            write!(f, "{sep}{} ({} {of}", step.constraint, step.remaining)?;
            if let (0, Some(has)) = (step.remaining, &step.nearest_has) {
                write!(f, "; nearest has {has}")?;
            }
            f.write_str(")")?;
        }
        if self.only_busy() {
            f.write_str("; busy: it would match once capacity frees")?;
        }
        for miss in &self.nearest {
            write!(
                f,
                "\n  nearest: {} {} lacks {}",
                miss.provider,
                miss.ask,
                miss.lacks.join(", ")
            )?;
        }
        Ok(())
    }
}
