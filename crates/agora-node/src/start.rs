//! Starting, restarting and stopping a market node.
//!
//! A restart on the same data directory reopens the ledger and the order records and
//! reconciles every unfinished order against the ledger's escrow, which is the source of
//! truth for money: an escrow that never landed drops its record; a closed escrow
//! finishes its order as settled or refunded (never paying again); an open one is
//! resumed: if a provider had taken it, that provider may still deliver it to the new
//! process (its heartbeats keep the claim alive through the resume grace); otherwise it
//! is matched again as providers reconnect, or refunded when none can take it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use agora_core::{AccountId, Hash, Keypair};
use agora_evm::{EvmConfig, EvmSettlement};
use agora_ledger::{DevKeys, Escrow, EscrowStatus, Genesis, Ledger, Params};
use agora_market::Market;
use agora_net::{BlobStore, NetConfig, Network};
use agora_proto::OrderState;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle as TaskHandle;

use crate::books::{Books, EvmBooks};
use crate::chain::{Chain, Producer};
use crate::clock::now_ms;
use crate::config::{ChainSetup, DEV_CHAIN_ID, DEV_USER_FUNDS, MarketConfig, SettlementSetup};
use crate::error::NodeError;
use crate::lifecycle;
use crate::metrics::Metrics;
use crate::node::{Book, Identity, OrderEntry, Settings, Shared};
use crate::records::{OrderRecord, RecordStore};
use crate::server::ConnLimits;

/// The discovery file written into the data directory once the node listens.
pub const NODE_FILE: &str = "node.json";
/// How often the watchdog looks for silent providers, deadlines and waiting orders.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(200);

/// The content of `DATA_DIR/node.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// The HTTP API base URL.
    pub http_url: String,
    /// libp2p addresses with `/p2p/PEER`.
    pub p2p_addrs: Vec<String>,
    /// The node's peer id.
    pub peer_id: String,
    /// The chain id.
    pub chain_id: String,
    /// The market authority's account.
    pub market: AccountId,
    /// The node's process id.
    pub pid: u32,
}

/// Entry point.
pub struct MarketNode;

/// A running market node.
pub struct RunningMarket {
    shared: Arc<Shared>,
    http_addr: SocketAddr,
    data_dir: PathBuf,
    stop_http: Option<oneshot::Sender<()>>,
    tasks: Vec<TaskHandle<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl MarketNode {
    /// Starts (or restarts) a market node as configured and returns once it listens on
    /// both HTTP and p2p and has written `node.json`.
    pub async fn start(config: MarketConfig) -> Result<RunningMarket, NodeError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::Io {
            action: "create",
            path: config.data_dir.clone(),
            source,
        })?;
        let (books, params, market_key, producer_key) = open_books(&config).await?;
        let chain_id = books.chain_id();
        let mut threads = Vec::new();
        let (chain, producer_thread) = Chain::start(
            books,
            Producer {
                producer: producer_key,
                market: market_key.clone(),
                block_interval: config.block_interval,
            },
        )
        .map_err(|source| NodeError::Io {
            action: "start the block producer for",
            path: config.data_dir.clone(),
            source,
        })?;
        threads.push(producer_thread);
        let (records, stored, records_thread) = RecordStore::open(&config.data_dir)?;
        threads.push(records_thread);
        let blob_dir = config.data_dir.join("blobs");
        let blobs = BlobStore::open(&blob_dir)?;
        let mut net_config = NetConfig::new(market_key.clone(), &blob_dir);
        net_config.listen = vec![config.p2p_listen.clone()];
        net_config.max_blob_bytes = config.max_blob_bytes;
        net_config.request_timeout = Duration::from_secs(10);
        let (net, net_events) = Network::start(net_config).await?;
        let peer_id = net.peer_id();
        let p2p_addrs = net
            .listen_addrs()
            .await?
            .into_iter()
            .map(|a| a.with_p2p(peer_id).unwrap_or_else(|a| a).to_string())
            .collect();
        let (events, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            identity: Identity {
                chain_id,
                market_key,
                treasury: params.treasury,
                fee_bps: params.fee_bps,
                allow_faulty_providers: params.allow_faulty_providers,
                p2p_addrs,
                peer_id: peer_id.to_string(),
            },
            settings: Settings {
                heartbeat_ms: config.heartbeat_ms(),
                max_attempts: config.max_attempts.max(1),
                max_blob_bytes: config.max_blob_bytes,
                max_json_bytes: config.max_json_bytes,
                resume_grace_ms: config.resume_grace.as_millis() as u64,
                max_deadline_ms: config.max_deadline_ms(),
                fault_suspension: config.suspension_rule(),
            },
            chain,
            records,
            blobs,
            net,
            book: Mutex::new(Book {
                market: Market::default(),
                orders: HashMap::new(),
                sequence: Vec::new(),
                active: HashSet::new(),
                providers: HashMap::new(),
                peers: 0,
            }),
            events,
            metrics: Metrics::new(),
            // Monotone across restarts: providers may treat nonces as a replay guard.
            message_nonce: AtomicU64::new(now_ms().saturating_mul(1_000)),
            grants: Default::default(),
        });
        resume(&shared, stored).await?;
        let listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .map_err(|source| NodeError::Http {
                addr: config.http_listen,
                source,
            })?;
        let http_addr = listener.local_addr().map_err(|source| NodeError::Http {
            addr: config.http_listen,
            source,
        })?;
        let (stop_http, stopped) = oneshot::channel::<()>();
        // Every refusal leaves as JSON, including the HTTP layer's own (see `json_errors`).
        let app = crate::http::router(shared.clone(), config.max_json_bytes).layer(
            axum::middleware::from_fn_with_state(config.max_json_bytes, crate::error::json_errors),
        );
        let limits = ConnLimits {
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            header_timeout: config.header_timeout,
        };
        let server = tokio::spawn(crate::server::serve(listener, app, limits, async move {
            let _ = stopped.await;
        }));
        let p2p = tokio::spawn(crate::p2p::event_loop(shared.clone(), net_events));
        let watchdog = tokio::spawn(watchdog(shared.clone()));
        let running = RunningMarket {
            shared,
            http_addr,
            data_dir: config.data_dir.clone(),
            stop_http: Some(stop_http),
            tasks: vec![server, p2p, watchdog],
            threads,
        };
        running.write_node_file()?;
        tracing::info!(
            http = %running.http_url(),
            p2p = ?running.p2p_addrs(),
            chain = %running.shared.identity.chain_id.0,
            "market node listening"
        );
        Ok(running)
    }
}

impl RunningMarket {
    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The HTTP API base URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The libp2p addresses, each with `/p2p/PEER`.
    pub fn p2p_addrs(&self) -> Vec<String> {
        self.shared.identity.p2p_addrs.clone()
    }

    /// Where this market's money is kept.
    pub fn settlement(&self) -> &agora_proto::api::SettlementInfo {
        self.shared.chain.settlement()
    }

    /// The market authority's account (also the node's p2p identity).
    pub fn market_account(&self) -> AccountId {
        self.shared.identity.market_key.account()
    }

    /// The chain id.
    pub fn chain_id(&self) -> String {
        self.shared.identity.chain_id.0.clone()
    }

    /// The ledger height now.
    pub fn height(&self) -> u64 {
        self.shared.chain.progress().height
    }

    fn write_node_file(&self) -> Result<(), NodeError> {
        let file = NodeFile {
            http_url: self.http_url(),
            p2p_addrs: self.p2p_addrs(),
            peer_id: self.shared.identity.peer_id.clone(),
            chain_id: self.chain_id(),
            market: self.market_account(),
            pid: std::process::id(),
        };
        let path = self.data_dir.join(NODE_FILE);
        let tmp = self.data_dir.join(format!("{NODE_FILE}.tmp"));
        let io = |action, source| NodeError::Io {
            action,
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&file)
            .map_err(|e| io("encode", std::io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(|e| io("write", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io("rename into", e))
    }

    /// Stops serving, closes the network, lets the block producer and the records
    /// writer finish what is queued, and removes `node.json`.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_http.take() {
            let _ = stop.send(());
        }
        // The event loop and the watchdog stop before the network closes, so closing
        // connections is not mistaken for providers leaving (which would fail and
        // refund their orders): a clean stop leaves orders as a crash would.
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let _ = self.shared.net.shutdown().await;
        self.shared.chain.stop();
        self.shared.records.stop();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        let _ = std::fs::remove_file(self.data_dir.join(NODE_FILE));
        tracing::info!("market node stopped");
    }
}

/// Opens where the market's money is kept, with the chain's parameters and the market
/// and producer keys: the embedded ledger (default), or the EVM contract.
async fn open_books(config: &MarketConfig) -> Result<(Books, Params, Keypair, Keypair), NodeError> {
    let SettlementSetup::Evm { rpc_url, contract } = &config.settlement else {
        let (ledger, market, producer) = open_ledger(config)?;
        let params = ledger.genesis().params.clone();
        return Ok((Books::Embedded(ledger), params, market, producer));
    };
    // On the EVM backend the genesis gives the chain id and the rules only: balances,
    // escrows and stakes are on the contract, and nothing is stored locally.
    let (genesis, market, producer, local) = match &config.chain {
        ChainSetup::Dev { users } => {
            let keys = DevKeys::new(*users);
            let (mut genesis, _) = Genesis::dev(DEV_CHAIN_ID, 0, *users, DEV_USER_FUNDS);
            genesis.params.allow_faulty_providers = true;
            // Even on a dev chain the node sends nothing for the participants: buyers open
            // their escrows and providers bond from their own keys (docs/settlement-evm.md).
            (genesis, keys.market, keys.producer, Vec::<Keypair>::new())
        }
        ChainSetup::Genesis { genesis, key } => (
            (**genesis).clone(),
            (**key).clone(),
            (**key).clone(),
            Vec::new(),
        ),
    };
    if genesis.params.market_authority != market.account() {
        return Err(NodeError::Chain(format!(
            "chain {:?} names market authority {}, but this node's key is {}",
            genesis.chain_id.0,
            genesis.params.market_authority,
            market.account()
        )));
    }
    let params = genesis.params.clone();
    let evm_config = EvmConfig::new(rpc_url.clone(), *contract, genesis.chain_id, params.clone());
    let authority = market.clone();
    let rpc = rpc_url.clone();
    // The EVM client runs its own runtime: connect (and later drop) it off this one.
    let settlement = tokio::task::spawn_blocking(move || {
        EvmSettlement::connect(evm_config, &authority).map(|s| EvmBooks::new(s, rpc, &local))
    })
    .await
    .map_err(|e| NodeError::Chain(format!("connecting to the EVM chain panicked: {e}")))?
    .map_err(|e| {
        NodeError::Chain(format!(
            "cannot settle on contract {contract} at {rpc_url}: {e}; check --rpc and --contracts, and that the contract was deployed for this market's key and rules"
        ))
    })?;
    Ok((Books::Evm(settlement), params, market, producer))
}

/// Opens the ledger in the data directory (creating it on first start) and returns it
/// with the market and producer keys, checked against its genesis.
fn open_ledger(config: &MarketConfig) -> Result<(Ledger, Keypair, Keypair), NodeError> {
    let exists = config
        .data_dir
        .join(agora_ledger::store::LEDGER_FILE)
        .exists();
    let (ledger, market, producer) = match &config.chain {
        ChainSetup::Dev { users } => {
            let keys = DevKeys::new(*users);
            let ledger = if exists {
                Ledger::open(&config.data_dir)?
            } else {
                let (mut genesis, _) = Genesis::dev(DEV_CHAIN_ID, now_ms(), *users, DEV_USER_FUNDS);
                // A dev chain is a test network: faulty providers may join it.
                genesis.params.allow_faulty_providers = true;
                // The market authority's balance is the verification fund that pays for
                // audits and tie-breaking runs (see `verification`).
                genesis.allocations.push((
                    keys.market.account(),
                    crate::verification::DEV_VERIFICATION_FUND,
                ));
                Ledger::create(&config.data_dir, genesis)?
            };
            (ledger, keys.market, keys.producer)
        }
        ChainSetup::Genesis { genesis, key } => {
            let ledger = if exists {
                let ledger = Ledger::open(&config.data_dir)?;
                if ledger.genesis().hash() != genesis.hash() {
                    return Err(NodeError::Chain(format!(
                        "{} holds chain {:?} with another genesis than the one given; use the data directory of that chain or a fresh one",
                        config.data_dir.display(),
                        ledger.genesis().chain_id.0
                    )));
                }
                ledger
            } else {
                Ledger::create(&config.data_dir, (**genesis).clone())?
            };
            (ledger, (**key).clone(), (**key).clone())
        }
    };
    let params = &ledger.genesis().params;
    if params.market_authority != market.account() || params.block_producer != producer.account() {
        return Err(NodeError::Chain(format!(
            "chain {:?} names market authority {} and block producer {}, but this node's key is {}; start it with the key of both (or --dev for a dev chain)",
            ledger.genesis().chain_id.0,
            params.market_authority,
            params.block_producer,
            market.account()
        )));
    }
    Ok((ledger, market, producer))
}

/// Reconciles stored records against the ledger and loads them into the book.
async fn resume(shared: &Arc<Shared>, stored: Vec<OrderRecord>) -> Result<(), NodeError> {
    let ids: Vec<(Hash, AccountId)> = stored.iter().map(|r| (r.id(), r.order.signer)).collect();
    let read = shared
        .chain
        .read(move |books| {
            let mut escrows: HashMap<Hash, Escrow> = HashMap::new();
            for (id, buyer) in ids {
                books.note_order_buyer(id, buyer);
                if let Some(escrow) = books.escrow(&id)? {
                    escrows.insert(id, escrow);
                }
            }
            Ok::<_, String>((escrows, books.height()))
        })
        .await
        .map_err(|_| NodeError::ProducerStopped)?;
    // A record whose escrow cannot be read now is not dropped as if it never landed.
    let (escrows, height) = read.map_err(|e| {
        NodeError::Chain(format!(
            "cannot read the escrows of stored orders to resume them: {e}"
        ))
    })?;
    let (dropped, resumed) = load_into_book(shared, stored, &escrows, height);
    for id in dropped {
        let _ = shared.records.delete(id).await;
    }
    if resumed > 0 {
        tracing::info!(resumed, "resuming unfinished orders after restart");
    }
    Ok(())
}

/// Puts reconciled records into the book; returns the ids whose escrow never landed and
/// how many orders resume.
fn load_into_book(
    shared: &Arc<Shared>,
    stored: Vec<OrderRecord>,
    escrows: &HashMap<Hash, Escrow>,
    height: u64,
) -> (Vec<Hash>, usize) {
    let mut records = stored;
    records.sort_by_key(|r| r.created_ms);
    let now = now_ms();
    let mut dropped = Vec::new();
    let mut book = shared.book();
    for rec in records {
        let id = rec.id();
        let escrow = escrows.get(&id).copied();
        if rec.state.is_final() {
            book.sequence.push(id);
            book.orders.insert(id, OrderEntry::new(rec));
            continue;
        }
        let Some(escrow) = escrow else {
            // The escrow never landed: the order was never accepted.
            dropped.push(id);
            continue;
        };
        let mut entry = OrderEntry::new(rec);
        if entry.rec.escrow_height == 0 {
            entry.rec.escrow_height = height;
        }
        book.sequence.push(id);
        match escrow.status {
            EscrowStatus::Open => {
                entry.resume_until_ms = now + shared.settings.resume_grace_ms;
                let was_taken = matches!(
                    entry.rec.state,
                    OrderState::Matched | OrderState::Running | OrderState::Verifying
                );
                // A result held for challenges stays held: the watchdog settles it when
                // its window closes. (A challenge whose ruling was in flight is dropped; its
                // bond escrow is the challenger's to refund at its own deadline.)
                let held = entry.rec.verification.challenge_until_ms.is_some();
                if held {
                    entry.rec.verification.status = crate::verification::Status::Pending;
                    shared.enter(
                        &mut entry,
                        OrderState::Verifying,
                        "resumed after a market restart; the result is still held for challenges",
                    );
                    book.active.insert(id);
                    book.orders.insert(id, entry);
                    continue;
                }
                let detail = match entry.rec.provider.filter(|_| was_taken) {
                    // Its provider may still be running it and deliver to the new process.
                    Some(provider) => {
                        entry.resumed_from = Some(provider);
                        format!("resumed after a market restart; waiting for {provider} to deliver")
                    }
                    None => {
                        entry.rec.provider = None;
                        entry.rec.price = None;
                        "resumed after a market restart; assigning again".to_string()
                    }
                };
                shared.enter(&mut entry, OrderState::Escrowed, detail);
                book.active.insert(id);
                book.orders.insert(id, entry);
            }
            _ => {
                book.active.insert(id);
                book.orders.insert(id, entry);
                if escrow.released.is_zero() {
                    let reason = "refunded on the ledger before a market restart".to_string();
                    let e = book.orders.get_mut(&id);
                    if let Some(e) = e {
                        e.rec.refunded = escrow.locked;
                        e.rec.refund_reason = Some(reason.clone());
                        e.rec.finished_ms = Some(now);
                        shared.enter(e, OrderState::Refunded, reason);
                    }
                    book.active.remove(&id);
                } else {
                    lifecycle::finish_settled_without_result(
                        shared,
                        &mut book,
                        id,
                        escrow.released,
                        escrow.locked,
                    );
                }
            }
        }
    }
    (dropped, book.active.len())
}

/// Runs [`lifecycle::watchdog_pass`] periodically.
async fn watchdog(shared: Arc<Shared>) {
    let mut ticker = tokio::time::interval(WATCHDOG_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        lifecycle::watchdog_pass(&shared);
    }
}
