//! The network task: owns the swarm, executes commands from handles and turns swarm
//! events into [`NetEvent`]s.
//!
//! Nothing here blocks: disk reads for served chunks run on the blocking pool and come
//! back through an internal channel, and events go out with `try_send`, so a slow
//! application loses events (logged) instead of stalling every peer.
//!
//! - [`setup`]: building the swarm, binding listeners, dialling bootstrap peers;
//! - [`gossip`]: publishing, verdicts and penalties;
//! - [`requests`]: the RPC and blob request-response protocols, both directions;
//! - [`discovery`]: identify and Kademlia, which connect us to the whole network.

mod discovery;
mod gossip;
mod requests;
mod setup;

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::config::NetConfig;
use crate::error::NetError;
use crate::handle::{Command, FetchLimits, NetEvent, NetHandle};
use crate::identity;
use crate::stats::{Count, Counters};
use crate::store::BlobStore;

/// Capacity of the command channel shared by all handles.
const COMMAND_BUFFER: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, NetError>>;

/// Work finished off the network task that needs the swarm to complete.
enum Internal {
    AnswerRpc {
        channel: ResponseChannel<Vec<u8>>,
        frame: Vec<u8>,
    },
    AnswerChunk {
        channel: ResponseChannel<Vec<u8>>,
        frame: Vec<u8>,
    },
}

/// Starts a node; see [`crate::Network::start`].
pub(crate) async fn start(
    config: NetConfig,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    config.validate().map_err(NetError::Config)?;
    let store = BlobStore::open(&config.blob_dir)?;
    let key = identity::libp2p_keypair(&config.keypair)?;
    let peer_id = key.public().to_peer_id();
    let mut swarm = setup::build_swarm(key, &config)?;
    setup::listen(&mut swarm, &config.listen).await?;
    for addr in &config.bootstrap {
        setup::dial_bootstrap(&mut swarm, addr);
    }
    let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let driver = Driver {
        swarm,
        commands: command_rx,
        internal_tx,
        internal_rx,
        events: event_tx,
        store: store.clone(),
        max_gossip: config.max_gossip_bytes,
        max_rpc: config.max_rpc_bytes,
        pending_rpc: HashMap::new(),
        pending_chunks: HashMap::new(),
        awaiting_verdict: gossip::AwaitingVerdict::default(),
        penalties: HashMap::new(),
        counters: counters.clone(),
        discover_peers: config.discover_peers,
    };
    tokio::spawn(driver.run());
    info!(%peer_id, "agora-net node started");
    let limits = FetchLimits {
        chunk_bytes: config.chunk_bytes,
        window: config.fetch_window,
        max_blob_bytes: config.max_blob_bytes,
    };
    let handle = NetHandle {
        commands: command_tx,
        store,
        peer_id,
        limits,
        counters,
    };
    Ok((handle, event_rx))
}

struct Driver {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    events: mpsc::Sender<NetEvent>,
    store: BlobStore,
    max_gossip: usize,
    max_rpc: usize,
    pending_rpc: HashMap<OutboundRequestId, (PeerId, Reply<Vec<u8>>)>,
    pending_chunks: HashMap<OutboundRequestId, (PeerId, Reply<Vec<u8>>)>,
    awaiting_verdict: gossip::AwaitingVerdict,
    penalties: HashMap<PeerId, f64>,
    counters: Arc<Counters>,
    discover_peers: bool,
}

impl Driver {
    async fn run(mut self) {
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    // Every handle is gone: nobody can use this node any more.
                    None => break,
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
            }
        }
        info!(peer_id = %self.swarm.local_peer_id(), "agora-net node stopped");
    }

    fn emit(&self, event: NetEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(event)) => {
                // Payloads can be large; log what was lost, not its content.
                warn!(
                    event = event.kind(),
                    "event channel full; the application is not keeping up, dropping"
                );
                false
            }
            // The application stopped listening; the node keeps serving blobs.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Report { id, verdict, reply } => {
                let _ = reply.send(self.report(id, verdict));
            }
            Command::Request { peer, data, reply } => self.send_rpc(peer, data, reply),
            Command::Chunk {
                peer,
                request,
                reply,
            } => self.send_chunk_request(peer, &request, reply),
            Command::Penalize { peer } => self.penalize(peer),
            Command::Dial { addr, reply } => {
                let result = self.swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
                    addr,
                    reason: e.to_string(),
                });
                let _ = reply.send(result);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::TopicPeers { topic, reply } => {
                let hash = topic.hash();
                let peers = self.swarm.behaviour().gossip.all_peers();
                let subscribed = peers.filter(|(_, topics)| topics.contains(&&hash));
                let _ = reply.send(subscribed.map(|(peer, _)| *peer).collect());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossip.peer_score(&peer));
            }
            // Handled in `run`, which owns the loop.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn on_internal(&mut self, internal: Internal) {
        // A failed send means the requester went away; there is nobody to tell.
        let _ = match internal {
            Internal::AnswerRpc { channel, frame } => {
                self.swarm.behaviour_mut().rpc.send_response(channel, frame)
            }
            Internal::AnswerChunk { channel, frame } => self
                .swarm
                .behaviour_mut()
                .blobs
                .send_response(channel, frame),
        };
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(event)) => self.on_gossip(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(event)) => self.on_blobs(event),
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.on_rpc(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                self.counters.bump(Count::ConnectionOpened);
                if num_established.get() == 1 {
                    self.emit(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.emit(NetEvent::PeerDisconnected(peer_id));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(?peer_id, %error, "outgoing connection failed");
            }
            _ => {}
        }
    }
}
