//! A hand-rolled libp2p peer that speaks the blob protocol's framing but sends whatever
//! it likes: the node must answer garbage with a typed refusal and keep serving.

mod common;

use std::time::Duration;

use agora_core::{Hash, canonical};
use agora_net::wire::{BLOB_PROTOCOL, ChunkRequest, ChunkResponse, FrameCodec};
use agora_net::{Multiaddr, PeerId};
use common::{node, within};
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, noise, tcp, yamux};

type RawBehaviour = request_response::Behaviour<FrameCodec>;

/// A client-only peer on the blob protocol with a fresh random identity.
fn raw_peer() -> Swarm<RawBehaviour> {
    let codec = FrameCodec::new(16 << 20, 16 << 20);
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| {
            RawBehaviour::with_codec(
                codec,
                [(BLOB_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default(),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Sends `frame` to `peer` and returns the raw answer frame, or the failure as text.
async fn exchange(
    swarm: &mut Swarm<RawBehaviour>,
    peer: PeerId,
    addr: &Multiaddr,
    frame: Vec<u8>,
) -> Result<Vec<u8>, String> {
    swarm.add_peer_address(peer, addr.clone());
    let id = swarm.behaviour_mut().send_request(&peer, frame);
    within("an answer from the node", async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn garbage_on_the_blob_protocol_gets_a_typed_refusal() {
    let server = node("sturdy-blob-server", &[]).await;
    let hash = server.handle.store().put_bytes(b"still served").unwrap();
    let addr = server.handle.listen_addrs().await.unwrap().remove(0);
    let peer = server.handle.peer_id();
    let mut raw = raw_peer();

    let answer = exchange(&mut raw, peer, &addr, vec![0xde, 0xad, 0xbe, 0xef])
        .await
        .unwrap();
    let refusal: ChunkResponse = canonical::decode(&answer).unwrap();
    assert!(
        matches!(refusal, ChunkResponse::BadRequest(_)),
        "{refusal:?}"
    );

    // A frame over the request limit is not even read; the stream fails, not the node.
    let oversized = vec![0u8; 64 * 1024];
    assert!(exchange(&mut raw, peer, &addr, oversized).await.is_err());

    // The node still serves honest requests, to this peer and others.
    let request = ChunkRequest {
        hash,
        offset: 6,
        len: 100,
    };
    let answer = exchange(&mut raw, peer, &addr, canonical::encode(&request))
        .await
        .unwrap();
    let chunk: ChunkResponse = canonical::decode(&answer).unwrap();
    assert_eq!(
        chunk,
        ChunkResponse::Chunk {
            total: 12,
            data: b"served".to_vec()
        }
    );
    let missing = ChunkRequest {
        hash: Hash::of(b"absent"),
        offset: 0,
        len: 1,
    };
    let answer = exchange(&mut raw, peer, &addr, canonical::encode(&missing))
        .await
        .unwrap();
    assert_eq!(
        canonical::decode::<ChunkResponse>(&answer).unwrap(),
        ChunkResponse::NotFound
    );
}
