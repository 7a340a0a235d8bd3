//! [`WasmExecutor`]: runs WASI preview-1 command modules under the deterministic profile.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_core::{Fuel, Hash};
use wasmtime::{Engine, Linker, Module, Store, Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use crate::Executor;
use crate::cache::{Lookup, ModuleCache};
use crate::cancel::Interruption;
use crate::error::ExecError;
use crate::job::{JobSpec, Limits, WasmModule, Workload};
use crate::outcome::{Outcome, PartialRun, result_digest};
use crate::profile::{MAX_WASM_STACK, Profile};
use crate::sandbox::dirs::{JobDirs, Reaper};
use crate::sandbox::hostcalls;
use crate::sandbox::{self, Captures, JobState};
use crate::ticker::EpochTicker;

/// How an executor is set up.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Where compiled modules are cached on disk; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Where per-job temporary directories are made; `None` uses the system temp dir.
    pub work_dir: Option<PathBuf>,
    /// Engine settings; [`Profile::DETERMINISTIC`] for real jobs.
    pub profile: Profile,
    /// Limits given to jobs made with [`WasmExecutor::job`].
    pub default_limits: Limits,
    /// Most compiled modules kept in memory.
    pub memory_cache_entries: usize,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            cache_dir: None,
            work_dir: None,
            profile: Profile::DETERMINISTIC,
            default_limits: Limits::default(),
            memory_cache_entries: 64,
        }
    }
}

/// Runs WASM jobs. One per process is enough: it is `Send + Sync`, shares compiled code
/// between threads, and gives every job a fresh store and fresh directories.
pub struct WasmExecutor {
    // Crate-visible so the checkpoint driver (`crate::checkpoint`) runs jobs on the same
    // engine, linker, trampoline, module cache and reaper as ordinary runs.
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<JobState>>,
    pub(crate) trampoline: Module,
    pub(crate) cache: ModuleCache,
    pub(crate) config: ExecConfig,
    pub(crate) reaper: Reaper,
    // Declared last so it stops after the rest is dropped; it only holds an engine clone.
    _ticker: EpochTicker,
}

impl WasmExecutor {
    /// Creates the engine, the linker, the module cache and the epoch ticker.
    pub fn new(config: ExecConfig) -> Result<Self, ExecError> {
        let engine = config.profile.engine()?;
        let linker = sandbox::linker(&engine)?;
        let cache = ModuleCache::new(
            &engine,
            &config.profile,
            &linker,
            config.cache_dir.clone(),
            config.memory_cache_entries,
        )?;
        let trampoline = hostcalls::trampoline(&engine).map_err(|err| ExecError::Engine {
            context: "compiling the WASI trampoline",
            message: format!("{err:#}"),
        })?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(WasmExecutor {
            engine,
            linker: Arc::new(linker),
            trampoline,
            cache,
            config,
            reaper: Reaper::start()?,
            _ticker: ticker,
        })
    }

    /// The executor's configuration.
    pub fn config(&self) -> &ExecConfig {
        &self.config
    }

    /// A job running `module` with this executor's default limits.
    pub fn job(&self, job_id: Hash, module: WasmModule) -> JobSpec {
        let mut job = JobSpec::new(job_id, module);
        job.limits = self.config.default_limits;
        job
    }

    /// Compiles (or loads) and validates `module` without running it, so that a later job
    /// starts from the cache. Returns the time spent.
    pub fn prepare(&self, module: &WasmModule) -> Result<Duration, ExecError> {
        Ok(self
            .cache
            .get(&self.engine, &self.linker, module)?
            .load_time)
    }

    /// Compiles `module` from scratch, bypassing every cache; for measuring compile time.
    pub fn compile_uncached(&self, module: &WasmModule) -> Result<Duration, ExecError> {
        let started = Instant::now();
        ModuleCache::compile_uncached(&self.engine, &self.config.profile, module)?;
        Ok(started.elapsed())
    }

    fn run_wasm(&self, job: &JobSpec, module: &WasmModule) -> Result<Outcome, ExecError> {
        job.validate()?;
        let lookup = self.cache.get(&self.engine, &self.linker, module)?;
        // Compiling may take a while; a job cancelled meanwhile is not started at all.
        if job.cancel.is_cancelled() {
            return Err(ExecError::Cancelled { fuel_used: Fuel(0) });
        }
        let dirs = JobDirs::for_job(self.config.work_dir.as_deref(), job)?;
        let result = self.execute(job, module, &lookup, &dirs);
        // Removing directories is slow on some filesystems; do it off the job's path.
        self.reaper.dispose(dirs);
        result
    }

    fn execute(
        &self,
        job: &JobSpec,
        module: &WasmModule,
        lookup: &Lookup,
        dirs: &JobDirs,
    ) -> Result<Outcome, ExecError> {
        let metered = self.config.profile.fuel;
        let (mut store, captures) = sandbox::store(&self.engine, job, dirs, metered)?;
        let started = Instant::now();
        let result = start(
            &lookup.prepared.pre,
            &self.trampoline,
            &self.linker,
            &mut store,
        )?;
        let wall_time = started.elapsed();
        let fuel_used = if metered {
            fuel_used(&store, job.limits.fuel)
        } else {
            Fuel(0)
        };
        let exit_code = exit_code(result, &store, &job.limits, fuel_used);
        let peak_memory_bytes = store.data().limiter.peak_memory();
        // The store holds the preopened directory handles: close them before reading.
        drop(store);
        let ended = exit_code.and_then(|code| Ok((code, dirs.collect_outputs(&job.limits)?)));
        let Captures { stdout, stderr } = captures;
        let (stdout, stderr) = (stdout.finish("stdout"), stderr.finish("stderr"));
        // A failed run keeps what it wrote: often the only clue to why it failed.
        let (exit_code, outputs) = match ended {
            Ok(ended) => ended,
            Err(err) => {
                return Err(err.with_partial(PartialRun {
                    stdout,
                    stderr,
                    fuel_used,
                }));
            }
        };
        let digest = result_digest(exit_code, &stdout.data, &stderr.data, &outputs);
        Ok(Outcome {
            job_id: job.job_id,
            module_hash: module.hash(),
            exit_code,
            stdout,
            stderr,
            outputs,
            fuel_used,
            compute_units: fuel_used.as_compute_units_f64(),
            wall_time,
            peak_memory_bytes,
            module_source: lookup.source,
            digest,
        })
    }
}

impl Executor for WasmExecutor {
    fn kind(&self) -> &'static str {
        "wasm"
    }

    fn run(&self, job: &JobSpec) -> Result<Outcome, ExecError> {
        match &job.workload {
            Workload::Wasm(module) => self.run_wasm(job, module),
        }
    }
}

/// Instantiates the module, attaches its WASI trampoline and calls `_start`. The outer
/// error means the job never ran: the module cannot start within its limits
/// ([`ExecError::StartRefused`]) or the trampoline failed to attach (the host's fault); the
/// inner result is how the job ended.
fn start(
    pre: &wasmtime::InstancePre<JobState>,
    trampoline: &Module,
    linker: &Linker<JobState>,
    store: &mut Store<JobState>,
) -> Result<wasmtime::Result<()>, ExecError> {
    let instance = match pre.instantiate(&mut *store) {
        Ok(instance) => instance,
        Err(err) => {
            return match start_refusal(&err, store.data()) {
                Some(refusal) => Err(refusal),
                // The module's own start function ran and failed: a run-time failure.
                None => Ok(Err(err)),
            };
        }
    };
    hostcalls::attach(trampoline, linker, store, &instance).map_err(|err| ExecError::Engine {
        context: "attaching the WASI trampoline",
        message: format!("{err:#}"),
    })?;
    // `_start` was checked when the module was prepared.
    Ok(instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .and_then(|entry| entry.call(&mut *store, ())))
}

/// Classifies an instantiation failure caused by the job's limits or the module's own
/// layout as a refusal naming the limit; `None` when the module's start function ran and
/// failed (that is a trap, out of fuel, ... like any other run-time failure).
fn start_refusal(err: &wasmtime::Error, state: &JobState) -> Option<ExecError> {
    if let Some(breach) = state.limiter.breach() {
        return Some(match breach {
            sandbox::limiter::LimitBreach::Memory { requested, limit } => ExecError::StartRefused {
                limit: "memory_bytes",
                what: format!(
                    "the module's initial memory is {requested} bytes but the job's memory limit is {limit} bytes"
                ),
                advice: "raise the memory limit, or link the module with a smaller initial memory",
            },
            sandbox::limiter::LimitBreach::Table { requested, limit } => ExecError::StartRefused {
                limit: "table_elements",
                what: format!(
                    "a table of the module starts with {requested} elements but the limit is {limit} elements per table"
                ),
                advice: "build the module with a smaller function table",
            },
        });
    }
    // A trap with guest frames came from the module's start function, which did run.
    let ran = err
        .downcast_ref::<WasmBacktrace>()
        .is_some_and(|bt| !bt.frames().is_empty());
    match err.downcast_ref::<Trap>() {
        Some(Trap::MemoryOutOfBounds) if !ran => Some(ExecError::StartRefused {
            limit: "data_segment",
            what: format!(
                "a data segment lies outside the module's initial memory ({})",
                err.root_cause()
            ),
            advice: "the module is broken: rebuild it",
        }),
        Some(Trap::TableOutOfBounds) if !ran => Some(ExecError::StartRefused {
            limit: "element_segment",
            what: format!(
                "an element segment lies outside its table ({})",
                err.root_cause()
            ),
            advice: "the module is broken: rebuild it",
        }),
        Some(_) => None,
        None => count_refusal(err),
    }
}

/// The store refused to create a memory or table past the per-job count (wasmtime says
/// so only in words: "memory count too high", "table count too high").
fn count_refusal(err: &wasmtime::Error) -> Option<ExecError> {
    let message = format!("{err:#}");
    let (limit, most, advice) = if message.contains("memory count") {
        (
            "memories",
            sandbox::limiter::MAX_MEMORIES,
            "build the module with a single linear memory (no multi-memory)",
        )
    } else if message.contains("table count") {
        (
            "tables",
            sandbox::limiter::MAX_TABLES,
            "build the module with fewer tables",
        )
    } else {
        return None;
    };
    Some(ExecError::StartRefused {
        limit,
        what: format!("the module defines more {limit} than the {most} a job may have ({message})"),
        advice,
    })
}

pub(crate) fn fuel_used(store: &Store<JobState>, limit: Fuel) -> Fuel {
    // get_fuel only fails when fuel is off, which the caller has ruled out.
    let remaining = store.get_fuel().unwrap_or(limit.0);
    Fuel(limit.0.saturating_sub(remaining))
}

/// Turns how `_start` ended into an exit code, or the typed error it deserves. Limits the
/// host recorded come first: their traps are only the means of stopping the job.
pub(crate) fn exit_code(
    result: wasmtime::Result<()>,
    store: &Store<JobState>,
    limits: &Limits,
    fuel_used: Fuel,
) -> Result<i32, ExecError> {
    let Err(err) = result else { return Ok(0) };
    let state = store.data();
    // The store's own interruptions first: their trap is only the means of stopping.
    match state.interrupt.fired() {
        Some(Interruption::Cancelled) => return Err(ExecError::Cancelled { fuel_used }),
        Some(Interruption::TimedOut) => {
            return Err(ExecError::Timeout {
                limit: limits.wall_timeout,
                fuel_used,
                partial: None,
            });
        }
        None => {}
    }
    if let Some(breach) = state.limiter.breach() {
        return Err(match breach {
            sandbox::limiter::LimitBreach::Memory { requested, limit } => ExecError::MemoryLimit {
                what: "memory",
                requested,
                limit,
                partial: None,
            },
            sandbox::limiter::LimitBreach::Table { requested, limit } => ExecError::MemoryLimit {
                what: "table",
                requested,
                limit,
                partial: None,
            },
        });
    }
    if state.output.disk_breached {
        return Err(ExecError::DiskLimit {
            written: state.output.disk_used,
            limit: state.output.disk_limit,
            partial: None,
        });
    }
    if state.output.breached {
        return Err(ExecError::OutputLimit {
            written: state.output.written,
            files: state.output.created,
            limit: limits.output_bytes,
            max_files: limits.output_files,
            partial: None,
        });
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Ok(exit.0);
    }
    let detail = err.downcast_ref::<WasmBacktrace>().map(|bt| bt.to_string());
    // A wasm exception no handler caught unwound out of `_start`: the job's own fault.
    if err.is::<wasmtime::ThrownException>() {
        return Err(ExecError::Trap {
            code: "uncaught wasm exception".into(),
            detail,
            fuel_used,
            partial: None,
        });
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Err(ExecError::OutOfFuel {
            fuel_used,
            partial: None,
        }),
        Some(Trap::Interrupt) => Err(ExecError::Timeout {
            limit: limits.wall_timeout,
            fuel_used,
            partial: None,
        }),
        Some(Trap::StackOverflow) => Err(ExecError::StackOverflow {
            max_stack: MAX_WASM_STACK,
            partial: None,
        }),
        Some(trap) => Err(ExecError::Trap {
            code: trap.to_string(),
            detail,
            fuel_used,
            partial: None,
        }),
        // A host function refused the call (e.g. an oversized random request): the job's fault.
        None => Err(ExecError::Trap {
            code: "host function error".into(),
            detail: Some(format!("{err:#}")),
            fuel_used,
            partial: None,
        }),
    }
}
