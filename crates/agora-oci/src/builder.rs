//! Writing image archives: deterministic OCI layout and `docker save` tarballs from
//! uncompressed layer tars and an [`ImageConfig`], for tests (here and in other crates) and
//! for packaging sample jobs offline.
//!
//! Deterministic means: the same inputs give the same bytes. Entries are sorted by path, with
//! mtime 0, uid/gid 0, mode 0644 (directories 0755); gzip layers carry mtime 0 and no name.

use std::collections::BTreeMap;
use std::io::Write;

use crate::config::ImageConfig;
use crate::digest::Digest;

/// How [`build_oci_archive_with`] stores layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerCompression {
    /// Plain tar (`application/vnd.oci.image.layer.v1.tar`).
    #[default]
    None,
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`).
    Gzip,
}

/// A deterministic OCI image layout tarball with uncompressed layers (bottom first).
pub fn build_oci_archive(layers: &[Vec<u8>], config: &ImageConfig) -> Vec<u8> {
    build_oci_archive_with(layers, config, LayerCompression::None)
}

/// A deterministic OCI image layout tarball, layers stored with `compression`.
pub fn build_oci_archive_with(
    layers: &[Vec<u8>],
    config: &ImageConfig,
    compression: LayerCompression,
) -> Vec<u8> {
    let mut files = BTreeMap::new();
    files.insert(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    );
    let mut descriptors = Vec::new();
    for layer in layers {
        let (blob, media_type) = match compression {
            LayerCompression::None => (layer.clone(), "application/vnd.oci.image.layer.v1.tar"),
            LayerCompression::Gzip => (gzip(layer), "application/vnd.oci.image.layer.v1.tar+gzip"),
        };
        descriptors.push(descriptor(media_type, &blob));
        add_blob(&mut files, blob);
    }
    let config_bytes = config_json(config, layers);
    let config_descriptor = descriptor("application/vnd.oci.image.config.v1+json", &config_bytes);
    add_blob(&mut files, config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": descriptors,
    });
    let manifest = manifest.to_string().into_bytes();
    let mut manifest_descriptor =
        descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
    manifest_descriptor["platform"] = serde_json::json!({ "architecture": "amd64", "os": "linux" });
    add_blob(&mut files, manifest);
    let index = serde_json::json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_descriptor] });
    files.insert("index.json".into(), index.to_string().into_bytes());
    tarball(&files)
}

/// A deterministic classic `docker save` tarball (`manifest.json`, `<config-hex>.json`,
/// `<diff-hex>/layer.tar`) with uncompressed layers (bottom first).
pub fn build_docker_archive(layers: &[Vec<u8>], config: &ImageConfig) -> Vec<u8> {
    let mut files = BTreeMap::new();
    let config_bytes = config_json(config, layers);
    let config_name = format!("{}.json", Digest::of(&config_bytes).hex());
    let mut layer_names = Vec::new();
    for layer in layers {
        let name = format!("{}/layer.tar", Digest::of(layer).hex());
        files.insert(name.clone(), layer.clone());
        layer_names.push(name);
    }
    let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": ["agora/image:latest"], "Layers": layer_names }]);
    files.insert(config_name, config_bytes);
    files.insert("manifest.json".into(), manifest.to_string().into_bytes());
    files.insert(
        "repositories".into(),
        br#"{"agora/image":{"latest":""}}"#.to_vec(),
    );
    tarball(&files)
}

/// A layer tar holding one regular file at `path` (parents added as directories).
pub fn single_file_layer(path: &str, contents: &[u8], mode: u32) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for i in 1..parts.len() {
        append(
            &mut builder,
            &format!("{}/", parts[..i].join("/")),
            &[],
            0o755,
            tar::EntryType::Directory,
        );
    }
    append(
        &mut builder,
        &parts.join("/"),
        contents,
        mode,
        tar::EntryType::Regular,
    );
    builder.into_inner().unwrap_or_default()
}

/// The image config JSON for `config` over uncompressed `layers`.
fn config_json(config: &ImageConfig, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    let env: Vec<String> = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut inner = serde_json::json!({ "Env": env });
    if !config.entrypoint.is_empty() {
        inner["Entrypoint"] = serde_json::json!(config.entrypoint);
    }
    if !config.cmd.is_empty() {
        inner["Cmd"] = serde_json::json!(config.cmd);
    }
    if let Some(dir) = &config.working_dir {
        inner["WorkingDir"] = serde_json::json!(dir);
    }
    if let Some((uid, gid)) = config.user {
        inner["User"] = serde_json::json!(format!("{uid}:{gid}"));
    }
    let json = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": inner,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    json.to_string().into_bytes()
}

fn descriptor(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({ "mediaType": media_type, "digest": Digest::of(blob).to_string(), "size": blob.len() })
}

fn add_blob(files: &mut BTreeMap<String, Vec<u8>>, blob: Vec<u8>) {
    files.insert(format!("blobs/sha256/{}", Digest::of(&blob).hex()), blob);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// A tarball of `files` (sorted by path) plus the directories they need.
fn tarball(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut dirs = std::collections::BTreeSet::new();
    for name in files.keys() {
        let parts: Vec<&str> = name.split('/').collect();
        for i in 1..parts.len() {
            dirs.insert(format!("{}/", parts[..i].join("/")));
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut all: BTreeMap<&str, Option<&[u8]>> = files
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_slice())))
        .collect();
    all.extend(dirs.iter().map(|d| (d.as_str(), None)));
    for (name, contents) in all {
        match contents {
            Some(bytes) => append(&mut builder, name, bytes, 0o644, tar::EntryType::Regular),
            None => append(&mut builder, name, &[], 0o755, tar::EntryType::Directory),
        }
    }
    builder.into_inner().unwrap_or_default()
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    contents: &[u8],
    mode: u32,
    kind: tar::EntryType,
) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(contents.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    // Writing into a Vec cannot fail; names here are short and relative.
    let _ = builder.append_data(&mut header, name, contents);
}
