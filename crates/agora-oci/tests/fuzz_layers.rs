//! Property: whatever entries a layer holds, loading it never touches anything outside the
//! store, and a refusal leaves the store empty.

mod common;

use std::fs;
use std::path::Path;

use agora_oci::{ImageLimits, build_oci_archive};
use common::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("..".to_string()),
        Just(".".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just(".wh...".to_string()),
        Just("host".to_string()),
    ]
}

fn name() -> impl Strategy<Value = String> {
    (
        proptest::bool::weighted(0.1),
        proptest::collection::vec(component(), 1..4),
    )
        .prop_map(|(absolute, parts)| {
            format!("{}{}", if absolute { "/" } else { "" }, parts.join("/"))
        })
}

fn kind(host: String) -> impl Strategy<Value = Kind> {
    let target = prop_oneof![
        Just(host.clone()),
        Just(format!("{host}/victim")),
        Just("../host".to_string()),
        name(),
        Just("a".to_string())
    ];
    prop_oneof![
        3 => Just(Kind::File),
        2 => Just(Kind::Dir),
        2 => target.clone().prop_map(Kind::Symlink),
        1 => target.prop_map(Kind::Hardlink),
    ]
}

fn layer_of(entries: &[(String, Kind)]) -> Vec<u8> {
    let mut layer = Layer::new();
    for (name, kind) in entries {
        layer = match kind {
            Kind::File => layer.raw(
                name.as_bytes(),
                tar::EntryType::Regular,
                b"data",
                0o644,
                b"",
            ),
            Kind::Dir => layer.raw(name.as_bytes(), tar::EntryType::Directory, b"", 0o755, b""),
            Kind::Symlink(t) => layer.raw(
                name.as_bytes(),
                tar::EntryType::Symlink,
                b"",
                0o777,
                t.as_bytes(),
            ),
            Kind::Hardlink(t) => layer.raw(
                name.as_bytes(),
                tar::EntryType::Link,
                b"",
                0o644,
                t.as_bytes(),
            ),
        };
    }
    layer.build()
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn hostile_layers_stay_inside(seed_layers in proptest::collection::vec(
        proptest::collection::vec((name(), kind("/HOST".into())), 1..8), 1..3)) {
        let host = tempfile::tempdir().unwrap();
        fs::write(host.path().join("victim"), b"keep").unwrap();
        let host_str = host.path().to_str().unwrap().to_owned();
        let layers: Vec<Vec<u8>> = seed_layers
            .iter()
            .map(|entries| {
                let entries: Vec<(String, Kind)> = entries
                    .iter()
                    .map(|(n, k)| {
                        let k = match k {
                            Kind::Symlink(t) => Kind::Symlink(t.replace("/HOST", &host_str)),
                            Kind::Hardlink(t) => Kind::Hardlink(t.replace("/HOST", &host_str)),
                            other => other.clone(),
                        };
                        (n.clone(), k)
                    })
                    .collect();
                layer_of(&entries)
            })
            .collect();
        let before = snapshot(host.path());
        let (dir, store) = store();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"o").unwrap();
        let result = store.load_archive(&build_oci_archive(&layers, &cmd(&["x"])), &ImageLimits::default());
        prop_assert_eq!(snapshot(host.path()), before, "host directory changed");
        prop_assert_eq!(fs::read(&outside).unwrap(), b"o".to_vec());
        match result {
            Ok(image) => prop_assert!(image.rootfs.starts_with(store.root())),
            Err(err) => {
                prop_assert!(!err.kind().is_empty());
                prop_assert!(err.kind() != "io", "unexpected io error: {}", err);
                assert_nothing_cached(&store);
            }
        }
    }
}
