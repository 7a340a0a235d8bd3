//! The canonical byte encoding that signatures and hashes are computed over.
//!
//! We use `postcard`: a compact, deterministic serde format (fixed field order, varint
//! integers, no maps with unspecified order as long as callers use `BTreeMap`). Two honest
//! nodes that encode the same value always produce the same bytes, which is what a
//! signature or a Merkle leaf needs.

use serde::{Serialize, de::DeserializeOwned};

/// Why bytes could not be turned into a value (or, rarely, a value into bytes).
#[derive(Debug, thiserror::Error)]
#[error("canonical encoding: {0}")]
pub struct CodecError(#[from] postcard::Error);

/// Encodes `value` canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard only fails on writers that run out of room or on serde impls that
    // return custom errors; our types do neither, and `to_stdvec` grows as needed.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes a value from its canonical bytes, rejecting trailing garbage.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError(postcard::Error::DeserializeBadEncoding))
    }
}
