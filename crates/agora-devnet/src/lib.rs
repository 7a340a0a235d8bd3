//! A local Agora network of real processes: one market node and N provider agents on
//! loopback, each an `agora node ...` child process with its own data directory and key.
//!
//! `agora devnet`, `agora demo`, `agora bench e2e` and the multi-process integration
//! tests start one with [`LocalNet::start`], given the path of the `agora` binary. The
//! chain is a development chain (`agora node market --dev USERS`) whose funded accounts
//! derive from public seeds ([`agora_ledger::DevKeys`]): the first `buyers` users are
//! buyers, the next `providers` are provider agents. Their keys are written as wallet
//! files, so every process signs with its own key exactly as on separate machines.
//!
//! Children die with this process: each is started with `PR_SET_PDEATHSIG` in its own
//! process group, and [`LocalNet`]'s `Drop` stops them (SIGTERM, then SIGKILL after a
//! grace period), so neither a panic, an error return nor Ctrl-C leaves a market or
//! provider running. (The kernel sends the death signal when the *thread* that started a
//! child exits, so start and restart a network from a thread that outlives it: the main
//! thread, or a test's own thread — not a short-lived task thread.) Tests that need crashes use [`LocalNet::kill_provider`] and
//! [`LocalNet::kill_market`] (SIGKILL), then [`LocalNet::restart_market`].
//!
//! Some providers can be started faulty on purpose, to test verification:
//! [`LocalNetConfig::with_byzantine`] (the `k` cheapest) or [`LocalNetConfig::faulty`]
//! (chosen indices), each with a [`FaultPlan`] (`agora node provider --faulty`). The dev
//! chain allows them; [`LocalNet::faulty_providers`] says who they are.
#![warn(unused_crate_dependencies, missing_docs)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use agora_client::MarketClient;
use agora_client::wallet::{WalletError, write_wallet};
use agora_core::{AccountId, Amount, Keypair, Price};
use agora_ledger::DevKeys;
pub use agora_provider::{FaultMode, FaultPlan};
use serde::Deserialize;

pub mod evm;

/// How long a child may take to come up, by default ([`LocalNetConfig::ready_timeout`]).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The directory under the network's directory that providers share when
/// [`LocalNetConfig::shared_caches`] is on: `module-cache/` and `images/`.
pub const SHARED_DIR: &str = "shared";
/// How long a stopped child gets to exit cleanly before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of a child's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;

/// Why a local network could not be started or used; each names the log to read.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A file or directory of the network could not be written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child process could not be started.
    #[error("could not start `{command}`: {source} (is {} the agora binary?)", .binary.display())]
    Spawn {
        /// The command line.
        command: String,
        /// The binary run.
        binary: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child exited before it was ready.
    #[error("{what} exited ({status}) before it was ready:\n{log}")]
    Exited {
        /// Which child.
        what: String,
        /// Its exit status.
        status: ExitStatus,
        /// The end of its log.
        log: String,
    },
    /// A child did not become ready in time.
    #[error("{what} was not ready within {timeout:?}:\n{log}")]
    NotReady {
        /// Which child, and what was awaited.
        what: String,
        /// How long it was given.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
    /// A wallet file could not be written.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// The market's API could not be used.
    #[error(transparent)]
    Client(#[from] agora_client::ClientError),
    /// No such provider in this network.
    #[error("there is no provider {0} in this network")]
    NoProvider(usize),
    /// The local EVM chain for `--settlement evm` could not be set up.
    #[error(transparent)]
    Evm(#[from] evm::EvmSetupError),
}

impl DevnetError {
    fn io(path: &Path, source: std::io::Error) -> DevnetError {
        DevnetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalNetConfig {
    /// The `agora` binary every child runs.
    pub agora: PathBuf,
    /// Where every data directory, wallet and log goes.
    pub dir: PathBuf,
    /// Provider agents to start.
    pub providers: usize,
    /// Funded buyer accounts to write wallets for.
    pub buyers: usize,
    /// The cheapest provider's price per CU; provider `i` asks `i` × 10% more.
    pub base_price: Price,
    /// Stake each provider bonds when it starts.
    pub provider_stake: Amount,
    /// Concurrent jobs per provider (`--slots`), or the agent's own default.
    pub provider_slots: Option<u32>,
    /// The market's HTTP address (`127.0.0.1:0` picks a free port).
    pub http: String,
    /// Extra flags for `agora node market` (e.g. `--heartbeat-ms 200`).
    pub market_args: Vec<String>,
    /// Extra flags for every `agora node provider` (e.g. `--cpus 16`).
    pub provider_args: Vec<String>,
    /// Providers that misbehave on purpose: `(index, plan)`, the index into the
    /// providers (0 is the cheapest). An index past `providers` is ignored; the last
    /// entry for an index wins.
    pub faulty: Vec<(usize, FaultPlan)>,
    /// Let every provider use one module cache and one image store under
    /// `DIR/shared/` (`--module-cache`, `--image-store`), so a module is compiled and an
    /// image unpacked once for the whole network instead of once per provider. Both
    /// caches are safe for concurrent processes; off by default, so each provider is
    /// what a separate machine would be.
    pub shared_caches: bool,
    /// How long the market, and then all providers together, may take to become ready.
    pub ready_timeout: Duration,
    /// Settle on a local anvil chain ([`evm::EvmChain`]) instead of the market's embedded
    /// ledger. Off by default (and then no anvil is needed).
    pub settle_on_evm: bool,
}

impl LocalNetConfig {
    /// A network of `providers` agents and `buyers` buyer wallets under `dir`, run by
    /// the `agora` binary at `agora`, with the demo's prices and a free HTTP port.
    pub fn new(agora: impl Into<PathBuf>, dir: impl Into<PathBuf>, providers: usize) -> Self {
        LocalNetConfig {
            agora: agora.into(),
            dir: dir.into(),
            providers,
            buyers: 1,
            base_price: Price(20_000_000),
            provider_stake: Amount::agr(100),
            provider_slots: None,
            http: "127.0.0.1:0".into(),
            market_args: Vec::new(),
            provider_args: Vec::new(),
            faulty: Vec::new(),
            shared_caches: false,
            ready_timeout: START_TIMEOUT,
            settle_on_evm: false,
        }
    }

    /// Makes the `k` cheapest providers (indices `0..k`) faulty with `plan`: a cheater
    /// undercuts to win work, so these are the ones the market picks first.
    pub fn with_byzantine(mut self, k: usize, plan: impl Into<FaultPlan>) -> Self {
        let plan = plan.into();
        self.faulty
            .extend((0..k.min(self.providers)).map(|i| (i, plan)));
        self
    }

    /// The fault plan of provider `index`, if it is faulty.
    pub fn fault_of(&self, index: usize) -> Option<FaultPlan> {
        self.faulty
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, plan)| *plan)
    }
}

/// What the market node writes to `DATA_DIR/node.json` once it listens.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeFile {
    /// Its API's base URL.
    pub http_url: String,
    /// Its libp2p addresses.
    pub p2p_addrs: Vec<String>,
    /// Its chain id.
    pub chain_id: String,
}

/// One provider agent process.
#[derive(Debug)]
pub struct ProviderProcess {
    /// The agent's account.
    pub account: AccountId,
    /// Its price per CU.
    pub price: Price,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its wallet file.
    pub wallet: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    /// Its process id.
    pub pid: u32,
    /// How it misbehaves on purpose, if it does.
    pub fault: Option<FaultPlan>,
    child: Option<Child>,
}

impl ProviderProcess {
    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// How the process ended, if it has (not after [`LocalNet::kill_provider`] or
    /// [`LocalNet::stop`], which reap it themselves).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok()?
    }

    /// Whether it is a `crash` provider that has exited as that mode does
    /// ([`agora_provider::fault::CRASH_EXIT_CODE`]): an expected death, not a failure.
    pub fn crashed_on_purpose(&mut self) -> bool {
        self.fault.is_some_and(|plan| plan.mode == FaultMode::Crash)
            && self.exit_status().and_then(|s| s.code())
                == Some(agora_provider::fault::CRASH_EXIT_CODE)
    }
}

/// A running local network.
#[derive(Debug)]
pub struct LocalNet {
    config: LocalNetConfig,
    /// The market's data directory (ledger, order records, blobs, node.json).
    pub market_dir: PathBuf,
    /// The market's API base URL (the same across [`LocalNet::restart_market`]).
    pub http_url: String,
    /// The market node's process id.
    pub market_pid: u32,
    /// The provider agents.
    pub providers: Vec<ProviderProcess>,
    /// Wallet files of the funded buyers.
    pub buyer_wallets: Vec<PathBuf>,
    /// The funded buyers' keys, in the order of `buyer_wallets`.
    pub buyer_keys: Vec<Keypair>,
    market: Option<Child>,
    market_starts: usize,
    /// The EVM chain the market settles on, with `settle_on_evm` (dropped, so stopped,
    /// after every child).
    pub evm: Option<evm::EvmChain>,
}

impl LocalNet {
    /// Starts the market node, waits until it listens, writes the buyers' wallets, then
    /// starts the providers. Call [`LocalNet::wait_for_providers`] before submitting work.
    pub fn start(config: &LocalNetConfig) -> Result<LocalNet, DevnetError> {
        let dir = &config.dir;
        std::fs::create_dir_all(dir).map_err(|e| DevnetError::io(dir, e))?;
        let keys = DevKeys::new(config.buyers + config.providers);
        let (buyer_keys, provider_keys) = keys.users.split_at(config.buyers);
        let mut net = LocalNet {
            config: config.clone(),
            market_dir: dir.join("market"),
            http_url: String::new(),
            market_pid: 0,
            providers: Vec::new(),
            buyer_wallets: Vec::new(),
            buyer_keys: buyer_keys.to_vec(),
            market: None,
            market_starts: 0,
            evm: None,
        };
        if config.settle_on_evm {
            let chain = evm::EvmChain::start(config.buyers + config.providers)?;
            net.config.market_args.extend(chain.market_args());
            net.evm = Some(chain);
        }
        net.start_market(&config.http)?;
        for (i, key) in buyer_keys.iter().enumerate() {
            let wallet = dir.join(format!("buyer-{i}.json"));
            write_wallet(&wallet, key, true)?;
            net.buyer_wallets.push(wallet);
        }
        for (i, key) in provider_keys.iter().enumerate() {
            let price = Price(config.base_price.0 + config.base_price.0 * i as u64 / 10);
            let provider = net.spawn_provider(i, key, price)?;
            net.providers.push(provider);
        }
        Ok(net)
    }

    /// Provider `index`'s account, if there is one.
    pub fn provider_account(&self, index: usize) -> Option<AccountId> {
        self.providers.get(index).map(|p| p.account)
    }

    /// The faulty providers: `(index, account, plan)`, by index.
    pub fn faulty_providers(&self) -> Vec<(usize, AccountId, FaultPlan)> {
        self.providers
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.account, p.fault?)))
            .collect()
    }

    /// Whether `account` is one of the faulty providers.
    pub fn is_faulty(&self, account: &AccountId) -> bool {
        self.providers
            .iter()
            .any(|p| p.account == *account && p.fault.is_some())
    }

    /// The directory everything lives in.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The market's log file (each restart appends a new one: `market.log`, `market-1.log`...).
    pub fn market_log(&self) -> PathBuf {
        match self.market_starts {
            0 | 1 => self.config.dir.join("market.log"),
            n => self.config.dir.join(format!("market-{}.log", n - 1)),
        }
    }

    /// A client for the market's API.
    pub fn client(&self) -> Result<MarketClient, DevnetError> {
        Ok(MarketClient::new(&self.http_url)?)
    }

    fn start_market(&mut self, http: &str) -> Result<(), DevnetError> {
        let users = self.config.buyers + self.config.providers;
        let mut args = vec![
            "node".to_string(),
            "market".into(),
            "--data-dir".into(),
            self.market_dir.display().to_string(),
            "--http".into(),
            http.to_string(),
            "--p2p".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--dev".into(),
            users.to_string(),
        ];
        args.extend(self.config.market_args.iter().cloned());
        // A restarted node rewrites node.json; remove the old one so we wait for the new.
        let node_json = self.market_dir.join("node.json");
        match std::fs::remove_file(&node_json) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DevnetError::io(&node_json, e)),
        }
        self.market_starts += 1;
        let child = spawn_agora(&self.config.agora, &args, &self.market_log())?;
        self.market_pid = child.id();
        self.market = Some(child);
        let node = self.wait_for_market()?;
        self.http_url = node.http_url;
        Ok(())
    }

    fn spawn_provider(
        &self,
        index: usize,
        key: &Keypair,
        price: Price,
    ) -> Result<ProviderProcess, DevnetError> {
        let data_dir = self.config.dir.join(format!("provider-{index}"));
        std::fs::create_dir_all(&data_dir).map_err(|e| DevnetError::io(&data_dir, e))?;
        let wallet = data_dir.join("wallet.json");
        write_wallet(&wallet, key, true)?;
        let region = if index.is_multiple_of(2) { "eu" } else { "us" };
        let mut args = vec![
            "node".to_string(),
            "provider".into(),
            "--market".into(),
            self.http_url.clone(),
            "--wallet".into(),
            wallet.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--price".into(),
            format!("{}u", price.0),
            "--stake".into(),
            format!("{}u", self.config.provider_stake.0),
            "--region".into(),
            region.into(),
        ];
        if let Some(slots) = self.config.provider_slots {
            args.extend(["--slots".into(), slots.to_string()]);
        }
        if self.config.shared_caches {
            let shared = self.config.dir.join(SHARED_DIR);
            for (flag, sub) in [
                ("--module-cache", "module-cache"),
                ("--image-store", "images"),
            ] {
                args.extend([flag.into(), shared.join(sub).display().to_string()]);
            }
        }
        let fault = self.config.fault_of(index);
        if let Some(plan) = fault {
            args.extend(["--faulty".into(), plan.to_string()]);
        }
        args.extend(self.config.provider_args.iter().cloned());
        let log = self.config.dir.join(format!("provider-{index}.log"));
        let child = spawn_agora(&self.config.agora, &args, &log)?;
        Ok(ProviderProcess {
            account: key.account(),
            price,
            data_dir,
            wallet,
            log,
            pid: child.id(),
            fault,
            child: Some(child),
        })
    }

    /// Polls for the market's `node.json`; fails with the log's tail if the market exits.
    fn wait_for_market(&mut self) -> Result<NodeFile, DevnetError> {
        let path = self.market_dir.join("node.json");
        let timeout = self.config.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(node) = serde_json::from_str::<NodeFile>(&text)
            {
                return Ok(node);
            }
            if let Some(child) = self.market.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(DevnetError::Exited {
                    what: "the market node".into(),
                    status,
                    log: log_tail(&self.market_log()),
                });
            }
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady {
                    what: "the market node's HTTP API".into(),
                    timeout,
                    log: log_tail(&self.market_log()),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every running provider is connected to the market and has an ask
    /// posted; fails with the slow provider's log if one exits or takes too long (a
    /// `crash` provider that crashed on purpose is not waited for).
    pub async fn wait_for_providers(&mut self) -> Result<(), DevnetError> {
        let client = self.client()?;
        let timeout = self.config.ready_timeout;
        let deadline = Instant::now() + timeout;
        // Listing a hundred providers twenty times a second would slow their start.
        let poll = if self.providers.len() > 16 {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(50)
        };
        loop {
            let listed = client.providers().await.unwrap_or_default();
            let ready = |account: &AccountId| {
                listed
                    .iter()
                    .any(|p| p.account == *account && p.peer.is_some() && !p.asks.is_empty())
            };
            let mut waiting = Vec::new();
            for (index, provider) in self.providers.iter_mut().enumerate() {
                if provider.child.is_none() || provider.crashed_on_purpose() {
                    continue;
                }
                if let Some(Ok(Some(status))) = provider.child.as_mut().map(Child::try_wait) {
                    return Err(DevnetError::Exited {
                        what: format!("provider {index} ({})", provider.account),
                        status,
                        log: log_tail(&provider.log),
                    });
                }
                if !ready(&provider.account) {
                    waiting.push((index, provider.account, provider.log.clone()));
                }
            }
            let Some((index, account, log)) = waiting.first() else {
                return Ok(());
            };
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady {
                    what: format!(
                        "provider {index} ({account}) and {} more: connected with an ask posted",
                        waiting.len() - 1
                    ),
                    timeout,
                    log: log_tail(log),
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The first child that has exited on its own, named with its log, if any (a
    /// `crash` provider that crashed on purpose does not count).
    pub fn dead_child(&mut self) -> Option<String> {
        if let Some(child) = self.market.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Some(format!(
                "the market node ({status}, log {})",
                self.market_log().display()
            ));
        }
        self.providers.iter_mut().find_map(|p| {
            if p.crashed_on_purpose() {
                return None;
            }
            let status = p.child.as_mut()?.try_wait().ok()??;
            Some(format!(
                "provider {} ({status}, log {})",
                p.account,
                p.log.display()
            ))
        })
    }

    /// Kills provider `index` with SIGKILL (no chance to clean up), as a crash would.
    pub fn kill_provider(&mut self, index: usize) -> Result<(), DevnetError> {
        let provider = self
            .providers
            .get_mut(index)
            .ok_or(DevnetError::NoProvider(index))?;
        if let Some(child) = provider.child.take() {
            kill_now(child);
        }
        Ok(())
    }

    /// Starts provider `index` again with its key, price, data directory and fault plan
    /// (after [`LocalNet::kill_provider`], a crash of its own, or while it still runs, which
    /// is stopped first). Its log goes on in the same file.
    pub fn restart_provider(&mut self, index: usize) -> Result<(), DevnetError> {
        let provider = self
            .providers
            .get_mut(index)
            .ok_or(DevnetError::NoProvider(index))?;
        if let Some(child) = provider.child.take() {
            stop_children(vec![child]);
        }
        let price = provider.price;
        let keys = DevKeys::new(self.config.buyers + self.config.providers);
        let key = &keys.users[self.config.buyers + index];
        self.providers[index] = self.spawn_provider(index, key, price)?;
        Ok(())
    }

    /// Whether the market node has a running process.
    pub fn market_running(&mut self) -> bool {
        self.market
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the market node with SIGKILL, as a crash or power cut would.
    pub fn kill_market(&mut self) {
        if let Some(child) = self.market.take() {
            kill_now(child);
        }
    }

    /// Starts the market node again on the same data directory and HTTP address (after
    /// [`LocalNet::kill_market`] or a clean stop); providers find it by themselves.
    pub fn restart_market(&mut self) -> Result<(), DevnetError> {
        if let Some(child) = self.market.take() {
            stop_children(vec![child]);
        }
        let http = self
            .http_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        self.start_market(&http)
    }

    /// Stops the market node cleanly (SIGTERM), so its ledger can be opened by others
    /// (e.g. `agora ledger verify`); the providers keep running.
    pub fn stop_market(&mut self) {
        if let Some(child) = self.market.take() {
            stop_children(vec![child]);
        }
    }

    /// The directory holding the market's ledger (`agora ledger verify --data-dir`):
    /// the market's data directory. Stop the market first; the store is locked while open.
    pub fn ledger_dir(&self) -> &Path {
        &self.market_dir
    }

    /// Stops every child: SIGTERM, then SIGKILL for those still running after the grace
    /// period. Called by `Drop` too; calling it twice is harmless.
    pub fn stop(&mut self) {
        let mut children: Vec<Child> = self
            .providers
            .iter_mut()
            .filter_map(|p| p.child.take())
            .collect();
        children.extend(self.market.take());
        stop_children(children);
    }
}

impl Drop for LocalNet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SIGTERM to each, then SIGKILL to those still running after [`STOP_GRACE`].
fn stop_children(children: Vec<Child>) {
    for child in &children {
        signal(child.id(), libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    for mut child in children {
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        kill_now(child);
    }
}

/// SIGKILL and reap. Killing an already exited child fails harmlessly.
fn kill_now(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts `agora ARGS...` with stdout and stderr to `log`, in its own process group (so
/// a terminal's Ctrl-C reaches only the parent, which stops the children in order), dying
/// with the parent.
fn spawn_agora(agora: &Path, args: &[String], log: &Path) -> Result<Child, DevnetError> {
    // Appended to: a restarted provider's log goes on after its previous life's.
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| DevnetError::io(log, e))?;
    let err = out.try_clone().map_err(|e| DevnetError::io(log, e))?;
    let mut command = Command::new(agora);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    die_with_parent(&mut command);
    command.spawn().map_err(|source| DevnetError::Spawn {
        command: format!("agora {}", args.join(" ")),
        binary: agora.to_path_buf(),
        source,
    })
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and setpgid are async-signal-safe and touch only the child's own state.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: sending a signal to a child we started and have not reaped yet, so the pid
    // cannot have been reused.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    format!("--- {} ---\n{}", path.display(), lines[start..].join("\n"))
}
