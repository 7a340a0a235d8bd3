//! The job's `/output`: a per-job host directory, size-capped, read back after the run.
//!
//! **The cap.** As root the executor mounts a tmpfs on the per-job host directory with
//! `size` = the byte limit rounded up to pages, plus one page per allowed file (a 1-byte
//! file still takes a page), plus one page of slack; and `nr_inodes` = the file limit plus
//! two (the root and one of slack). The job writes into that tmpfs through a bind mount,
//! so a job writing 10 GiB gets `ENOSPC` after the limit, in milliseconds, and never
//! touches the disk. The files outlive the container (the mount is the host's), are read
//! back, and the mount is detached. A full tmpfs (no free block or inode) after the run
//! means the job tried to write past the limit: [`ExecError::OutputLimit`], even if the job
//! then exited 0. The tmpfs pages are charged to the job's memory cgroup while it runs, so
//! the memory limit must leave room for the outputs (as for `/tmp`).
//!
//! Rootless, the executor cannot mount; `/output` is then a plain directory, each file is
//! capped at the byte limit by `RLIMIT_FSIZE` (see [`crate::spec`]), and the total is checked
//! when the outputs are collected. That bounds a runaway job to `output_files × output_bytes`
//! on disk rather than to the limit: documented, not hidden.
//!
//! **Collection** walks `/output` like agora-exec: regular files, named by their path under
//! `/output` with `/` between components, sorted by name, hashed; a symlink fails the job
//! ([`ExecError::OutputSymlink`]); other special files (fifos, sockets) are skipped; sizes
//! are checked against the limits before any file is read.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use agora_core::Hash;
use agora_exec::{ExecError, OutputFile};

use crate::error::ContainerError;
use crate::job::ContainerLimits;

const PAGE: u64 = 4096;

/// A job's output directory on the host.
#[derive(Debug)]
pub struct OutputDir {
    path: PathBuf,
    mounted: bool,
    limits: ContainerLimits,
}

/// The owner of the output directory's root, as seen from the host (the host uid that the
/// container's root maps to).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Host uid.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
}

impl OutputDir {
    /// Creates `path` and, when `mount_tmpfs`, mounts the size-capped tmpfs on it.
    pub fn create(
        path: &Path,
        limits: &ContainerLimits,
        mount_tmpfs: bool,
        owner: Owner,
    ) -> Result<Self, ContainerError> {
        fs::create_dir_all(path)
            .map_err(|e| ContainerError::host(format!("creating {}", path.display()), e))?;
        let mut dir = OutputDir {
            path: path.to_path_buf(),
            mounted: false,
            limits: *limits,
        };
        if mount_tmpfs {
            mount_tmpfs_at(path, &tmpfs_options(limits, owner)).map_err(|e| {
                ContainerError::host(format!("mounting a tmpfs on {}", path.display()), e)
            })?;
            dir.mounted = true;
        }
        Ok(dir)
    }

    /// The host directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory is a size-capped tmpfs.
    pub fn is_capped(&self) -> bool {
        self.mounted
    }

    /// When the tmpfs is full (no block or no inode left), what the job had written: the
    /// job ran into the limit, whatever it did afterwards.
    pub fn overflowed(&self) -> Option<ExecError> {
        if !self.mounted {
            return None;
        }
        let stat = statvfs(&self.path).ok()?;
        let full = stat.f_bavail == 0 || stat.f_favail == 0;
        full.then(|| ExecError::OutputLimit {
            written: (stat.f_blocks - stat.f_bavail) * stat.f_frsize,
            files: stat.f_files - stat.f_favail,
            limit: self.limits.output_bytes,
            max_files: self.limits.output_files,
            partial: None,
        })
    }

    /// Reads the regular files under the directory, sorted by name (see the module docs).
    pub fn collect(&self) -> Result<Vec<OutputFile>, ContainerError> {
        let mut found = Vec::new();
        walk(&self.path, "", &mut found, &self.limits)?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(name, path, size)| read_output(name, &path, size))
            .collect()
    }

    /// Detaches the tmpfs (its pages are freed once nothing holds it).
    pub fn unmount(&mut self) {
        if self.mounted {
            if let Ok(c) = CString::new(self.path.as_os_str().as_bytes()) {
                // SAFETY: `c` is a valid NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            self.mounted = false;
        }
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn tmpfs_options(limits: &ContainerLimits, owner: Owner) -> String {
    let bytes = limits.output_bytes.div_ceil(PAGE) * PAGE;
    let slack = limits.output_files.saturating_add(1).saturating_mul(PAGE);
    format!(
        "size={},nr_inodes={},mode=0755,uid={},gid={}",
        bytes.saturating_add(slack),
        limits.output_files.saturating_add(2),
        owner.uid,
        owner.gid
    )
}

fn mount_tmpfs_at(path: &Path, options: &str) -> io::Result<()> {
    let target = CString::new(path.as_os_str().as_bytes())?;
    let options = CString::new(options)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: all pointers are valid NUL-terminated strings for the call's duration.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: zeroed is a valid statvfs; the kernel fills it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } == 0 {
        Ok(stat)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    found: &mut Vec<(String, PathBuf, u64)>,
    limits: &ContainerLimits,
) -> Result<(), ContainerError> {
    let listing = |e| ContainerError::host(format!("listing {}", dir.display()), e);
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        // `DirEntry::metadata` does not follow symlinks.
        let meta = entry
            .metadata()
            .map_err(|e| ContainerError::host(format!("inspecting output {name}"), e))?;
        if meta.file_type().is_symlink() {
            return Err(ExecError::OutputSymlink {
                name,
                partial: None,
            }
            .into());
        }
        if meta.is_dir() {
            walk(&entry.path(), &format!("{name}/"), found, limits)?;
        } else if meta.is_file() {
            found.push((name, entry.path(), meta.len()));
            check_totals(found, limits)?;
        }
    }
    Ok(())
}

fn check_totals(
    found: &[(String, PathBuf, u64)],
    limits: &ContainerLimits,
) -> Result<(), ContainerError> {
    let total: u64 = found.iter().map(|f| f.2).fold(0, u64::saturating_add);
    let files = found.len() as u64;
    if total > limits.output_bytes || files > limits.output_files {
        return Err(ExecError::OutputLimit {
            written: total,
            files,
            limit: limits.output_bytes,
            max_files: limits.output_files,
            partial: None,
        }
        .into());
    }
    Ok(())
}

/// Reads one output without following a link the job might have swapped in, and no more
/// than the size checked against the limits.
fn read_output(name: String, path: &Path, size: u64) -> Result<OutputFile, ContainerError> {
    let reading = |e| ContainerError::host(format!("reading output {name}"), e);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(reading)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(size).read_to_end(&mut data).map_err(reading)?;
    Ok(OutputFile {
        size: data.len() as u64,
        hash: Hash::of(&data),
        name,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmounted_dirs_collect_sorted_and_refuse_links() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ContainerLimits::default();
        let out =
            OutputDir::create(&dir.path().join("o"), &limits, false, Owner::default()).unwrap();
        fs::create_dir(out.path().join("sub")).unwrap();
        fs::write(out.path().join("z"), b"1").unwrap();
        fs::write(out.path().join("sub/b"), b"22").unwrap();
        let files = out.collect().unwrap();
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["sub/b", "z"]);
        assert_eq!(files[0].hash, Hash::of(b"22"));
        std::os::unix::fs::symlink("/etc/passwd", out.path().join("link")).unwrap();
        let err = out.collect().unwrap_err();
        assert_eq!(err.kind(), "output_symlink");
    }

    #[test]
    fn totals_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let limits = ContainerLimits {
            output_bytes: 3,
            ..ContainerLimits::default()
        };
        let out = OutputDir::create(dir.path(), &limits, false, Owner::default()).unwrap();
        fs::write(out.path().join("a"), b"1234").unwrap();
        assert_eq!(out.collect().unwrap_err().kind(), "output_limit");
    }

    #[test]
    fn tmpfs_size_leaves_room_for_small_files() {
        let limits = ContainerLimits {
            output_bytes: 10,
            output_files: 2,
            ..ContainerLimits::default()
        };
        let o = tmpfs_options(&limits, Owner { uid: 7, gid: 8 });
        assert_eq!(o, "size=16384,nr_inodes=4,mode=0755,uid=7,gid=8");
    }
}
