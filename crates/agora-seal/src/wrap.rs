//! Key wraps: a blob's data key sealed to one reader with HPKE (RFC 9180).
//!
//! Base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, single shot. The
//! associated data is the sealed blob's header, whose nonce prefix is random per blob, so
//! a wrap opens only for the blob it was made for: a wrap cannot be moved to another blob,
//! and a swapped header is caught here as well as by the blob's own segments.

use agora_core::AccountId;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use crate::blob::{DataKey, SealedHeader};
use crate::keys::{KeyError, OpeningKey, RecipientKey};

type Kem = X25519HkdfSha256;

/// The HPKE `info`: what the derived keys are for, so they are useless anywhere else.
const INFO: &[u8] = b"agora/seal/key-wrap/v1";

/// A data key sealed to one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    /// The account that can open it.
    pub recipient: AccountId,
    /// HPKE's encapsulated key (the sender's ephemeral X25519 public key).
    pub encapped: [u8; 32],
    /// The data key under the HPKE context's AEAD: 32 bytes and a 16-byte tag.
    pub sealed_key: Vec<u8>,
}

/// Why a data key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// The recipient has no X25519 form.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The wrap names another account.
    #[error(
        "the key wrap is for {recipient}, not for {you}; ask the buyer to wrap the key to {you}"
    )]
    NotForYou {
        /// Whom the wrap names.
        recipient: AccountId,
        /// Who tried to open it.
        you: AccountId,
    },
    /// The wrap does not open: made for another key or another blob, or altered.
    #[error(
        "the key wrap does not open with this account's key: it was made for another key or another blob, or it was altered"
    )]
    DoesNotOpen,
    /// HPKE could not seal (only if the OS random source fails).
    #[error("wrapping the key failed: {0}")]
    Seal(String),
}

/// Wraps `key` to `to` for the blob with `header`.
pub fn wrap_key(
    key: &DataKey,
    to: &RecipientKey,
    header: &SealedHeader,
) -> Result<KeyWrap, WrapError> {
    let aad = header.to_bytes();
    let (encapped, sealed_key) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &to.public,
        INFO,
        key.as_bytes(),
        &aad,
    )
    .map_err(|e| WrapError::Seal(e.to_string()))?;
    let mut enc = [0u8; 32];
    enc.copy_from_slice(&encapped.to_bytes());
    Ok(KeyWrap {
        recipient: to.account(),
        encapped: enc,
        sealed_key,
    })
}

/// Opens `wrap` with `with` for the blob with `header`.
pub fn unwrap_key(
    wrap: &KeyWrap,
    with: &OpeningKey,
    header: &SealedHeader,
) -> Result<DataKey, WrapError> {
    if wrap.recipient != with.account() {
        return Err(WrapError::NotForYou {
            recipient: wrap.recipient,
            you: with.account(),
        });
    }
    let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrap.encapped)
        .map_err(|_| WrapError::DoesNotOpen)?;
    let aad = header.to_bytes();
    let opened = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &with.secret,
        &encapped,
        INFO,
        &wrap.sealed_key,
        &aad,
    )
    .map_err(|_| WrapError::DoesNotOpen)?;
    let bytes: [u8; 32] = opened.try_into().map_err(|_| WrapError::DoesNotOpen)?;
    Ok(DataKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{open, seal};
    use agora_core::Keypair;
    use proptest::prelude::*;

    fn sealed_for(owner: &Keypair, data: &[u8]) -> (DataKey, Vec<u8>, SealedHeader) {
        let key = DataKey::generate().unwrap();
        let sealed = seal(&key, owner.account(), data).unwrap();
        let header = SealedHeader::parse(&sealed).unwrap();
        (key, sealed, header)
    }

    #[test]
    fn a_wrapped_key_opens_the_blob_for_its_recipient_only() {
        let buyer = Keypair::from_seed("buyer");
        let provider = Keypair::from_seed("provider");
        let stranger = Keypair::from_seed("stranger");
        let (key, sealed, header) = sealed_for(&buyer, b"private scene");
        let to_provider = RecipientKey::of(&provider.account()).unwrap();
        let wrap = wrap_key(&key, &to_provider, &header).unwrap();

        let unwrapped = unwrap_key(&wrap, &OpeningKey::of(&provider), &header).unwrap();
        assert_eq!(open(&unwrapped, &sealed).unwrap().1, b"private scene");

        assert!(matches!(
            unwrap_key(&wrap, &OpeningKey::of(&stranger), &header),
            Err(WrapError::NotForYou { .. })
        ));
        // Relabelled for the stranger, it still only opens with the provider's key.
        let mut relabelled = wrap.clone();
        relabelled.recipient = stranger.account();
        assert_eq!(
            unwrap_key(&relabelled, &OpeningKey::of(&stranger), &header),
            Err(WrapError::DoesNotOpen)
        );
    }

    #[test]
    fn a_wrap_opens_only_for_the_blob_it_was_made_for() {
        let buyer = Keypair::from_seed("buyer");
        let provider = Keypair::from_seed("provider");
        let (key, _, header) = sealed_for(&buyer, b"one");
        let (_, _, other_header) = sealed_for(&buyer, b"two");
        let wrap = wrap_key(
            &key,
            &RecipientKey::of(&provider.account()).unwrap(),
            &header,
        )
        .unwrap();
        assert_eq!(
            unwrap_key(&wrap, &OpeningKey::of(&provider), &other_header),
            Err(WrapError::DoesNotOpen)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn an_altered_wrap_does_not_open(at in 0usize..80, bit in 0u8..8) {
            let buyer = Keypair::from_seed("buyer");
            let provider = Keypair::from_seed("provider");
            let (key, _, header) = sealed_for(&buyer, b"x");
            let wrap = wrap_key(&key, &RecipientKey::of(&provider.account()).unwrap(), &header).unwrap();
            let mut altered = wrap.clone();
            if at < 32 {
                altered.encapped[at] ^= 1 << bit;
            } else {
                let i = (at - 32) % altered.sealed_key.len();
                altered.sealed_key[i] ^= 1 << bit;
            }
            prop_assert_eq!(
                unwrap_key(&altered, &OpeningKey::of(&provider), &header),
                Err(WrapError::DoesNotOpen)
            );
        }

        #[test]
        fn wraps_roundtrip_for_any_account(seed in "[a-z]{1,12}") {
            let reader = Keypair::from_seed(&seed);
            let buyer = Keypair::from_seed("buyer");
            let (key, _, header) = sealed_for(&buyer, b"x");
            let wrap = wrap_key(&key, &RecipientKey::of(&reader.account()).unwrap(), &header).unwrap();
            prop_assert_eq!(unwrap_key(&wrap, &OpeningKey::of(&reader), &header).unwrap(), key);
        }
    }
}
