//! The buyer's own escrow on a market that settles on an EVM chain.
//!
//! When a market's `/v1/info` says it settles on the `AgoraMarket` contract, the market
//! node does not lock the buyer's money for it: the buyer opens the escrow on chain with
//! its own derived EVM key (`approve` + `deposit` of any shortfall, then `openEscrow` for
//! the order's id, amount and deadline), and then submits the signed order, whose escrow
//! the node finds on chain and checks is identical. A challenger's bond is opened the
//! same way ([`open_bond_on_chain`]). See docs/settlement-evm.md.

use agora_core::{Amount, Hash, Keypair};
use agora_evm::Participant;
use agora_proto::api::{MarketInfo, SettlementInfo};
use agora_proto::{SignedOrder, challenge_bond_id, signed_order_id};

use crate::error::ClientError;

/// The chain and contract a market settles on, if it settles on an EVM chain.
pub fn evm_settlement(info: &MarketInfo) -> Option<(&str, &str)> {
    match info.settlement.as_deref() {
        Some(SettlementInfo::Evm {
            rpc_url, contract, ..
        }) => Some((rpc_url.as_str(), contract.as_str())),
        _ => None,
    }
}

/// Opens `order`'s escrow on the contract from `key`'s own EVM account (a retry finds the
/// identical escrow already open and sends nothing).
pub async fn open_escrow_on_chain(
    rpc_url: &str,
    contract: &str,
    key: &Keypair,
    order: &SignedOrder,
) -> Result<(), ClientError> {
    let participant = Participant::connect(rpc_url, contract, key)
        .await
        .map_err(ClientError::settlement)?;
    participant
        .open_escrow(
            signed_order_id(order),
            order.body.escrow.0,
            order.body.deadline_ms,
        )
        .await
        .map_err(ClientError::settlement)?;
    Ok(())
}

/// Opens the bond of `key`'s challenge to order `order_id` on the contract from its own
/// EVM account: an escrow of `bond` until `deadline_ms` under
/// [`challenge_bond_id`]`(order_id, key's account)`, which the market takes over when the
/// signed challenge (naming the same bond) is filed. A retry finds the identical bond
/// already open and sends nothing.
pub async fn open_bond_on_chain(
    rpc_url: &str,
    contract: &str,
    key: &Keypair,
    order_id: &Hash,
    bond: Amount,
    deadline_ms: u64,
) -> Result<(), ClientError> {
    let participant = Participant::connect(rpc_url, contract, key)
        .await
        .map_err(ClientError::settlement)?;
    participant
        .open_escrow(
            challenge_bond_id(order_id, &key.account()),
            bond.0,
            deadline_ms,
        )
        .await
        .map_err(ClientError::settlement)?;
    Ok(())
}
