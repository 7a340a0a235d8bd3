//! Agora's EVM settlement backend.
//!
//! The embedded ledger (`agora-ledger`) keeps every balance in one operator's database.
//! This crate keeps them in the `AgoraMarket` contract on an EVM chain instead, under the
//! same rules, behind the same [`agora_ledger::Settlement`] trait:
//!
//! - [`contracts`]: bindings generated from the committed ABI (`contracts/out`) and the
//!   committed deployment bytecode.
//! - [`keys`]: the EVM key each Agora identity derives from its ed25519 seed.
//! - [`anvil`]: a local anvil chain as a child process (tests, benchmarks, devnets).
//! - [`chain`]: signing and sending transactions with explicit nonces, awaiting receipts to
//!   a confirmation depth, and rebroadcasting the same signed bytes after a timeout, a
//!   restart or a reorg (so a retry can never apply twice).
//! - [`settlement`]: [`EvmSettlement`], the `Settlement` implementation (the market's side).
//! - [`participant`]: [`Participant`], a buyer's or provider's own transactions (escrow,
//!   bond) sent with its own key.
//!
//! See docs/settlement-evm.md for the trust model and what is not integrated yet.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod anvil;
pub mod chain;
#[allow(missing_docs)] // the `sol!` bindings are generated from the ABI, which carries no docs
pub mod contracts;
pub mod keys;
pub mod participant;
pub mod settlement;

/// EVM addresses, as the node and CLI parse them from flags.
pub use alloy::primitives::Address;
pub use anvil::{Anvil, AnvilError, AnvilOptions};
pub use chain::{Chain, ChainError, Sent};
pub use contracts::MarketConfig;
pub use keys::{EVM_KEY_INFO, evm_address, evm_signer};
pub use participant::{OpenedEscrow, Participant, ParticipantError};
pub use settlement::{DevDeployment, EvmConfig, EvmError, EvmSettlement};

#[cfg(test)]
use {proptest as _, tempfile as _};
