//! A buyer's client for an Agora market node: upload, sign, escrow, submit, follow,
//! download.
//!
//! The market node speaks JSON over HTTP (see `docs/` and the node's `/openapi.json`).
//! This crate is the buyer's side of that API:
//!
//! - [`MarketClient`]: one typed async method per endpoint, streaming blobs to and from
//!   disk (downloads are blake3-checked while written) and following an order's
//!   server-sent events ([`EventStream`]). Failures are [`ClientError`]s that carry the
//!   node's error code or say what to check.
//! - [`Buyer`]: a key plus a client. It turns a [`JobRequest`] (local files, arguments, a
//!   budget) into a signed order and the matching `OpenEscrow` transaction, keeping the
//!   account's ledger nonces strictly sequential ([`NonceTracker`]), and runs a job to
//!   the end ([`Buyer::run_job`]) returning a [`JobSummary`].
//! - [`spec`]: job spec files (`job.toml`) — one job, possibly split into many tasks,
//!   each its own order.
//! - [`progress`]: one-line renderings of order events for terminals and logs.
//! - [`wallet`]: the key files every participant signs with.
//!
//! Entry point: `Buyer::connect(key, url)`, then `buyer.run_job(&request, out_dir, ...)`.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod buyer;
pub mod client;
pub mod error;
pub mod evm;
pub mod private;
pub mod progress;
pub mod spec;
pub mod sse;
pub mod wallet;

pub use buyer::{Buyer, JobRequest, JobSummary, NonceTracker};
pub use client::{BlobStored, DEFAULT_MARKET_URL, EventStream, MarketClient, OrderFilter};
pub use error::ClientError;

#[cfg(test)]
use {axum as _, tempfile as _};
