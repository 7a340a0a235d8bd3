//! The node's shared state: the matching engine, the orders it is carrying, the providers
//! it knows, and the handles to the ledger, the records, the blobs and the network.
//!
//! Everything mutable sits behind one short-held mutex ([`Shared::book`]) that is never
//! held across an `.await`: a state change is a few map updates, and all I/O (blocks,
//! record writes, RPC, blob fetches) happens outside it, in tasks that re-check the order
//! when they come back (the order may have moved on meanwhile).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use agora_core::{AccountId, Amount, ChainId, Hash, Keypair};
use agora_market::{Ask, AskId, AttributeConstraint, Market, MatchId, Order, OrderId};
use agora_net::{BlobStore, NetHandle};
use agora_proto::api::{OrderView, ProviderView};
use agora_proto::{OrderEvent, OrderState};
use agora_verify::{FaultRecord, ProviderHistory, SuspensionRule};
use tokio::sync::broadcast;

use crate::chain::Chain;
use crate::metrics::Metrics;
use crate::records::{OrderRecord, RecordStore};

/// The ask attribute the node adds to its own copy of every ask, naming the provider,
/// so a reassignment can exclude providers that already failed an order.
pub const PROVIDER_ATTR: &str = "agora.provider";

/// Lifecycle timing and limits, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Heartbeat interval asked of providers, ms.
    pub heartbeat_ms: u64,
    /// Attempts per order before refunding.
    pub max_attempts: u32,
    /// Largest blob accepted or fetched.
    pub max_blob_bytes: u64,
    /// Largest JSON request body.
    pub max_json_bytes: usize,
    /// How long resumed orders wait for providers after a restart, ms.
    pub resume_grace_ms: u64,
    /// The furthest order deadline accepted, ms from the submission.
    pub max_deadline_ms: u64,
    /// How long proven faults keep a provider out of matching.
    pub fault_suspension: SuspensionRule,
}

impl Settings {
    /// Silence after which an attempt fails: three heartbeats.
    pub fn silence_limit_ms(&self) -> u64 {
        3 * self.heartbeat_ms
    }
}

/// One order the node carries.
pub struct OrderEntry {
    /// What is persisted.
    pub rec: OrderRecord,
    /// The live match in the engine, while assigned.
    pub match_id: Option<MatchId>,
    /// Whether the assigned provider accepted the current attempt.
    pub accepted: bool,
    /// Last sign of life from the assigned provider (assignment, acceptance, heartbeat).
    pub last_beat_ms: u64,
    /// A settlement or refund is in flight; nothing else may act on the order.
    pub busy: bool,
    /// A refund that could not be committed yet, with its reason; retried by the watchdog.
    pub pending_refund: Option<String>,
    /// When this process accepted the order (for latency).
    pub submitted: Instant,
    /// Until when an unmatched order waits for providers instead of being refunded
    /// (after a restart); 0 means refund at once.
    pub resume_until_ms: u64,
    /// The provider that held the order before a market restart: until
    /// `resume_until_ms` (extended by its heartbeats) its delivery is still taken.
    pub resumed_from: Option<AccountId>,
    /// Only providers suspended for a proven fault can run the order, so matching offers
    /// it to them after all (their runs are never trusted meanwhile; see
    /// [`Book::order_to_match`]).
    pub allow_suspended: bool,
    /// The order's auction, when its terms ask for one (see [`crate::auctions`]).
    pub auction: Option<crate::auctions::AuctionEntry>,
}

impl OrderEntry {
    /// A fresh entry around `rec`.
    pub fn new(rec: OrderRecord) -> OrderEntry {
        OrderEntry {
            rec,
            match_id: None,
            accepted: false,
            last_beat_ms: 0,
            busy: false,
            pending_refund: None,
            submitted: Instant::now(),
            resume_until_ms: 0,
            resumed_from: None,
            allow_suspended: false,
            auction: None,
        }
    }

    /// Whether `provider` holds the order now: assigned in this process, or before a
    /// restart and not yet given up on.
    pub fn assigned_to(&self, provider: AccountId) -> bool {
        self.rec.provider == Some(provider)
            && (self.match_id.is_some() || self.resumed_from == Some(provider))
    }

    /// The order's id.
    pub fn id(&self) -> Hash {
        self.rec.id()
    }

    /// The API view of the order.
    pub fn view(&self) -> OrderView {
        let rec = &self.rec;
        let body = &rec.order.body;
        OrderView {
            order_id: rec.id(),
            buyer: rec.order.signer,
            label: body.label.clone(),
            task: body.task.clone(),
            state: rec.state,
            max_price: body.max_price,
            escrow: body.escrow,
            provider: rec.provider,
            price: rec.price,
            cost: rec.cost,
            refunded: rec.refunded,
            attempts: rec.attempts,
            created_ms: rec.created_ms,
            latency_ms: rec.finished_ms.map(|f| f.saturating_sub(rec.created_ms)),
            refund_reason: rec.refund_reason.clone(),
            events: rec.events.clone(),
            result: rec.result.clone(),
            verification: rec.verification.view(),
        }
    }

    /// The engine order for the next attempt: the buyer's terms, one replica, the
    /// workload's feature (`wasm` or `oci`, and `gpu` for a GPU demand), and none of the
    /// providers that already failed it.
    pub fn market_order(&self) -> Order {
        let body = &self.rec.order.body;
        let mut requirements = body.requirements.clone();
        requirements
            .features
            .insert(body.job.workload.feature().to_string());
        if body.demand.gpu.is_some() {
            requirements.features.insert("gpu".to_string());
        }
        requirements.replicas = 1;
        // The market refuses providers whose stake would not deter cheating on this
        // order under its policy (S ≥ C/p − R).
        requirements.min_stake = requirements
            .min_stake
            .max(crate::verification::required_stake(body));
        for provider in &self.rec.tried {
            requirements.attributes.push(AttributeConstraint::not(
                PROVIDER_ATTR,
                &provider.to_string(),
            ));
        }
        Order {
            id: OrderId(self.id()),
            buyer: self.rec.order.signer,
            demand: body.demand.clone(),
            requirements,
            fuel: body.fuel_budget,
            cap: body.max_price,
            deadline_ms: body.deadline_ms,
        }
    }
}

/// A provider as the node sees it.
#[derive(Default)]
pub struct ProviderEntry {
    /// Its asks as it signed them.
    pub asks: BTreeMap<AskId, Ask>,
    /// Jobs assigned to it now.
    pub running: u32,
    /// Jobs it completed and was paid for.
    pub completed: u64,
    /// Attempts it failed.
    pub failed: u64,
    /// What it was paid (gross, before fees).
    pub earned: Amount,
    /// Unix ms of its last ask or heartbeat.
    pub last_seen_ms: u64,
    /// Whether a connection to it is open.
    pub connected: bool,
    /// Unix ms the node last read its stake from the ledger.
    pub stake_read_ms: u64,
    /// Its stake as last read.
    pub stake: Amount,
    /// What adaptive verification knows of it (results in a row accepted without fault).
    pub history: ProviderHistory,
    /// Times it was slashed for a wrong result.
    pub slashed: u64,
    /// Its proven faults: what suspends it from matching.
    pub faults: FaultRecord,
}

/// Everything mutable.
pub struct Book {
    /// The matching engine.
    pub market: Market,
    /// Every order, final ones included.
    pub orders: HashMap<Hash, OrderEntry>,
    /// Order ids in submission order (listings go newest first).
    pub sequence: Vec<Hash>,
    /// Orders not yet final: what the watchdog scans.
    pub active: HashSet<Hash>,
    /// Providers by account.
    pub providers: HashMap<AccountId, ProviderEntry>,
    /// Connected peers.
    pub peers: usize,
}

impl Book {
    /// Providers a proven fault keeps out of matching at `now_ms`, in account order.
    pub fn suspended(&self, rule: &SuspensionRule, now_ms: u64) -> Vec<AccountId> {
        let mut out: Vec<AccountId> = self
            .providers
            .iter()
            .filter(|(_, p)| rule.is_suspended(&p.faults, now_ms))
            .map(|(account, _)| *account)
            .collect();
        out.sort();
        out
    }

    /// The engine order for order `id`'s next attempt: [`OrderEntry::market_order`] without
    /// the providers suspended for a proven fault — unless only they can run it
    /// (`allow_suspended`). The flag says whether anyone was left out.
    pub fn order_to_match(
        &self,
        id: &Hash,
        rule: &SuspensionRule,
        now_ms: u64,
    ) -> Option<(Order, bool)> {
        let entry = self.orders.get(id)?;
        let mut order = entry.market_order();
        if entry.allow_suspended {
            return Some((order, false));
        }
        let suspended = self.suspended(rule, now_ms);
        for provider in &suspended {
            order.requirements.attributes.push(AttributeConstraint::not(
                PROVIDER_ATTR,
                &provider.to_string(),
            ));
        }
        Some((order, !suspended.is_empty()))
    }
}

/// An order event with its position in the order's history, for SSE followers.
#[derive(Clone, Debug)]
pub struct Published {
    /// The order.
    pub order_id: Hash,
    /// Index of the event in the order's history.
    pub seq: usize,
    /// The event.
    pub event: OrderEvent,
}

/// Who this market is.
pub struct Identity {
    /// The chain.
    pub chain_id: ChainId,
    /// The market authority key (also the p2p identity).
    pub market_key: Keypair,
    /// The treasury.
    pub treasury: AccountId,
    /// Market fee, basis points.
    pub fee_bps: u16,
    /// Whether its genesis lets providers run with a fault mode (test networks only).
    pub allow_faulty_providers: bool,
    /// The node's libp2p addresses with `/p2p/PEER`.
    pub p2p_addrs: Vec<String>,
    /// Its peer id.
    pub peer_id: String,
}

/// State and handles shared by the HTTP API, the p2p loop and the watchdog.
pub struct Shared {
    /// Who this market is.
    pub identity: Identity,
    /// Timing and limits.
    pub settings: Settings,
    /// The block producer.
    pub chain: Chain,
    /// Order records.
    pub records: RecordStore,
    /// Blobs (modules, inputs, outputs, stdio).
    pub blobs: BlobStore,
    /// The p2p node.
    pub net: NetHandle,
    /// Everything mutable.
    pub book: Mutex<Book>,
    /// Order events for followers.
    pub events: broadcast::Sender<Published>,
    /// Metrics.
    pub metrics: Metrics,
    /// Nonces for the market's signed p2p messages (assignments, aborts).
    pub message_nonce: AtomicU64,
    /// Key grants of private orders (docs/privacy.md).
    pub grants: crate::private::Grants,
}

impl Shared {
    /// Locks the book. A panic while it was held leaves it usable: every change to it is
    /// a complete step, so the data is consistent at any lock boundary.
    pub fn book(&self) -> MutexGuard<'_, Book> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next nonce for a market-signed p2p message.
    pub fn next_message_nonce(&self) -> u64 {
        self.message_nonce.fetch_add(1, Ordering::Relaxed)
    }

    /// Moves `entry` into `state` (recording the event, counting it, telling followers)
    /// and queues the record to be saved.
    pub fn enter(&self, entry: &mut OrderEntry, state: OrderState, detail: impl Into<String>) {
        let event = OrderEvent {
            order_id: entry.id(),
            state,
            at_ms: crate::clock::now_ms(),
            provider: entry.rec.provider,
            detail: detail.into(),
        };
        entry.rec.state = state;
        entry.rec.events.push(event.clone());
        self.metrics.entered(state.name());
        let _ = self.events.send(Published {
            order_id: event.order_id,
            seq: entry.rec.events.len() - 1,
            event,
        });
        self.records.save(&entry.rec);
    }

    /// The API view of a provider.
    pub fn provider_view(
        &self,
        book: &Book,
        account: &AccountId,
        now_ms: u64,
    ) -> Option<ProviderView> {
        let entry = book.providers.get(account)?;
        let reputation = book.market.reputation(account, now_ms);
        let peer = agora_net::peer_id_of(account)
            .ok()
            .filter(|_| entry.connected)
            .map(|p| p.to_string());
        Some(ProviderView {
            account: *account,
            peer,
            stake: entry.stake,
            reputation: f64::from(reputation.score_ppm) / 1e6,
            confidence: f64::from(reputation.confidence_ppm) / 1e6,
            running: entry.running,
            completed: entry.completed,
            failed: entry.failed,
            earned: entry.earned,
            last_seen_ms: entry.last_seen_ms,
            consecutive_verified: entry.history.consecutive_verified,
            slashed: entry.slashed,
            asks: entry.asks.values().cloned().collect(),
        })
    }
}
