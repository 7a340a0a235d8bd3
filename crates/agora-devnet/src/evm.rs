//! A local network that settles on an EVM chain (`agora devnet --settlement evm`): an
//! anvil child process, the `AgoraMarket` contract and a test token deployed on it for the
//! dev chain's rules, and every dev user funded there as the embedded dev chain's genesis
//! funds it (tokens minted and deposited from the user's own derived EVM key).
//!
//! The market node is then started with `--settlement evm --rpc URL --contracts ADDR`.
//! It holds none of the users' keys: buyers open their escrows and providers bond on chain
//! from their own keys, as on any chain (docs/settlement-evm.md).

use agora_core::{Amount, Keypair};
use agora_evm::{Address, Anvil, AnvilError, EvmSettlement};
use agora_ledger::{DevKeys, Genesis};

/// What each dev user holds on the contract, as the embedded dev chain's genesis gives it
/// (`agora_node::config::DEV_USER_FUNDS`).
pub const EVM_USER_FUNDS: Amount = Amount::agr(10_000);
/// The least bonded stake the contract accepts in an assigned provider: any bond at all
/// (the market's own verification rules ask for more per job).
pub const EVM_MIN_STAKE: u64 = 1;

/// A local EVM chain with the market deployed on it; anvil stops when this is dropped.
#[derive(Debug)]
pub struct EvmChain {
    /// The anvil child process.
    pub anvil: Anvil,
    /// Its JSON-RPC URL.
    pub rpc_url: String,
    /// The `AgoraMarket` contract.
    pub market: Address,
    /// The test payment token.
    pub token: Address,
}

/// Why the local EVM chain could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EvmSetupError {
    /// No anvil, or it did not start.
    #[error(transparent)]
    Anvil(#[from] AnvilError),
    /// Deploying or funding failed.
    #[error("deploying the market on anvil at {rpc_url}: {detail}")]
    Deploy {
        /// The chain.
        rpc_url: String,
        /// What failed.
        detail: String,
    },
}

impl EvmChain {
    /// Starts anvil, deploys the market for a dev chain of `users` dev users (the market
    /// authority and treasury are the dev keys) and funds every user with
    /// [`EVM_USER_FUNDS`].
    pub fn start(users: usize) -> Result<EvmChain, EvmSetupError> {
        let anvil = Anvil::spawn()?;
        let rpc_url = anvil.endpoint();
        let keys = DevKeys::new(users);
        let (genesis, _) = Genesis::dev("agora-devnet", 0, users, EVM_USER_FUNDS);
        let funded: Vec<(&Keypair, Amount)> =
            keys.users.iter().map(|k| (k, EVM_USER_FUNDS)).collect();
        // The EVM client blocks on a runtime of its own: deploy off any caller's runtime.
        let deployed = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    EvmSettlement::deploy_dev(
                        &rpc_url,
                        &genesis.params,
                        &keys.market,
                        &keys.treasury,
                        EVM_MIN_STAKE,
                        &funded,
                    )
                })
                .join()
        });
        let deployment = match deployed {
            Ok(Ok(deployment)) => deployment,
            Ok(Err(e)) => {
                return Err(EvmSetupError::Deploy {
                    rpc_url,
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                return Err(EvmSetupError::Deploy {
                    rpc_url,
                    detail: "the deployment thread panicked".into(),
                });
            }
        };
        Ok(EvmChain {
            anvil,
            rpc_url,
            market: deployment.market,
            token: deployment.token,
        })
    }

    /// The flags that make `agora node market` settle here.
    pub fn market_args(&self) -> Vec<String> {
        vec![
            "--settlement".into(),
            "evm".into(),
            "--rpc".into(),
            self.rpc_url.clone(),
            "--contracts".into(),
            self.market.to_string(),
        ]
    }
}
