//! The indexed matcher and the ranking rule shared by every matching path.
//!
//! **Ranking.** Candidates are (ask, class) pairs that satisfy every constraint. They are
//! ordered by effective price, then by `blake3("agora/market/tie/v1", order id, provider)`,
//! then by ask id — a total order any node reproduces, and one a provider cannot game by
//! choosing its account (the order id is unknown when the account is made). Winners are
//! picked greedily in that order, skipping a candidate whose provider (or `distinct_by`
//! attribute value) is already taken, until k are picked.
//!
//! **Search.** Instead of the whole book, the matcher scans the shortest sorted lists that
//! must contain every feasible ask (per class: the class list, or the lists of a required
//! attribute's admitted values, or of a feature), merged into one stream. Lists are sorted
//! by a lower bound of each ask's effective price (see `book`), so once the bound exceeds
//! the effective price of the k-th pick found so far — or the cap, since the bound is also
//! below the price — no later entry can change the winners and the scan stops. For providers without history the bound is exact, and the
//! scan touches little more than the winners. The brute-force matcher in [`crate::reference`] checks
//! this against a scan of everything.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use agora_core::{Hash, Price};

use crate::ask::AskId;
use crate::book::{AskEntry, Book, ClassBook, PriceEntry, PriceList, ProviderState, Providers};
use crate::market::MarketConfig;
use crate::order::Order;
use crate::requirements::AttributeRule;
use crate::resources::{Claim, ResourceClass};

/// A feasible (ask, class) pair and its rank keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub slot: u32,
    pub provider: u32,
    /// Index into the order's class list.
    pub class: usize,
    pub price: Price,
    pub effective: Price,
    pub claim: Claim,
    /// Tie-break hash, computed only when two candidates tie on effective price.
    tie: Option<Hash>,
}

impl Candidate {
    pub fn new(
        slot: u32,
        provider: u32,
        class: usize,
        price: Price,
        effective: Price,
        claim: Claim,
    ) -> Self {
        Candidate {
            slot,
            provider,
            class,
            price,
            effective,
            claim,
            tie: None,
        }
    }
}

/// The hash that breaks ties between equally priced providers for one order.
pub(crate) fn tie_hash(order: &Order, provider: &ProviderState) -> Hash {
    Hash::tagged(
        "agora/market/tie/v1",
        &[order.id.0.as_bytes(), provider.account.as_bytes()],
    )
}

/// Checks every constraint of `order` on one (ask, class) pair at `price`; returns what
/// the match would hold and its effective price. This is the hot path: cheap checks first.
pub(crate) fn evaluate(
    entry: &AskEntry,
    provider: &ProviderState,
    order: &Order,
    price: Price,
    class: &ResourceClass,
    now_ms: u64,
    config: &MarketConfig,
) -> Option<(Claim, Price)> {
    let ask = &entry.ask;
    let req = &order.requirements;
    // Numbers first, then free capacity (what most often fails in a busy book), and the
    // string comparisons last.
    if price > order.cap
        || ask.expires_ms <= now_ms
        || order.fuel < ask.min_job
        || order.fuel > ask.max_job
        || provider.stake < req.min_stake
    {
        return None;
    }
    let claim = entry.claim(&order.demand, class)?;
    if req.arch.as_ref().is_some_and(|a| *a != ask.arch)
        || !req.features.iter().all(|f| ask.features.contains(f))
        || !req.attributes.iter().all(|c| c.admits(&ask.attributes))
        || req
            .distinct_by
            .as_ref()
            .is_some_and(|k| !ask.attributes.contains_key(k))
    {
        return None;
    }
    let score = provider.reputation.score_ppm(now_ms, &config.reputation);
    if score < req.min_reputation_ppm {
        return None;
    }
    Some((
        claim,
        config.pricing.effective(price, score, provider.stake),
    ))
}

/// Sorts candidates into rank order (see the module docs).
pub(crate) fn rank(cands: &mut [Candidate], order: &Order, book: &Book, providers: &Providers) {
    sort_by_effective(cands);
    let mut start = 0;
    while start < cands.len() {
        let eff = cands[start].effective;
        let end = start
            + cands[start..]
                .iter()
                .take_while(|c| c.effective == eff)
                .count();
        if end - start > 1 {
            break_ties(&mut cands[start..end], order, book, providers);
        }
        start = end;
    }
}

/// Sorts by effective price. Large pools (auctions) sort compact keys and then permute,
/// which moves far less memory than sorting the candidates themselves.
fn sort_by_effective(cands: &mut [Candidate]) {
    if cands.len() <= 64 {
        cands.sort_unstable_by_key(|c| c.effective);
        return;
    }
    let mut keys: Vec<(Price, u32)> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.effective, i as u32))
        .collect();
    keys.sort_unstable();
    let sorted: Vec<Candidate> = keys.iter().map(|&(_, i)| cands[i as usize]).collect();
    cands.copy_from_slice(&sorted);
}

fn break_ties(run: &mut [Candidate], order: &Order, book: &Book, providers: &Providers) {
    for c in run.iter_mut() {
        if c.tie.is_none() {
            c.tie = Some(tie_hash(order, providers.get(c.provider)));
        }
    }
    let ask_id = |c: &Candidate| book.entry(c.slot).map(|e| e.ask.id);
    run.sort_unstable_by(|a, b| {
        a.tie
            .cmp(&b.tie)
            .then_with(|| ask_id(a).cmp(&ask_id(b)))
            .then_with(|| a.class.cmp(&b.class))
    });
}

/// Picks up to `k` winners greedily from ranked candidates; returns their indexes.
pub(crate) fn pick(ranked: &[Candidate], k: usize, order: &Order, book: &Book) -> Vec<usize> {
    let key = order.requirements.distinct_by.as_deref();
    let mut picked: Vec<usize> = Vec::with_capacity(k);
    for (i, c) in ranked.iter().enumerate() {
        if picked.len() == k {
            break;
        }
        let clashes = picked.iter().any(|&p| {
            let other = &ranked[p];
            other.provider == c.provider
                || key.is_some_and(|k| same_value(book, k, other.slot, c.slot))
        });
        if !clashes {
            picked.push(i);
        }
    }
    picked
}

fn same_value(book: &Book, key: &str, a: u32, b: u32) -> bool {
    let value = |slot| book.entry(slot).and_then(|e| e.ask.attributes.get(key));
    value(a) == value(b)
}

/// Candidates found so far, and the effective price of the k-th pick among them.
struct Pool<'a> {
    order: &'a Order,
    /// Picks wanted: the replicas, plus one in a uniform-price auction.
    k: usize,
    book: &'a Book,
    providers: &'a Providers,
    cands: Vec<Candidate>,
    threshold: Option<Price>,
}

impl Pool<'_> {
    fn add(&mut self, cand: Candidate) {
        let improves = self.threshold.is_none_or(|t| cand.effective < t);
        self.cands.push(cand);
        // A candidate ranked after the current k-th pick cannot change the first k picks
        // (greedy picking only looks backwards), so only an improving one re-ranks.
        if improves && self.cands.len() >= self.k {
            rank(&mut self.cands, self.order, self.book, self.providers);
            let picks = pick(&self.cands, self.k, self.order, self.book);
            self.threshold = (picks.len() == self.k)
                .then(|| picks.last().map(|&i| self.cands[i].effective))
                .flatten();
        }
    }

    /// Whether an entry whose effective price is at least `bound` (and so everything after
    /// it in a sorted list) is certain to lose.
    fn cannot_win(&self, bound: Price) -> bool {
        bound > self.order.cap || self.threshold.is_some_and(|t| bound > t)
    }
}

/// Finds the winners of `order` using the indexes; returns the ranked candidate pool and
/// the indexes of the picks in it.
pub(crate) fn search(
    book: &Book,
    providers: &Providers,
    config: &MarketConfig,
    order: &Order,
    classes: &[ResourceClass],
    now_ms: u64,
) -> (Vec<Candidate>, Vec<usize>) {
    let k = usize::from(order.requirements.replicas);
    let mut pool = Pool {
        order,
        k,
        book,
        providers,
        cands: Vec::new(),
        threshold: None,
    };
    let mut lists = Vec::new();
    for (class_index, class) in classes.iter().enumerate() {
        let Some(class_book) = book.classes.get(class) else {
            continue;
        };
        if !has_enough_vram(class_book, order) {
            continue;
        }
        for list in driving_lists(class_book, order) {
            lists.push((class_index, class, list));
        }
    }
    scan(&mut pool, &lists, now_ms, config);
    finish(pool)
}

fn finish(pool: Pool<'_>) -> (Vec<Candidate>, Vec<usize>) {
    let Pool {
        order,
        k,
        book,
        providers,
        mut cands,
        ..
    } = pool;
    rank(&mut cands, order, book, providers);
    let picks = pick(&cands, k, order, book);
    (cands, picks)
}

/// One sealed bid as the auction close sees it: a lower bound of its effective price (its
/// price at the largest discount anyone can have), the slot of its ask, and its price.
pub(crate) struct Offer {
    pub bound: Price,
    pub slot: u32,
    /// The ask the bid named; the slot must still hold it.
    pub ask: AskId,
    pub price: Price,
}

/// Picks `k` winners among `offers` sorted by bound, evaluating offers only until no later
/// one can change the picks — most bids in a large auction are never looked at closely.
#[allow(clippy::too_many_arguments)]
pub(crate) fn search_offers(
    book: &Book,
    providers: &Providers,
    config: &MarketConfig,
    order: &Order,
    classes: &[ResourceClass],
    offers: impl Iterator<Item = Offer>,
    k: usize,
    now_ms: u64,
) -> (Vec<Candidate>, Vec<usize>) {
    let mut pool = Pool {
        order,
        k,
        book,
        providers,
        cands: Vec::new(),
        threshold: None,
    };
    for offer in offers {
        if pool.cannot_win(offer.bound) {
            break;
        }
        let Some(entry) = book
            .entry(offer.slot)
            .filter(|e| e.listed && e.ask.id == offer.ask)
        else {
            continue;
        };
        let provider = providers.get(entry.provider);
        for (i, class) in classes.iter().enumerate() {
            if !entry.ask.prices.contains_key(class) {
                continue;
            }
            if let Some((claim, eff)) =
                evaluate(entry, provider, order, offer.price, class, now_ms, config)
            {
                pool.add(Candidate::new(
                    offer.slot,
                    entry.provider,
                    i,
                    offer.price,
                    eff,
                    claim,
                ));
            }
        }
    }
    finish(pool)
}

/// Scans the driving `lists` (of every class) merged into one stream in order of bound,
/// until no later entry can change the picks.
///
/// The merge is what makes stopping sound. A candidate from one list can clash with the
/// picks found so far (same provider, same `distinct_by` value) and push the k-th pick's
/// price up, so a list abandoned at the old threshold could still hold a winner. In one
/// stream sorted by bound, everything left when the scan stops is priced above the k-th
/// pick of the candidates found, and so can never be picked.
fn scan(
    pool: &mut Pool<'_>,
    lists: &[(usize, &ResourceClass, &PriceList)],
    now_ms: u64,
    config: &MarketConfig,
) {
    let mut cursors: Vec<_> = lists.iter().map(|(_, _, list)| list.iter()).collect();
    // The next entry of each list, keyed by the entry (bound first) and the list's index.
    let mut heads: BinaryHeap<Reverse<(PriceEntry, usize)>> = cursors
        .iter_mut()
        .enumerate()
        .filter_map(|(i, cursor)| cursor.next().map(|&entry| Reverse((entry, i))))
        .collect();
    while let Some(Reverse(((bound, slot, price), i))) = heads.pop() {
        if pool.cannot_win(bound) {
            break;
        }
        if let Some(&next) = cursors[i].next() {
            heads.push(Reverse((next, i)));
        }
        let (class_index, class, _) = lists[i];
        let Some(entry) = pool.book.entry(slot) else {
            continue;
        };
        let provider = pool.providers.get(entry.provider);
        if let Some((claim, eff)) =
            evaluate(entry, provider, pool.order, price, class, now_ms, config)
        {
            pool.add(Candidate::new(
                slot,
                entry.provider,
                class_index,
                price,
                eff,
                claim,
            ));
        }
    }
}

/// Whether any ask in the class has GPUs with the memory the order needs.
fn has_enough_vram(book: &ClassBook, order: &Order) -> bool {
    let need = order.demand.gpu.as_ref().map_or(0, |g| g.min_vram_bytes);
    need == 0
        || book
            .vram
            .last_key_value()
            .is_some_and(|(most, _)| *most >= need)
}

/// The shortest set of lists whose union holds every ask that could satisfy `order`.
fn driving_lists<'a>(book: &'a ClassBook, order: &Order) -> Vec<&'a PriceList> {
    let req = &order.requirements;
    let mut best: Vec<&PriceList> = vec![&book.all];
    let mut best_len = book.all.len();
    let mut consider = |lists: Vec<&'a PriceList>| {
        let len = lists.iter().map(|l| l.len()).sum();
        if len < best_len {
            best_len = len;
            best = lists;
        }
    };
    for c in &req.attributes {
        let values = book.attributes.get(&c.key);
        let lists = match &c.rule {
            AttributeRule::Equals(v) => values.and_then(|m| m.get(v)).into_iter().collect(),
            AttributeRule::OneOf(set) => set
                .iter()
                .filter_map(|v| values.and_then(|m| m.get(v)))
                .collect(),
            AttributeRule::Not(_) => continue,
        };
        consider(lists);
    }
    for f in &req.features {
        consider(book.features.get(f).into_iter().collect());
    }
    best
}
