//! Network configuration with documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use agora_core::Keypair;
use libp2p::Multiaddr;

/// Default largest gossip payload: 256 KiB. Market messages are small signed records;
/// anything bigger belongs in a blob.
pub const DEFAULT_MAX_GOSSIP_BYTES: usize = 256 * 1024;
/// Default largest generic request or response payload: 4 MiB.
pub const DEFAULT_MAX_RPC_BYTES: usize = 4 * 1024 * 1024;
/// Default largest blob this node will fetch: 4 GiB.
pub const DEFAULT_MAX_BLOB_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Default blob chunk: 1 MiB per request-response round trip.
pub const DEFAULT_CHUNK_BYTES: u32 = 1024 * 1024;
/// Default number of chunk requests in flight per fetch. Bounds fetch memory to about
/// `window × chunk` while keeping the pipe full on high-latency links.
pub const DEFAULT_FETCH_WINDOW: usize = 4;

/// How to run a node. Build it with [`NetConfig::new`] and adjust fields as needed.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's agora key; its libp2p identity is derived from it.
    pub keypair: Keypair,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/4001`; port 0 picks a free port.
    /// libp2p binds with `SO_REUSEPORT` (to dial out from the listening port), so a
    /// second node on the same fixed port is not refused: give each node its own port.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start to join the network. Append `/p2p/PEER_ID` to let discovery
    /// use them before they identify themselves.
    pub bootstrap: Vec<Multiaddr>,
    /// Directory of the content-addressed blob store (served to peers and filled by fetches).
    pub blob_dir: PathBuf,
    /// Largest gossip payload accepted or published, in bytes.
    pub max_gossip_bytes: usize,
    /// Largest generic request or response payload, in bytes.
    pub max_rpc_bytes: usize,
    /// Largest blob this node fetches, in bytes; bigger blobs are refused before download.
    pub max_blob_bytes: u64,
    /// Bytes per blob chunk request.
    pub chunk_bytes: u32,
    /// Chunk requests in flight per blob fetch.
    pub fetch_window: usize,
    /// How long one request (or one chunk) may take before it fails.
    pub request_timeout: Duration,
    /// How long a connection with no active protocol stays open.
    pub idle_timeout: Duration,
    /// Capacity of the event channel; events beyond it are dropped (and logged) rather
    /// than stalling the network.
    pub event_buffer: usize,
    /// Find the whole network through the DHT and connect to every peer found (the
    /// default), so gossip reaches everyone; and be findable there. A node that talks to
    /// its bootstrap peers only (a provider agent, which works for one market) turns this
    /// off: it dials no peer the DHT reports and runs Kademlia as a client, so no routing
    /// table lists it. Otherwise N such nodes open N² connections among themselves and
    /// each receives every other's gossip only to ignore it.
    pub discover_peers: bool,
}

impl NetConfig {
    /// A configuration with the defaults above, listening on `127.0.0.1` at a free port.
    pub fn new(keypair: Keypair, blob_dir: impl Into<PathBuf>) -> NetConfig {
        NetConfig {
            keypair,
            listen: vec![loopback_any_port()],
            bootstrap: Vec::new(),
            blob_dir: blob_dir.into(),
            max_gossip_bytes: DEFAULT_MAX_GOSSIP_BYTES,
            max_rpc_bytes: DEFAULT_MAX_RPC_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            fetch_window: DEFAULT_FETCH_WINDOW,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            event_buffer: 1024,
            discover_peers: true,
        }
    }

    /// Checks the limits for values that cannot work.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.max_gossip_bytes == 0 || self.max_rpc_bytes == 0 {
            return Err("message size limits must be positive".into());
        }
        if self.chunk_bytes == 0 || self.chunk_bytes as usize > MAX_CHUNK_BYTES {
            return Err(format!(
                "chunk_bytes must be between 1 and {MAX_CHUNK_BYTES}"
            ));
        }
        if self.fetch_window == 0 || self.event_buffer == 0 {
            return Err("fetch_window and event_buffer must be positive".into());
        }
        Ok(())
    }
}

/// The hard ceiling on a chunk, whatever the configuration: keeps every frame on the
/// blob protocol small enough to buffer.
pub const MAX_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// `/ip4/127.0.0.1/tcp/0`.
pub fn loopback_any_port() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4([127, 0, 0, 1].into()))
        .with(libp2p::multiaddr::Protocol::Tcp(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NetConfig {
        NetConfig::new(Keypair::from_seed("config"), "/tmp/unused")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
        assert_eq!(config().listen, vec![loopback_any_port()]);
    }

    #[test]
    fn impossible_limits_are_refused() {
        let mut c = config();
        c.chunk_bytes = 0;
        assert!(c.validate().is_err());
        c.chunk_bytes = MAX_CHUNK_BYTES as u32 + 1;
        assert!(c.validate().is_err());
        let mut c = config();
        c.max_gossip_bytes = 0;
        assert!(c.validate().is_err());
        let mut c = config();
        c.fetch_window = 0;
        assert!(c.validate().is_err());
    }
}
