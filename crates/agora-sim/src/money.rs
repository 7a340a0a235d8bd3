//! The simulation's money: the real ledger state machine of `agora-ledger`, applied to bare
//! transaction bodies.
//!
//! Every coin moves through [`agora_ledger::apply_unsigned`] — the same escrow, release (with
//! the market fee), refund, transfer, bond and slash (with the beneficiary share) rules a
//! signed transaction gets, minus the envelope checks: the simulation's parties are its own,
//! and a million ed25519 signatures would take longer than everything else together. One
//! simulated second is one block height.

use agora_core::{AccountId, Amount, ChainId, Hash};
use agora_ledger::{
    BlockContext, ConservationError, Genesis, GenesisError, LedgerError, Params, State, Supply,
    TxBody, apply_unsigned,
};

/// The ledger state and its rules.
pub struct Books {
    state: State,
    genesis: Genesis,
    /// Transactions applied.
    pub applied: u64,
}

impl Books {
    /// A ledger holding `allocations` at genesis, with `params`.
    pub fn new(
        allocations: Vec<(AccountId, Amount)>,
        params: Params,
    ) -> Result<Books, GenesisError> {
        let genesis = Genesis {
            chain_id: ChainId::new("agora-sim"),
            timestamp_ms: 0,
            allocations,
            params,
        };
        Ok(Books {
            state: genesis.initial_state()?,
            genesis,
            applied: 0,
        })
    }

    /// Applies `body` as `signer`'s next transaction in the block of `now_ms`. A refused one
    /// changes nothing and says why.
    pub fn apply(
        &mut self,
        signer: AccountId,
        body: &TxBody,
        now_ms: u64,
    ) -> Result<(), LedgerError> {
        let ctx = BlockContext {
            chain_id: &self.genesis.chain_id,
            params: &self.genesis.params,
            height: now_ms / 1_000 + 1,
            timestamp_ms: now_ms.max(1),
        };
        apply_unsigned(&mut self.state, signer, body, &ctx)?;
        self.applied += 1;
        Ok(())
    }

    /// The chain's parameters.
    pub fn params(&self) -> &Params {
        &self.genesis.params
    }

    /// `account`'s spendable balance.
    pub fn balance(&self, account: &AccountId) -> Amount {
        self.state.balance(account)
    }

    /// `account`'s bonded stake.
    pub fn bonded(&self, account: &AccountId) -> Amount {
        self.state.stake(account).map_or(Amount::ZERO, |s| s.bonded)
    }

    /// What remains locked in `order`'s escrow.
    pub fn escrow_remaining(&self, order: &Hash) -> Amount {
        self.state
            .escrow(order)
            .map_or(Amount::ZERO, |e| e.remaining)
    }

    /// Where the supply sits.
    pub fn supply(&self) -> Supply {
        self.state.supply()
    }

    /// minted = Σ balances + Σ escrow + Σ stakes + burned.
    pub fn check_conservation(&self) -> Result<(), ConservationError> {
        self.state.check_conservation()
    }

    /// Forgets the per-block change list (the simulation stores no blocks), so memory stays
    /// bounded by the state itself.
    pub fn end_block(&mut self) {
        let _ = self.state.take_changes();
    }

    /// The state root: one hash that two runs with the same seed must agree on.
    pub fn state_root(&mut self) -> Hash {
        self.state.state_root()
    }
}
