//! The Agora market node: the block producer, the matching engine, the settlement loop
//! and the HTTP API of one market, in one process.
//!
//! Buyers talk to it over HTTP (upload blobs, submit signed orders with their escrow,
//! follow them, fetch results); providers over libp2p (gossip signed asks, take
//! assignments, heartbeat, deliver outputs and a signed receipt). The node locks escrow
//! before matching, assigns each order to the best provider, watches heartbeats,
//! reassigns on failure, checks every delivery (receipt signature and signer, outputs
//! re-fetched and re-hashed into the receipt's digest) and only then pays, refunding the
//! rest. Every order ends settled or refunded; none leaves escrow open.
//!
//! Key components:
//! - [`chain`]: the block producer thread that owns the ledger, with group commit.
//! - [`records`]: durable order records, reconciled against the ledger on restart.
//! - [`lifecycle`] and [`orders`]: the order state machine and the submission checks.
//! - [`p2p`]: asks, heartbeats, deliveries and failure reports from providers.
//! - [`http`]: the axum API with its generated OpenAPI document, and [`metrics`].
//! - [`quote`]: `POST /v1/quote`, the risk-adjusted quote of an unsigned order, which
//!   moves no money.
//! - [`server`]: the HTTP accept loop with the connection cap, header and idle timeouts.
//!
//! Entry point: [`MarketNode::start`] with a [`MarketConfig`], which returns a
//! [`RunningMarket`] (its addresses, and [`RunningMarket::shutdown`]).
#![warn(unused_crate_dependencies, missing_docs)]
// Network errors carry peer ids and are a little over clippy's size threshold; they are
// the cold path.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auctions;
pub mod books;
pub mod chain;
pub mod clock;
pub mod config;
pub mod dashboard_api;
pub mod dispute;
pub mod error;
pub mod explorer;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod node;
pub mod orders;
pub mod p2p;
pub mod private;
pub mod quote;
pub mod records;
pub mod server;
mod start;
pub mod verification;
pub mod vouchers;

pub use config::{ChainSetup, ConfigError, MarketConfig, SettlementSetup};
pub use error::{ApiFailure, NodeError};
pub use start::{MarketNode, NODE_FILE, NodeFile, RunningMarket};

#[cfg(test)]
use {proptest as _, reqwest as _, tempfile as _, wat as _};
