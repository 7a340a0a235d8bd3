//! ed25519 identities.
//!
//! Every participant (buyer, provider, market authority) is an ed25519 key pair. Its
//! public key *is* its [`AccountId`]; the text form is `ag` followed by the key in
//! base58, e.g. `ag7Yq3…`. Signatures use `verify_strict`, which rejects the malleable
//! and small-order edge cases that plain ed25519 verification lets through.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text prefix of an account id.
pub const ACCOUNT_PREFIX: &str = "ag";

/// A signing key. Its secret never leaves the process except through [`Keypair::secret_bytes`].
#[derive(Clone)]
pub struct Keypair(SigningKey);

impl Keypair {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Keypair, getrandom::Error> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        Ok(Keypair::from_secret(secret))
    }

    /// The key whose secret is `secret` (32 bytes).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair(SigningKey::from_bytes(&secret))
    }

    /// A key derived from a seed string, for tests, genesis fixtures and benchmarks only.
    pub fn from_seed(seed: &str) -> Keypair {
        Keypair::from_secret(*blake3::hash(seed.as_bytes()).as_bytes())
    }

    /// The 32 secret bytes, for writing a wallet file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The account this key controls.
    pub fn account(&self) -> AccountId {
        AccountId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.account())
    }
}

/// An account: the 32-byte ed25519 public key of the party that controls it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 32]);

impl AccountId {
    /// Checks `signature` over `message` by this account's key.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = self.verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid)
    }

    fn verifying_key(&self) -> Result<VerifyingKey, SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadPublicKey)?;
        // A small-order key (the identity point, say) has no secret that matters: batch
        // verification, which has no cofactor check, accepts signatures for it that anyone
        // can make. `verify_strict` refuses it anyway; refusing it here keeps the batch
        // paths (the ledger's block checks) from accepting what a strict check refuses.
        if key.is_weak() {
            return Err(SignatureError::BadPublicKey);
        }
        Ok(key)
    }

    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An account id made from any 32 bytes, for well-known accounts such as the burn
    /// address that nobody holds a key for.
    pub const fn from_bytes(bytes: [u8; 32]) -> AccountId {
        AccountId(bytes)
    }
}

/// Verifies many signatures at once, about twice as fast as one by one. Fails if any
/// one of them is bad; callers that need to know which re-check them singly.
pub fn verify_batch(
    messages: &[&[u8]],
    signatures: &[Signature],
    signers: &[AccountId],
) -> Result<(), SignatureError> {
    if messages.len() != signatures.len() || messages.len() != signers.len() {
        return Err(SignatureError::Invalid);
    }
    let keys = signers
        .iter()
        .map(AccountId::verifying_key)
        .collect::<Result<Vec<_>, _>>()?;
    let sigs: Vec<_> = signatures
        .iter()
        .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    ed25519_dalek::verify_batch(messages, &sigs, &keys).map_err(|_| SignatureError::Invalid)
}

/// An account's public key, decompressed once so that many signatures by the same
/// account can be checked without repeating that work (about a quarter of the cost of a
/// batched check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreparedKey(VerifyingKey);

impl PreparedKey {
    /// Checks `signature` over `message` (strict ed25519, as [`AccountId::verify`]).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl AccountId {
    /// The key decompressed for repeated verification.
    pub fn prepare(&self) -> Result<PreparedKey, SignatureError> {
        self.verifying_key().map(PreparedKey)
    }
}

/// [`verify_batch`] with keys prepared beforehand.
pub fn verify_batch_prepared(
    messages: &[&[u8]],
    signatures: &[Signature],
    keys: &[PreparedKey],
) -> Result<(), SignatureError> {
    if messages.len() != signatures.len() || messages.len() != keys.len() {
        return Err(SignatureError::Invalid);
    }
    let keys: Vec<VerifyingKey> = keys.iter().map(|k| k.0).collect();
    let sigs: Vec<_> = signatures
        .iter()
        .map(|s| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    ed25519_dalek::verify_batch(messages, &sigs, &keys).map_err(|_| SignatureError::Invalid)
}

/// Why a signature did not check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The account id is not a valid ed25519 public key.
    #[error("the signer's account id is not a valid ed25519 public key")]
    BadPublicKey,
    /// The signature does not match the message and key.
    #[error("the signature does not match the message and the signer's key")]
    Invalid,
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ACCOUNT_PREFIX}{}", bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.to_string();
        write!(f, "AccountId({}…)", &text[..text.len().min(10)])
    }
}

/// Text that is not an account id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid account id {0:?}: expected `ag` followed by a base58 ed25519 public key")]
pub struct ParseAccountError(pub String);

impl FromStr for AccountId {
    type Err = ParseAccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAccountError(s.to_owned());
        let body = s.trim().strip_prefix(ACCOUNT_PREFIX).ok_or_else(err)?;
        let mut out = [0u8; 32];
        let len = bs58::decode(body).onto(&mut out).map_err(|_| err())?;
        if len != 32 {
            return Err(err());
        }
        Ok(AccountId(out))
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(deserializer).map(AccountId)
        }
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..6]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&hex::encode(self.0))
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let bytes: Vec<u8> = if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            hex::decode(text).map_err(D::Error::custom)?
        } else {
            serde_bytes_vec(deserializer)?
        };
        let array: [u8; 64] = bytes
            .try_into()
            .map_err(|_| D::Error::custom("a signature is 64 bytes"))?;
        Ok(Signature(array))
    }
}

fn serde_bytes_vec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("64 signature bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(64);
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_bytes(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = Keypair::from_seed("alice");
        let sig = key.sign(b"hello");
        assert!(key.account().verify(b"hello", &sig).is_ok());
        assert_eq!(
            key.account().verify(b"hellp", &sig),
            Err(SignatureError::Invalid)
        );
        let other = Keypair::from_seed("bob");
        assert!(other.account().verify(b"hello", &sig).is_err());
    }

    /// Found by the `envelope` fuzz target: for the identity point as public key, `R` = the
    /// base point and `s` = 1 satisfy the batch equation for any message, so a batch
    /// check accepted a "signature" that anyone can make for that account.
    #[test]
    fn small_order_keys_are_refused_by_batch_verification_too() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let signer = AccountId::from_bytes(identity);
        let mut forged = [0u8; 64];
        forged[0] = 0x58;
        forged[1..32].fill(0x66);
        forged[32] = 1;
        let forged = Signature(forged);
        let message: &[u8] = b"transfer everything";
        // The ed25519 batch equation on its own accepts it.
        let raw = VerifyingKey::from_bytes(&identity).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&forged.0);
        assert!(ed25519_dalek::verify_batch(&[message], &[sig], &[raw]).is_ok());
        assert_eq!(
            signer.verify(message, &forged),
            Err(SignatureError::BadPublicKey)
        );
        assert_eq!(
            verify_batch(&[message], &[forged], &[signer]),
            Err(SignatureError::BadPublicKey)
        );
        assert_eq!(signer.prepare(), Err(SignatureError::BadPublicKey));
        // The all-zero account (a point of order 4) is no key either.
        assert!(AccountId::from_bytes([0; 32]).prepare().is_err());
    }

    #[test]
    fn account_text_round_trip() {
        let id = Keypair::from_seed("alice").account();
        let text = id.to_string();
        assert!(text.starts_with("ag"));
        assert_eq!(text.parse::<AccountId>().unwrap(), id);
        assert!("bogus".parse::<AccountId>().is_err());
        assert!("ag111".parse::<AccountId>().is_err());
    }

    #[test]
    fn batch_verification_catches_one_bad_signature() {
        let keys: Vec<_> = (0..8).map(|i| Keypair::from_seed(&i.to_string())).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let ids: Vec<_> = keys.iter().map(Keypair::account).collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(verify_batch(&refs, &sigs, &ids).is_ok());
        sigs[3] = keys[4].sign(&msgs[3]);
        assert!(verify_batch(&refs, &sigs, &ids).is_err());
    }

    #[test]
    fn prepared_keys_verify_like_account_ids() {
        let keys: Vec<_> = (0..4).map(|i| Keypair::from_seed(&i.to_string())).collect();
        let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 7]).collect();
        let mut sigs: Vec<_> = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let prepared: Vec<_> = keys
            .iter()
            .map(|k| k.account().prepare().unwrap())
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        assert!(verify_batch_prepared(&refs, &sigs, &prepared).is_ok());
        assert!(prepared[0].verify(&msgs[0], &sigs[0]).is_ok());
        sigs[2] = keys[1].sign(&msgs[2]);
        assert!(verify_batch_prepared(&refs, &sigs, &prepared).is_err());
        assert_eq!(
            prepared[2].verify(&msgs[2], &sigs[2]),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn signature_serde_both_ways() {
        let sig = Keypair::from_seed("a").sign(b"m");
        let json = serde_json::to_string(&sig).unwrap();
        assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), sig);
        let bin = crate::canonical::encode(&sig);
        assert_eq!(crate::canonical::decode::<Signature>(&bin).unwrap(), sig);
    }
}
