//! EVM keys for Agora identities.
//!
//! Every Agora identity is an ed25519 [`Keypair`]; on an EVM chain the same participant
//! needs a secp256k1 key. Rather than a second secret to back up, the EVM key is derived
//! from the ed25519 secret seed with HKDF-SHA256 (RFC 5869): no salt, input key material
//! the 32-byte seed, info `agora/evm-key/v1`, 32 bytes of output. In the astronomically
//! unlikely case those bytes are not a valid secp256k1 scalar (zero or ≥ the group
//! order), derivation retries with info `agora/evm-key/v1` followed by a big-endian `u32`
//! counter 1, 2, …. The derivation is one-way: the EVM key reveals nothing of the seed.

use agora_core::Keypair;
use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use hkdf::Hkdf;
use sha2::Sha256;

/// The HKDF info string of the derivation (version 1).
pub const EVM_KEY_INFO: &[u8] = b"agora/evm-key/v1";

/// The EVM signing key of an Agora identity.
pub fn evm_signer(keypair: &Keypair) -> PrivateKeySigner {
    let seed = keypair.secret_bytes();
    let hkdf = Hkdf::<Sha256>::new(None, &seed);
    for counter in 0u32.. {
        let mut info = EVM_KEY_INFO.to_vec();
        if counter > 0 {
            info.extend_from_slice(&counter.to_be_bytes());
        }
        let mut scalar = [0u8; 32];
        hkdf.expand(&info, &mut scalar)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        if let Ok(signer) = PrivateKeySigner::from_bytes(&scalar.into()) {
            return signer;
        }
    }
    unreachable!("a valid scalar is found with overwhelming probability on the first try")
}

/// The EVM address of an Agora identity (of its derived key).
pub fn evm_address(keypair: &Keypair) -> Address {
    evm_signer(keypair).address()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed vector, computed independently with Node.js (`crypto.hkdfSync("sha256",
    /// seed, "", "agora/evm-key/v1", 32)`, the secp256k1 public key from `crypto.createECDH`
    /// and keccak-256 from js-sha3), so the derivation cannot drift silently.
    #[test]
    fn derivation_matches_the_published_vector() {
        let keypair = Keypair::from_secret([7u8; 32]);
        let signer = evm_signer(&keypair);
        assert_eq!(
            hex::encode(signer.to_bytes()),
            "61c2e05da139163d8bad51e86a803e8cd038be30ec12456577a7bac486a3bcf8"
        );
        assert_eq!(
            format!("{:?}", signer.address()).to_lowercase(),
            "0x546ed74a66afa3433707fe486dc0a4ef8cc94475"
        );
    }

    #[test]
    fn different_identities_get_different_keys_and_derivation_is_stable() {
        let a = Keypair::from_seed("agora-dev/user/0");
        let b = Keypair::from_seed("agora-dev/user/1");
        assert_eq!(evm_address(&a), evm_address(&a));
        assert_ne!(evm_address(&a), evm_address(&b));
    }
}
