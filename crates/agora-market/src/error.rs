//! Typed errors. Every error says what was wrong and what to do about it, and a call that
//! returns one has changed nothing.

use agora_core::{AccountId, Price};
use serde::{Deserialize, Serialize};

use crate::ask::AskId;
use crate::order::{MatchId, OrderId};

/// Why the market refused a call. The market's state is unchanged after any of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MarketError {
    /// A resource that must be positive was zero.
    #[error("{what}: {field} is zero; give a positive amount")]
    ZeroResource {
        /// "order" or "ask".
        what: String,
        /// The field, e.g. `cpu_millis`.
        field: String,
    },
    /// A resource beyond any real machine, most likely a unit mistake.
    #[error(
        "{what}: {field} = {value} exceeds the limit {limit}; check the unit (millicores, bytes)"
    )]
    AbsurdResource {
        /// "order" or "ask".
        what: String,
        /// The field.
        field: String,
        /// The value given.
        value: u64,
        /// The largest accepted value.
        limit: u64,
    },
    /// An order's price cap was zero: no provider can bid at or below it.
    #[error("order price cap is 0; set a cap per compute unit above zero (see the spot index)")]
    ZeroCap,
    /// An order or ask gave a zero fuel budget or job size.
    #[error("{what}: fuel is zero; give the job's budget in fuel (1 CU = 10^9 fuel)")]
    ZeroFuel {
        /// Which input.
        what: String,
    },
    /// Replicas outside 1..=max.
    #[error("replicas = {replicas} is out of range; ask for 1 to {max}")]
    InvalidReplicas {
        /// As given.
        replicas: u16,
        /// The configured maximum.
        max: u16,
    },
    /// More replicas than providers in the book.
    #[error(
        "replicas = {replicas} but only {providers} providers have asks in the book; lower replicas"
    )]
    NotEnoughProviders {
        /// As given.
        replicas: u16,
        /// Providers with listed asks.
        providers: u32,
    },
    /// Constraints that no provider could ever satisfy together.
    #[error("contradictory constraints: {detail}")]
    ContradictoryConstraints {
        /// Which constraints conflict.
        detail: String,
    },
    /// A resource class name that is neither `cpu` nor `gpu:<model>`.
    #[error("unknown resource class {class:?}: use `cpu` or `gpu:<model>`")]
    UnknownResourceClass {
        /// As given.
        class: String,
    },
    /// An ask that is malformed in a way other than its sizes.
    #[error("ask {ask}: {detail}")]
    InvalidAsk {
        /// The ask.
        ask: AskId,
        /// What is wrong.
        detail: String,
    },
    /// A time that has already passed.
    #[error("{what} at {at_ms} ms is not after now ({now_ms} ms); give a later time")]
    InThePast {
        /// "ask expiry", "order deadline", "auction close".
        what: String,
        /// The time given.
        at_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// No such ask.
    #[error("unknown ask {0}")]
    UnknownAsk(AskId),
    /// No such active order.
    #[error("unknown order {0} (never submitted, or all its matches are released)")]
    UnknownOrder(OrderId),
    /// No such live match.
    #[error("unknown match {0} (never made, or already released)")]
    UnknownMatch(MatchId),
    /// No such open auction.
    #[error("no open auction for order {0}")]
    UnknownAuction(OrderId),
    /// An ask id that another provider owns.
    #[error("ask {ask} belongs to {owner}, not {caller}")]
    NotYourAsk {
        /// The ask.
        ask: AskId,
        /// Its provider.
        owner: AccountId,
        /// Who tried to use it.
        caller: AccountId,
    },
    /// An order id that is already active (matched or in auction).
    #[error("order {0} is already active; order ids must be unique")]
    DuplicateOrder(OrderId),
    /// A second bid from one provider in one auction.
    #[error(
        "provider {provider} already bid in the auction for order {order}; bids are sealed and final"
    )]
    DuplicateBid {
        /// The auction.
        order: OrderId,
        /// The bidder.
        provider: AccountId,
    },
    /// A bid of zero.
    #[error("bid price is 0; bid a positive price per compute unit")]
    ZeroBid,
    /// A bid above the order's cap.
    #[error("bid {bid} exceeds the order's cap {cap}; bid at or below the cap")]
    BidAboveCap {
        /// The bid.
        bid: Price,
        /// The cap.
        cap: Price,
    },
    /// A bid whose ask cannot serve the order.
    #[error("bid from {provider} does not qualify: {}", lacks.join("; "))]
    BidDoesNotQualify {
        /// The bidder.
        provider: AccountId,
        /// What the bid's ask lacks.
        lacks: Vec<String>,
    },
    /// A bid after the auction's close time.
    #[error("auction for order {order} closed at {closes_ms} ms (now {now_ms} ms)")]
    AuctionClosed {
        /// The auction.
        order: OrderId,
        /// Its close time.
        closes_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// A close before the bidding window ended.
    #[error(
        "auction for order {order} is open until {closes_ms} ms (now {now_ms} ms); close it then"
    )]
    AuctionStillOpen {
        /// The auction.
        order: OrderId,
        /// Its close time.
        closes_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// An ask update that would leave live matches without the capacity they hold.
    #[error(
        "ask {ask}: update would over-commit ({detail}); release matches first or keep the capacity"
    )]
    UpdateWouldOvercommit {
        /// The ask.
        ask: AskId,
        /// Which resource.
        detail: String,
    },
    /// A configuration that breaks the market's guarantees.
    #[error("invalid market configuration: {0}")]
    InvalidConfig(String),
}
