//! The one error type of the network layer.

use agora_core::Hash;
use libp2p::{Multiaddr, PeerId};

use crate::identity::IdentityError;
use crate::store::StoreError;
use crate::topic::Topic;

/// Why a network operation failed. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration cannot work.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// The node key could not become a libp2p identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {reason}; pick a free port (or port 0) and an address of this host"
    )]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What the transport said.
        reason: String,
    },
    /// A dial failed immediately.
    #[error("cannot dial {addr}: {reason}; check the address and that the peer is running")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// What the transport said.
        reason: String,
    },
    /// The network task is gone (shut down or crashed).
    #[error("the network task has stopped; start a new node with Network::start")]
    Stopped,
    /// No connected peer listens on this topic yet.
    #[error("no connected peer subscribes to topic {0} yet; wait for peers to connect and retry")]
    NoPeers(Topic),
    /// The same payload was published on this topic recently.
    #[error(
        "this exact message was already published on {0}; gossip ids are content hashes, so change the payload (e.g. its nonce) to publish again"
    )]
    Duplicate(Topic),
    /// A payload is over the configured limit.
    #[error(
        "{what} of {size} bytes exceeds the limit of {limit} bytes; send large content as a blob"
    )]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Gossipsub refused to publish for another reason.
    #[error("publishing on {topic} failed: {reason}")]
    Publish {
        /// The topic.
        topic: Topic,
        /// What gossipsub said.
        reason: String,
    },
    /// A verdict was reported for a message the node no longer holds.
    #[error(
        "no message {0} awaits a verdict: it was already reported, or expired; report each message once, soon after it arrives"
    )]
    UnknownMessage(String),
    /// A request did not get an answer.
    #[error("request to {peer} failed: {reason}; check the peer is connected and retry")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// The remote answered with an error.
    #[error("{peer} refused the request: {reason}")]
    Remote {
        /// The peer that answered.
        peer: PeerId,
        /// Its reason.
        reason: String,
    },
    /// The peer does not hold the blob.
    #[error("{peer} does not have blob {hash}; ask a peer that announced it")]
    BlobNotFound {
        /// The peer asked.
        peer: PeerId,
        /// The blob.
        hash: Hash,
    },
    /// The fetched content does not hash to the requested hash; it was deleted and the
    /// peer scored down.
    #[error(
        "blob {expected} from {peer} has content hashing to {actual}; it was discarded and the peer penalised; fetch it from another peer"
    )]
    HashMismatch {
        /// The peer that served it.
        peer: PeerId,
        /// The hash asked for.
        expected: Hash,
        /// The hash of what arrived.
        actual: Hash,
    },
    /// The peer broke the chunk protocol (wrong sizes, changing total).
    #[error(
        "{peer} sent an invalid chunk of blob {hash}: {reason}; the transfer was abandoned and the peer penalised"
    )]
    BadChunk {
        /// The peer.
        peer: PeerId,
        /// The blob.
        hash: Hash,
        /// What was wrong.
        reason: String,
    },
    /// The local blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A background task of the node failed unexpectedly.
    #[error("internal failure in the network layer: {0}; this is a bug, please report it")]
    Internal(String),
}
