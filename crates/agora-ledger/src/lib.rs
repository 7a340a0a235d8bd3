//! Agora's settlement ledger: every coin in the market moves through here.
//!
//! Buyers lock budgets in escrow, the market releases them to providers for checked work
//! (taking a fee for the treasury) or refunds them, providers bond stake that a proven
//! fault slashes, and all of it is sequenced into hash-chained, producer-signed blocks that
//! anyone can replay from genesis and get the same state root.
//!
//! Key components:
//! - [`tx`]: the signed transactions ([`Tx`] = `Signed<`[`TxBody`]`>`).
//! - [`machine`]: the pure state machine, [`apply`], with a typed [`LedgerError`] for each
//!   way a transaction can be refused; a refused transaction changes nothing.
//!   [`apply_unsigned`] applies the same rules to a bare body, for simulations.
//! - [`state`]: [`State`] (balances, nonces, escrows, stakes, burnt total), its
//!   incrementally maintained [`State::state_root`] and the conservation check.
//! - [`block`] and [`replay`]: building a block from a batch ([`build_block`]; signatures
//!   batch-verified across cores, optionally ahead of time as a [`CheckedBatch`], with a
//!   [`KeyCache`] of signers' decompressed keys) and replaying one ([`Replayer`]).
//! - [`genesis`]: the chain's allocations and parameters ([`Genesis`], JSON).
//! - [`store`]: the durable [`Ledger`] on redb and the audit, [`verify`].
//! - [`voucher`]: compute vouchers — fungible, transferable claims on CU of one resource
//!   class, backed by locked balance at a market-quoted price, with an optional forward
//!   delivery window.
//! - [`settlement`]: the [`Settlement`] trait that callers use, so another backend (EVM)
//!   can slot in.
//!
//! Entry points: [`Ledger::create`] / [`Ledger::open`], then [`Ledger::produce_block`];
//! [`verify`] to audit a data directory.
//!
//! Everything outside [`store`] is pure: no I/O, no clock, no randomness; time arrives as
//! block timestamps. The only threads are the scoped ones that split a signature batch
//! across cores.
//!
//! # Why redb and not SQLite
//!
//! The ledger needs one thing from its store: an atomic, durable commit of a block and
//! the state entries it changed, surviving SIGKILL at any instant. Both redb and SQLite
//! (WAL) give that. redb is chosen because it is pure Rust (no C toolchain, no `unsafe`
//! FFI boundary, builds in seconds), its typed key-value tables match the data exactly
//! (heights and 32-byte ids to canonical bytes; the ledger never needs SQL queries or
//! joins), its copy-on-write B-trees with checksummed commit slots recover by
//! construction on the next open, and it avoids SQL text and row (de)serialisation on the
//! hot path. SQLite would win for ad-hoc queries by operators; `agora ledger show`
//! covers those needs without it.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod block;
pub mod genesis;
pub mod machine;
pub mod merkle;
pub mod replay;
pub mod settlement;
pub mod state;
pub mod store;
pub mod tx;
pub mod voucher;

pub use block::{
    Block, BlockHeader, BuildError, BuiltBlock, ChainTip, CheckedBatch, CheckedBlock, KeyCache,
    Rejected, ReplayError, build_block, build_checked_block, replay_block, replay_checked_block,
};
pub use genesis::{DevKeys, Genesis, GenesisError, Params};
pub use machine::{BlockContext, Effects, Event, LedgerError, apply, apply_unsigned};
pub use replay::{AuditError, Replayer};
pub use settlement::{AccountView, BlockOutcome, Settlement};
pub use state::{
    Account, ConservationError, Escrow, EscrowStatus, Stake, State, Supply, Unbonding,
};
pub use store::{BlockFault, Ledger, StoreError, VerifyError, VerifyReport, verify};
pub use tx::{MAX_REASON_BYTES, Tx, TxBody};
pub use voucher::{
    SignedQuote, VoucherHolding, VoucherQuote, VoucherSeries, VoucherTerms, holding_key,
};

#[cfg(test)]
use {proptest as _, serde_json as _, tempfile as _};
