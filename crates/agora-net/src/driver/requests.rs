//! The request-response protocols on the network task: RPC and blob chunks, both ways.

use libp2p::PeerId;
use libp2p::request_response::{self, ResponseChannel};
use tokio::sync::oneshot;
use tracing::debug;

use super::{Driver, Internal, Reply};
use crate::blobs;
use crate::error::NetError;
use crate::handle::{InboundRequest, NetEvent, Responder};
use crate::stats::Count;
use crate::wire::{self, ChunkRequest, RpcReply};

impl Driver {
    pub(super) fn send_chunk_request(
        &mut self,
        peer: PeerId,
        request: &ChunkRequest,
        reply: Reply<Vec<u8>>,
    ) {
        let frame = wire::encode(request);
        self.counters.bump(Count::ChunkRequestSent);
        let id = self.swarm.behaviour_mut().blobs.send_request(&peer, frame);
        self.pending_chunks.insert(id, (peer, reply));
    }

    pub(super) fn send_rpc(&mut self, peer: PeerId, data: Vec<u8>, reply: Reply<Vec<u8>>) {
        if data.len() > self.max_rpc {
            let _ = reply.send(Err(NetError::TooLarge {
                what: "request",
                size: data.len() as u64,
                limit: self.max_rpc as u64,
            }));
            return;
        }
        self.counters.bump(Count::RpcSent);
        let id = self.swarm.behaviour_mut().rpc.send_request(&peer, data);
        self.pending_rpc.insert(id, (peer, reply));
    }

    pub(super) fn on_rpc(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
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
    pub(super) fn on_rpc_request(
        &mut self,
        peer: PeerId,
        data: Vec<u8>,
        channel: ResponseChannel<Vec<u8>>,
    ) {
        self.counters.bump(Count::RpcReceived);
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

    pub(super) fn on_blobs(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.counters.bump(Count::ChunkRequestServed);
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
    pub(super) fn serve_chunk(&self, request: Vec<u8>, channel: ResponseChannel<Vec<u8>>) {
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
