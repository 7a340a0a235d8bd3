//! Hostile and broken inputs: each is refused with its typed error and leaves nothing cached.

mod common;

use std::fs;
use std::io::Write;

use agora_oci::{ImageError, ImageLimits, SetuidPolicy, build_docker_archive, build_oci_archive};
use common::*;

fn load(
    layers: &[Vec<u8>],
) -> (
    tempfile::TempDir,
    agora_oci::ImageStore,
    Result<agora_oci::LoadedImage, ImageError>,
) {
    load_with(layers, &ImageLimits::default())
}

fn load_with(
    layers: &[Vec<u8>],
    limits: &ImageLimits,
) -> (
    tempfile::TempDir,
    agora_oci::ImageStore,
    Result<agora_oci::LoadedImage, ImageError>,
) {
    let (dir, store) = store();
    let result = store.load_archive(&build_oci_archive(layers, &cmd(&["x"])), limits);
    (dir, store, result)
}

/// Loads `layers`, expects refusal with `kind`, and checks the store is empty.
fn refused(layers: &[Vec<u8>], kind: &str) -> ImageError {
    refused_with(layers, &ImageLimits::default(), kind)
}

fn refused_with(layers: &[Vec<u8>], limits: &ImageLimits, kind: &str) -> ImageError {
    let (_dir, store, result) = load_with(layers, limits);
    let err = result.expect_err("hostile image must be refused");
    assert_eq!(err.kind(), kind, "{err}");
    assert_nothing_cached(&store);
    err
}

/// Loads `archive` from memory and from a file; both must be refused with `kind` and leave
/// the store empty.
fn refused_archive(archive: &[u8], kind: &str) -> ImageError {
    let (dir, store) = store();
    let path = dir.path().join("archive.tar");
    fs::write(&path, archive).unwrap();
    let from_file = store
        .load_archive_file(&path, &ImageLimits::default())
        .expect_err("must be refused");
    assert_eq!(from_file.kind(), kind, "from a file: {from_file}");
    assert_nothing_cached(&store);
    let err = store
        .load_archive(archive, &ImageLimits::default())
        .expect_err("must be refused");
    assert_eq!(err.kind(), kind, "{err}");
    assert_nothing_cached(&store);
    err
}

#[test]
fn dotdot_path_is_tar_slip() {
    let layer = Layer::new()
        .file("ok", b"", 0o644)
        .raw(b"a/../../evil", tar::EntryType::Regular, b"x", 0o644, b"")
        .build();
    let err = refused(&[layer], "tar_slip");
    assert!(err.to_string().contains("a/../../evil"), "{err}");
}

#[test]
fn absolute_path_is_tar_slip() {
    let layer = Layer::new()
        .raw(
            b"/tmp/agora-oci-evil",
            tar::EntryType::Regular,
            b"x",
            0o644,
            b"",
        )
        .build();
    refused(&[layer], "tar_slip");
    assert!(!std::path::Path::new("/tmp/agora-oci-evil").exists());
}

#[test]
fn dotdot_in_whiteout_is_tar_slip() {
    let layer = Layer::new()
        .raw(b"../.wh.etc", tar::EntryType::Regular, b"", 0o644, b"")
        .build();
    refused(&[layer], "tar_slip");
}

#[test]
fn relative_symlink_escaping_root_is_refused() {
    let layer = Layer::new().symlink("a/b", "../../etc/passwd").build();
    refused(&[layer], "link_escape");
}

#[test]
fn absolute_symlink_is_allowed_as_a_link() {
    let layer = Layer::new().symlink("etc/hostlink", "/etc/passwd").build();
    let (_dir, _store, result) = load(&[layer]);
    let image = result.unwrap();
    assert_eq!(
        fs::read_link(image.rootfs.join("etc/hostlink"))
            .unwrap()
            .to_str(),
        Some("/etc/passwd")
    );
}

#[test]
fn writing_through_a_symlink_in_the_same_layer_is_refused() {
    let host = tempfile::tempdir().unwrap();
    let target = host.path().to_str().unwrap().to_owned();
    let layer = Layer::new()
        .symlink("escape", &target)
        .file("escape/pwned", b"x", 0o644)
        .build();
    refused(&[layer], "symlink_traversal");
    assert_eq!(
        fs::read_dir(host.path()).unwrap().count(),
        0,
        "nothing written on the host"
    );
}

#[test]
fn writing_through_a_symlink_of_a_lower_layer_is_refused() {
    let host = tempfile::tempdir().unwrap();
    let lower = Layer::new()
        .symlink("etc", host.path().to_str().unwrap())
        .build();
    let upper = Layer::new().file("etc/pwned", b"x", 0o644).build();
    refused(&[lower, upper], "symlink_traversal");
    assert_eq!(fs::read_dir(host.path()).unwrap().count(), 0);
}

#[test]
fn relative_symlink_to_dir_cannot_be_written_through() {
    let lower = Layer::new()
        .dir("real/", 0o755)
        .symlink("alias", "real")
        .build();
    let upper = Layer::new().file("alias/f", b"x", 0o644).build();
    refused(&[lower, upper], "symlink_traversal");
}

#[test]
fn whiteout_through_a_symlink_is_refused_and_host_file_survives() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("victim"), b"keep me").unwrap();
    let lower = Layer::new()
        .symlink("d", host.path().to_str().unwrap())
        .build();
    let upper = Layer::new().file("d/.wh.victim", b"", 0o644).build();
    refused(&[lower, upper], "symlink_traversal");
    let opaque = Layer::new().file("d/.wh..wh..opq", b"", 0o644).build();
    let lower = Layer::new()
        .symlink("d", host.path().to_str().unwrap())
        .build();
    refused(&[lower, opaque], "symlink_traversal");
    assert_eq!(fs::read(host.path().join("victim")).unwrap(), b"keep me");
}

#[test]
fn hardlink_escaping_root_is_refused() {
    let layer = Layer::new().hardlink("pw", "../../../etc/passwd").build();
    refused(&[layer], "link_escape");
    let layer = Layer::new().hardlink("pw", "/etc/passwd").build();
    refused(&[layer], "link_escape");
}

#[test]
fn hardlink_to_a_symlink_is_refused() {
    let layer = Layer::new()
        .symlink("s", "/etc/shadow")
        .hardlink("h", "s")
        .build();
    refused(&[layer], "bad_layer");
    let layer = Layer::new().hardlink("h", "missing").build();
    refused(&[layer], "bad_layer");
}

#[test]
fn hardlink_through_a_symlinked_dir_is_refused() {
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("secret"), b"s").unwrap();
    let layer = Layer::new()
        .symlink("d", host.path().to_str().unwrap())
        .hardlink("h", "d/secret")
        .build();
    refused(&[layer], "symlink_traversal");
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let layer = Layer::new().raw(b"dev/node", kind, b"", 0o666, b"").build();
        let err = refused(&[layer], "device_node");
        assert!(err.to_string().contains("dev/node"), "{err}");
    }
}

#[test]
fn setuid_and_setgid_are_refused() {
    refused(
        &[Layer::new().file("bin/su", b"x", 0o4755).build()],
        "setuid",
    );
    refused(&[Layer::new().dir("var/mail/", 0o2775).build()], "setuid");
}

#[test]
fn setuid_strip_policy_clears_the_bits() {
    let limits = ImageLimits {
        setuid: SetuidPolicy::Strip,
        ..Default::default()
    };
    let (_dir, _store, result) = load_with(
        &[Layer::new()
            .file("bin/su", b"x", 0o4755)
            .dir("var/mail/", 0o2775)
            .build()],
        &limits,
    );
    let image = result.unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(image.rootfs.join("bin/su"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    assert_eq!(
        fs::metadata(image.rootfs.join("var/mail"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o775
    );
}

#[test]
fn garbage_and_truncated_archives_are_bad_archive() {
    refused_archive(
        b"definitely not a tarball, just some bytes that are long enough to matter",
        "bad_archive",
    );
    refused_archive(&[0u8; 4096], "bad_archive");
    let archive = build_oci_archive(
        &[Layer::new().file("f", &[7u8; 10_000], 0o644).build()],
        &cmd(&["x"]),
    );
    refused_archive(&archive[..archive.len() / 2], "bad_archive");
}

#[test]
fn malformed_json_is_bad_archive() {
    let archive =
        build_docker_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let broken = rewrite(&archive, |files| {
        files.insert("manifest.json".into(), b"[{\"Config\": ".to_vec());
    });
    refused_archive(&broken, "bad_archive");
    let archive = build_oci_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let broken = rewrite(&archive, |files| {
        files.insert("index.json".into(), b"{\"manifests\": 7}".to_vec());
    });
    refused_archive(&broken, "bad_archive");
}

#[test]
fn truncated_layer_is_bad_layer() {
    let layer = Layer::new().file("f", &[7u8; 10_000], 0o644).build();
    let archive = build_docker_archive(std::slice::from_ref(&layer), &cmd(&["x"]));
    let broken = rewrite(&archive, |files| {
        let name = files
            .keys()
            .find(|k| k.ends_with("/layer.tar"))
            .unwrap()
            .clone();
        files.insert(name, layer[..3000].to_vec());
    });
    refused_archive(&broken, "bad_layer");
}

#[test]
fn corrupt_gzip_layer_is_bad_layer() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&Layer::new().file("f", &[1u8; 50_000], 0o644).build())
        .unwrap();
    let gz = gz.finish().unwrap();
    let archive = build_docker_archive(
        &[Layer::new().file("f", &[1u8; 50_000], 0o644).build()],
        &cmd(&["x"]),
    );
    let broken = rewrite(&archive, |files| {
        let name = files
            .keys()
            .find(|k| k.ends_with("/layer.tar"))
            .unwrap()
            .clone();
        files.insert(name, gz[..gz.len() / 2].to_vec());
    });
    refused_archive(&broken, "bad_layer");
}

#[test]
fn altered_layer_blob_is_digest_mismatch() {
    let archive = build_oci_archive(
        &[Layer::new().file("f", b"original", 0o644).build()],
        &cmd(&["x"]),
    );
    let manifest = manifest_of(&files_of(&archive));
    let layer_name = format!(
        "blobs/sha256/{}",
        &manifest["layers"][0]["digest"].as_str().unwrap()[7..]
    );
    let broken = rewrite(&archive, |files| {
        let blob = files.get_mut(&layer_name).unwrap();
        let at = blob.windows(8).position(|w| w == b"original").unwrap();
        blob[at..at + 8].copy_from_slice(b"ORIGINAL");
    });
    let err = refused_archive(&broken, "digest_mismatch");
    assert!(err.to_string().contains("layer 0"), "{err}");
}

#[test]
fn altered_config_is_digest_mismatch() {
    let archive = build_oci_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let manifest = manifest_of(&files_of(&archive));
    let config_name = format!(
        "blobs/sha256/{}",
        &manifest["config"]["digest"].as_str().unwrap()[7..]
    );
    let broken = rewrite(&archive, |files| {
        let text = String::from_utf8(files[&config_name].clone())
            .unwrap()
            .replace("amd64", "AMD64");
        files.insert(config_name.clone(), text.into_bytes());
    });
    refused_archive(&broken, "digest_mismatch");
}

#[test]
fn blob_of_wrong_size_is_size_mismatch() {
    let archive = build_oci_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let manifest = manifest_of(&files_of(&archive));
    let layer_name = format!(
        "blobs/sha256/{}",
        &manifest["layers"][0]["digest"].as_str().unwrap()[7..]
    );
    let broken = rewrite(&archive, |files| {
        files
            .get_mut(&layer_name)
            .unwrap()
            .extend_from_slice(&[0; 512])
    });
    refused_archive(&broken, "size_mismatch");
}

#[test]
fn docker_layer_not_matching_diff_id_is_digest_mismatch() {
    let archive = build_docker_archive(
        &[Layer::new().file("f", b"original", 0o644).build()],
        &cmd(&["x"]),
    );
    let broken = rewrite(&archive, |files| {
        let name = files
            .keys()
            .find(|k| k.ends_with("/layer.tar"))
            .unwrap()
            .clone();
        let replacement = Layer::new().file("f", b"tampered", 0o644).build();
        files.insert(name, replacement);
    });
    refused_archive(&broken, "digest_mismatch");
}

#[test]
fn limits_are_enforced() {
    let layer = Layer::new()
        .file("a", &[1u8; 100_000], 0o644)
        .file("b", &[2u8; 100_000], 0o644)
        .build();
    let small = |f: fn(&mut ImageLimits)| {
        let mut limits = ImageLimits::default();
        f(&mut limits);
        limits
    };
    refused_with(
        std::slice::from_ref(&layer),
        &small(|l| l.max_unpacked_bytes = 150_000),
        "too_large",
    );
    refused_with(
        std::slice::from_ref(&layer),
        &small(|l| l.max_archive_bytes = 50_000),
        "too_large",
    );
    refused_with(
        std::slice::from_ref(&layer),
        &small(|l| l.max_entries = 1),
        "too_many_entries",
    );
    let two = [layer.clone(), Layer::new().file("c", b"c", 0o644).build()];
    refused_with(&two, &small(|l| l.max_layers = 1), "too_many_layers");
}

#[test]
fn archive_file_over_the_limit_is_refused_before_reading() {
    let (dir, store) = store();
    let path = dir.path().join("big.tar");
    fs::write(&path, vec![0u8; 1 << 20]).unwrap();
    let limits = ImageLimits {
        max_archive_bytes: 1000,
        ..Default::default()
    };
    assert_eq!(
        store.load_archive_file(&path, &limits).unwrap_err().kind(),
        "too_large"
    );
    assert_nothing_cached(&store);
}

#[test]
fn decompression_bomb_stops_at_the_limit() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&Layer::new().file("f", b"x", 0o644).build())
        .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap(); // 256 MiB of zeros after the tar's end marker
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let archive =
        build_docker_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let archive = rewrite(&archive, |files| {
        let name = files
            .keys()
            .find(|k| k.ends_with("/layer.tar"))
            .unwrap()
            .clone();
        files.insert(name, bomb);
    });
    let (_dir, store) = store();
    let limits = ImageLimits {
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
        ..Default::default()
    };
    let start = std::time::Instant::now();
    let err = store.load_archive(&archive, &limits).unwrap_err();
    assert_eq!(err.kind(), "too_large", "{err}");
    assert!(start.elapsed().as_secs() < 5);
    assert_nothing_cached(&store);
}

#[test]
fn unknown_layer_media_type_is_refused() {
    let archive = build_oci_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let broken = rewrite(&archive, |files| {
        let index = json(&files["index.json"]);
        let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        let mut manifest = json(&files[&format!("blobs/sha256/{}", &old[7..])]);
        manifest["layers"][0]["mediaType"] =
            serde_json::json!("application/vnd.oci.image.layer.v1.tar+encrypted");
        let manifest = manifest.to_string().into_bytes();
        let mut index = index;
        index["manifests"][0]["digest"] = serde_json::json!(sha(&manifest));
        index["manifests"][0]["size"] = serde_json::json!(manifest.len());
        files.insert(blob_name(&manifest), manifest);
        files.insert("index.json".into(), index.to_string().into_bytes());
    });
    refused_archive(&broken, "unsupported_media_type");
}

#[test]
fn missing_entrypoint_is_a_typed_error() {
    let archive = build_oci_archive(
        &[Layer::new().file("f", b"x", 0o644).build()],
        &Default::default(),
    );
    let (_dir, store) = store();
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    let err = image.config.process(&Default::default()).unwrap_err();
    assert_eq!(err.kind(), "no_entrypoint");
    assert!(err.to_string().contains("Entrypoint"), "{err}");
}

#[test]
fn whiteout_of_dot_or_dotdot_is_tar_slip() {
    for name in [".wh...", "a/.wh...", ".wh..", "a/.wh..", ".wh."] {
        let lower = Layer::new().file("a/keep", b"k", 0o644).build();
        let upper = Layer::new()
            .raw(name.as_bytes(), tar::EntryType::Regular, b"", 0o644, b"")
            .build();
        let (dir, store) = store();
        let neighbour = store.root().join("tmp/../neighbour");
        fs::write(&neighbour, b"n").unwrap();
        let err = store
            .load_archive(
                &build_oci_archive(&[lower, upper], &cmd(&["x"])),
                &ImageLimits::default(),
            )
            .unwrap_err();
        assert_eq!(err.kind(), "tar_slip", "{name}: {err}");
        assert!(
            neighbour.exists(),
            "{name} removed something outside the rootfs"
        );
        assert!(
            store.root().join("tmp").is_dir(),
            "{name} removed the store's tmp"
        );
        fs::remove_file(&neighbour).unwrap();
        assert_nothing_cached(&store);
        drop(dir);
    }
}

#[test]
fn implied_directories_count_as_entries() {
    let deep = "d/".repeat(30) + "file";
    let layer = Layer::new().file(&deep, b"x", 0o644).build();
    let limits = ImageLimits {
        max_entries: 20,
        ..Default::default()
    };
    refused_with(&[layer], &limits, "too_many_entries");
}

#[test]
fn long_name_bomb_is_refused_before_it_is_read() {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(1 << 30); // a 1 GiB "file name"
    header.set_cksum();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(header.as_bytes()).unwrap();
    let zeros = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let archive =
        build_docker_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let archive = rewrite(&archive, |files| {
        let name = files
            .keys()
            .find(|k| k.ends_with("/layer.tar"))
            .unwrap()
            .clone();
        files.insert(name, bomb);
    });
    let err = refused_archive(&archive, "bad_layer");
    assert!(err.to_string().contains("metadata entry"), "{err}");
}
