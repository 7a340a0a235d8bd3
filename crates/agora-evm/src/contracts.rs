//! Bindings to the committed contracts (`contracts/out`) and their deployment bytecode.
//!
//! The ABI JSON and bytecode are the files `contracts/build.sh` writes and CI checks; the
//! Rust side never compiles Solidity, so what is tested here is byte for byte what is
//! committed.

use alloy::primitives::{Address, Bytes};
use alloy::sol;
use alloy::sol_types::SolConstructor;

sol!(
    #[derive(Debug, PartialEq, Eq)]
    AgoraMarket,
    "../../contracts/out/AgoraMarket.abi.json"
);

sol!(
    #[derive(Debug, PartialEq, Eq)]
    TestToken,
    "../../contracts/out/TestToken.abi.json"
);

sol!(
    #[derive(Debug, PartialEq, Eq)]
    HostileToken,
    "../../contracts/out/HostileToken.abi.json"
);

const AGORA_MARKET_BIN: &str = include_str!("../../../contracts/out/AgoraMarket.bin");
const TEST_TOKEN_BIN: &str = include_str!("../../../contracts/out/TestToken.bin");
const HOSTILE_TOKEN_BIN: &str = include_str!("../../../contracts/out/HostileToken.bin");

/// The market's parameters, fixed at deployment (the contract has no setter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketConfig {
    /// The ERC-20 payment token.
    pub token: Address,
    /// The only address that may settle, assign and slash.
    pub authority: Address,
    /// Where market fees go.
    pub treasury: Address,
    /// The market fee per payout line, in basis points.
    pub fee_bps: u16,
    /// The slash beneficiary's share, in basis points.
    pub slash_beneficiary_bps: u16,
    /// How many blocks unbonding stake stays locked.
    pub unbonding_period_blocks: u64,
    /// Bonded stake a provider needs to be assigned an order.
    pub min_stake: u64,
}

fn bytecode(hex_text: &str) -> Vec<u8> {
    hex::decode(hex_text.trim()).expect("contracts/out/*.bin is hex written by build.sh")
}

/// The creation code of `AgoraMarket` with its constructor arguments.
pub fn market_creation_code(config: &MarketConfig) -> Bytes {
    let mut code = bytecode(AGORA_MARKET_BIN);
    code.extend(
        AgoraMarket::constructorCall {
            token_: config.token,
            authority_: config.authority,
            treasury_: config.treasury,
            feeBps_: config.fee_bps,
            slashBeneficiaryBps_: config.slash_beneficiary_bps,
            unbondingPeriodBlocks_: config.unbonding_period_blocks,
            minStake_: config.min_stake,
        }
        .abi_encode(),
    );
    code.into()
}

/// The creation code of the test ERC-20 (anyone may mint; tests and devnets only).
pub fn test_token_creation_code() -> Bytes {
    bytecode(TEST_TOKEN_BIN).into()
}

/// The creation code of the hostile ERC-20 (reentrancy and skimming; tests only).
pub fn hostile_token_creation_code() -> Bytes {
    bytecode(HOSTILE_TOKEN_BIN).into()
}
