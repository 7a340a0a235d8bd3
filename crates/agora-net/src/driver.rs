//! The network task: owns the swarm, executes commands from handles and turns swarm
//! events into [`NetEvent`]s.
//!
//! Nothing here blocks: disk reads for served chunks run on the blocking pool and come
//! back through an internal channel, and events go out with `try_send`, so a slow
//! application loses events (logged) instead of stalling every peer.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{SwarmEvent, dial_opts::DialOpts};
use libp2p::{Multiaddr, PeerId, Swarm, identify, kad, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use crate::blobs;
use crate::config::NetConfig;
use crate::error::NetError;
use crate::gossip::APP_PENALTY;
use crate::handle::{
    Command, FetchLimits, GossipMessage, InboundRequest, MsgId, NetEvent, NetHandle, Responder,
    Verdict,
};
use crate::identity;
use crate::store::BlobStore;
use crate::topic::Topic;
use crate::wire::{self, RpcReply};

/// How long `start` waits for the listeners to bind.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages awaiting a verdict that we remember; older ones have left gossipsub's cache.
const MAX_AWAITING_VERDICT: usize = 16 * 1024;
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

pub(crate) async fn start(
    config: NetConfig,
) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
    config.validate().map_err(NetError::Config)?;
    let store = BlobStore::open(&config.blob_dir)?;
    let key = identity::libp2p_keypair(&config.keypair)?;
    let peer_id = key.public().to_peer_id();
    let mut swarm = build_swarm(key, &config)?;
    listen(&mut swarm, &config.listen).await?;
    for addr in &config.bootstrap {
        dial_bootstrap(&mut swarm, addr);
    }
    let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
    let (event_tx, event_rx) = mpsc::channel(config.event_buffer);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
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
        awaiting_verdict: AwaitingVerdict::default(),
        penalties: HashMap::new(),
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
    };
    Ok((handle, event_rx))
}

fn build_swarm(
    key: libp2p::identity::Keypair,
    config: &NetConfig,
) -> Result<Swarm<Behaviour>, NetError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Config(format!("transport: {e}")))?
        .with_behaviour(|key| Behaviour::new(key, config).map_err(Into::into))
        .map_err(|e| NetError::Config(format!("behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

/// Binds every listen address and waits until each has reported a concrete address, so
/// `listen_addrs` is meaningful as soon as `start` returns.
async fn listen(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr]) -> Result<(), NetError> {
    for addr in addrs {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
    }
    let mut bound = 0;
    let wait = async {
        while bound < addrs.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { .. } => bound += 1,
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    let reason = reason.err().map(|e| e.to_string()).unwrap_or_default();
                    let addr = addresses
                        .into_iter()
                        .next()
                        .unwrap_or_else(Multiaddr::empty);
                    return Err(NetError::Listen { addr, reason });
                }
                SwarmEvent::ListenerError { error, .. } => {
                    let addr = addrs.first().cloned().unwrap_or_else(Multiaddr::empty);
                    return Err(NetError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    };
    tokio::time::timeout(LISTEN_TIMEOUT, wait)
        .await
        .map_err(|_| NetError::Listen {
            addr: addrs.first().cloned().unwrap_or_else(Multiaddr::empty),
            reason: "the listener did not report an address in time".into(),
        })?
}

fn dial_bootstrap(swarm: &mut Swarm<Behaviour>, addr: &Multiaddr) {
    if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
    }
    // A bootstrap peer that is down is not fatal: the others (or a later dial) may work.
    if let Err(e) = swarm.dial(addr.clone()) {
        warn!(%addr, error = %e, "cannot dial bootstrap peer");
    }
}

/// Gossip messages handed to the application, with the peer to credit or blame.
#[derive(Default)]
struct AwaitingVerdict {
    via: HashMap<MessageId, PeerId>,
    order: VecDeque<MessageId>,
}

impl AwaitingVerdict {
    fn insert(&mut self, id: MessageId, via: PeerId) {
        if self.order.len() >= MAX_AWAITING_VERDICT
            && let Some(oldest) = self.order.pop_front()
        {
            self.via.remove(&oldest);
        }
        self.order.push_back(id.clone());
        self.via.insert(id, via);
    }

    fn take(&mut self, id: &MessageId) -> Option<PeerId> {
        self.via.remove(id)
    }
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
    awaiting_verdict: AwaitingVerdict,
    penalties: HashMap<PeerId, f64>,
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
                warn!(
                    ?event,
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
            } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .blobs
                    .send_request(&peer, wire::encode(&request));
                self.pending_chunks.insert(id, (peer, reply));
            }
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

    fn publish(&mut self, topic: Topic, data: Vec<u8>) -> Result<MsgId, NetError> {
        if data.len() > self.max_gossip {
            return Err(NetError::TooLarge {
                what: "gossip message",
                size: data.len() as u64,
                limit: self.max_gossip as u64,
            });
        }
        let size = data.len() as u64;
        self.swarm
            .behaviour_mut()
            .gossip
            .publish(topic.hash(), data)
            .map(MsgId)
            .map_err(|e| match e {
                PublishError::NoPeersSubscribedToTopic => NetError::NoPeers(topic),
                PublishError::Duplicate => NetError::Duplicate(topic),
                PublishError::MessageTooLarge => NetError::TooLarge {
                    what: "gossip message",
                    size,
                    limit: self.max_gossip as u64,
                },
                other => NetError::Publish {
                    topic,
                    reason: other.to_string(),
                },
            })
    }

    fn report(&mut self, id: MsgId, verdict: Verdict) -> Result<(), NetError> {
        let via = self
            .awaiting_verdict
            .take(&id.0)
            .ok_or_else(|| NetError::UnknownMessage(id.to_string()))?;
        let acceptance = match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id.0, &via, acceptance);
        Ok(())
    }

    fn send_rpc(&mut self, peer: PeerId, data: Vec<u8>, reply: Reply<Vec<u8>>) {
        if data.len() > self.max_rpc {
            let _ = reply.send(Err(NetError::TooLarge {
                what: "request",
                size: data.len() as u64,
                limit: self.max_rpc as u64,
            }));
            return;
        }
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, data);
        self.pending_rpc.insert(id, (peer, reply));
    }

    fn penalize(&mut self, peer: PeerId) {
        let score = self.penalties.entry(peer).or_insert(0.0);
        *score -= APP_PENALTY;
        let score = *score;
        warn!(%peer, score, "peer penalised");
        self.swarm
            .behaviour_mut()
            .gossip
            .set_application_score(&peer, score);
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
            } if num_established.get() == 1 => {
                self.emit(NetEvent::PeerConnected(peer_id));
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

    fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                self.on_gossip_message(propagation_source, message_id, message);
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                if let Some(topic) = Topic::from_hash(&topic) {
                    self.emit(NetEvent::Subscribed {
                        peer: peer_id,
                        topic,
                    });
                }
            }
            _ => {}
        }
    }

    fn on_gossip_message(&mut self, via: PeerId, id: MessageId, message: gossipsub::Message) {
        let topic = Topic::from_hash(&message.topic);
        let checked = match (topic, message.source) {
            (Some(topic), Some(author)) if message.data.len() <= self.max_gossip => {
                Some((topic, author))
            }
            _ => None,
        };
        let Some((topic, author)) = checked else {
            // Strict validation guarantees an author and we only join our own topics, so
            // this is a peer relaying something it should not, or an oversized payload.
            warn!(%via, size = message.data.len(), "rejecting malformed or oversized gossip");
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &via, MessageAcceptance::Reject);
            return;
        };
        self.awaiting_verdict.insert(id.clone(), via);
        let event = GossipMessage {
            id: MsgId(id.clone()),
            topic,
            author,
            via,
            data: message.data,
        };
        if !self.emit(NetEvent::Gossip(event)) && self.awaiting_verdict.take(&id).is_some() {
            self.swarm
                .behaviour_mut()
                .gossip
                .report_message_validation_result(&id, &via, MessageAcceptance::Ignore);
        }
    }

    fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.on_rpc_request(peer, request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((peer, reply)) = self.pending_rpc.remove(&request_id) {
                        let _ = reply.send(rpc_result(peer, &response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_rpc.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound rpc failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Hands the request to the application and answers once it has, or with an error
    /// if it drops the responder (including when the event channel is full).
    fn on_rpc_request(&mut self, peer: PeerId, data: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        let responder = Responder {
            reply: tx,
            max_bytes: self.max_rpc,
        };
        self.emit(NetEvent::Request(InboundRequest {
            peer,
            data,
            responder,
        }));
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let reply = rx
                .await
                .unwrap_or_else(|_| RpcReply::Err("the node did not answer this request".into()));
            let _ = internal.send(Internal::AnswerRpc {
                channel,
                frame: wire::encode(&reply),
            });
        });
    }

    fn on_blobs(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.serve_chunk(request, channel);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_chunks.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_chunks.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound blob request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Reads the chunk on the blocking pool; the answer comes back through `Internal`.
    fn serve_chunk(&self, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
        let store = self.store.clone();
        let internal = self.internal_tx.clone();
        tokio::spawn(async move {
            let answer = tokio::task::spawn_blocking(move || blobs::serve_chunk(&store, &request))
                .await
                .unwrap_or_else(|e| wire::ChunkResponse::Unavailable(e.to_string()));
            let frame = wire::encode(&answer);
            let _ = internal.send(Internal::AnswerChunk { channel, frame });
        });
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        for addr in info.listen_addrs {
            kad.add_address(&peer_id, addr);
        }
        // Ask the new peer for the peers closest to us: this is how a node that only
        // knows a bootstrap peer learns about the rest of the network.
        if let Err(e) = kad.bootstrap() {
            debug!(error = %e, "kademlia bootstrap not possible yet");
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            peer, addresses, ..
        } = event
            && !self.swarm.is_connected(&peer)
        {
            // Gossip only reaches connected peers, so connect to everyone kad finds.
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses.into_vec())
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%peer, error = %e, "cannot dial discovered peer");
            }
        }
    }
}

/// Turns an RPC answer frame into the caller's result.
fn rpc_result(peer: PeerId, frame: &[u8]) -> Result<Vec<u8>, NetError> {
    match wire::decode::<RpcReply>(frame) {
        Ok(RpcReply::Ok(data)) => Ok(data),
        Ok(RpcReply::Err(reason)) => Err(NetError::Remote { peer, reason }),
        Err(e) => Err(NetError::Request {
            peer,
            reason: format!("malformed answer: {e}"),
        }),
    }
}
