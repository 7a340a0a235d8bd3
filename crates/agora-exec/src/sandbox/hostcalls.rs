//! Host functions that replace or wrap wasmtime-wasi's WASI preview-1 ones.
//!
//! - `poll_oneoff` is replaced: wasmtime-wasi sleeps in real time, which would leak the
//!   host's timing into the job and block the host thread beyond the epoch safety net.
//!   Here clock subscriptions fire at once and move virtual time forward instead.
//! - `fd_close` and `fd_renumber` keep descriptors 0 to 2 as stdio for the whole run, so
//!   that writes to any other descriptor are file writes.
//! - `fd_write` / `fd_pwrite` to files, and calls that create entries (`path_open` with
//!   `O_CREAT`, `path_create_directory`, `path_symlink`, `path_link`) are wrapped: they are
//!   counted against the job's output limits *before* the original runs, so a job cannot
//!   fill the provider's disk. Descriptors opened under the scratch root `/` are tracked
//!   (through `path_open`, `fd_close` and `fd_renumber`), and their writes and creations
//!   count against the job's disk limit instead. The originals stay reachable under [`ORIGINALS`], a module
//!   name jobs may not import (imports are checked before instantiation), and are called
//!   through a per-job trampoline instance (see [`attach`]); the few fuel units the
//!   trampoline burns are refunded, so a job's fuel is exactly wasmtime's count for its own
//!   code.

use wasmtime::{Caller, Engine, Extern, Instance, Linker, Memory, Module, Store, TypedFunc};

use super::JobState;

/// The linker module under which wasmtime-wasi's originals of wrapped functions live.
pub const ORIGINALS: &str = "agora:wasi-original";
/// The WASI preview-1 module name.
pub const WASI: &str = "wasi_snapshot_preview1";

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;
/// `O_CREAT` in preview-1 `oflags`.
const OFLAGS_CREAT: i32 = 1;
/// Each creation call may be repeated on existing entries (reopening a file for writing),
/// so the ceiling on creation calls is this multiple of the file limit.
const CREATE_CALLS_PER_FILE: u64 = 16;

type FdWrite = TypedFunc<(i32, i32, i32, i32), i32>;
type FdPwrite = TypedFunc<(i32, i32, i32, i64, i32), i32>;
type PathOpen = TypedFunc<(i32, i32, i32, i32, i32, i64, i64, i32, i32), i32>;
type ThreeArgs = TypedFunc<(i32, i32, i32), i32>;
type FiveArgs = TypedFunc<(i32, i32, i32, i32, i32), i32>;
type SevenArgs = TypedFunc<(i32, i32, i32, i32, i32, i32, i32), i32>;

/// wasmtime-wasi's implementations of the wrapped functions, resolved in each job's store.
pub struct Originals {
    fd_write: FdWrite,
    fd_pwrite: FdPwrite,
    path_open: PathOpen,
    path_create_directory: ThreeArgs,
    path_symlink: FiveArgs,
    path_link: SevenArgs,
    fd_close: TypedFunc<i32, i32>,
    fd_renumber: TypedFunc<(i32, i32), i32>,
}

/// What one created entry (file, directory, link) costs against the disk limit: one block,
/// so that a job cannot fill a disk with empty files.
pub const ENTRY_DISK_BYTES: u64 = 4096;

/// Bytes and entries the job has written to `/output` and to its scratch root so far, and
/// their limits.
#[derive(Debug, Default)]
pub struct OutputBudget {
    /// Bytes written to files (not stdout/stderr).
    pub written: u64,
    /// Creation calls made.
    pub created: u64,
    /// Byte limit.
    pub limit_bytes: u64,
    /// File limit.
    pub limit_files: u64,
    /// Set when a limit was hit, so the trap can be classified.
    pub breached: bool,
    /// Bytes counted against the disk limit: the seeded tree, writes under the scratch
    /// root and [`ENTRY_DISK_BYTES`] per created entry there.
    pub disk_used: u64,
    /// The disk limit in bytes.
    pub disk_limit: u64,
    /// Set when the disk limit was hit.
    pub disk_breached: bool,
    /// Descriptors that refer to the scratch root or to something opened under it.
    pub(crate) scratch_fds: std::collections::BTreeSet<u32>,
}

/// The trap raised when a write or creation would exceed the output limits.
#[derive(Debug)]
pub struct OutputBreach;

impl std::fmt::Display for OutputBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the job exceeded its /output limits")
    }
}

impl std::error::Error for OutputBreach {}

/// The trap raised when a write or creation would exceed the disk limit.
#[derive(Debug)]
pub struct DiskBreach;

impl std::fmt::Display for DiskBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the job exceeded its disk limit")
    }
}

impl std::error::Error for DiskBreach {}

impl OutputBudget {
    /// Tracks `root_fd` as the scratch root, with `seeded` bytes already used of `limit`.
    pub fn with_scratch(mut self, root_fd: u32, seeded: u64, limit: u64) -> Self {
        self.scratch_fds.insert(root_fd);
        self.disk_used = seeded;
        self.disk_limit = limit;
        self
    }

    fn is_scratch(&self, fd: i32) -> bool {
        u32::try_from(fd).is_ok_and(|fd| self.scratch_fds.contains(&fd))
    }

    fn charge_disk(&mut self, bytes: u64) -> wasmtime::Result<()> {
        self.disk_used = self.disk_used.saturating_add(bytes);
        if self.disk_used > self.disk_limit {
            self.disk_breached = true;
            return Err(wasmtime::Error::new(DiskBreach));
        }
        Ok(())
    }

    /// Charges a write of `bytes` to `fd`: the disk limit for scratch descriptors, the
    /// output limit for the others.
    fn charge_write(&mut self, fd: i32, bytes: u64) -> wasmtime::Result<()> {
        if self.is_scratch(fd) {
            self.charge_disk(bytes)
        } else {
            self.charge_bytes(bytes)
        }
    }

    /// Charges the creation of an entry relative to directory `dir_fd`.
    fn charge_create(&mut self, dir_fd: i32) -> wasmtime::Result<()> {
        if self.is_scratch(dir_fd) {
            self.charge_disk(ENTRY_DISK_BYTES)
        } else {
            self.charge_entry()
        }
    }

    /// Records that `opened` now refers to something opened relative to `dir_fd`.
    fn opened(&mut self, dir_fd: i32, opened: u32) {
        if self.is_scratch(dir_fd) {
            self.scratch_fds.insert(opened);
        } else {
            self.scratch_fds.remove(&opened);
        }
    }

    fn closed(&mut self, fd: i32) {
        if let Ok(fd) = u32::try_from(fd) {
            self.scratch_fds.remove(&fd);
        }
    }

    fn renumbered(&mut self, from: i32, to: i32) {
        let scratch = self.is_scratch(from);
        self.closed(from);
        if let Ok(to) = u32::try_from(to) {
            if scratch {
                self.scratch_fds.insert(to);
            } else {
                self.scratch_fds.remove(&to);
            }
        }
    }

    fn charge_bytes(&mut self, bytes: u64) -> wasmtime::Result<()> {
        self.written = self.written.saturating_add(bytes);
        if self.written > self.limit_bytes {
            self.breached = true;
            return Err(wasmtime::Error::new(OutputBreach));
        }
        Ok(())
    }

    fn charge_entry(&mut self) -> wasmtime::Result<()> {
        self.created += 1;
        if self.created
            > self
                .limit_files
                .max(1)
                .saturating_mul(CREATE_CALLS_PER_FILE)
        {
            self.breached = true;
            return Err(wasmtime::Error::new(OutputBreach));
        }
        Ok(())
    }
}

/// Installs the replacements into a linker that already holds wasmtime-wasi's functions.
pub fn install(linker: &mut Linker<JobState>) -> wasmtime::Result<()> {
    for name in WRAPPED {
        linker.alias(WASI, name, ORIGINALS, name)?;
    }
    linker.allow_shadowing(true);
    linker.func_wrap(WASI, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(WASI, "fd_write", fd_write)?;
    linker.func_wrap(WASI, "fd_pwrite", fd_pwrite)?;
    linker.func_wrap(WASI, "path_open", path_open)?;
    linker.func_wrap(WASI, "path_create_directory", path_create_directory)?;
    linker.func_wrap(WASI, "path_symlink", path_symlink)?;
    linker.func_wrap(WASI, "path_link", path_link)?;
    linker.func_wrap(WASI, "fd_close", fd_close)?;
    linker.func_wrap(WASI, "fd_renumber", fd_renumber)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The trampoline: a tiny module, instantiated per job after the job's own instance, that
/// re-exports the job's memory and forwards calls to wasmtime-wasi's originals. Host code
/// cannot call the originals directly, because they find guest memory through their
/// caller's `memory` export; called from the trampoline, that export is the job's memory.
const TRAMPOLINE: &str = r#"(module
  (import "job" "memory" (memory 0))
  (import "wasi" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (export "memory" (memory 0))
  (func (export "fd_close") (param i32) (result i32) (call $fd_close (local.get 0)))
  (func (export "fd_renumber") (param i32 i32) (result i32)
    (call $fd_renumber (local.get 0) (local.get 1)))
  (func (export "fd_write") (param i32 i32 i32 i32) (result i32)
    (call $fd_write (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "fd_pwrite") (param i32 i32 i32 i64 i32) (result i32)
    (call $fd_pwrite (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "path_open") (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)
    (call $path_open (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
      (local.get 5) (local.get 6) (local.get 7) (local.get 8)))
  (func (export "path_create_directory") (param i32 i32 i32) (result i32)
    (call $path_create_directory (local.get 0) (local.get 1) (local.get 2)))
  (func (export "path_symlink") (param i32 i32 i32 i32 i32) (result i32)
    (call $path_symlink (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
  (func (export "path_link") (param i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $path_link (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
      (local.get 5) (local.get 6)))
)"#;

/// The wrapped functions, in the trampoline's import order.
const WRAPPED: [&str; 8] = [
    "fd_write",
    "fd_pwrite",
    "path_open",
    "path_create_directory",
    "path_symlink",
    "path_link",
    "fd_close",
    "fd_renumber",
];

/// Compiles the trampoline for `engine` (once per executor).
pub fn trampoline(engine: &Engine) -> wasmtime::Result<Module> {
    Module::new(engine, TRAMPOLINE)
}

/// Instantiates the trampoline for the job `instance` and records its functions as the
/// originals the wrappers call. A job without a `memory` export cannot do I/O through
/// these functions anyway, so it gets none (its calls fail with `EFAULT`).
pub fn attach(
    trampoline: &Module,
    linker: &Linker<JobState>,
    store: &mut Store<JobState>,
    instance: &Instance,
) -> wasmtime::Result<()> {
    let Some(memory) = instance.get_memory(&mut *store, "memory") else {
        return Ok(());
    };
    let mut imports: Vec<Extern> = vec![memory.into()];
    for name in WRAPPED {
        imports.push(linker.get(&mut *store, ORIGINALS, name)?);
    }
    let helper = Instance::new(&mut *store, trampoline, &imports)?;
    let originals = Originals {
        fd_write: helper.get_typed_func(&mut *store, "fd_write")?,
        fd_pwrite: helper.get_typed_func(&mut *store, "fd_pwrite")?,
        path_open: helper.get_typed_func(&mut *store, "path_open")?,
        path_create_directory: helper.get_typed_func(&mut *store, "path_create_directory")?,
        path_symlink: helper.get_typed_func(&mut *store, "path_symlink")?,
        path_link: helper.get_typed_func(&mut *store, "path_link")?,
        fd_close: helper.get_typed_func(&mut *store, "fd_close")?,
        fd_renumber: helper.get_typed_func(&mut *store, "fd_renumber")?,
    };
    store.data_mut().originals = Some(originals);
    Ok(())
}

/// Calls an original through the trampoline, then puts back the fuel the trampoline's few
/// forwarding instructions burnt, so a job's fuel count is exactly what wasmtime's cost
/// table gives for the job's own code (host calls themselves cost no fuel).
fn forward<P: wasmtime::WasmParams>(
    caller: &mut Caller<'_, JobState>,
    original: &TypedFunc<P, i32>,
    args: P,
) -> wasmtime::Result<i32> {
    let fuel = caller.get_fuel().ok();
    let result = original.call(&mut *caller, args)?;
    if let Some(fuel) = fuel {
        caller.set_fuel(fuel)?;
    }
    Ok(result)
}

/// The originals, or an `EFAULT` answer when the job has no memory to do I/O with (or
/// calls these from a start function, before the trampoline exists).
fn originals<'a>(caller: &'a Caller<'_, JobState>) -> Result<&'a Originals, i32> {
    caller.data().originals.as_ref().ok_or(ERRNO_FAULT)
}

fn memory(caller: &mut Caller<'_, JobState>) -> Option<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Some(memory),
        _ => None,
    }
}

/// Reads `len` bytes at `ptr` of guest memory, or `None` when out of bounds.
fn read_guest(caller: &mut Caller<'_, JobState>, ptr: i32, len: usize) -> Option<Vec<u8>> {
    let memory = memory(caller)?;
    let start = ptr as u32 as usize;
    memory
        .data(&*caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

/// The length of the first non-empty iovec: wasmtime-wasi writes exactly that one per call.
fn first_iovec_len(caller: &mut Caller<'_, JobState>, iovs: i32, count: i32) -> Option<u64> {
    let count = usize::try_from(count).ok()?;
    let raw = read_guest(caller, iovs, count.checked_mul(8)?)?;
    let first = raw
        .chunks_exact(8)
        .map(|iov| u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]))
        .find(|len| *len > 0)
        .unwrap_or(0);
    Some(u64::from(first))
}

/// Stdio descriptors are capped by their pipes; every other descriptor is a file. This
/// holds because stdio can be neither closed nor renumbered (see [`fd_close`] and
/// [`fd_renumber`]), so descriptors 0 to 2 are never reused for files.
fn is_file_fd(fd: i32) -> bool {
    !is_stdio(fd)
}

fn is_stdio(fd: i32) -> bool {
    (0..=2).contains(&fd)
}

/// Closing stdio is a successful no-op, so its descriptor numbers never go to a file.
fn fd_close(mut caller: Caller<'_, JobState>, fd: i32) -> wasmtime::Result<i32> {
    if is_stdio(fd) {
        return Ok(ERRNO_SUCCESS);
    }
    let original = match originals(&caller) {
        Ok(originals) => originals.fd_close.clone(),
        Err(errno) => return Ok(errno),
    };
    let result = forward(&mut caller, &original, fd)?;
    if result == ERRNO_SUCCESS {
        caller.data_mut().output.closed(fd);
    }
    Ok(result)
}

/// Renumbering to or from stdio is refused, for the same reason.
fn fd_renumber(mut caller: Caller<'_, JobState>, from: i32, to: i32) -> wasmtime::Result<i32> {
    if is_stdio(from) || is_stdio(to) {
        return Ok(ERRNO_NOTSUP);
    }
    let original = match originals(&caller) {
        Ok(originals) => originals.fd_renumber.clone(),
        Err(errno) => return Ok(errno),
    };
    let result = forward(&mut caller, &original, (from, to))?;
    if result == ERRNO_SUCCESS {
        caller.data_mut().output.renumbered(from, to);
    }
    Ok(result)
}

fn fd_write(
    mut caller: Caller<'_, JobState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    if is_file_fd(fd) {
        let Some(bytes) = first_iovec_len(&mut caller, iovs, iovs_len) else {
            return Ok(ERRNO_FAULT);
        };
        caller.data_mut().output.charge_write(fd, bytes)?;
    }
    let original = match originals(&caller) {
        Ok(originals) => originals.fd_write.clone(),
        Err(errno) => return Ok(errno),
    };
    forward(&mut caller, &original, (fd, iovs, iovs_len, nwritten))
}

fn fd_pwrite(
    mut caller: Caller<'_, JobState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    offset: i64,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    if is_file_fd(fd) {
        let Some(bytes) = first_iovec_len(&mut caller, iovs, iovs_len) else {
            return Ok(ERRNO_FAULT);
        };
        caller.data_mut().output.charge_write(fd, bytes)?;
    }
    let original = match originals(&caller) {
        Ok(originals) => originals.fd_pwrite.clone(),
        Err(errno) => return Ok(errno),
    };
    forward(
        &mut caller,
        &original,
        (fd, iovs, iovs_len, offset, nwritten),
    )
}

#[allow(clippy::too_many_arguments, reason = "the WASI preview-1 signature")]
fn path_open(
    mut caller: Caller<'_, JobState>,
    fd: i32,
    dirflags: i32,
    path: i32,
    path_len: i32,
    oflags: i32,
    rights_base: i64,
    rights_inheriting: i64,
    fdflags: i32,
    opened: i32,
) -> wasmtime::Result<i32> {
    if oflags & OFLAGS_CREAT != 0 {
        caller.data_mut().output.charge_create(fd)?;
    }
    let original = match originals(&caller) {
        Ok(originals) => originals.path_open.clone(),
        Err(errno) => return Ok(errno),
    };
    let args = (
        fd,
        dirflags,
        path,
        path_len,
        oflags,
        rights_base,
        rights_inheriting,
        fdflags,
        opened,
    );
    let result = forward(&mut caller, &original, args)?;
    if result == ERRNO_SUCCESS {
        // wasmtime-wasi wrote the new descriptor at `opened`; it was in bounds to do so.
        if let Some(new_fd) = read_guest(&mut caller, opened, 4) {
            let new_fd = u32::from_le_bytes([new_fd[0], new_fd[1], new_fd[2], new_fd[3]]);
            caller.data_mut().output.opened(fd, new_fd);
        }
    }
    Ok(result)
}

fn path_create_directory(
    mut caller: Caller<'_, JobState>,
    fd: i32,
    path: i32,
    path_len: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().output.charge_create(fd)?;
    let original = match originals(&caller) {
        Ok(originals) => originals.path_create_directory.clone(),
        Err(errno) => return Ok(errno),
    };
    forward(&mut caller, &original, (fd, path, path_len))
}

fn path_symlink(
    mut caller: Caller<'_, JobState>,
    old: i32,
    old_len: i32,
    fd: i32,
    new: i32,
    new_len: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().output.charge_create(fd)?;
    let original = match originals(&caller) {
        Ok(originals) => originals.path_symlink.clone(),
        Err(errno) => return Ok(errno),
    };
    forward(&mut caller, &original, (old, old_len, fd, new, new_len))
}

#[allow(clippy::too_many_arguments, reason = "the WASI preview-1 signature")]
fn path_link(
    mut caller: Caller<'_, JobState>,
    old_fd: i32,
    old_flags: i32,
    old: i32,
    old_len: i32,
    new_fd: i32,
    new: i32,
    new_len: i32,
) -> wasmtime::Result<i32> {
    caller.data_mut().output.charge_create(new_fd)?;
    let original = match originals(&caller) {
        Ok(originals) => originals.path_link.clone(),
        Err(errno) => return Ok(errno),
    };
    forward(
        &mut caller,
        &original,
        (old_fd, old_flags, old, old_len, new_fd, new, new_len),
    )
}

/// Size of a preview-1 `subscription` and `event` record.
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
/// Most subscriptions accepted per call (wasi-libc uses one or two).
const MAX_SUBSCRIPTIONS: usize = 4096;

/// One parsed subscription.
enum Subscription {
    /// A clock that fires after `wait` nanoseconds of virtual time (`None`: unknown clock).
    Clock { userdata: u64, wait: Option<u64> },
    /// An fd readiness request (1 = read, 2 = write); not supported in the sandbox.
    Fd { userdata: u64, kind: u8 },
}

/// Virtual `poll_oneoff`: fd subscriptions answer `ENOTSUP` at once; otherwise the earliest
/// clock fires immediately and virtual time moves forward to it.
fn poll_oneoff(
    mut caller: Caller<'_, JobState>,
    subs_ptr: i32,
    events_ptr: i32,
    count: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let Ok(count) = usize::try_from(count) else {
        return Ok(ERRNO_INVAL);
    };
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Ok(ERRNO_INVAL);
    }
    let Some(raw) = read_guest(&mut caller, subs_ptr, count * SUBSCRIPTION_SIZE) else {
        return Ok(ERRNO_FAULT);
    };
    let time = caller.data().time.clone();
    let subs: Vec<Subscription> = raw
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|s| parse_subscription(s, time.monotonic_now(), time.wall_now()))
        .collect();
    let events = fire(&subs, &time);
    let mut bytes = Vec::with_capacity(events.len() * EVENT_SIZE);
    for event in &events {
        bytes.extend_from_slice(event);
    }
    let Some(memory) = memory(&mut caller) else {
        return Ok(ERRNO_FAULT);
    };
    if memory
        .write(&mut caller, events_ptr as u32 as usize, &bytes)
        .is_err()
    {
        return Ok(ERRNO_FAULT);
    }
    let n = (events.len() as u32).to_le_bytes();
    if memory
        .write(&mut caller, nevents_ptr as u32 as usize, &n)
        .is_err()
    {
        return Ok(ERRNO_FAULT);
    }
    Ok(ERRNO_SUCCESS)
}

fn parse_subscription(s: &[u8], mono_now: u64, wall_now: u64) -> Subscription {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let userdata = u64_at(0);
    match s[8] {
        0 => {
            let clock = u32::from_le_bytes([s[16], s[17], s[18], s[19]]);
            let timeout = u64_at(24);
            let absolute = u16::from_le_bytes([s[40], s[41]]) & 1 != 0;
            let wait = match (clock, absolute) {
                (0 | 1, false) => Some(timeout),
                (0, true) => Some(timeout.saturating_sub(wall_now)),
                (1, true) => Some(timeout.saturating_sub(mono_now)),
                _ => None,
            };
            Subscription::Clock { userdata, wait }
        }
        kind => Subscription::Fd { userdata, kind },
    }
}

/// Decides which subscriptions fire and encodes their events.
fn fire(subs: &[Subscription], time: &super::VirtualTime) -> Vec<[u8; EVENT_SIZE]> {
    let has_fd = subs.iter().any(|s| matches!(s, Subscription::Fd { .. }));
    let earliest = subs
        .iter()
        .filter_map(|s| match s {
            Subscription::Clock { wait: Some(w), .. } => Some(*w),
            _ => None,
        })
        .min();
    // With fd subscriptions present, only clocks already due fire (fds answer at once).
    let due = if has_fd { Some(0) } else { earliest };
    if let (Some(wait), false) = (due, has_fd) {
        time.advance(wait);
    }
    subs.iter()
        .filter_map(|s| match s {
            Subscription::Clock {
                userdata,
                wait: Some(w),
            } if Some(*w) == due => Some(event(*userdata, ERRNO_SUCCESS, 0)),
            Subscription::Clock {
                userdata,
                wait: None,
            } => Some(event(*userdata, ERRNO_INVAL, 0)),
            Subscription::Fd { userdata, kind } => Some(event(*userdata, ERRNO_NOTSUP, *kind)),
            Subscription::Clock { .. } => None,
        })
        .collect()
}

fn event(userdata: u64, errno: i32, kind: u8) -> [u8; EVENT_SIZE] {
    let mut e = [0u8; EVENT_SIZE];
    e[0..8].copy_from_slice(&userdata.to_le_bytes());
    e[8..10].copy_from_slice(&(errno as u16).to_le_bytes());
    e[10] = kind;
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use agora_core::Hash;

    fn clock_sub(userdata: u64, clock: u32, timeout: u64, absolute: bool) -> [u8; 48] {
        let mut s = [0u8; 48];
        s[0..8].copy_from_slice(&userdata.to_le_bytes());
        s[16..20].copy_from_slice(&clock.to_le_bytes());
        s[24..32].copy_from_slice(&timeout.to_le_bytes());
        s[40] = u8::from(absolute);
        s
    }

    #[test]
    fn the_earliest_clock_fires_and_time_moves_to_it() {
        let time = super::super::VirtualTime::new(&Hash::ZERO);
        let now = time.monotonic_now();
        let subs = [
            parse_subscription(&clock_sub(1, 1, 5_000, false), now, time.wall_now()),
            parse_subscription(&clock_sub(2, 1, 9_000, false), now, time.wall_now()),
        ];
        let events = fire(&subs, &time);
        assert_eq!(events.len(), 1);
        assert_eq!(u64::from_le_bytes(events[0][0..8].try_into().unwrap()), 1);
        assert_eq!(time.monotonic_now(), now + 5_000);
    }

    #[test]
    fn fd_subscriptions_answer_notsup_without_waiting() {
        let time = super::super::VirtualTime::new(&Hash::ZERO);
        let mut fd = [0u8; 48];
        fd[0] = 7;
        fd[8] = 1;
        let subs = [
            parse_subscription(&fd, 0, 0),
            parse_subscription(&clock_sub(2, 1, 9_000, false), 0, 0),
        ];
        let events = fire(&subs, &time);
        assert_eq!(events.len(), 1);
        assert_eq!(
            u16::from_le_bytes([events[0][8], events[0][9]]),
            ERRNO_NOTSUP as u16
        );
        assert_eq!(time.monotonic_now(), 0);
    }

    #[test]
    fn output_budget_trips_past_its_limits() {
        let mut budget = OutputBudget {
            limit_bytes: 10,
            limit_files: 1,
            ..OutputBudget::default()
        };
        assert!(budget.charge_bytes(10).is_ok());
        assert!(budget.charge_bytes(1).is_err());
        assert!(budget.breached);
        let mut files = OutputBudget {
            limit_bytes: 10,
            limit_files: 1,
            ..OutputBudget::default()
        };
        for _ in 0..CREATE_CALLS_PER_FILE {
            assert!(files.charge_entry().is_ok());
        }
        assert!(files.charge_entry().is_err());
    }
}
