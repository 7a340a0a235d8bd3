//! Orders matched by auction rather than at once (the buyer signs the terms, see
//! `agora_market::terms`): a sealed-bid reverse auction, or a rising Dutch clock.
//!
//! - **Opening.** Once its escrow is in a block, an auction order is opened in the engine
//!   (`Market::open_auction`) instead of being matched, and announced to providers with a
//!   market-signed [`AuctionNotice`] gossiped on the `orders` topic (every provider agent
//!   is a gossipsub peer of the market). A timer closes it at the window's (the clock's) end.
//! - **Sealed bids** arrive as [`ToMarket::Bid`](agora_proto::ToMarket) requests or signed
//!   HTTP (`POST /v1/orders/{id}/bids`). They are never gossiped: a bid on the `bids` topic
//!   would show every other bidder its price before the close. The engine checks each
//!   bid (open window, at most the cap, one per provider, the bidder's own qualifying ask).
//! - **Closing** is the engine's pure close; the winner is assigned through the ordinary
//!   assignment path, at the price the rule gives. An auction without a qualifying bid
//!   refunds the buyer at once, saying so.
//! - **Dutch acceptances** name the step and price they accept; the first valid one for the
//!   current step wins at that price. A stale price, a second acceptance, or one after the
//!   clock ended is refused. A clock nobody accepts refunds at its end.
//! - **Evidence.** `GET /v1/orders/{id}/auction` shows the bid count while the auction is
//!   open and, after the close, every signed bid, the rule, the winner, and the digest of
//!   the canonical list of signed bids. The close also puts a market-signed
//!   `TxBody::RecordAuction` (order, terms, bid count, that digest, winner and price) in a
//!   block; it moves no money.
//!
//! An auction open when the market restarts is not resumed: the restarted node matches
//! the order at once (within the buyer's signed cap), like any order it resumes.
//! A winner that fails its run is replaced through instant matching, as any failed attempt.

use std::sync::Arc;
use std::time::Duration;

use agora_core::{AccountId, Hash, Price, Signed, canonical};
use agora_market::{
    AuctionTerms, DutchTick, MarketError, MatchOutcome, MatchTerms, OrderId, PricingRule,
    dutch_tick,
};
use agora_net::Topic;
use agora_proto::api::{AuctionView, BidView, ClockView};
use agora_proto::wire::{AuctionNotice, Bid, DutchAccept};
use agora_proto::{OrderState, hexed};

use crate::clock::now_ms;
use crate::error::ApiFailure;
use crate::lifecycle::{self, Action};
use crate::node::{Book, Shared};

/// One bid (or Dutch acceptance) as the market took it.
#[derive(Clone, Debug)]
pub struct RecordedBid {
    /// The bidder.
    pub provider: AccountId,
    /// Its price per CU.
    pub price: Price,
    /// When the market took it, Unix ms.
    pub at_ms: u64,
    /// The canonical encoding of the provider-signed bid or acceptance.
    pub signed: Vec<u8>,
}

/// How an auction stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuctionStatus {
    /// Taking bids (or acceptances).
    Open,
    /// Closed with a winner.
    Won {
        /// The winner.
        provider: AccountId,
        /// Its price per CU.
        price: Price,
    },
    /// Closed without a winner; the order is refunded.
    NoWinner(String),
    /// The order was refunded or cancelled while the auction was open.
    Abandoned,
}

/// An order's auction as the node carries it.
#[derive(Clone, Debug)]
pub struct AuctionEntry {
    /// The buyer-signed terms.
    pub terms: MatchTerms,
    /// When the market opened it, Unix ms.
    pub opened_ms: u64,
    /// When it closes, Unix ms.
    pub closes_ms: u64,
    /// Bids (or acceptances) taken, in arrival order.
    pub bids: Vec<RecordedBid>,
    /// How it stands.
    pub status: AuctionStatus,
    /// When the close (or the acceptance) assigned the winner, Unix ms.
    pub awarded_ms: Option<u64>,
}

impl AuctionEntry {
    /// Whether it still takes bids.
    pub fn is_open(&self) -> bool {
        self.status == AuctionStatus::Open
    }

    /// The blake3 hash of the canonical list of signed bids: what anyone who holds the
    /// bids can recompute, and what the ledger records.
    pub fn bids_digest(&self) -> Hash {
        let signed: Vec<&[u8]> = self.bids.iter().map(|b| b.signed.as_slice()).collect();
        Hash::tagged("agora/auction-bids/v1", &signed)
    }

    /// The API view at `now_ms`: sealed bids stay hidden while the window is open.
    pub fn view(&self, order_id: Hash, now_ms: u64) -> AuctionView {
        let sealed_and_open = self.is_open() && matches!(self.terms, MatchTerms::Sealed { .. });
        let bids = if sealed_and_open {
            Vec::new()
        } else {
            self.bids
                .iter()
                .map(|b| BidView {
                    provider: b.provider,
                    price: b.price,
                    at_ms: b.at_ms,
                    signed: hex::encode(&b.signed),
                })
                .collect()
        };
        let clock = match (&self.terms, self.is_open()) {
            (MatchTerms::Dutch(schedule), true) => {
                match dutch_tick(schedule, self.opened_ms, now_ms) {
                    DutchTick::Open {
                        step,
                        price,
                        until_ms,
                    } => Some(ClockView {
                        step,
                        price,
                        until_ms,
                    }),
                    DutchTick::Ended => None,
                }
            }
            _ => None,
        };
        let (status, winner, price, outcome) = match &self.status {
            AuctionStatus::Open => ("open", None, None, "taking bids".to_string()),
            AuctionStatus::Won { provider, price } => (
                "won",
                Some(*provider),
                Some(*price),
                format!("won by {provider} at {price} per CU"),
            ),
            AuctionStatus::NoWinner(why) => ("no_bids", None, None, why.clone()),
            AuctionStatus::Abandoned => (
                "abandoned",
                None,
                None,
                "the order was refunded while the auction was open".to_string(),
            ),
        };
        AuctionView {
            order_id,
            terms: self.terms.to_string(),
            status: status.to_string(),
            opened_ms: self.opened_ms,
            closes_ms: self.closes_ms,
            bid_count: u32::try_from(self.bids.len()).unwrap_or(u32::MAX),
            bids,
            clock,
            winner,
            price,
            awarded_ms: self.awarded_ms,
            bids_digest: (!sealed_and_open).then(|| self.bids_digest()),
            outcome,
        }
    }
}

/// Why a bid or an acceptance was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum AuctionRefusal {
    /// The signature does not check out, or the signer is not the named provider.
    #[error("{0}")]
    BadSignature(String),
    /// No such order.
    #[error("order {0} is not known to this market; check the id")]
    UnknownOrder(Hash),
    /// The order is not matched by this kind of auction.
    #[error("order {order} is matched by {terms}; {hint}")]
    WrongKind {
        /// The order.
        order: Hash,
        /// Its terms.
        terms: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// The auction is over (closed, won, or the clock ended).
    #[error("the auction for order {order} is over: {why}")]
    Over {
        /// The order.
        order: Hash,
        /// How it ended.
        why: String,
    },
    /// A Dutch acceptance for a step or price that is not the clock's now.
    #[error(
        "stale acceptance: it accepts step {step} at {price} per CU, but the clock is at step {current_step}, {current_price} per CU; accept the current price"
    )]
    StalePrice {
        /// The step accepted.
        step: u32,
        /// The price accepted.
        price: Price,
        /// The clock's step now.
        current_step: u32,
        /// Its price.
        current_price: Price,
    },
    /// The engine refused the bid (above the cap, a second bid, an ask that cannot run it…).
    #[error("bid refused: {0}")]
    Refused(#[from] MarketError),
    /// The acceptor's capacity cannot take the order now.
    #[error("acceptance refused: your capacity cannot take the order now: {0}")]
    CannotTake(String),
}

impl From<AuctionRefusal> for ApiFailure {
    fn from(refusal: AuctionRefusal) -> ApiFailure {
        match refusal {
            AuctionRefusal::BadSignature(why) => ApiFailure::BadSignature(why),
            AuctionRefusal::UnknownOrder(id) => ApiFailure::UnknownOrder(id),
            other => ApiFailure::Conflict(other.to_string()),
        }
    }
}

/// Opens the auction of order `id`, whose escrow is committed, under the book's lock.
/// Returns the refund when the engine refuses to open it (e.g. it would close after the
/// order's deadline).
pub fn open(shared: &Shared, book: &mut Book, id: Hash, now: u64) -> Vec<Action> {
    let rule = shared.settings.fault_suspension;
    let Some((order, _)) = book.order_to_match(&id, &rule, now) else {
        return Vec::new();
    };
    let Some(terms) = book.orders.get(&id).map(|e| e.rec.order.body.auction) else {
        return Vec::new();
    };
    let closes_ms = now.saturating_add(terms.duration_ms());
    let rule = match terms {
        MatchTerms::Sealed { rule, .. } => rule,
        _ => PricingRule::FirstPrice,
    };
    if let Err(e) = book
        .market
        .open_auction(order, AuctionTerms { closes_ms, rule }, now)
    {
        return lifecycle::begin_refund(book, id, format!("the auction could not open: {e}"));
    }
    let Some(entry) = book.orders.get_mut(&id) else {
        return Vec::new();
    };
    entry.auction = Some(AuctionEntry {
        terms,
        opened_ms: now,
        closes_ms,
        bids: Vec::new(),
        status: AuctionStatus::Open,
        awarded_ms: None,
    });
    shared.enter(
        entry,
        OrderState::Escrowed,
        format!("auction open ({terms}) until {closes_ms}"),
    );
    Vec::new()
}

/// Announces order `id`'s open auction to providers and closes it when it ends.
pub fn start(shared: &Arc<Shared>, id: Hash) {
    let notice = {
        let book = shared.book();
        book.orders.get(&id).and_then(|e| {
            let auction = e.auction.as_ref().filter(|a| a.is_open())?;
            Some(AuctionNotice {
                order_id: id,
                order: e.rec.order.clone(),
                opened_ms: auction.opened_ms,
                closes_ms: auction.closes_ms,
            })
        })
    };
    let Some(notice) = notice else { return };
    let closes_ms = notice.closes_ms;
    let signed = Signed::sign(
        &shared.identity.market_key,
        &shared.identity.chain_id,
        shared.next_message_nonce(),
        notice,
    );
    let bytes = canonical::encode(&signed);
    let announcer = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = announcer.net.publish(Topic::Orders, bytes).await {
            tracing::info!(order = %id.short(), "auction not announced: {e}");
        }
    });
    let closer = shared.clone();
    tokio::spawn(async move {
        let wait = closes_ms.saturating_sub(now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        // The clock can be a millisecond behind the timer.
        while now_ms() < closes_ms {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        close(&closer, id);
    });
}

/// Closes order `id`'s auction at its end: the engine's close picks the winner, who is
/// assigned; without one the order is refunded.
pub fn close(shared: &Arc<Shared>, id: Hash) {
    let now = now_ms();
    let actions = {
        let mut book = shared.book();
        let Some(auction) = book.orders.get(&id).and_then(|e| e.auction.as_ref()) else {
            return;
        };
        if !auction.is_open() {
            return;
        }
        let dutch = matches!(auction.terms, MatchTerms::Dutch(_));
        let bids = auction.bids.len();
        let outcome = if dutch {
            book.market.abandon_auction(&OrderId(id));
            None
        } else {
            book.market.close_auction(&OrderId(id), now).ok()
        };
        let mut actions = match outcome {
            Some(MatchOutcome::Filled(fill)) if !fill.winners.is_empty() => {
                let winner = fill.winners[0].clone();
                set_status(
                    &mut book,
                    id,
                    AuctionStatus::Won {
                        provider: winner.provider,
                        price: winner.price,
                    },
                    now,
                );
                lifecycle::assign_winner(shared, &mut book, id, winner, now)
            }
            other => {
                let why = match (dutch, other) {
                    (true, _) => "the Dutch clock ended without an acceptance".to_string(),
                    (false, _) if bids == 0 => "the sealed auction closed with no bids".to_string(),
                    (false, Some(MatchOutcome::NoMatch(why))) => {
                        format!("no bid could take the order at the close: {why}")
                    }
                    (false, _) => "the sealed auction closed without a winner".to_string(),
                };
                set_status(&mut book, id, AuctionStatus::NoWinner(why.clone()), now);
                lifecycle::begin_refund(&mut book, id, why)
            }
        };
        actions.extend(lifecycle::serve_queue(shared, &mut book));
        actions
    };
    lifecycle::run(shared, actions);
    record_on_ledger(shared, id);
}

/// Puts order `id`'s closed auction on the ledger (a market-signed `RecordAuction`, no
/// money moves), in a task of its own. Best effort: the evidence stays in the order's
/// auction view either way, and a backend that cannot carry the record (an EVM chain)
/// says so in the log.
fn record_on_ledger(shared: &Arc<Shared>, id: Hash) {
    let body = {
        let book = shared.book();
        let Some(auction) = book.orders.get(&id).and_then(|e| e.auction.as_ref()) else {
            return;
        };
        let winner = match auction.status {
            AuctionStatus::Won { provider, price } => Some((provider, price)),
            AuctionStatus::Open => return,
            _ => None,
        };
        agora_ledger::TxBody::RecordAuction {
            order_id: id,
            terms: auction.terms.to_string(),
            bids: u32::try_from(auction.bids.len()).unwrap_or(u32::MAX),
            bids_digest: auction.bids_digest(),
            winner,
        }
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let recorded = shared
            .chain
            .submit(vec![crate::chain::LedgerOp::Market(body)])
            .await;
        if let Err(e) = recorded {
            tracing::info!(order = %id.short(), "the auction record is not on the ledger: {e}");
        }
    });
}

fn set_status(book: &mut Book, id: Hash, status: AuctionStatus, now: u64) {
    if let Some(auction) = book.orders.get_mut(&id).and_then(|e| e.auction.as_mut()) {
        if matches!(status, AuctionStatus::Won { .. }) {
            auction.awarded_ms = Some(now);
        }
        auction.status = status;
    }
}

/// Marks order `id`'s open auction abandoned and drops it from the engine (a refund or a
/// cancel while it was open).
pub fn abandon(book: &mut Book, id: Hash) {
    let open = book
        .orders
        .get(&id)
        .and_then(|e| e.auction.as_ref())
        .is_some_and(AuctionEntry::is_open);
    if open {
        book.market.abandon_auction(&OrderId(id));
        set_status(book, id, AuctionStatus::Abandoned, now_ms());
    }
}

/// Checks a signed bid or acceptance: its signature for this chain, that its signer is
/// the provider it names, and (over p2p) that the sending peer is that provider too.
fn check_signer<T: agora_core::Domain + serde::Serialize>(
    shared: &Shared,
    signed: &Signed<T>,
    provider: AccountId,
    peer: Option<AccountId>,
) -> Result<(), AuctionRefusal> {
    signed.verify(&shared.identity.chain_id).map_err(|e| {
        AuctionRefusal::BadSignature(format!(
            "the signature does not check out ({e}); sign it with the provider key for chain {:?}",
            shared.identity.chain_id.0
        ))
    })?;
    if signed.signer != provider || peer.is_some_and(|p| p != provider) {
        return Err(AuctionRefusal::BadSignature(format!(
            "signed by {} for provider {provider}: a provider bids for itself only",
            signed.signer
        )));
    }
    Ok(())
}

/// The open auction of `id` and its terms, or why there is none.
fn open_terms(book: &Book, id: Hash) -> Result<&AuctionEntry, AuctionRefusal> {
    let entry = book
        .orders
        .get(&id)
        .ok_or(AuctionRefusal::UnknownOrder(id))?;
    let auction = entry.auction.as_ref().ok_or(AuctionRefusal::WrongKind {
        order: id,
        terms: entry.rec.order.body.auction.to_string(),
        hint: "it is matched against standing asks; publish an ask instead of bidding",
    })?;
    match &auction.status {
        AuctionStatus::Open => Ok(auction),
        AuctionStatus::Won { provider, price } => Err(AuctionRefusal::Over {
            order: id,
            why: format!("already won by {provider} at {price} per CU"),
        }),
        AuctionStatus::NoWinner(why) => Err(AuctionRefusal::Over {
            order: id,
            why: why.clone(),
        }),
        AuctionStatus::Abandoned => Err(AuctionRefusal::Over {
            order: id,
            why: "the order was refunded".to_string(),
        }),
    }
}

/// Takes a sealed bid (from `peer` over p2p, or from HTTP when `peer` is `None`).
pub fn bid(
    shared: &Shared,
    peer: Option<AccountId>,
    signed: &Signed<Bid>,
) -> Result<(), AuctionRefusal> {
    let body = &signed.body;
    check_signer(shared, signed, body.provider, peer)?;
    let now = now_ms();
    let mut book = shared.book();
    let auction = open_terms(&book, body.order_id)?;
    if matches!(auction.terms, MatchTerms::Dutch(_)) {
        return Err(AuctionRefusal::WrongKind {
            order: body.order_id,
            terms: auction.terms.to_string(),
            hint: "a Dutch clock takes acceptances of its current price, not bids",
        });
    }
    book.market.submit_bid(
        agora_market::Bid {
            order: OrderId(body.order_id),
            provider: body.provider,
            ask: body.ask,
            price: body.price,
        },
        now,
    )?;
    record(
        &mut book,
        body.order_id,
        body.provider,
        body.price,
        now,
        signed,
    );
    shared.metrics.bids.inc();
    Ok(())
}

fn record<T: serde::Serialize>(
    book: &mut Book,
    id: Hash,
    provider: AccountId,
    price: Price,
    now: u64,
    signed: &T,
) {
    if let Some(auction) = book.orders.get_mut(&id).and_then(|e| e.auction.as_mut()) {
        auction.bids.push(RecordedBid {
            provider,
            price,
            at_ms: now,
            signed: canonical::encode(signed),
        });
    }
}

/// Takes a Dutch acceptance: the first valid one for the clock's current step wins and
/// is assigned at once.
pub fn accept(
    shared: &Arc<Shared>,
    peer: Option<AccountId>,
    signed: &Signed<DutchAccept>,
) -> Result<(), AuctionRefusal> {
    let body = &signed.body;
    check_signer(shared, signed, body.provider, peer)?;
    let now = now_ms();
    let actions = {
        let mut book = shared.book();
        let auction = open_terms(&book, body.order_id)?;
        let MatchTerms::Dutch(schedule) = auction.terms else {
            return Err(AuctionRefusal::WrongKind {
                order: body.order_id,
                terms: auction.terms.to_string(),
                hint: "a sealed auction takes bids (POST /v1/orders/{id}/bids), not acceptances",
            });
        };
        let (current_step, current_price) = match dutch_tick(&schedule, auction.opened_ms, now) {
            DutchTick::Open { step, price, .. } => (step, price),
            DutchTick::Ended => {
                return Err(AuctionRefusal::Over {
                    order: body.order_id,
                    why: format!("the clock ended at {}", auction.closes_ms),
                });
            }
        };
        if body.step != current_step || body.price != current_price {
            return Err(AuctionRefusal::StalePrice {
                step: body.step,
                price: body.price,
                current_step,
                current_price,
            });
        }
        let outcome = book.market.award_now(
            agora_market::Bid {
                order: OrderId(body.order_id),
                provider: body.provider,
                ask: body.ask,
                price: body.price,
            },
            now,
        )?;
        let winner = match outcome {
            MatchOutcome::Filled(fill) if !fill.winners.is_empty() => fill.winners[0].clone(),
            MatchOutcome::Filled(_) => {
                return Err(AuctionRefusal::CannotTake("no winner".to_string()));
            }
            MatchOutcome::NoMatch(why) => return Err(AuctionRefusal::CannotTake(why.to_string())),
        };
        record(
            &mut book,
            body.order_id,
            body.provider,
            body.price,
            now,
            signed,
        );
        shared.metrics.bids.inc();
        set_status(
            &mut book,
            body.order_id,
            AuctionStatus::Won {
                provider: winner.provider,
                price: winner.price,
            },
            now,
        );
        lifecycle::assign_winner(shared, &mut book, body.order_id, winner, now)
    };
    lifecycle::run(shared, actions);
    record_on_ledger(shared, body.order_id);
    Ok(())
}

/// `POST /v1/orders/{id}/bids`.
pub fn bid_over_http(
    shared: &Shared,
    id: Hash,
    request: &agora_proto::api::SubmitBid,
) -> Result<AuctionView, ApiFailure> {
    let signed: Signed<Bid> = hexed::decode(&request.bid, "signed bid")
        .map_err(|e| ApiFailure::BadRequest(format!("field `bid`: {e}")))?;
    check_path(id, signed.body.order_id)?;
    bid(shared, None, &signed)?;
    view(shared, id)
}

/// `POST /v1/orders/{id}/accept`.
pub fn accept_over_http(
    shared: &Arc<Shared>,
    id: Hash,
    request: &agora_proto::api::SubmitAccept,
) -> Result<AuctionView, ApiFailure> {
    let signed: Signed<DutchAccept> = hexed::decode(&request.accept, "signed acceptance")
        .map_err(|e| ApiFailure::BadRequest(format!("field `accept`: {e}")))?;
    check_path(id, signed.body.order_id)?;
    accept(shared, None, &signed)?;
    view(shared, id)
}

fn check_path(path: Hash, named: Hash) -> Result<(), ApiFailure> {
    if path == named {
        Ok(())
    } else {
        Err(ApiFailure::BadRequest(format!(
            "the signed message names order {named} but the path names {path}"
        )))
    }
}

/// `GET /v1/orders/{id}/auction`.
pub fn view(shared: &Shared, id: Hash) -> Result<AuctionView, ApiFailure> {
    let book = shared.book();
    let entry = book.orders.get(&id).ok_or(ApiFailure::UnknownOrder(id))?;
    let auction = entry.auction.as_ref().ok_or_else(|| {
        ApiFailure::Conflict(format!(
            "order {id} is matched {}: it has no auction",
            entry.rec.order.body.auction
        ))
    })?;
    Ok(auction.view(id, now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_market::DutchSchedule;

    fn entry(terms: MatchTerms, status: AuctionStatus) -> AuctionEntry {
        let bid = |p: u8, price: u64| RecordedBid {
            provider: AccountId::from_bytes([p; 32]),
            price: Price(price),
            at_ms: 1_000 + u64::from(p),
            signed: vec![p; 8],
        };
        AuctionEntry {
            terms,
            opened_ms: 1_000,
            closes_ms: 2_000,
            bids: vec![bid(1, 30), bid(2, 20)],
            status,
            awarded_ms: None,
        }
    }

    const SEALED: MatchTerms = MatchTerms::Sealed {
        window_ms: 1_000,
        rule: PricingRule::FirstPrice,
    };

    #[test]
    fn sealed_bids_stay_hidden_until_the_close() {
        let open = entry(SEALED, AuctionStatus::Open).view(Hash::of(b"o"), 1_500);
        assert_eq!(open.bid_count, 2);
        assert!(open.bids.is_empty());
        assert_eq!(open.bids_digest, None);
        let won = AuctionStatus::Won {
            provider: AccountId::from_bytes([2; 32]),
            price: Price(20),
        };
        let closed = entry(SEALED, won).view(Hash::of(b"o"), 2_500);
        assert_eq!(closed.bids.len(), 2);
        assert_eq!(closed.bids[0].signed, hex::encode([1u8; 8]));
        assert_eq!(closed.status, "won");
        assert_eq!(closed.price, Some(Price(20)));
    }

    #[test]
    fn the_digest_covers_every_signed_bid_in_arrival_order() {
        let a = entry(SEALED, AuctionStatus::Open);
        let mut swapped = a.clone();
        swapped.bids.swap(0, 1);
        let mut dropped = a.clone();
        dropped.bids.pop();
        assert_eq!(
            a.bids_digest(),
            Hash::tagged("agora/auction-bids/v1", &[&[1u8; 8], &[2u8; 8]])
        );
        assert_ne!(a.bids_digest(), swapped.bids_digest());
        assert_ne!(a.bids_digest(), dropped.bids_digest());
    }

    #[test]
    fn a_dutch_auction_shows_its_clock_while_open() {
        let schedule = DutchSchedule {
            from: Price(10),
            to: Price(100),
            duration_ms: 1_000,
            steps: 10,
        };
        let open = entry(MatchTerms::Dutch(schedule), AuctionStatus::Open);
        let view = open.view(Hash::of(b"o"), 1_250);
        let clock = view.clock.expect("a running clock");
        assert_eq!(
            (clock.step, clock.price, clock.until_ms),
            (2, Price(30), 1_300)
        );
        // Acceptances are not sealed: they show while the clock runs.
        assert_eq!(view.bids.len(), 2);
        assert_eq!(open.view(Hash::of(b"o"), 2_000).clock, None);
    }

    #[test]
    fn refusals_map_to_the_right_http_errors() {
        let id = Hash::of(b"o");
        assert!(matches!(
            ApiFailure::from(AuctionRefusal::UnknownOrder(id)),
            ApiFailure::UnknownOrder(_)
        ));
        assert!(matches!(
            ApiFailure::from(AuctionRefusal::BadSignature("x".into())),
            ApiFailure::BadSignature(_)
        ));
        let stale = AuctionRefusal::StalePrice {
            step: 1,
            price: Price(20),
            current_step: 3,
            current_price: Price(40),
        };
        let text = stale.to_string();
        assert!(text.contains("clock is at step 3"), "{text}");
        assert!(matches!(ApiFailure::from(stale), ApiFailure::Conflict(_)));
    }
}
