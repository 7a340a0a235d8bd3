//! The job's private directories: a fresh `/input` holding its blobs and unpacked directory
//! inputs (preopened read-only), a fresh, empty `/output`, and the writable scratch root
//! `/` (seeded from the job's working tree, always holding `/tmp`), all removed when the
//! job ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use agora_core::Hash;
use tempfile::TempDir;

use crate::error::ExecError;
use crate::job::{Input, JobSpec, Limits};
use crate::outcome::OutputFile;
use crate::tree::{self, TreeLimits};

/// A job's temporary input and output directories. Dropping it deletes both.
#[derive(Debug)]
pub struct JobDirs {
    root: TempDir,
    /// Bytes the working tree put in the scratch root.
    seeded: u64,
}

impl JobDirs {
    /// Creates fresh directories under `parent` (or the system temp dir) and writes the
    /// inputs into the input directory.
    pub fn create(parent: Option<&Path>, inputs: &[Input]) -> Result<Self, ExecError> {
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("agora-job-");
            b
        };
        let root = match parent {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(|e| {
                    ExecError::host(format!("creating work dir {}", dir.display()), e)
                })?;
                builder.tempdir_in(dir)
            }
            None => builder.tempdir(),
        }
        .map_err(|e| ExecError::host("creating the job's temporary directory", e))?;
        let dirs = JobDirs { root, seeded: 0 };
        for dir in [dirs.input(), dirs.output(), dirs.scratch()] {
            fs::create_dir(&dir)
                .map_err(|e| ExecError::host(format!("creating {}", dir.display()), e))?;
        }
        for input in inputs {
            let path = dirs.input().join(&input.name);
            fs::write(&path, &input.bytes)
                .map_err(|e| ExecError::host(format!("writing input {}", path.display()), e))?;
        }
        Ok(dirs)
    }

    /// Creates the directories of `job`: its file inputs, its directory inputs unpacked
    /// under `/input`, and its scratch root seeded from its working tree, with `/tmp`.
    pub fn for_job(parent: Option<&Path>, job: &JobSpec) -> Result<Self, ExecError> {
        let mut dirs = JobDirs::create(parent, &job.inputs)?;
        for tree_input in &job.trees {
            let dest = dirs.input().join(&tree_input.name);
            fs::create_dir(&dest)
                .map_err(|e| ExecError::host(format!("creating {}", dest.display()), e))?;
            tree::unpack(&tree_input.bytes, &dest, &TreeLimits::default()).map_err(|source| {
                ExecError::BadTree {
                    what: format!("directory input `{}`", tree_input.name),
                    source,
                }
            })?;
        }
        if let Some(workdir) = &job.workdir {
            let limits = TreeLimits {
                max_bytes: job.limits.disk_bytes,
                ..TreeLimits::default()
            };
            let stats = tree::unpack(workdir, &dirs.scratch(), &limits).map_err(|source| {
                ExecError::BadTree {
                    what: "working tree".into(),
                    source,
                }
            })?;
            dirs.seeded = stats.bytes;
        }
        let tmp = dirs.scratch().join("tmp");
        match fs::symlink_metadata(&tmp) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ExecError::BadTree {
                    what: "working tree".into(),
                    source: tree::TreeError::Unsupported {
                        path: "tmp".into(),
                        kind: "non-directory at /tmp (the job's /tmp must be a directory)",
                    },
                });
            }
            Err(_) => fs::create_dir(&tmp)
                .map_err(|e| ExecError::host(format!("creating {}", tmp.display()), e))?,
        }
        Ok(dirs)
    }

    /// Bytes of file content the working tree put in the scratch root; they count against
    /// the disk limit.
    pub fn seeded_bytes(&self) -> u64 {
        self.seeded
    }

    /// The host directory shown to the job as its writable root `/`.
    pub fn scratch(&self) -> PathBuf {
        self.root.path().join("scratch")
    }

    /// The host directory shown to the job as `/input`.
    pub fn input(&self) -> PathBuf {
        self.root.path().join("input")
    }

    /// The host directory shown to the job as `/output`.
    pub fn output(&self) -> PathBuf {
        self.root.path().join("output")
    }

    /// Reads the regular files the job left in `/output`, sorted by name, checking sizes
    /// against the limits before reading (a sparse file may claim a huge size).
    pub fn collect_outputs(&self, limits: &Limits) -> Result<Vec<OutputFile>, ExecError> {
        let mut found = Vec::new();
        walk(&self.output(), "", &mut found, limits)?;
        found.sort_by(|a: &(String, PathBuf, u64), b| a.0.cmp(&b.0));
        found
            .into_iter()
            .map(|(name, path, size)| {
                let data = fs::read(&path)
                    .map_err(|e| ExecError::host(format!("reading output {name}"), e))?;
                Ok(OutputFile {
                    name,
                    size,
                    hash: Hash::of(&data),
                    data,
                })
            })
            .collect()
    }
}

/// Removes finished jobs' directories on a background thread. Deleting a directory tree
/// costs milliseconds on some filesystems (ext4 on a virtual disk here), which would
/// otherwise dominate the start latency of short jobs. Dropping the reaper waits until
/// every directory handed to it is gone, so nothing outlives the executor.
#[derive(Debug)]
pub struct Reaper {
    sender: Mutex<Option<Sender<JobDirs>>>,
    thread: Option<JoinHandle<()>>,
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> Result<Self, ExecError> {
        let (sender, receiver) = mpsc::channel::<JobDirs>();
        let thread = std::thread::Builder::new()
            .name("agora-exec-reaper".into())
            // Dropping a `JobDirs` removes its tree; errors there have no one to report to.
            .spawn(move || receiver.into_iter().for_each(drop))
            .map_err(|e| ExecError::host("starting the directory reaper thread", e))?;
        Ok(Reaper {
            sender: Mutex::new(Some(sender)),
            thread: Some(thread),
        })
    }

    /// Hands a job's directories over for removal (removes them here if the thread is gone).
    pub fn dispose(&self, dirs: JobDirs) {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match sender.as_ref() {
            Some(sender) => {
                // A failed send gives the directories back, and dropping them removes them.
                let _ = sender.send(dirs);
            }
            None => drop(dirs),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let sender = self
            .sender
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        drop(sender.take());
        if let Some(thread) = self.thread.take() {
            // The thread only drops directories; a panic there leaves nothing to clean up.
            let _ = thread.join();
        }
    }
}

/// Collects `(name, path, size)` of regular files under `dir`, enforcing the output limits
/// on the way. A symlink is refused ([`ExecError::OutputSymlink`]): exporting it would
/// make the result depend on what it points to, and dropping it silently loses what the
/// job meant to return. Other special files cannot be made through WASI and are skipped.
fn walk(
    dir: &Path,
    prefix: &str,
    found: &mut Vec<(String, PathBuf, u64)>,
    limits: &Limits,
) -> Result<(), ExecError> {
    let entries =
        fs::read_dir(dir).map_err(|e| ExecError::host(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ExecError::host(format!("listing {}", dir.display()), e))?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let meta = entry
            .metadata()
            .map_err(|e| ExecError::host(format!("inspecting output {name}"), e))?;
        if meta.file_type().is_symlink() {
            return Err(ExecError::OutputSymlink {
                name,
                partial: None,
            });
        }
        if meta.is_dir() {
            walk(&entry.path(), &format!("{name}/"), found, limits)?;
        } else if meta.is_file() {
            found.push((name, entry.path(), meta.len()));
            let total: u64 = found.iter().map(|f| f.2).fold(0, u64::saturating_add);
            let files = found.len() as u64;
            if total > limits.output_bytes || files > limits.output_files {
                return Err(ExecError::OutputLimit {
                    written: total,
                    files,
                    limit: limits.output_bytes,
                    max_files: limits.output_files,
                    partial: None,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn inputs_are_written_and_outputs_collected_sorted() {
        let inputs = [Input {
            name: "a.txt".into(),
            bytes: Arc::from(&b"hello"[..]),
        }];
        let dirs = JobDirs::create(None, &inputs).unwrap();
        assert_eq!(fs::read(dirs.input().join("a.txt")).unwrap(), b"hello");
        fs::create_dir(dirs.output().join("sub")).unwrap();
        fs::write(dirs.output().join("z"), b"1").unwrap();
        fs::write(dirs.output().join("sub/b"), b"22").unwrap();
        let outputs = dirs.collect_outputs(&Limits::default()).unwrap();
        let names: Vec<_> = outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["sub/b", "z"]);
        assert_eq!(outputs[0].hash, Hash::of(b"22"));
        let root = dirs.root.path().to_owned();
        drop(dirs);
        assert!(!root.exists(), "job directories must be removed");
    }

    #[test]
    fn the_reaper_removes_directories_before_it_is_dropped() {
        let reaper = Reaper::start().unwrap();
        let dirs = JobDirs::create(None, &[]).unwrap();
        let root = dirs.root.path().to_owned();
        reaper.dispose(dirs);
        drop(reaper);
        assert!(!root.exists());
    }

    #[test]
    fn oversized_outputs_are_rejected_before_reading() {
        let dirs = JobDirs::create(None, &[]).unwrap();
        let file = fs::File::create(dirs.output().join("sparse")).unwrap();
        file.set_len(1 << 40).unwrap();
        let err = dirs.collect_outputs(&Limits::default()).unwrap_err();
        assert!(matches!(err, ExecError::OutputLimit { .. }), "{err}");
    }
}
