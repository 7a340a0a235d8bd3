//! Message counters: what this node sent and received, counted where it happens on the
//! network task, so an operator (or `agora bench scale`) can say how many messages a job
//! costs.
//!
//! They count application-level messages: gossip this node published and gossip that
//! reached it for the first time (gossipsub drops duplicates before the application sees
//! them, so mesh re-transmissions are not in here), requests sent and received on the RPC
//! and blob protocols, and connections opened. They only grow, from zero at start.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// The counters, updated by the network task and read by [`crate::NetHandle::stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    gossip_published: AtomicU64,
    gossip_received: AtomicU64,
    rpc_sent: AtomicU64,
    rpc_received: AtomicU64,
    chunk_requests_sent: AtomicU64,
    chunk_requests_served: AtomicU64,
    connections_opened: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Count {
    GossipPublished,
    GossipReceived,
    RpcSent,
    RpcReceived,
    ChunkRequestSent,
    ChunkRequestServed,
    ConnectionOpened,
}

impl Counters {
    pub(crate) fn bump(&self, what: Count) {
        let counter = match what {
            Count::GossipPublished => &self.gossip_published,
            Count::GossipReceived => &self.gossip_received,
            Count::RpcSent => &self.rpc_sent,
            Count::RpcReceived => &self.rpc_received,
            Count::ChunkRequestSent => &self.chunk_requests_sent,
            Count::ChunkRequestServed => &self.chunk_requests_served,
            Count::ConnectionOpened => &self.connections_opened,
        };
        // Independent counters: no ordering with other memory is needed.
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> NetStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetStats {
            gossip_published: get(&self.gossip_published),
            gossip_received: get(&self.gossip_received),
            rpc_sent: get(&self.rpc_sent),
            rpc_received: get(&self.rpc_received),
            chunk_requests_sent: get(&self.chunk_requests_sent),
            chunk_requests_served: get(&self.chunk_requests_served),
            connections_opened: get(&self.connections_opened),
        }
    }
}

/// A snapshot of a node's message counters since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// Gossip messages this node published (asks, orders, ...).
    pub gossip_published: u64,
    /// Gossip messages that reached this node for the first time (duplicates excluded).
    pub gossip_received: u64,
    /// RPC requests this node sent.
    pub rpc_sent: u64,
    /// RPC requests this node received.
    pub rpc_received: u64,
    /// Blob chunk requests this node sent (one per chunk fetched).
    pub chunk_requests_sent: u64,
    /// Blob chunk requests this node answered.
    pub chunk_requests_served: u64,
    /// Connections opened, either way (a peer's first and later ones).
    pub connections_opened: u64,
}

impl NetStats {
    /// Messages this node sent: gossip published plus requests of both protocols.
    pub fn sent(&self) -> u64 {
        self.gossip_published + self.rpc_sent + self.chunk_requests_sent
    }

    /// Messages this node received: first-seen gossip plus requests of both protocols.
    pub fn received(&self) -> u64 {
        self.gossip_received + self.rpc_received + self.chunk_requests_served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_moves_its_own_counter() {
        let counters = Counters::default();
        counters.bump(Count::GossipPublished);
        counters.bump(Count::RpcSent);
        counters.bump(Count::RpcSent);
        counters.bump(Count::ChunkRequestServed);
        let s = counters.snapshot();
        assert_eq!(s.gossip_published, 1);
        assert_eq!(s.rpc_sent, 2);
        assert_eq!(s.chunk_requests_served, 1);
        assert_eq!(s.gossip_received + s.rpc_received + s.connections_opened, 0);
        assert_eq!(s.sent(), 3);
        assert_eq!(s.received(), 1);
    }
}
