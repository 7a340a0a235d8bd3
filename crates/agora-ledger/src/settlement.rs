//! The settlement API that the rest of Agora programs against.
//!
//! The market node submits signed transactions and reads balances, escrows and stakes
//! through [`Settlement`] only, so a backend that keeps the same rules elsewhere (an EVM
//! contract set, later) can replace the embedded [`crate::Ledger`] without touching callers.

use agora_core::{AccountId, ChainId, Hash, Keypair};
use serde::Serialize;

use crate::block::{BlockHeader, Rejected};
use crate::genesis::Params;
use crate::machine::Effects;
use crate::state::{Account, Escrow, Stake};
use crate::tx::Tx;

/// What one submission did.
#[derive(Clone, Debug)]
pub struct BlockOutcome {
    /// The sealed header (on the embedded ledger: the new block).
    pub header: BlockHeader,
    /// Its hash.
    pub hash: Hash,
    /// Each included transaction's id and effects, in order.
    pub included: Vec<(Hash, Effects)>,
    /// Transactions refused, with why; they changed nothing.
    pub rejected: Vec<Rejected>,
}

/// Where an account stands, for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// The account.
    pub id: AccountId,
    /// Balance and next nonce.
    pub account: Account,
    /// Its stake, if any.
    pub stake: Option<Stake>,
}

/// A settlement backend: accounts, escrow, stake and slashing under Agora's rules.
pub trait Settlement {
    /// What can go wrong in this backend (storage, RPC, …). Refused transactions are not
    /// errors: they come back in [`BlockOutcome::rejected`].
    type Error: std::error::Error + Send + Sync + 'static;

    /// The network transactions must be signed for.
    fn chain_id(&self) -> &ChainId;
    /// The rules' parameters.
    fn params(&self) -> &Params;
    /// The height of the last settled block.
    fn height(&self) -> u64;
    /// An account's balance and next nonce.
    fn account(&self, id: &AccountId) -> Result<Account, Self::Error>;
    /// The escrow of an order, open or closed.
    fn escrow(&self, order_id: &Hash) -> Result<Option<Escrow>, Self::Error>;
    /// A provider's stake.
    fn stake(&self, id: &AccountId) -> Result<Option<Stake>, Self::Error>;
    /// Settles a batch of transactions, in order, durably. `submitter` seals the block
    /// (embedded ledger: the block producer; on a chain: the sending key).
    fn submit(
        &mut self,
        txs: Vec<Tx>,
        timestamp_ms: u64,
        submitter: &Keypair,
    ) -> Result<BlockOutcome, Self::Error>;
}
