//! Prometheus metrics (`GET /metrics`, names prefixed `agora_`), on `prometheus-client`.
//!
//! Counters and the latency histogram are updated where things happen; gauges that
//! describe current state (orders by state, providers, peers, ledger height) are set
//! from the node's state just before each scrape, so they can never drift. The one
//! exception, `agora_orders_waiting`, is set by each pass over the queue of waiting
//! orders, which runs on every capacity change and at least every watchdog period.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One label pair.
pub type Labels = Vec<(&'static str, &'static str)>;

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Orders now in each state.
    pub orders: Family<Labels, Gauge>,
    /// Entries into each order state.
    pub transitions: Family<Labels, Counter>,
    /// Orders matched to a provider (each assignment attempt).
    pub matches: Counter,
    /// Orders no provider could take.
    pub unmatched: Counter,
    /// Auction bids and Dutch acceptances taken.
    pub bids: Counter,
    /// Orders that started waiting for capacity (every capable provider was busy).
    pub waited: Counter,
    /// Escrowed orders waiting for a provider with room, as of the last pass over the
    /// queue (every capacity change, and at least every watchdog period).
    pub waiting: Gauge,
    /// Jobs by how they ended or moved: settled, refunded, reassigned, rejected.
    pub jobs: Family<Labels, Counter>,
    /// Submit → settled latency in seconds.
    pub settle_latency: Histogram,
    /// The ledger's height.
    pub ledger_height: Gauge,
    /// Blocks produced by this process.
    pub ledger_blocks: Gauge,
    /// Transactions included by this process.
    pub ledger_txs: Gauge,
    /// Connected libp2p peers.
    pub peers: Gauge,
    /// Providers with a live ask.
    pub providers: Gauge,
    /// Gossip messages rejected (bad signature, wrong author, malformed).
    pub gossip_rejected: Counter,
    /// Results a quorum proved wrong.
    pub frauds: Counter,
    /// HTTP API requests received (every route but the dashboard's static files).
    pub http_requests: Counter,
    /// p2p messages sent and received by this node, by kind (`agora_net::NetStats`),
    /// brought up to date just before each scrape.
    pub p2p_messages: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `agora` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("agora");
        let metrics = Metrics {
            registry: Registry::default(),
            orders: Family::default(),
            transitions: Family::default(),
            matches: Counter::default(),
            unmatched: Counter::default(),
            bids: Counter::default(),
            waited: Counter::default(),
            waiting: Gauge::default(),
            jobs: Family::default(),
            settle_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            ledger_height: Gauge::default(),
            ledger_blocks: Gauge::default(),
            ledger_txs: Gauge::default(),
            peers: Gauge::default(),
            providers: Gauge::default(),
            gossip_rejected: Counter::default(),
            frauds: Counter::default(),
            http_requests: Counter::default(),
            p2p_messages: Family::default(),
        };
        registry.register("orders", "Orders now in each state", metrics.orders.clone());
        registry.register(
            "order_transitions",
            "Order state entries",
            metrics.transitions.clone(),
        );
        registry.register(
            "matches",
            "Assignments made by the matching engine",
            metrics.matches.clone(),
        );
        registry.register(
            "auction_bids",
            "Auction bids and Dutch acceptances taken",
            metrics.bids.clone(),
        );
        registry.register(
            "unmatched",
            "Orders no provider could take",
            metrics.unmatched.clone(),
        );
        registry.register(
            "orders_waited",
            "Orders that waited for capacity because every capable provider was busy",
            metrics.waited.clone(),
        );
        registry.register(
            "orders_waiting",
            "Escrowed orders waiting for a provider with free capacity",
            metrics.waiting.clone(),
        );
        registry.register("jobs", "Jobs by outcome", metrics.jobs.clone());
        registry.register(
            "frauds_detected",
            "Results a quorum of distinct providers proved wrong",
            metrics.frauds.clone(),
        );
        registry.register(
            "submit_to_settled_seconds",
            "Latency from order submission to settlement",
            metrics.settle_latency.clone(),
        );
        registry.register(
            "ledger_height",
            "Height of the last block",
            metrics.ledger_height.clone(),
        );
        registry.register(
            "ledger_blocks_produced",
            "Blocks produced since start",
            metrics.ledger_blocks.clone(),
        );
        registry.register(
            "ledger_txs_included",
            "Transactions included since start",
            metrics.ledger_txs.clone(),
        );
        registry.register("peers", "Connected libp2p peers", metrics.peers.clone());
        registry.register(
            "providers",
            "Providers with a live ask",
            metrics.providers.clone(),
        );
        registry.register(
            "gossip_rejected",
            "Gossip messages rejected as invalid",
            metrics.gossip_rejected.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP API requests received",
            metrics.http_requests.clone(),
        );
        registry.register(
            "p2p_messages",
            "p2p messages sent and received, by kind (gossip duplicates excluded)",
            metrics.p2p_messages.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Brings the p2p message counters up to `stats`, the network's own counts since
    /// start (which only grow).
    pub fn set_p2p(&self, stats: &agora_net::NetStats) {
        let kinds: [(&'static str, u64); 7] = [
            ("gossip_published", stats.gossip_published),
            ("gossip_received", stats.gossip_received),
            ("rpc_sent", stats.rpc_sent),
            ("rpc_received", stats.rpc_received),
            ("chunk_requests_sent", stats.chunk_requests_sent),
            ("chunk_requests_served", stats.chunk_requests_served),
            ("connections_opened", stats.connections_opened),
        ];
        for (kind, total) in kinds {
            let counter = self.p2p_messages.get_or_create(&vec![("kind", kind)]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Counts an order entering `state`.
    pub fn entered(&self, state: &'static str) {
        self.transitions
            .get_or_create(&vec![("state", state)])
            .inc();
    }

    /// Counts a job outcome.
    pub fn job(&self, outcome: &'static str) {
        self.jobs.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
