//! The agent's side of auctions: it watches the market's auction notices (gossip on the
//! `orders` topic), bids in sealed auctions and accepts Dutch clocks.
//!
//! The decisions are pure functions of the agent's **reservation price**, the least it
//! takes per CU: its current ask price, never below its cost floor (break-even plus the
//! operator's margin, [`crate::cost`]).
//!
//! - Sealed auction ([`decide_bid`]): bid the reservation price if it is within the
//!   order's cap. Under the uniform (k+1)-th price rule that is the dominant strategy; under
//!   first price a provider could shade up, but an agent that does not know its rivals'
//!   costs and bids its ask is what the market's instant matching already assumes.
//! - Dutch clock ([`accepts_dutch`], [`dutch_plan`]): the clock rises, so the agent waits
//!   for the first step whose price reaches its reservation and accepts that step then.
//!   Waiting longer risks a cheaper rival taking the order; accepting earlier would be
//!   below its price.
//!
//! The agent bids on CPU orders it can run (its features and memory); GPU orders are left
//! to instant matching for now.

use std::sync::Arc;
use std::time::Duration;

use agora_core::{Price, Signed, canonical};
use agora_market::{AskId, DutchSchedule, MatchTerms, ResourceClass};
use agora_net::{GossipMessage, PeerId};
use agora_proto::wire::{AuctionNotice, Bid, DutchAccept, MarketReply, ToMarket};

use crate::agent::{Shared, now_ms};

/// What to bid in a sealed auction: the reservation price, or nothing when it is above
/// the order's cap.
pub fn decide_bid(reservation: Price, cap: Price) -> Option<Price> {
    (reservation.0 > 0 && reservation <= cap).then_some(reservation)
}

/// Whether a Dutch clock's price is worth taking: at or above the reservation price.
pub fn accepts_dutch(reservation: Price, clock_price: Price) -> bool {
    clock_price >= reservation
}

/// When to accept a Dutch clock that opened at `opened_ms`: the first step whose price
/// the agent accepts, its price, and when it starts (Unix ms). `None` when the clock never
/// reaches the reservation price.
pub fn dutch_plan(
    schedule: &DutchSchedule,
    opened_ms: u64,
    reservation: Price,
) -> Option<(u32, Price, u64)> {
    let step = (0..schedule.steps).find(|&s| accepts_dutch(reservation, schedule.price_of(s)))?;
    let starts = opened_ms.saturating_add(schedule.step_ms().saturating_mul(u64::from(step)));
    Some((step, schedule.price_of(step), starts))
}

/// Handles one gossip message on the `orders` topic: an auction notice from the market.
/// Returns whether it was a valid notice (the verdict the agent reports).
pub(crate) fn on_notice(shared: &Arc<Shared>, message: &GossipMessage) -> bool {
    let Ok(notice) = canonical::decode::<Signed<AuctionNotice>>(&message.data) else {
        return false;
    };
    if notice.verify(&shared.market.chain).is_err() || notice.signer != shared.market.authority {
        tracing::debug!("ignored an auction notice not signed by the market");
        return false;
    }
    if notice.body.order.verify(&shared.market.chain).is_err() {
        return false;
    }
    let Some(reservation) = reservation_for(shared, &notice.body) else {
        return true;
    };
    let shared = shared.clone();
    let notice = notice.body;
    tokio::spawn(async move { take_part(&shared, notice, reservation).await });
    true
}

/// The agent's reservation price for the order, or `None` when it would not run it.
fn reservation_for(shared: &Shared, notice: &AuctionNotice) -> Option<Price> {
    let order = &notice.order.body;
    if order.demand.gpu.is_some() || order.job.workload.feature() != "wasm" {
        return None;
    }
    if order.job.memory_bytes > shared.capacity.resources().memory_bytes {
        return None;
    }
    let floor = shared.floor(&ResourceClass::cpu());
    Some(shared.current_price().max(floor))
}

async fn take_part(shared: &Shared, notice: AuctionNotice, reservation: Price) {
    let order = &notice.order.body;
    let provider = shared.key.account();
    let ask = AskId::named(&provider, crate::agent::ASK_NAME);
    let message = match order.auction {
        MatchTerms::Instant => return,
        MatchTerms::Sealed { .. } => {
            let Some(price) = decide_bid(reservation, order.max_price) else {
                tracing::debug!(order = %notice.order_id.short(), "not bidding: the cap is below our price");
                return;
            };
            let bid = Bid {
                order_id: notice.order_id,
                provider,
                ask,
                price,
            };
            ToMarket::Bid(Signed::sign(
                &shared.key,
                &shared.market.chain,
                shared.next_nonce(),
                bid,
            ))
        }
        MatchTerms::Dutch(schedule) => {
            let Some((step, price, starts)) = dutch_plan(&schedule, notice.opened_ms, reservation)
            else {
                return;
            };
            tokio::time::sleep(Duration::from_millis(starts.saturating_sub(now_ms()))).await;
            // The market's clock may be a hair behind ours: wait for the step to start.
            while now_ms() < starts {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let accept = DutchAccept {
                order_id: notice.order_id,
                provider,
                ask,
                step,
                price,
            };
            ToMarket::Accept(Signed::sign(
                &shared.key,
                &shared.market.chain,
                shared.next_nonce(),
                accept,
            ))
        }
    };
    send(shared.market.peer, shared, &message, &notice).await;
}

async fn send(peer: PeerId, shared: &Shared, message: &ToMarket, notice: &AuctionNotice) {
    let order = notice.order_id.short();
    match shared.net.request(peer, canonical::encode(message)).await {
        Ok(reply) => match canonical::decode::<MarketReply>(&reply) {
            Ok(MarketReply::Ok) => tracing::info!(order, "auction: bid taken"),
            Ok(MarketReply::Rejected { reason }) => {
                tracing::info!(order, reason, "auction: bid refused")
            }
            Err(e) => tracing::debug!(order, error = %e, "auction: unreadable reply"),
        },
        Err(e) => tracing::info!(order, error = %e, "auction: bid not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bids_its_price_within_the_cap_only() {
        assert_eq!(decide_bid(Price(30), Price(50)), Some(Price(30)));
        assert_eq!(decide_bid(Price(50), Price(50)), Some(Price(50)));
        assert_eq!(decide_bid(Price(51), Price(50)), None);
        assert_eq!(decide_bid(Price(0), Price(50)), None);
    }

    #[test]
    fn accepts_the_first_step_at_or_above_its_price() {
        let schedule = DutchSchedule {
            from: Price(10),
            to: Price(100),
            duration_ms: 1_000,
            steps: 10,
        };
        assert!(!accepts_dutch(Price(35), Price(30)));
        assert!(accepts_dutch(Price(35), Price(40)));
        assert_eq!(
            dutch_plan(&schedule, 1_000, Price(35)),
            Some((3, Price(40), 1_300))
        );
        assert_eq!(
            dutch_plan(&schedule, 1_000, Price(5)),
            Some((0, Price(10), 1_000))
        );
        assert_eq!(dutch_plan(&schedule, 1_000, Price(101)), None);
    }

    proptest! {
        /// The planned step is never below the reservation, and the step before it was.
        #[test]
        fn the_plan_is_the_first_acceptable_step(
            from in 1u64..500, rise in 1u64..5_000, steps in 2u32..100, reservation in 1u64..6_000,
        ) {
            let schedule = DutchSchedule {
                from: Price(from), to: Price(from + rise),
                duration_ms: u64::from(steps) * 100, steps,
            };
            if let Some((step, price, _)) = dutch_plan(&schedule, 0, Price(reservation)) {
                prop_assert!(price.0 >= reservation);
                prop_assert!(step == 0 || schedule.price_of(step - 1).0 < reservation);
            } else {
                prop_assert!(from + rise < reservation);
            }
        }
    }
}
