//! The Agora provider agent: offers this machine's capacity to a market, runs the jobs
//! it is assigned in the sandboxed executor, and returns outputs with a signed receipt.
//!
//! A provider agent is a libp2p node (`agora-net`) whose peer identity is its agora
//! key. It talks to one market node:
//!
//! - over HTTP at start and for figures: `/v1/info` (who the market is, where to dial),
//!   `/v1/accounts/{id}` and `/v1/txs` (bond stake), `/v1/index` (follow the spot price),
//!   `/v1/providers/{id}` (reputation and earnings) — [`http`];
//! - over p2p for the work itself: it gossips a signed [`AskOffer`](agora_proto::AskOffer)
//!   every couple of seconds, answers `Assign` requests at once (after checking the
//!   market's and the buyer's signatures and its free capacity — [`verify`]), fetches
//!   the module and inputs from the market by hash, runs the job on a blocking thread,
//!   heartbeats, and sends a `Deliver` with a signed receipt or a signed `JobFailure`.
//!
//! Key components:
//!
//! - [`ProviderAgent::start`] with a [`ProviderConfig`] → [`RunningProvider`]
//!   (`status`, `stats`, `shutdown`): the entry point ([`agent`]).
//! - [`hardware`]: detection of cores, memory, disk and GPUs, and the declared
//!   [`Capacity`].
//! - [`pricing`]: fixed price or follow the index within a floor and ceiling.
//! - [`cost`]: measured power and the break-even price; the agent never asks below
//!   break-even plus the operator's margin.
//! - [`verify`]: the pure checks every assignment must pass.
//! - [`status`]: counters, the status snapshot, and the `provider.json` discovery file.
//! - [`fault`]: deliberate misbehaviour for test networks ([`FaultPlan`]), refused
//!   unless the market's genesis allows it.
//!
//! ```no_run
//! use agora_core::{Keypair, Price};
//! use agora_provider::{MarketLink, ProviderAgent, ProviderConfig};
//!
//! # async fn demo() -> Result<(), agora_provider::ProviderError> {
//! let key = Keypair::generate().expect("OS randomness");
//! let market = MarketLink::Http("http://127.0.0.1:7070".into());
//! let config = ProviderConfig::new(key, "/var/lib/agora-provider", market, Price(1_000));
//! let provider = ProviderAgent::start(config).await?;
//! println!("{:?}", provider.status().await.jobs);
//! provider.shutdown().await?;
//! # Ok(())
//! # }
//! ```
#![warn(unused_crate_dependencies, missing_docs)]
// `ProviderError` wraps `NetError`, which carries peer ids and hashes so errors say who
// and what; errors are the cold path.
#![allow(clippy::result_large_err)]

pub mod agent;
pub mod bidding;
pub mod config;
pub mod containers;
pub mod cost;
pub mod error;
pub mod evm;
pub mod fault;
pub mod hardware;
pub mod http;
mod job;
mod lazy_exec;
pub mod pricing;
mod private;
pub mod status;
pub mod verify;

pub use agent::{ProviderAgent, RunningProvider};
pub use config::{MarketLink, ProviderConfig};
pub use containers::{ContainerPolicy, ContainerSupport};
pub use cost::{CostConfig, CostModel, CostStatus, PowerSource};
pub use error::ProviderError;
pub use fault::{FaultMode, FaultParseError, FaultPlan};
pub use hardware::{Capacity, CapacityOverrides, Hardware};
pub use http::MarketApi;
pub use pricing::{IndexSignal, PricingStrategy};
pub use status::{DiscoveryFile, JobStats, ProviderStatus, StatsFile};

#[cfg(test)]
use {agora_node as _, tempfile as _, wat as _};
