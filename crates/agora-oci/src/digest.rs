//! SHA-256 content digests (`sha256:<64 hex>`), checking blobs against them, and OCI chain ids.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// A validated `sha256:<64 lowercase hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>`; any other algorithm or malformed hex is a bad archive.
    pub(crate) fn parse(s: &str) -> Result<Self, ImageError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ImageError::bad_archive(format!("digest {s:?} is not sha256")))?;
        Self::from_hex(hex)
            .ok_or_else(|| ImageError::bad_archive(format!("malformed digest {s:?}")))
    }

    /// Accepts exactly 64 lowercase hex characters.
    pub(crate) fn from_hex(hex: &str) -> Option<Self> {
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self {
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        Self {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The 64 hex characters, without the algorithm prefix.
    pub(crate) fn hex(&self) -> &str {
        &self.hex
    }

    /// Refuses `bytes` unless they hash to this digest; `what` names the blob in the error.
    pub(crate) fn verify(&self, what: &str, bytes: &[u8]) -> Result<(), ImageError> {
        self.check(what, &Self::of(bytes))
    }

    /// Refuses unless `actual` equals this (expected) digest.
    pub(crate) fn check(&self, what: &str, actual: &Digest) -> Result<(), ImageError> {
        if self == actual {
            return Ok(());
        }
        Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: self.to_string(),
            actual: actual.to_string(),
        })
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// OCI ChainID of layers given bottom first by their diff ids:
/// `chain(L0) = diff(L0)`, `chain(L0..Ln) = sha256(chain(L0..Ln-1) + " " + diff(Ln))`.
pub(crate) fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let (first, rest) = diff_ids.split_first()?;
    let chain = rest.iter().fold(first.clone(), |chain, diff| {
        Digest::of(format!("{chain} {diff}").as_bytes())
    });
    Some(chain)
}

/// A reader that hashes and counts everything read through it, and fails past `limit` bytes
/// (so a decompression bomb stops early).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`; reading more than `limit` bytes is an error.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Whether more than the limit was read (the reader then failed).
    pub(crate) fn over_limit(&self) -> bool {
        self.count > self.limit
    }

    /// Reads the rest of the stream (tar padding after the end marker) and returns its digest.
    pub(crate) fn finish(mut self) -> io::Result<Digest> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(Digest {
            hex: hex::encode(self.hasher.finalize()),
        })
    }
}

/// The message of the error [`HashingReader`] returns past its limit.
pub(crate) const OVER_LIMIT: &str = "decompressed layer exceeds the unpacked size limit";

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(OVER_LIMIT));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse(&d.to_string().to_uppercase()).is_err());
    }

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(std::slice::from_ref(&a)), Some(a.clone()));
        let expect = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a, b]), Some(expect));
        assert_eq!(chain_id(&[]), None);
    }

    #[test]
    fn hashing_reader_stops_at_limit() {
        let data = vec![7u8; 100];
        let mut r = HashingReader::new(&data[..], 50);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(err.to_string(), OVER_LIMIT);
        let r = HashingReader::new(&data[..], 100);
        assert_eq!(r.finish().unwrap(), Digest::of(&data));
    }
}
