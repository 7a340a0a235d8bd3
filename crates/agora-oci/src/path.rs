//! Pure path rules for layer entries: normalizing entry names to relative paths (refusing
//! absolute names and `..`), and deciding whether a link target stays inside the rootfs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Normalizes a raw entry name to a relative path (empty for the root itself).
/// `None` if it is absolute or has a `..` component: those would let a layer write outside.
pub(crate) fn entry_path(raw: &[u8]) -> Option<PathBuf> {
    if raw.first() == Some(&b'/') {
        return None;
    }
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Some(out)
}

/// Whether a symlink at `link` (relative to the rootfs) with `target` stays inside the rootfs.
/// Absolute targets count as rooted at the rootfs (that is how the container sees them);
/// relative ones must not climb above the root when applied to the link's directory.
pub(crate) fn symlink_stays_inside(link: &Path, target: &[u8]) -> bool {
    if target.is_empty() || target.contains(&0) {
        return false;
    }
    if target.first() == Some(&b'/') {
        return true;
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if depth == 0 => return false,
            b".." => depth -= 1,
            _ => depth += 1,
        }
    }
    true
}

/// Every proper ancestor of a relative path, shallowest first (`a/b/c` → `a`, `a/b`).
pub(crate) fn ancestors(rel: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    let parts: Vec<Component<'_>> = rel.components().collect();
    let n = parts.len().saturating_sub(1);
    (1..=n).map(move |i| parts[..i].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn entry_paths() {
        assert_eq!(entry_path(b"./a//b/./c/"), Some(PathBuf::from("a/b/c")));
        assert_eq!(entry_path(b"./"), Some(PathBuf::new()));
        assert_eq!(entry_path(b"/etc/passwd"), None);
        assert_eq!(entry_path(b"a/../../x"), None);
        assert_eq!(entry_path(b"a/.."), None);
    }

    #[test]
    fn symlink_targets() {
        assert!(symlink_stays_inside(Path::new("usr/bin/sh"), b"busybox"));
        assert!(symlink_stays_inside(
            Path::new("usr/bin/sh"),
            b"../../bin/busybox"
        ));
        assert!(!symlink_stays_inside(
            Path::new("usr/bin/sh"),
            b"../../../etc"
        ));
        assert!(symlink_stays_inside(Path::new("lib"), b"/usr/lib"));
        assert!(!symlink_stays_inside(Path::new("x"), b".."));
        assert!(!symlink_stays_inside(Path::new("x"), b""));
    }

    #[test]
    fn ancestors_shallowest_first() {
        let got: Vec<PathBuf> = ancestors(Path::new("a/b/c")).collect();
        assert_eq!(got, vec![PathBuf::from("a"), PathBuf::from("a/b")]);
        assert_eq!(ancestors(Path::new("a")).count(), 0);
    }

    proptest! {
        /// A normalized entry path is relative, has only normal components, and joined to a
        /// root never leaves it.
        #[test]
        fn normalized_paths_stay_under_root(parts in proptest::collection::vec(
            prop_oneof![Just("..".to_string()), Just(".".to_string()), Just(String::new()), "[a-z.]{1,4}"], 0..8),
            lead in prop_oneof![Just(""), Just("/"), Just("./")]) {
            let raw = format!("{lead}{}", parts.join("/"));
            if let Some(p) = entry_path(raw.as_bytes()) {
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(Path::new("/root").join(&p).starts_with("/root"));
                prop_assert!(!raw.starts_with('/'));
                prop_assert!(!parts.iter().any(|c| c == ".."));
            } else {
                prop_assert!(raw.starts_with('/') || parts.iter().any(|c| c == ".."));
            }
        }

        /// A relative symlink judged inside never climbs above the root when resolved lexically.
        #[test]
        fn inside_symlinks_never_climb(depth in 0usize..4, ups in 0usize..6, tail in "[a-z]{0,3}") {
            let link: PathBuf = (0..depth).map(|i| format!("d{i}")).chain(["l".to_string()]).collect();
            let target = format!("{}{}", "../".repeat(ups), tail);
            let inside = symlink_stays_inside(&link, target.as_bytes());
            prop_assert_eq!(inside, !target.is_empty() && ups <= depth);
        }
    }
}
