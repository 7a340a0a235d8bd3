//! Agora's wire contracts: every message that crosses a process boundary.
//!
//! Market nodes, provider agents and buyer clients are separate programs, often on
//! separate machines; this crate is the one place that says what they send each other, so
//! that each side decodes exactly what the other encoded. It is pure data plus the checks
//! that need no state (sizes, ids, who must have signed what):
//!
//! - [`order`]: what a buyer signs — a [`JobSpec`](order::JobSpec) (module and inputs by
//!   content hash, arguments), requirements, a price cap and a budget — and the id that its
//!   escrow transaction names ([`order::order_id`]).
//! - [`wire`]: the peer-to-peer messages between the market node and provider agents over
//!   `agora-net`: signed asks (gossip), assignments, heartbeats and deliveries (RPC).
//! - [`api`]: the HTTP API's JSON records: order states and their events, views of orders,
//!   results, providers, and the error body.
//!
//! Signed payloads travel as hex of their canonical encoding ([`hexed`]), so the bytes a
//! client signed are the bytes the server checks, whatever JSON library sits in between.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod api;
pub mod dashboard;
pub mod hexed;
pub mod order;
pub mod quote;
pub mod wire;

pub use agora_verify::VerifyPolicy;
pub use api::{ApiError, OrderEvent, OrderState, OrderView};
pub use order::{
    CancelOrder, ChallengeResult, InputKind, InputRef, JobSpec, MAX_IMAGE_UNPACKED_BYTES, OciJob,
    OrderRequest, STDIN_INPUT, SignedOrder, TaskRef, WORKDIR_INPUT, Workload, challenge_bond_id,
    input_kind, order_id, signed_order_id,
};
pub use wire::{
    AskOffer, Assignment, AuctionNotice, Delivery, DutchAccept, Heartbeat, MarketReply,
    ProviderReply, ToMarket, ToProvider,
};

#[cfg(test)]
use serde_json as _;
