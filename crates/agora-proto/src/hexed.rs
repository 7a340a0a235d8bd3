//! Canonical bytes as hex text, for carrying signed payloads inside JSON.

use agora_core::canonical::{self, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a hex-encoded payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HexedError {
    /// Not hex text.
    #[error("not hex: {0}")]
    Hex(#[from] hex::FromHexError),
    /// Hex, but not the canonical encoding of the expected message.
    #[error("not a canonical {what}: {source}")]
    Decode {
        /// What was expected.
        what: &'static str,
        /// The decoder's complaint.
        source: CodecError,
    },
}

/// `value`'s canonical encoding as lower-case hex.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> String {
    hex::encode(canonical::encode(value))
}

/// Decodes hex of a canonical encoding; `what` names the message in the error.
pub fn decode<T: DeserializeOwned>(text: &str, what: &'static str) -> Result<T, HexedError> {
    let bytes = hex::decode(text.trim())?;
    canonical::decode(&bytes).map_err(|source| HexedError::Decode { what, source })
}
