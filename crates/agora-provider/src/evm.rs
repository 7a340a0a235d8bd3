//! The provider's own stake on a market that settles on an EVM chain.
//!
//! When the market's `/v1/info` says it settles on the `AgoraMarket` contract, the market
//! node sends nothing for the provider: the agent bonds its stake on chain with its own
//! derived EVM key (`approve` + `deposit` of any shortfall, then `bond`), at least the
//! contract's `minStake` (below it the contract refuses to assign the provider), and
//! publishes that key's address in its signed ask as `evm.address`, the only address the
//! market can pay it at. See docs/settlement-evm.md.

use agora_core::Keypair;
use agora_evm::Participant;
use agora_proto::api::{MarketInfo, SettlementInfo};

use crate::error::ProviderError;

/// The ask attribute carrying the address the provider is paid at (the node reads the
/// same name).
pub const EVM_ADDRESS_ATTR: &str = "evm.address";

/// The chain and contract a market settles on, if it settles on an EVM chain.
pub fn evm_settlement(info: &MarketInfo) -> Option<(&str, &str)> {
    match info.settlement.as_deref() {
        Some(SettlementInfo::Evm {
            rpc_url, contract, ..
        }) => Some((rpc_url.as_str(), contract.as_str())),
        _ => None,
    }
}

/// `key`'s EVM address as it is published in asks (`0x…`, checksummed).
pub fn published_address(key: &Keypair) -> String {
    agora_evm::evm_address(key).to_string()
}

/// Tops `key`'s bonded stake on the contract up to `target`, and to at least the
/// contract's `minStake`, from its own EVM account. Returns what was bonded now.
pub async fn bond_on_chain(
    rpc_url: &str,
    contract: &str,
    key: &Keypair,
    target: u64,
) -> Result<Option<u64>, ProviderError> {
    let participant = Participant::connect(rpc_url, contract, key)
        .await
        .map_err(|e| ProviderError::Settlement(e.to_string()))?;
    let min_stake = participant
        .min_stake()
        .await
        .map_err(|e| ProviderError::Settlement(e.to_string()))?;
    let bonded = participant
        .bond_to(target.max(min_stake))
        .await
        .map_err(|e| ProviderError::Settlement(e.to_string()))?;
    if let Some(amount) = bonded {
        tracing::info!(amount, address = %participant.address(), "bonded stake on chain");
    }
    Ok(bonded)
}
