//! Sealed blobs for private orders: what the market stores and relays in place of a
//! buyer's inputs and a provider's outputs.
//!
//! A private blob is encrypted once under a fresh random [`DataKey`] and stored under the
//! hash of its ciphertext; who may read it is decided afterwards, by wrapping that data
//! key to each reader's public key. That split is what lets a buyer upload inputs before
//! the market has chosen a provider: the key wraps are posted once the order is assigned.
//!
//! - [`blob`]: the sealed-blob format. [`seal`] / [`open`] for bytes in memory,
//!   [`seal_stream`] / [`open_stream`] for large blobs in constant memory. The body is
//!   ChaCha20-Poly1305 under the STREAM construction (`aead-stream`'s `StreamBE32`):
//!   64 KiB segments, each authenticated with its position and a last-segment flag, so
//!   segments cannot be reordered, dropped or truncated unnoticed. The header (format tag,
//!   owner, nonce prefix) is the associated data of every segment.
//! - [`wrap`]: a [`KeyWrap`] seals a data key to one account with HPKE (RFC 9180, base mode,
//!   DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), bound to the blob's header.
//! - [`keys`]: the X25519 keys behind an account. Agora identities are ed25519; a party's
//!   encryption key is the birationally equivalent X25519 key of its account key
//!   (`to_montgomery` / `to_scalar_bytes` of ed25519-dalek), so no second key has to be
//!   published, registered or trusted. See docs/privacy.md for why that is sound here.
//! - [`grant`]: a signed [`KeyGrant`] carries an order's wrapped keys from the party that
//!   sealed the blobs to the parties that may read them.
//! - [`access`]: the signed request header a party shows to read a private blob.
//!
//! Pure: no I/O beyond the OS random source for fresh keys and nonces, and the
//! `Read`/`Write` the caller hands to the streaming functions.
#![warn(unused_crate_dependencies, missing_docs)]

pub mod access;
pub mod blob;
pub mod grant;
pub mod keys;
pub mod wrap;

pub use access::{AUTH_HEADER, AccessError, BlobAccess, MAX_ACCESS_SKEW_MS};
pub use blob::{
    DataKey, HEADER_LEN, MAGIC, SEGMENT_BYTES, SealError, SealedHeader, is_sealed, open,
    open_stream, seal, seal_stream, sealed_len,
};
pub use grant::{BlobKey, KeyGrant, MAX_GRANT_KEYS, SignedKeyGrant};
pub use keys::{KeyError, OpeningKey, RecipientKey};
pub use wrap::{KeyWrap, WrapError, unwrap_key, wrap_key};

#[cfg(test)]
use proptest as _;
