//! The brute-force reference matcher: every listed ask, every constraint, no index, no
//! early exit. The property tests require the indexed engine to pick exactly what this
//! picks, and `agora bench market` reports how much faster the index is.

use crate::constraint::{PairView, constraints_of};
use crate::engine::{self, Candidate};
use crate::market::Market;
use crate::order::{Order, Winner};
use crate::resources::ResourceClass;

/// The winners `market` should give `order` at `now_ms`, found by scanning the whole book.
/// Empty if fewer than the order's replicas can be placed. Reserves nothing.
pub fn reference_match(market: &Market, order: &Order, now_ms: u64) -> Vec<Winner> {
    let classes = order.demand.classes(market.book.classes.keys());
    let cands = qualifying_candidates(market, order, &classes, now_ms);
    let picks = engine::pick(
        &cands,
        usize::from(order.requirements.replicas),
        order,
        &market.book,
    );
    if picks.len() < usize::from(order.requirements.replicas) {
        return Vec::new();
    }
    picks
        .iter()
        .map(|&i| market.winner(order, &classes, &cands[i], cands[i].price))
        .collect()
}

/// Every listed ask that passes every constraint of `order` and can hold its demand,
/// ranked as the engine ranks them (best effective price first). The quote lists these.
pub(crate) fn qualifying_candidates(
    market: &Market,
    order: &Order,
    classes: &[ResourceClass],
    now_ms: u64,
) -> Vec<Candidate> {
    let constraints = constraints_of(order);
    let config = &market.config;
    let mut cands = Vec::new();
    for pair in market.instant_pairs(classes) {
        let (Some(entry), Some(class), Some(price)) =
            (market.book.entry(pair.slot), pair.class, pair.price)
        else {
            continue;
        };
        let provider = market.providers.get(entry.provider);
        let score_ppm = provider.reputation.score_ppm(now_ms, &config.reputation);
        let view = PairView {
            entry,
            provider,
            class: Some(&classes[class]),
            price: Some(price),
            score_ppm,
            now_ms,
        };
        if !constraints.iter().all(|c| c.check(&view).ok) {
            continue;
        }
        let Some(claim) = entry.claim(&order.demand, &classes[class]) else {
            continue;
        };
        let effective = config.pricing.effective(price, score_ppm, provider.stake);
        cands.push(Candidate::new(
            pair.slot,
            entry.provider,
            class,
            price,
            effective,
            claim,
        ));
    }
    engine::rank(&mut cands, order, &market.book, &market.providers);
    cands
}
