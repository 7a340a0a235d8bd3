//! Agora's market engine: where a buyer's order meets providers' hardware.
//!
//! Key components:
//! - [`resources`] and [`requirements`]: what a provider offers (cpu, memory, disk, GPU
//!   groups, architecture, features, free-form attributes) and what an order needs
//!   (minimums, features, attribute rules, reputation, stake, k replicas, distinctness).
//! - [`ask`] and [`order`]: providers' standing offers, buyers' orders, sealed bids, and
//!   the matches that reserve capacity until they are completed, failed, cancelled or expire.
//! - [`pricing`]: the effective price — a bid adjusted by reputation and stake, monotone and
//!   bounded, in integer math so every node ranks providers identically.
//! - [`reputation`]: a per-provider score derived only from recorded events, with a prior
//!   for newcomers, time decay and a confidence measure.
//! - [`spot`]: the per-class spot price index (volume-weighted, sliding windows).
//! - [`explain`]: the structured "why no match" answer, which also says whether only busy
//!   capacity is in the way (the order would match once some frees).
//! - [`reference`](mod@reference): a brute-force matcher that the indexed engine is checked against.
//! - [`quote`](mod@quote): the risk-adjusted quote — every qualifying provider, and the
//!   expected price, success probability and bill with retries, before any money moves.
//!
//! The entry point is [`Market`]: `upsert_ask` / `withdraw_ask`, `submit_order` (instant
//! matching; `quote` and `preview` do the same without reserving), `open_auction` /
//! `submit_bid` / `close_auction` (reverse auction), `release` / `complete` /
//! `cancel_order` / `expire`, `explain`, `index`, `record_event` / `reputation` and
//! `set_stake`. `audit` checks the capacity-accounting invariants.
//!
//! ```
//! use agora_core::{AccountId, Fuel, Hash, Price};
//! use agora_market::resources::GIB;
//! use agora_market::*;
//!
//! let mut market = Market::default();
//! let provider = AccountId::from_bytes([7; 32]);
//! market.upsert_ask(Ask {
//!     id: AskId::named(&provider, "box-1"),
//!     provider,
//!     capacity: Resources { cpu_millis: 8_000, memory_bytes: 32 * GIB, disk_bytes: 100 * GIB, gpus: vec![] },
//!     arch: "x86_64".into(),
//!     features: ["wasm".to_string()].into(),
//!     attributes: [("region".to_string(), "eu".to_string())].into(),
//!     prices: [(ResourceClass::cpu(), Price(2_000_000))].into(),
//!     min_job: Fuel(0),
//!     max_job: Fuel::compute_units(1_000),
//!     expires_ms: 3_600_000,
//! }, 0)?;
//! let order = Order {
//!     id: OrderId(Hash::of(b"order-1")),
//!     buyer: AccountId::from_bytes([9; 32]),
//!     demand: Demand { cpu_millis: 2_000, memory_bytes: 4 * GIB, disk_bytes: 0, gpu: None },
//!     requirements: Requirements {
//!         attributes: vec![AttributeConstraint::equals("region", "eu")],
//!         ..Requirements::default()
//!     },
//!     fuel: Fuel::compute_units(10),
//!     cap: Price(3_000_000),
//!     deadline_ms: 600_000,
//! };
//! match market.submit_order(order, 1_000)? {
//!     MatchOutcome::Filled(fill) => {
//!         assert_eq!(fill.winners[0].provider, provider);
//!         market.complete(&fill.winners[0].match_id)?;
//!     }
//!     MatchOutcome::NoMatch(why) => panic!("{why}"),
//! }
//! # Ok::<(), MarketError>(())
//! ```
//!
//! The crate is pure: no I/O, no clock reads, no randomness of its own. Time (`now_ms`) and
//! seeds are arguments, ties break by a hash of (order id, provider id), and every decision
//! that picks a winner uses integers only, so any node that replays the same inputs gets the
//! same matches, prices and index values.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod ask;
mod auction;
mod book;
mod constraint;
mod engine;
pub mod error;
pub mod explain;
mod market;
pub mod order;
pub mod pricing;
pub mod quote;
pub mod reference;
pub mod reputation;
pub mod requirements;
pub mod resources;
pub mod spot;
pub mod terms;

pub use ask::{Ask, AskId};
pub use error::MarketError;
pub use explain::{ExplainStep, NearMiss, NoMatchExplanation};
pub use market::{Expired, Limits, Market, MarketConfig, MarketStats, MatchInfo};
pub use order::{
    AuctionTerms, Bid, Fill, MatchId, MatchOutcome, Order, OrderId, PricingRule, ReleaseReason,
    Winner,
};
pub use pricing::PricingPolicy;
pub use quote::{Quote, QuoteCandidate, QuoteTerms, quote};
pub use reputation::{Reputation, ReputationEvent, ReputationPolicy};
pub use requirements::{AttributeConstraint, AttributeRule, Requirements};
pub use resources::{Demand, GpuDemand, GpuGroup, ResourceClass, Resources};
pub use spot::{DepthLevel, PriceIndex, WindowStats};
pub use terms::{DutchSchedule, DutchTick, MatchTerms, TermsError, dutch_tick};

#[cfg(test)]
use serde_json as _;
