//! Layer semantics across layers (whiteouts, opaque directories, replacements) and the cache.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use agora_oci::{ImageLimits, ImageStore, build_oci_archive};
use common::*;

fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

#[test]
fn whiteouts_delete_lower_entries() {
    let lower = Layer::new()
        .file("a/x", b"x", 0o644)
        .file("a/y", b"y", 0o644)
        .file("b/deep/z", b"z", 0o644)
        .symlink("l", "/a/x")
        .build();
    let upper = Layer::new()
        .file("a/.wh.x", b"", 0o644)
        .file(".wh.b", b"", 0o644)
        .file(".wh.l", b"", 0o644)
        .file(".wh.never", b"", 0o644)
        .build();
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[lower, upper], &cmd(&["x"])),
            &ImageLimits::default(),
        )
        .unwrap();
    let root = &image.rootfs;
    assert!(!exists(root, "a/x"));
    assert!(exists(root, "a/y"));
    assert!(!exists(root, "b"));
    assert!(
        !exists(root, "l"),
        "a whiteout removes a symlink, not its target"
    );
    assert!(
        !exists(root, "a/.wh.x") && !exists(root, ".wh.b"),
        "whiteout markers are not materialized"
    );
}

#[test]
fn opaque_directory_hides_lower_content_but_keeps_its_own() {
    let lower = Layer::new()
        .file("c/old", b"o", 0o644)
        .file("c/sub/old", b"o", 0o644)
        .file("d/keep", b"k", 0o644)
        .build();
    let upper = Layer::new()
        .dir("c/", 0o755)
        .file("c/new", b"n", 0o644)
        .dir("c/sub/", 0o755)
        .file("c/sub/new", b"n", 0o644)
        .file("c/.wh..wh..opq", b"", 0o644)
        .build();
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[lower, upper], &cmd(&["x"])),
            &ImageLimits::default(),
        )
        .unwrap();
    let root = &image.rootfs;
    assert!(!exists(root, "c/old"));
    assert!(
        !exists(root, "c/sub/old"),
        "opaque hides lower content of kept subdirectories too"
    );
    assert!(exists(root, "c/new") && exists(root, "c/sub/new"));
    assert!(exists(root, "d/keep"));
    assert!(!exists(root, "c/.wh..wh..opq"));
}

#[test]
fn opaque_marker_before_siblings() {
    let lower = Layer::new().file("c/old", b"o", 0o644).build();
    let upper = Layer::new()
        .file("c/.wh..wh..opq", b"", 0o644)
        .file("c/new", b"n", 0o644)
        .build();
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[lower, upper], &cmd(&["x"])),
            &ImageLimits::default(),
        )
        .unwrap();
    assert!(!exists(&image.rootfs, "c/old"));
    assert!(exists(&image.rootfs, "c/new"));
}

#[test]
fn upper_layers_replace_kinds() {
    let lower = Layer::new()
        .file("f2d/inner", b"i", 0o644)
        .file("d2f", b"file", 0o644)
        .symlink("s2d", "/elsewhere")
        .dir("ro/", 0o555)
        .file("ro/file", b"r", 0o444)
        .build();
    let upper = Layer::new()
        .file("f2d", b"now a file", 0o644)
        .dir("d2f/", 0o755)
        .file("d2f/child", b"c", 0o644)
        .dir("s2d/", 0o700)
        .file("s2d/inside", b"i", 0o644)
        .file("ro/file", b"rewritten", 0o444)
        .build();
    let (_dir, store) = store();
    let image = store
        .load_archive(
            &build_oci_archive(&[lower, upper], &cmd(&["x"])),
            &ImageLimits::default(),
        )
        .unwrap();
    let root = &image.rootfs;
    assert_eq!(fs::read(root.join("f2d")).unwrap(), b"now a file");
    assert_eq!(fs::read(root.join("d2f/child")).unwrap(), b"c");
    assert!(
        fs::symlink_metadata(root.join("s2d")).unwrap().is_dir(),
        "a directory entry replaces a symlink"
    );
    assert_eq!(fs::read(root.join("ro/file")).unwrap(), b"rewritten");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(root.join("ro")).unwrap().permissions().mode() & 0o777,
        0o555
    );
}

#[test]
fn second_load_hits_the_cache() {
    let layer = Layer::new().file("big", &vec![1u8; 1 << 20], 0o644).build();
    let archive = build_oci_archive(&[layer], &cmd(&["x"]));
    let (dir, store) = store();
    let first = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    let marker = first.rootfs.join("big");
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&marker).unwrap());
    let second = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(first.rootfs, second.rootfs);
    assert_eq!(second.unpacked_bytes, 1 << 20);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&marker).unwrap()),
        inode,
        "not unpacked again"
    );
    let reopened = ImageStore::open(&dir.path().join("store")).unwrap();
    assert!(
        reopened
            .load_archive(&archive, &ImageLimits::default())
            .unwrap()
            .cached
    );
}

#[test]
fn concurrent_assemblers_of_one_image_both_succeed() {
    let files: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8; 256 << 10]).collect();
    let mut layer = Layer::new();
    for (i, data) in files.iter().enumerate() {
        layer = layer.file(&format!("dir/file{i}"), data, 0o644);
    }
    let archive = Arc::new(build_oci_archive(&[layer.build()], &cmd(&["x"])));
    let (_dir, store) = store();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, archive) = (store.clone(), archive.clone());
            std::thread::spawn(move || {
                store
                    .load_archive(&archive, &ImageLimits::default())
                    .unwrap()
            })
        })
        .collect();
    let images: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(images.windows(2).all(|w| w[0].rootfs == w[1].rootfs));
    assert_eq!(
        fs::read(images[0].rootfs.join("dir/file3")).unwrap(),
        files[3]
    );
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "losers clean up"
    );
    assert_eq!(
        fs::read_dir(store.root().join("rootfs")).unwrap().count(),
        1
    );
}

#[test]
fn open_removes_assemblies_of_dead_processes() {
    let (dir, store) = store();
    let stale = store.root().join("tmp/999999999-1-0");
    fs::create_dir_all(stale.join("half/written")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(stale.join("half"), fs::Permissions::from_mode(0o500)).unwrap();
    let live = store.root().join(format!("tmp/{}-1-0", std::process::id()));
    fs::create_dir(&live).unwrap();
    ImageStore::open(&dir.path().join("store")).unwrap();
    assert!(!stale.exists());
    assert!(live.exists(), "an assembly of a live process is left alone");
}

#[test]
fn cached_image_still_obeys_smaller_limits() {
    let layer = Layer::new()
        .file("a", &[1u8; 100_000], 0o644)
        .file("b", b"b", 0o644)
        .build();
    let archive = build_oci_archive(&[layer], &cmd(&["x"]));
    let (_dir, store) = store();
    assert!(
        !store
            .load_archive(&archive, &ImageLimits::default())
            .unwrap()
            .cached
    );
    let small = ImageLimits {
        max_unpacked_bytes: 50_000,
        ..Default::default()
    };
    assert_eq!(
        store.load_archive(&archive, &small).unwrap_err().kind(),
        "too_large"
    );
    let few = ImageLimits {
        max_entries: 1,
        ..Default::default()
    };
    assert_eq!(
        store.load_archive(&archive, &few).unwrap_err().kind(),
        "too_many_entries"
    );
}

#[test]
fn store_without_blobs_keeps_only_the_rootfs() {
    let archive = build_oci_archive(&[Layer::new().file("f", b"x", 0o644).build()], &cmd(&["x"]));
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap().keep_blobs(false);
    let image = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap();
    assert!(image.rootfs.join("f").is_file());
    assert_eq!(
        fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_cached_load_refuses_an_altered_layer_as_a_fresh_store_does() {
    let layer = Layer::new().file("payload", &[b'p'; 4096], 0o644).build();
    let archive = build_oci_archive(&[layer], &cmd(&["x"]));
    let (dir, store) = store();
    let path = dir.path().join("image.tar");
    fs::write(&path, &archive).unwrap();
    assert!(
        !store
            .load_archive_file(&path, &ImageLimits::default())
            .unwrap()
            .cached
    );
    assert!(
        store
            .load_archive_file(&path, &ImageLimits::default())
            .unwrap()
            .cached
    );
    // Damage the layer inside the file (same length): the store that has the image refuses
    // it with the same kind as a store that would unpack it, so an order's fate does not
    // depend on which provider's cache it meets.
    let at = archive.windows(64).position(|w| w == [b'p'; 64]).unwrap();
    let mut damaged = archive.clone();
    damaged[at] = b'X';
    fs::write(&path, &damaged).unwrap();
    let cached = store
        .load_archive_file(&path, &ImageLimits::default())
        .unwrap_err();
    let other = ImageStore::open(&dir.path().join("other")).unwrap();
    let fresh = other
        .load_archive_file(&path, &ImageLimits::default())
        .unwrap_err();
    assert_eq!(cached.kind(), "digest_mismatch", "{cached}");
    assert_eq!(fresh.kind(), cached.kind(), "{fresh}");
}

#[test]
fn directories_and_symlinks_look_the_same_on_every_provider() {
    use std::os::unix::fs::MetadataExt;
    let layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/conf", b"x", 0o644)
        .symlink("etc/link", "conf")
        .build();
    let archive = build_oci_archive(&[layer], &cmd(&["x"]));
    let (_dir, store) = store();
    let rootfs = store
        .load_archive(&archive, &ImageLimits::default())
        .unwrap()
        .rootfs;
    // Unpack times would differ between providers: a job running `ls -l /` must not.
    for path in ["", "etc", "etc/link", "proc", "output"] {
        let meta = fs::symlink_metadata(rootfs.join(path)).unwrap();
        assert_eq!(meta.mtime(), 0, "{path:?} has the unpack time");
    }
}
