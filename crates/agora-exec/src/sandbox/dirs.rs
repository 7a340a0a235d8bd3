//! The job's private directories: a fresh `/input` holding its blobs (preopened read-only)
//! and a fresh, empty `/output`, both removed when the job ends.

use std::fs;
use std::path::{Path, PathBuf};

use agora_core::Hash;
use tempfile::TempDir;

use crate::error::ExecError;
use crate::job::{Input, Limits};
use crate::outcome::OutputFile;

/// A job's temporary input and output directories. Dropping it deletes both.
#[derive(Debug)]
pub struct JobDirs {
    root: TempDir,
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
        let dirs = JobDirs { root };
        for dir in [dirs.input(), dirs.output()] {
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

/// Collects `(name, path, size)` of regular files under `dir`, skipping symlinks and other
/// special files (they are not outputs), and enforcing the output limits on the way.
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
    fn oversized_outputs_are_rejected_before_reading() {
        let dirs = JobDirs::create(None, &[]).unwrap();
        let file = fs::File::create(dirs.output().join("sparse")).unwrap();
        file.set_len(1 << 40).unwrap();
        let err = dirs.collect_outputs(&Limits::default()).unwrap_err();
        assert!(matches!(err, ExecError::OutputLimit { .. }), "{err}");
    }
}
