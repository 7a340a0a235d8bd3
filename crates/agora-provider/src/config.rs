//! [`ProviderConfig`]: everything the agent needs to start, with documented defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use agora_core::{Amount, Fuel, Keypair, Price};
use agora_net::Multiaddr;
use agora_proto::api::MarketInfo;

use crate::containers::ContainerPolicy;
use crate::cost::CostConfig;
use crate::fault::FaultPlan;
use crate::hardware::CapacityOverrides;
use crate::pricing::PricingStrategy;

/// How often asks are re-gossiped by default. Each re-gossip costs the market a signature
/// check and an engine update, and every agent a relay: at 2 s, 100 idle agents kept a
/// tenth of the market's core and 0.4 of a core across the agents busy; at 6 s a third.
/// A price change waits for the next tick; a reconnect re-publishes at once.
pub const DEFAULT_ASK_INTERVAL: Duration = Duration::from_secs(6);
/// How far ahead of now asks expire by default: a few missed re-publications and the
/// market drops the offer of a provider that went away.
pub const DEFAULT_ASK_TTL: Duration = Duration::from_secs(30);
/// The largest fuel budget taken by default (100 000 CU).
pub const DEFAULT_MAX_JOB: Fuel = Fuel::compute_units(100_000);
/// How long a clean shutdown waits for running jobs to deliver.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the agent learns who the market is.
#[derive(Clone, Debug)]
pub enum MarketLink {
    /// The market's HTTP API base URL: the agent reads `/v1/info`, bonds its stake with
    /// `/v1/txs`, follows `/v1/index` and reports earnings from `/v1/accounts` and
    /// `/v1/providers`.
    Http(String),
    /// The market's info given directly; no HTTP calls at all (no bonding, no index, no
    /// ledger figures in the status). For tests and for markets reached over p2p only.
    Direct(MarketInfo),
}

/// How to run a provider agent. Build with [`ProviderConfig::new`], then adjust fields.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The provider's key: its ledger account, the signer of its asks and receipts, and
    /// its libp2p identity.
    pub key: Keypair,
    /// Where the agent keeps its blobs, module cache, job scratch space and `provider.json`.
    pub data_dir: PathBuf,
    /// Where compiled WASM modules are cached; `None` is `DATA_DIR/module-cache`.
    /// Providers on one host may share one directory, so each module is compiled once for
    /// all of them: entries are written to a temporary file and renamed into place, so a
    /// reader never sees half an entry, and writers of one module write equal bytes.
    pub module_cache: Option<PathBuf>,
    /// The market to serve.
    pub market: MarketLink,
    /// Stake to hold bonded; the agent bonds the difference at start (HTTP link only).
    /// Zero bonds nothing.
    pub stake: Amount,
    /// How asks are priced.
    pub pricing: PricingStrategy,
    /// The `region` attribute of the asks, if any.
    pub region: Option<String>,
    /// More ask attributes (`operator`, `tier`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Overrides of the detected capacity.
    pub overrides: CapacityOverrides,
    /// p2p listen addresses; empty listens on loopback at a free port. The market
    /// reaches the agent over the connection the agent opens, so a public address is
    /// needed only for other peers.
    pub listen: Vec<Multiaddr>,
    /// How often asks are re-gossiped.
    pub ask_interval: Duration,
    /// How far ahead of now each ask expires.
    pub ask_ttl: Duration,
    /// The smallest fuel budget taken.
    pub min_job: Fuel,
    /// The largest fuel budget taken.
    pub max_job: Fuel,
    /// How long a clean shutdown waits for running jobs.
    pub shutdown_grace: Duration,
    /// Misbehave on purpose (see [`crate::fault`]): **test networks only**. The agent
    /// refuses to start with one unless the market's genesis allows faulty providers.
    /// `None` (the default) is an honest provider.
    pub fault: Option<FaultPlan>,
    /// What container jobs may do here (see [`crate::containers`]).
    pub containers: ContainerPolicy,
    /// A GPU class's price per CU as a multiple of the CPU price (a CU of a GPU job is a
    /// CPU-second's worth of fuel while the GPUs are held, so it costs more).
    pub gpu_price_multiple: u64,
    /// What a CU costs this machine (power, electricity, hardware) and the margin over it:
    /// the agent never asks below the floor this gives ([`crate::cost`]).
    pub cost: CostConfig,
}

/// The default [`ProviderConfig::gpu_price_multiple`].
pub const DEFAULT_GPU_PRICE_MULTIPLE: u64 = 4;

impl ProviderConfig {
    /// A configuration with the defaults above and a fixed price of `price`.
    pub fn new(
        key: Keypair,
        data_dir: impl Into<PathBuf>,
        market: MarketLink,
        price: Price,
    ) -> ProviderConfig {
        ProviderConfig {
            key,
            data_dir: data_dir.into(),
            module_cache: None,
            market,
            stake: Amount::ZERO,
            pricing: PricingStrategy::Fixed(price),
            region: None,
            attributes: BTreeMap::new(),
            overrides: CapacityOverrides::default(),
            listen: Vec::new(),
            ask_interval: DEFAULT_ASK_INTERVAL,
            ask_ttl: DEFAULT_ASK_TTL,
            min_job: Fuel(1),
            max_job: DEFAULT_MAX_JOB,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            fault: None,
            containers: ContainerPolicy::default(),
            gpu_price_multiple: DEFAULT_GPU_PRICE_MULTIPLE,
            cost: CostConfig::default(),
        }
    }
}
