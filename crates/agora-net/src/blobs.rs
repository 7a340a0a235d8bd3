//! Blob transfer: chunked, pipelined, hash-checked.
//!
//! A fetch asks the serving peer for consecutive chunks of a blob over the blob protocol,
//! keeping a small window of requests in flight. Chunks are consumed in order, so the
//! blake3 hash is computed incrementally while each chunk is appended to a temp file in
//! the store; only after the last chunk is the hash compared and the file renamed into
//! place. Memory use is therefore about `window × chunk` whatever the blob size, and a
//! blob whose content does not match its hash never becomes visible: its temp file is
//! deleted, the fetch fails with [`NetError::HashMismatch`] and the serving peer loses
//! score.

use std::path::PathBuf;

use agora_core::Hash;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use libp2p::PeerId;

use crate::config::MAX_CHUNK_BYTES;
use crate::error::NetError;
use crate::handle::NetHandle;
use crate::store::{BlobStore, BlobWriter, StoreError};
use crate::wire::{self, ChunkRequest, ChunkResponse};

/// Answers one chunk request from the local store (runs on the blocking pool).
pub(crate) fn serve_chunk(store: &BlobStore, request: &[u8]) -> ChunkResponse {
    let request: ChunkRequest = match wire::decode(request) {
        Ok(request) => request,
        Err(e) => return ChunkResponse::BadRequest(format!("undecodable chunk request: {e}")),
    };
    if request.len as usize > MAX_CHUNK_BYTES {
        return ChunkResponse::BadRequest(format!(
            "chunk of {} bytes requested; at most {MAX_CHUNK_BYTES} are served",
            request.len
        ));
    }
    let total = match store.size(&request.hash) {
        Ok(total) => total,
        Err(StoreError::NotFound(_)) => return ChunkResponse::NotFound,
        Err(e) => return ChunkResponse::Unavailable(e.to_string()),
    };
    // A sealed blob belongs to a private order: only its parties may read it, and the
    // blob protocol does not know who they are. Every chunk is checked, not only the
    // first, so asking from an offset does not get around it.
    if is_sealed_blob(store, &request.hash) {
        return ChunkResponse::BadRequest(format!(
            "blob {} is private (sealed); it is served only over the market's HTTP API, to a party to its order (docs/privacy.md)",
            request.hash
        ));
    }
    match store.read_range(&request.hash, request.offset, u64::from(request.len)) {
        Ok(data) => ChunkResponse::Chunk { total, data },
        Err(StoreError::NotFound(_)) => ChunkResponse::NotFound,
        Err(e @ StoreError::OutOfRange { .. }) => ChunkResponse::BadRequest(e.to_string()),
        Err(e) => ChunkResponse::Unavailable(e.to_string()),
    }
}

/// Whether the stored blob starts with the sealed-blob tag of `agora-seal`.
fn is_sealed_blob(store: &BlobStore, hash: &Hash) -> bool {
    store
        .read_range(hash, 0, agora_seal::MAGIC.len() as u64)
        .is_ok_and(|head| head == agora_seal::MAGIC)
}

/// One fetch in progress: who serves it, what it is, how big.
struct Transfer<'a> {
    handle: &'a NetHandle,
    peer: PeerId,
    hash: Hash,
    total: u64,
}

/// How far a fetch has come, reported after each chunk is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchProgress {
    /// Bytes received, checked for size and written so far.
    pub received: u64,
    /// Size of the whole blob, as announced by the serving peer.
    pub total: u64,
}

/// Receives [`FetchProgress`] reports.
pub(crate) type ProgressFn<'a> = &'a mut (dyn FnMut(FetchProgress) + Send);

/// Fetches `hash` from `peer` into the handle's store; see the module docs.
pub(crate) async fn fetch(
    handle: &NetHandle,
    peer: PeerId,
    hash: Hash,
    progress: ProgressFn<'_>,
) -> Result<PathBuf, NetError> {
    let store = handle.store().clone();
    if store.contains(&hash) {
        return Ok(store.path_of(&hash));
    }
    let result = fetch_into_store(handle, &store, peer, hash, progress).await;
    if matches!(
        result,
        Err(NetError::HashMismatch { .. } | NetError::BadChunk { .. })
    ) {
        handle.penalize(peer).await;
    }
    result.map(|()| store.path_of(&hash))
}

async fn fetch_into_store(
    handle: &NetHandle,
    store: &BlobStore,
    peer: PeerId,
    hash: Hash,
    progress: ProgressFn<'_>,
) -> Result<(), NetError> {
    let limits = handle.limits;
    // The first chunk also tells us the size, so an oversized blob is refused after one
    // chunk rather than after downloading it.
    let (total, first) = request_chunk(handle, peer, hash, 0, limits.chunk_bytes).await?;
    if total > limits.max_blob_bytes {
        return Err(NetError::TooLarge {
            what: "blob",
            size: total,
            limit: limits.max_blob_bytes,
        });
    }
    let transfer = Transfer {
        handle,
        peer,
        hash,
        total,
    };
    let expected_first = u64::from(limits.chunk_bytes).min(total);
    transfer.check_len(0, expected_first, &first)?;
    let mut writer = write(store.writer()?, first).await?;
    progress(FetchProgress {
        received: writer.written(),
        total,
    });
    let mut next = expected_first;
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < limits.window && next < total {
            let len = u64::from(limits.chunk_bytes).min(total - next);
            in_flight.push_back(transfer.chunk(next, len));
            next += len;
        }
        let Some(chunk) = in_flight.next().await else {
            break;
        };
        writer = write(writer, chunk?).await?;
        progress(FetchProgress {
            received: writer.written(),
            total,
        });
    }
    commit(writer, peer, hash).await
}

impl Transfer<'_> {
    /// Requests `len` bytes at `offset` and checks they are exactly what was asked for.
    async fn chunk(&self, offset: u64, len: u64) -> Result<Vec<u8>, NetError> {
        // `len` is at most `chunk_bytes`, a u32.
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let (total, data) = request_chunk(self.handle, self.peer, self.hash, offset, len32).await?;
        if total != self.total {
            return Err(self.bad(format!("blob size changed from {} to {total}", self.total)));
        }
        self.check_len(offset, len, &data)?;
        Ok(data)
    }

    fn check_len(&self, offset: u64, expected: u64, data: &[u8]) -> Result<(), NetError> {
        if data.len() as u64 == expected {
            Ok(())
        } else {
            Err(self.bad(format!(
                "chunk at {offset} has {} bytes, expected {expected}",
                data.len()
            )))
        }
    }

    fn bad(&self, reason: String) -> NetError {
        NetError::BadChunk {
            peer: self.peer,
            hash: self.hash,
            reason,
        }
    }
}

/// One chunk round trip, with the answer decoded into `(blob size, bytes)`.
async fn request_chunk(
    handle: &NetHandle,
    peer: PeerId,
    hash: Hash,
    offset: u64,
    len: u32,
) -> Result<(u64, Vec<u8>), NetError> {
    let frame = handle
        .chunk(peer, ChunkRequest { hash, offset, len })
        .await?;
    let bad = |reason: String| NetError::BadChunk { peer, hash, reason };
    match wire::decode::<ChunkResponse>(&frame)
        .map_err(|e| bad(format!("undecodable answer: {e}")))?
    {
        ChunkResponse::Chunk { total, data } => Ok((total, data)),
        ChunkResponse::NotFound => Err(NetError::BlobNotFound { peer, hash }),
        ChunkResponse::BadRequest(reason) | ChunkResponse::Unavailable(reason) => {
            Err(NetError::Remote { peer, reason })
        }
    }
}

/// Appends a chunk on the blocking pool (file writes and hashing would stall the runtime).
async fn write(mut writer: BlobWriter, data: Vec<u8>) -> Result<BlobWriter, NetError> {
    tokio::task::spawn_blocking(move || writer.write(&data).map(|()| writer))
        .await
        .map_err(|e| NetError::Internal(format!("blob writer task failed: {e}")))?
        .map_err(NetError::from)
}

/// Checks the hash and moves the blob into place, or discards it.
async fn commit(writer: BlobWriter, peer: PeerId, hash: Hash) -> Result<(), NetError> {
    let committed = tokio::task::spawn_blocking(move || writer.commit(Some(hash)))
        .await
        .map_err(|e| NetError::Internal(format!("blob writer task failed: {e}")))?;
    match committed {
        Ok(_) => Ok(()),
        Err(StoreError::HashMismatch { expected, actual }) => Err(NetError::HashMismatch {
            peer,
            expected,
            actual,
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(content: &[u8]) -> (tempfile::TempDir, BlobStore, Hash) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let hash = store.put_bytes(content).unwrap();
        (dir, store, hash)
    }

    fn ask(store: &BlobStore, hash: Hash, offset: u64, len: u32) -> ChunkResponse {
        serve_chunk(store, &wire::encode(&ChunkRequest { hash, offset, len }))
    }

    #[test]
    fn serves_the_requested_range_and_the_total() {
        let (_dir, store, hash) = store_with(b"0123456789");
        let answer = ask(&store, hash, 3, 4);
        assert_eq!(
            answer,
            ChunkResponse::Chunk {
                total: 10,
                data: b"3456".to_vec()
            }
        );
        // The last chunk is short rather than an error.
        let tail = ask(&store, hash, 8, 4);
        assert_eq!(
            tail,
            ChunkResponse::Chunk {
                total: 10,
                data: b"89".to_vec()
            }
        );
    }

    #[test]
    fn garbage_and_impossible_requests_get_typed_refusals() {
        let (_dir, store, hash) = store_with(b"0123456789");
        let garbage = serve_chunk(&store, &[0xff; 7]);
        assert!(
            matches!(garbage, ChunkResponse::BadRequest(_)),
            "{garbage:?}"
        );
        let past_end = ask(&store, hash, 11, 1);
        assert!(
            matches!(past_end, ChunkResponse::BadRequest(_)),
            "{past_end:?}"
        );
        let huge = ask(&store, hash, 0, MAX_CHUNK_BYTES as u32 + 1);
        assert!(matches!(huge, ChunkResponse::BadRequest(_)), "{huge:?}");
        assert_eq!(
            ask(&store, Hash::of(b"other"), 0, 1),
            ChunkResponse::NotFound
        );
    }
}
