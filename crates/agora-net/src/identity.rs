//! Binding between Agora accounts and libp2p peer ids.
//!
//! A node's libp2p identity is its agora ed25519 key, so the transport-level peer id and
//! the account that signs market messages are the same key. That lets the application
//! check that a gossip message was published by the account that signed it: map the
//! message's author [`PeerId`] with [`account_of`] and compare it with the signer.

use agora_core::{AccountId, Keypair};
use libp2p::PeerId;
use libp2p::identity::{self, PublicKey};

/// The multihash code of the identity "hash": small keys are embedded in the peer id as-is.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// Why a peer id and an account id could not be mapped onto each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The peer id hashes its key (non-ed25519 or too large a key) instead of embedding it.
    #[error("peer {0} does not embed its public key; only ed25519 peers map to accounts")]
    NotEmbedded(PeerId),
    /// The embedded key is not an ed25519 key.
    #[error("peer {0} uses a non-ed25519 key; agora peers must use their account key")]
    NotEd25519(PeerId),
    /// The account bytes are not a valid ed25519 public key.
    #[error("account {0} is not a valid ed25519 public key, so it has no peer id")]
    BadAccount(AccountId),
    /// The secret key was rejected by libp2p.
    #[error("the node key could not be turned into a libp2p identity: {0}")]
    BadSecret(String),
}

/// The libp2p keypair for an agora key (same ed25519 secret, same public key).
pub fn libp2p_keypair(key: &Keypair) -> Result<identity::Keypair, IdentityError> {
    // libp2p zeroizes the buffer it is given; the copy lives only for this call.
    let mut secret = key.secret_bytes();
    identity::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| IdentityError::BadSecret(e.to_string()))
}

/// The peer id that the holder of `account`'s key has on the network.
pub fn peer_id_of(account: &AccountId) -> Result<PeerId, IdentityError> {
    let key = identity::ed25519::PublicKey::try_from_bytes(account.as_bytes())
        .map_err(|_| IdentityError::BadAccount(*account))?;
    Ok(PublicKey::from(key).to_peer_id())
}

/// The account whose key `peer` holds.
pub fn account_of(peer: &PeerId) -> Result<AccountId, IdentityError> {
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return Err(IdentityError::NotEmbedded(*peer));
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest())
        .map_err(|_| IdentityError::NotEd25519(*peer))?;
    let ed = public
        .try_into_ed25519()
        .map_err(|_| IdentityError::NotEd25519(*peer))?;
    Ok(AccountId::from_bytes(ed.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_and_account_round_trip() {
        let key = Keypair::from_seed("provider-1");
        let peer = libp2p_keypair(&key).unwrap().public().to_peer_id();
        assert_eq!(peer_id_of(&key.account()).unwrap(), peer);
        assert_eq!(account_of(&peer).unwrap(), key.account());
    }

    #[test]
    fn other_key_types_do_not_map() {
        // A random peer id is a sha256 multihash, not an embedded ed25519 key.
        let random = PeerId::random();
        assert!(account_of(&random).is_err());
    }

    #[test]
    fn distinct_accounts_give_distinct_peers() {
        let a = peer_id_of(&Keypair::from_seed("a").account()).unwrap();
        let b = peer_id_of(&Keypair::from_seed("b").account()).unwrap();
        assert_ne!(a, b);
    }
}
