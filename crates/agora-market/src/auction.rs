//! Reverse auctions: an order open for sealed bids during a window, closed into k winners.
//!
//! Bids are sealed: nothing in the API reveals them before the close. At the close every
//! bid is re-checked against the order (its ask may have filled up or lapsed meanwhile),
//! ranked by effective bid price exactly as instant matching ranks asks, and the first k
//! distinct providers win; every other bid is dropped. Winners are paid their own bid
//! (first price) or the uniform (k+1)-th price, see [`PricingRule`].

use std::collections::HashSet;

use agora_core::{AccountId, Price};

use crate::constraint::{Constraint, PairView, constraints_of};
use crate::engine::{self, Candidate, Offer};
use crate::error::MarketError;
use crate::explain::{self, Pair};
use crate::market::Market;
use crate::order::{AuctionTerms, Bid, MatchOutcome, Order, OrderId, PricingRule};
use crate::resources::ResourceClass;

/// A bid with the book slot its ask had when it was accepted, so the close needs no id
/// lookups (it re-checks that the slot still holds that ask).
#[derive(Clone, Debug)]
pub(crate) struct SealedBid {
    pub bid: Bid,
    pub slot: u32,
}

/// An auction waiting for its close.
#[derive(Clone, Debug)]
pub(crate) struct OpenAuction {
    pub order: Order,
    pub terms: AuctionTerms,
    /// One sealed bid per provider, in arrival order (part of the input sequence, so the
    /// close is deterministic).
    pub bids: Vec<SealedBid>,
    /// Who has bid, to refuse a second bid.
    pub bidders: HashSet<AccountId>,
}

impl Market {
    /// Opens a reverse auction for `order`, taking bids until `terms.closes_ms`.
    pub fn open_auction(
        &mut self,
        order: Order,
        terms: AuctionTerms,
        now_ms: u64,
    ) -> Result<(), MarketError> {
        self.check_new_order(&order, now_ms)?;
        if terms.closes_ms <= now_ms {
            return Err(MarketError::InThePast {
                what: "auction close".into(),
                at_ms: terms.closes_ms,
                now_ms,
            });
        }
        if terms.closes_ms >= order.deadline_ms {
            return Err(MarketError::ContradictoryConstraints {
                detail: format!(
                    "the auction closes at {} ms, not before the order's deadline {} ms",
                    terms.closes_ms, order.deadline_ms
                ),
            });
        }
        self.auctions.insert(
            order.id,
            OpenAuction {
                order,
                terms,
                bids: Vec::new(),
                bidders: HashSet::new(),
            },
        );
        Ok(())
    }

    /// Accepts a sealed bid. The bid's ask must belong to the bidder and qualify for the
    /// order on everything but free capacity, which is checked at the close.
    pub fn submit_bid(&mut self, bid: Bid, now_ms: u64) -> Result<(), MarketError> {
        let auction = self
            .auctions
            .get(&bid.order)
            .ok_or(MarketError::UnknownAuction(bid.order))?;
        if now_ms >= auction.terms.closes_ms {
            return Err(MarketError::AuctionClosed {
                order: bid.order,
                closes_ms: auction.terms.closes_ms,
                now_ms,
            });
        }
        if bid.price.0 == 0 {
            return Err(MarketError::ZeroBid);
        }
        if bid.price > auction.order.cap {
            return Err(MarketError::BidAboveCap {
                bid: bid.price,
                cap: auction.order.cap,
            });
        }
        if auction.bidders.contains(&bid.provider) {
            return Err(MarketError::DuplicateBid {
                order: bid.order,
                provider: bid.provider,
            });
        }
        let (slot, lacks) = self.bid_lacks(&auction.order, &bid, now_ms)?;
        if !lacks.is_empty() {
            return Err(MarketError::BidDoesNotQualify {
                provider: bid.provider,
                lacks,
            });
        }
        if let Some(auction) = self.auctions.get_mut(&bid.order) {
            auction.bidders.insert(bid.provider);
            auction.bids.push(SealedBid { bid, slot });
        }
        Ok(())
    }

    /// What the bid's ask lacks for the order, leaving out free capacity.
    /// The bid's ask slot, and what the ask lacks for the order leaving out free capacity.
    fn bid_lacks(
        &self,
        order: &Order,
        bid: &Bid,
        now_ms: u64,
    ) -> Result<(u32, Vec<String>), MarketError> {
        let slot = self
            .book
            .slot_of(&bid.ask)
            .ok_or(MarketError::UnknownAsk(bid.ask))?;
        let entry = self
            .book
            .entry(slot)
            .filter(|e| e.listed)
            .ok_or(MarketError::UnknownAsk(bid.ask))?;
        if entry.ask.provider != bid.provider {
            return Err(MarketError::NotYourAsk {
                ask: bid.ask,
                owner: entry.ask.provider,
                caller: bid.provider,
            });
        }
        let provider = self.providers.get(entry.provider);
        let classes = order.demand.classes(self.book.classes.keys());
        let score_ppm = provider
            .reputation
            .score_ppm(now_ms, &self.config.reputation);
        let static_checks: Vec<Constraint<'_>> = constraints_of(order)
            .into_iter()
            .filter(|c| {
                !matches!(
                    c,
                    Constraint::FreeCpu(_)
                        | Constraint::FreeMemory(_)
                        | Constraint::FreeDisk(_)
                        | Constraint::FreeGpus { .. }
                )
            })
            .collect();
        let mut best: Option<Vec<String>> = None;
        for class in classes
            .iter()
            .filter(|c| entry.ask.prices.contains_key(*c))
            .map(Some)
            .chain([None])
        {
            let view = PairView {
                entry,
                provider,
                class,
                price: Some(bid.price),
                score_ppm,
                now_ms,
            };
            let lacks: Vec<String> = static_checks
                .iter()
                .filter(|c| !c.check(&view).ok)
                .map(Constraint::label)
                .collect();
            if best.as_ref().is_none_or(|b| lacks.len() < b.len()) {
                best = Some(lacks);
            }
        }
        Ok((slot, best.unwrap_or_default()))
    }

    /// Closes the auction for `order`: the k lowest effective bids that still qualify win
    /// and their capacity is reserved; all other bids are dropped. If fewer than k qualify,
    /// nothing is reserved and the outcome explains why. Either way the auction is over.
    pub fn close_auction(
        &mut self,
        order: &OrderId,
        now_ms: u64,
    ) -> Result<MatchOutcome, MarketError> {
        let auction = self
            .auctions
            .get(order)
            .ok_or(MarketError::UnknownAuction(*order))?;
        if now_ms < auction.terms.closes_ms {
            return Err(MarketError::AuctionStillOpen {
                order: *order,
                closes_ms: auction.terms.closes_ms,
                now_ms,
            });
        }
        let Some(OpenAuction {
            order, terms, bids, ..
        }) = self.auctions.remove(order)
        else {
            return Err(MarketError::UnknownAuction(*order));
        };
        Ok(self.close_with(order, terms, &bids, now_ms))
    }

    /// Awards the auction for `bid.order` to `bid` at once: a Dutch clock's acceptance at
    /// the current price. The bid is checked exactly as a sealed bid is (open, at most
    /// the cap, the bidder's own qualifying ask); if its capacity cannot take the order
    /// now the auction stays open (without the bid) and the outcome says why.
    pub fn award_now(&mut self, bid: Bid, now_ms: u64) -> Result<MatchOutcome, MarketError> {
        let id = bid.order;
        self.submit_bid(bid, now_ms)?;
        let Some(mut auction) = self.auctions.remove(&id) else {
            return Err(MarketError::UnknownAuction(id));
        };
        let Some(accepted) = auction.bids.pop() else {
            return Err(MarketError::UnknownAuction(id));
        };
        let outcome = self.close_with(
            auction.order.clone(),
            auction.terms,
            std::slice::from_ref(&accepted),
            now_ms,
        );
        if matches!(outcome, MatchOutcome::NoMatch(_)) {
            auction.bidders.remove(&accepted.bid.provider);
            self.auctions.insert(id, auction);
        }
        Ok(outcome)
    }

    /// Drops an open auction without a winner (its order was refunded or cancelled).
    pub fn abandon_auction(&mut self, order: &OrderId) -> bool {
        self.auctions.remove(order).is_some()
    }

    /// Ranks `bids` and reserves the winners' capacity (see [`Market::close_auction`]).
    fn close_with(
        &mut self,
        order: Order,
        terms: AuctionTerms,
        bids: &[SealedBid],
        now_ms: u64,
    ) -> MatchOutcome {
        let classes = order.demand.classes(self.book.classes.keys());
        let k = usize::from(order.requirements.replicas);
        // A uniform price needs the next pick too: its price is the clearing price.
        let wanted = k + usize::from(terms.rule == PricingRule::UniformKPlusOne);
        let (cands, mut picks) = engine::search_offers(
            &self.book,
            &self.providers,
            &self.config,
            &order,
            &classes,
            self.offers(bids),
            wanted,
            now_ms,
        );
        if picks.len() < k {
            let pairs = self.bid_pairs(&classes, bids);
            let why = explain::explain(&self.parts(), &order, &classes, &pairs, now_ms, "bidders");
            self.stats.unmatched += 1;
            return MatchOutcome::NoMatch(why);
        }
        let clearing = picks.get(k).map(|&i| cands[i].price);
        picks.truncate(k);
        let prices = payments(&cands, &picks, terms.rule, clearing, order.cap);
        MatchOutcome::Filled(self.commit(&order, &classes, &cands, &picks, &prices, now_ms))
    }

    /// The bids as offers sorted by the lowest effective price any of them could have, so
    /// the close can stop early; ties keep arrival order.
    fn offers(&self, bids: &[SealedBid]) -> impl Iterator<Item = Offer> {
        let pricing = &self.config.pricing;
        let mut keys: Vec<(Price, u32)> = bids
            .iter()
            .enumerate()
            .map(|(i, b)| (pricing.floor(b.bid.price), i as u32))
            .collect();
        keys.sort_unstable();
        let offers: Vec<Offer> = keys
            .into_iter()
            .map(|(bound, i)| {
                let SealedBid { bid, slot } = &bids[i as usize];
                Offer {
                    bound,
                    slot: *slot,
                    ask: bid.ask,
                    price: bid.price,
                }
            })
            .collect();
        offers.into_iter()
    }

    fn bid_pairs(&self, classes: &[ResourceClass], bids: &[SealedBid]) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for SealedBid { bid, .. } in bids {
            let Some(slot) = self.book.slot_of(&bid.ask) else {
                continue;
            };
            let Some(entry) = self.book.entry(slot) else {
                continue;
            };
            let before = pairs.len();
            for (i, _) in classes
                .iter()
                .enumerate()
                .filter(|(_, c)| entry.ask.prices.contains_key(*c))
            {
                pairs.push(Pair {
                    slot,
                    class: Some(i),
                    price: Some(bid.price),
                });
            }
            if pairs.len() == before {
                pairs.push(Pair {
                    slot,
                    class: None,
                    price: Some(bid.price),
                });
            }
        }
        pairs
    }
}

/// What each winner is paid under `rule`; `clearing` is the price of the (k+1)-th pick.
fn payments(
    ranked: &[Candidate],
    picks: &[usize],
    rule: PricingRule,
    clearing: Option<Price>,
    cap: Price,
) -> Vec<Price> {
    let own = picks.iter().map(|&i| ranked[i].price);
    match rule {
        PricingRule::FirstPrice => own.collect(),
        PricingRule::UniformKPlusOne => {
            let clearing = clearing.unwrap_or(cap);
            own.map(|p| p.max(clearing).min(cap)).collect()
        }
    }
}
