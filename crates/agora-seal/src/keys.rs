//! The X25519 keys behind an ed25519 account.
//!
//! An account id is an ed25519 public key; its X25519 form is the same curve point in
//! Montgomery coordinates, and the matching X25519 secret is the clamped scalar the
//! ed25519 signing key already uses. Anyone can therefore seal to an account knowing only
//! its id, and only the holder of the account's secret can open. ed25519-dalek documents
//! both conversions, with the analysis of using one key pair for Ed25519 and an X25519 KEM
//! (Thormarker, <https://eprint.iacr.org/2021/509>).

use agora_core::{AccountId, Keypair};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hpke::Deserializable;
use hpke::kem::X25519HkdfSha256;

type Kem = X25519HkdfSha256;

/// Why an account cannot be sealed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The account id is not a valid ed25519 point, so it has no X25519 form.
    #[error("account {0} is not a valid ed25519 public key, so nothing can be sealed to it")]
    NotAPoint(AccountId),
}

/// An account's public X25519 key: what a data key is wrapped to.
#[derive(Clone)]
pub struct RecipientKey {
    pub(crate) account: AccountId,
    pub(crate) public: <Kem as hpke::Kem>::PublicKey,
}

impl RecipientKey {
    /// The X25519 key of `account`.
    pub fn of(account: &AccountId) -> Result<RecipientKey, KeyError> {
        let verifying = VerifyingKey::from_bytes(account.as_bytes())
            .map_err(|_| KeyError::NotAPoint(*account))?;
        let montgomery = verifying.to_montgomery().to_bytes();
        let public = <Kem as hpke::Kem>::PublicKey::from_bytes(&montgomery)
            .map_err(|_| KeyError::NotAPoint(*account))?;
        Ok(RecipientKey {
            account: *account,
            public,
        })
    }

    /// The account this key belongs to.
    pub fn account(&self) -> AccountId {
        self.account
    }
}

/// An account's secret X25519 key: what opens a data key wrapped to it.
pub struct OpeningKey {
    pub(crate) account: AccountId,
    pub(crate) secret: <Kem as hpke::Kem>::PrivateKey,
}

impl OpeningKey {
    /// The X25519 secret of `keypair`'s account.
    pub fn of(keypair: &Keypair) -> OpeningKey {
        let signing = SigningKey::from_bytes(&keypair.secret_bytes());
        let scalar = signing.to_scalar_bytes();
        // hpke takes any 32 bytes as an X25519 secret (clamped on use); it refuses only
        // a wrong length, which a `[u8; 32]` cannot have.
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(&scalar)
            .expect("every 32-byte string is an X25519 secret");
        OpeningKey {
            account: keypair.account(),
            secret,
        }
    }

    /// The account this key opens for.
    pub fn account(&self) -> AccountId {
        self.account
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpke::Serializable;

    #[test]
    fn the_recipient_key_is_the_public_half_of_the_opening_key() {
        let keypair = Keypair::from_seed("alice");
        let opening = OpeningKey::of(&keypair);
        let recipient = RecipientKey::of(&keypair.account()).unwrap();
        let derived = <Kem as hpke::Kem>::sk_to_pk(&opening.secret);
        assert_eq!(derived.to_bytes(), recipient.public.to_bytes());
    }

    #[test]
    fn an_account_id_off_the_curve_is_refused() {
        // y = 2 is not the y coordinate of any point on edwards25519.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let account = AccountId(bytes);
        assert!(matches!(
            RecipientKey::of(&account),
            Err(KeyError::NotAPoint(_))
        ));
    }
}
