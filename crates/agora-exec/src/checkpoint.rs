//! Checkpointed jobs: the host drives the job one step at a time, hashes its whole state
//! between steps, and can restore any such state to re-run a single step for a referee.
//!
//! The ABI is in `docs/checkpoint-abi.md`; in short, a module that exports
//! `agora_step: () -> i32` (besides `_start` and `memory`) is instantiated, its `_initialize`
//! (if exported) is run, and then `agora_step` is called until it returns `1`. Between calls
//! the wasm stack is empty, so the job's state is exactly its linear memory, its globals, its
//! tables and the host's virtual WASI state. The ABI forbids the parts the host cannot see or
//! restore — mutable globals that are not exported, table mutation, `data.drop`, and
//! descriptor-table changes outside `_initialize` and the last step — so what is hashed
//! ([`agora_verify::checkpoint::StateDigest`]) is the whole state, and restoring it gives
//! the same next step on any machine.
//!
//! Entry points, all on [`WasmExecutor`]:
//!
//! - [`WasmExecutor::run_checkpointed`]: the provider's run. Same engine, sandbox, fuel
//!   metering and limits as [`Executor::run`](crate::Executor::run), and the same
//!   [`result_digest`](crate::result_digest); in addition a [`Trace`] of every step's state
//!   hash, whose [`StepCommitment`] goes into the receipt.
//! - [`WasmExecutor::checkpoint_initial_state`]: the state hash before step 1, which the
//!   referee computes itself when a bisection opens.
//! - [`WasmExecutor::checkpoint_preimage`]: a party's answer to "give us state `i − 1`":
//!   re-runs the job to that step and snapshots it ([`StatePreimage`]).
//! - [`WasmExecutor::referee_step`]: the referee's one re-execution: restore a preimage that
//!   must hash to the agreed state, run exactly one `agora_step`, return the new state hash.
//! - [`StepSession`]: the stepping machinery itself, for callers that drive steps.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use agora_core::{Fuel, Hash, StepCommitment};
use agora_verify::bisect::Answer;
use agora_verify::checkpoint::{StateDigest, StepStatus, StepTree};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use wasi_rand_core::TryRng;
use wasmtime::{
    Caller, Engine, Extern, ExternType, Global, Instance, Linker, Memory, Mutability, Store,
    TypedFunc, V128, Val, ValType,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::cache::Lookup;
use crate::cancel::Interrupt;
use crate::error::ExecError;
use crate::job::{JobSpec, Limits, WasmModule, Workload};
use crate::outcome::{Captured, ModuleSource, Outcome, PartialRun, result_digest};
use crate::sandbox::dirs::JobDirs;
use crate::sandbox::hostcalls::{self, WASI};
use crate::sandbox::limiter::JobLimiter;
use crate::sandbox::virtual_env::SeededRandom;
use crate::sandbox::{JobState, VirtualTime};
use crate::wasm::{WasmExecutor, exit_code, fuel_used};

/// The export a checkpointed module is driven through.
pub const STEP_EXPORT: &str = "agora_step";
/// The reactor initialiser the host runs before step 1, when the module exports it.
pub const INITIALIZE_EXPORT: &str = "_initialize";
/// Most steps one job may take: the trace keeps 32 bytes per step, and a job of many tiny
/// steps is mostly hashing.
pub const MAX_STEPS: u64 = 1_000_000;
/// Domain tag of the virtual WASI state's hash.
pub const WASI_STATE_TAG: &str = "agora/checkpoint-wasi/v1";

/// Must match `sandbox`: the program name a job sees as `argv[0]`, and the largest single
/// `random_get`. A test checks that a checkpointed run's digest equals an ordinary run's.
const PROGRAM_NAME: &str = "job.wasm";
const MAX_RANDOM_REQUEST: u64 = 1 << 20;
/// Where the guard keeps the sandbox's own definitions of the functions it watches.
const GUARDED: &str = "agora:checkpoint-guarded";
const ERRNO_SUCCESS: i32 = 0;

/// A module that breaks the checkpoint ABI in a way the host can see before running it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiViolation {
    /// `agora_step` is not a function `() -> i32`.
    #[error("`agora_step` must be a function taking nothing and returning i32")]
    BadStepSignature,
    /// The module exports no memory named `memory`.
    #[error("the module must export its linear memory as `memory`")]
    NoMemoryExport,
    /// A mutable global is not exported, so the host could neither hash nor restore it.
    #[error(
        "mutable global {index} is not exported; export every mutable global \
         (for C: -mmutable-globals -Wl,--export=__stack_pointer)"
    )]
    HiddenMutableGlobal {
        /// The global's index.
        index: u32,
    },
    /// A mutable global holds a reference, which has no portable value to hash.
    #[error(
        "mutable global `{name}` holds a reference; only numeric and v128 globals can be hashed"
    )]
    ReferenceGlobal {
        /// Its export name.
        name: String,
    },
    /// A function mutates a table, which the host does not hash.
    #[error("function {function} uses `{op}`; checkpointed jobs must not change tables")]
    TableMutation {
        /// The function's index.
        function: u32,
        /// The instruction.
        op: &'static str,
    },
    /// A function drops a data segment, which the host does not record.
    #[error("function {function} uses `data.drop`; checkpointed jobs must not drop data segments")]
    DataDrop {
        /// The function's index.
        function: u32,
    },
}

/// Why a checkpointed run, a snapshot or a referee step failed. Nothing was decided.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The job failed as an ordinary job would (trap, fuel, limits, malformed module, ...).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The module does not export `agora_step`.
    #[error("not a checkpointed module: it exports no `agora_step`; run it as an ordinary job")]
    NotCheckpointed,
    /// The module breaks the ABI.
    #[error("checkpoint ABI: {0}")]
    Abi(#[from] AbiViolation),
    /// `agora_step` returned something other than 0 or 1.
    #[error(
        "checkpoint ABI: step {step} returned {value}; `agora_step` must return 0 (more) or 1 (done)"
    )]
    BadStepReturn {
        /// The step (1-based).
        step: u64,
        /// What it returned.
        value: i32,
    },
    /// A step other than the last opened, closed or renumbered a descriptor.
    #[error(
        "checkpoint ABI: step {step} called `{call}`, but only `_initialize` and the last step may \
         open, close or renumber descriptors (the descriptor table is not part of the hashed state)"
    )]
    DescriptorChanged {
        /// The step (1-based).
        step: u64,
        /// The WASI call.
        call: &'static str,
    },
    /// The job took more than [`MAX_STEPS`] steps.
    #[error("the job took more than {limit} steps; make its steps larger")]
    TooManySteps {
        /// [`MAX_STEPS`].
        limit: u64,
    },
    /// The restored preimage does not hash to the state it was given for.
    #[error(
        "the state preimage does not hash to the agreed state: expected {expected}, restored {actual}"
    )]
    PreimageMismatch {
        /// The agreed state hash.
        expected: Hash,
        /// What the restored state hashes to.
        actual: Hash,
    },
    /// The preimage cannot be restored for this job (wrong shape, over the limits, bad paths).
    #[error("bad state preimage: {0}")]
    BadPreimage(String),
    /// A step outside the job's trace was asked for.
    #[error("step {step} is out of range: {reason}")]
    StepOutOfRange {
        /// The step asked.
        step: u64,
        /// Why it does not exist.
        reason: String,
    },
    /// A referee step after step 1 needs the preimage of the state before it.
    #[error("re-running step {step} needs the preimage of state {}", step - 1)]
    MissingPreimage {
        /// The step to re-run.
        step: u64,
    },
}

impl From<CheckpointError> for ExecError {
    /// For callers that report job failures as [`ExecError`]: an ABI violation is the job's
    /// own fault, like a malformed module; a bad preimage is a bad request.
    fn from(err: CheckpointError) -> ExecError {
        match err {
            CheckpointError::Exec(e) => e,
            e @ (CheckpointError::NotCheckpointed
            | CheckpointError::Abi(_)
            | CheckpointError::BadStepReturn { .. }
            | CheckpointError::DescriptorChanged { .. }
            | CheckpointError::TooManySteps { .. }) => ExecError::MalformedModule {
                reason: e.to_string(),
            },
            e => ExecError::InvalidJob(e.to_string()),
        }
    }
}

/// The state hash after every step of a run, and the tree the receipt commits to.
#[derive(Clone, Debug)]
pub struct Trace {
    /// The state before step 1 (after instantiation and `_initialize`).
    pub initial_state: Hash,
    /// Step `s`'s state hash at index `s − 1`.
    pub step_hashes: Vec<Hash>,
    tree: StepTree,
}

impl Trace {
    /// A trace from its step hashes.
    pub fn new(initial_state: Hash, step_hashes: Vec<Hash>) -> Trace {
        let tree = StepTree::new(&step_hashes);
        Trace {
            initial_state,
            step_hashes,
            tree,
        }
    }

    /// How many steps the run took.
    pub fn steps(&self) -> u64 {
        self.step_hashes.len() as u64
    }

    /// The Merkle tree over the step hashes.
    pub fn tree(&self) -> &StepTree {
        &self.tree
    }

    /// The root and step count of this trace.
    pub fn commitment(&self) -> StepCommitment {
        StepCommitment {
            root: self.tree.root(),
            steps: self.steps(),
        }
    }

    /// What a receipt commits to: the [`commitment`](Trace::commitment), or `None` when the
    /// job ended before its first step (it exited in `_initialize`). There is nothing to
    /// bisect then, and an empty trace would lose any bisection, so such a result is
    /// disputed by re-running it, which costs no more than the initialisation.
    pub fn receipt_commitment(&self) -> Option<StepCommitment> {
        (self.steps() > 0).then(|| self.commitment())
    }

    /// The state hash at `step` (0: the initial state), or `None` past the end.
    pub fn state(&self, step: u64) -> Option<Hash> {
        match step {
            0 => Some(self.initial_state),
            s => self.step_hashes.get(usize::try_from(s - 1).ok()?).copied(),
        }
    }

    /// A bisection answer for `step` (1-based): the state hash with its inclusion proof.
    pub fn answer(&self, step: u64) -> Option<Answer> {
        let index = step.checked_sub(1)?;
        Some(Answer {
            state: self.state(step)?,
            proof: self.tree.prove(index)?,
        })
    }
}

/// A checkpointed run: the ordinary outcome and the trace.
#[derive(Clone, Debug)]
pub struct CheckpointedRun {
    /// What an ordinary run reports; `outcome.digest` equals an ordinary run's.
    pub outcome: Outcome,
    /// Every step's state hash.
    pub trace: Trace,
}

/// An exported mutable global's value as it is hashed: the raw bits of its type as 8
/// little-endian bytes (i32 and f32 zero-extended), 16 for v128.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalValue {
    /// Its export name.
    pub name: String,
    /// Its bits, little-endian.
    pub bytes: Vec<u8>,
}

/// An entry under `/output`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputEntry {
    /// A directory.
    Dir {
        /// Path under `/output`, `/`-separated.
        path: String,
    },
    /// A regular file.
    File {
        /// Path under `/output`, `/`-separated.
        path: String,
        /// Its content.
        data: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// Path under `/output`, `/`-separated.
        path: String,
        /// What it points to, as the job wrote it.
        target: String,
    },
}

impl OutputEntry {
    fn path(&self) -> &str {
        match self {
            OutputEntry::Dir { path }
            | OutputEntry::File { path, .. }
            | OutputEntry::Symlink { path, .. } => path,
        }
    }
}

/// The host's virtual WASI state between steps: everything a later step can observe through
/// WASI that is not in the job's memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiState {
    /// Virtual nanoseconds elapsed (the clocks and `poll_oneoff` read and move it).
    pub clock_ns: u64,
    /// Bytes drawn so far from the seeded secure random stream.
    pub secure_random_drawn: u64,
    /// Bytes drawn so far from the seeded insecure random stream.
    pub insecure_random_drawn: u64,
    /// Standard output kept so far (at most the job's stdout limit).
    pub stdout: Vec<u8>,
    /// Bytes written to stdout so far, kept or not.
    pub stdout_total: u64,
    /// Standard error kept so far.
    pub stderr: Vec<u8>,
    /// Bytes written to stderr so far.
    pub stderr_total: u64,
    /// Bytes charged against the `/output` budget so far.
    pub output_written: u64,
    /// Entry-creating calls charged so far.
    pub output_created: u64,
    /// The exit code, once the job called `proc_exit`.
    pub exit_code: Option<i32>,
    /// Everything under `/output`, sorted by path.
    pub outputs: Vec<OutputEntry>,
}

impl WasiState {
    /// The `wasi` part of [`StateDigest`]: blake3 under [`WASI_STATE_TAG`] over the fields in
    /// declaration order, each length-prefixed; stdout and stderr as (total, blake3 of what is
    /// kept); the outputs as one part of `kind ‖ len ‖ path ‖ (blake3 of content | len ‖
    /// target)` per entry (kind 0 directory, 1 file, 2 symlink).
    pub fn hash(&self) -> Hash {
        wasi_hash(&WasiParts {
            clock_ns: self.clock_ns,
            secure: self.secure_random_drawn,
            insecure: self.insecure_random_drawn,
            stdout: (self.stdout_total, Hash::of(&self.stdout)),
            stderr: (self.stderr_total, Hash::of(&self.stderr)),
            written: self.output_written,
            created: self.output_created,
            exit_code: self.exit_code,
            outputs: &self.outputs,
        })
    }
}

/// A job's whole state after a step: what a party hands the referee, and what the referee
/// restores. It hashes ([`StatePreimage::hash`]) to the step's committed state hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePreimage {
    /// The step just completed (0: the initial state).
    pub step: u64,
    /// What that step returned.
    pub status: StepStatus,
    /// Fuel used from the start through this step.
    pub fuel: Fuel,
    /// Linear memory, every page.
    pub memory: Vec<u8>,
    /// The exported mutable globals in export-name order.
    pub globals: Vec<GlobalValue>,
    /// The virtual WASI state.
    pub wasi: WasiState,
}

impl StatePreimage {
    /// The state hash this preimage claims to be. [`WasmExecutor::referee_step`] does not
    /// trust it: it restores the preimage and hashes what it restored.
    pub fn hash(&self) -> Hash {
        let globals: Vec<u8> = self.globals.iter().flat_map(|g| g.bytes.clone()).collect();
        StateDigest {
            step: self.step,
            status: self.status,
            fuel: self.fuel,
            memory: Hash::of(&self.memory),
            globals: Hash::of(&globals),
            wasi: self.wasi.hash(),
        }
        .hash()
    }
}

/// Whether `bytes` is a module that exports `agora_step`, i.e. asks to be run checkpointed.
/// Does not validate anything else.
pub fn is_checkpointed(bytes: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return false };
        if let wasmparser::Payload::ExportSection(reader) = payload {
            return reader
                .into_iter()
                .flatten()
                .any(|e| e.name == STEP_EXPORT && e.kind == wasmparser::ExternalKind::Func);
        }
    }
    false
}

/// What the ABI check learnt about a module.
#[derive(Clone, Debug)]
struct StepAbi {
    /// Exported mutable globals, by export name (sorted).
    globals: Vec<String>,
    /// Whether it exports `_initialize`.
    initialize: bool,
}

/// Checks the parts of the ABI that can be read off the module: the exports, that every
/// mutable global is exported, and that no function body mutates a table or drops a data
/// segment (a scan of every instruction).
fn check_abi(module: &WasmModule, compiled: &wasmtime::Module) -> Result<StepAbi, CheckpointError> {
    match compiled.get_export(STEP_EXPORT) {
        Some(ExternType::Func(ty))
            if ty.params().len() == 0
                && ty.results().len() == 1
                && ty.results().all(|r| matches!(r, ValType::I32)) => {}
        Some(_) => return Err(AbiViolation::BadStepSignature.into()),
        None => return Err(CheckpointError::NotCheckpointed),
    }
    if !matches!(compiled.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(AbiViolation::NoMemoryExport.into());
    }
    let mut globals = BTreeMap::new();
    for export in compiled.exports() {
        if let ExternType::Global(ty) = export.ty()
            && ty.mutability() == Mutability::Var
        {
            if !matches!(
                ty.content(),
                ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64 | ValType::V128
            ) {
                return Err(AbiViolation::ReferenceGlobal {
                    name: export.name().to_owned(),
                }
                .into());
            }
            globals.insert(export.name().to_owned(), ());
        }
    }
    scan(module.bytes())?;
    Ok(StepAbi {
        globals: globals.into_keys().collect(),
        initialize: matches!(
            compiled.get_export(INITIALIZE_EXPORT),
            Some(ExternType::Func(_))
        ),
    })
}

fn scan(bytes: &[u8]) -> Result<(), CheckpointError> {
    use wasmparser::{ExternalKind, Operator, Payload, TypeRef};
    let malformed = |e: wasmparser::BinaryReaderError| {
        CheckpointError::Exec(ExecError::MalformedModule {
            reason: e.to_string(),
        })
    };
    let mut imported_funcs = 0u32;
    let mut imported_globals = 0u32;
    let mut mutable = Vec::new();
    let mut exported = std::collections::HashSet::new();
    let mut function = 0u32;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(malformed)?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_funcs += 1,
                        TypeRef::Global(_) => imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    if global.map_err(malformed)?.ty.mutable {
                        mutable.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if export.kind == ExternalKind::Global {
                        exported.insert(export.index);
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let index = imported_funcs + function;
                function += 1;
                for op in body.get_operators_reader().map_err(malformed)? {
                    let op = match op.map_err(malformed)? {
                        Operator::TableSet { .. } => "table.set",
                        Operator::TableGrow { .. } => "table.grow",
                        Operator::TableFill { .. } => "table.fill",
                        Operator::TableCopy { .. } => "table.copy",
                        Operator::TableInit { .. } => "table.init",
                        Operator::ElemDrop { .. } => "elem.drop",
                        Operator::DataDrop { .. } => {
                            return Err(AbiViolation::DataDrop { function: index }.into());
                        }
                        _ => continue,
                    };
                    return Err(AbiViolation::TableMutation {
                        function: index,
                        op,
                    }
                    .into());
                }
            }
            _ => {}
        }
    }
    if let Some(index) = mutable.into_iter().find(|i| !exported.contains(i)) {
        return Err(AbiViolation::HiddenMutableGlobal { index }.into());
    }
    Ok(())
}

impl WasmExecutor {
    /// Runs a checkpointed job to the end: the ordinary outcome (same digest as
    /// [`Executor::run`](crate::Executor::run)) and the trace of step hashes.
    pub fn run_checkpointed(&self, job: &JobSpec) -> Result<CheckpointedRun, CheckpointError> {
        let mut session = self.checkpoint_session(job)?;
        let initial_state = session.state_hash();
        let mut hashes = Vec::new();
        while session.status() == StepStatus::More {
            session.step()?;
            hashes.push(session.state_hash());
        }
        let outcome = session.finish()?;
        Ok(CheckpointedRun {
            outcome,
            trace: Trace::new(initial_state, hashes),
        })
    }

    /// The state before step 1: what the referee computes when a bisection opens.
    pub fn checkpoint_initial_state(&self, job: &JobSpec) -> Result<Hash, CheckpointError> {
        Ok(self.checkpoint_session(job)?.state_hash())
    }

    /// The preimage of the state after `step` (0: the initial state), by re-running the job
    /// to it: a party's answer when the referee needs the agreed state.
    pub fn checkpoint_preimage(
        &self,
        job: &JobSpec,
        step: u64,
    ) -> Result<StatePreimage, CheckpointError> {
        let mut session = self.checkpoint_session(job)?;
        while session.steps_done() < step {
            if session.status() == StepStatus::Done {
                return Err(CheckpointError::StepOutOfRange {
                    step,
                    reason: format!("the job finished after {} steps", session.steps_done()),
                });
            }
            session.step()?;
        }
        session.snapshot()
    }

    /// The referee's re-execution of `step` (1-based): restore `preimage` (the state after
    /// `step − 1`, supplied by either party; for step 1 it may be `None`, and the referee
    /// instantiates the job itself), check that it hashes to the agreed `from_state`, run
    /// exactly one `agora_step`, and return the new state hash — or `None` when the agreed
    /// state says the job had already finished, so there is no such step.
    ///
    /// An `Err(CheckpointError::Exec(e))` with `e.is_job_fault()` means the step itself fails
    /// (a trap, out of fuel): no state follows it, so any claimed state is wrong.
    pub fn referee_step(
        &self,
        job: &JobSpec,
        step: u64,
        from_state: Hash,
        preimage: Option<&StatePreimage>,
    ) -> Result<Option<Hash>, CheckpointError> {
        if step == 0 {
            return Err(CheckpointError::StepOutOfRange {
                step,
                reason: "steps are numbered from 1".into(),
            });
        }
        let mut session = match preimage {
            Some(preimage) => {
                if preimage.step != step - 1 {
                    return Err(CheckpointError::BadPreimage(format!(
                        "it is the state after step {}, not after step {}",
                        preimage.step,
                        step - 1
                    )));
                }
                self.restore_session(job, preimage)?
            }
            None if step == 1 => self.checkpoint_session(job)?,
            None => return Err(CheckpointError::MissingPreimage { step }),
        };
        let restored = session.state_hash();
        if restored != from_state {
            return Err(CheckpointError::PreimageMismatch {
                expected: from_state,
                actual: restored,
            });
        }
        if session.status() == StepStatus::Done {
            return Ok(None);
        }
        session.step()?;
        Ok(Some(session.state_hash()))
    }

    /// A session at the job's initial state (instantiated, `_initialize` run).
    pub fn checkpoint_session(&self, job: &JobSpec) -> Result<StepSession<'_>, CheckpointError> {
        StepSession::start(self, job)
    }

    /// A session restored to `preimage`, without checking it against any agreed hash (the
    /// caller compares [`StepSession::state_hash`]; [`WasmExecutor::referee_step`] does).
    pub fn restore_session(
        &self,
        job: &JobSpec,
        preimage: &StatePreimage,
    ) -> Result<StepSession<'_>, CheckpointError> {
        let mut session = StepSession::start(self, job)?;
        session.restore(preimage)?;
        Ok(session)
    }
}

/// One live checkpointed job: a store with the job instantiated, stepped by the host.
pub struct StepSession<'e> {
    exec: &'e WasmExecutor,
    store: Store<JobState>,
    dirs: Option<JobDirs>,
    step_fn: TypedFunc<(), i32>,
    memory: Memory,
    globals: Vec<(String, Global)>,
    io: StepIo,
    limits: Limits,
    job_id: Hash,
    module_hash: Hash,
    module_source: ModuleSource,
    steps: u64,
    status: StepStatus,
    exit_code: Option<i32>,
    state: Hash,
    started: Instant,
    cancel: crate::CancelToken,
}

impl Drop for StepSession<'_> {
    fn drop(&mut self) {
        if let Some(dirs) = self.dirs.take() {
            self.exec.reaper.dispose(dirs);
        }
    }
}

/// The host-side parts of the virtual WASI state that the session reads between steps.
#[derive(Clone)]
struct StepIo {
    stdout: TracedPipe,
    stderr: TracedPipe,
    secure: Arc<AtomicU64>,
    insecure: Arc<AtomicU64>,
    time: VirtualTime,
    guard: Arc<DescriptorGuard>,
}

impl<'e> StepSession<'e> {
    fn start(exec: &'e WasmExecutor, job: &JobSpec) -> Result<StepSession<'e>, CheckpointError> {
        job.validate()?;
        // The step driver has its own WASI context, without the scratch root or stdin.
        if job.uses_file_trees() {
            return Err(ExecError::InvalidJob(
                "directory inputs, a working tree and stdin are not supported under the \
                 checkpoint ABI (agora_step) yet: give such a job plain file inputs"
                    .into(),
            )
            .into());
        }
        let Workload::Wasm(module) = &job.workload;
        let lookup: Lookup = exec.cache.get(&exec.engine, &exec.linker, module)?;
        let compiled = lookup.prepared.pre.module().clone();
        let abi = check_abi(module, &compiled)?;
        if job.cancel.is_cancelled() {
            return Err(ExecError::Cancelled { fuel_used: Fuel(0) }.into());
        }
        let started = Instant::now();
        let dirs = JobDirs::create(exec.config.work_dir.as_deref(), &job.inputs)?;
        let io = StepIo {
            stdout: TracedPipe::new(job.limits.stdout_bytes),
            stderr: TracedPipe::new(job.limits.stderr_bytes),
            secure: Arc::default(),
            insecure: Arc::default(),
            time: VirtualTime::new(&job.job_id),
            guard: Arc::default(),
        };
        let metered = exec.config.profile.fuel;
        let mut store = build_store(&exec.engine, job, &dirs, metered, &io)?;
        let linker = guarded_linker(&exec.linker, &io.guard).map_err(|e| ExecError::Engine {
            context: "defining the checkpoint descriptor guard",
            message: format!("{e:#}"),
        })?;
        let engine_err = |context| {
            move |e: wasmtime::Error| ExecError::Engine {
                context,
                message: format!("{e:#}"),
            }
        };
        let instance = match linker.instantiate(&mut store, &compiled) {
            Ok(instance) => instance,
            Err(err) => {
                // A start function that calls `proc_exit` leaves no instance to step.
                classify_failure(err, &store, &job.limits, metered)?;
                return Err(ExecError::MalformedModule {
                    reason: "a checkpointed module's start function must not exit".into(),
                }
                .into());
            }
        };
        hostcalls::attach(&exec.trampoline, &linker, &mut store, &instance)
            .map_err(engine_err("attaching the WASI trampoline"))?;
        io.guard
            .attach(&linker, &mut store)
            .map_err(engine_err("attaching the checkpoint descriptor guard"))?;
        let step_fn = instance
            .get_typed_func::<(), i32>(&mut store, STEP_EXPORT)
            .map_err(|_| AbiViolation::BadStepSignature)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(AbiViolation::NoMemoryExport)?;
        let globals = exported_globals(&instance, &mut store, &abi.globals)?;
        let mut session = StepSession {
            exec,
            store,
            dirs: Some(dirs),
            step_fn,
            memory,
            globals,
            io,
            limits: job.limits,
            job_id: job.job_id,
            module_hash: module.hash(),
            module_source: lookup.source,
            steps: 0,
            status: StepStatus::More,
            exit_code: None,
            state: Hash::ZERO,
            started,
            cancel: job.cancel.clone(),
        };
        if abi.initialize {
            let init = instance
                .get_typed_func::<(), ()>(&mut session.store, INITIALIZE_EXPORT)
                .map_err(|_| ExecError::MalformedModule {
                    reason: "`_initialize` must be a function taking and returning nothing".into(),
                })?;
            let result = init.call(&mut session.store, ());
            session.settle(result.map(|()| None))?;
        }
        session.state = session.compute_state()?;
        Ok(session)
    }

    /// Steps completed.
    pub fn steps_done(&self) -> u64 {
        self.steps
    }

    /// Whether the job has more steps.
    pub fn status(&self) -> StepStatus {
        self.status
    }

    /// The state hash now (after the last completed step, or the initial state).
    pub fn state_hash(&self) -> Hash {
        self.state
    }

    /// Fuel used from the start through the last completed step.
    pub fn fuel_used(&self) -> Fuel {
        self.fuel()
    }

    /// Runs one `agora_step` and hashes the state after it. Fails if the job is done, if the
    /// step fails as a job would, or if it breaks the ABI.
    pub fn step(&mut self) -> Result<StepStatus, CheckpointError> {
        let step = self.steps + 1;
        if self.status == StepStatus::Done {
            return Err(CheckpointError::StepOutOfRange {
                step,
                reason: format!("the job finished after {} steps", self.steps),
            });
        }
        if step > MAX_STEPS {
            return Err(CheckpointError::TooManySteps { limit: MAX_STEPS });
        }
        // The epoch check only runs inside wasm; hashing between steps is host time.
        let fuel = self.fuel();
        if self.cancel.is_cancelled() {
            return Err(ExecError::Cancelled { fuel_used: fuel }.into());
        }
        if self.started.elapsed() > self.limits.wall_timeout {
            return Err(ExecError::Timeout {
                limit: self.limits.wall_timeout,
                fuel_used: fuel,
                partial: None,
            }
            .into());
        }
        self.io.guard.begin_step();
        let result = self.step_fn.call(&mut self.store, ());
        let touched = self.io.guard.end_step();
        let status = match self.settle(result.map(Some))? {
            Some(0) => StepStatus::More,
            Some(1) | None => StepStatus::Done,
            Some(value) => return Err(CheckpointError::BadStepReturn { step, value }),
        };
        if let (Some(call), StepStatus::More) = (touched, status) {
            return Err(CheckpointError::DescriptorChanged { step, call });
        }
        self.steps = step;
        self.status = status;
        self.state = self.compute_state()?;
        Ok(status)
    }

    /// How a call into the job ended: `Ok(Some(value))` it returned, `Ok(None)` it called
    /// `proc_exit` (the job is done with that code), or the failure an ordinary run reports.
    fn settle(
        &mut self,
        result: wasmtime::Result<Option<i32>>,
    ) -> Result<Option<i32>, CheckpointError> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let code = classify_failure(
            err,
            &self.store,
            &self.limits,
            self.exec.config.profile.fuel,
        )
        .map_err(|err| err.with_partial(self.partial_run()))?;
        self.exit_code = Some(code);
        self.status = StepStatus::Done;
        Ok(None)
    }

    /// What the job wrote so far and the fuel it burnt, for the error of a failed step.
    fn partial_run(&self) -> PartialRun {
        let (stdout, stdout_total) = self.io.stdout.contents();
        let (stderr, stderr_total) = self.io.stderr.contents();
        PartialRun {
            stdout: Captured::new("stdout", stdout, stdout_total),
            stderr: Captured::new("stderr", stderr, stderr_total),
            fuel_used: self.fuel(),
        }
    }

    fn fuel(&self) -> Fuel {
        if self.exec.config.profile.fuel {
            fuel_used(&self.store, self.limits.fuel)
        } else {
            Fuel(0)
        }
    }

    fn compute_state(&mut self) -> Result<Hash, CheckpointError> {
        let mut globals = Vec::with_capacity(self.globals.len() * 8);
        for (_, global) in &self.globals {
            push_global(&mut globals, &global.get(&mut self.store));
        }
        let outputs = self.output_entries()?;
        let output = &self.store.data().output;
        let wasi = wasi_hash(&WasiParts {
            clock_ns: self.io.time.monotonic_now(),
            secure: self.io.secure.load(Ordering::Relaxed),
            insecure: self.io.insecure.load(Ordering::Relaxed),
            stdout: self.io.stdout.digest(),
            stderr: self.io.stderr.digest(),
            written: output.written,
            created: output.created,
            exit_code: self.exit_code,
            outputs: &outputs,
        });
        Ok(StateDigest {
            step: self.steps,
            status: self.status,
            fuel: self.fuel(),
            memory: Hash::of(self.memory.data(&self.store)),
            globals: Hash::of(&globals),
            wasi,
        }
        .hash())
    }

    fn output_dir(&self) -> Result<std::path::PathBuf, CheckpointError> {
        self.dirs
            .as_ref()
            .map(JobDirs::output)
            .ok_or_else(|| CheckpointError::BadPreimage("the session has no directories".into()))
    }

    fn output_entries(&self) -> Result<Vec<OutputEntry>, CheckpointError> {
        let root = self.output_dir()?;
        let mut entries = Vec::new();
        walk_outputs(&root, "", &mut entries)?;
        entries.sort_by(|a, b| a.path().cmp(b.path()));
        Ok(entries)
    }

    /// The whole state now, for the referee.
    pub fn snapshot(&mut self) -> Result<StatePreimage, CheckpointError> {
        let globals = self
            .globals
            .iter()
            .map(|(name, global)| {
                let mut bytes = Vec::with_capacity(8);
                push_global(&mut bytes, &global.get(&mut self.store));
                GlobalValue {
                    name: name.clone(),
                    bytes,
                }
            })
            .collect();
        let (stdout, stdout_total) = self.io.stdout.contents();
        let (stderr, stderr_total) = self.io.stderr.contents();
        let output = &self.store.data().output;
        let wasi = WasiState {
            clock_ns: self.io.time.monotonic_now(),
            secure_random_drawn: self.io.secure.load(Ordering::Relaxed),
            insecure_random_drawn: self.io.insecure.load(Ordering::Relaxed),
            stdout,
            stdout_total,
            stderr,
            stderr_total,
            output_written: output.written,
            output_created: output.created,
            exit_code: self.exit_code,
            outputs: self.output_entries()?,
        };
        Ok(StatePreimage {
            step: self.steps,
            status: self.status,
            fuel: self.fuel(),
            memory: self.memory.data(&self.store).to_vec(),
            globals,
            wasi,
        })
    }

    /// Overwrites this session's state (fresh from [`StepSession::start`]) with `preimage`.
    fn restore(&mut self, preimage: &StatePreimage) -> Result<(), CheckpointError> {
        let bad = |msg: String| CheckpointError::BadPreimage(msg);
        if preimage.wasi.exit_code.is_some() && preimage.status != StepStatus::Done {
            return Err(bad(
                "an exit code is only possible once the job is done".into()
            ));
        }
        if preimage.step > MAX_STEPS || (preimage.step == 0 && preimage.status == StepStatus::Done)
        {
            return Err(bad(format!("step {} cannot be restored", preimage.step)));
        }
        // Memory: grow to the preimage's size (through the job's limiter), then overwrite.
        const PAGE: usize = 65_536;
        let len = preimage.memory.len();
        let current = self.memory.data_size(&self.store);
        if !len.is_multiple_of(PAGE) || len < current {
            return Err(bad(format!(
                "its memory is {len} bytes; it must be whole pages and at least the {current} \
                 bytes the module starts with"
            )));
        }
        if len as u64 > self.limits.memory_bytes {
            return Err(bad(format!(
                "its memory of {len} bytes exceeds the job's limit of {} bytes",
                self.limits.memory_bytes
            )));
        }
        let grow = ((len - current) / PAGE) as u64;
        if grow > 0 {
            self.memory
                .grow(&mut self.store, grow)
                .map_err(|e| bad(format!("growing memory to {len} bytes: {e:#}")))?;
        }
        self.memory
            .data_mut(&mut self.store)
            .copy_from_slice(&preimage.memory);
        // Globals, by name and type.
        if preimage.globals.len() != self.globals.len() {
            return Err(bad(format!(
                "it has {} globals; the module exports {} mutable globals",
                preimage.globals.len(),
                self.globals.len()
            )));
        }
        for (value, (name, global)) in preimage.globals.iter().zip(&self.globals) {
            if &value.name != name {
                return Err(bad(format!(
                    "global `{}` where `{name}` was expected",
                    value.name
                )));
            }
            let ty = global.ty(&self.store).content().clone();
            let val = bytes_to_val(&ty, &value.bytes).ok_or_else(|| {
                bad(format!(
                    "global `{name}` of type {ty} cannot hold the {} bytes given",
                    value.bytes.len()
                ))
            })?;
            global
                .set(&mut self.store, val)
                .map_err(|e| bad(format!("setting global `{name}`: {e:#}")))?;
        }
        self.restore_wasi(&preimage.wasi)?;
        // Fuel: what the preimage says was used by now.
        if self.exec.config.profile.fuel {
            let remaining = self
                .limits
                .fuel
                .0
                .checked_sub(preimage.fuel.0)
                .ok_or_else(|| {
                    bad(format!(
                        "it used {} fuel, over the job's limit",
                        preimage.fuel.0
                    ))
                })?;
            self.store.set_fuel(remaining).map_err(|e| {
                CheckpointError::Exec(ExecError::Engine {
                    context: "setting fuel",
                    message: format!("{e:#}"),
                })
            })?;
        }
        self.steps = preimage.step;
        self.status = preimage.status;
        self.exit_code = preimage.wasi.exit_code;
        self.state = self.compute_state()?;
        Ok(())
    }

    fn restore_wasi(&mut self, wasi: &WasiState) -> Result<(), CheckpointError> {
        let bad = |msg: String| CheckpointError::BadPreimage(msg);
        let now = self.io.time.monotonic_now();
        let ahead = wasi.clock_ns.checked_sub(now).ok_or_else(|| {
            bad(format!(
                "its clock {} ns is before the start {now} ns",
                wasi.clock_ns
            ))
        })?;
        self.io.time.advance(ahead);
        for (counter, stream, drawn) in [
            (&self.io.secure, "secure", wasi.secure_random_drawn),
            (&self.io.insecure, "insecure", wasi.insecure_random_drawn),
        ] {
            let at = counter.load(Ordering::Relaxed);
            if drawn < at {
                return Err(bad(format!(
                    "its {stream} random position {drawn} is before the start {at}"
                )));
            }
        }
        // The random streams are positioned by re-creating them and skipping ahead.
        self.io
            .secure
            .store(wasi.secure_random_drawn, Ordering::Relaxed);
        self.io
            .insecure
            .store(wasi.insecure_random_drawn, Ordering::Relaxed);
        self.io
            .stdout
            .restore(&wasi.stdout, wasi.stdout_total)
            .map_err(&bad)?;
        self.io
            .stderr
            .restore(&wasi.stderr, wasi.stderr_total)
            .map_err(&bad)?;
        let output = &mut self.store.data_mut().output;
        if wasi.output_written > output.limit_bytes {
            return Err(bad(format!(
                "it wrote {} bytes to /output, over the limit of {}",
                wasi.output_written, output.limit_bytes
            )));
        }
        output.written = wasi.output_written;
        output.created = wasi.output_created;
        let root = self.output_dir()?;
        let data: u64 = wasi
            .outputs
            .iter()
            .map(|e| match e {
                OutputEntry::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .fold(0, u64::saturating_add);
        if data > self.limits.output_bytes || wasi.outputs.len() as u64 > self.limits.output_files {
            return Err(bad("its /output exceeds the job's output limits".into()));
        }
        replace_outputs(&root, &wasi.outputs)
    }

    /// The outcome of a finished job, exactly as an ordinary run reports it.
    pub fn finish(mut self) -> Result<Outcome, CheckpointError> {
        if self.status != StepStatus::Done {
            return Err(CheckpointError::StepOutOfRange {
                step: self.steps + 1,
                reason: "the job has steps left".into(),
            });
        }
        let dirs = self
            .dirs
            .as_ref()
            .ok_or_else(|| CheckpointError::BadPreimage("the session has no directories".into()))?;
        let outputs = dirs.collect_outputs(&self.limits)?;
        let exit_code = self.exit_code.unwrap_or(0);
        let (stdout, stdout_total) = self.io.stdout.contents();
        let (stderr, stderr_total) = self.io.stderr.contents();
        let stdout = Captured::new("stdout", stdout, stdout_total);
        let stderr = Captured::new("stderr", stderr, stderr_total);
        let digest = result_digest(exit_code, &stdout.data, &stderr.data, &outputs);
        let fuel_used = self.fuel();
        let outcome = Outcome {
            job_id: self.job_id,
            module_hash: self.module_hash,
            exit_code,
            stdout,
            stderr,
            outputs,
            fuel_used,
            compute_units: fuel_used.as_compute_units_f64(),
            wall_time: self.started.elapsed(),
            peak_memory_bytes: self.store.data().limiter.peak_memory(),
            module_source: self.module_source,
            digest,
        };
        if let Some(dirs) = self.dirs.take() {
            self.exec.reaper.dispose(dirs);
        }
        Ok(outcome)
    }
}

/// Turns a failed call into the exit code of `proc_exit`, or the error an ordinary run
/// reports for it.
fn classify_failure(
    err: wasmtime::Error,
    store: &Store<JobState>,
    limits: &Limits,
    metered: bool,
) -> Result<i32, ExecError> {
    let fuel = if metered {
        fuel_used(store, limits.fuel)
    } else {
        Fuel(0)
    };
    exit_code(Err(err), store, limits, fuel)
}

fn exported_globals(
    instance: &Instance,
    store: &mut Store<JobState>,
    names: &[String],
) -> Result<Vec<(String, Global)>, CheckpointError> {
    names
        .iter()
        .map(|name| {
            instance
                .get_global(&mut *store, name)
                .map(|g| (name.clone(), g))
                .ok_or_else(|| {
                    CheckpointError::Exec(ExecError::MalformedModule {
                        reason: format!("exported global `{name}` is missing"),
                    })
                })
        })
        .collect()
}

/// A global's value as 8 little-endian bytes (16 for v128).
fn push_global(out: &mut Vec<u8>, value: &Val) {
    match value {
        Val::V128(v) => out.extend_from_slice(&v.as_u128().to_le_bytes()),
        other => out.extend_from_slice(&(global_bits(other) as u64).to_le_bytes()),
    }
}

fn global_bits(value: &Val) -> u128 {
    match value {
        Val::I32(v) => u128::from(*v as u32),
        Val::I64(v) => u128::from(*v as u64),
        Val::F32(bits) => u128::from(*bits),
        Val::F64(bits) => u128::from(*bits),
        Val::V128(v) => v.as_u128(),
        // Reference globals are refused by the ABI check.
        _ => 0,
    }
}

/// The inverse of [`push_global`] for a global of type `ty`; `None` when the bytes do not
/// fit it (wrong width, or an i32/f32 with high bits set).
fn bytes_to_val(ty: &ValType, bytes: &[u8]) -> Option<Val> {
    let narrow = |bytes: &[u8]| -> Option<u64> { Some(u64::from_le_bytes(bytes.try_into().ok()?)) };
    Some(match ty {
        ValType::I32 => Val::I32(u32::try_from(narrow(bytes)?).ok()? as i32),
        ValType::I64 => Val::I64(narrow(bytes)? as i64),
        ValType::F32 => Val::F32(u32::try_from(narrow(bytes)?).ok()?),
        ValType::F64 => Val::F64(narrow(bytes)?),
        ValType::V128 => Val::V128(V128::from(u128::from_le_bytes(bytes.try_into().ok()?))),
        _ => return None,
    })
}

struct WasiParts<'a> {
    clock_ns: u64,
    secure: u64,
    insecure: u64,
    stdout: (u64, Hash),
    stderr: (u64, Hash),
    written: u64,
    created: u64,
    exit_code: Option<i32>,
    outputs: &'a [OutputEntry],
}

fn wasi_hash(parts: &WasiParts<'_>) -> Hash {
    let mut tree = Vec::new();
    for entry in parts.outputs {
        let path = entry.path().as_bytes();
        let (kind, tail): (u8, Vec<u8>) = match entry {
            OutputEntry::Dir { .. } => (0, Vec::new()),
            OutputEntry::File { data, .. } => (1, Hash::of(data).as_bytes().to_vec()),
            OutputEntry::Symlink { target, .. } => {
                let mut t = (target.len() as u64).to_le_bytes().to_vec();
                t.extend_from_slice(target.as_bytes());
                (2, t)
            }
        };
        tree.push(kind);
        tree.extend_from_slice(&(path.len() as u64).to_le_bytes());
        tree.extend_from_slice(path);
        tree.extend_from_slice(&tail);
    }
    let exit = match parts.exit_code {
        None => vec![0u8],
        Some(code) => {
            let mut e = vec![1u8];
            e.extend_from_slice(&code.to_le_bytes());
            e
        }
    };
    Hash::tagged(
        WASI_STATE_TAG,
        &[
            &parts.clock_ns.to_le_bytes(),
            &parts.secure.to_le_bytes(),
            &parts.insecure.to_le_bytes(),
            &parts.stdout.0.to_le_bytes(),
            parts.stdout.1.as_bytes(),
            &parts.stderr.0.to_le_bytes(),
            parts.stderr.1.as_bytes(),
            &parts.written.to_le_bytes(),
            &parts.created.to_le_bytes(),
            &exit,
            &tree,
        ],
    )
}

/// Lists `/output` without following symlinks.
fn walk_outputs(dir: &Path, prefix: &str, out: &mut Vec<OutputEntry>) -> Result<(), ExecError> {
    let io = |what: &str, e| ExecError::host(format!("{what} {}", dir.display()), e);
    for entry in fs::read_dir(dir).map_err(|e| io("listing", e))? {
        let entry = entry.map_err(|e| io("listing", e))?;
        let path = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let meta = fs::symlink_metadata(entry.path()).map_err(|e| io("inspecting", e))?;
        if meta.is_dir() {
            out.push(OutputEntry::Dir { path: path.clone() });
            walk_outputs(&entry.path(), &format!("{path}/"), out)?;
        } else if meta.is_file() {
            let data = fs::read(entry.path()).map_err(|e| io("reading", e))?;
            out.push(OutputEntry::File { path, data });
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|e| io("reading link in", e))?;
            out.push(OutputEntry::Symlink {
                path,
                target: target.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// Empties `root` and recreates `entries` in it; every path must stay inside `root`.
fn replace_outputs(root: &Path, entries: &[OutputEntry]) -> Result<(), CheckpointError> {
    let host = |what: String, e| CheckpointError::Exec(ExecError::host(what, e));
    for entry in fs::read_dir(root).map_err(|e| host("listing /output".into(), e))? {
        let entry = entry.map_err(|e| host("listing /output".into(), e))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| host("inspecting /output".into(), e))?;
        let removed = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(|e| host(format!("clearing {}", path.display()), e))?;
    }
    let mut sorted: Vec<&OutputEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path().cmp(b.path()));
    for entry in sorted {
        let rel = entry.path();
        let plain = |c: &str| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']);
        if rel.len() > 4096 || !rel.split('/').all(plain) {
            return Err(CheckpointError::BadPreimage(format!(
                "output path {rel:?} is not a plain relative path"
            )));
        }
        let path = root.join(rel);
        let made = match entry {
            OutputEntry::Dir { .. } => fs::create_dir_all(&path),
            OutputEntry::File { data, .. } => fs::write(&path, data),
            OutputEntry::Symlink { target, .. } => make_symlink(target, &path),
        };
        made.map_err(|e| CheckpointError::BadPreimage(format!("recreating output {rel:?}: {e}")))?;
    }
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, _path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "symlinks in /output are only restored on unix hosts",
    ))
}

/// The job's store: the sandbox of [`crate::sandbox::store`], with stdio captures and random
/// streams the host can read (and restore) between steps.
fn build_store(
    engine: &Engine,
    job: &JobSpec,
    dirs: &JobDirs,
    metered: bool,
    io: &StepIo,
) -> Result<Store<JobState>, ExecError> {
    let preopen = |guest: &str, err: wasmtime::Error| {
        ExecError::host(
            format!("preopening {guest}"),
            std::io::Error::other(format!("{err:#}")),
        )
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        .arg(PROGRAM_NAME)
        .args(&job.args)
        .envs(&job.env)
        .stdout(io.stdout.clone())
        .stderr(io.stderr.clone())
        .wall_clock(io.time.wall_clock())
        .monotonic_clock(io.time.monotonic_clock())
        .secure_random(CountedRandom::new(&job.job_id, "secure", &io.secure))
        .insecure_random(CountedRandom::new(&job.job_id, "insecure", &io.insecure))
        .insecure_random_seed(SeededRandom::seed_u128(&job.job_id))
        .max_random_size(MAX_RANDOM_REQUEST)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
        .preopened_dir(dirs.input(), "/input", FsPerms::ReadOnly)
        .map_err(|e| preopen("/input", e))?;
    builder
        .preopened_dir(dirs.output(), "/output", FsPerms::ReadWrite)
        .map_err(|e| preopen("/output", e))?;
    let state = JobState {
        wasi: builder.build_p1(),
        limiter: JobLimiter::new(job.limits.memory_bytes, job.limits.table_elements),
        output: hostcalls::OutputBudget {
            limit_bytes: job.limits.output_bytes,
            limit_files: job.limits.output_files,
            ..Default::default()
        },
        time: io.time.clone(),
        originals: None,
        interrupt: Interrupt::new(job.cancel.clone(), job.limits.wall_timeout),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    if metered {
        store
            .set_fuel(job.limits.fuel.0)
            .map_err(|e| ExecError::Engine {
                context: "setting fuel",
                message: format!("{e:#}"),
            })?;
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().interrupt.check()));
    Ok(store)
}

type PathOpen = TypedFunc<(i32, i32, i32, i32, i32, i64, i64, i32, i32), i32>;

/// Watches the WASI calls that change the descriptor table, which is not hashed: between
/// `_initialize` and the last step they would make a restored state behave differently
/// (descriptor numbers are reused from a free list that only history determines).
#[derive(Default)]
struct DescriptorGuard {
    in_step: AtomicBool,
    touched: Mutex<Option<&'static str>>,
    inner: OnceLock<GuardedFns>,
}

/// The sandbox's own definitions of the watched functions, in this session's store.
struct GuardedFns {
    path_open: PathOpen,
    fd_close: TypedFunc<i32, i32>,
    fd_renumber: TypedFunc<(i32, i32), i32>,
}

impl DescriptorGuard {
    fn touched(&self) -> MutexGuard<'_, Option<&'static str>> {
        self.touched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin_step(&self) {
        *self.touched() = None;
        self.in_step.store(true, Ordering::Relaxed);
    }

    fn end_step(&self) -> Option<&'static str> {
        self.in_step.store(false, Ordering::Relaxed);
        self.touched().take()
    }

    fn note(&self, call: &'static str, errno: i32) {
        if errno == ERRNO_SUCCESS && self.in_step.load(Ordering::Relaxed) {
            self.touched().get_or_insert(call);
        }
    }

    fn fns(&self) -> wasmtime::Result<&GuardedFns> {
        self.inner
            .get()
            .ok_or_else(|| wasmtime::Error::msg("the descriptor guard is not attached"))
    }

    fn attach(
        &self,
        linker: &Linker<JobState>,
        store: &mut Store<JobState>,
    ) -> wasmtime::Result<()> {
        let mut get = |name: &str| match linker.get(&mut *store, GUARDED, name)? {
            Extern::Func(f) => Ok(f),
            _ => Err(wasmtime::Error::msg(format!(
                "{GUARDED}::{name} is not a function"
            ))),
        };
        let (open, close, renumber) = (get("path_open")?, get("fd_close")?, get("fd_renumber")?);
        let fns = GuardedFns {
            path_open: open.typed(&*store)?,
            fd_close: close.typed(&*store)?,
            fd_renumber: renumber.typed(&*store)?,
        };
        // A session attaches once; a second attach would find the first in place.
        let _ = self.inner.set(fns);
        Ok(())
    }
}

/// The executor's linker with `path_open`, `fd_close` and `fd_renumber` wrapped by `guard`
/// (the sandbox's definitions stay reachable under [`GUARDED`], which jobs cannot import).
fn guarded_linker(
    base: &Linker<JobState>,
    guard: &Arc<DescriptorGuard>,
) -> wasmtime::Result<Linker<JobState>> {
    let mut linker = base.clone();
    for name in ["path_open", "fd_close", "fd_renumber"] {
        linker.alias(WASI, name, GUARDED, name)?;
    }
    linker.allow_shadowing(true);
    let g = Arc::clone(guard);
    linker.func_wrap(
        WASI,
        "path_open",
        move |mut caller: Caller<'_, JobState>,
              fd: i32,
              dirflags: i32,
              path: i32,
              path_len: i32,
              oflags: i32,
              base: i64,
              inheriting: i64,
              fdflags: i32,
              opened: i32|
              -> wasmtime::Result<i32> {
            let f = g.fns()?.path_open.clone();
            let args = (
                fd, dirflags, path, path_len, oflags, base, inheriting, fdflags, opened,
            );
            let errno = f.call(&mut caller, args)?;
            g.note("path_open", errno);
            Ok(errno)
        },
    )?;
    let g = Arc::clone(guard);
    linker.func_wrap(
        WASI,
        "fd_close",
        move |mut caller: Caller<'_, JobState>, fd: i32| -> wasmtime::Result<i32> {
            let f = g.fns()?.fd_close.clone();
            let errno = f.call(&mut caller, fd)?;
            // Closing stdio is a no-op in the sandbox; it changes nothing.
            if fd > 2 {
                g.note("fd_close", errno);
            }
            Ok(errno)
        },
    )?;
    let g = Arc::clone(guard);
    linker.func_wrap(
        WASI,
        "fd_renumber",
        move |mut caller: Caller<'_, JobState>, from: i32, to: i32| -> wasmtime::Result<i32> {
            let f = g.fns()?.fd_renumber.clone();
            let errno = f.call(&mut caller, (from, to))?;
            g.note("fd_renumber", errno);
            Ok(errno)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// A seeded random stream that counts the bytes drawn, so its position is part of the
/// hashed state and can be restored.
struct CountedRandom {
    inner: SeededRandom,
    drawn: Arc<AtomicU64>,
    /// Bytes to skip before the next draw: a restored position not yet caught up with.
    position: u64,
}

impl CountedRandom {
    fn new(job_id: &Hash, stream: &str, drawn: &Arc<AtomicU64>) -> Self {
        CountedRandom {
            inner: SeededRandom::new(job_id, stream),
            drawn: Arc::clone(drawn),
            position: 0,
        }
    }

    /// Moves the stream to the shared counter's position (set by a restore), then counts
    /// `n` more bytes.
    fn advance(&mut self, n: usize) {
        let target = self.drawn.load(Ordering::Relaxed);
        let mut skip = [0u8; 4096];
        while self.position < target {
            let chunk = (target - self.position).min(skip.len() as u64) as usize;
            // SeededRandom never fails.
            let _ = self.inner.try_fill_bytes(&mut skip[..chunk]);
            self.position += chunk as u64;
        }
        self.position += n as u64;
        self.drawn.store(self.position, Ordering::Relaxed);
    }
}

impl TryRng for CountedRandom {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.advance(0);
        let v = self.inner.try_next_u32()?;
        self.advance(4);
        Ok(v)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.advance(0);
        let v = self.inner.try_next_u64()?;
        self.advance(8);
        Ok(v)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.advance(0);
        self.inner.try_fill_bytes(dst)?;
        self.advance(dst.len());
        Ok(())
    }
}

/// Captured stdout or stderr with the same cap as the sandbox's pipe (the first `cap` bytes
/// kept, the rest counted), readable between steps and restorable.
#[derive(Clone)]
struct TracedPipe {
    state: Arc<Mutex<PipeState>>,
}

struct PipeState {
    kept: Vec<u8>,
    cap: usize,
    total: u64,
    /// blake3 of `kept`, kept up to date so hashing a step costs only what it wrote.
    hasher: agora_core::hash::Hasher,
}

impl TracedPipe {
    fn new(cap: u64) -> Self {
        TracedPipe {
            state: Arc::new(Mutex::new(PipeState {
                kept: Vec::new(),
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                total: 0,
                hasher: agora_core::hash::Hasher::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn accept(&self, bytes: &[u8]) {
        let mut state = self.lock();
        state.total = state.total.saturating_add(bytes.len() as u64);
        let take = state.cap.saturating_sub(state.kept.len()).min(bytes.len());
        state.kept.extend_from_slice(&bytes[..take]);
        state.hasher.update(&bytes[..take]);
    }

    /// (total written, blake3 of what is kept).
    fn digest(&self) -> (u64, Hash) {
        let state = self.lock();
        (state.total, state.hasher.finalize())
    }

    fn contents(&self) -> (Vec<u8>, u64) {
        let state = self.lock();
        (state.kept.clone(), state.total)
    }

    fn restore(&self, kept: &[u8], total: u64) -> Result<(), String> {
        let mut state = self.lock();
        let consistent = kept.len() <= state.cap
            && total >= kept.len() as u64
            && (total == kept.len() as u64 || kept.len() == state.cap);
        if !consistent {
            return Err(format!(
                "a capture of {} kept bytes out of {total} does not fit a cap of {} bytes",
                kept.len(),
                state.cap
            ));
        }
        state.kept = kept.to_vec();
        state.total = total;
        state.hasher = agora_core::hash::Hasher::new();
        state.hasher.update(kept);
        Ok(())
    }
}

impl IsTerminal for TracedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TracedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for TracedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TracedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for TracedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_state_hash_covers_every_field() {
        let base = WasiState {
            clock_ns: 1,
            secure_random_drawn: 2,
            insecure_random_drawn: 3,
            stdout: b"out".to_vec(),
            stdout_total: 3,
            stderr: Vec::new(),
            stderr_total: 0,
            output_written: 4,
            output_created: 1,
            exit_code: None,
            outputs: vec![OutputEntry::File {
                path: "a".into(),
                data: b"x".to_vec(),
            }],
        };
        let h = base.hash();
        let variants = [
            WasiState {
                clock_ns: 2,
                ..base.clone()
            },
            WasiState {
                secure_random_drawn: 3,
                ..base.clone()
            },
            WasiState {
                insecure_random_drawn: 4,
                ..base.clone()
            },
            WasiState {
                stdout: b"ouT".to_vec(),
                ..base.clone()
            },
            WasiState {
                stdout_total: 4,
                ..base.clone()
            },
            WasiState {
                output_written: 5,
                ..base.clone()
            },
            WasiState {
                exit_code: Some(0),
                ..base.clone()
            },
            WasiState {
                outputs: Vec::new(),
                ..base.clone()
            },
            WasiState {
                outputs: vec![OutputEntry::Dir { path: "a".into() }],
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.hash(), h, "{v:?}");
        }
    }

    #[test]
    fn global_bits_round_trip() {
        for (ty, val) in [
            (ValType::I32, Val::I32(-5)),
            (ValType::I64, Val::I64(i64::MIN)),
            (ValType::F32, Val::F32(0x7fc0_0000)),
            (ValType::F64, Val::F64(1)),
        ] {
            let mut bytes = Vec::new();
            push_global(&mut bytes, &val);
            let mut again = Vec::new();
            push_global(&mut again, &bytes_to_val(&ty, &bytes).unwrap());
            assert_eq!(again, bytes);
        }
        assert!(bytes_to_val(&ValType::I32, &(1u64 << 40).to_le_bytes()).is_none());
        assert!(bytes_to_val(&ValType::I64, &[0; 4]).is_none());
    }
}
