//! Replaying a chain from genesis: the auditor's view.
//!
//! A [`Replayer`] starts from the genesis state and takes blocks one by one, recomputing
//! everything ([`crate::block::replay_block`]) and checking conservation after each. It
//! trusts nothing it is handed, so the same code serves `verify` on a data directory and
//! determinism tests across processes.

use agora_core::Hash;

use crate::block::{
    Block, ChainTip, CheckedBlock, ReplayError, replay_block, replay_checked_block,
};
use crate::genesis::{Genesis, GenesisError};
use crate::state::{ConservationError, State};

/// Why a block failed an audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The block breaks a rule or a commitment.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The block replays but breaks conservation (a bug in the rules, never a user error).
    /// Boxed: its seven sums would make every audit result large.
    #[error(transparent)]
    Conservation(Box<ConservationError>),
}

impl From<ConservationError> for AuditError {
    fn from(error: ConservationError) -> AuditError {
        AuditError::Conservation(Box::new(error))
    }
}

/// Replays blocks on top of genesis.
#[derive(Clone, Debug)]
pub struct Replayer {
    genesis: Genesis,
    state: State,
    tip: ChainTip,
    txs: u64,
}

impl Replayer {
    /// A replayer at genesis.
    pub fn new(genesis: Genesis) -> Result<Replayer, GenesisError> {
        let state = genesis.initial_state()?;
        let tip = ChainTip::genesis(&genesis);
        Ok(Replayer {
            genesis,
            state,
            tip,
            txs: 0,
        })
    }

    /// Checks and applies the next block. After an error the replayer is unusable (its
    /// state may be half-updated) and should be dropped.
    pub fn push(&mut self, block: &Block) -> Result<(), AuditError> {
        self.tip = replay_block(&mut self.state, &self.genesis, &self.tip, block)?;
        self.state.check_conservation()?;
        self.txs += block.txs.len() as u64;
        Ok(())
    }

    /// [`Replayer::push`] for a block whose signatures were checked beforehand.
    pub fn push_checked(&mut self, checked: &CheckedBlock) -> Result<(), AuditError> {
        self.tip = replay_checked_block(&mut self.state, &self.genesis, &self.tip, checked)?;
        self.state.check_conservation()?;
        self.txs += checked.block().txs.len() as u64;
        Ok(())
    }

    /// The last replayed block's tip.
    pub fn tip(&self) -> &ChainTip {
        &self.tip
    }

    /// The replayed state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The replayed state root.
    pub fn state_root(&mut self) -> Hash {
        self.state.state_root()
    }

    /// Transactions replayed so far.
    pub fn txs(&self) -> u64 {
        self.txs
    }

    /// The genesis replayed from.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
}
