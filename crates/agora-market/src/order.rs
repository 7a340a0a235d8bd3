//! Orders, bids and the matches they turn into.

use std::fmt;

use agora_core::{AccountId, Fuel, Hash, Price};
use serde::{Deserialize, Serialize};

use crate::ask::AskId;
use crate::error::MarketError;
use crate::explain::NoMatchExplanation;
use crate::market::Limits;
use crate::requirements::Requirements;
use crate::resources::{Demand, ResourceClass};

/// Names an order; typically the id of the buyer's signed order envelope.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Hash);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order:{}", self.0.short())
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({})", self.0.short())
    }
}

/// Names one replica's match: derived from the order and the provider, so every node
/// that makes the same match names it the same way.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MatchId(pub Hash);

impl MatchId {
    /// The id of the match of `order` with `provider`.
    pub fn of(order: &OrderId, provider: &AccountId) -> MatchId {
        MatchId(Hash::tagged(
            "agora/market/match-id/v1",
            &[order.0.as_bytes(), provider.as_bytes()],
        ))
    }
}

impl fmt::Display for MatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "match:{}", self.0.short())
    }
}

impl fmt::Debug for MatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatchId({})", self.0.short())
    }
}

/// A buyer's order: what one replica needs, how many replicas, at most what price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Unique id.
    pub id: OrderId,
    /// Who pays.
    pub buyer: AccountId,
    /// Capacity each replica reserves on its provider.
    pub demand: Demand,
    /// Constraints on providers.
    pub requirements: Requirements,
    /// The job's fuel budget per replica; asks state the job sizes they take.
    pub fuel: Fuel,
    /// The most the buyer pays per compute unit; no winner is paid more.
    pub cap: Price,
    /// When the matches expire if not released earlier (ms).
    pub deadline_ms: u64,
}

impl Order {
    /// Checks the order on its own; the market adds checks that need its state.
    pub(crate) fn validate(&self, limits: &Limits, now_ms: u64) -> Result<(), MarketError> {
        limits.check_demand(&self.demand)?;
        if self.cap.0 == 0 {
            return Err(MarketError::ZeroCap);
        }
        if self.fuel.0 == 0 {
            return Err(MarketError::ZeroFuel {
                what: "order".into(),
            });
        }
        if self.deadline_ms <= now_ms {
            return Err(MarketError::InThePast {
                what: "order deadline".into(),
                at_ms: self.deadline_ms,
                now_ms,
            });
        }
        self.requirements.validate(limits.max_replicas)
    }
}

/// How winners of a reverse auction are paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PricingRule {
    /// Each winner is paid its own bid.
    #[default]
    FirstPrice,
    /// Every winner is paid the price of the (k+1)-th pick — the bid that would have won
    /// next — or the cap if there is none; never less than its own bid nor more than the cap.
    UniformKPlusOne,
}

/// The terms of a reverse auction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionTerms {
    /// Bids are accepted while `now_ms < closes_ms`; the auction may be closed from then on.
    pub closes_ms: u64,
    /// How winners are paid.
    pub rule: PricingRule,
}

/// A provider's sealed bid in a reverse auction, offering one of its asks' machines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction (order) bid on.
    pub order: OrderId,
    /// The bidder.
    pub provider: AccountId,
    /// The ask whose capacity would run the job.
    pub ask: AskId,
    /// Price per compute unit; at most the order's cap.
    pub price: Price,
}

/// One replica's winner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Winner {
    /// The match, to release or complete later.
    pub match_id: MatchId,
    /// The provider.
    pub provider: AccountId,
    /// The ask whose capacity is reserved.
    pub ask: AskId,
    /// The class the price is quoted in.
    pub class: ResourceClass,
    /// What the buyer pays per compute unit (≤ cap).
    pub price: Price,
    /// The effective price the winner was ranked by.
    pub effective_price: Price,
}

/// A matched order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The order.
    pub order: OrderId,
    /// One winner per replica, best first, all distinct providers.
    pub winners: Vec<Winner>,
}

/// The result of instant matching or of closing an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOutcome {
    /// Every replica found a provider; capacity is reserved.
    Filled(Fill),
    /// Not enough feasible providers; nothing was reserved. Says why.
    NoMatch(NoMatchExplanation),
}

impl MatchOutcome {
    /// The fill, if matched.
    pub fn fill(&self) -> Option<&Fill> {
        match self {
            MatchOutcome::Filled(fill) => Some(fill),
            MatchOutcome::NoMatch(_) => None,
        }
    }
}

/// Why a match's capacity is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The job finished (verification and reputation are recorded separately).
    Completed,
    /// The job failed.
    Failed,
    /// The buyer cancelled.
    Cancelled,
    /// The order's deadline passed.
    Expired,
}
