//! The sandbox a job runs in: WASI preview-1 with nothing ambient.
//!
//! Per job, a fresh [`Store`] holds a fresh [`JobState`]: its own WASI context (arguments,
//! environment, a writable scratch root preopened as `/` with `/input` read-only and
//! `/output` read-write preopened over it, stdin from the job's bytes, captured stdout and
//! stderr, virtual clocks, seeded random, no sockets), its resource limiter and its output
//! and disk budgets.
//!
//! wasi-libc resolves a path by the longest preopen that prefixes it, and relative paths
//! against its current directory, `/`; so `/input/x` goes to `/input`, while `x`, `/tmp/x`
//! and `/etc/x` all land in the scratch root.
//! Nothing survives from one job to the next except compiled code.
//!
//! - [`virtual_env`]: virtual clocks and the seeded random source.
//! - [`stdio`]: capped stdout/stderr capture.
//! - [`dirs`]: the job's temporary `/input`, `/output` and scratch root directories.
//! - [`limiter`]: memory and table limits, peak memory.
//! - [`hostcalls`]: WASI functions replaced or wrapped for determinism and output limits.

pub mod dirs;
pub mod hostcalls;
pub mod limiter;
pub mod stdio;
pub mod virtual_env;

use wasmtime::{Engine, Linker, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::cancel::Interrupt;
use crate::error::ExecError;
use crate::job::JobSpec;
use dirs::JobDirs;
use hostcalls::{Originals, OutputBudget};
use limiter::JobLimiter;
use stdio::CappedPipe;
pub use virtual_env::VirtualTime;

/// The program name the job sees as `argv[0]`.
const PROGRAM_NAME: &str = "job.wasm";
/// Largest single `random_get` request (the job's random bytes are free to the host, so
/// bound what one call can make it produce).
const MAX_RANDOM_REQUEST: u64 = 1 << 20;
/// The descriptor of the scratch root: wasmtime-wasi numbers preopens from 3 in the order
/// they are added, and [`wasi_ctx`] adds `/input` (3), `/output` (4), then `/` (5), so
/// the first two keep the numbers they had before the scratch root existed.
const SCRATCH_FD: u32 = 5;

/// Everything a job's store holds.
pub struct JobState {
    /// The WASI context.
    pub wasi: WasiP1Ctx,
    /// Memory and table limits.
    pub limiter: JobLimiter,
    /// Output limits.
    pub output: OutputBudget,
    /// Virtual time, shared with the WASI clocks.
    pub time: VirtualTime,
    /// wasmtime-wasi's originals of the wrapped host functions.
    pub originals: Option<Originals>,
    /// The cancel switch and wall-clock deadline, checked every epoch tick.
    pub interrupt: Interrupt,
}

impl JobState {
    /// A state with no preopens, no limits in use and no job: for listing the linker.
    pub fn inert() -> Self {
        JobState {
            wasi: WasiCtxBuilder::new().build_p1(),
            limiter: JobLimiter::new(0, 0),
            output: OutputBudget::default(),
            time: VirtualTime::new(&agora_core::Hash::ZERO),
            originals: None,
            interrupt: Interrupt::new(crate::CancelToken::new(), std::time::Duration::MAX),
        }
    }
}

/// Handles to what the job wrote, read after it ends.
pub struct Captures {
    /// Standard output.
    pub stdout: CappedPipe,
    /// Standard error.
    pub stderr: CappedPipe,
}

/// Builds the linker every job of an executor shares: WASI preview-1 (synchronous) plus
/// the replacements in [`hostcalls`].
pub fn linker(engine: &Engine) -> Result<Linker<JobState>, ExecError> {
    let mut linker = Linker::new(engine);
    let engine_err = |err: wasmtime::Error| ExecError::Engine {
        context: "defining WASI host functions",
        message: format!("{err:#}"),
    };
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut JobState| &mut state.wasi)
        .map_err(engine_err)?;
    hostcalls::install(&mut linker).map_err(engine_err)?;
    Ok(linker)
}

/// Creates the job's store: WASI context, limits, fuel (when the engine is `metered`) and
/// the epoch deadline: the store looks at the job's cancel token and wall-clock timeout
/// at every epoch tick ([`Interrupt::check`]).
pub fn store(
    engine: &Engine,
    job: &JobSpec,
    dirs: &JobDirs,
    metered: bool,
) -> Result<(Store<JobState>, Captures), ExecError> {
    let time = VirtualTime::new(&job.job_id);
    let captures = Captures {
        stdout: CappedPipe::new(job.limits.stdout_bytes),
        stderr: CappedPipe::new(job.limits.stderr_bytes),
    };
    let wasi = wasi_ctx(job, dirs, &time, &captures)?;
    let state = JobState {
        wasi,
        limiter: JobLimiter::new(job.limits.memory_bytes, job.limits.table_elements),
        output: OutputBudget {
            limit_bytes: job.limits.output_bytes,
            limit_files: job.limits.output_files,
            ..OutputBudget::default()
        }
        .with_scratch(SCRATCH_FD, dirs.seeded_bytes(), job.limits.disk_bytes),
        time,
        originals: None,
        interrupt: Interrupt::new(job.cancel.clone(), job.limits.wall_timeout),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    let engine_err = |context, err: wasmtime::Error| ExecError::Engine {
        context,
        message: format!("{err:#}"),
    };
    if metered {
        store
            .set_fuel(job.limits.fuel.0)
            .map_err(|e| engine_err("setting fuel", e))?;
    }
    // One tick at a time, so a cancel is seen within a tick; the check is a flag and a
    // clock read every 10 ms, and it never changes a result.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().interrupt.check()));
    Ok((store, captures))
}

fn wasi_ctx(
    job: &JobSpec,
    dirs: &JobDirs,
    time: &VirtualTime,
    captures: &Captures,
) -> Result<WasiP1Ctx, ExecError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .arg(PROGRAM_NAME)
        .args(&job.args)
        .envs(&job.env)
        .stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(
            job.stdin
                .as_deref()
                .map(bytes::Bytes::copy_from_slice)
                .unwrap_or_default(),
        ))
        .stdout(captures.stdout.clone())
        .stderr(captures.stderr.clone())
        .wall_clock(time.wall_clock())
        .monotonic_clock(time.monotonic_clock())
        .secure_random(virtual_env::SeededRandom::new(&job.job_id, "secure"))
        .insecure_random(virtual_env::SeededRandom::new(&job.job_id, "insecure"))
        .insecure_random_seed(virtual_env::SeededRandom::seed_u128(&job.job_id))
        .max_random_size(MAX_RANDOM_REQUEST)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
        .preopened_dir(dirs.input(), "/input", FsPerms::ReadOnly)
        .map_err(|e| preopen_err("/input", e))?;
    builder
        .preopened_dir(dirs.output(), "/output", FsPerms::ReadWrite)
        .map_err(|e| preopen_err("/output", e))?;
    // Last, so it is descriptor [`SCRATCH_FD`].
    builder
        .preopened_dir(dirs.scratch(), "/", FsPerms::ReadWrite)
        .map_err(|e| preopen_err("/", e))?;
    Ok(builder.build_p1())
}

fn preopen_err(guest: &str, err: wasmtime::Error) -> ExecError {
    ExecError::host(
        format!("preopening {guest}"),
        std::io::Error::other(format!("{err:#}")),
    )
}
