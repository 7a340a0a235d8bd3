//! The application-facing API: [`Network::start`], [`NetHandle`] and [`NetEvent`].
//!
//! The swarm runs on its own tokio task; the handle sends it commands over a channel and
//! awaits one-shot replies, so the handle is cheap to clone and safe to use from any task.
//! Everything the network receives arrives on the event channel returned by `start`.

use std::fmt;
use std::path::PathBuf;

use agora_core::{AccountId, Hash};
use libp2p::gossipsub::MessageId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::blobs::FetchProgress;
use crate::config::NetConfig;
use crate::error::NetError;
use crate::identity::{self, IdentityError};
use crate::store::BlobStore;
use crate::topic::Topic;
use crate::wire::{ChunkRequest, RpcReply};

/// Entry point: starts nodes.
pub struct Network;

impl Network {
    /// Starts a node: binds the listen addresses (waiting until they are bound), dials
    /// the bootstrap peers and spawns the network task on the current tokio runtime.
    ///
    /// Returns the handle that drives the node and the receiver of its events. The node
    /// stops on [`NetHandle::shutdown`] or when every handle is dropped.
    pub async fn start(
        config: NetConfig,
    ) -> Result<(NetHandle, mpsc::Receiver<NetEvent>), NetError> {
        crate::driver::start(config).await
    }
}

/// The application's verdict on a gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver it to the application and forward it to other peers.
    Accept,
    /// Invalid (bad signature, malformed, impossible content): drop it and penalise the
    /// peer that sent it.
    Reject,
    /// Not wanted (stale, duplicate at the application level), but not evidence of
    /// misbehaviour: drop it without penalty.
    Ignore,
}

/// Identifies a gossip message awaiting a [`Verdict`]: the blake3 hash of topic and payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgId(pub(crate) MessageId);

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A gossip message received from the network, not yet forwarded. Answer every one with
/// [`NetHandle::report`].
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// The id to report the verdict under.
    pub id: MsgId,
    /// The topic it came on.
    pub topic: Topic,
    /// The peer that published (and signed) it.
    pub author: PeerId,
    /// The peer that relayed it to us; penalised if the message is rejected.
    pub via: PeerId,
    /// The payload.
    pub data: Vec<u8>,
}

impl GossipMessage {
    /// The account of the author, to compare with the signer of the payload.
    pub fn author_account(&self) -> Result<AccountId, IdentityError> {
        identity::account_of(&self.author)
    }
}

/// Something the network received.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message awaiting a verdict.
    Gossip(GossipMessage),
    /// A request on the generic channel; answer it through its responder.
    Request(InboundRequest),
    /// The first connection to a peer opened.
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A peer subscribed to a topic; publishing there reaches it from now on.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: Topic,
    },
}

impl NetEvent {
    /// A short name for the kind of event, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            NetEvent::Gossip(_) => "gossip",
            NetEvent::Request(_) => "request",
            NetEvent::PeerConnected(_) => "peer-connected",
            NetEvent::PeerDisconnected(_) => "peer-disconnected",
            NetEvent::Subscribed { .. } => "subscribed",
        }
    }
}

/// An incoming request on the generic channel.
#[derive(Debug)]
pub struct InboundRequest {
    /// Who asked.
    pub peer: PeerId,
    /// The request bytes, as the peer sent them (possibly garbage: decode with care).
    pub data: Vec<u8>,
    /// Where the answer goes. Dropping it answers with an error, so a peer never waits
    /// for a request the application ignored.
    pub responder: Responder,
}

/// Answers one inbound request.
#[derive(Debug)]
pub struct Responder {
    pub(crate) reply: oneshot::Sender<RpcReply>,
    pub(crate) max_bytes: usize,
}

impl Responder {
    /// Sends `data` as the answer. An answer over the size limit is replaced by an error
    /// answer to the peer and reported here.
    pub fn respond(self, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > self.max_bytes {
            let size = data.len() as u64;
            let _ = self
                .reply
                .send(RpcReply::Err("the response was too large to send".into()));
            return Err(NetError::TooLarge {
                what: "response",
                size,
                limit: self.max_bytes as u64,
            });
        }
        self.reply
            .send(RpcReply::Ok(data))
            .map_err(|_| NetError::Stopped)
    }

    /// Refuses the request with a reason the peer will see as [`NetError::Remote`].
    pub fn reject(self, reason: impl Into<String>) -> Result<(), NetError> {
        self.reply
            .send(RpcReply::Err(reason.into()))
            .map_err(|_| NetError::Stopped)
    }
}

/// What the handle asks of the network task.
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<MsgId, NetError>>,
    },
    Report {
        id: MsgId,
        verdict: Verdict,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Request {
        peer: PeerId,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Chunk {
        peer: PeerId,
        request: ChunkRequest,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Penalize {
        peer: PeerId,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    TopicPeers {
        topic: Topic,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Limits the fetcher needs on the caller's side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchLimits {
    pub chunk_bytes: u32,
    pub window: usize,
    pub max_blob_bytes: u64,
}

/// Drives a running node. Cheap to clone; all clones talk to the same node.
#[derive(Clone)]
pub struct NetHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) store: BlobStore,
    pub(crate) peer_id: PeerId,
    pub(crate) limits: FetchLimits,
    pub(crate) counters: std::sync::Arc<crate::stats::Counters>,
}

impl fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetHandle({})", self.peer_id)
    }
}

impl NetHandle {
    /// Sends a command and waits for its reply.
    pub(crate) async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The messages this node has sent and received since it started.
    pub fn stats(&self) -> crate::NetStats {
        self.counters.snapshot()
    }

    /// The blob store this node serves from and fetches into.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Publishes `data` on `topic`. Fails with [`NetError::NoPeers`] until some peer has
    /// subscribed (watch for [`NetEvent::Subscribed`]).
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<MsgId, NetError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Reports the verdict on a received gossip message; only accepted messages are
    /// forwarded, rejected ones count against the peer that relayed them.
    pub async fn report(&self, id: &MsgId, verdict: Verdict) -> Result<(), NetError> {
        let id = id.clone();
        self.call(|reply| Command::Report { id, verdict, reply })
            .await?
    }

    /// Sends `data` on the generic request channel and waits for the answer.
    pub async fn request(&self, peer: PeerId, data: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.call(|reply| Command::Request { peer, data, reply })
            .await?
    }

    /// Fetches blob `hash` from `peer` into the local store and returns its path there.
    /// Returns at once if the blob is already stored. See [`crate::blobs`].
    pub async fn fetch_blob(&self, peer: PeerId, hash: Hash) -> Result<PathBuf, NetError> {
        crate::blobs::fetch(self, peer, hash, &mut |_| {}).await
    }

    /// Like [`fetch_blob`](Self::fetch_blob), calling `progress` after every chunk, for
    /// progress bars on large downloads. Not called when the blob is already stored.
    pub async fn fetch_blob_with_progress(
        &self,
        peer: PeerId,
        hash: Hash,
        mut progress: impl FnMut(FetchProgress) + Send,
    ) -> Result<PathBuf, NetError> {
        crate::blobs::fetch(self, peer, hash, &mut progress).await
    }

    /// One raw chunk exchange, for the fetcher.
    pub(crate) async fn chunk(
        &self,
        peer: PeerId,
        request: ChunkRequest,
    ) -> Result<Vec<u8>, NetError> {
        self.call(|reply| Command::Chunk {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Lowers `peer`'s score for misbehaviour seen outside gossip.
    pub(crate) async fn penalize(&self, peer: PeerId) {
        // If the node is gone there is nobody left to protect.
        let _ = self.commands.send(Command::Penalize { peer }).await;
    }

    /// Starts dialling `addr`. Success means the dial began; the connection shows up as
    /// [`NetEvent::PeerConnected`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.call(|reply| Command::Dial { addr, reply }).await?
    }

    /// The addresses this node listens on (with real ports when port 0 was asked for).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// The first listen address with `/p2p/PEER_ID` appended: what other nodes put in
    /// their bootstrap list.
    pub async fn bootstrap_addr(&self) -> Result<Multiaddr, NetError> {
        let addrs = self.listen_addrs().await?;
        let addr = addrs.into_iter().next().ok_or_else(|| {
            NetError::Config("the node listens on no address; set `listen`".into())
        })?;
        Ok(addr.with(libp2p::multiaddr::Protocol::P2p(self.peer_id)))
    }

    /// Peers with an open connection.
    pub async fn peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Connected peers subscribed to `topic`.
    pub async fn topic_peers(&self, topic: Topic) -> Result<Vec<PeerId>, NetError> {
        self.call(|reply| Command::TopicPeers { topic, reply })
            .await
    }

    /// `peer`'s gossipsub score as this node sees it (negative means misbehaving), or
    /// `None` for a peer it does not track.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.call(|reply| Command::PeerScore { peer, reply }).await
    }

    /// Stops the node: closes every connection and ends the network task. Requests in
    /// flight fail with [`NetError::Stopped`].
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.call(|reply| Command::Shutdown { reply }).await
    }
}
