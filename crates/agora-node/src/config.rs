//! How to run a market node: where it keeps its data, where it listens, which chain it
//! produces blocks for, and the lifecycle's timing knobs. Every field has a documented
//! default in [`MarketConfig::dev`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agora_core::{Amount, Keypair};
use agora_ledger::Genesis;
use agora_net::Multiaddr;

/// Chain id of a dev network created with `--dev`.
pub const DEV_CHAIN_ID: &str = "agora-devnet";
/// What each dev user is funded with at genesis: 10 000 AGR.
pub const DEV_USER_FUNDS: Amount = Amount::agr(10_000);
/// Default largest blob accepted over HTTP or fetched over p2p: 1 GiB.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 1 << 30;
/// Default heartbeat interval asked of providers; three missed ones fail an attempt.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1_000);
/// Default attempts (first assignment plus reassignments) before an order is refunded.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default largest JSON request body: 1 MiB (orders carry hashes, not content).
pub const DEFAULT_MAX_JSON_BYTES: usize = 1 << 20;
/// After a restart, how long unmatched resumed orders wait for providers to come back
/// before they are refunded.
pub const DEFAULT_RESUME_GRACE: Duration = Duration::from_secs(15);

/// Which chain the node produces blocks for, and with which keys.
#[derive(Clone, Debug)]
pub enum ChainSetup {
    /// A development chain: created on first start with [`Genesis::dev`] and
    /// [`DEV_USER_FUNDS`] for each of `users` funded accounts; the market and producer
    /// keys are the public dev keys ([`agora_ledger::DevKeys`]). Never for real money.
    Dev {
        /// Funded dev users (`agora-dev/user/0..users`).
        users: usize,
    },
    /// A real chain: `genesis` is used on first start (ignored, but checked, later);
    /// `key` must be the genesis market authority and block producer.
    Genesis {
        /// The chain's genesis.
        genesis: Box<Genesis>,
        /// The market authority and block producer key.
        key: Box<Keypair>,
    },
}

/// A market node's configuration.
#[derive(Clone, Debug)]
pub struct MarketConfig {
    /// Holds the ledger (`ledger.redb`), order records (`orders.redb`), blobs
    /// (`blobs/`) and the discovery file (`node.json`).
    pub data_dir: PathBuf,
    /// HTTP API address; port 0 picks a free one.
    pub http_listen: SocketAddr,
    /// libp2p listen address; port 0 picks a free one.
    pub p2p_listen: Multiaddr,
    /// The chain and its keys.
    pub chain: ChainSetup,
    /// Largest blob accepted over HTTP (413 beyond) or fetched from a provider.
    pub max_blob_bytes: u64,
    /// Largest JSON request body.
    pub max_json_bytes: usize,
    /// Heartbeat interval asked of providers.
    pub heartbeat: Duration,
    /// Attempts per order (first assignment plus reassignments) before refunding.
    pub max_attempts: u32,
    /// How long the block producer waits for more transactions after the first one
    /// arrives. Zero (the default) commits at once: group commit batches whatever
    /// arrived while the previous block was being written.
    pub block_interval: Duration,
    /// How long resumed orders wait for providers after a restart.
    pub resume_grace: Duration,
}

impl MarketConfig {
    /// A dev-network configuration with `users` funded accounts, listening on loopback
    /// at free ports, with the defaults above.
    pub fn dev(data_dir: impl Into<PathBuf>, users: usize) -> MarketConfig {
        MarketConfig {
            data_dir: data_dir.into(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            p2p_listen: agora_net::config::loopback_any_port(),
            chain: ChainSetup::Dev { users },
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            heartbeat: DEFAULT_HEARTBEAT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            block_interval: Duration::ZERO,
            resume_grace: DEFAULT_RESUME_GRACE,
        }
    }

    /// The heartbeat interval in ms (at least 1).
    pub fn heartbeat_ms(&self) -> u64 {
        (self.heartbeat.as_millis() as u64).max(1)
    }
}
