//! Applying layers, bottom first, onto a private directory: decompression (by magic bytes),
//! the diff-id check of each uncompressed stream, whiteouts, and the refusals that make a
//! hostile layer harmless.
//!
//! Rules, each enforced per entry:
//! - names must be relative without `..` ([`crate::path::entry_path`]);
//! - nothing is created, written or deleted below a symlink: every ancestor of an entry must be
//!   a real directory (checked with `lstat`, never following links), and files are opened with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` after the old entry at that path was removed;
//! - symlink targets may be absolute (rooted at the rootfs when the container runs) but a
//!   relative one may not climb above the root; hard link targets must be regular files
//!   already unpacked;
//! - device nodes, fifos and (by policy) setuid/setgid bits are refused; xattrs (including
//!   `security.capability`) and ownership are dropped: files belong to the unpacking user;
//! - file modes keep their permission and sticky bits; regular files keep their mtime,
//!   directories and symlinks get mtime 0, so every provider's rootfs looks the same;
//! - directories stay owner-writable while unpacking and get their final modes at the end.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::archive::LayerBlob;
use crate::digest::HashingReader;
use crate::error::{IoContext, show};
use crate::guard::TarGuard;
use crate::path;
use crate::{ImageError, ImageLimits, SetuidPolicy};

/// Mount points every rootfs gets, with the modes given when the image lacks them.
pub(crate) const MOUNT_POINTS: [(&str, u32); 6] = [
    ("proc", 0o555),
    ("dev", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("input", 0o755),
    ("output", 0o755),
];

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const COPY_BUFFER: usize = 1 << 20;
/// Tar headers and padding allowed per entry on top of the content limit.
const HEADER_ALLOWANCE: u64 = 4096;

const LAYER_TYPES: [&str; 9] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Applies layers onto `root`, tracking limits and the directory modes to set at the end.
pub(crate) struct Unpacker<'l> {
    root: PathBuf,
    limits: &'l ImageLimits,
    entries: u64,
    bytes: u64,
    /// Relative paths checked (or made) to be real directories; cleared when anything is removed.
    known_dirs: HashSet<PathBuf>,
    /// Final modes of directories, applied by [`Unpacker::finish`].
    dir_modes: HashMap<PathBuf, u32>,
    buf: Vec<u8>,
}

fn too_large(limits: &ImageLimits) -> ImageError {
    ImageError::TooLarge {
        what: "unpacked size",
        limit: limits.max_unpacked_bytes,
    }
}

/// The kind of special file an entry type is, if it is one the unpacker refuses.
fn node_kind(kind: tar::EntryType) -> Option<&'static str> {
    match kind {
        tar::EntryType::Char => Some("character device"),
        tar::EntryType::Block => Some("block device"),
        tar::EntryType::Fifo => Some("fifo"),
        _ => None,
    }
}

fn bad(layer: usize, reason: impl Into<String>) -> ImageError {
    ImageError::BadLayer {
        layer,
        reason: reason.into(),
    }
}

impl<'l> Unpacker<'l> {
    /// An unpacker writing into the existing, empty directory `root`.
    pub(crate) fn new(root: &Path, limits: &'l ImageLimits) -> Self {
        let dir_modes = HashMap::from([(PathBuf::new(), 0o755)]);
        Self {
            root: root.to_owned(),
            limits,
            entries: 0,
            bytes: 0,
            known_dirs: HashSet::new(),
            dir_modes,
            buf: vec![0; COPY_BUFFER],
        }
    }

    /// Applies one layer (`bytes` as stored), then checks its uncompressed stream against the
    /// layer's diff id.
    pub(crate) fn apply(
        &mut self,
        layer: usize,
        blob: &LayerBlob,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let limits = self.limits;
        let stream_limit = limits
            .max_unpacked_bytes
            .saturating_add(limits.max_entries.saturating_mul(HEADER_ALLOWANCE));
        let reader = HashingReader::new(decompressor(layer, blob, bytes)?, stream_limit);
        let mut archive = tar::Archive::new(TarGuard::new(reader));
        let result = self.entries_of(layer, &mut archive);
        let guard = archive.into_inner();
        if let Some(why) = guard.violation() {
            return Err(bad(layer, why));
        }
        let reader = guard.into_inner();
        if reader.over_limit() {
            return Err(too_large(limits));
        }
        result?;
        let actual = reader.finish().map_err(|e| match e.to_string().as_str() {
            crate::digest::OVER_LIMIT => too_large(limits),
            _ => bad(layer, format!("corrupt stream: {e}")),
        })?;
        blob.diff_id
            .check(&format!("layer {layer} (uncompressed)"), &actual)
    }

    fn entries_of<R: Read>(
        &mut self,
        layer: usize,
        archive: &mut tar::Archive<R>,
    ) -> Result<(), ImageError> {
        let mut written = HashSet::new();
        let entries = archive
            .entries()
            .map_err(|e| bad(layer, format!("not a tar stream: {e}")))?;
        for entry in entries {
            let mut entry =
                entry.map_err(|e| bad(layer, format!("corrupt or truncated tar: {e}")))?;
            self.entry(layer, &mut entry, &mut written)?;
        }
        Ok(())
    }

    /// Applies one tar entry; `written` collects the paths this layer created.
    fn entry<R: Read>(
        &mut self,
        layer: usize,
        entry: &mut tar::Entry<'_, R>,
        written: &mut HashSet<PathBuf>,
    ) -> Result<(), ImageError> {
        self.count_entry()?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(()); // pax global metadata, never content
        }
        let raw = entry.path_bytes().into_owned();
        let rel = path::entry_path(&raw).ok_or_else(|| ImageError::TarSlip {
            layer,
            path: String::from_utf8_lossy(&raw).into_owned(),
        })?;
        if rel
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(WHITEOUT.as_bytes()))
        {
            return self.whiteout(layer, &rel, written);
        }
        if rel.as_os_str().is_empty() {
            return match kind {
                tar::EntryType::Directory => Ok(()),
                _ => Err(bad(layer, "an entry other than a directory names the root")),
            };
        }
        self.materialize(layer, &rel, entry, kind)?;
        written.insert(rel);
        Ok(())
    }

    fn count_entry(&mut self) -> Result<(), ImageError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ImageError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Creates the file, directory or link an entry describes at `rel`.
    fn materialize<R: Read>(
        &mut self,
        layer: usize,
        rel: &Path,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
    ) -> Result<(), ImageError> {
        use tar::EntryType as T;
        if let Some(node) = node_kind(kind) {
            return Err(ImageError::DeviceNode {
                layer,
                path: show(rel),
                node,
            });
        }
        match kind {
            T::Regular | T::Continuous => {
                let mode = self.mode(layer, rel, entry.header())?;
                self.file(layer, rel, entry, mode)
            }
            T::Directory => {
                let mode = self.mode(layer, rel, entry.header())?;
                self.dir(layer, rel, mode)
            }
            T::Symlink => self.symlink(layer, rel, entry),
            T::Link => self.hardlink(layer, rel, entry),
            T::GNUSparse => Err(bad(
                layer,
                format!("{} is a sparse file, which is not supported", show(rel)),
            )),
            other => Err(bad(
                layer,
                format!(
                    "{} has unsupported entry type {:?}",
                    show(rel),
                    other.as_byte() as char
                ),
            )),
        }
    }

    /// Permission and sticky bits of an entry, refusing or stripping setuid/setgid per policy.
    fn mode(&self, layer: usize, rel: &Path, header: &tar::Header) -> Result<u32, ImageError> {
        let mode = header
            .mode()
            .map_err(|e| bad(layer, format!("bad mode of {}: {e}", show(rel))))?
            & 0o7777;
        if mode & 0o6000 != 0 && self.limits.setuid == SetuidPolicy::Refuse {
            return Err(ImageError::Setuid {
                layer,
                path: show(rel),
                mode,
            });
        }
        Ok(mode & 0o1777)
    }

    fn file<R: Read>(
        &mut self,
        layer: usize,
        rel: &Path,
        entry: &mut tar::Entry<'_, R>,
        mode: u32,
    ) -> Result<(), ImageError> {
        let size = entry.size();
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_unpacked_bytes {
            return Err(too_large(self.limits));
        }
        let mtime = entry.header().mtime().unwrap_or(0);
        let full = self.prepare(layer, rel, false)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&full)
            .with_path("creating", &full)?;
        let copied = copy(entry, &mut file, &mut self.buf)
            .map_err(|e| bad(layer, format!("reading {}: {e}", show(rel))))?;
        if copied != size {
            return Err(bad(
                layer,
                format!("{} is truncated ({copied} of {size} bytes)", show(rel)),
            ));
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .with_path("setting mode of", &full)?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .with_path("setting mtime of", &full)
    }

    fn dir(&mut self, layer: usize, rel: &Path, mode: u32) -> Result<(), ImageError> {
        let full = self.prepare(layer, rel, true)?;
        if !is_real_dir(&full) {
            make_dir(&full)?;
        }
        self.known_dirs.insert(rel.to_owned());
        self.dir_modes.insert(rel.to_owned(), mode);
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        layer: usize,
        rel: &Path,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), ImageError> {
        let target = entry.link_name_bytes().unwrap_or_default().into_owned();
        if !path::symlink_stays_inside(rel, &target) {
            let target = String::from_utf8_lossy(&target).into_owned();
            return Err(ImageError::LinkEscape {
                layer,
                path: show(rel),
                target,
            });
        }
        let full = self.prepare(layer, rel, false)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
            .with_path("creating symlink", &full)
    }

    fn hardlink<R: Read>(
        &mut self,
        layer: usize,
        rel: &Path,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), ImageError> {
        let raw = entry.link_name_bytes().unwrap_or_default().into_owned();
        let escape = || ImageError::LinkEscape {
            layer,
            path: show(rel),
            target: String::from_utf8_lossy(&raw).into_owned(),
        };
        let target = path::entry_path(&raw)
            .filter(|t| !t.as_os_str().is_empty())
            .ok_or_else(escape)?;
        if target == rel {
            return Ok(());
        }
        let source = self.root.join(&target);
        let is_file = self.parents_exist(layer, &target)?
            && fs::symlink_metadata(&source).is_ok_and(|m| m.is_file());
        if !is_file {
            return Err(bad(
                layer,
                format!(
                    "hard link {} -> {} does not name a regular file unpacked before it",
                    show(rel),
                    show(&target)
                ),
            ));
        }
        let full = self.prepare(layer, rel, false)?;
        fs::hard_link(&source, &full).with_path("creating hard link", &full)
    }

    /// Makes the parents of `rel` real directories and removes what is at `rel` (a directory is
    /// kept when `keep_dir`); returns the absolute path to create.
    fn prepare(&mut self, layer: usize, rel: &Path, keep_dir: bool) -> Result<PathBuf, ImageError> {
        for ancestor in path::ancestors(rel) {
            if !self.known_dirs.contains(&ancestor) {
                self.ensure_dir(layer, rel, &ancestor)?;
            }
        }
        let full = self.root.join(rel);
        if !(keep_dir && is_real_dir(&full)) {
            self.remove(rel)?;
        }
        Ok(full)
    }

    fn ensure_dir(&mut self, layer: usize, rel: &Path, ancestor: &Path) -> Result<(), ImageError> {
        let full = self.root.join(ancestor);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::SymlinkTraversal {
                    layer,
                    path: show(rel),
                });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(bad(
                    layer,
                    format!(
                        "{} lies below {}, which is not a directory",
                        show(rel),
                        show(ancestor)
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.count_entry()?; // implied directories cost inodes like explicit ones
                make_dir(&full)?;
                self.dir_modes.entry(ancestor.to_owned()).or_insert(0o755);
            }
            Err(e) => return Err(ImageError::io("inspecting", &full, e)),
        }
        self.known_dirs.insert(ancestor.to_owned());
        Ok(())
    }

    /// Whether every ancestor of `rel` exists as a real directory; a symlink on the way is refused.
    fn parents_exist(&self, layer: usize, rel: &Path) -> Result<bool, ImageError> {
        for ancestor in path::ancestors(rel) {
            if self.known_dirs.contains(&ancestor) {
                continue;
            }
            match fs::symlink_metadata(self.root.join(&ancestor)) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ImageError::SymlinkTraversal {
                        layer,
                        path: show(rel),
                    });
                }
                Ok(m) if m.is_dir() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    fn whiteout(
        &mut self,
        layer: usize,
        rel: &Path,
        written: &HashSet<PathBuf>,
    ) -> Result<(), ImageError> {
        if !self.parents_exist(layer, rel)? {
            return Ok(()); // nothing below to hide
        }
        let dir = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        if name == OPAQUE.as_bytes() {
            return self.make_opaque(dir, written);
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk and the like), never content
        }
        // `.wh..` and `.wh...` would name the directory itself or its parent.
        let hidden = &name[WHITEOUT.len()..];
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(ImageError::TarSlip {
                layer,
                path: show(rel),
            });
        }
        let victim = dir.join(OsStr::from_bytes(hidden));
        if !written.contains(&victim) {
            self.remove(&victim)?;
        }
        Ok(())
    }

    /// Removes everything under `dir` that this layer did not write itself.
    fn make_opaque(&mut self, dir: &Path, written: &HashSet<PathBuf>) -> Result<(), ImageError> {
        let full = self.root.join(dir);
        for child in fs::read_dir(&full).with_path("listing", &full)? {
            let child = child.with_path("listing", &full)?;
            let rel = dir.join(child.file_name());
            let is_dir = child.file_type().is_ok_and(|t| t.is_dir());
            match (written.contains(&rel), is_dir) {
                (true, true) => self.make_opaque(&rel, written)?,
                (true, false) => {}
                (false, _) => self.remove(&rel)?,
            }
        }
        Ok(())
    }

    /// Removes whatever is at `rel` (never following a symlink), forgetting cached directories.
    fn remove(&mut self, rel: &Path) -> Result<(), ImageError> {
        let full = self.root.join(rel);
        let result = match fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => {
                self.known_dirs.clear();
                self.dir_modes.retain(|p, _| !p.starts_with(rel));
                fs::remove_dir_all(&full)
            }
            Ok(_) => fs::remove_file(&full),
        };
        result.with_path("removing", &full)
    }

    /// Adds the runtime's mount points, applies directory modes; returns what was unpacked.
    pub(crate) fn finish(mut self) -> Result<Measured, ImageError> {
        for (name, mode) in MOUNT_POINTS {
            let full = self.root.join(name);
            if !is_real_dir(&full) {
                self.remove(Path::new(name))?;
                make_dir(&full)?;
                self.dir_modes.insert(PathBuf::from(name), mode);
            }
        }
        apply_dir_modes(&self.root, Path::new(""), &self.dir_modes)?;
        Ok(Measured {
            unpacked_bytes: self.bytes,
            entries: self.entries,
        })
    }
}

/// What assembling an image's rootfs unpacked, kept with the rootfs so that a cached load
/// enforces the same limits as the first one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Measured {
    /// Total size of regular files over all layers.
    pub unpacked_bytes: u64,
    /// Tar entries over all layers.
    pub entries: u64,
}

impl Measured {
    /// Refuses what exceeds `limits` (a cached image loaded under smaller limits).
    pub(crate) fn check(&self, limits: &ImageLimits) -> Result<(), ImageError> {
        if self.unpacked_bytes > limits.max_unpacked_bytes {
            return Err(too_large(limits));
        }
        if self.entries > limits.max_entries {
            return Err(ImageError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        Ok(())
    }
}

/// Walks real directories (never symlinks), children first, setting recorded modes.
fn apply_dir_modes(
    root: &Path,
    rel: &Path,
    modes: &HashMap<PathBuf, u32>,
) -> Result<(), ImageError> {
    let full = root.join(rel);
    for child in fs::read_dir(&full).with_path("listing", &full)? {
        let child = child.with_path("listing", &full)?;
        let kind = child.file_type().with_path("listing", &full)?;
        if kind.is_dir() {
            apply_dir_modes(root, &rel.join(child.file_name()), modes)?;
        } else if kind.is_symlink() {
            set_epoch_times(&child.path())?;
        }
    }
    let mode = modes.get(rel).copied().unwrap_or(0o755);
    fs::set_permissions(&full, fs::Permissions::from_mode(mode))
        .with_path("setting mode of", &full)?;
    set_epoch_times(&full)
}

/// Gives a directory or symlink the mtime 0 (the epoch), like the sample images' files: its
/// unpack time would differ between providers, and a job that lists or archives its root
/// (`ls -l`, `tar`, `stat`) would then give different results on honest providers. Regular
/// files keep the mtime their layer gives.
fn set_epoch_times(full: &Path) -> Result<(), ImageError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(full.as_os_str().as_bytes())
        .map_err(|_| ImageError::bad_archive(format!("{} contains NUL", full.display())))?;
    let epoch = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    // SAFETY: `path` is a valid NUL-terminated string and `epoch` two valid timespecs;
    // AT_SYMLINK_NOFOLLOW changes a symlink itself, never what it points at.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            epoch.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(ImageError::io(
            "setting the time of",
            full,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn is_real_dir(full: &Path) -> bool {
    fs::symlink_metadata(full).is_ok_and(|m| m.is_dir())
}

fn make_dir(full: &Path) -> Result<(), ImageError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(full)
        .with_path("creating directory", full)
}

/// Copies `from` to `to` in large chunks; returns the bytes copied.
fn copy(from: &mut impl Read, to: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A reader of the layer's uncompressed tar, chosen by magic bytes; the media type, when given,
/// must be a known layer type.
/// Checks a layer of a cached image without unpacking it: its stored bytes against the
/// manifest's digest and its uncompressed stream against the config's diff id, under the
/// same size limit the unpacker applies.
pub(crate) fn verify_layer(
    layer: usize,
    blob: &LayerBlob,
    bytes: &[u8],
    limits: &ImageLimits,
) -> Result<(), ImageError> {
    if let Some(digest) = blob.digest.as_ref().filter(|d| **d != blob.diff_id) {
        digest.verify(&format!("layer {layer}"), bytes)?;
    }
    let stream_limit = limits
        .max_unpacked_bytes
        .saturating_add(limits.max_entries.saturating_mul(HEADER_ALLOWANCE));
    let reader = HashingReader::new(decompressor(layer, blob, bytes)?, stream_limit);
    let actual = reader.finish().map_err(|e| match e.to_string().as_str() {
        crate::digest::OVER_LIMIT => too_large(limits),
        _ => bad(layer, format!("corrupt stream: {e}")),
    })?;
    blob.diff_id
        .check(&format!("layer {layer} (uncompressed)"), &actual)
}

fn decompressor<'a>(
    layer: usize,
    blob: &LayerBlob,
    bytes: &'a [u8],
) -> Result<Box<dyn Read + 'a>, ImageError> {
    if let Some(t) = blob
        .media_type
        .as_deref()
        .filter(|t| !LAYER_TYPES.contains(t))
    {
        return Err(ImageError::UnsupportedMediaType(t.to_owned()));
    }
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::GzDecoder::new(bytes)));
    }
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return zstd_reader(layer, bytes);
    }
    Ok(Box::new(bytes))
}

#[cfg(feature = "zstd")]
fn zstd_reader<'a>(layer: usize, bytes: &'a [u8]) -> Result<Box<dyn Read + 'a>, ImageError> {
    let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
        .map_err(|e| bad(layer, format!("zstd: {e}")))?;
    Ok(Box::new(decoder))
}

#[cfg(not(feature = "zstd"))]
fn zstd_reader<'a>(_layer: usize, _bytes: &'a [u8]) -> Result<Box<dyn Read + 'a>, ImageError> {
    Err(ImageError::UnsupportedMediaType(
        "application/vnd.oci.image.layer.v1.tar+zstd (build agora-oci with feature `zstd`)".into(),
    ))
}
