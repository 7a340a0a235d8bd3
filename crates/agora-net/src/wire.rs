//! Wire formats of the two request-response protocols.
//!
//! Both protocols carry length-prefixed frames (a big-endian `u32` length, then the
//! bytes), bounded by a per-protocol limit that is checked *before* anything is
//! allocated, so a peer cannot make us buffer more than the limit. The frame contents
//! are decoded by the node, not by the codec: a frame that does not decode gets a typed
//! error answer instead of silently killing the stream.
//!
//! - `/agora/blob/1`: the request is a [`ChunkRequest`], the answer a [`ChunkResponse`],
//!   both in `postcard` (the canonical encoding).
//! - `/agora/rpc/1`: the request is opaque application bytes, the answer an [`RpcReply`].

use std::io;

use agora_core::Hash;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use serde::{Deserialize, Serialize};

/// The blob chunk protocol.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/blob/1");
/// The generic request-response protocol.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/rpc/1");

/// Room for the envelope around a chunk or RPC payload (enum tag, lengths, error text).
pub(crate) const FRAME_OVERHEAD: usize = 1024;

/// A request for bytes `offset .. offset + len` of blob `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The blob.
    pub hash: Hash,
    /// First byte wanted.
    pub offset: u64,
    /// How many bytes; the server may send fewer only at the end of the blob.
    pub len: u32,
}

/// The answer to a [`ChunkRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkResponse {
    /// The requested bytes and the blob's total size.
    Chunk {
        /// Size of the whole blob.
        total: u64,
        /// The bytes from the requested offset.
        #[serde(with = "raw_bytes")]
        data: Vec<u8>,
    },
    /// The server does not hold this blob.
    NotFound,
    /// The request could not be decoded or asked for an impossible range.
    BadRequest(String),
    /// The server could not read its own store.
    Unavailable(String),
}

/// The answer to an RPC request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcReply {
    /// The application's answer.
    Ok(#[serde(with = "raw_bytes")] Vec<u8>),
    /// The application (or the node, for malformed or unanswered requests) refused.
    Err(String),
}

/// Byte payloads as one length-prefixed byte string. Serde's default for `Vec<u8>` is a
/// sequence of integers, handled one element at a time; for megabyte chunks that costs
/// more CPU than the noise encryption, so payloads are copied in one piece instead.
mod raw_bytes {
    use std::fmt;

    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
}

/// Encodes a wire value canonically.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    agora_core::canonical::encode(value)
}

/// Decodes a wire value, rejecting trailing bytes.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    agora_core::canonical::decode(bytes).map_err(|e| e.to_string())
}

/// A codec for length-prefixed byte frames with separate request and response limits.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_request: usize,
    max_response: usize,
}

impl FrameCodec {
    /// A codec that refuses requests over `max_request` and responses over
    /// `max_response` bytes.
    pub fn new(max_request: usize, max_response: usize) -> FrameCodec {
        FrameCodec {
            max_request,
            max_response,
        }
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {limit}"),
        ));
    }
    let mut frame = vec![0u8; len];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: &[u8],
    limit: usize,
) -> io::Result<()> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|len| *len as usize <= limit)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {limit}",
                    frame.len()
                ),
            )
        })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

impl Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    #[test]
    fn frames_round_trip_within_limit() {
        let mut codec = FrameCodec::new(16, 16);
        let mut buf = Cursor::new(Vec::new());
        block_on(codec.write_request(&BLOB_PROTOCOL, &mut buf, b"abc".to_vec())).unwrap();
        let mut read = Cursor::new(buf.into_inner());
        let got = block_on(codec.read_request(&BLOB_PROTOCOL, &mut read)).unwrap();
        assert_eq!(got, b"abc");
    }

    #[test]
    fn oversized_frames_are_refused_both_ways() {
        let mut codec = FrameCodec::new(4, 4);
        let mut buf = Cursor::new(Vec::new());
        let err = block_on(codec.write_request(&RPC_PROTOCOL, &mut buf, vec![0; 5])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A length prefix claiming 4 GiB must fail without allocating it.
        let mut read = Cursor::new(vec![0xff, 0xff, 0xff, 0xff]);
        let err = block_on(codec.read_request(&RPC_PROTOCOL, &mut read)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut codec = FrameCodec::new(16, 16);
        let mut read = Cursor::new(vec![0, 0, 0, 8, 1, 2]);
        assert!(block_on(codec.read_response(&RPC_PROTOCOL, &mut read)).is_err());
    }

    #[test]
    fn chunk_payload_round_trips_as_one_byte_string() {
        let data: Vec<u8> = (0..=255).collect();
        let chunk = ChunkResponse::Chunk {
            total: 1000,
            data: data.clone(),
        };
        let frame = encode(&chunk);
        // tag + varint total + varint length + the bytes themselves, nothing per byte.
        assert_eq!(frame.len(), 1 + 2 + 2 + data.len());
        assert_eq!(decode::<ChunkResponse>(&frame).unwrap(), chunk);
        let reply = RpcReply::Ok(data);
        assert_eq!(decode::<RpcReply>(&encode(&reply)).unwrap(), reply);
    }

    #[test]
    fn garbage_does_not_decode_as_a_chunk_request() {
        assert!(decode::<ChunkRequest>(&[0xde, 0xad, 0xbe, 0xef]).is_err());
        let req = ChunkRequest {
            hash: Hash::of(b"x"),
            offset: 5,
            len: 10,
        };
        assert_eq!(decode::<ChunkRequest>(&encode(&req)).unwrap(), req);
    }
}
