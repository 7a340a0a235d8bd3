//! The sealed-blob format.
//!
//! ```text
//! header   = MAGIC (16 bytes) ‖ owner account (32) ‖ STREAM nonce prefix (7)
//! body     = segment* last-segment
//! segment  = ChaCha20-Poly1305(64 KiB of plaintext) ‖ tag (16)
//! last     = ChaCha20-Poly1305(0..=64 KiB) ‖ tag (16), sealed with STREAM's last flag
//! ```
//!
//! Every segment's nonce is the prefix, its 32-bit position and the last flag
//! (`aead-stream`'s `StreamBE32`); its associated data is the whole header. A blob is
//! therefore authenticated segment by segment and as a whole: reordering, dropping,
//! appending or truncating segments, or editing the header (say, to claim another owner),
//! makes some segment fail to open. The nonce prefix is random per blob, so one data key
//! may seal several blobs, though each blob gets its own key in practice.
//!
//! The owner named in the header is the account the blob is for (the buyer, for both a
//! private order's inputs and its outputs). The market reads it to decide who may fetch
//! the blob ([`crate::access`]); it grants nothing cryptographically — only a key wrap does.

use std::io::{Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use agora_core::AccountId;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

/// The first bytes of every sealed blob: format and version.
pub const MAGIC: [u8; 16] = *b"agora-sealed/v1\n";
/// Bytes of the STREAM nonce prefix (the 12-byte nonce less the 5 bytes STREAM uses).
const NONCE_PREFIX_BYTES: usize = 7;
/// Bytes of the header: magic, owner, nonce prefix.
pub const HEADER_LEN: usize = MAGIC.len() + 32 + NONCE_PREFIX_BYTES;
/// Plaintext bytes per segment.
pub const SEGMENT_BYTES: usize = 64 * 1024;
/// Bytes of each segment's authentication tag.
const TAG_BYTES: usize = 16;

/// Why a blob could not be sealed or opened. Every opening failure means the same to the
/// caller: the bytes must not be used.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The bytes do not start with the sealed-blob tag.
    #[error(
        "not a sealed blob: it does not start with the agora-sealed/v1 header (a plaintext blob, or a corrupted one)"
    )]
    NotSealed,
    /// The blob ends inside its header or before its last segment.
    #[error("the sealed blob is cut short: {0}")]
    Truncated(&'static str),
    /// A segment failed authentication.
    #[error(
        "segment {segment} of the sealed blob does not authenticate: it was altered, truncated or reordered, or the data key is not the one it was sealed under"
    )]
    Tampered {
        /// The position of the first segment that failed.
        segment: u64,
    },
    /// More segments than the 32-bit STREAM counter allows (256 TiB).
    #[error("the blob is too large to seal (more than 2^32 segments of 64 KiB)")]
    TooLarge,
    /// The OS random source failed.
    #[error("the OS random source failed: {0}")]
    Random(String),
    /// Reading the input or writing the output failed.
    #[error("reading or writing the blob: {0}")]
    Io(#[from] std::io::Error),
}

/// A blob's symmetric key: 32 random bytes, one per blob.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A fresh key from the OS random source.
    pub fn generate() -> Result<DataKey, SealError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(DataKey(key))
    }

    /// A key from its bytes (as unwrapped from a [`crate::KeyWrap`]).
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(bytes)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&self.0.into())
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The header of a sealed blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    /// The account the blob is for.
    pub owner: AccountId,
    nonce_prefix: [u8; NONCE_PREFIX_BYTES],
}

impl SealedHeader {
    fn fresh(owner: AccountId) -> Result<SealedHeader, SealError> {
        let mut nonce_prefix = [0u8; NONCE_PREFIX_BYTES];
        getrandom::fill(&mut nonce_prefix).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(SealedHeader {
            owner,
            nonce_prefix,
        })
    }

    /// The header's bytes: the associated data of every segment and of every key wrap.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..MAGIC.len()].copy_from_slice(&MAGIC);
        out[MAGIC.len()..MAGIC.len() + 32].copy_from_slice(self.owner.as_bytes());
        out[MAGIC.len() + 32..].copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Reads a header from the first [`HEADER_LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<SealedHeader, SealError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(SealError::NotSealed);
        }
        if bytes.len() < HEADER_LEN {
            return Err(SealError::Truncated("it ends inside its header"));
        }
        let mut owner = [0u8; 32];
        owner.copy_from_slice(&bytes[MAGIC.len()..MAGIC.len() + 32]);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_BYTES];
        nonce_prefix.copy_from_slice(&bytes[MAGIC.len() + 32..HEADER_LEN]);
        Ok(SealedHeader {
            owner: AccountId(owner),
            nonce_prefix,
        })
    }
}

/// The header of `prefix` if it starts like a sealed blob (the market's check of which
/// blobs are private; nothing is authenticated here).
pub fn is_sealed(prefix: &[u8]) -> Option<SealedHeader> {
    SealedHeader::parse(prefix).ok()
}

/// The size of a sealed blob whose plaintext is `plain_len` bytes.
pub fn sealed_len(plain_len: u64) -> u64 {
    let segments = plain_len.div_ceil(SEGMENT_BYTES as u64).max(1);
    HEADER_LEN as u64 + plain_len + segments * TAG_BYTES as u64
}

/// Seals `plaintext` for `owner` under `key`.
pub fn seal(key: &DataKey, owner: AccountId, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::with_capacity(sealed_len(plaintext.len() as u64) as usize);
    seal_stream(key, owner, plaintext, &mut out)?;
    Ok(out)
}

/// Opens a sealed blob held in memory: its header and its plaintext.
pub fn open(key: &DataKey, sealed: &[u8]) -> Result<(SealedHeader, Vec<u8>), SealError> {
    let mut out = Vec::with_capacity(sealed.len().saturating_sub(HEADER_LEN));
    let header = open_stream(key, sealed, &mut out)?;
    Ok((header, out))
}

/// Seals everything `reader` yields into `writer`, one segment in memory at a time;
/// returns the sealed size.
pub fn seal_stream(
    key: &DataKey,
    owner: AccountId,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<u64, SealError> {
    let header = SealedHeader::fresh(owner)?;
    let aad = header.to_bytes();
    writer.write_all(&aad)?;
    let mut written = HEADER_LEN as u64;
    let mut encryptor = EncryptorBE32::from_aead(key.cipher(), &header.nonce_prefix.into());
    let mut current = Vec::with_capacity(SEGMENT_BYTES + TAG_BYTES);
    let mut next = Vec::with_capacity(SEGMENT_BYTES + TAG_BYTES);
    read_up_to(&mut reader, &mut current, SEGMENT_BYTES)?;
    loop {
        // A segment is the last one when nothing follows it; reading one ahead tells.
        read_up_to(&mut reader, &mut next, SEGMENT_BYTES)?;
        if next.is_empty() {
            encryptor
                .encrypt_last_in_place(&aad, &mut current)
                .map_err(|_| SealError::TooLarge)?;
            writer.write_all(&current)?;
            written += current.len() as u64;
            writer.flush()?;
            return Ok(written);
        }
        encryptor
            .encrypt_next_in_place(&aad, &mut current)
            .map_err(|_| SealError::TooLarge)?;
        writer.write_all(&current)?;
        written += current.len() as u64;
        std::mem::swap(&mut current, &mut next);
    }
}

/// Opens a sealed blob from `reader` into `writer`, one segment in memory at a time.
///
/// Each segment is authenticated before its plaintext is written, but a blob found
/// tampered at segment `k` has had segments before `k` written already: the caller must
/// discard whatever `writer` holds when this fails (write to a temporary file and rename
/// on success, as the blob store does).
pub fn open_stream(
    key: &DataKey,
    mut reader: impl Read,
    mut writer: impl Write,
) -> Result<SealedHeader, SealError> {
    let mut head = Vec::with_capacity(HEADER_LEN);
    read_up_to(&mut reader, &mut head, HEADER_LEN)?;
    let header = SealedHeader::parse(&head)?;
    let aad = header.to_bytes();
    let mut decryptor = DecryptorBE32::from_aead(key.cipher(), &header.nonce_prefix.into());
    let mut current = Vec::with_capacity(SEGMENT_BYTES + TAG_BYTES);
    let mut next = Vec::with_capacity(SEGMENT_BYTES + TAG_BYTES);
    read_up_to(&mut reader, &mut current, SEGMENT_BYTES + TAG_BYTES)?;
    let mut segment: u64 = 0;
    loop {
        if current.len() < TAG_BYTES {
            return Err(SealError::Truncated("it ends before its last segment"));
        }
        read_up_to(&mut reader, &mut next, SEGMENT_BYTES + TAG_BYTES)?;
        if next.is_empty() {
            decryptor
                .decrypt_last_in_place(&aad, &mut current)
                .map_err(|_| SealError::Tampered { segment })?;
            writer.write_all(&current)?;
            writer.flush()?;
            return Ok(header);
        }
        if current.len() < SEGMENT_BYTES + TAG_BYTES {
            // Only the last segment may be short.
            return Err(SealError::Tampered { segment });
        }
        decryptor
            .decrypt_next_in_place(&aad, &mut current)
            .map_err(|_| SealError::Tampered { segment })?;
        writer.write_all(&current)?;
        std::mem::swap(&mut current, &mut next);
        segment += 1;
    }
}

/// Replaces `buf`'s contents with up to `limit` bytes from `reader`, fewer only at its end.
fn read_up_to(reader: &mut impl Read, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<()> {
    buf.clear();
    reader.take(limit as u64).read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner() -> AccountId {
        agora_core::Keypair::from_seed("buyer").account()
    }

    #[test]
    fn sizes_are_as_computed() {
        let key = DataKey::generate().unwrap();
        for len in [
            0,
            1,
            SEGMENT_BYTES - 1,
            SEGMENT_BYTES,
            SEGMENT_BYTES + 1,
            3 * SEGMENT_BYTES,
        ] {
            let sealed = seal(&key, owner(), &vec![7u8; len]).unwrap();
            assert_eq!(sealed.len() as u64, sealed_len(len as u64), "{len}");
        }
    }

    #[test]
    fn the_header_names_the_owner_and_is_recognised() {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, owner(), b"scene").unwrap();
        assert_eq!(is_sealed(&sealed).map(|h| h.owner), Some(owner()));
        assert!(is_sealed(b"plain text input").is_none());
        assert!(matches!(
            open(&key, b"plain text"),
            Err(SealError::NotSealed)
        ));
    }

    #[test]
    fn a_claimed_owner_change_fails_authentication() {
        let key = DataKey::generate().unwrap();
        let mut sealed = seal(&key, owner(), b"scene").unwrap();
        let stranger = agora_core::Keypair::from_seed("stranger").account();
        sealed[MAGIC.len()..MAGIC.len() + 32].copy_from_slice(stranger.as_bytes());
        assert!(matches!(
            open(&key, &sealed),
            Err(SealError::Tampered { segment: 0 })
        ));
    }

    #[test]
    fn dropping_the_last_segment_is_detected() {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, owner(), &vec![1u8; 2 * SEGMENT_BYTES + 10]).unwrap();
        let cut = HEADER_LEN + 2 * (SEGMENT_BYTES + TAG_BYTES);
        assert!(matches!(
            open(&key, &sealed[..cut]),
            Err(SealError::Tampered { segment: 1 })
        ));
        assert!(matches!(
            open(&key, &sealed[..HEADER_LEN]),
            Err(SealError::Truncated(_))
        ));
        assert!(matches!(
            open(&key, &sealed[..20]),
            Err(SealError::Truncated(_))
        ));
    }

    #[test]
    fn swapped_segments_are_detected() {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, owner(), &vec![3u8; 3 * SEGMENT_BYTES]).unwrap();
        let seg = SEGMENT_BYTES + TAG_BYTES;
        let mut swapped = sealed.clone();
        let (a, b) = (HEADER_LEN, HEADER_LEN + seg);
        swapped[a..a + seg].copy_from_slice(&sealed[b..b + seg]);
        swapped[b..b + seg].copy_from_slice(&sealed[a..a + seg]);
        assert!(matches!(
            open(&key, &swapped),
            Err(SealError::Tampered { segment: 0 })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn sealing_then_opening_gives_the_plaintext_back(
            data in proptest::collection::vec(any::<u8>(), 0..(3 * SEGMENT_BYTES + 100)),
        ) {
            let key = DataKey::generate().unwrap();
            let sealed = seal(&key, owner(), &data).unwrap();
            let (header, opened) = open(&key, &sealed).unwrap();
            prop_assert_eq!(header.owner, owner());
            prop_assert_eq!(opened, data);
        }

        #[test]
        fn another_key_opens_nothing(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let sealed = seal(&DataKey::generate().unwrap(), owner(), &data).unwrap();
            let other = DataKey::generate().unwrap();
            prop_assert!(
                matches!(open(&other, &sealed), Err(SealError::Tampered { segment: 0 })),
                "a wrong key must fail at the first segment"
            );
        }

        #[test]
        fn any_flipped_bit_is_refused(
            data in proptest::collection::vec(any::<u8>(), 1..(2 * SEGMENT_BYTES)),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let key = DataKey::generate().unwrap();
            let mut sealed = seal(&key, owner(), &data).unwrap();
            let i = at.index(sealed.len());
            sealed[i] ^= 1 << bit;
            prop_assert!(open(&key, &sealed).is_err(), "flipping bit {} of byte {} went unnoticed", bit, i);
        }

        #[test]
        fn any_truncation_or_extension_is_refused(
            data in proptest::collection::vec(any::<u8>(), 0..(2 * SEGMENT_BYTES + 50)),
            cut in any::<prop::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 1..40),
        ) {
            let key = DataKey::generate().unwrap();
            let sealed = seal(&key, owner(), &data).unwrap();
            let shorter = &sealed[..cut.index(sealed.len())];
            prop_assert!(open(&key, shorter).is_err());
            let mut longer = sealed.clone();
            longer.extend_from_slice(&extra);
            prop_assert!(open(&key, &longer).is_err());
        }
    }
}
