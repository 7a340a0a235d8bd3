//! The signed header a party shows to read a private blob.
//!
//! `GET /v1/blobs/{hash}` of a sealed blob needs an [`AUTH_HEADER`] holding the hex of a
//! [`Signed`] [`BlobAccess`]: the method and path being requested, the order the requester
//! is a party to (if it is not the blob's owner), and when it was made. The market accepts
//! it for [`MAX_ACCESS_SKEW_MS`] either side of its own clock, on its own chain only, for
//! that one method and path. A captured header can be replayed within that minute for
//! the same read, by anyone who can see it in transit — reads change nothing, and the
//! bytes are ciphertext to all but the key holders anyway.

use agora_core::{AccountId, ChainId, Domain, Hash, Keypair, Signed, canonical};
use serde::{Deserialize, Serialize};

/// The request header that carries a signed [`BlobAccess`].
pub const AUTH_HEADER: &str = "x-agora-auth";
/// How far a [`BlobAccess`]'s time may be from the market's clock.
pub const MAX_ACCESS_SKEW_MS: u64 = 60_000;
/// Longest header accepted (a signed access is about 200 bytes of hex).
const MAX_HEADER_BYTES: usize = 2_048;

/// "I, the signer, am reading this path now, as a party to this order."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobAccess {
    /// The HTTP method, upper case.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The order through which the signer may read the blob; `None` when the signer is
    /// the blob's owner.
    pub order_id: Option<Hash>,
    /// Unix ms when the request was signed.
    pub issued_ms: u64,
}

impl Domain for BlobAccess {
    const TAG: &'static str = "agora/blob-access/v1";
}

/// Why an access header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// Not hex of a signed access, or too long.
    #[error(
        "the {AUTH_HEADER} header is not a signed blob access (hex of its canonical encoding): {0}"
    )]
    Malformed(String),
    /// The signature or the chain is wrong.
    #[error("the {AUTH_HEADER} header's signature does not check out on this market's chain: {0}")]
    BadSignature(String),
    /// Signed for another request.
    #[error(
        "the {AUTH_HEADER} header was signed for {signed}, not for {asked}; sign the request being made"
    )]
    OtherRequest {
        /// What it was signed for.
        signed: String,
        /// What was asked.
        asked: String,
    },
    /// Too old, or from the future.
    #[error(
        "the {AUTH_HEADER} header was signed at {issued_ms} ms, more than {MAX_ACCESS_SKEW_MS} ms from the market's clock ({now_ms} ms); sign a fresh one (and check the clock)"
    )]
    Stale {
        /// When it says it was signed.
        issued_ms: u64,
        /// The market's clock.
        now_ms: u64,
    },
}

impl BlobAccess {
    /// The header value for `method path`, signed by `key` at `now_ms`.
    pub fn header(
        key: &Keypair,
        chain: &ChainId,
        method: &str,
        path: &str,
        order_id: Option<Hash>,
        now_ms: u64,
    ) -> String {
        let access = BlobAccess {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            order_id,
            issued_ms: now_ms,
        };
        hex::encode(canonical::encode(&Signed::sign(key, chain, now_ms, access)))
    }

    /// Checks a header value against the request `method path` at the market's `now_ms`;
    /// returns who signed it and the order it names.
    pub fn check(
        value: &str,
        chain: &ChainId,
        method: &str,
        path: &str,
        now_ms: u64,
    ) -> Result<(AccountId, Option<Hash>), AccessError> {
        if value.len() > MAX_HEADER_BYTES {
            return Err(AccessError::Malformed(format!(
                "{} bytes, at most {MAX_HEADER_BYTES}",
                value.len()
            )));
        }
        let bytes = hex::decode(value.trim()).map_err(|e| AccessError::Malformed(e.to_string()))?;
        let signed: Signed<BlobAccess> =
            canonical::decode(&bytes).map_err(|e| AccessError::Malformed(e.to_string()))?;
        signed
            .verify(chain)
            .map_err(|e| AccessError::BadSignature(e.to_string()))?;
        let access = &signed.body;
        if !access.method.eq_ignore_ascii_case(method) || access.path != path {
            return Err(AccessError::OtherRequest {
                signed: format!("{} {}", access.method, access.path),
                asked: format!("{} {path}", method.to_ascii_uppercase()),
            });
        }
        if access.issued_ms.abs_diff(now_ms) > MAX_ACCESS_SKEW_MS {
            return Err(AccessError::Stale {
                issued_ms: access.issued_ms,
                now_ms,
            });
        }
        Ok((signed.signer, access.order_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/blobs/ab";

    #[test]
    fn a_fresh_header_for_this_request_names_its_signer() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("provider");
        let order = Some(Hash::of(b"order"));
        let header = BlobAccess::header(&key, &chain, "get", PATH, order, 1_000_000);
        assert_eq!(
            BlobAccess::check(&header, &chain, "GET", PATH, 1_030_000),
            Ok((key.account(), order))
        );
    }

    #[test]
    fn stale_foreign_or_forged_headers_are_refused() {
        let chain = ChainId::new("test");
        let key = Keypair::from_seed("provider");
        let header = BlobAccess::header(&key, &chain, "GET", PATH, None, 1_000_000);
        assert!(matches!(
            BlobAccess::check(
                &header,
                &chain,
                "GET",
                PATH,
                1_000_000 + MAX_ACCESS_SKEW_MS + 1
            ),
            Err(AccessError::Stale { .. })
        ));
        assert!(matches!(
            BlobAccess::check(&header, &chain, "GET", "/v1/blobs/cd", 1_000_000),
            Err(AccessError::OtherRequest { .. })
        ));
        assert!(matches!(
            BlobAccess::check(&header, &ChainId::new("other"), "GET", PATH, 1_000_000),
            Err(AccessError::BadSignature(_))
        ));
        assert!(matches!(
            BlobAccess::check("zz", &chain, "GET", PATH, 1_000_000),
            Err(AccessError::Malformed(_))
        ));
        // Someone else's signature over a body naming the provider does not pass.
        let mut forged: Signed<BlobAccess> =
            canonical::decode(&hex::decode(&header).unwrap()).unwrap();
        forged.signer = Keypair::from_seed("stranger").account();
        let forged = hex::encode(canonical::encode(&forged));
        assert!(matches!(
            BlobAccess::check(&forged, &chain, "GET", PATH, 1_000_000),
            Err(AccessError::BadSignature(_))
        ));
    }
}
