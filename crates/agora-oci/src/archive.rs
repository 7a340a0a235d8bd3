//! Reading an image archive: an index of the outer tarball's files (zero-copy slices of the
//! archive bytes), format detection, and the format-neutral [`ResolvedImage`] that the OCI
//! layout ([`crate::oci`]) and `docker save` ([`crate::docker`]) readers produce.

use std::collections::HashMap;
use std::io::Cursor;
use std::ops::Range;

use crate::config::RawConfig;
use crate::digest::Digest;
use crate::{ImageError, ImageLimits};

/// Largest JSON document (index, manifest, config) the readers accept.
pub(crate) const MAX_JSON_BYTES: usize = 8 << 20;

/// How many symlink hops inside the outer archive are followed (docker save links repeated layers).
const MAX_LINK_HOPS: usize = 8;

/// The regular files (and symlinks) of the outer archive, by normalized path.
pub(crate) struct ArchiveIndex<'a> {
    bytes: &'a [u8],
    files: HashMap<String, Range<usize>>,
    links: HashMap<String, String>,
}

impl<'a> ArchiveIndex<'a> {
    /// Walks the tar headers of `bytes`; refuses truncation and more than `max_entries` entries.
    pub(crate) fn parse(bytes: &'a [u8], max_entries: u64) -> Result<Self, ImageError> {
        let mut index = Self {
            bytes,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let mut archive = tar::Archive::new(Cursor::new(bytes));
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

    fn add<R: std::io::Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<(), ImageError> {
        let Some(name) = std::str::from_utf8(&entry.path_bytes())
            .ok()
            .and_then(normalize)
        else {
            return Ok(()); // names the readers never look up
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let start = entry.raw_file_position();
                let end = start
                    .checked_add(entry.size())
                    .filter(|&e| e <= self.bytes.len() as u64);
                let end = end.ok_or_else(|| {
                    ImageError::bad_archive(format!("archive is truncated inside {name}"))
                })?;
                self.files.insert(name, start as usize..end as usize);
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

    /// The content of file `name`, following in-archive symlinks.
    pub(crate) fn get(&self, name: &str) -> Option<&'a [u8]> {
        let mut name = normalize(name)?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(range) = self.files.get(&name) {
                return Some(&self.bytes[range.clone()]);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    /// Like [`Self::get`], but a missing file is a bad archive naming `what` it should hold.
    pub(crate) fn require(&self, name: &str, what: &str) -> Result<&'a [u8], ImageError> {
        self.get(name).ok_or_else(|| {
            ImageError::bad_archive(format!("{what} {name:?} is missing from the archive"))
        })
    }

    /// Reads a JSON document `name` holding `what`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<T, ImageError> {
        parse_json(self.require(name, what)?, what)
    }
}

/// Parses a bounded JSON document; `what` names it in errors.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ImageError> {
    if bytes.len() > MAX_JSON_BYTES {
        return Err(ImageError::bad_archive(format!(
            "{what} is larger than {MAX_JSON_BYTES} bytes"
        )));
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

/// One layer as found in the archive, not yet checked against its compressed digest.
pub(crate) struct LayerBlob<'a> {
    /// The layer bytes as stored (maybe compressed).
    pub bytes: &'a [u8],
    /// The media type from the manifest, if the format gives one.
    pub media_type: Option<String>,
    /// The digest of `bytes` named by the manifest, if the format gives one.
    pub digest: Option<Digest>,
    /// The digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// An image found in an archive: its verified config and its layers, bottom first.
pub(crate) struct ResolvedImage<'a> {
    /// Digest of the config JSON (checked).
    pub config_digest: Digest,
    /// The parsed config.
    pub config: RawConfig,
    /// Layers bottom first.
    pub layers: Vec<LayerBlob<'a>>,
}

/// Detects the format and resolves the image the archive holds.
pub(crate) fn resolve<'a>(
    index: &ArchiveIndex<'a>,
    limits: &ImageLimits,
) -> Result<ResolvedImage<'a>, ImageError> {
    let image = if index.get("index.json").is_some() && index.get("oci-layout").is_some() {
        crate::oci::resolve(index)?
    } else if index.get("manifest.json").is_some() {
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
pub(crate) fn pair_layers<'a>(
    config: &RawConfig,
    blobs: Vec<(&'a [u8], Option<String>, Option<Digest>)>,
) -> Result<Vec<LayerBlob<'a>>, ImageError> {
    if blobs.len() != config.diff_ids.len() {
        return Err(ImageError::bad_archive(format!(
            "manifest lists {} layers but the config's rootfs.diff_ids lists {}",
            blobs.len(),
            config.diff_ids.len()
        )));
    }
    let layers = blobs.into_iter().zip(&config.diff_ids);
    Ok(layers
        .map(|((bytes, media_type, digest), diff_id)| LayerBlob {
            bytes,
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
