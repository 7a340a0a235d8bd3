//! How to run a market node: where it keeps its data, where it listens, which chain it
//! produces blocks for, the lifecycle's timing knobs and the limits that keep hostile
//! clients from exhausting it. Every field has a documented default in
//! [`MarketConfig::dev`]; the HTTP connection limits and the order deadline bound also
//! read their defaults from the environment (`AGORA_MARKET_*`, see [`MarketConfig::apply_env`]).

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
/// Default most HTTP connections served at once; further ones wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Default time an HTTP connection may sit with no request in flight and no bytes
/// moving before it is closed; also how long a request in flight may be stalled on a
/// client that stopped reading the answer or sending the body.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a client has to send a complete request head, from its connection or
/// from the first byte of a later request on a kept-alive connection.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default latest order deadline accepted, counted from the submission: 7 days.
pub const DEFAULT_MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3_600);
/// The most connections [`MarketConfig::max_connections`] may allow.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;

/// Environment variable overriding [`MarketConfig::max_connections`].
pub const ENV_MAX_CONNECTIONS: &str = "AGORA_MARKET_MAX_CONNECTIONS";
/// Environment variable overriding [`MarketConfig::idle_timeout`], in ms.
pub const ENV_IDLE_TIMEOUT_MS: &str = "AGORA_MARKET_IDLE_TIMEOUT_MS";
/// Environment variable overriding [`MarketConfig::header_timeout`], in ms.
pub const ENV_HEADER_TIMEOUT_MS: &str = "AGORA_MARKET_HEADER_TIMEOUT_MS";
/// Environment variable overriding [`MarketConfig::max_deadline`], in ms.
pub const ENV_MAX_DEADLINE_MS: &str = "AGORA_MARKET_MAX_DEADLINE_MS";
/// Environment variable overriding [`MarketConfig::fault_suspension`], in ms (0: off).
pub const ENV_FAULT_SUSPENSION_MS: &str = "AGORA_MARKET_FAULT_SUSPENSION_MS";

/// A configuration the node cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable holds something other than the number it must be.
    #[error("environment variable {var}={value:?} is not {expected}; fix or unset it")]
    Env {
        /// The variable.
        var: &'static str,
        /// What it holds.
        value: String,
        /// What it must hold.
        expected: &'static str,
    },
    /// A setting is outside the range the node can work with.
    #[error("{setting} is {value}, outside {min}..={max}; set it within that range")]
    OutOfRange {
        /// The setting (the config field and its environment variable).
        setting: &'static str,
        /// Its value.
        value: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
}

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

/// Where the market keeps its money.
#[derive(Clone, Debug, Default)]
pub enum SettlementSetup {
    /// The embedded ledger in the data directory (the default).
    #[default]
    Embedded,
    /// The `AgoraMarket` contract on an EVM chain (docs/settlement-evm.md). The market key
    /// must be the contract's authority (its EVM key is derived with
    /// `agora_evm::evm_signer`), and the contract's fee, slash split and unbonding period
    /// must equal the chain's genesis parameters. On a dev chain the node also holds the
    /// public dev users' EVM keys and sends their own transactions for them; otherwise
    /// every account sends its own to the chain.
    Evm {
        /// The EVM node's JSON-RPC endpoint.
        rpc_url: String,
        /// The deployed `AgoraMarket` contract.
        contract: agora_evm::Address,
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
    /// Where settlement happens (the embedded ledger unless set).
    pub settlement: SettlementSetup,
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
    /// Most HTTP connections served at once (default [`DEFAULT_MAX_CONNECTIONS`],
    /// `AGORA_MARKET_MAX_CONNECTIONS`). Connections beyond it are not accepted until one
    /// closes: they wait in the kernel's listen backlog, which is bounded.
    pub max_connections: usize,
    /// How long an HTTP connection may sit with no request in flight before it is
    /// closed, and how long a request may stay stalled on a client that neither reads
    /// its answer nor sends its body (default [`DEFAULT_IDLE_TIMEOUT`],
    /// `AGORA_MARKET_IDLE_TIMEOUT_MS`). Event streams are requests in flight: they are
    /// never idle while their client reads them.
    pub idle_timeout: Duration,
    /// How long a client has to send a complete request head (default
    /// [`DEFAULT_HEADER_TIMEOUT`], `AGORA_MARKET_HEADER_TIMEOUT_MS`): counted from the
    /// connection for its first request, from the first byte for later ones.
    pub header_timeout: Duration,
    /// The latest order deadline accepted, counted from the submission (default
    /// [`DEFAULT_MAX_DEADLINE`], `AGORA_MARKET_MAX_DEADLINE_MS`): escrow is locked until
    /// the deadline, so an absurd one would hold a buyer's funds and the market's books
    /// for ever.
    pub max_deadline: Duration,
    /// How long a provider's first proven fault keeps it out of matching; each further
    /// fault doubles it, up to 7 days ([`agora_verify::SuspensionRule`]). Default 15
    /// minutes, `AGORA_MARKET_FAULT_SUSPENSION_MS`; zero turns suspension off.
    pub fault_suspension: Duration,
    /// An environment override that could not be read, reported when the node starts.
    env_error: Option<ConfigError>,
}

impl MarketConfig {
    /// A dev-network configuration with `users` funded accounts, listening on loopback
    /// at free ports, with the defaults above, and the connection limits and the deadline
    /// bound as the environment sets them ([`MarketConfig::apply_env`]; a malformed
    /// variable makes [`crate::MarketNode::start`] refuse to start). Fields set after
    /// this win over the environment.
    pub fn dev(data_dir: impl Into<PathBuf>, users: usize) -> MarketConfig {
        let mut config = MarketConfig {
            data_dir: data_dir.into(),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            p2p_listen: agora_net::config::loopback_any_port(),
            chain: ChainSetup::Dev { users },
            settlement: SettlementSetup::Embedded,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            heartbeat: DEFAULT_HEARTBEAT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            block_interval: Duration::ZERO,
            resume_grace: DEFAULT_RESUME_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_deadline: DEFAULT_MAX_DEADLINE,
            fault_suspension: Duration::from_millis(agora_verify::SuspensionRule::DEFAULT.base_ms),
            env_error: None,
        };
        config.env_error = config.apply_env().err();
        config
    }

    /// Overrides the limits from the environment where it sets them:
    /// `AGORA_MARKET_MAX_CONNECTIONS` (a count), `AGORA_MARKET_IDLE_TIMEOUT_MS`,
    /// `AGORA_MARKET_HEADER_TIMEOUT_MS` and `AGORA_MARKET_MAX_DEADLINE_MS` (ms). Stops at
    /// the first variable that is not a number.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        self.apply_vars(|var| std::env::var(var).ok())
    }

    /// [`apply_env`](Self::apply_env) with the variables looked up by `lookup`.
    fn apply_vars(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let number = |var: &'static str| -> Result<Option<u64>, ConfigError> {
            let Some(value) = lookup(var) else {
                return Ok(None);
            };
            value
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| ConfigError::Env {
                    var,
                    value,
                    expected: "a non-negative whole number",
                })
        };
        if let Some(n) = number(ENV_MAX_CONNECTIONS)? {
            self.max_connections = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(ms) = number(ENV_IDLE_TIMEOUT_MS)? {
            self.idle_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(ENV_HEADER_TIMEOUT_MS)? {
            self.header_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(ENV_MAX_DEADLINE_MS)? {
            self.max_deadline = Duration::from_millis(ms);
        }
        if let Some(ms) = number(ENV_FAULT_SUSPENSION_MS)? {
            self.fault_suspension = Duration::from_millis(ms);
        }
        Ok(())
    }

    /// Checks that the node can run with this configuration: the environment overrides
    /// were readable and every limit is within its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(err) = &self.env_error {
            return Err(err.clone());
        }
        let in_range = |setting, value: u64, min, max| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    setting,
                    value,
                    min,
                    max,
                })
            }
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        in_range(
            "max_connections (AGORA_MARKET_MAX_CONNECTIONS)",
            u64::try_from(self.max_connections).unwrap_or(u64::MAX),
            1,
            MAX_CONNECTIONS_LIMIT as u64,
        )?;
        in_range(
            "idle_timeout in ms (AGORA_MARKET_IDLE_TIMEOUT_MS)",
            ms(self.idle_timeout),
            1,
            u64::MAX,
        )?;
        in_range(
            "header_timeout in ms (AGORA_MARKET_HEADER_TIMEOUT_MS)",
            ms(self.header_timeout),
            1,
            u64::MAX,
        )?;
        in_range(
            "max_deadline in ms (AGORA_MARKET_MAX_DEADLINE_MS)",
            ms(self.max_deadline),
            1_000,
            u64::MAX,
        )
    }

    /// The latest order deadline accepted, in ms from now.
    pub fn max_deadline_ms(&self) -> u64 {
        u64::try_from(self.max_deadline.as_millis()).unwrap_or(u64::MAX)
    }

    /// How proven faults suspend providers: [`MarketConfig::fault_suspension`] after the
    /// first, doubling up to the default cap (or the base, if that is longer).
    pub fn suspension_rule(&self) -> agora_verify::SuspensionRule {
        agora_verify::SuspensionRule {
            base_ms: u64::try_from(self.fault_suspension.as_millis()).unwrap_or(u64::MAX),
            max_ms: agora_verify::SuspensionRule::DEFAULT.max_ms,
        }
    }

    /// The heartbeat interval in ms (at least 1).
    pub fn heartbeat_ms(&self) -> u64 {
        (self.heartbeat.as_millis() as u64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_vars(vars: &[(&str, &str)]) -> (MarketConfig, Result<(), ConfigError>) {
        let mut config = MarketConfig::dev("/nonexistent", 0);
        // Start from the defaults whatever the test process's environment says.
        config.max_connections = DEFAULT_MAX_CONNECTIONS;
        config.idle_timeout = DEFAULT_IDLE_TIMEOUT;
        config.header_timeout = DEFAULT_HEADER_TIMEOUT;
        config.max_deadline = DEFAULT_MAX_DEADLINE;
        config.fault_suspension = Duration::from_secs(15 * 60);
        config.env_error = None;
        let result = config.apply_vars(|var| {
            vars.iter()
                .find(|(name, _)| *name == var)
                .map(|(_, value)| value.to_string())
        });
        (config, result)
    }

    #[test]
    fn the_environment_overrides_the_limits() {
        let (config, result) = with_vars(&[
            (ENV_MAX_CONNECTIONS, "16"),
            (ENV_IDLE_TIMEOUT_MS, "1500"),
            (ENV_HEADER_TIMEOUT_MS, " 250 "),
            (ENV_MAX_DEADLINE_MS, "3600000"),
            (ENV_FAULT_SUSPENSION_MS, "0"),
        ]);
        assert_eq!(result, Ok(()));
        assert_eq!(config.max_connections, 16);
        assert_eq!(config.idle_timeout, Duration::from_millis(1_500));
        assert_eq!(config.header_timeout, Duration::from_millis(250));
        assert_eq!(config.max_deadline, Duration::from_secs(3_600));
        assert_eq!(config.suspension_rule().length_ms(1), 0, "0 turns it off");
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        let (config, result) = with_vars(&[]);
        assert_eq!(result, Ok(()));
        assert_eq!(config.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(config.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(config.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(config.max_deadline, DEFAULT_MAX_DEADLINE);
        assert_eq!(
            config.suspension_rule(),
            agora_verify::SuspensionRule::DEFAULT
        );
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn malformed_and_out_of_range_values_are_typed_errors() {
        let (_, result) = with_vars(&[(ENV_IDLE_TIMEOUT_MS, "1m")]);
        assert_eq!(
            result,
            Err(ConfigError::Env {
                var: ENV_IDLE_TIMEOUT_MS,
                value: "1m".into(),
                expected: "a non-negative whole number",
            })
        );
        let (config, result) = with_vars(&[(ENV_MAX_CONNECTIONS, "0")]);
        assert_eq!(result, Ok(()));
        let err = config.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::OutOfRange {
                value: 0,
                min: 1,
                ..
            }
        ));
        assert!(
            err.to_string().contains("AGORA_MARKET_MAX_CONNECTIONS"),
            "{err}"
        );
        let (config, _) = with_vars(&[(ENV_HEADER_TIMEOUT_MS, "0")]);
        assert!(config.validate().is_err());
        let (config, _) = with_vars(&[(ENV_MAX_DEADLINE_MS, "10")]);
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_malformed_variable_is_kept_for_start_to_report() {
        let mut config = MarketConfig::dev("/nonexistent", 0);
        config.env_error = Some(ConfigError::Env {
            var: ENV_MAX_CONNECTIONS,
            value: "many".into(),
            expected: "a non-negative whole number",
        });
        assert!(matches!(config.validate(), Err(ConfigError::Env { .. })));
    }
}
