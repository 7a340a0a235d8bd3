//! An on-disk, content-addressed blob store.
//!
//! Blobs live at `ROOT/blobs/XX/HASH` where `XX` is the first byte of the hash in hex
//! (so no directory grows past a few thousand entries). Every write goes to a private
//! file under `ROOT/tmp/` first and is renamed into place only after its blake3 hash is
//! known (and, on import, checked), so a reader never sees a partial or wrong blob and a
//! crash leaves at most a stray temp file. Both directories are on the same file system,
//! which keeps the rename atomic.
//!
//! A writer holds an exclusive advisory lock (`flock`) on its temp file for as long as it
//! lives, so [`BlobStore::open`] can tell a stray temp file (left by a crash or a killed
//! upload in an earlier process) from one a live writer, in this process or another, is
//! still filling: it removes every temp file it can lock. Locks die with their process, so
//! a restart always reclaims what the previous run left, whatever its process id was.
//!
//! Content is streamed through a fixed buffer; no operation holds a whole blob in memory.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use agora_core::Hash;
use agora_core::hash::Hasher;

/// The copy buffer for streaming imports.
const COPY_BUFFER: usize = 1 << 20;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error(
        "blob store I/O on {path}: {source}; check that the data directory exists, is writable and has free space"
    )]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The store has no blob with this hash.
    #[error("blob {0} is not in the store; fetch it from a peer or import it first")]
    NotFound(Hash),
    /// Content did not hash to the hash it was imported under; nothing was stored.
    #[error("blob content hashes to {actual}, not the expected {expected}; the copy was discarded")]
    HashMismatch {
        /// The hash the caller asked for.
        expected: Hash,
        /// The hash of the content actually received.
        actual: Hash,
    },
    /// A range read past the end of the blob.
    #[error("range {offset}+{len} is outside blob {hash} of {size} bytes")]
    OutOfRange {
        /// The blob.
        hash: Hash,
        /// Requested start.
        offset: u64,
        /// Requested length.
        len: u64,
        /// The blob's size.
        size: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A content-addressed blob store rooted at one directory. Cheap to clone; clones share
/// the directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// Distinguishes temp files made by concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What [`BlobStore::open`] removed from the temp directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TempSweep {
    /// Stray temp files removed.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl BlobStore {
    /// Opens (creating if needed) the store under `root`, and removes the partial
    /// uploads an earlier run left in its temp directory (see the module docs); temp
    /// files of live writers stay.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        let store = BlobStore { root: root.into() };
        for dir in [store.blobs_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let swept = store.sweep_temp()?;
        if swept.files > 0 {
            tracing::info!(
                files = swept.files,
                bytes = swept.bytes,
                dir = %store.tmp_dir().display(),
                "removed partial blobs left by an earlier run"
            );
        }
        Ok(store)
    }

    /// Removes every regular file in the temp directory that no live writer holds
    /// locked: partial blobs whose writer died with its process.
    pub fn sweep_temp(&self) -> Result<TempSweep, StoreError> {
        let tmp = self.tmp_dir();
        let mut swept = TempSweep::default();
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let entry = entry.map_err(io_err(&tmp))?;
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_file() {
                continue;
            }
            let file = match File::open(&path) {
                Ok(file) => file,
                // Committed or abandoned meanwhile by its writer.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                // A live writer is filling it.
                Err(fs::TryLockError::WouldBlock) => continue,
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
            }
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    swept.files += 1;
                    swept.bytes += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(swept)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where the blob `hash` lives (whether or not it is present).
    pub fn path_of(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_string();
        self.blobs_dir().join(&hex[..2]).join(hex)
    }

    /// Whether the store holds `hash`.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.path_of(hash).is_file()
    }

    /// The size in bytes of blob `hash`.
    pub fn size(&self, hash: &Hash) -> Result<u64, StoreError> {
        let path = self.path_of(hash);
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(*hash)),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Opens blob `hash` for reading.
    pub fn open_blob(&self, hash: &Hash) -> Result<File, StoreError> {
        let path = self.path_of(hash);
        match File::open(&path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound(*hash)),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Reads `len` bytes of blob `hash` from `offset`, clamped to the end of the blob.
    /// An `offset` past the end is an error; `offset == size` gives an empty read.
    pub fn read_range(&self, hash: &Hash, offset: u64, len: u64) -> Result<Vec<u8>, StoreError> {
        let mut file = self.open_blob(hash)?;
        let path = self.path_of(hash);
        let size = file.metadata().map_err(io_err(&path))?.len();
        if offset > size {
            return Err(StoreError::OutOfRange {
                hash: *hash,
                offset,
                len,
                size,
            });
        }
        let take = len.min(size - offset);
        file.seek(SeekFrom::Start(offset)).map_err(io_err(&path))?;
        let mut out = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
        file.take(take)
            .read_to_end(&mut out)
            .map_err(io_err(&path))?;
        Ok(out)
    }

    /// Stores `bytes` and returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Hash, StoreError> {
        let mut writer = self.writer()?;
        writer.write(bytes)?;
        writer.commit(None)
    }

    /// Copies the file at `src` into the store, hashing while copying, and returns its hash.
    pub fn put_file(&self, src: &Path) -> Result<Hash, StoreError> {
        self.import(src, None)
    }

    /// Like [`put_file`](Self::put_file) but refuses (and stores nothing) unless the
    /// content hashes to `expected`.
    pub fn put_file_expecting(&self, src: &Path, expected: Hash) -> Result<Hash, StoreError> {
        self.import(src, Some(expected))
    }

    fn import(&self, src: &Path, expected: Option<Hash>) -> Result<Hash, StoreError> {
        let mut input = File::open(src).map_err(io_err(src))?;
        let mut writer = self.writer()?;
        let mut buffer = vec![0u8; COPY_BUFFER];
        loop {
            let n = input.read(&mut buffer).map_err(io_err(src))?;
            if n == 0 {
                break;
            }
            writer.write(&buffer[..n])?;
        }
        writer.commit(expected)
    }

    /// A writer for a new blob whose hash is known only at the end.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .tmp_dir()
            .join(format!("{}-{n}.part", std::process::id()));
        let file = File::create(&path).map_err(io_err(&path))?;
        // Marks the temp file as live for `sweep_temp`, here and in other processes. A
        // fresh file cannot be locked by anyone else yet; if the file system has no
        // locks at all, refuse rather than let a sweep delete a live upload.
        file.try_lock().map_err(|e| {
            let source = match e {
                fs::TryLockError::Error(e) => e,
                fs::TryLockError::WouldBlock => io::Error::other("temp file locked by another"),
            };
            let _ = fs::remove_file(&path);
            io_err(&path)(source)
        })?;
        Ok(BlobWriter {
            store: self.clone(),
            file: Some(file),
            path,
            hasher: Hasher::new(),
            written: 0,
        })
    }
}

/// A blob being written: content goes to a temp file and through a hasher; [`commit`]
/// moves it into place. Dropping an uncommitted writer deletes its temp file.
///
/// [`commit`]: BlobWriter::commit
pub struct BlobWriter {
    store: BlobStore,
    file: Option<File>,
    path: PathBuf,
    hasher: Hasher,
    written: u64,
}

impl BlobWriter {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let file = self.file.as_mut().ok_or_else(|| StoreError::Io {
            path: self.path.clone(),
            source: io::Error::other("writer already committed"),
        })?;
        file.write_all(bytes).map_err(io_err(&self.path))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The hash of everything written so far.
    pub fn hash_so_far(&self) -> Hash {
        self.hasher.finalize()
    }

    /// Flushes to disk and renames the blob into place under its hash. With `expected`,
    /// a different hash discards the content and fails with [`StoreError::HashMismatch`].
    pub fn commit(mut self, expected: Option<Hash>) -> Result<Hash, StoreError> {
        let actual = self.hasher.finalize();
        if let Some(expected) = expected.filter(|e| *e != actual) {
            // Drop deletes the temp file.
            return Err(StoreError::HashMismatch { expected, actual });
        }
        // The file (and with it the lock that keeps a sweep away) stays open until the
        // rename is done.
        let file = self.file.take();
        if let Some(file) = &file {
            file.sync_all().map_err(io_err(&self.path))?;
        }
        let dest = self.store.path_of(&actual);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        drop(file);
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the temp path no longer exists; otherwise this is an
        // abandoned or rejected blob whose partial content must not linger.
        if self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn tmp_is_empty(store: &BlobStore) -> bool {
        fs::read_dir(store.tmp_dir()).unwrap().next().is_none()
    }

    #[test]
    fn put_bytes_then_read_back() {
        let (_dir, store) = temp_store();
        let hash = store.put_bytes(b"hello blobs").unwrap();
        assert_eq!(hash, Hash::of(b"hello blobs"));
        assert!(store.contains(&hash));
        assert_eq!(store.size(&hash).unwrap(), 11);
        assert_eq!(store.read_range(&hash, 6, 100).unwrap(), b"blobs");
        assert_eq!(store.read_range(&hash, 11, 5).unwrap(), b"");
        assert!(matches!(
            store.read_range(&hash, 12, 1),
            Err(StoreError::OutOfRange { .. })
        ));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn put_file_streams_and_hashes() {
        let (dir, store) = temp_store();
        let src = dir.path().join("input");
        let content: Vec<u8> = (0..3 * COPY_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        fs::write(&src, &content).unwrap();
        let hash = store.put_file(&src).unwrap();
        assert_eq!(hash, Hash::of(&content));
        assert_eq!(fs::read(store.path_of(&hash)).unwrap(), content);
    }

    #[test]
    fn import_with_wrong_hash_stores_nothing() {
        let (dir, store) = temp_store();
        let src = dir.path().join("input");
        fs::write(&src, b"actual content").unwrap();
        let claimed = Hash::of(b"claimed content");
        let err = store.put_file_expecting(&src, claimed).unwrap_err();
        assert!(matches!(err, StoreError::HashMismatch { expected, .. } if expected == claimed));
        assert!(!store.contains(&claimed));
        assert!(!store.contains(&Hash::of(b"actual content")));
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn missing_blob_is_not_found() {
        let (_dir, store) = temp_store();
        let hash = Hash::of(b"nope");
        assert!(!store.contains(&hash));
        assert!(matches!(store.size(&hash), Err(StoreError::NotFound(h)) if h == hash));
        assert!(matches!(
            store.read_range(&hash, 0, 1),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn reopening_removes_partial_blobs_and_keeps_committed_ones() {
        let (dir, store) = temp_store();
        let kept = store.put_bytes(b"committed before the crash").unwrap();
        // What a killed upload leaves: temp files nobody holds, of an earlier process id
        // and of this one (a restart in a container often gets the same pid).
        let tmp = store.tmp_dir();
        fs::write(tmp.join("4242-0.part"), vec![7u8; 4096]).unwrap();
        fs::write(
            tmp.join(format!("{}-999.part", std::process::id())),
            b"partial",
        )
        .unwrap();
        fs::write(tmp.join("stray"), b"x").unwrap();
        // A live upload of this process, opened before the restart-like reopen.
        let mut live = store.writer().unwrap();
        live.write(b"still uploading").unwrap();
        drop(store);

        let store = BlobStore::open(dir.path()).unwrap();
        let left: Vec<PathBuf> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            left,
            vec![live.path.clone()],
            "only the live writer's file stays"
        );
        assert!(store.contains(&kept));
        assert_eq!(
            fs::read(store.path_of(&kept)).unwrap(),
            b"committed before the crash"
        );
        // The live upload still commits, and nothing is left behind afterwards.
        let hash = live.commit(None).unwrap();
        assert_eq!(fs::read(store.path_of(&hash)).unwrap(), b"still uploading");
        assert!(tmp_is_empty(&store));
        assert_eq!(store.sweep_temp().unwrap(), TempSweep::default());
    }

    #[test]
    fn sweep_reports_what_it_removed() {
        let (_dir, store) = temp_store();
        fs::write(store.tmp_dir().join("1-0.part"), vec![0u8; 1000]).unwrap();
        fs::write(store.tmp_dir().join("1-1.part"), vec![0u8; 24]).unwrap();
        let swept = store.sweep_temp().unwrap();
        assert_eq!(
            swept,
            TempSweep {
                files: 2,
                bytes: 1024
            }
        );
        assert!(tmp_is_empty(&store));
    }

    #[test]
    fn abandoned_writer_leaves_no_temp_file() {
        let (_dir, store) = temp_store();
        let mut writer = store.writer().unwrap();
        writer.write(b"partial").unwrap();
        drop(writer);
        assert!(tmp_is_empty(&store));
    }
}
