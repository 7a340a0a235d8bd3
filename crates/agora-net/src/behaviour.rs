//! The composed libp2p behaviour: one sub-behaviour per protocol.
//!
//! - `gossip`: gossipsub for the market topics ([`crate::gossip`]).
//! - `blobs`: request-response carrying blob chunks ([`crate::wire`]).
//! - `rpc`: request-response carrying opaque application requests.
//! - `identify`: learns peers' listen addresses, which feed `kad`.
//! - `kad`: Kademlia routing, so a node that only knows a bootstrap peer finds the rest.
//! - `ping`: notices dead connections.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::ProtocolSupport;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, gossipsub, identify, kad, ping, request_response};

use crate::config::{MAX_CHUNK_BYTES, NetConfig};
use crate::wire::{BLOB_PROTOCOL, FRAME_OVERHEAD, FrameCodec, RPC_PROTOCOL};

/// The Kademlia protocol name, private to agora so we never join the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1");
/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/agora/id/1";

/// Every protocol a node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub gossip: gossipsub::Behaviour,
    pub blobs: request_response::Behaviour<FrameCodec>,
    pub rpc: request_response::Behaviour<FrameCodec>,
    pub identify: identify::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub ping: ping::Behaviour,
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair, config: &NetConfig) -> Result<Behaviour, String> {
        let peer = key.public().to_peer_id();
        // Servers answer any chunk size up to the hard ceiling, so nodes with different
        // `chunk_bytes` settings still interoperate.
        let chunk_frame = MAX_CHUNK_BYTES + FRAME_OVERHEAD;
        let rpc_frame = config.max_rpc_bytes + FRAME_OVERHEAD;
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(256);
        Ok(Behaviour {
            gossip: crate::gossip::behaviour(key, config.max_gossip_bytes)?,
            blobs: request_response::Behaviour::with_codec(
                FrameCodec::new(FRAME_OVERHEAD, chunk_frame),
                [(BLOB_PROTOCOL, ProtocolSupport::Full)],
                rr_config.clone(),
            ),
            rpc: request_response::Behaviour::with_codec(
                FrameCodec::new(rpc_frame, rpc_frame),
                [(RPC_PROTOCOL, ProtocolSupport::Full)],
                rr_config,
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.to_owned(),
                key.public(),
            )),
            kad: kademlia(peer, config.discover_peers),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
    }
}

fn kademlia(peer: libp2p::PeerId, discover: bool) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_periodic_bootstrap_interval(discover.then_some(Duration::from_secs(60)));
    let mut kad = kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), config);
    // Without confirmed external addresses kad would stay a client and never be added to
    // other nodes' routing tables; every agora node that discovers is meant to be
    // reachable. One that does not stays out of them, so nobody is handed its address.
    let mode = if discover {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    };
    kad.set_mode(Some(mode));
    kad
}
