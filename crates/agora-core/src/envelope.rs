//! Signed envelopes.
//!
//! Everything that moves value or commits a party is sent as a [`Signed<T>`]: the payload,
//! who signed it, on which chain, with which nonce. The signature covers the canonical
//! encoding of `(domain tag, chain id, nonce, signer, payload)`, so
//!
//! - a signature made for one message kind cannot be replayed as another (the domain tag,
//!   fixed per payload type by [`Domain`]),
//! - a signature made on a test network cannot be replayed on another (the chain id),
//! - a signature cannot be replayed on the same chain (the nonce, which the ledger requires
//!   to be exactly the signer's next one).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::hash::Hash;
use crate::identity::{AccountId, Keypair, Signature, SignatureError};

/// A payload type's domain-separation tag. Each kind of signed message has its own, e.g.
/// `"agora/ledger-tx/v1"`.
pub trait Domain {
    /// The tag, unique per message kind and version.
    const TAG: &'static str;
}

/// Names one network. Signatures made for one chain never verify on another.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChainId(pub String);

impl ChainId {
    /// A chain id from its name.
    pub fn new(name: impl Into<String>) -> ChainId {
        ChainId(name.into())
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

/// A payload signed by `signer` for `chain_id` with `nonce`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The account that signed and is bound by the payload.
    pub signer: AccountId,
    /// The network the signature is valid on.
    pub chain_id: ChainId,
    /// The signer's sequence number for this message kind.
    pub nonce: u64,
    /// What was signed.
    pub body: T,
    /// ed25519 over [`Signed::signing_bytes`].
    pub signature: Signature,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Signed for a different network.
    #[error("signed for chain {found:?} but this is chain {expected:?}")]
    WrongChain {
        /// This network.
        expected: ChainId,
        /// The chain named in the envelope.
        found: ChainId,
    },
    /// The signature does not check out.
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
}

impl<T: Serialize + Domain> Signed<T> {
    /// Signs `body` with `key` for `chain_id` and `nonce`.
    pub fn sign(key: &Keypair, chain_id: &ChainId, nonce: u64, body: T) -> Signed<T> {
        let signer = key.account();
        let bytes = signing_bytes(chain_id, nonce, &signer, &body);
        Signed {
            signer,
            chain_id: chain_id.clone(),
            nonce,
            signature: key.sign(&bytes),
            body,
        }
    }

    /// The exact bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        signing_bytes(&self.chain_id, self.nonce, &self.signer, &self.body)
    }

    /// Checks the chain id and the signature. Nonces are the caller's business (the
    /// ledger knows each account's next one).
    pub fn verify(&self, chain_id: &ChainId) -> Result<(), EnvelopeError> {
        self.check_chain(chain_id)?;
        self.signer.verify(&self.signing_bytes(), &self.signature)?;
        Ok(())
    }

    /// Checks only the chain id, for callers that verify signatures in a batch.
    pub fn check_chain(&self, chain_id: &ChainId) -> Result<(), EnvelopeError> {
        if &self.chain_id != chain_id {
            return Err(EnvelopeError::WrongChain {
                expected: chain_id.clone(),
                found: self.chain_id.clone(),
            });
        }
        Ok(())
    }

    /// The envelope's id: the hash of its full canonical encoding, signature included.
    pub fn id(&self) -> Hash {
        Hash::of(&canonical::encode(self))
    }
}

fn signing_bytes<T: Serialize + Domain>(
    chain_id: &ChainId,
    nonce: u64,
    signer: &AccountId,
    body: &T,
) -> Vec<u8> {
    canonical::encode(&(T::TAG, chain_id, nonce, signer, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct Note(String);
    impl Domain for Note {
        const TAG: &'static str = "agora/test-note/v1";
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    struct OtherNote(String);
    impl Domain for OtherNote {
        const TAG: &'static str = "agora/test-other/v1";
    }

    #[test]
    fn verifies_on_its_chain_only() {
        let key = Keypair::from_seed("k");
        let chain = ChainId::new("devnet");
        let env = Signed::sign(&key, &chain, 0, Note("hi".into()));
        assert!(env.verify(&chain).is_ok());
        assert!(matches!(
            env.verify(&ChainId::new("mainnet")),
            Err(EnvelopeError::WrongChain { .. })
        ));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let key = Keypair::from_seed("k");
        let chain = ChainId::new("devnet");
        let env = Signed::sign(&key, &chain, 0, Note("hi".into()));
        let mut bumped = env.clone();
        bumped.nonce = 1;
        assert!(bumped.verify(&chain).is_err());
        let mut edited = env.clone();
        edited.body = Note("ho".into());
        assert!(edited.verify(&chain).is_err());
        let mut resigned = env.clone();
        resigned.chain_id = ChainId::new("other");
        assert!(resigned.verify(&ChainId::new("other")).is_err());
    }

    #[test]
    fn domain_separates_message_kinds() {
        let key = Keypair::from_seed("k");
        let chain = ChainId::new("devnet");
        let env = Signed::sign(&key, &chain, 0, Note("x".into()));
        let forged = Signed {
            signer: env.signer,
            chain_id: env.chain_id.clone(),
            nonce: env.nonce,
            body: OtherNote("x".into()),
            signature: env.signature,
        };
        assert!(forged.verify(&chain).is_err());
    }

    #[test]
    fn canonical_round_trip() {
        let key = Keypair::from_seed("k");
        let env = Signed::sign(&key, &ChainId::new("c"), 7, Note("payload".into()));
        let bytes = canonical::encode(&env);
        let back: Signed<Note> = canonical::decode(&bytes).unwrap();
        assert_eq!(back, env);
        assert!(back.verify(&ChainId::new("c")).is_ok());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(canonical::decode::<Signed<Note>>(&trailing).is_err());
    }
}
