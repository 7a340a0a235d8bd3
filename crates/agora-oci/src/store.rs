//! The content-addressed image store: where layer blobs and assembled root filesystems live,
//! how a rootfs is assembled privately and published with one atomic rename, and how a second
//! load of the same image is answered from the cache.
//!
//! Layout under the store root:
//! - `blobs/sha256/<hex>`: layers as received (compressed or not), written after they verified;
//! - `rootfs/<chain-hex>/`: a complete root filesystem, named by the image's OCI ChainID;
//! - `meta/<chain-hex>.json`: what the assembler measured (unpacked bytes and entries), so a
//!   cached load enforces the caller's limits like a cold one;
//! - `tmp/<pid>-<n>/`: assemblies in progress; those of dead processes are removed by
//!   [`ImageStore::open`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::archive::{self, ArchiveIndex, LayerBlob, ResolvedImage};
use crate::config::ImageConfig;
use crate::digest::{self, Digest};
use crate::error::IoContext;
use crate::layer::{Measured, Unpacker};
use crate::{ImageError, ImageLimits};

/// A directory of verified layer blobs and assembled, shareable root filesystems.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    keep_blobs: bool,
}

/// An image ready to run: its root filesystem and config.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The assembled root filesystem. Shared by every container of this image: mount it read-only.
    pub rootfs: PathBuf,
    /// The image config, its user resolved to numbers.
    pub config: ImageConfig,
    /// The OCI ChainID of the layers, `sha256:<hex>`; names the rootfs.
    pub chain_id: String,
    /// Digest of the image config, `sha256:<hex>`: the image's identity.
    pub config_digest: String,
    /// Total size of the regular files in all layers.
    pub unpacked_bytes: u64,
    /// Whether the rootfs was already in the store (nothing was unpacked).
    pub cached: bool,
    /// Time this load took, reading the archive file, parsing and verifying included.
    pub unpack_time: Duration,
}

impl ImageStore {
    /// Opens (creating if needed) a store at `root`, removing assemblies left by dead processes.
    ///
    /// Processes sharing a store must share a PID namespace: an assembly is judged abandoned
    /// when the process id in its name is not alive here.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in ["blobs/sha256", "rootfs", "meta", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).with_path("creating store directory", &path)?;
        }
        let store = Self {
            root: root.to_owned(),
            keep_blobs: true,
        };
        spread_children(&root.join("tmp"));
        store.remove_stale_tmp()?;
        Ok(store)
    }

    /// Whether verified layer blobs are kept under `blobs/sha256/` (the default). Keeping them
    /// doubles what a cold load writes; nothing in this crate reads them back yet.
    pub fn keep_blobs(mut self, keep: bool) -> Self {
        self.keep_blobs = keep;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the rootfs of the image with ChainID `chain_id` (`sha256:<hex>`) lives, if assembled.
    pub fn rootfs_of(&self, chain_id: &str) -> Option<PathBuf> {
        let digest = Digest::parse(chain_id).ok()?;
        let path = self.rootfs_path(&digest);
        is_real_dir(&path).then_some(path)
    }

    /// Loads the archive file at `path`, refusing it first if larger than the limit. Only the
    /// tar headers and JSON documents are read before the cache is consulted; layers are read
    /// one at a time, and only when the rootfs must be assembled.
    pub fn load_archive_file(
        &self,
        path: &Path,
        limits: &ImageLimits,
    ) -> Result<LoadedImage, ImageError> {
        let start = Instant::now();
        let file = fs::File::open(path).with_path("opening image archive", path)?;
        let len = file
            .metadata()
            .with_path("reading image archive", path)?
            .len();
        check_archive_size(len, limits)?;
        let index = ArchiveIndex::parse_file(&file, len, limits.max_entries)?;
        self.load(&index, limits, start)
    }

    /// Verifies the archive and returns its image, assembling the rootfs unless it is cached.
    ///
    /// On a cache hit every layer is still read and checked against its digests, but not
    /// unpacked: the cached rootfs is named by the ChainID of the config's diff ids, and an
    /// archive whose layers do not match them must be refused by a provider that has the
    /// image exactly as by one that has not.
    pub fn load_archive(
        &self,
        bytes: &[u8],
        limits: &ImageLimits,
    ) -> Result<LoadedImage, ImageError> {
        let start = Instant::now();
        check_archive_size(bytes.len() as u64, limits)?;
        let index = ArchiveIndex::parse(bytes, limits.max_entries)?;
        self.load(&index, limits, start)
    }

    fn load(
        &self,
        index: &ArchiveIndex<'_>,
        limits: &ImageLimits,
        start: Instant,
    ) -> Result<LoadedImage, ImageError> {
        let image = archive::resolve(index, limits)?;
        let chain = digest::chain_id(&image.config.diff_ids)
            .ok_or_else(|| ImageError::bad_archive("image has no layers"))?;
        let rootfs = self.rootfs_path(&chain);
        let cached = is_real_dir(&rootfs);
        let (measured, user) = if cached {
            let measured = self.read_meta(&chain);
            measured.check(limits)?;
            for (i, layer) in image.layers.iter().enumerate() {
                let bytes = index.require(&layer.name, &format!("layer {i}"))?;
                crate::layer::verify_layer(i, layer, &bytes, limits)?;
            }
            (
                measured,
                crate::user::resolve(&rootfs, image.config.user_spec.as_deref())?,
            )
        } else {
            self.assemble(index, &image, &chain, limits)?
        };
        Ok(LoadedImage {
            rootfs,
            config: ImageConfig {
                user,
                ..image.config.image
            },
            chain_id: chain.to_string(),
            config_digest: image.config_digest.to_string(),
            unpacked_bytes: measured.unpacked_bytes,
            cached,
            unpack_time: start.elapsed(),
        })
    }

    /// Verifies and unpacks every layer into a private directory, then renames it into place.
    /// Losing a race to a concurrent assembler of the same image is fine: its result is equal.
    fn assemble(
        &self,
        index: &ArchiveIndex<'_>,
        image: &ResolvedImage,
        chain: &Digest,
        limits: &ImageLimits,
    ) -> Result<(Measured, Option<(u32, u32)>), ImageError> {
        let tmp = TmpDir::create(&self.root.join("tmp"))?;
        let mut unpacker = Unpacker::new(&tmp.path, limits);
        let mut staged = StagedBlobs { files: Vec::new() };
        for (i, layer) in image.layers.iter().enumerate() {
            let bytes = index.require(&layer.name, &format!("layer {i}"))?;
            // An uncompressed layer's digest is its diff id, which unpacking checks anyway.
            match &layer.digest {
                Some(digest) if *digest != layer.diff_id => {
                    digest.verify(&format!("layer {i}"), &bytes)?
                }
                _ => {}
            }
            self.apply_layer(&mut unpacker, &mut staged, i, layer, &bytes)?;
        }
        let measured = unpacker.finish()?;
        let user = crate::user::resolve(&tmp.path, image.config.user_spec.as_deref())?;
        staged.publish()?;
        self.write_meta(chain, &measured)?;
        let target = self.rootfs_path(chain);
        match fs::rename(&tmp.path, &target) {
            Ok(()) => tmp.disarm(),
            Err(_) if is_real_dir(&target) => {} // a concurrent assembler won; `tmp` is removed on drop
            Err(e) => return Err(ImageError::io("publishing rootfs", &target, e)),
        }
        Ok((measured, user))
    }

    /// Unpacks one layer while a second thread stages its blob (if blobs are kept).
    fn apply_layer(
        &self,
        unpacker: &mut Unpacker<'_>,
        staged: &mut StagedBlobs,
        i: usize,
        layer: &LayerBlob,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let (applied, blob) = std::thread::scope(|scope| {
            let staging = self
                .keep_blobs
                .then(|| scope.spawn(|| self.stage_blob(layer, bytes)));
            let applied = unpacker.apply(i, layer, bytes);
            let blob =
                staging.map(|thread| thread.join().unwrap_or_else(|_| Err(thread_panicked())));
            (applied, blob)
        });
        if let Some(Some(file)) = blob.transpose()? {
            staged.files.push(file);
        }
        applied
    }

    fn rootfs_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("rootfs").join(chain.hex())
    }

    fn meta_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("meta").join(format!("{}.json", chain.hex()))
    }

    /// Writes a layer blob not yet kept to `tmp/`; returns it and where it goes once the image
    /// verified.
    fn stage_blob(
        &self,
        layer: &LayerBlob,
        bytes: &[u8],
    ) -> Result<Option<(PathBuf, PathBuf)>, ImageError> {
        let digest = layer.digest.clone().unwrap_or_else(|| Digest::of(bytes));
        let path = self.root.join("blobs/sha256").join(digest.hex());
        if path.exists() {
            return Ok(None);
        }
        let tmp = self.root.join("tmp").join(unique_name());
        if let Err(e) = fs::write(&tmp, bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(ImageError::io("writing", &tmp, e));
        }
        Ok(Some((tmp, path)))
    }

    fn write_meta(&self, chain: &Digest, measured: &Measured) -> Result<(), ImageError> {
        let meta = serde_json::to_vec(measured).unwrap_or_default();
        self.write_atomically(&self.meta_path(chain), &meta)
    }

    /// What the assembler recorded; zeros if the record is missing or unreadable.
    fn read_meta(&self, chain: &Digest) -> Measured {
        let meta = fs::read(self.meta_path(chain)).ok();
        meta.and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or_default()
    }

    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp").join(unique_name());
        fs::write(&tmp, bytes).with_path("writing", &tmp)?;
        fs::rename(&tmp, path).with_path("writing", path)
    }

    /// Removes `tmp/<pid>-…` entries whose process is gone.
    fn remove_stale_tmp(&self) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).with_path("listing", &tmp)? {
            let entry = entry.with_path("listing", &tmp)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if pid.is_none_or(|pid| !process_alive(pid)) {
                force_remove(&entry.path());
            }
        }
        Ok(())
    }
}

fn check_archive_size(len: u64, limits: &ImageLimits) -> Result<(), ImageError> {
    if len > limits.max_archive_bytes {
        return Err(ImageError::TooLarge {
            what: "archive size",
            limit: limits.max_archive_bytes,
        });
    }
    Ok(())
}

fn thread_panicked() -> ImageError {
    ImageError::Io {
        context: "writing layer blobs".into(),
        source: std::io::Error::other("blob writer thread panicked"),
    }
}

/// Blob files written under `tmp/` and where they go; removed on drop unless published.
struct StagedBlobs {
    files: Vec<(PathBuf, PathBuf)>,
}

impl StagedBlobs {
    fn publish(mut self) -> Result<(), ImageError> {
        while let Some((tmp, path)) = self.files.pop() {
            fs::rename(&tmp, &path).with_path("keeping blob", &path)?;
        }
        Ok(())
    }
}

impl Drop for StagedBlobs {
    fn drop(&mut self) {
        for (tmp, _) in &self.files {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// An assembly directory, removed on drop unless disarmed after publishing.
struct TmpDir {
    path: PathBuf,
    armed: bool,
}

impl TmpDir {
    fn create(parent: &Path) -> Result<Self, ImageError> {
        let path = parent.join(unique_name());
        fs::create_dir(&path).with_path("creating assembly directory", &path)?;
        Ok(Self { path, armed: true })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if self.armed {
            force_remove(&self.path);
        }
    }
}

/// `<pid>-<nanos>-<counter>`: unique within the store across processes and threads.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Asks ext4 to spread directories created in `dir` over block groups (`FS_TOPDIR_FL`, as
/// `chattr +T` does). ext4 without a journal scans past recently deleted inodes one by one when
/// it allocates, so an assembly placed in a group where much was just deleted creates files
/// several times slower; a spread assembly usually lands in a quiet group. Best effort: other
/// filesystems refuse the flag and nothing changes.
fn spread_children(dir: &Path) {
    const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;
    let Ok(file) = fs::File::open(dir) else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut flags: libc::c_int = 0;
    // SAFETY: `fd` stays open for both calls; FS_IOC_GETFLAGS/SETFLAGS read and write one int
    // through the pointer, which points at a live c_int.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) == 0 && flags & FS_TOPDIR_FL == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only asks whether `pid` exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes a tree even where unpacking left directories without write permission; never
/// follows symlinks. Best effort: what cannot be removed stays for the next `open`.
pub(crate) fn force_remove(path: &Path) {
    make_writable(path);
    let _ = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
}

fn make_writable(dir: &Path) {
    if !is_real_dir(dir) {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(children) = fs::read_dir(dir) else {
        return;
    };
    for child in children.flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            make_writable(&child.path());
        }
    }
}

fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}
