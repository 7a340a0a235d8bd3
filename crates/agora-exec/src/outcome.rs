//! What a finished job produced, and the canonical digest that verification compares.
//!
//! The digest covers only what an honest rerun must reproduce exactly: the exit code,
//! stdout, stderr and the sorted output names with their hashes. Timing and peak memory
//! are reported but left out, because they vary between machines.

use std::time::Duration;

use agora_core::{Fuel, Hash};
use serde::{Deserialize, Serialize};

/// Domain tag of the result digest; bump the version if its inputs ever change.
pub const RESULT_DIGEST_TAG: &str = "agora.exec.result.v1";

/// The result of a job that ran to completion (any exit code).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The job's id.
    pub job_id: Hash,
    /// The content hash of the module that ran.
    pub module_hash: Hash,
    /// The exit code: 0 when `_start` returned, else the code given to `proc_exit`.
    pub exit_code: i32,
    /// Captured standard output.
    pub stdout: Captured,
    /// Captured standard error.
    pub stderr: Captured,
    /// Regular files the job left in `/output`, sorted by name.
    pub outputs: Vec<OutputFile>,
    /// Fuel consumed: the exact, reproducible measure of work.
    pub fuel_used: Fuel,
    /// `fuel_used` in compute units, for display (billing uses `fuel_used`).
    pub compute_units: f64,
    /// Wall-clock time of instantiation plus run (not reproducible).
    pub wall_time: Duration,
    /// The largest linear memory the job reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Where the compiled module came from.
    pub module_source: ModuleSource,
    /// The canonical result digest (see [`result_digest`]).
    pub digest: Hash,
}

/// Where the compiled code of a run came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleSource {
    /// Compiled for this run.
    Compiled,
    /// Loaded from the on-disk module cache.
    DiskCache,
    /// Already loaded in this executor.
    MemoryCache,
}

/// A captured output stream, cut at its limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The bytes kept, followed by a truncation marker line if any were dropped.
    #[serde(with = "text_or_hex")]
    pub data: Vec<u8>,
    /// How many bytes the job wrote in all.
    pub total_bytes: u64,
    /// Whether bytes were dropped.
    pub truncated: bool,
}

impl Captured {
    /// Builds a capture from the kept bytes and the total written, appending a marker
    /// line when bytes were dropped so that a reader cannot mistake it for the whole.
    pub fn new(stream: &str, mut kept: Vec<u8>, total_bytes: u64) -> Self {
        let truncated = total_bytes > kept.len() as u64;
        if truncated {
            let marker = format!(
                "\n[agora: {stream} truncated: {} of {total_bytes} bytes kept]\n",
                kept.len()
            );
            kept.extend_from_slice(marker.as_bytes());
        }
        Captured {
            data: kept,
            total_bytes,
            truncated,
        }
    }

    /// The captured bytes as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }
}

/// What a job that failed had done before it stopped: the stdout and stderr it wrote
/// (bounded by the same limits as a finished job's) and the fuel it burnt. Carried by the
/// [`ExecError`](crate::ExecError) of a run-time failure so that a buyer sees the job's
/// last words next to the error, not the error alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartialRun {
    /// Standard output written before the failure.
    pub stdout: Captured,
    /// Standard error written before the failure.
    pub stderr: Captured,
    /// Fuel burnt before the failure (machine-dependent after a timeout).
    pub fuel_used: Fuel,
}

impl Captured {
    /// The last `max_bytes` bytes kept (cut forward to a character boundary), as text with
    /// invalid UTF-8 replaced; what a failure report carries of each stream.
    pub fn tail(&self, max_bytes: usize) -> String {
        let text = self.text();
        let mut start = text.len().saturating_sub(max_bytes);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }
}

/// One file from `/output`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The path under `/output`, with `/` between components.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// blake3 hash of the content.
    pub hash: Hash,
    /// The content. Not serialized: records carry the hash and content travels as a blob.
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// The canonical digest of a result: exit code, stdout, stderr, then each output's name and
/// hash in name order, all length-prefixed under [`RESULT_DIGEST_TAG`].
pub fn result_digest(exit_code: i32, stdout: &[u8], stderr: &[u8], outputs: &[OutputFile]) -> Hash {
    let mut sorted: Vec<&OutputFile> = outputs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let code = exit_code.to_le_bytes();
    let count = (sorted.len() as u64).to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![&code, stdout, stderr, &count];
    for file in &sorted {
        parts.push(file.name.as_bytes());
        parts.push(file.hash.as_bytes());
    }
    Hash::tagged(RESULT_DIGEST_TAG, &parts)
}

/// Serializes bytes as a plain string when they are UTF-8 (the usual case for logs), and as
/// `{"hex": "..."}` otherwise, so JSON records stay readable yet lossless.
mod text_or_hex {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Hex { hex: String },
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if !serializer.is_human_readable() {
            return serializer.serialize_bytes(bytes);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Repr::Text(text.to_owned()).serialize(serializer),
            Err(_) => Repr::Hex {
                hex: hex::encode(bytes),
            }
            .serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if !deserializer.is_human_readable() {
            return Vec::<u8>::deserialize(deserializer);
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Ok(text.into_bytes()),
            Repr::Hex { hex } => hex::decode(hex).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8]) -> OutputFile {
        OutputFile {
            name: name.into(),
            size: content.len() as u64,
            hash: Hash::of(content),
            data: content.to_vec(),
        }
    }

    #[test]
    fn digest_ignores_output_order_but_not_content() {
        let a = [file("a", b"1"), file("b", b"2")];
        let b = [file("b", b"2"), file("a", b"1")];
        assert_eq!(
            result_digest(0, b"x", b"", &a),
            result_digest(0, b"x", b"", &b)
        );
        let c = [file("a", b"1"), file("b", b"3")];
        assert_ne!(
            result_digest(0, b"x", b"", &a),
            result_digest(0, b"x", b"", &c)
        );
        assert_ne!(
            result_digest(0, b"x", b"", &a),
            result_digest(1, b"x", b"", &a)
        );
        assert_ne!(
            result_digest(0, b"x", b"", &a),
            result_digest(0, b"", b"x", &a)
        );
    }

    #[test]
    fn truncation_is_marked() {
        let c = Captured::new("stdout", b"abc".to_vec(), 10);
        assert!(c.truncated);
        assert!(c.text().contains("stdout truncated: 3 of 10 bytes kept"));
        let whole = Captured::new("stdout", b"abc".to_vec(), 3);
        assert!(!whole.truncated);
        assert_eq!(whole.data, b"abc");
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        let c = Captured::new("stderr", "abcé".as_bytes().to_vec(), 5);
        assert_eq!(c.tail(100), "abcé");
        assert_eq!(c.tail(2), "é");
        // One byte would split `é`: the tail starts after it instead.
        assert_eq!(c.tail(1), "");
        assert_eq!(c.tail(3), "cé");
    }

    #[test]
    fn captured_json_round_trips_text_and_binary() {
        for data in [b"hello\n".to_vec(), vec![0xff, 0x00, 0x80]] {
            let c = Captured {
                total_bytes: data.len() as u64,
                data,
                truncated: false,
            };
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Captured>(&json).unwrap(), c);
        }
    }
}
