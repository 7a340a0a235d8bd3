//! Reading an image archive: an index of the outer tarball's files (byte ranges of the archive,
//! held in memory or read from its file only when needed), format detection, and the
//! format-neutral [`ResolvedImage`] that the OCI layout ([`crate::oci`]) and `docker save`
//! ([`crate::docker`]) readers produce.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::config::RawConfig;
use crate::digest::Digest;
use crate::{ImageError, ImageLimits};

/// Largest JSON document (index, manifest, config) the readers accept.
pub(crate) const MAX_JSON_BYTES: u64 = 8 << 20;

/// How many symlink hops inside the outer archive are followed (docker save links repeated layers).
const MAX_LINK_HOPS: usize = 8;

/// Where the archive's bytes are.
enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a File),
}

/// The regular files (and symlinks) of the outer archive, by normalized path.
pub(crate) struct ArchiveIndex<'a> {
    source: Source<'a>,
    len: u64,
    files: HashMap<String, Range<u64>>,
    links: HashMap<String, String>,
}

impl<'a> ArchiveIndex<'a> {
    /// Walks the tar headers of `bytes`; refuses truncation and more than `max_entries` entries.
    pub(crate) fn parse(bytes: &'a [u8], max_entries: u64) -> Result<Self, ImageError> {
        Self::build(
            Source::Bytes(bytes),
            bytes.len() as u64,
            Cursor::new(bytes),
            max_entries,
        )
    }

    /// Like [`Self::parse`], reading only the tar headers of `file` (of length `len`); file
    /// contents are read later, when asked for.
    pub(crate) fn parse_file(
        file: &'a File,
        len: u64,
        max_entries: u64,
    ) -> Result<Self, ImageError> {
        Self::build(Source::File(file), len, file, max_entries)
    }

    fn build(
        source: Source<'a>,
        len: u64,
        reader: impl Read + Seek,
        max_entries: u64,
    ) -> Result<Self, ImageError> {
        let mut index = Self {
            source,
            len,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries_with_seek().map_err(outer_tar_error)?;
        for (count, entry) in entries.enumerate() {
            if count as u64 >= max_entries {
                return Err(ImageError::TooManyEntries { limit: max_entries });
            }
            index.add(&entry.map_err(outer_tar_error)?)?;
        }
        if index.files.is_empty() {
            return Err(ImageError::bad_archive(
                "not a tar archive, or an empty one",
            ));
        }
        Ok(index)
    }

    fn add<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<(), ImageError> {
        let Some(name) = std::str::from_utf8(&entry.path_bytes())
            .ok()
            .and_then(normalize)
        else {
            return Ok(()); // names the readers never look up
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let start = entry.raw_file_position();
                let end = start.checked_add(entry.size()).filter(|&e| e <= self.len);
                let end = end.ok_or_else(|| {
                    ImageError::bad_archive(format!("archive is truncated inside {name}"))
                })?;
                self.files.insert(name, start..end);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let joined = format!("{dir}/{}", String::from_utf8_lossy(&target));
                if let Some(target) = normalize(&joined) {
                    self.links.insert(name, target);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Where file `name` lies in the archive, following in-archive symlinks.
    fn range(&self, name: &str) -> Option<Range<u64>> {
        let mut name = normalize(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(range) = self.files.get(&name) {
                return Some(range.clone());
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// Whether the archive holds file `name`.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.range(name).is_some()
    }

    /// The length of file `name`; a missing file is a bad archive naming `what` it should hold.
    pub(crate) fn len_of(&self, name: &str, what: &str) -> Result<u64, ImageError> {
        let range = self.range(name).ok_or_else(|| missing(name, what))?;
        Ok(range.end - range.start)
    }

    /// The content of file `name` (borrowed from memory, or read from the archive file).
    pub(crate) fn require(&self, name: &str, what: &str) -> Result<Cow<'a, [u8]>, ImageError> {
        let range = self.range(name).ok_or_else(|| missing(name, what))?;
        match self.source {
            Source::Bytes(bytes) => Ok(Cow::Borrowed(
                &bytes[range.start as usize..range.end as usize],
            )),
            Source::File(file) => {
                let mut buf = vec![0; (range.end - range.start) as usize];
                file.read_exact_at(&mut buf, range.start).map_err(|e| {
                    ImageError::bad_archive(format!("reading {what} {name:?}: {e}"))
                })?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Reads a JSON document `name` holding `what`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<T, ImageError> {
        if self.len_of(name, what)? > MAX_JSON_BYTES {
            return Err(too_big_json(what));
        }
        parse_json(&self.require(name, what)?, what)
    }
}

fn missing(name: &str, what: &str) -> ImageError {
    ImageError::bad_archive(format!("{what} {name:?} is missing from the archive"))
}

fn too_big_json(what: &str) -> ImageError {
    ImageError::bad_archive(format!("{what} is larger than {MAX_JSON_BYTES} bytes"))
}

/// Parses a bounded JSON document; `what` names it in errors.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ImageError> {
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(too_big_json(what));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ImageError::bad_archive(format!("{what} is not valid JSON: {e}")))
}

fn outer_tar_error(e: std::io::Error) -> ImageError {
    ImageError::bad_archive(format!("outer tarball is corrupt: {e}"))
}

/// Lexically normalizes an in-archive name: drops `.` and empty parts, applies `..`
/// (None if it climbs above the top).
fn normalize(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// One layer as found in the archive; its bytes are read when it is unpacked.
pub(crate) struct LayerBlob {
    /// The layer's file in the archive.
    pub name: String,
    /// The media type from the manifest, if the format gives one.
    pub media_type: Option<String>,
    /// The digest of the stored (maybe compressed) bytes named by the manifest, if the format
    /// gives one.
    pub digest: Option<Digest>,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// A layer as a format reader found it: file name, media type, stored-bytes digest.
pub(crate) type FoundLayer = (String, Option<String>, Option<Digest>);

/// An image found in an archive: its verified config and its layers, bottom first.
pub(crate) struct ResolvedImage {
    /// Digest of the config JSON (checked).
    pub config_digest: Digest,
    /// The parsed config.
    pub config: RawConfig,
    /// Layers bottom first.
    pub layers: Vec<LayerBlob>,
}

/// Detects the format and resolves the image the archive holds.
pub(crate) fn resolve(
    index: &ArchiveIndex<'_>,
    limits: &ImageLimits,
) -> Result<ResolvedImage, ImageError> {
    let image = if index.contains("index.json") && index.contains("oci-layout") {
        crate::oci::resolve(index)?
    } else if index.contains("manifest.json") {
        crate::docker::resolve(index)?
    } else {
        return Err(ImageError::bad_archive(
            "neither an OCI layout (oci-layout + index.json) nor a docker save (manifest.json)",
        ));
    };
    if image.layers.len() > limits.max_layers as usize {
        return Err(ImageError::TooManyLayers {
            count: image.layers.len(),
            limit: limits.max_layers,
        });
    }
    if image.layers.is_empty() {
        return Err(ImageError::bad_archive("image has no layers"));
    }
    Ok(image)
}

/// Pairs manifest layers with the config's diff ids, refusing a count mismatch.
pub(crate) fn pair_layers(
    config: &RawConfig,
    found: Vec<FoundLayer>,
) -> Result<Vec<LayerBlob>, ImageError> {
    if found.len() != config.diff_ids.len() {
        return Err(ImageError::bad_archive(format!(
            "manifest lists {} layers but the config's rootfs.diff_ids lists {}",
            found.len(),
            config.diff_ids.len()
        )));
    }
    let layers = found.into_iter().zip(&config.diff_ids);
    Ok(layers
        .map(|((name, media_type, digest), diff_id)| LayerBlob {
            name,
            media_type,
            digest,
            diff_id: diff_id.clone(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn normalizes_archive_names() {
        assert_eq!(
            normalize("./blobs//sha256/x").as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("../b"), None);
        assert_eq!(normalize("./"), None);
    }
}
