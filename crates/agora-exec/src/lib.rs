//! Agora's executor: runs a stranger's job in a sandbox, meters it exactly, and produces a
//! result that any honest provider reproduces bit for bit.
//!
//! A provider runs code from strangers; a buyer needs the same answer from any honest
//! provider so that work can be checked by re-running it; both need an exact measure of
//! the work done. This crate gives all three for WebAssembly under wasmtime 48:
//!
//! - [`Executor`]: the trait every executor implements (WASM now, OCI containers later).
//! - [`WasmExecutor`]: WASI preview-1 command modules (`_start`), each job in a fresh store
//!   with `/input` (read-only), `/output` (size-capped), a writable scratch root `/` with
//!   `/tmp` (disk-capped), stdin from the job's bytes, captured stdout/stderr, virtual
//!   clocks and seeded randomness, and no network or other host files ([`sandbox`]).
//! - [`profile`]: the deterministic engine profile; every setting and why.
//! - [`JobSpec`] / [`Limits`]: what to run and its budget (fuel, memory, output, time).
//! - [`Outcome`]: exit code, stdio, output hashes, fuel and compute units, and the
//!   canonical result [`digest`](Outcome::digest) that verification compares.
//! - [`ExecError`]: every failure typed (malformed module, missing `_start`, unsupported
//!   import, a `refused:` start-up limit, trap, out of fuel, memory limit, output limit,
//!   timeout, stack overflow); a run-time failure keeps what the job wrote and the fuel it
//!   burnt ([`ExecError::partial`], a [`PartialRun`]).
//! - [`cache`]: compiled modules on disk and in memory, so repeat jobs skip compilation.
//! - [`tree`]: directory inputs and working trees as one deterministic tar blob, and the
//!   checked unpacking a provider does before mounting them (`/input/NAME`, the scratch `/`).
//! - [`checkpoint`]: jobs under the checkpoint ABI (`agora_step`): a trace of state hashes
//!   per step for the receipt, state snapshots, and the referee's one-step re-execution.
//! - [`CancelToken`]: stops a running job from another thread within about one epoch
//!   tick ([`ExecError::Cancelled`], never the job's fault).
//!
//! Entry point: [`WasmExecutor::new`] then [`Executor::run`].
//!
//! ```no_run
//! use agora_core::Hash;
//! use agora_exec::{ExecConfig, Executor, WasmExecutor, WasmModule};
//!
//! let executor = WasmExecutor::new(ExecConfig::default())?;
//! let module = WasmModule::new(std::fs::read("job.wasm").unwrap_or_default());
//! let job = executor.job(Hash::of(b"job-1"), module);
//! let outcome = executor.run(&job)?;
//! println!("exit {} digest {} fuel {}", outcome.exit_code, outcome.digest, outcome.fuel_used.0);
//! # Ok::<(), agora_exec::ExecError>(())
//! ```
#![warn(unused_crate_dependencies, missing_docs)]

pub mod cache;
pub mod cancel;
pub mod checkpoint;
pub mod error;
pub mod job;
pub mod nan_guard;
pub mod outcome;
pub mod precheck;
pub mod profile;
pub mod sandbox;
pub mod ticker;
pub mod tree;
pub mod wasm;

pub use cancel::CancelToken;
pub use error::ExecError;
pub use job::{Input, JobSpec, Limits, WasmModule, Workload};
pub use outcome::{Captured, ModuleSource, Outcome, OutputFile, PartialRun, result_digest};
pub use profile::{NanMode, Profile};
pub use wasm::{ExecConfig, WasmExecutor};

/// Something that runs jobs. Implementations must be usable from many threads at once and
/// must never let one job see or change another's state.
pub trait Executor: Send + Sync {
    /// A short name of the workload kind this executor runs (`wasm`).
    fn kind(&self) -> &'static str;

    /// Runs `job` to completion (or until its [`CancelToken`] is cancelled) and reports
    /// what it produced, or why it failed.
    fn run(&self, job: &JobSpec) -> Result<Outcome, ExecError>;
}

#[cfg(test)]
use {serde_json as _, wat as _};
