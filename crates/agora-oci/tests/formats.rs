//! Both archive formats round trip, nested indexes and platform choice, gzip layers, a busybox image.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use agora_oci::{
    ImageConfig, ImageLimits, LayerCompression, Overrides, build_docker_archive, build_oci_archive,
    build_oci_archive_with,
};
use common::*;

fn sample_layers() -> Vec<Vec<u8>> {
    let base = Layer::new()
        .dir("./bin/", 0o755)
        .file("./bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
        .file("etc/motd", b"hello", 0o644)
        .symlink("usr/bin/tool", "/bin/tool")
        .hardlink("etc/motd.link", "etc/motd")
        .dir("data", 0o750)
        .build();
    let top = Layer::new()
        .file("etc/motd", b"replaced", 0o600)
        .file("data/new", b"n", 0o640)
        .build();
    vec![base, top]
}

fn sample_config() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/bin/tool".into()],
        cmd: vec!["--x".into()],
        env: vec![("A".into(), "1".into())],
        working_dir: Some("/data".into()),
        user: Some((1000, 1000)),
    }
}

fn check_sample_rootfs(image: &agora_oci::LoadedImage) {
    let root = &image.rootfs;
    assert_eq!(
        fs::read(root.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        fs::metadata(root.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    assert_eq!(fs::read(root.join("etc/motd")).unwrap(), b"replaced");
    assert_eq!(
        fs::metadata(root.join("etc/motd"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    assert_eq!(
        fs::read(root.join("etc/motd.link")).unwrap(),
        b"hello",
        "hard link keeps the lower file"
    );
    assert_eq!(
        fs::read_link(root.join("usr/bin/tool")).unwrap().to_str(),
        Some("/bin/tool")
    );
    assert_eq!(
        fs::metadata(root.join("data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    let mtime = fs::metadata(root.join("data/new")).unwrap().mtime();
    assert_eq!(mtime, 1_700_000_000, "regular files keep their mtime");
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        fs::metadata(root.join("data/new")).unwrap().uid(),
        uid,
        "files belong to the unpacking user"
    );
    for dir in ["proc", "dev", "sys", "tmp", "input", "output"] {
        assert!(
            fs::symlink_metadata(root.join(dir)).unwrap().is_dir(),
            "mount point /{dir}"
        );
    }
    assert_eq!(image.config, sample_config());
    assert_eq!(image.unpacked_bytes, 18 + 5 + 8 + 1);
    assert!(!image.cached);
    assert!(image.chain_id.starts_with("sha256:"));
    assert!(image.rootfs.ends_with(&image.chain_id[7..]));
}

#[test]
fn oci_archive_round_trips() {
    let (_dir, store) = store();
    let archive = build_oci_archive(&sample_layers(), &sample_config());
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    check_sample_rootfs(&image);
    let process = image.config.process(&Overrides::default()).unwrap();
    assert_eq!(process.argv, ["/bin/tool", "--x"]);
    assert_eq!(process.cwd, "/data");
    assert_eq!(process.user, (1000, 1000));
}

#[test]
fn docker_save_archive_round_trips() {
    let (_dir, store) = store();
    let archive = build_docker_archive(&sample_layers(), &sample_config());
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    check_sample_rootfs(&image);
}

#[test]
fn both_formats_give_the_same_chain_id() {
    let (_dir, store) = store();
    let oci = store
        .load_archive(
            &build_oci_archive(&sample_layers(), &sample_config()),
            &ImageLimits::default(),
        )
        .unwrap();
    let docker = store
        .load_archive(
            &build_docker_archive(&sample_layers(), &sample_config()),
            &ImageLimits::default(),
        )
        .unwrap();
    assert_eq!(oci.chain_id, docker.chain_id);
    assert!(docker.cached, "same layers, same rootfs");
}

#[test]
fn gzip_layers_round_trip_and_blobs_are_kept() {
    let (_dir, store) = store();
    let archive =
        build_oci_archive_with(&sample_layers(), &sample_config(), LayerCompression::Gzip);
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    check_sample_rootfs(&image);
    let manifest = manifest_of(&files_of(&archive));
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let hex = &layer["digest"].as_str().unwrap()[7..];
        assert!(store.root().join("blobs/sha256").join(hex).is_file());
    }
}

#[test]
fn archive_file_loads_like_bytes() {
    let (dir, store) = store();
    let path = dir.path().join("image.tar");
    fs::write(&path, build_oci_archive(&sample_layers(), &sample_config())).unwrap();
    let image = store
        .load_archive_file(&path, &ImageLimits::default())
        .unwrap();
    check_sample_rootfs(&image);
    assert_eq!(store.rootfs_of(&image.chain_id), Some(image.rootfs.clone()));
}

#[test]
fn builder_is_deterministic() {
    let a = build_oci_archive(&sample_layers(), &sample_config());
    let b = build_oci_archive(&sample_layers(), &sample_config());
    assert_eq!(a, b);
    assert_eq!(
        build_docker_archive(&sample_layers(), &sample_config()),
        build_docker_archive(&sample_layers(), &sample_config())
    );
}

/// Wraps the built manifest in a multi-platform nested index, the way `docker save` (25+)
/// and buildx write them: index.json -> index -> {arm64, amd64, attestation}.
fn nested_multi_platform(archive: &[u8], amd64: bool) -> Vec<u8> {
    rewrite(archive, |files| {
        let index = json(&files["index.json"]);
        let mut real = index["manifests"][0].clone();
        let mut other = real.clone();
        other["platform"] = serde_json::json!({"architecture": "arm64", "os": "linux"});
        let bogus =
            br#"{"schemaVersion":2,"config":{"digest":"sha256:00","size":1},"layers":[]}"#.to_vec();
        other["digest"] = serde_json::json!(sha(&bogus));
        other["size"] = serde_json::json!(bogus.len());
        let mut attestation = other.clone();
        attestation["platform"] = serde_json::json!({"architecture": "unknown", "os": "unknown"});
        files.insert(blob_name(&bogus), bogus);
        if !amd64 {
            real["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
        }
        let inner = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [other, real, attestation]});
        let inner = inner.to_string().into_bytes();
        let outer = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(&inner), "size": inner.len()}]});
        files.insert(blob_name(&inner), inner);
        files.insert("index.json".into(), outer.to_string().into_bytes());
    })
}

#[test]
fn nested_index_picks_linux_amd64() {
    let (_dir, store) = store();
    let archive =
        nested_multi_platform(&build_oci_archive(&sample_layers(), &sample_config()), true);
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    check_sample_rootfs(&image);
}

#[test]
fn index_without_amd64_is_no_platform() {
    let (_dir, store) = store();
    let archive = nested_multi_platform(
        &build_oci_archive(&sample_layers(), &sample_config()),
        false,
    );
    let err = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap_err();
    assert_eq!(err.kind(), "no_platform", "{err}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
    assert_nothing_cached(&store);
}

#[test]
fn busybox_image_has_an_executable_busybox() {
    let Ok(busybox) = fs::read("/bin/busybox") else {
        eprintln!("skipped: no /bin/busybox (apt-get install busybox-static; .ci/run does)");
        return;
    };
    let layer = Layer::new()
        .dir("bin/", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .dir("etc/", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
            0o644,
        )
        .build();
    let config = ImageConfig {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo hi".into()],
        ..Default::default()
    };
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[layer], &config),
            &ImageLimits::default(),
        )
        .unwrap();
    let bin = image.rootfs.join("bin/busybox");
    let meta = fs::metadata(&bin).unwrap();
    assert!(
        meta.is_file() && meta.permissions().mode() & 0o111 == 0o111,
        "bin/busybox is executable"
    );
    assert_eq!(meta.len(), busybox.len() as u64);
    let out = std::process::Command::new(&bin)
        .args(["echo", "from", "rootfs"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from rootfs\n");
    let process = image
        .config
        .process(&Overrides {
            args: Some(vec!["true".into()]),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(process.argv, ["/bin/sh", "-c", "true"]);
}

#[test]
fn named_user_resolves_in_the_image_passwd() {
    let layer = Layer::new()
        .file(
            "etc/passwd",
            b"root:x:0:0::/:/bin/sh\napp:x:1500:1600::/home/app:/bin/sh\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\nworkers:x:77:\n", 0o644)
        .build();
    let (_dir, store) = store();
    let mut archive = build_oci_archive(std::slice::from_ref(&layer), &cmd(&["x"]));
    archive = rewrite(&archive, |files| set_user(files, "app:workers"));
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    assert_eq!(image.config.user, Some((1500, 77)));
    let again = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    assert!(again.cached);
    assert_eq!(again.config.user, Some((1500, 77)));
    let unknown = rewrite(&build_oci_archive(&[layer], &cmd(&["x"])), |files| {
        set_user(files, "ghost")
    });
    assert_eq!(
        store
            .load_archive(&unknown, &ImageLimits::default())
            .unwrap_err()
            .kind(),
        "unknown_user"
    );
}

/// Sets the config's User in a built OCI archive, fixing up the digests that reference it.
fn set_user(files: &mut std::collections::BTreeMap<String, Vec<u8>>, user: &str) {
    let mut manifest = manifest_of(files);
    let config_name = format!(
        "blobs/sha256/{}",
        &manifest["config"]["digest"].as_str().unwrap()[7..]
    );
    let mut config = json(&files[&config_name]);
    config["config"]["User"] = serde_json::json!(user);
    let config = config.to_string().into_bytes();
    manifest["config"]["digest"] = serde_json::json!(sha(&config));
    manifest["config"]["size"] = serde_json::json!(config.len());
    files.insert(blob_name(&config), config);
    let manifest = manifest.to_string().into_bytes();
    let mut index = json(&files["index.json"]);
    index["manifests"][0]["digest"] = serde_json::json!(sha(&manifest));
    index["manifests"][0]["size"] = serde_json::json!(manifest.len());
    files.insert(blob_name(&manifest), manifest);
    files.insert("index.json".into(), index.to_string().into_bytes());
}

/// Replaces every `layer.tar` of a docker save archive with `encode(layer)`; the diff ids
/// (digests of the uncompressed tars) stay valid.
fn recompress_docker_layers(archive: &[u8], encode: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    rewrite(archive, |files| {
        for (name, data) in files.iter_mut() {
            if name.ends_with("/layer.tar") {
                *data = encode(data);
            }
        }
    })
}

#[test]
fn docker_save_with_gzip_layers_detected_by_magic() {
    use std::io::Write;
    let archive = recompress_docker_layers(
        &build_docker_archive(&sample_layers(), &sample_config()),
        |tar| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            gz.finish().unwrap()
        },
    );
    let (_dir, store) = store();
    check_sample_rootfs(
        &store
            .load_archive(&archive, &ImageLimits::default())
            .unwrap(),
    );
}

#[cfg(feature = "zstd")]
#[test]
fn zstd_layers_round_trip() {
    let archive = recompress_docker_layers(
        &build_docker_archive(&sample_layers(), &sample_config()),
        |tar| zstd::encode_all(tar, 3).unwrap(),
    );
    let (_dir, store) = store();
    check_sample_rootfs(
        &store
            .load_archive(&archive, &ImageLimits::default())
            .unwrap(),
    );
}

#[cfg(not(feature = "zstd"))]
#[test]
fn zstd_layers_need_the_feature() {
    let archive = recompress_docker_layers(
        &build_docker_archive(&sample_layers(), &sample_config()),
        |tar| {
            let mut zstd_magic = vec![0x28, 0xb5, 0x2f, 0xfd];
            zstd_magic.extend_from_slice(tar);
            zstd_magic
        },
    );
    let (_dir, store) = store();
    let err = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap_err();
    assert_eq!(err.kind(), "unsupported_media_type");
    assert_nothing_cached(&store);
}

#[test]
fn long_names_and_link_targets_round_trip() {
    let long_dir = "x".repeat(120);
    let long_file = format!("{long_dir}/{}", "y".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, &long_file, &b"long"[..])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "short-link", format!("/{long_file}"))
        .unwrap();
    let layer = builder.into_inner().unwrap();
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[layer], &cmd(&["x"])),
            &ImageLimits::default(),
        )
        .unwrap();
    assert_eq!(fs::read(image.rootfs.join(&long_file)).unwrap(), b"long");
    assert_eq!(
        fs::read_link(image.rootfs.join("short-link"))
            .unwrap()
            .to_str()
            .unwrap(),
        format!("/{long_file}")
    );
}

#[test]
fn docker_save_with_a_symlinked_repeated_layer() {
    let layer = Layer::new().file("same", b"s", 0o644).build();
    let built = files_of(&build_docker_archive(
        &[layer.clone(), layer.clone()],
        &cmd(&["x"]),
    ));
    let config_name = built
        .keys()
        .find(|k| k.ends_with(".json") && *k != "manifest.json")
        .unwrap()
        .clone();
    let manifest =
        serde_json::json!([{ "Config": config_name, "Layers": ["a/layer.tar", "b/layer.tar"] }]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name, data).unwrap();
    };
    add("manifest.json", manifest.to_string().as_bytes());
    add(&config_name, &built[&config_name]);
    add("a/layer.tar", &layer);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    builder
        .append_link(&mut header, "b/layer.tar", "../a/layer.tar")
        .unwrap();
    let archive = builder.into_inner().unwrap();
    let (dir, store) = store();
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    assert_eq!(fs::read(image.rootfs.join("same")).unwrap(), b"s");
    let path = dir.path().join("image.tar");
    fs::write(&path, &archive).unwrap();
    assert!(
        store
            .load_archive_file(&path, &ImageLimits::default())
            .unwrap()
            .cached
    );
}
