//! Typed failures of a job run.
//!
//! Every way a job can fail has its own variant, so that a provider can tell a buyer
//! what went wrong (and the market can decide who pays): faults of the job itself
//! (malformed module, trap, out of fuel, limits) are distinct from faults of the host
//! (temporary directories, cache files) and from a run its caller cancelled.

use std::time::Duration;

use agora_core::{Fuel, Hash};

use crate::outcome::PartialRun;

/// Why a job did not produce an [`Outcome`](crate::Outcome).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The module bytes are not a valid WebAssembly module under the deterministic profile.
    #[error(
        "malformed module: {reason}; build a WASI preview-1 command (e.g. clang --target=wasm32-wasi) \
         without threads or other proposals the deterministic profile disables"
    )]
    MalformedModule {
        /// What the validator or compiler reported.
        reason: String,
    },
    /// The module bytes do not hash to the hash the job names.
    #[error("module hash mismatch: the job names {expected} but the bytes hash to {actual}")]
    ModuleHashMismatch {
        /// The hash the job named.
        expected: Hash,
        /// The hash of the bytes given.
        actual: Hash,
    },
    /// The module has no `_start` function, so it is not a WASI command.
    #[error(
        "module has no `_start` export: build it as a WASI command (a `main` function), not a reactor or library"
    )]
    MissingStart,
    /// The module imports something the sandbox does not provide.
    #[error(
        "unsupported import `{module}::{name}`: jobs may import only WASI preview-1 functions \
         (module `wasi_snapshot_preview1`)"
    )]
    UnsupportedImport {
        /// The import's module name.
        module: String,
        /// The import's field name.
        name: String,
    },
    /// The module uses a wasm feature the deterministic profile does not run; refused by
    /// [`crate::precheck`] before any compile.
    #[error(
        "refused: the module uses {feature}, which the deterministic profile does not run; {remedy}"
    )]
    ForbiddenFeature {
        /// The feature(s), named for people (e.g. `legacy exception handling (try/catch/delegate/rethrow)`).
        feature: String,
        /// What to do instead, e.g. the compiler flag to rebuild with.
        remedy: String,
    },
    /// The job's description is unusable (bad input names, zero limits, ...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// The workload is of a kind this executor does not run.
    #[error("unsupported workload: this executor runs {expected} jobs")]
    UnsupportedWorkload {
        /// The kind of workload this executor runs.
        expected: &'static str,
    },
    /// The guest trapped (a fault in the job, e.g. `unreachable` or an out-of-bounds access).
    #[error("job trapped: {code}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Trap {
        /// The trap code, as wasmtime names it (e.g. `wasm trap: wasm `unreachable` instruction executed`).
        code: String,
        /// Extra context, such as the guest backtrace, when there is any.
        detail: Option<String>,
        /// Fuel burnt up to the trap.
        fuel_used: Fuel,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The job used all the fuel its budget allows.
    #[error(
        "out of fuel: the job used its whole budget of {} fuel ({:.6} compute units) without finishing; \
         raise the fuel limit or give it less work",
        fuel_used.0, fuel_used.as_compute_units_f64()
    )]
    OutOfFuel {
        /// Fuel used, which is the whole limit.
        fuel_used: Fuel,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The job asked for more linear memory (or table space) than its limit allows.
    #[error(
        "memory limit exceeded: the job asked for {requested} bytes of {what} but the limit is {limit} bytes; \
         raise the memory limit or make the job use less"
    )]
    MemoryLimit {
        /// `memory` or `table`.
        what: &'static str,
        /// The size the job asked to grow to.
        requested: u64,
        /// The configured limit.
        limit: u64,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The job wrote more to `/output` than its output limit allows.
    #[error(
        "output limit exceeded: the job wrote {written} bytes (or {files} files) to /output; the limit is \
         {limit} bytes and {max_files} files"
    )]
    OutputLimit {
        /// Bytes written (or the apparent size found) when the limit was hit.
        written: u64,
        /// Files found or being created when the limit was hit.
        files: u64,
        /// The byte limit.
        limit: u64,
        /// The file-count limit.
        max_files: u64,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The job wrote more to its scratch root (`/`, `/tmp`, the working tree) than its disk
    /// limit allows.
    #[error(
        "disk limit exceeded: the job wrote {written} bytes to its scratch tree (/, /tmp); the limit is \
         {limit} bytes; raise the disk limit (--disk-limit) or make the job write less"
    )]
    DiskLimit {
        /// Bytes counted when the limit was hit (the seeded tree, writes, 4 KiB per created entry).
        written: u64,
        /// The limit in bytes.
        limit: u64,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// A directory input or working tree is an unsafe or oversized archive.
    #[error("{what} refused: {source}")]
    BadTree {
        /// Which tree (`input NAME` or `workdir`).
        what: String,
        /// What was wrong with it.
        #[source]
        source: crate::tree::TreeError,
    },
    /// The job left a symbolic link in `/output`; outputs are regular files only.
    #[error(
        "output {name:?} is a symlink; outputs must be regular files: copy the file instead of linking it"
    )]
    OutputSymlink {
        /// The link's path under `/output`.
        name: String,
        /// What the job wrote to stdout and stderr, and the fuel it burnt: it ran to the end.
        partial: Option<Box<PartialRun>>,
    },
    /// The job ran past its wall-clock timeout (the safety net behind the fuel limit).
    #[error(
        "timeout: the job ran longer than {limit:?} of wall-clock time; raise the timeout or give it less work"
    )]
    Timeout {
        /// The configured timeout.
        limit: Duration,
        /// Fuel used up to the interruption (not reproducible: it depends on machine speed).
        fuel_used: Fuel,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The job's [`CancelToken`](crate::CancelToken) was cancelled before it finished:
    /// whoever ran it gave up on the result. Not the job's fault.
    #[error("cancelled: the job was stopped before it finished (its result was no longer wanted)")]
    Cancelled {
        /// Fuel burnt before the stop.
        fuel_used: Fuel,
    },
    /// The guest exhausted its pinned wasm stack (deep or unbounded recursion).
    #[error(
        "stack overflow: the job's recursion exceeded the pinned wasm stack of {max_stack} bytes; \
         this is not a comparable result (stack use depends on the host architecture)"
    )]
    StackOverflow {
        /// The configured maximum wasm stack in bytes.
        max_stack: usize,
        /// What the job wrote, and the fuel it burnt, before it stopped.
        partial: Option<Box<PartialRun>>,
    },
    /// The module cannot start within the job's limits, which only instantiation reveals:
    /// its initial memory or a table is larger than the limit, it defines more memories or
    /// tables than a job may have, or a data or element segment lies outside what it
    /// declares. Nothing ran; checks of the module's static shape (imports, `_start`,
    /// features) happen before compilation and have their own variants.
    #[error("refused: {what}; {advice}")]
    StartRefused {
        /// The limit or rule the module broke (`memory_bytes`, `table_elements`,
        /// `memories`, `tables`, `data_segment`, `element_segment`).
        limit: &'static str,
        /// What the module asked for and what the limit is, in words.
        what: String,
        /// What to change.
        advice: &'static str,
    },
    /// A host-side failure: temporary directories, the module cache, I/O.
    #[error("host error while {context}: {source}")]
    Host {
        /// What the host was doing.
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The engine itself failed in a way that is not the job's fault.
    #[error("engine error while {context}: {message}")]
    Engine {
        /// What the executor was doing.
        context: &'static str,
        /// The engine's message.
        message: String,
    },
}

impl ExecError {
    /// Wraps a host I/O error with what the host was doing.
    pub(crate) fn host(context: impl Into<String>, source: std::io::Error) -> Self {
        ExecError::Host {
            context: context.into(),
            source,
        }
    }

    /// A short, stable name for the kind of failure (for JSON output and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::MalformedModule { .. } => "malformed_module",
            ExecError::ModuleHashMismatch { .. } => "module_hash_mismatch",
            ExecError::MissingStart => "missing_start",
            ExecError::UnsupportedImport { .. } => "unsupported_import",
            ExecError::ForbiddenFeature { .. } => "forbidden_feature",
            ExecError::InvalidJob(_) => "invalid_job",
            ExecError::UnsupportedWorkload { .. } => "unsupported_workload",
            ExecError::Trap { .. } => "trap",
            ExecError::OutOfFuel { .. } => "out_of_fuel",
            ExecError::MemoryLimit { .. } => "memory_limit",
            ExecError::OutputLimit { .. } => "output_limit",
            ExecError::DiskLimit { .. } => "disk_limit",
            ExecError::BadTree { .. } => "bad_tree",
            ExecError::OutputSymlink { .. } => "output_symlink",
            ExecError::Timeout { .. } => "timeout",
            ExecError::StackOverflow { .. } => "stack_overflow",
            ExecError::StartRefused { .. } => "start_refused",
            ExecError::Cancelled { .. } => "cancelled",
            ExecError::Host { .. } => "host",
            ExecError::Engine { .. } => "engine",
        }
    }

    /// What a job that failed at run time wrote, and the fuel it burnt, before it stopped
    /// (`None` for failures before the job ran, and for host faults).
    pub fn partial(&self) -> Option<&PartialRun> {
        match self {
            ExecError::Trap { partial, .. }
            | ExecError::OutOfFuel { partial, .. }
            | ExecError::MemoryLimit { partial, .. }
            | ExecError::OutputLimit { partial, .. }
            | ExecError::Timeout { partial, .. }
            | ExecError::StackOverflow { partial, .. }
            | ExecError::DiskLimit { partial, .. }
            | ExecError::OutputSymlink { partial, .. } => partial.as_deref(),
            _ => None,
        }
    }

    /// Attaches what the job wrote before a run-time failure; other errors are returned
    /// unchanged (they have no run to speak of).
    pub fn with_partial(mut self, run: PartialRun) -> Self {
        match &mut self {
            ExecError::Trap { partial, .. }
            | ExecError::OutOfFuel { partial, .. }
            | ExecError::MemoryLimit { partial, .. }
            | ExecError::OutputLimit { partial, .. }
            | ExecError::Timeout { partial, .. }
            | ExecError::StackOverflow { partial, .. }
            | ExecError::DiskLimit { partial, .. }
            | ExecError::OutputSymlink { partial, .. } => *partial = Some(Box::new(run)),
            _ => {}
        }
        self
    }

    /// Fuel the job burnt before it failed: the count the variant records, else the
    /// attached partial run's, else zero (nothing ran).
    pub fn fuel_used(&self) -> Fuel {
        match self {
            ExecError::Trap { fuel_used, .. }
            | ExecError::OutOfFuel { fuel_used, .. }
            | ExecError::Timeout { fuel_used, .. }
            | ExecError::Cancelled { fuel_used } => *fuel_used,
            other => other.partial().map_or(Fuel(0), |p| p.fuel_used),
        }
    }

    /// Whether the failure is the job's own fault (as opposed to the host's).
    pub fn is_job_fault(&self) -> bool {
        !matches!(
            self,
            ExecError::Host { .. } | ExecError::Engine { .. } | ExecError::Cancelled { .. }
        )
    }
}
