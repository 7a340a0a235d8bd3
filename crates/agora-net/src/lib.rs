//! Agora's peer-to-peer layer, on rust-libp2p.
//!
//! Market nodes, provider agents and buyers talk through this crate. It gives them:
//!
//! - an encrypted, multiplexed transport (TCP + noise + yamux; QUIC too with the `quic`
//!   feature) whose peer identity *is* the node's agora ed25519 key ([`identity`]: [`peer_id_of`], [`account_of`]);
//! - discovery from a list of bootstrap peers (identify + a private Kademlia DHT);
//! - gossip on the market [`Topic`]s with application-level validation: every message
//!   waits for a [`Verdict`], rejected ones lower the sender's peer score ([`gossip`]);
//! - a generic, size-limited request-response channel for receipts and other RPC;
//! - content-addressed blobs: a [`BlobStore`] on disk and chunked, hash-checked
//!   transfers that never hold a blob in memory ([`blobs`], [`store`]).
//!
//! Entry point: [`Network::start`] with a [`NetConfig`] returns a [`NetHandle`] (publish,
//! report, request, fetch_blob, dial, …) and a receiver of [`NetEvent`]s (gossip,
//! inbound requests with a [`Responder`], peer changes). The swarm runs on its own tokio
//! task; every failure is a typed [`NetError`] and nothing a peer sends can panic it.
//!
//! ```no_run
//! use agora_net::{NetConfig, NetEvent, Network, Topic, Verdict};
//!
//! # async fn demo(key: agora_core::Keypair, bootstrap: agora_net::Multiaddr)
//! #     -> Result<(), agora_net::NetError> {
//! let mut config = NetConfig::new(key, "/var/lib/agora/blobs");
//! config.bootstrap.push(bootstrap);
//! let (net, mut events) = Network::start(config).await?;
//! net.publish(Topic::Asks, b"a canonically encoded, signed ask".to_vec()).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         NetEvent::Gossip(msg) => {
//!             // Decode and verify the signed message; check that its signer is the author.
//!             let signer_matches = msg.author_account().is_ok();
//!             let verdict = if signer_matches { Verdict::Accept } else { Verdict::Reject };
//!             net.report(&msg.id, verdict).await?;
//!         }
//!         NetEvent::Request(req) => req.responder.reject("not implemented here")?,
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Payloads are opaque bytes here: the application encodes and checks its signed
//! messages with `agora_core::canonical` and uses [`GossipMessage::author_account`] to
//! check that a message's signer is the peer that published it.
#![warn(unused_crate_dependencies, missing_docs)]
// `NetError` carries the peer id (80 bytes) and hashes so that errors say who and what;
// it is a little over clippy's 128-byte threshold, and errors are the cold path.
#![allow(clippy::result_large_err)]

mod behaviour;
pub mod blobs;
pub mod config;
mod driver;
pub mod error;
pub mod gossip;
pub mod handle;
pub mod identity;
pub mod stats;
pub mod store;
pub mod topic;
pub mod wire;

pub use blobs::FetchProgress;
pub use config::NetConfig;
pub use error::NetError;
pub use handle::{
    GossipMessage, InboundRequest, MsgId, NetEvent, NetHandle, Network, Responder, Verdict,
};
pub use identity::{IdentityError, account_of, libp2p_keypair, peer_id_of};
pub use stats::NetStats;
pub use store::{BlobStore, BlobWriter, StoreError, TempSweep};
pub use topic::Topic;

/// Re-exported so that callers name addresses and peers without depending on libp2p.
pub use libp2p::{Multiaddr, PeerId};

#[cfg(test)]
use tempfile as _;
