//! Agora's deterministic market simulation: thousands of providers and a million jobs on
//! the real cores, with a simulated clock and network, driven by one seed.
//!
//! Nothing here re-implements a market rule. Matching, effective prices, reputation and the
//! spot index are [`agora_market::Market`]'s; which run comes next, what is accepted and who
//! is slashed are [`agora_verify::Flow`]'s and [`agora_verify::economics`]'; every coin moves
//! through the ledger's state machine ([`agora_ledger::apply_unsigned`], the signed path's
//! rules without the envelope). What the simulation adds is the world around them: provider
//! behaviours (honest with costs, and five cheating strategies), churn, repricing, buyers
//! with verification policies, a simulated network, and the bookkeeping that turns it into
//! evidence.
//!
//! Key components:
//! - [`config`]: [`SimConfig`] and the provider [`Behaviour`]s.
//! - [`world`]: [`World`], the event loop (see its module docs for a job's life). Its
//!   settlement mirrors the market node's: providers are suspended after a proven fault
//!   ([`agora_verify::SuspensionRule`]) and adaptive audits by the value at risk, each of
//!   which a [`SimConfig`] flag turns off.
//! - [`money`]: the ledger wrapper.
//! - [`network`]: region-to-region latency.
//! - [`report`]: [`Report`], JSON and a human summary.
//! - [`sweep`]: the stake-rule evidence — each strategy's gain per cheat over slash ratio ×
//!   audit rate.
//! - [`shard`]: two or more market shards sharing providers through slot leases settled on
//!   one chain, and the measurement of cross-shard latency.
//! - [`plot`]: the SVG figures in `docs/sim/`.
//!
//! Entry point: `World::new(config)?.run()`; the `simulate` example is the command line.
//!
//! The model is pure: no I/O (only [`plot`] writes files, and only when called), no wall
//! clock, no threads; the only randomness is one ChaCha8 stream seeded from
//! [`SimConfig::seed`], and events are ordered by (time, sequence number), so a seed gives
//! one byte-identical run.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod config;
pub mod money;
pub mod network;
pub mod plot;
pub mod report;
pub mod shard;
pub mod sweep;
pub mod world;

pub use config::{Behaviour, ConfigError, SimConfig};
pub use report::Report;
pub use world::World;

#[cfg(test)]
use {anyhow as _, clap as _, proptest as _};
