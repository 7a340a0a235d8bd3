//! What the agent has done and earned, and the `provider.json` discovery file.

use std::path::{Path, PathBuf};

use agora_core::{AccountId, Amount, Fuel, Price};
use agora_proto::api::{AccountView, ProviderView};
use serde::{Deserialize, Serialize};

use crate::cost::CostStatus;
use crate::error::ProviderError;
use crate::hardware::Capacity;

/// Counters of the agent's work since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStats {
    /// Assignments taken.
    pub accepted: u64,
    /// Assignments refused (bad signature, capacity, ...).
    pub declined: u64,
    /// Jobs running now.
    pub running: u32,
    /// Results the market acknowledged.
    pub delivered: u64,
    /// Jobs that failed (executor error, fetch failure, delivery refused, or cut off
    /// by shutdown after its grace).
    pub failed: u64,
    /// Jobs the market aborted, or disowned by refusing their heartbeat.
    pub aborted: u64,
    /// Fuel of the delivered results.
    pub fuel_delivered: Fuel,
    /// What the delivered results bill at the assigned prices, before the market's fee
    /// (what the agent expects to be paid; the ledger is the authority).
    pub billed: Amount,
    /// Jobs it misbehaved on on purpose (`--faulty`, test networks only); always 0 for an
    /// honest agent.
    #[serde(default)]
    pub misbehaved: u64,
}

impl JobStats {
    /// Records a delivery the market acknowledged.
    pub(crate) fn record_delivery(&mut self, price: Price, fuel: Fuel) {
        self.delivered += 1;
        self.fuel_delivered = Fuel(self.fuel_delivered.0.saturating_add(fuel.0));
        let bill = price.cost(fuel).unwrap_or(Amount(u64::MAX));
        self.billed = Amount(self.billed.0.saturating_add(bill.0));
    }
}

/// A snapshot of the agent: who it is, what it offers, what it did and, when the market's
/// HTTP API is reachable, what the ledger and the market say about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// The provider's account.
    pub account: AccountId,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// The market authority it serves.
    pub market: AccountId,
    /// The chain.
    pub chain_id: String,
    /// What it offers.
    pub capacity: Capacity,
    /// Whether container jobs are offered (runtime, calibration, GPUs), or why not.
    pub containers: crate::containers::ContainerSupport,
    /// Its current ask price per compute unit.
    pub price: Price,
    /// Its work since start.
    pub jobs: JobStats,
    /// Its ledger account (balance, stake), when the API answered.
    pub ledger: Option<AccountView>,
    /// The market's view of it (reputation, completed jobs, earnings), when known.
    pub market_view: Option<ProviderView>,
    /// Why the ledger or market figures are missing, if they are.
    pub market_error: Option<String>,
    /// Cost, floor and uptime.
    pub economics: Economics,
    /// Settled earnings per hour of uptime, when the market's figures are known.
    pub earnings_per_hour: Option<Amount>,
}

/// What a CU costs the agent, the floor under its prices, and what it has earned since it
/// started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Economics {
    /// The cost model's figures.
    pub cost: CostStatus,
    /// When the agent started, Unix ms.
    pub started_ms: u64,
    /// What the market said the provider had earned when the agent started (`None` when
    /// it could not be asked).
    pub earned_at_start: Option<Amount>,
}

impl Economics {
    /// Settled earnings per hour of this run: what the market says the provider has
    /// `earned_now`, less what it had at start, over the uptime to `now_ms`. `None` when
    /// the start figure is unknown or the agent has run less than a minute.
    pub fn earnings_per_hour(&self, earned_now: Amount, now_ms: u64) -> Option<Amount> {
        let since_start = earned_now.0.checked_sub(self.earned_at_start?.0)?;
        crate::cost::earnings_per_hour(Amount(since_start), now_ms.saturating_sub(self.started_ms))
    }
}

/// The content of `DATA_DIR/provider.json`, written once the agent is connected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryFile {
    /// The provider's account.
    pub account: AccountId,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its p2p listen addresses.
    pub p2p_addrs: Vec<String>,
    /// The market authority it serves.
    pub market: AccountId,
    /// The chain.
    pub chain_id: String,
    /// The agent's process id.
    pub pid: u32,
}

/// The discovery file's name inside the data directory.
pub const DISCOVERY_FILE: &str = "provider.json";

impl DiscoveryFile {
    /// Writes the file atomically (temp file, then rename), so a reader never sees half of it.
    pub fn write(&self, data_dir: &Path) -> Result<PathBuf, ProviderError> {
        write_json(data_dir, DISCOVERY_FILE, serde_json::to_vec_pretty(self))
    }

    /// Reads the file another agent wrote in `data_dir`.
    pub fn read(data_dir: &Path) -> Result<DiscoveryFile, ProviderError> {
        read_json(data_dir, DISCOVERY_FILE)
    }
}

/// The content of `DATA_DIR/stats.json`: the agent's work and message counters since it
/// started, rewritten every few seconds by `agora node provider` so that tools outside
/// the process (`agora bench scale`) can read them; a provider has no HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsFile {
    /// The agent's process id (a restarted agent starts from zero again).
    pub pid: u32,
    /// Its work since start.
    pub jobs: JobStats,
    /// Its p2p messages since start.
    pub net: agora_net::NetStats,
    /// Its cost model and uptime (absent in files of older agents).
    #[serde(default)]
    pub economics: Option<Economics>,
}

/// The stats file's name inside the data directory.
pub const STATS_FILE: &str = "stats.json";

impl StatsFile {
    /// Writes the file atomically (temp file, then rename).
    pub fn write(&self, data_dir: &Path) -> Result<PathBuf, ProviderError> {
        write_json(data_dir, STATS_FILE, serde_json::to_vec(self))
    }

    /// Reads the file an agent wrote in `data_dir`.
    pub fn read(data_dir: &Path) -> Result<StatsFile, ProviderError> {
        read_json(data_dir, STATS_FILE)
    }
}

/// Writes `name` in `data_dir` atomically (a temporary file, then a rename), so a reader
/// in another process never sees half of it.
fn write_json(
    data_dir: &Path,
    name: &str,
    encoded: serde_json::Result<Vec<u8>>,
) -> Result<PathBuf, ProviderError> {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let text = encoded.map_err(|e| ProviderError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, text).map_err(ProviderError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(ProviderError::io(&path))?;
    Ok(path)
}

/// Reads the JSON file `name` another process wrote in `data_dir`.
fn read_json<T: serde::de::DeserializeOwned>(
    data_dir: &Path,
    name: &str,
) -> Result<T, ProviderError> {
    let path = data_dir.join(name);
    let text = std::fs::read(&path).map_err(ProviderError::io(&path))?;
    serde_json::from_slice(&text).map_err(|e| ProviderError::Io {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_file_reads_back_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = StatsFile {
            pid: 7,
            jobs: JobStats {
                delivered: 3,
                ..JobStats::default()
            },
            net: agora_net::NetStats {
                gossip_published: 5,
                ..Default::default()
            },
            economics: None,
        };
        file.write(dir.path()).unwrap();
        assert_eq!(StatsFile::read(dir.path()).unwrap(), file);
    }
    use agora_core::Keypair;

    #[test]
    fn earnings_per_hour_count_this_run_only() {
        let model = crate::cost::CostModel::new(
            crate::cost::CostConfig {
                milliwatts: Some(50_000),
                ..Default::default()
            },
            4,
            0,
        );
        let economics = Economics {
            cost: model.status().clone(),
            started_ms: 1_000,
            earned_at_start: Some(Amount(5_000)),
        };
        // 1 000 more over half an hour: 2 000 an hour.
        assert_eq!(
            economics.earnings_per_hour(Amount(6_000), 1_000 + 1_800_000),
            Some(Amount(2_000))
        );
        assert_eq!(economics.earnings_per_hour(Amount(6_000), 2_000), None);
        let unknown = Economics {
            earned_at_start: None,
            ..economics
        };
        assert_eq!(unknown.earnings_per_hour(Amount(6_000), 3_600_000), None);
    }

    #[test]
    fn deliveries_add_up() {
        let mut stats = JobStats::default();
        stats.record_delivery(Price(1_000), Fuel::compute_units(2));
        stats.record_delivery(Price(500), Fuel::compute_units(1));
        assert_eq!(stats.delivered, 2);
        assert_eq!(stats.fuel_delivered, Fuel::compute_units(3));
        assert_eq!(stats.billed, Amount(2_500));
    }

    #[test]
    fn discovery_file_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = DiscoveryFile {
            account: Keypair::from_seed("p").account(),
            peer_id: "12D3".into(),
            p2p_addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            market: Keypair::from_seed("m").account(),
            chain_id: "c".into(),
            pid: 42,
        };
        file.write(dir.path()).unwrap();
        assert_eq!(DiscoveryFile::read(dir.path()).unwrap(), file);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != DISCOVERY_FILE)
            .collect();
        assert!(leftovers.is_empty());
    }
}
