//! Agora's shared vocabulary, used by every other crate.
//!
//! - [`hash`]: blake3 content hashes ([`Hash`]) that name blobs, blocks and evidence.
//! - [`identity`]: ed25519 keys ([`Keypair`]) and the [`AccountId`]s printed from them.
//! - [`envelope`]: [`Signed`] envelopes that bind a payload to a signer, a domain tag,
//!   a chain id and a nonce, over a canonical byte encoding ([`canonical`]).
//! - [`receipt`]: a provider's signed [`Receipt`] of what it ran and what came out.
//! - [`money`]: [`Amount`] in integer base units with checked arithmetic, [`Price`] per
//!   compute unit and [`Fuel`] (1 compute unit = 10⁹ fuel).
//! - [`duration`]: the `30s`, `5m` durations of the text forms buyers sign.
//!
//! This crate is pure: no I/O beyond reading the OS random source when a new key is made,
//! no clocks, no async. Everything here is deterministic so that any node can recompute it.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod canonical;
pub mod duration;
pub mod envelope;
pub mod hash;
pub mod identity;
pub mod money;
pub mod receipt;

pub use envelope::{ChainId, Domain, EnvelopeError, Signed};
pub use hash::Hash;
pub use identity::{AccountId, Keypair, Signature};
pub use money::{Amount, AmountError, FUEL_PER_COMPUTE_UNIT, Fuel, Price};
pub use receipt::{ContainerMetering, Receipt, SignedReceipt, StepCommitment};

#[cfg(test)]
use {proptest as _, serde_json as _};
