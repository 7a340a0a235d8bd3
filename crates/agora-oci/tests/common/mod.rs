//! Helpers shared by the integration tests: layer tars (including hostile entries the `tar`
//! crate's checked setters would refuse to write), archive rewriting, and store assertions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use agora_oci::{ImageConfig, ImageStore};
use sha2::Digest as _;

/// Builds a layer tar entry by entry; names and link targets are written raw.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn raw(
        mut self,
        name: &[u8],
        kind: tar::EntryType,
        data: &[u8],
        mode: u32,
        link: &[u8],
    ) -> Self {
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_uid(1234);
        header.set_gid(1234);
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub fn dir(self, name: &str, mode: u32) -> Self {
        self.raw(name.as_bytes(), tar::EntryType::Directory, &[], mode, b"")
    }

    pub fn file(self, name: &str, data: &[u8], mode: u32) -> Self {
        self.raw(name.as_bytes(), tar::EntryType::Regular, data, mode, b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            tar::EntryType::Symlink,
            &[],
            0o777,
            target.as_bytes(),
        )
    }

    pub fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(
            name.as_bytes(),
            tar::EntryType::Link,
            &[],
            0o644,
            target.as_bytes(),
        )
    }

    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// The files of a tarball by name (directories left out).
pub fn files_of(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(archive);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Regular {
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            out.insert(name, data);
        }
    }
    out
}

/// A tarball of `files`.
pub fn tar_of(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// Rewrites an archive's files with `edit`.
pub fn rewrite(archive: &[u8], edit: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> Vec<u8> {
    let mut files = files_of(archive);
    edit(&mut files);
    tar_of(&files)
}

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub fn blob_name(bytes: &[u8]) -> String {
    format!("blobs/sha256/{}", &sha(bytes)[7..])
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The single manifest of an archive built by `build_oci_archive`.
pub fn manifest_of(files: &BTreeMap<String, Vec<u8>>) -> serde_json::Value {
    let index = json(&files["index.json"]);
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    json(&files[&format!("blobs/sha256/{}", &digest[7..])])
}

pub fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

pub fn cmd(args: &[&str]) -> ImageConfig {
    ImageConfig {
        cmd: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Nothing was published, kept or left half-written by a refused load.
pub fn assert_nothing_cached(store: &ImageStore) {
    let root = store.root();
    for dir in ["rootfs", "tmp", "blobs/sha256", "meta"] {
        assert_eq!(
            entries(&root.join(dir)),
            0,
            "{dir} is not empty after a refused image"
        );
    }
}
