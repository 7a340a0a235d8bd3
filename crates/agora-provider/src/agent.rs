//! [`ProviderAgent::start`]: joins the market, keeps its ask fresh, serves assignments.
//!
//! These tasks run once the agent is up:
//!
//! - the **event loop** answers the market's requests (`Assign`, `Abort`) at once and
//!   starts a job task per accepted assignment (module `job`);
//! - the **ask loop** re-prices and re-gossips the signed ask every `ask_interval`;
//! - the **link loop** redials the market as soon as its connection drops (re-reading
//!   its addresses, capped exponential backoff) and re-offers once it is back;
//! - **job tasks**, one per running order.
//!
//! Concurrency is bounded by one semaphore permit per declared slot and by the declared
//! memory, reserved byte for byte (each job reserves its memory limit). An assignment
//! that finds either short is declined on the spot, so the market moves on to another
//! provider instead of queueing behind this one — unless a halted job is giving its
//! share back, which takes milliseconds (see [`FREEING_WAIT`]).
//!
//! A run is *halted* by a market `Abort`, by the market refusing its heartbeat ("not
//! assigned to you"), or by shutdown once the grace is over: its sandbox is cancelled
//! (it stops within an epoch tick), its slot and memory come back, and it is not
//! delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_core::{AccountId, Amount, ChainId, Fuel, Hash, Keypair, Price, Signed};
use agora_exec::ExecConfig;
use agora_ledger::{Tx, TxBody};
use agora_market::{Ask, AskId, ResourceClass};
use agora_net::{
    InboundRequest, Multiaddr, NetConfig, NetError, NetEvent, NetHandle, Network, PeerId, Topic,
    Verdict,
};
use agora_proto::api::MarketInfo;
use agora_proto::wire::{AskOffer, Assignment, ProviderReply, ToProvider};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{MarketLink, ProviderConfig};
use crate::containers::Containers;
use crate::cost::CostModel;
use crate::error::ProviderError;
use crate::hardware::{Capacity, Hardware};
use crate::http::MarketApi;
use crate::lazy_exec::LazyExecutor;
use crate::pricing::{IndexSignal, PricingStrategy};
use crate::status::{DiscoveryFile, Economics, JobStats, ProviderStatus};
use crate::verify::{AssignmentRules, Decline, check_abort, check_assignment};

/// The name of the agent's one ask (an upsert under the same id replaces it).
pub(crate) const ASK_NAME: &str = "agent";
/// How long an assignment that finds the slots or memory busy waits while a halted job
/// gives its share back. The market counts that share free as soon as it sent its
/// abort, so its next assignment can arrive a few milliseconds before the cancelled
/// sandbox has returned; declining it would cost that order an attempt for nothing.
pub const FREEING_WAIT: Duration = Duration::from_millis(500);
/// How often such an assignment looks again.
const FREEING_POLL: Duration = Duration::from_millis(5);
/// The first wait between redials of a lost market; doubled after each try.
pub const REDIAL_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between redials: a restarted market is found within about this
/// long of listening again, however long it was down.
pub const REDIAL_MAX: Duration = Duration::from_secs(1);
/// How long one `/v1/info` may take while redialling: a market that is down refuses at
/// once, but one that hangs must not stall the redial.
const REDIAL_INFO_TIMEOUT: Duration = Duration::from_secs(1);
/// After the grace, how long shutdown waits for cancelled jobs to stop and tell the
/// market they gave their orders up.
const WIND_DOWN: Duration = Duration::from_secs(2);

/// Entry point of the crate.
pub struct ProviderAgent;

impl ProviderAgent {
    /// Starts an agent: resolves the market, detects the machine, bonds stake, joins the
    /// p2p network, writes `provider.json` and begins offering work. Runs on the current
    /// tokio runtime until [`RunningProvider::shutdown`].
    pub async fn start(config: ProviderConfig) -> Result<RunningProvider, ProviderError> {
        config.pricing.validate()?;
        if config.min_job > config.max_job || config.max_job.0 == 0 {
            return Err(ProviderError::Config(
                "min_job must be at most max_job, and max_job above zero".into(),
            ));
        }
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(ProviderError::io(&data_dir))?;
        let (api, info) = resolve_market(&config.market).await?;
        check_fault_allowed(config.fault.as_ref(), &info)?;
        let endpoint = MarketEndpoint::from_info(&info)?;
        let hardware = Hardware::detect(&data_dir)?;
        let capacity = Capacity::from_hardware(&hardware, &config.overrides);
        // On an EVM market the agent bonds on chain itself and publishes where it is paid.
        let mut config = config;
        if let Some((rpc_url, contract)) = crate::evm::evm_settlement(&info) {
            crate::evm::bond_on_chain(rpc_url, contract, &config.key, config.stake.0).await?;
            config.attributes.insert(
                crate::evm::EVM_ADDRESS_ATTR.into(),
                crate::evm::published_address(&config.key),
            );
        } else if let Some(api) = &api {
            bond_stake(api, &config.key, &endpoint.chain, config.stake).await?;
        }
        let module_cache =
            (config.module_cache.clone()).unwrap_or_else(|| data_dir.join("module-cache"));
        let executor = executor_config(&data_dir, module_cache)?;
        let containers = start_containers(&config.containers, &data_dir).await?;
        let mut net_config = NetConfig::new(config.key.clone(), data_dir.join("blobs"));
        if !config.listen.is_empty() {
            net_config.listen = config.listen.clone();
        }
        net_config.bootstrap = endpoint.addrs.clone();
        // An agent works for its market alone: connecting to every provider the market's
        // DHT knows would give N agents N² connections and each every other's asks.
        net_config.discover_peers = false;
        let (net, events) = Network::start(net_config).await?;
        let cost = CostModel::new(config.cost.clone(), hardware.cores, now_ms());
        let shared = Arc::new(Shared::new(
            &config, api, endpoint, capacity, executor, containers, net, cost,
        ));
        shared.note_earnings_at_start().await;
        let discovery = match write_discovery(&shared, &data_dir).await {
            Ok(path) => path,
            Err(e) => {
                // Nothing runs yet but the p2p node; close it rather than leak it.
                let _ = shared.net.shutdown().await;
                return Err(e);
            }
        };
        let (stop, stop_rx) = watch::channel(false);
        let event_loop = tokio::spawn(event_loop(shared.clone(), events, stop_rx.clone()));
        let ask_loop = tokio::spawn(ask_loop(shared.clone(), stop_rx.clone()));
        let link_loop = tokio::spawn(link_loop(shared.clone(), stop_rx));
        tracing::info!(
            account = %shared.key.account(),
            peer = %shared.net.peer_id(),
            slots = shared.capacity.slots,
            "provider agent started"
        );
        if let Some(fault) = &shared.fault {
            tracing::warn!(
                fault = %fault,
                chain = %shared.market.chain.0,
                "THIS PROVIDER IS FAULTY ON PURPOSE (--faulty): it will misbehave on {:.0}% of its jobs; test networks only",
                fault.rate() * 100.0
            );
        }
        Ok(RunningProvider {
            shared,
            stop,
            tasks: vec![event_loop, ask_loop, link_loop],
            discovery,
        })
    }
}

/// Refuses a fault mode unless the market's genesis allows faulty providers.
fn check_fault_allowed(
    fault: Option<&crate::fault::FaultPlan>,
    info: &MarketInfo,
) -> Result<(), ProviderError> {
    match fault {
        Some(plan) if !info.allow_faulty_providers => Err(ProviderError::FaultsNotAllowed {
            mode: plan.to_string(),
            chain_id: info.chain_id.clone(),
        }),
        _ => Ok(()),
    }
}

/// Fetches `/v1/info` (HTTP link) or takes the given info (direct link).
async fn resolve_market(
    link: &MarketLink,
) -> Result<(Option<MarketApi>, MarketInfo), ProviderError> {
    match link {
        MarketLink::Http(url) => {
            let api = MarketApi::new(url)?;
            let info = api.info().await?;
            Ok((Some(api), info))
        }
        MarketLink::Direct(info) => Ok((None, info.clone())),
    }
}

/// The market as the p2p layer needs it.
#[derive(Clone, Debug)]
pub(crate) struct MarketEndpoint {
    pub chain: ChainId,
    pub authority: AccountId,
    pub peer: PeerId,
    pub addrs: Vec<Multiaddr>,
}

impl MarketEndpoint {
    /// Reads the market's chain, authority, peer id and dialable addresses from its info.
    pub(crate) fn from_info(info: &MarketInfo) -> Result<MarketEndpoint, ProviderError> {
        let peer: PeerId = info.peer_id.parse().map_err(|e| {
            ProviderError::MarketInfo(format!("peer id {:?} does not parse: {e}", info.peer_id))
        })?;
        let mut addrs = Vec::new();
        for text in &info.p2p_addrs {
            let addr: Multiaddr = text.parse().map_err(|e| {
                ProviderError::MarketInfo(format!("p2p address {text:?} does not parse: {e}"))
            })?;
            addrs.push(with_peer(addr, peer));
        }
        if addrs.is_empty() {
            return Err(ProviderError::MarketInfo(
                "it lists no p2p address to dial; start the market node with p2p enabled".into(),
            ));
        }
        Ok(MarketEndpoint {
            chain: ChainId::new(info.chain_id.clone()),
            authority: info.market,
            peer,
            addrs,
        })
    }
}

/// `addr` ending in `/p2p/PEER`, so discovery knows whom it reaches (an address that
/// already names a peer is kept as it is).
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    addr.with_p2p(peer).unwrap_or_else(|addr| addr)
}

/// Tops the bonded stake up to `target` with one signed `Bond` transaction.
pub(crate) async fn bond_stake(
    api: &MarketApi,
    key: &Keypair,
    chain: &ChainId,
    target: Amount,
) -> Result<Option<Amount>, ProviderError> {
    if target.is_zero() {
        return Ok(None);
    }
    let account = api.account(&key.account()).await?;
    let Ok(needed) = target.checked_sub(account.stake) else {
        return Ok(None);
    };
    if needed.is_zero() {
        return Ok(None);
    }
    if account.balance < needed {
        return Err(ProviderError::InsufficientFunds {
            needed,
            balance: account.balance,
        });
    }
    let tx: Tx = Signed::sign(
        key,
        chain,
        account.next_nonce,
        TxBody::Bond { amount: needed },
    );
    let included = api.submit_tx(&tx).await?;
    tracing::info!(amount = %needed, height = included.height, "bonded stake");
    Ok(Some(needed))
}

/// The executor with its module cache at `module_cache` and scratch space under the data
/// dir, whose directories are made now; the executor itself is built on the first job.
fn executor_config(
    data_dir: &std::path::Path,
    module_cache: PathBuf,
) -> Result<Arc<LazyExecutor>, ProviderError> {
    let config = ExecConfig {
        cache_dir: Some(module_cache),
        work_dir: Some(data_dir.join("work")),
        ..ExecConfig::default()
    };
    for dir in [&config.cache_dir, &config.work_dir].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(ProviderError::io(dir))?;
    }
    Ok(Arc::new(LazyExecutor::new(config)))
}

/// Finds out whether this host runs container jobs (a working OCI runtime, the image
/// store, the calibration, GPUs) and logs why not when it does not.
async fn start_containers(
    policy: &crate::containers::ContainerPolicy,
    data_dir: &std::path::Path,
) -> Result<Containers, ProviderError> {
    let policy = policy.clone();
    let data_dir = data_dir.to_path_buf();
    let containers = tokio::task::spawn_blocking(move || Containers::start(&policy, &data_dir))
        .await
        .map_err(|e| ProviderError::Config(format!("container setup panicked: {e}")))?;
    let support = &containers.support;
    match &support.why_not {
        None => tracing::info!(
            runtime = support.runtime.as_deref().unwrap_or("?"),
            fuel_per_cpu_second = support.fuel_per_cpu_second,
            gpus = support.gpus.len(),
            gpu_note = support.gpu_note.as_deref().unwrap_or(""),
            "container jobs offered"
        ),
        Some(why) => tracing::warn!(why, "container jobs NOT offered; WASM jobs only"),
    }
    Ok(containers)
}

async fn write_discovery(
    shared: &Shared,
    data_dir: &std::path::Path,
) -> Result<PathBuf, ProviderError> {
    let addrs = shared.net.listen_addrs().await?;
    DiscoveryFile {
        account: shared.key.account(),
        peer_id: shared.net.peer_id().to_string(),
        p2p_addrs: addrs.iter().map(ToString::to_string).collect(),
        market: shared.market.authority,
        chain_id: shared.market.chain.0.clone(),
        pid: std::process::id(),
    }
    .write(data_dir)
}

/// State shared by the agent's tasks.
pub(crate) struct Shared {
    pub key: Keypair,
    pub market: MarketEndpoint,
    /// Where the market listens now (re-read from `/v1/info` after a lost connection).
    market_addrs: Mutex<Vec<Multiaddr>>,
    pub api: Option<MarketApi>,
    pub net: NetHandle,
    pub executor: Arc<LazyExecutor>,
    /// Container support: the host that runs them, or why there is none.
    pub containers: Containers,
    gpu_price_multiple: u64,
    pub capacity: Capacity,
    pub slots: Arc<Semaphore>,
    /// The declared memory not reserved by running jobs.
    memory: Arc<MemoryPool>,
    pub min_job: Fuel,
    pub max_job: Fuel,
    pricing: PricingStrategy,
    attributes: BTreeMap<String, String>,
    ask_ttl: Duration,
    ask_interval: Duration,
    shutdown_grace: Duration,
    /// How this provider misbehaves on purpose, if it does (test networks only).
    pub fault: Option<crate::fault::FaultPlan>,
    /// Running orders and the switch that halts each run.
    jobs: Mutex<HashMap<Hash, watch::Sender<Option<Halt>>>>,
    /// Runs halted (their entry in `jobs` removed) that have not ended yet: their slot
    /// and memory are on the way back.
    halted_runs: AtomicUsize,
    /// Job tasks alive, halted or not (shutdown waits for them).
    live_runs: AtomicUsize,
    stats: Mutex<JobStats>,
    price: Mutex<Price>,
    /// What a CU costs here and the floor under every ask and bid ([`crate::cost`]).
    cost: Mutex<CostModel>,
    /// When the agent started (Unix ms), and what the market said it had earned then:
    /// earnings per hour are counted from there.
    started_ms: u64,
    earned_at_start: Mutex<Option<Amount>>,
    /// Receipts, heartbeats and asks need unique nonces (they are not ledger txs); a
    /// counter that starts at the start time in µs stays unique across restarts.
    nonces: AtomicU64,
    stopping: AtomicBool,
    /// Wakes the ask loop to publish at once (e.g. when the market subscribes).
    publish_now: Notify,
    /// Wakes the link loop: the market's connection closed.
    market_lost: Notify,
    /// Wakes a redial: a connection to the market opened.
    market_found: Notify,
}

impl Shared {
    // Each argument is one part that `ProviderAgent::start` built in turn; bundling them
    // into a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &ProviderConfig,
        api: Option<MarketApi>,
        market: MarketEndpoint,
        capacity: Capacity,
        executor: Arc<LazyExecutor>,
        containers: Containers,
        net: NetHandle,
        cost: CostModel,
    ) -> Shared {
        let mut attributes = config.attributes.clone();
        attributes.extend(containers.attributes());
        if let Some(region) = &config.region {
            attributes.insert("region".into(), region.clone());
        }
        let start_price =
            crate::cost::ask_price(config.pricing.price(IndexSignal::default()), cost.floor());
        Shared {
            key: config.key.clone(),
            market_addrs: Mutex::new(market.addrs.clone()),
            market,
            api,
            net,
            executor,
            containers,
            gpu_price_multiple: config.gpu_price_multiple,
            slots: Arc::new(Semaphore::new(capacity.slots as usize)),
            memory: Arc::new(MemoryPool::new(capacity.memory_bytes)),
            capacity,
            min_job: config.min_job,
            max_job: config.max_job,
            pricing: config.pricing,
            attributes,
            ask_ttl: config.ask_ttl,
            ask_interval: config.ask_interval,
            shutdown_grace: config.shutdown_grace,
            fault: config.fault,
            jobs: Mutex::new(HashMap::new()),
            halted_runs: AtomicUsize::new(0),
            live_runs: AtomicUsize::new(0),
            stats: Mutex::new(JobStats::default()),
            price: Mutex::new(start_price),
            cost: Mutex::new(cost),
            started_ms: now_ms(),
            earned_at_start: Mutex::new(None),
            nonces: AtomicU64::new(now_us()),
            stopping: AtomicBool::new(false),
            publish_now: Notify::new(),
            market_lost: Notify::new(),
            market_found: Notify::new(),
        }
    }

    /// How to misbehave on `order_id`, if at all: the fault plan's mode when its draw
    /// strikes this order (always the same answer for the same order). Says so, loudly.
    pub fn fault_for(&self, order_id: &Hash) -> Option<crate::fault::FaultMode> {
        let mode = self.fault?.for_order(&self.key.account(), order_id)?;
        self.stats().misbehaved += 1;
        tracing::warn!(order = %order_id.short(), fault = %mode, "misbehaving on purpose on this job (--faulty)");
        Some(mode)
    }

    /// A fresh nonce for a non-ledger signed message.
    pub fn next_nonce(&self) -> u64 {
        self.nonces.fetch_add(1, Ordering::Relaxed)
    }

    /// The counters, locked. A poisoned lock only means a task panicked mid-update of
    /// plain counters; they are still usable.
    pub fn stats(&self) -> MutexGuard<'_, JobStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<Hash, watch::Sender<Option<Halt>>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn market_addrs(&self) -> MutexGuard<'_, Vec<Multiaddr>> {
        self.market_addrs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cost model: break-even and the floor under every ask and bid.
    pub fn cost(&self) -> MutexGuard<'_, CostModel> {
        self.cost.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The least this agent asks or bids per CU of `class` now: break-even plus the
    /// operator's margin for a CPU CU, times the GPU multiple for a GPU class (as the
    /// asks are priced). Bidding code calls this and never goes below it.
    pub fn floor(&self, class: &ResourceClass) -> Price {
        let cpu = self.cost().floor();
        if class == &ResourceClass::cpu() {
            cpu
        } else {
            Price(cpu.0.saturating_mul(self.gpu_price_multiple))
        }
    }

    /// Records what the market says this provider had earned before this run, so
    /// earnings per hour count this run alone. Best effort: without it the status says
    /// it cannot tell.
    async fn note_earnings_at_start(&self) {
        let Some(api) = &self.api else { return };
        let earned = match api.provider(&self.key.account()).await {
            Ok(view) => view.map(|v| v.earned).unwrap_or(Amount::ZERO),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read earnings at start");
                return;
            }
        };
        *self
            .earned_at_start
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(earned);
    }

    /// The cost figures and the uptime.
    pub fn economics(&self) -> Economics {
        Economics {
            cost: self.cost().status().clone(),
            started_ms: self.started_ms,
            earned_at_start: *self
                .earned_at_start
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        }
    }

    pub(crate) fn current_price(&self) -> Price {
        *self.price.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a finished run of `order_id`, unless the entry belongs to a newer run of
    /// the same order (aborted, then assigned here again) whose `run` channel differs.
    /// A run whose entry is gone was halted: it counts as halted no longer.
    fn finish(&self, order_id: &Hash, run: &watch::Receiver<Option<Halt>>) {
        let mut jobs = self.jobs();
        if jobs
            .get(order_id)
            .is_some_and(|current| current.subscribe().same_channel(run))
        {
            jobs.remove(order_id);
        } else {
            self.halted_runs.fetch_sub(1, Ordering::SeqCst);
        }
        let running = jobs.len() as u32;
        drop(jobs);
        self.stats().running = running;
        self.live_runs.fetch_sub(1, Ordering::SeqCst);
    }

    /// Halts the current run of `order_id`, if any; says whether there was one.
    fn halt_order(&self, order_id: &Hash, halt: Halt) -> bool {
        let mut jobs = self.jobs();
        let Some(switch) = jobs.remove(order_id) else {
            return false;
        };
        self.halt_removed(switch, halt);
        true
    }

    /// Halts `run` of `order_id` if it is still the current run of that order (a stale
    /// run must not halt the newer one that replaced it).
    pub fn halt_run(&self, order_id: &Hash, run: &watch::Receiver<Option<Halt>>, halt: Halt) {
        let mut jobs = self.jobs();
        if jobs
            .get(order_id)
            .is_some_and(|current| current.subscribe().same_channel(run))
            && let Some(switch) = jobs.remove(order_id)
        {
            self.halt_removed(switch, halt);
        }
    }

    /// Halts every run; returns how many there were.
    fn halt_all(&self, halt: Halt) -> usize {
        let mut jobs = self.jobs();
        let switches: Vec<_> = jobs.drain().map(|(_, switch)| switch).collect();
        let count = switches.len();
        for switch in switches {
            self.halt_removed(switch, halt);
        }
        count
    }

    /// Flips the switch of a run whose entry the caller just removed (under the jobs
    /// lock, so that exactly one of this and [`Shared::finish`] removes each entry).
    fn halt_removed(&self, switch: watch::Sender<Option<Halt>>, halt: Halt) {
        self.halted_runs.fetch_add(1, Ordering::SeqCst);
        if matches!(halt, Halt::Aborted | Halt::Disowned) {
            self.stats().aborted += 1;
        }
        // The run task holds its receiver until it has called `finish`, so it hears this.
        let _ = switch.send(Some(halt));
    }

    /// Whether a halted run is giving its slot and memory back right now.
    fn freeing(&self) -> bool {
        self.halted_runs.load(Ordering::SeqCst) > 0
    }

    /// Job tasks alive.
    fn live_runs(&self) -> usize {
        self.live_runs.load(Ordering::SeqCst)
    }

    /// The signed ask at `price`, valid for `ask_ttl` from now.
    fn ask_offer(&self, price: Price) -> Signed<AskOffer> {
        let provider = self.key.account();
        let mut capacity = self.capacity.resources();
        // Only GPUs a container job can be given are offered.
        capacity.gpus = self.containers.gpu_groups();
        let mut features = BTreeSet::from(["wasm".to_string()]);
        features.extend(self.containers.features().into_iter().map(str::to_owned));
        let mut prices = BTreeMap::from([(ResourceClass::cpu(), price)]);
        for group in &capacity.gpus {
            let gpu_price = Price(price.0.saturating_mul(self.gpu_price_multiple));
            prices.insert(ResourceClass::gpu(&group.model), gpu_price);
        }
        let ask = Ask {
            id: AskId::named(&provider, ASK_NAME),
            provider,
            capacity,
            arch: self.capacity.arch.clone(),
            features,
            attributes: self.attributes.clone(),
            prices,
            min_job: self.min_job,
            max_job: self.max_job,
            expires_ms: now_ms() + self.ask_ttl.as_millis() as u64,
        };
        let running = self.jobs().len() as u32;
        Signed::sign(
            &self.key,
            &self.market.chain,
            self.next_nonce(),
            AskOffer { ask, running },
        )
    }
}

/// A started agent. Stop it with [`RunningProvider::shutdown`]. Merely dropping it stops
/// the event, ask and link loops (their stop signal closes) but leaves running jobs to
/// finish on their own and `provider.json` behind.
pub struct RunningProvider {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    discovery: PathBuf,
}

impl RunningProvider {
    /// The provider's account.
    pub fn account(&self) -> AccountId {
        self.shared.key.account()
    }

    /// Its libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.net.peer_id()
    }

    /// The network handle (e.g. to inspect its blob store).
    pub fn net(&self) -> &NetHandle {
        &self.shared.net
    }

    /// What it offers.
    pub fn capacity(&self) -> &Capacity {
        &self.shared.capacity
    }

    /// Where `provider.json` was written.
    pub fn discovery_file(&self) -> &std::path::Path {
        &self.discovery
    }

    /// The work counters so far (no network calls).
    pub fn stats(&self) -> JobStats {
        self.shared.stats().clone()
    }

    /// The cost model's figures and the uptime (no network calls).
    pub fn economics(&self) -> Economics {
        self.shared.economics()
    }

    /// A full snapshot; with an HTTP link it also asks the market for the ledger account
    /// and the market's view of this provider (a failure there is reported in
    /// `market_error`, not as an error).
    pub async fn status(&self) -> ProviderStatus {
        let shared = &self.shared;
        let account = shared.key.account();
        let mut status = ProviderStatus {
            account,
            peer_id: shared.net.peer_id().to_string(),
            market: shared.market.authority,
            chain_id: shared.market.chain.0.clone(),
            capacity: shared.capacity.clone(),
            containers: shared.containers.support.clone(),
            price: shared.current_price(),
            jobs: shared.stats().clone(),
            ledger: None,
            market_view: None,
            market_error: None,
            economics: shared.economics(),
            earnings_per_hour: None,
        };
        let Some(api) = &shared.api else {
            status.market_error = Some("no HTTP link to the market configured".into());
            return status;
        };
        match api.account(&account).await {
            Ok(view) => status.ledger = Some(view),
            Err(e) => status.market_error = Some(e.to_string()),
        }
        match api.provider(&account).await {
            Ok(view) => status.market_view = view,
            Err(e) => status.market_error = Some(e.to_string()),
        }
        status.earnings_per_hour = status
            .market_view
            .as_ref()
            .and_then(|view| status.economics.earnings_per_hour(view.earned, now_ms()));
        status
    }

    /// Stops cleanly: declines new assignments, waits up to the configured grace for
    /// running jobs to deliver, cancels the rest (each tells the market it gave its
    /// order up, so it is reassigned at once), stops gossiping asks, closes the p2p node
    /// and removes `provider.json`.
    pub async fn shutdown(self) -> Result<JobStats, ProviderError> {
        let shared = self.shared;
        shared.stopping.store(true, Ordering::SeqCst);
        let graced = wait_for_runs(&shared, shared.shutdown_grace).await;
        if !graced {
            let cut = shared.halt_all(Halt::ShuttingDown);
            tracing::warn!(
                cut,
                "the shutdown grace is over; cancelling the jobs still running"
            );
            if !wait_for_runs(&shared, WIND_DOWN).await {
                tracing::warn!(
                    left = shared.live_runs(),
                    "some jobs have not wound down; leaving them"
                );
            }
        }
        // The receiver side may be gone if a task ended early; nothing left to stop then.
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "an agent task ended abnormally");
            }
        }
        match shared.net.shutdown().await {
            Ok(()) | Err(NetError::Stopped) => {}
            Err(e) => return Err(e.into()),
        }
        match std::fs::remove_file(&self.discovery) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ProviderError::io(&self.discovery)(e)),
        }
        let stats = shared.stats().clone();
        Ok(stats)
    }
}

/// Waits up to `limit` for every job task to end; says whether they all did.
async fn wait_for_runs(shared: &Shared, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while shared.live_runs() > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Answers requests and watches the market's connection until stopped.
async fn event_loop(
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<NetEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        match event {
            NetEvent::Request(request) => handle_request(&shared, request),
            NetEvent::Gossip(message) => {
                // The agent acts on the market's auction notices alone (it bids or
                // accepts, see `bidding`); it relays nothing: the market reaches every agent.
                if message.topic == Topic::Orders {
                    crate::bidding::on_notice(&shared, &message);
                }
                if let Err(e) = shared.net.report(&message.id, Verdict::Ignore).await {
                    tracing::debug!(error = %e, "could not report a gossip verdict");
                }
            }
            // The market just started listening for asks: offer at once rather than at
            // the next tick, so a fresh provider is matchable within milliseconds.
            NetEvent::Subscribed { peer, topic }
                if peer == shared.market.peer && topic == Topic::Asks =>
            {
                shared.publish_now.notify_one();
            }
            NetEvent::PeerConnected(peer) if peer == shared.market.peer => {
                shared.market_found.notify_one();
            }
            // The link loop redials (re-reading the market's addresses) and re-offers.
            NetEvent::PeerDisconnected(peer) if peer == shared.market.peer => {
                shared.market_lost.notify_one();
            }
            _ => {}
        }
    }
}

/// Decodes and answers one request; never blocks on the job itself.
fn handle_request(shared: &Arc<Shared>, request: InboundRequest) {
    let InboundRequest {
        peer,
        data,
        responder,
    } = request;
    let reply = match agora_core::canonical::decode::<ToProvider>(&data) {
        Ok(ToProvider::Assign(signed)) => match accept(shared, peer, &signed) {
            Err(decline) if decline.is_busy() && shared.freeing() => {
                // Answered from a task of its own: the event loop must not wait.
                let shared = shared.clone();
                tokio::spawn(async move {
                    let accepted = accept_when_freed(&shared, peer, &signed).await;
                    respond(responder, &assign_reply(&shared, peer, accepted));
                });
                return;
            }
            accepted => assign_reply(shared, peer, accepted),
        },
        Ok(ToProvider::Abort(signed)) => {
            match check_abort(&signed, &shared.market.chain, &shared.market.authority) {
                Ok(()) => {
                    let (order_id, reason) = (&signed.body.order_id, &signed.body.reason);
                    if shared.halt_order(order_id, Halt::Aborted) {
                        tracing::info!(order = %order_id.short(), reason, "market aborted a job");
                    }
                    ProviderReply::Accepted
                }
                Err(decline) => ProviderReply::Declined {
                    reason: decline.to_string(),
                },
            }
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "undecodable request");
            if let Err(e) = responder.reject(format!("not a provider request: {e}")) {
                tracing::debug!(error = %e, "could not answer a request");
            }
            return;
        }
    };
    respond(responder, &reply);
}

fn respond(responder: agora_net::Responder, reply: &ProviderReply) {
    if let Err(e) = responder.respond(agora_core::canonical::encode(reply)) {
        tracing::debug!(error = %e, "could not answer a request");
    }
}

/// The answer to an assignment, counted.
fn assign_reply(shared: &Shared, peer: PeerId, accepted: Result<(), Decline>) -> ProviderReply {
    match accepted {
        Ok(()) => ProviderReply::Accepted,
        Err(decline) => {
            shared.stats().declined += 1;
            tracing::info!(%peer, reason = %decline, "declined an assignment");
            ProviderReply::Declined {
                reason: decline.to_string(),
            }
        }
    }
}

/// [`accept`] again every few milliseconds while the only obstacle is a slot or memory
/// that a halted run is giving back, for at most [`FREEING_WAIT`].
async fn accept_when_freed(
    shared: &Arc<Shared>,
    market_peer: PeerId,
    signed: &Signed<Assignment>,
) -> Result<(), Decline> {
    let give_up = Instant::now() + FREEING_WAIT;
    loop {
        tokio::time::sleep(FREEING_POLL).await;
        match accept(shared, market_peer, signed) {
            Err(decline) if decline.is_busy() && shared.freeing() && Instant::now() < give_up => {}
            accepted => return accepted,
        }
    }
}

/// Checks an assignment, takes a slot and starts its job task.
fn accept(
    shared: &Arc<Shared>,
    market_peer: PeerId,
    signed: &Signed<Assignment>,
) -> Result<(), Decline> {
    if shared.stopping.load(Ordering::SeqCst) {
        return Err(Decline::ShuttingDown);
    }
    let me = shared.key.account();
    let gpus = shared.containers.gpu_groups();
    let rules = AssignmentRules {
        chain: &shared.market.chain,
        market: &shared.market.authority,
        me: &me,
        capacity: &shared.capacity,
        max_job: shared.max_job,
        containers: shared.containers.host.is_some(),
        gpus: &gpus,
    };
    let assignment = check_assignment(signed, &rules, now_ms())?.clone();
    let mut jobs = shared.jobs();
    if jobs.contains_key(&assignment.order_id) {
        // A retried Assign for an order already running: taking it again would run it
        // twice; saying yes is the truthful answer.
        return Ok(());
    }
    let reservation = reserve(shared, &assignment.order.body)?;
    let (switch, run) = watch::channel(None);
    jobs.insert(assignment.order_id, switch);
    let running = jobs.len() as u32;
    // Counted before the lock is released, so shutdown never misses a starting run.
    shared.live_runs.fetch_add(1, Ordering::SeqCst);
    drop(jobs);
    {
        let mut stats = shared.stats();
        stats.accepted += 1;
        stats.running = running;
    }
    tracing::info!(order = %assignment.order_id.short(), price = %assignment.price, "accepted an assignment");
    let guard = RunGuard {
        shared: shared.clone(),
        order_id: assignment.order_id,
        run: run.clone(),
    };
    tokio::spawn(crate::job::run(
        guard,
        market_peer,
        assignment,
        reservation,
        run,
    ));
    Ok(())
}

/// Why a run was stopped before it delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// The market sent a signed `Abort` (reassigned or refunded the order).
    Aborted,
    /// The market refused a heartbeat: the order is no longer this provider's.
    Disowned,
    /// The agent is stopping and the shutdown grace is over.
    ShuttingDown,
}

/// Held by a job task for its whole life: when the task ends, however it ends (a
/// panic included), its run is forgotten and stops counting as live.
pub(crate) struct RunGuard {
    pub shared: Arc<Shared>,
    order_id: Hash,
    run: watch::Receiver<Option<Halt>>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.shared.finish(&self.order_id, &self.run);
    }
}

/// What a running job holds: its memory and a slot. Released on drop, which happens
/// when the sandbox returns (memory first, so that whoever gets the slot finds it).
pub(crate) struct Reservation {
    _memory: MemoryHold,
    _slot: OwnedSemaphorePermit,
}

/// Takes a slot and the order's memory, or says which is short.
fn reserve(shared: &Shared, order: &agora_proto::OrderRequest) -> Result<Reservation, Decline> {
    let slot = shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Decline::AtCapacity {
            slots: shared.capacity.slots,
        })?;
    // The market claims `demand.memory_bytes` of the ask; the sandbox may use up to the
    // job's limit. Agora's buyers set both alike; a job that asks for a larger limit
    // than it demands reserves the limit, which is what it may really use.
    let needed = order.demand.memory_bytes.max(order.job.memory_bytes);
    let memory = MemoryPool::take(&shared.memory, needed).map_err(|free| Decline::MemoryBusy {
        needed_mib: needed.div_ceil(1 << 20),
        free_mib: free >> 20,
    })?;
    Ok(Reservation {
        _memory: memory,
        _slot: slot,
    })
}

/// The declared memory, reserved byte for byte: the market subtracts each order's claim
/// from the ask's memory in bytes, so rounding here (to MiB, say) would make the agent
/// decline orders the market rightly thinks fit.
struct MemoryPool {
    free: Mutex<u64>,
}

impl MemoryPool {
    fn new(bytes: u64) -> MemoryPool {
        MemoryPool {
            free: Mutex::new(bytes),
        }
    }

    /// The free bytes, locked. A poisoned lock only means a panic between two plain
    /// integer updates; the figure is still right.
    fn lock(&self) -> MutexGuard<'_, u64> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `bytes`, or returns what is free.
    fn take(pool: &Arc<MemoryPool>, bytes: u64) -> Result<MemoryHold, u64> {
        let mut free = pool.lock();
        *free = free.checked_sub(bytes).ok_or(*free)?;
        Ok(MemoryHold {
            pool: pool.clone(),
            bytes,
        })
    }
}

/// Memory reserved by one job; given back on drop.
struct MemoryHold {
    pool: Arc<MemoryPool>,
    bytes: u64,
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        let mut free = self.pool.lock();
        *free = free.saturating_add(self.bytes);
    }
}

/// Re-prices and re-gossips the ask until stopped.
async fn ask_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(shared.ask_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
            _ = shared.publish_now.notified() => {}
        }
        if shared.stopping.load(Ordering::SeqCst) {
            continue;
        }
        let price = reprice(&shared).await;
        let offer = shared.ask_offer(price);
        match shared
            .net
            .publish(Topic::Asks, agora_core::canonical::encode(&offer))
            .await
        {
            Ok(_) => tracing::debug!(%price, "ask published"),
            Err(NetError::NoPeers(_)) => tracing::debug!("no market subscribed yet; ask held back"),
            Err(e) => tracing::warn!(error = %e, "could not publish the ask"),
        }
    }
}

/// Keeps the market connected until stopped: as soon as the connection drops (and,
/// in case that event was lost, at every ask interval) it redials until the market is
/// back, then has the ask re-posted at once.
async fn link_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = shared.market_lost.notified() => {}
            _ = tokio::time::sleep(shared.ask_interval) => {}
        }
        if shared.stopping.load(Ordering::SeqCst) || market_connected(&shared).await {
            continue;
        }
        if !redial(&shared, &mut stop).await {
            return;
        }
        shared.publish_now.notify_one();
    }
}

/// Dials the market with capped exponential backoff ([`REDIAL_FIRST`] doubling up to
/// [`REDIAL_MAX`]) until it is connected; `false` when stopped first.
async fn redial(shared: &Shared, stop: &mut watch::Receiver<bool>) -> bool {
    tracing::warn!("lost the connection to the market; redialling");
    let lost = Instant::now();
    let mut wait = REDIAL_FIRST;
    loop {
        dial_market(shared).await;
        tokio::select! {
            _ = stop.changed() => return false,
            _ = shared.market_found.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        if market_connected(shared).await {
            let after_ms = lost.elapsed().as_millis() as u64;
            tracing::info!(after_ms, "reconnected to the market");
            return true;
        }
        wait = (wait * 2).min(REDIAL_MAX);
    }
}

/// Whether the market peer is connected. A p2p node that cannot answer is stopping,
/// which redialling would not help: that counts as connected.
async fn market_connected(shared: &Shared) -> bool {
    match shared.net.peers().await {
        Ok(peers) => peers.contains(&shared.market.peer),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list peers");
            true
        }
    }
}

/// Starts dials to every address of the market. With an HTTP link they are re-read
/// first: a restarted market may listen on new ports (if it cannot be asked, the last
/// known addresses are tried).
async fn dial_market(shared: &Shared) {
    if let Some(api) = &shared.api
        && let Ok(Ok(info)) = tokio::time::timeout(REDIAL_INFO_TIMEOUT, api.info()).await
        && let Ok(fresh) = MarketEndpoint::from_info(&info)
        && fresh.peer == shared.market.peer
        && fresh.authority == shared.market.authority
    {
        *shared.market_addrs() = fresh.addrs;
    }
    let addrs = shared.market_addrs().clone();
    for addr in addrs {
        if let Err(e) = shared.net.dial(addr.clone()).await {
            tracing::debug!(%addr, error = %e, "dialling the market failed");
        }
    }
}

/// The price for the next ask: fixed, or from the index when following it, and never
/// below the cost model's floor (re-read from the power sensor first). An index that
/// cannot be fetched keeps the last strategy price.
async fn reprice(shared: &Shared) -> Price {
    shared.cost().refresh(now_ms());
    let floor = shared.floor(&ResourceClass::cpu());
    let strategy = match (shared.pricing.follows_index(), &shared.api) {
        (true, Some(api)) => match api.index().await {
            Ok(body) => Some(
                shared
                    .pricing
                    .price(IndexSignal::from_index_json(&body, &ResourceClass::cpu())),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "index unavailable; keeping the last price");
                None
            }
        },
        _ => Some(shared.pricing.price(IndexSignal::default())),
    };
    let mut price = shared.price.lock().unwrap_or_else(|e| e.into_inner());
    *price = crate::cost::ask_price(strategy.unwrap_or(*price), floor);
    *price
}

/// Unix time in ms.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(addrs: Vec<String>, peer: String) -> MarketInfo {
        MarketInfo {
            chain_id: "c".into(),
            market: Keypair::from_seed("m").account(),
            treasury: Keypair::from_seed("t").account(),
            fee_bps: 0,
            allow_faulty_providers: false,
            height: 0,
            p2p_addrs: addrs,
            peer_id: peer,
            version: "0".into(),
            max_blob_bytes: None,
            settlement: None,
        }
    }

    fn peer() -> PeerId {
        agora_net::peer_id_of(&Keypair::from_seed("m").account()).unwrap()
    }

    #[test]
    fn market_addresses_gain_the_peer_id() {
        let bare = info(vec!["/ip4/127.0.0.1/tcp/4001".into()], peer().to_string());
        let endpoint = MarketEndpoint::from_info(&bare).unwrap();
        assert_eq!(endpoint.peer, peer());
        assert_eq!(
            endpoint.addrs[0].to_string(),
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", peer())
        );
        let named = info(
            vec![format!("/ip4/127.0.0.1/tcp/4001/p2p/{}", peer())],
            peer().to_string(),
        );
        assert_eq!(
            MarketEndpoint::from_info(&named).unwrap().addrs,
            endpoint.addrs
        );
        assert_eq!(endpoint.chain, ChainId::new("c"));
    }

    #[test]
    fn unusable_market_info_is_explained() {
        let none = info(vec![], peer().to_string());
        let err = MarketEndpoint::from_info(&none).unwrap_err().to_string();
        assert!(err.contains("no p2p address"), "{err}");
        let garbled = info(vec!["not an address".into()], peer().to_string());
        let err = MarketEndpoint::from_info(&garbled).unwrap_err().to_string();
        assert!(err.contains("does not parse"), "{err}");
        let bad_peer = info(vec!["/ip4/127.0.0.1/tcp/1".into()], "nobody".into());
        assert!(MarketEndpoint::from_info(&bad_peer).is_err());
    }
}
