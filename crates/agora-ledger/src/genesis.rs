//! Genesis: the chain's name, its first timestamp, who starts with what, and the rules'
//! parameters. Serialisable to JSON so operators can write one by hand.

use std::collections::BTreeSet;

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, canonical};
use serde::{Deserialize, Serialize};

use crate::state::{Account, State};

/// Basis points in one whole (100 %).
pub const BPS_DENOMINATOR: u16 = 10_000;

/// The rules' parameters, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The only account that may release escrow, refund before a deadline, or slash.
    pub market_authority: AccountId,
    /// Where market fees go.
    pub treasury: AccountId,
    /// The market fee on each escrow payout, in basis points (0–10 000).
    pub fee_bps: u16,
    /// How many blocks unbonding stake stays locked (and slashable) before withdrawal.
    pub unbonding_period_blocks: u64,
    /// The share of a slash paid to its beneficiary, in basis points (0–10 000); the rest
    /// is burnt.
    pub slash_beneficiary_bps: u16,
    /// The only key whose signature seals blocks.
    pub block_producer: AccountId,
}

/// The chain's starting point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The network's name; every transaction and block is signed for it.
    pub chain_id: ChainId,
    /// The genesis timestamp (ms since the Unix epoch); block timestamps never go below it.
    pub timestamp_ms: u64,
    /// Initial balances; their sum is the whole supply ever minted.
    pub allocations: Vec<(AccountId, Amount)>,
    /// The rules' parameters.
    pub params: Params,
}

/// Why a genesis was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// A basis-point parameter above 10 000.
    #[error("genesis parameter {name} is {value} basis points; it must be at most 10000 (100%)")]
    BasisPointsOutOfRange {
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: u16,
    },
    /// The same account allocated twice.
    #[error("account {0} is allocated twice in genesis; merge the two allocations")]
    DuplicateAllocation(AccountId),
    /// An allocation of zero.
    #[error("account {0} has a zero allocation in genesis; remove it")]
    ZeroAllocation(AccountId),
    /// The allocations add up to more than an amount can hold.
    #[error("genesis allocations add up to more than {} base units", u64::MAX)]
    SupplyOverflow,
    /// An empty chain id.
    #[error("genesis chain_id is empty; name the network")]
    EmptyChainId,
}

impl Genesis {
    /// Checks the parameters and allocations.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.chain_id.0.is_empty() {
            return Err(GenesisError::EmptyChainId);
        }
        for (name, value) in [
            ("fee_bps", self.params.fee_bps),
            ("slash_beneficiary_bps", self.params.slash_beneficiary_bps),
        ] {
            if value > BPS_DENOMINATOR {
                return Err(GenesisError::BasisPointsOutOfRange { name, value });
            }
        }
        let mut seen = BTreeSet::new();
        for (account, amount) in &self.allocations {
            if !seen.insert(*account) {
                return Err(GenesisError::DuplicateAllocation(*account));
            }
            if amount.is_zero() {
                return Err(GenesisError::ZeroAllocation(*account));
            }
        }
        self.supply().map(|_| ())
    }

    /// The total minted: the sum of the allocations.
    pub fn supply(&self) -> Result<Amount, GenesisError> {
        Amount::sum(self.allocations.iter().map(|(_, a)| *a))
            .map_err(|_| GenesisError::SupplyOverflow)
    }

    /// The state before the first block.
    pub fn initial_state(&self) -> Result<State, GenesisError> {
        self.validate()?;
        let accounts = self.allocations.iter().map(|(id, balance)| {
            (
                *id,
                Account {
                    balance: *balance,
                    next_nonce: 0,
                },
            )
        });
        Ok(State::from_parts(
            accounts,
            [],
            [],
            [],
            self.supply()?,
            Amount::ZERO,
        ))
    }

    /// The genesis hash: what block 1 names as its previous block.
    pub fn hash(&self) -> Hash {
        Hash::tagged("agora/genesis/v1", &[&canonical::encode(self)])
    }

    /// A development genesis whose keys all derive from public seeds (see [`DevKeys`]):
    /// for demos, tests and benchmarks, never for real money.
    pub fn dev(
        chain_id: &str,
        timestamp_ms: u64,
        users: usize,
        each: Amount,
    ) -> (Genesis, DevKeys) {
        let keys = DevKeys::new(users);
        let genesis = Genesis {
            chain_id: ChainId::new(chain_id),
            timestamp_ms,
            allocations: keys.users.iter().map(|k| (k.account(), each)).collect(),
            params: Params {
                market_authority: keys.market.account(),
                treasury: keys.treasury.account(),
                fee_bps: 100,
                unbonding_period_blocks: 10,
                slash_beneficiary_bps: 5_000,
                block_producer: keys.producer.account(),
            },
        };
        (genesis, keys)
    }
}

/// The keys of a [`Genesis::dev`] chain, derived from the seeds `agora-dev/<role>`.
#[derive(Clone, Debug)]
pub struct DevKeys {
    /// The market authority (seed `agora-dev/market`).
    pub market: Keypair,
    /// The treasury (seed `agora-dev/treasury`).
    pub treasury: Keypair,
    /// The block producer (seed `agora-dev/producer`).
    pub producer: Keypair,
    /// Funded users (seeds `agora-dev/user/0`, `agora-dev/user/1`, …).
    pub users: Vec<Keypair>,
}

impl DevKeys {
    /// The dev keys with `users` funded users.
    pub fn new(users: usize) -> DevKeys {
        DevKeys {
            market: Keypair::from_seed("agora-dev/market"),
            treasury: Keypair::from_seed("agora-dev/treasury"),
            producer: Keypair::from_seed("agora-dev/producer"),
            users: (0..users)
                .map(|i| Keypair::from_seed(&format!("agora-dev/user/{i}")))
                .collect(),
        }
    }
}
