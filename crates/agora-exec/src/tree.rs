//! File trees as one blob: directory inputs and working directories travel as a tar
//! archive, content-addressed like any other blob.
//!
//! - [`pack_dir`] makes the archive of a host directory *deterministic*: entries sorted by
//!   path, mtime 0, uid/gid 0, no owner names, modes normalized to 0755 (directories and
//!   executables) or 0644 (other files), so the same tree always hashes the same.
//! - [`normalize_tar`] takes a ready tar, checks it with the same rules as unpacking, and
//!   re-packs it deterministically.
//! - [`unpack`] is the provider's side, a trust boundary: the archive comes from a
//!   stranger. It refuses absolute paths, `..`, links that escape the tree or that later
//!   entries would write through, hard links, device nodes, fifos, setuid/setgid bits and
//!   archives beyond the entry or byte limits, each with a typed [`TreeError`]; nothing is
//!   ever written outside the destination directory.
//!
//! Only regular files, directories and symbolic links whose target stays inside the tree
//! are carried.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use tar::{Archive, Builder, EntryType, Header};

/// Most entries one tree may hold.
pub const MAX_ENTRIES: u64 = 100_000;
/// Longest path inside a tree, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Mode bits the unpacker refuses: setuid and setgid.
const SET_ID_BITS: u32 = 0o6000;

/// Why a tree cannot be packed or unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// An entry's path is absolute.
    #[error("entry {path:?} has an absolute path; tree entries must be relative")]
    AbsolutePath {
        /// The entry's path.
        path: String,
    },
    /// An entry's path has a `..` component.
    #[error("entry {path:?} contains `..`; tree entries must stay inside the tree")]
    ParentDir {
        /// The entry's path.
        path: String,
    },
    /// A path is empty or longer than [`MAX_PATH_BYTES`].
    #[error("entry {path:?} has an empty path or one longer than {MAX_PATH_BYTES} bytes")]
    BadPath {
        /// The entry's path.
        path: String,
    },
    /// A symbolic link points outside the tree (or is absolute).
    #[error(
        "symlink {path:?} points to {target:?}, outside the tree; only links that stay inside the tree are allowed"
    )]
    LinkEscapes {
        /// The link's path.
        path: String,
        /// Where it points.
        target: String,
    },
    /// An entry would be written through a symbolic link the tree made earlier.
    #[error(
        "entry {path:?} lies under a symlink of the tree; entries must be under real directories"
    )]
    ThroughLink {
        /// The entry's path.
        path: String,
    },
    /// An entry repeats a path already in the tree (other than a directory).
    #[error("entry {path:?} appears twice in the tree")]
    Duplicate {
        /// The entry's path.
        path: String,
    },
    /// A kind of entry trees do not carry (device node, fifo, hard link, socket, ...).
    #[error(
        "entry {path:?} is a {kind}; trees carry only regular files, directories and symlinks inside the tree"
    )]
    Unsupported {
        /// The entry's path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// An entry has the setuid or setgid bit.
    #[error("entry {path:?} has the setuid/setgid bit (mode {mode:o}); clear it")]
    SetId {
        /// The entry's path.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// More entries than the limit.
    #[error("the tree has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// More bytes of file content than the limit.
    #[error("the tree's files hold more than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The archive itself is unreadable, or the host failed reading or writing.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl TreeError {
    fn io(context: impl Into<String>, source: io::Error) -> Self {
        TreeError::Io {
            context: context.into(),
            source,
        }
    }
}

/// How much a tree may hold when unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeLimits {
    /// Most entries (files, directories and links).
    pub max_entries: u64,
    /// Most bytes of regular-file content in total.
    pub max_bytes: u64,
}

impl Default for TreeLimits {
    /// [`MAX_ENTRIES`] entries and 4 GiB of content.
    fn default() -> Self {
        TreeLimits {
            max_entries: MAX_ENTRIES,
            max_bytes: 4 << 30,
        }
    }
}

/// What an unpacked tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Entries written.
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Packs the directory `dir` into a deterministic tar archive (see the module docs).
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, TreeError> {
    let meta =
        fs::metadata(dir).map_err(|e| TreeError::io(format!("reading {}", dir.display()), e))?;
    if !meta.is_dir() {
        return Err(TreeError::io(
            format!("packing {}", dir.display()),
            io::Error::other("not a directory"),
        ));
    }
    let mut builder = Builder::new(Vec::new());
    let mut count = 0u64;
    pack_children(&mut builder, dir, Path::new(""), &mut count)?;
    builder
        .into_inner()
        .map_err(|e| TreeError::io("finishing the tar archive", e))
}

fn pack_children(
    builder: &mut Builder<Vec<u8>>,
    host: &Path,
    rel: &Path,
    count: &mut u64,
) -> Result<(), TreeError> {
    let listing = |e| TreeError::io(format!("listing {}", host.display()), e);
    let mut names: Vec<_> = fs::read_dir(host)
        .map_err(listing)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(listing)?;
    names.sort();
    for name in names {
        *count += 1;
        if *count > MAX_ENTRIES {
            return Err(TreeError::TooManyEntries { limit: MAX_ENTRIES });
        }
        let (host_path, rel_path) = (host.join(&name), rel.join(&name));
        let shown = rel_path.display().to_string();
        let meta = fs::symlink_metadata(&host_path)
            .map_err(|e| TreeError::io(format!("inspecting {}", host_path.display()), e))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            append(
                builder,
                EntryType::Directory,
                0o755,
                &rel_path,
                0,
                io::empty(),
            )?;
            pack_children(builder, &host_path, &rel_path, count)?;
        } else if kind.is_file() {
            let file = fs::File::open(&host_path)
                .map_err(|e| TreeError::io(format!("reading {}", host_path.display()), e))?;
            let mode = if executable(&meta) { 0o755 } else { 0o644 };
            append(
                builder,
                EntryType::Regular,
                mode,
                &rel_path,
                meta.len(),
                file,
            )?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&host_path)
                .map_err(|e| TreeError::io(format!("reading link {}", host_path.display()), e))?;
            check_link(&rel_path, &target)?;
            let mut header = header(EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut header, &rel_path, &target)
                .map_err(|e| TreeError::io(format!("archiving {shown}"), e))?;
        } else {
            return Err(TreeError::Unsupported {
                path: shown,
                kind: "special file (device, fifo or socket)",
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn executable(_meta: &fs::Metadata) -> bool {
    false
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn append(
    builder: &mut Builder<Vec<u8>>,
    kind: EntryType,
    mode: u32,
    path: &Path,
    size: u64,
    data: impl Read,
) -> Result<(), TreeError> {
    let mut header = header(kind, mode, size);
    // A file that grows while being packed must not produce an archive whose header lies.
    builder
        .append_data(&mut header, path, data.take(size))
        .map_err(|e| TreeError::io(format!("archiving {}", path.display()), e))
}

/// Checks a ready tar archive with the unpacking rules and re-packs it deterministically,
/// so that the same tree gives the same blob however the archive was made.
pub fn normalize_tar(bytes: &[u8], limits: &TreeLimits) -> Result<Vec<u8>, TreeError> {
    let scratch = tempfile::tempdir()
        .map_err(|e| TreeError::io("creating a directory to check the archive in", e))?;
    unpack(bytes, scratch.path(), limits)?;
    pack_dir(scratch.path())
}

/// Unpacks the tar archive `bytes` into the existing directory `dest`, refusing anything
/// unsafe (see the module docs). Directories get mode 0755, files 0644 or 0755.
pub fn unpack(bytes: &[u8], dest: &Path, limits: &TreeLimits) -> Result<TreeStats, TreeError> {
    let mut archive = Archive::new(bytes);
    let mut stats = TreeStats::default();
    let mut links: BTreeSet<PathBuf> = BTreeSet::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let entries = archive
        .entries()
        .map_err(|e| TreeError::io("reading the tar archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| TreeError::io("reading the tar archive", e))?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(TreeError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = entry
            .path()
            .map_err(|e| TreeError::io("reading an entry's path", e))?
            .into_owned();
        let rel = relative_path(&raw)?;
        let shown = rel.display().to_string();
        if rel.as_os_str().is_empty() {
            // `tar -C dir .` records the root itself; it exists already.
            if entry.header().entry_type().is_dir() {
                continue;
            }
            return Err(TreeError::BadPath {
                path: raw.display().to_string(),
            });
        }
        // Ancestors are looked up one by one (not every link scanned), so a hostile archive
        // of many links and many entries costs entries × depth, not entries × links.
        if rel.ancestors().skip(1).any(|dir| links.contains(dir)) {
            return Err(TreeError::ThroughLink { path: shown });
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0);
        if mode & SET_ID_BITS != 0 {
            return Err(TreeError::SetId { path: shown, mode });
        }
        let kind = header.entry_type();
        let is_dir = kind.is_dir();
        if !seen.insert(rel.clone()) && !is_dir {
            return Err(TreeError::Duplicate { path: shown });
        }
        let target = dest.join(&rel);
        if kind.is_dir() {
            create_dirs(dest, &rel)?;
        } else if kind.is_file() || kind.is_contiguous() {
            let size = entry.size();
            stats.bytes = stats.bytes.saturating_add(size);
            if stats.bytes > limits.max_bytes {
                return Err(TreeError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            create_parent(dest, &rel)?;
            write_file(&mut entry, &target, mode & 0o111 != 0, &shown)?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name()
                .map_err(|e| TreeError::io(format!("reading link {shown}"), e))?
                .ok_or_else(|| TreeError::LinkEscapes {
                    path: shown.clone(),
                    target: String::new(),
                })?
                .into_owned();
            check_link(&rel, &link)?;
            create_parent(dest, &rel)?;
            make_symlink(&link, &target, &shown)?;
            links.insert(rel);
        } else {
            return Err(TreeError::Unsupported {
                path: shown,
                kind: kind_name(kind),
            });
        }
    }
    Ok(stats)
}

/// The entry's path as a relative path of plain components (a leading `./` is dropped;
/// the tree's own root, `./`, comes out empty).
fn relative_path(raw: &Path) -> Result<PathBuf, TreeError> {
    let shown = raw.display().to_string();
    if shown.len() > MAX_PATH_BYTES {
        return Err(TreeError::BadPath { path: shown });
    }
    let mut rel = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(TreeError::ParentDir { path: shown }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(TreeError::AbsolutePath { path: shown });
            }
        }
    }
    Ok(rel)
}

/// A link at `rel` pointing to `target` must be relative and, resolved against the link's
/// own directory, stay inside the tree at every step. (Entries under links are refused
/// separately, so the link's directory is a real one and this lexical walk is exact.)
fn check_link(rel: &Path, target: &Path) -> Result<(), TreeError> {
    let escapes = || TreeError::LinkEscapes {
        path: rel.display().to_string(),
        target: target.display().to_string(),
    };
    let mut depth: usize = rel.components().count().saturating_sub(1);
    if target.as_os_str().is_empty() {
        return Err(escapes());
    }
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(escapes)?,
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    Ok(())
}

/// Creates the directories of `rel` under `dest`, refusing to pass through anything that
/// is not a real directory (a link the tree made, or a file).
fn create_dirs(dest: &Path, rel: &Path) -> Result<(), TreeError> {
    let mut at = dest.to_path_buf();
    for component in rel.components() {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(TreeError::ThroughLink {
                    path: rel.display().to_string(),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&at)
                    .map_err(|e| TreeError::io(format!("creating {}", rel.display()), e))?;
            }
            Err(err) => return Err(TreeError::io(format!("inspecting {}", rel.display()), err)),
        }
    }
    Ok(())
}

fn create_parent(dest: &Path, rel: &Path) -> Result<(), TreeError> {
    match rel.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => create_dirs(dest, parent),
        _ => Ok(()),
    }
}

fn write_file(
    entry: &mut impl Read,
    target: &Path,
    exec: bool,
    shown: &str,
) -> Result<(), TreeError> {
    // `create_new` refuses an existing path, and with it a link planted at the same name.
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if exec { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = exec;
    let mut file = options
        .open(target)
        .map_err(|e| TreeError::io(format!("creating {shown}"), e))?;
    io::copy(entry, &mut file).map_err(|e| TreeError::io(format!("writing {shown}"), e))?;
    Ok(())
}

#[cfg(unix)]
fn make_symlink(link: &Path, target: &Path, shown: &str) -> Result<(), TreeError> {
    std::os::unix::fs::symlink(link, target)
        .map_err(|e| TreeError::io(format!("creating link {shown}"), e))
}

#[cfg(not(unix))]
fn make_symlink(_link: &Path, _target: &Path, shown: &str) -> Result<(), TreeError> {
    Err(TreeError::Unsupported {
        path: shown.to_owned(),
        kind: "symlink (not supported on this host)",
    })
}

fn kind_name(kind: EntryType) -> &'static str {
    if kind.is_hard_link() {
        "hard link"
    } else if kind.is_character_special() {
        "character device"
    } else if kind.is_block_special() {
        "block device"
    } else if kind.is_fifo() {
        "fifo"
    } else if kind.is_gnu_sparse() {
        "sparse file"
    } else {
        "entry of an unsupported type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("share/db")).unwrap();
        fs::write(dir.path().join("share/db/a.txt"), b"alpha").unwrap();
        fs::write(dir.path().join("top"), b"top").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("db/a.txt", dir.path().join("share/link")).unwrap();
        dir
    }

    #[test]
    fn packing_is_deterministic_and_round_trips() {
        let (a, b) = (sample_dir(), sample_dir());
        let packed = pack_dir(a.path()).unwrap();
        assert_eq!(packed, pack_dir(b.path()).unwrap(), "same tree, same bytes");
        let out = tempfile::tempdir().unwrap();
        let stats = unpack(&packed, out.path(), &TreeLimits::default()).unwrap();
        assert_eq!(stats.bytes, 8);
        assert_eq!(
            fs::read(out.path().join("share/db/a.txt")).unwrap(),
            b"alpha"
        );
        #[cfg(unix)]
        assert_eq!(fs::read(out.path().join("share/link")).unwrap(), b"alpha");
        assert_eq!(
            normalize_tar(&packed, &TreeLimits::default()).unwrap(),
            packed
        );
    }

    #[test]
    fn links_leaving_the_tree_are_refused_when_packing() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("../../etc/passwd", dir.path().join("d/x")).unwrap();
        let err = pack_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TreeError::LinkEscapes { .. }), "{err}");
    }

    #[test]
    fn link_checks_are_lexical_and_exact() {
        assert!(check_link(Path::new("a/l"), Path::new("../b")).is_ok());
        assert!(check_link(Path::new("a/l"), Path::new("../../b")).is_err());
        assert!(check_link(Path::new("l"), Path::new("/etc")).is_err());
        assert!(check_link(Path::new("l"), Path::new("x/../../y")).is_err());
    }
}
