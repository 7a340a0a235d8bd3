//! Key grants: the signed message that hands blobs' data keys to the parties of an order.
//!
//! The buyer posts one after each assignment, wrapping every sealed input's key to the
//! provider that was assigned (a replica, an auditor). The provider posts one with its
//! delivery, wrapping every sealed output's key (and those of its sealed stdout and
//! stderr) to the buyer. The market keeps them with the order and hands them to the
//! order's parties only; it cannot open them.

use agora_core::{Domain, Hash, Signed};
use serde::{Deserialize, Serialize};

use crate::wrap::KeyWrap;

/// Most keys one grant may carry (an order's inputs, or outputs plus stdout and stderr).
pub const MAX_GRANT_KEYS: usize = 256;

/// One blob's data key, wrapped to one reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobKey {
    /// The sealed blob (the hash of its ciphertext).
    pub blob: Hash,
    /// Its data key, wrapped to the reader.
    pub wrap: KeyWrap,
}

/// Data keys for blobs of one order, signed by the party that sealed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGrant {
    /// The order the blobs belong to.
    pub order_id: Hash,
    /// The keys.
    pub keys: Vec<BlobKey>,
}

impl Domain for KeyGrant {
    const TAG: &'static str = "agora/key-grant/v1";
}

/// A grant signed by the buyer (inputs) or a provider (outputs).
pub type SignedKeyGrant = Signed<KeyGrant>;

impl KeyGrant {
    /// The wrap of `blob`'s key addressed to `reader`, if this grant has one.
    pub fn key_for(&self, blob: &Hash, reader: &agora_core::AccountId) -> Option<&KeyWrap> {
        self.keys
            .iter()
            .find(|k| &k.blob == blob && &k.wrap.recipient == reader)
            .map(|k| &k.wrap)
    }
}
