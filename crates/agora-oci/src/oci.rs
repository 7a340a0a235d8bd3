//! The OCI image layout reader: `oci-layout`, `index.json` (possibly through nested indexes) to
//! one manifest for linux/amd64 (or the only one), then its config and layers, every blob
//! checked against its descriptor's size and (except layers, checked at unpack) digest.

use std::borrow::Cow;

use serde::Deserialize;

use crate::ImageError;
use crate::archive::{self, ArchiveIndex, ResolvedImage};
use crate::config::RawConfig;
use crate::digest::Digest;

/// How deep `index.json` may nest indexes before a manifest.
const MAX_INDEX_DEPTH: usize = 4;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    digest: String,
    size: u64,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Layout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

/// Resolves the image of an OCI layout archive.
pub(crate) fn resolve(index: &ArchiveIndex<'_>) -> Result<ResolvedImage, ImageError> {
    let layout: Layout = index.json("oci-layout", "OCI layout marker")?;
    if !layout.version.starts_with("1.") {
        return Err(ImageError::bad_archive(format!(
            "unknown OCI layout version {:?}",
            layout.version
        )));
    }
    let mut current: Index = index.json("index.json", "OCI index")?;
    for _ in 0..MAX_INDEX_DEPTH {
        let chosen = choose(&current.manifests)?;
        let bytes = verified_blob(index, chosen, "manifest")?;
        if is_index(chosen, &bytes) {
            current = archive::parse_json(&bytes, "nested image index")?;
            continue;
        }
        return from_manifest(index, archive::parse_json(&bytes, "image manifest")?);
    }
    Err(ImageError::bad_archive(format!(
        "image indexes nest deeper than {MAX_INDEX_DEPTH}"
    )))
}

fn from_manifest(
    index: &ArchiveIndex<'_>,
    manifest: Manifest,
) -> Result<ResolvedImage, ImageError> {
    let config_bytes = verified_blob(index, &manifest.config, "image config")?;
    let config = RawConfig::parse(&config_bytes)?;
    let mut found = Vec::with_capacity(manifest.layers.len());
    for (i, layer) in manifest.layers.iter().enumerate() {
        let (name, digest) = sized_blob(index, layer, &format!("layer {i}"))?;
        found.push((name, layer.media_type.clone(), Some(digest)));
    }
    let layers = archive::pair_layers(&config, found)?;
    Ok(ResolvedImage {
        config_digest: Digest::parse(&manifest.config.digest)?,
        config,
        layers,
    })
}

/// Picks the manifest (or nested index) to follow: the only candidate, else linux/amd64.
fn choose(manifests: &[Descriptor]) -> Result<&Descriptor, ImageError> {
    let known = |d: &&Descriptor| {
        d.media_type
            .as_deref()
            .is_none_or(|t| INDEX_TYPES.contains(&t) || MANIFEST_TYPES.contains(&t))
    };
    let candidates: Vec<&Descriptor> = manifests.iter().filter(known).collect();
    if let [only] = candidates.as_slice() {
        return Ok(only);
    }
    let amd64 = |d: &&&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    };
    if let Some(d) = candidates.iter().find(amd64) {
        return Ok(d);
    }
    let found: Vec<String> = candidates
        .iter()
        .map(|d| {
            d.platform.as_ref().map_or("unspecified".into(), |p| {
                format!("{}/{}", p.os, p.architecture)
            })
        })
        .collect();
    Err(ImageError::NoPlatform {
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}

fn is_index(d: &Descriptor, bytes: &[u8]) -> bool {
    match d.media_type.as_deref() {
        Some(t) => INDEX_TYPES.contains(&t),
        None => serde_json::from_slice::<Index>(bytes).is_ok(),
    }
}

/// The blob file a descriptor names, its length checked; returns it with its (unchecked) digest.
fn sized_blob(
    index: &ArchiveIndex<'_>,
    d: &Descriptor,
    what: &str,
) -> Result<(String, Digest), ImageError> {
    let digest = Digest::parse(&d.digest)?;
    let name = format!("blobs/sha256/{}", digest.hex());
    let len = index.len_of(&name, what)?;
    if len != d.size {
        return Err(ImageError::SizeMismatch {
            what: what.into(),
            expected: d.size,
            actual: len,
        });
    }
    Ok((name, digest))
}

/// The blob a descriptor names (a JSON document), with size and digest checked.
fn verified_blob<'a>(
    index: &ArchiveIndex<'a>,
    d: &Descriptor,
    what: &str,
) -> Result<Cow<'a, [u8]>, ImageError> {
    let (name, digest) = sized_blob(index, d, what)?;
    if d.size > archive::MAX_JSON_BYTES {
        return Err(ImageError::bad_archive(format!(
            "{what} is larger than {} bytes",
            archive::MAX_JSON_BYTES
        )));
    }
    let bytes = index.require(&name, what)?;
    digest.verify(what, &bytes)?;
    Ok(bytes)
}
