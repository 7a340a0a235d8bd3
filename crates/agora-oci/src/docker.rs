//! The `docker save` reader: `manifest.json` names the config and layer files. The config is
//! checked against the digest in its file name; layers are checked against the config's
//! `rootfs.diff_ids` when unpacked (and, when stored as `blobs/sha256/<hex>` as Docker 25+
//! does, against that digest too). `repositories` is not needed and ignored.

use serde::Deserialize;

use crate::ImageError;
use crate::archive::{self, ArchiveIndex, ResolvedImage};
use crate::config::RawConfig;
use crate::digest::Digest;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    layers: Vec<String>,
}

/// Resolves the single image of a `docker save` archive.
pub(crate) fn resolve(index: &ArchiveIndex<'_>) -> Result<ResolvedImage, ImageError> {
    let entries: Vec<Entry> = index.json("manifest.json", "docker manifest")?;
    let [entry] = entries.as_slice() else {
        return Err(ImageError::bad_archive(format!(
            "manifest.json lists {} images; save exactly one",
            entries.len()
        )));
    };
    let config_digest = digest_in_name(&entry.config).ok_or_else(|| {
        ImageError::bad_archive(format!(
            "config file name {:?} does not carry its sha256 digest",
            entry.config
        ))
    })?;
    if index.len_of(&entry.config, "image config")? > archive::MAX_JSON_BYTES {
        return Err(ImageError::bad_archive(
            "image config is larger than the JSON limit",
        ));
    }
    let config_bytes = index.require(&entry.config, "image config")?;
    config_digest.verify("image config", &config_bytes)?;
    let config = RawConfig::parse(&config_bytes)?;
    let mut found = Vec::with_capacity(entry.layers.len());
    for (i, path) in entry.layers.iter().enumerate() {
        index.len_of(path, &format!("layer {i}"))?;
        let digest = path
            .strip_prefix("blobs/sha256/")
            .and_then(Digest::from_hex);
        found.push((path.clone(), None, digest));
    }
    let layers = archive::pair_layers(&config, found)?;
    Ok(ResolvedImage {
        config_digest,
        config,
        layers,
    })
}

/// `<hex>.json` (classic docker save) or `blobs/sha256/<hex>` (Docker 25+).
fn digest_in_name(path: &str) -> Option<Digest> {
    let name = path.rsplit('/').next()?;
    Digest::from_hex(name.strip_suffix(".json").unwrap_or(name))
}

#[cfg(test)]
mod tests {
    use super::digest_in_name;

    #[test]
    fn config_digest_comes_from_the_file_name() {
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name("config.json").is_none());
    }
}
