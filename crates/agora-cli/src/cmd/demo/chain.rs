//! `agora demo --settlement evm`: the final positions and the conservation check read
//! straight from the `AgoraMarket` contract on the devnet's anvil chain, over a
//! connection of the demo's own (not through the market's API).

use agora_core::{AccountId, Amount, ChainId};
use agora_devnet::LocalNet;
use agora_evm::{EvmConfig, EvmSettlement};
use agora_ledger::{DevKeys, Genesis, Settlement};
use anyhow::Context;

use super::report::Balance;

/// The contract's totals at the end of the demo.
#[derive(Clone, Debug)]
pub struct ChainAudit {
    /// The chain's JSON-RPC URL.
    pub rpc_url: String,
    /// The `AgoraMarket` contract.
    pub contract: String,
    /// Σ internal balances.
    pub balances: Amount,
    /// Σ escrow still locked.
    pub escrowed: Amount,
    /// Σ bonded and unbonding stake.
    pub staked: Amount,
    /// Burnt (slashes' burnt share).
    pub burnt: Amount,
    /// The payment tokens the contract holds, in base units (decimal; may exceed 64 bits).
    pub held: String,
    /// Whether balances + escrowed + staked + burnt equals the tokens held.
    pub conserved: bool,
}

/// Reads each of `who`'s balance and stake, and the contract's totals.
pub fn read(
    net: &LocalNet,
    who: Vec<(String, AccountId)>,
) -> anyhow::Result<(Vec<Balance>, ChainAudit)> {
    let evm = net
        .evm
        .as_ref()
        .context("the devnet does not settle on EVM")?;
    let (rpc_url, market) = (evm.rpc_url.clone(), evm.market);
    let users = net.buyer_keys.len() + net.providers.len();
    // The EVM client blocks on a runtime of its own: read on a thread of its own.
    std::thread::scope(|scope| {
        scope
            .spawn(move || read_on(rpc_url, market, users, who))
            .join()
            .map_err(|_| anyhow::anyhow!("reading the chain panicked"))?
    })
}

fn read_on(
    rpc_url: String,
    market: agora_evm::Address,
    users: usize,
    who: Vec<(String, AccountId)>,
) -> anyhow::Result<(Vec<Balance>, ChainAudit)> {
    let keys = DevKeys::new(users);
    // The devnet's rules (the dev genesis'); the market key is the public dev key.
    let (genesis, _) = Genesis::dev("agora-devnet", 0, users, Amount::ZERO);
    let config = EvmConfig::new(
        rpc_url.clone(),
        market,
        ChainId::new("agora-devnet"),
        genesis.params,
    );
    let mut chain = EvmSettlement::connect(config, &keys.market)
        .with_context(|| format!("connecting to contract {market} at {rpc_url}"))?;
    for user in &keys.users {
        chain.add_key(user);
    }
    let mut balances = Vec::with_capacity(who.len());
    for (role, account) in who {
        let record = chain
            .account(&account)
            .with_context(|| format!("reading {role}'s balance"))?;
        let stake = chain
            .stake(&account)
            .with_context(|| format!("reading {role}'s stake"))?
            .map(|s| s.total())
            .transpose()?
            .unwrap_or(Amount::ZERO);
        balances.push(Balance {
            role,
            account,
            balance: record.balance,
            stake,
        });
    }
    let supply = chain.supply().context("reading the contract's totals")?;
    let audit = ChainAudit {
        rpc_url,
        contract: market.to_string(),
        balances: Amount(supply.balances),
        escrowed: Amount(supply.escrowed),
        staked: Amount(supply.staked),
        burnt: Amount(supply.burnt),
        held: supply.held.to_string(),
        conserved: supply.conserved(),
    };
    Ok((balances, audit))
}
