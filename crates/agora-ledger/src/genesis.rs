//! Genesis: the chain's name, its first timestamp, who starts with what, and the rules'
//! parameters. Serialisable to JSON so operators can write one by hand.

use std::collections::BTreeSet;

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair, canonical};
use serde::{Deserialize, Serialize};

use crate::state::{Account, State};

/// Basis points in one whole (100 %).
pub const BPS_DENOMINATOR: u16 = 10_000;

/// The rules' parameters, fixed at genesis.
///
/// `allow_faulty_providers` was added after chains were already stored, so it is written
/// only when set: a genesis without it encodes (and so hashes) exactly as before, and
/// ledgers and genesis files written before it still read back (as `false`). That is also
/// why `Params` must stay the last field of [`Genesis`]: in the canonical encoding an
/// omitted flag is recognised by the end of the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
    /// Whether provider agents may run with a fault mode (`agora node provider
    /// --faulty`): deliberately wrong, skipped, withheld or crashed jobs, for testing
    /// verification. **Test networks only.** Agents refuse to misbehave on a chain whose
    /// genesis leaves this `false`, the default; `agora node market --dev` sets it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_faulty_providers: bool,
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

/// The field names, in encoding order.
const PARAMS_FIELDS: &[&str] = &[
    "market_authority",
    "treasury",
    "fee_bps",
    "unbonding_period_blocks",
    "slash_beneficiary_bps",
    "block_producer",
    "allow_faulty_providers",
];

/// `Params` as self-describing formats (JSON) read it: a missing flag is `false`.
#[derive(Deserialize)]
#[serde(rename = "Params")]
struct ParamsByName {
    market_authority: AccountId,
    treasury: AccountId,
    fee_bps: u16,
    unbonding_period_blocks: u64,
    slash_beneficiary_bps: u16,
    block_producer: AccountId,
    #[serde(default)]
    allow_faulty_providers: bool,
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Params, D::Error> {
        if deserializer.is_human_readable() {
            let p = ParamsByName::deserialize(deserializer)?;
            return Ok(Params {
                market_authority: p.market_authority,
                treasury: p.treasury,
                fee_bps: p.fee_bps,
                unbonding_period_blocks: p.unbonding_period_blocks,
                slash_beneficiary_bps: p.slash_beneficiary_bps,
                block_producer: p.block_producer,
                allow_faulty_providers: p.allow_faulty_providers,
            });
        }
        deserializer.deserialize_struct("Params", PARAMS_FIELDS, ParamsInOrder)
    }
}

/// Reads the canonical (positional) encoding, where an unset flag is simply absent.
struct ParamsInOrder;

impl<'de> serde::de::Visitor<'de> for ParamsInOrder {
    type Value = Params;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the genesis parameters")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Params, A::Error> {
        use serde::de::Error;
        fn next<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
            seq: &mut A,
            index: usize,
        ) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| A::Error::invalid_length(index, &"6 or 7 genesis parameters"))
        }
        Ok(Params {
            market_authority: next(&mut seq, 0)?,
            treasury: next(&mut seq, 1)?,
            fee_bps: next(&mut seq, 2)?,
            unbonding_period_blocks: next(&mut seq, 3)?,
            slash_beneficiary_bps: next(&mut seq, 4)?,
            block_producer: next(&mut seq, 5)?,
            // Absent (the bytes end here) when it was never set. A positional format
            // cannot say "absent" other than by ending, so failing to read one more value
            // is taken to mean exactly that. Stored genesis bytes are covered by the
            // genesis hash every block chains from, so a damaged byte here is caught by
            // the chain check, not by this decoder.
            allow_faulty_providers: seq.next_element().ok().flatten().unwrap_or(false),
        })
    }
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
                allow_faulty_providers: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Params` and `Genesis` as they were before `allow_faulty_providers`.
    #[derive(Serialize)]
    struct OldParams {
        market_authority: AccountId,
        treasury: AccountId,
        fee_bps: u16,
        unbonding_period_blocks: u64,
        slash_beneficiary_bps: u16,
        block_producer: AccountId,
    }

    #[derive(Serialize)]
    struct OldGenesis {
        chain_id: ChainId,
        timestamp_ms: u64,
        allocations: Vec<(AccountId, Amount)>,
        params: OldParams,
    }

    fn old(genesis: &Genesis) -> OldGenesis {
        let p = &genesis.params;
        OldGenesis {
            chain_id: genesis.chain_id.clone(),
            timestamp_ms: genesis.timestamp_ms,
            allocations: genesis.allocations.clone(),
            params: OldParams {
                market_authority: p.market_authority,
                treasury: p.treasury,
                fee_bps: p.fee_bps,
                unbonding_period_blocks: p.unbonding_period_blocks,
                slash_beneficiary_bps: p.slash_beneficiary_bps,
                block_producer: p.block_producer,
            },
        }
    }

    #[test]
    fn an_unset_fault_flag_keeps_the_old_encoding_and_hash() {
        let (genesis, _) = Genesis::dev("old", 5, 2, Amount(9));
        assert!(!genesis.params.allow_faulty_providers);
        let before = canonical::encode(&old(&genesis));
        assert_eq!(canonical::encode(&genesis), before);
        let back: Genesis = canonical::decode(&before).unwrap();
        assert_eq!(back, genesis);
        let json = serde_json::to_string(&old(&genesis)).unwrap();
        assert_eq!(serde_json::to_string(&genesis).unwrap(), json);
        let back: Genesis = serde_json::from_str(&json).unwrap();
        assert_eq!(back, genesis);
    }

    #[test]
    fn a_set_fault_flag_round_trips_and_changes_the_hash() {
        let (mut genesis, _) = Genesis::dev("test", 5, 2, Amount(9));
        let unset = genesis.hash();
        genesis.params.allow_faulty_providers = true;
        assert_ne!(genesis.hash(), unset);
        let bytes = canonical::encode(&genesis);
        assert_eq!(canonical::decode::<Genesis>(&bytes).unwrap(), genesis);
        let json = serde_json::to_string_pretty(&genesis).unwrap();
        assert!(json.contains("\"allow_faulty_providers\": true"), "{json}");
        assert_eq!(serde_json::from_str::<Genesis>(&json).unwrap(), genesis);
        // Anything after the flag is still trailing garbage.
        let mut longer = bytes.clone();
        longer.push(1);
        assert!(canonical::decode::<Genesis>(&longer).is_err());
    }
}
