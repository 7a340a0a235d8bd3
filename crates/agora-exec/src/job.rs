//! What a job is: a workload, its arguments, environment, inputs and limits.

use std::sync::Arc;
use std::time::Duration;

use agora_core::{Fuel, Hash};
use serde::{Deserialize, Serialize};

use crate::cancel::CancelToken;
use crate::error::ExecError;

/// A WebAssembly module named by the blake3 hash of its bytes.
#[derive(Clone, Debug)]
pub struct WasmModule {
    hash: Hash,
    bytes: Arc<[u8]>,
}

impl WasmModule {
    /// Wraps module bytes, hashing them.
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        WasmModule {
            hash: Hash::of(&bytes),
            bytes,
        }
    }

    /// Wraps module bytes that a job names by `expected`, checking that they hash to it.
    pub fn with_hash(bytes: impl Into<Arc<[u8]>>, expected: Hash) -> Result<Self, ExecError> {
        let module = WasmModule::new(bytes);
        if module.hash != expected {
            return Err(ExecError::ModuleHashMismatch {
                expected,
                actual: module.hash,
            });
        }
        Ok(module)
    }

    /// The content hash of the module.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The module bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// The code a job runs. Only WASM today; container images join later.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Workload {
    /// A WASI preview-1 command module.
    Wasm(WasmModule),
}

/// One named input blob, visible to the job read-only as `/input/<name>`.
#[derive(Clone, Debug)]
pub struct Input {
    /// The file name under `/input` (a single path component).
    pub name: String,
    /// The content.
    pub bytes: Arc<[u8]>,
}

impl Input {
    /// An input named `name` with the given content.
    pub fn new(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        Input {
            name: name.into(),
            bytes: bytes.into(),
        }
    }

    /// An input named `name` read from the host file at `path`.
    pub fn from_file(name: impl Into<String>, path: &std::path::Path) -> Result<Self, ExecError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ExecError::host(format!("reading input file {}", path.display()), e))?;
        Ok(Input::new(name, bytes))
    }
}

/// Resource limits of one job. Fuel is part of the result (it is billed); the others are
/// ceilings whose breach fails the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget (1 compute unit = 10⁹ fuel).
    pub fuel: Fuel,
    /// Largest linear memory, in bytes.
    pub memory_bytes: u64,
    /// Largest table, in elements.
    pub table_elements: u64,
    /// Largest total of bytes written to `/output`.
    pub output_bytes: u64,
    /// Most files and directories created under `/output`.
    pub output_files: u64,
    /// Bytes of stdout kept; the rest is dropped and the capture is marked truncated.
    pub stdout_bytes: u64,
    /// Bytes of stderr kept; the rest is dropped and the capture is marked truncated.
    pub stderr_bytes: u64,
    /// Wall-clock safety net; fuel is the real limit.
    pub wall_timeout: Duration,
    /// Largest total of bytes in the job's scratch tree (`/`, `/tmp`, the seeded working
    /// tree): the seed's file bytes, every byte written there, and 4 KiB per created entry.
    #[serde(default = "default_disk_bytes")]
    pub disk_bytes: u64,
}

/// The default disk limit: 256 MiB.
pub const DEFAULT_DISK_BYTES: u64 = 256 << 20;

fn default_disk_bytes() -> u64 {
    DEFAULT_DISK_BYTES
}

impl Default for Limits {
    /// 50 compute units (real compiler and synthesis runs need 16–23), 256 MiB memory, 64 MiB of outputs in at most 1024 files, 1 MiB of
    /// stdout and of stderr, a 5-minute wall-clock safety net and 256 MiB of scratch disk.
    fn default() -> Self {
        Limits {
            fuel: Fuel::compute_units(50),
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            output_bytes: 64 << 20,
            output_files: 1024,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 20,
            wall_timeout: Duration::from_secs(300),
            disk_bytes: DEFAULT_DISK_BYTES,
        }
    }
}

/// Everything needed to run one job.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// The job's id; seeds the virtual clocks and random source so that reruns match.
    pub job_id: Hash,
    /// The code to run.
    pub workload: Workload,
    /// Arguments after the program name (`argv[1..]`).
    pub args: Vec<String>,
    /// Environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Input blobs, visible under `/input`.
    pub inputs: Vec<Input>,
    /// Directory inputs: each a tar archive (see [`crate::tree`]) unpacked read-only at
    /// `/input/<name>`. Names share one namespace with [`JobSpec::inputs`].
    pub trees: Vec<Input>,
    /// A tar archive seeding the job's writable scratch root `/` (which always holds an
    /// empty `/tmp`); `None` starts from an empty root.
    pub workdir: Option<Arc<[u8]>>,
    /// The bytes the job reads on stdin; `None` is an empty stdin.
    pub stdin: Option<Arc<[u8]>>,
    /// Resource limits.
    pub limits: Limits,
    /// Stops the run from another thread (see [`CancelToken`]); never cancelled unless
    /// someone holding a clone cancels it.
    pub cancel: CancelToken,
}

impl JobSpec {
    /// A job running `module` with no arguments, no inputs and default limits.
    pub fn new(job_id: Hash, module: WasmModule) -> Self {
        JobSpec {
            job_id,
            workload: Workload::Wasm(module),
            args: Vec::new(),
            env: Vec::new(),
            inputs: Vec::new(),
            trees: Vec::new(),
            workdir: None,
            stdin: None,
            limits: Limits::default(),
            cancel: CancelToken::new(),
        }
    }

    /// Whether the job has directory inputs, a working tree or stdin.
    pub fn uses_file_trees(&self) -> bool {
        !self.trees.is_empty() || self.workdir.is_some() || self.stdin.is_some()
    }

    /// Checks what can be checked without running: input names and limits.
    pub fn validate(&self) -> Result<(), ExecError> {
        let mut names: Vec<&str> = Vec::with_capacity(self.inputs.len());
        for input in self.inputs.iter().chain(&self.trees) {
            validate_input_name(&input.name)?;
            if names.contains(&input.name.as_str()) {
                return Err(ExecError::InvalidJob(format!(
                    "input `{}` is given twice",
                    input.name
                )));
            }
            names.push(&input.name);
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(ExecError::InvalidJob(format!(
                    "environment variable {key:?} must have a non-empty name without `=`, and no NUL"
                )));
            }
        }
        if let Some(arg) = self.args.iter().find(|a| a.contains('\0')) {
            return Err(ExecError::InvalidJob(format!(
                "argument {arg:?} contains NUL"
            )));
        }
        if self.limits.fuel.0 == 0 {
            return Err(ExecError::InvalidJob(
                "the fuel limit must be above zero".into(),
            ));
        }
        if self.limits.wall_timeout.is_zero() {
            return Err(ExecError::InvalidJob(
                "the wall-clock timeout must be above zero".into(),
            ));
        }
        Ok(())
    }
}

/// An input name must be one plain path component, so it cannot escape `/input`.
fn validate_input_name(name: &str) -> Result<(), ExecError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || name.len() > 255;
    if bad {
        return Err(ExecError::InvalidJob(format!(
            "input name {name:?} must be a single file name (no `/`, `..` or NUL, at most 255 bytes)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_hash_is_checked() {
        let good = WasmModule::new(b"abc".to_vec());
        assert_eq!(good.hash(), Hash::of(b"abc"));
        let err = WasmModule::with_hash(b"abc".to_vec(), Hash::of(b"abd")).unwrap_err();
        assert!(matches!(err, ExecError::ModuleHashMismatch { .. }));
    }

    #[test]
    fn input_names_cannot_escape() {
        for bad in ["", ".", "..", "a/b", "../x", "a\0b"] {
            assert!(validate_input_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_input_name("data.csv").is_ok());
    }

    #[test]
    fn inputs_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, b"data").unwrap();
        assert_eq!(&*Input::from_file("in", &path).unwrap().bytes, b"data");
        let err = Input::from_file("in", &dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("reading input file"), "{err}");
    }

    #[test]
    fn duplicate_inputs_and_zero_fuel_are_rejected() {
        let mut job = JobSpec::new(Hash::ZERO, WasmModule::new(b"x".to_vec()));
        let input = Input {
            name: "a".into(),
            bytes: Arc::from(&b"1"[..]),
        };
        job.inputs = vec![input.clone(), input];
        assert!(job.validate().is_err());
        job.inputs.pop();
        assert!(job.validate().is_ok());
        job.limits.fuel = Fuel(0);
        assert!(job.validate().is_err());
    }
}
