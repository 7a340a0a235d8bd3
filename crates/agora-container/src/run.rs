//! Running one job: bundle, cgroup, `runc run`, deadline and cancellation, metering, result.
//!
//! A run makes a bundle directory `<work_dir>/<id>/` holding `config.json`, `input/` (the
//! job's inputs, written and unpacked on the host, shown read-only at `/input`), `output/`
//! (see [`crate::outputs`]) and the runtime's JSON log; creates the job's cgroup
//! ([`crate::cgroup`]); and starts `<runtime> run --bundle <dir> <id>` in the foreground
//! with stdin, stdout and stderr as pipes. The runtime forwards the pipes to the job and
//! exits with the job's exit status (128+signal when it was killed).
//!
//! While the runtime runs, the executor polls (every 1 ms at first, backing off to 10 ms)
//! for its exit, the job's [`CancelToken`](agora_exec::CancelToken) and the wall-clock
//! deadline; on either of the latter it sends `kill <id> KILL`, which ends the job's pid
//! namespace and so every process in it. Whatever happens (error, panic, early return) a
//! guard then runs `delete --force`, detaches the output tmpfs, removes the cgroups and
//! deletes the bundle.
//!
//! The result is an [`Outcome`] like a WASM job's: exit code, bounded stdout/stderr,
//! sorted outputs with hashes, and the same canonical digest; its fuel is the job's CPU
//! time converted by the job's [`Calibration`](crate::Calibration).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use agora_core::Fuel;
use agora_exec::tree::{self, TreeLimits};
use agora_exec::{
    Captured, ExecError, ModuleSource, Outcome, OutputFile, PartialRun, result_digest,
};
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, CgroupStats, JobCgroup};
use crate::error::ContainerError;
use crate::job::ContainerJob;
use crate::outputs::{OutputDir, Owner};
use crate::probe::Runtime;
use crate::spec::{self, SpecParams, UserNamespace};

/// Where and how the executor keeps its per-job state.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Bundles (`<work_dir>/<id>`) and the runtime's state (`<work_dir>/state`).
    pub work_dir: PathBuf,
    /// Where cgroups are mounted.
    pub cgroup_root: PathBuf,
    /// The cgroup under which every job's cgroup is made.
    pub cgroup_parent: String,
    /// As root: map the container's root to this unprivileged host range instead of
    /// running it as host root without capabilities. Rootless runtimes always map the
    /// caller's own uid. Files in the rootfs that only host root may read stay unreadable.
    pub userns: Option<UserNamespace>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            work_dir: std::env::temp_dir().join("agora-container"),
            cgroup_root: PathBuf::from(cgroup::CGROUP_ROOT),
            cgroup_parent: "agora".into(),
            userns: None,
        }
    }
}

/// What the job's cgroup (or, without one, the kernel's rusage) measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metering {
    /// CPU time of all the job's processes, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory high-water mark of the job's cgroup (processes, page cache, tmpfs pages);
    /// rootless, the largest resident set of one process (the runtime's included).
    pub peak_memory_bytes: u64,
    /// Wall-clock time from spawning the runtime to its exit, in milliseconds.
    pub wall_ms: u64,
    /// The rate `cpu_ns` was converted at.
    pub fuel_per_cpu_second: u64,
    /// Forks that failed at the pids limit.
    pub pids_limit_hits: u64,
    /// `cgroup`, or `rusage` when the job had no cgroup (rootless).
    pub cpu_source: String,
    /// Milliseconds from spawning the runtime to the job's first byte of stdout (start
    /// latency as a buyer sees it), if it wrote any.
    pub first_stdout_ms: Option<f64>,
}

/// A job that ran to completion (any exit code).
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRun {
    /// The result, in the same form as a WASM job's.
    pub outcome: Outcome,
    /// The measurements behind its fuel.
    pub metering: Metering,
}

/// Runs container jobs with one [`Runtime`]. `Send + Sync`: jobs may run from many threads.
#[derive(Debug)]
pub struct ContainerExecutor {
    runtime: Runtime,
    config: ExecutorConfig,
}

/// How a run ended, as seen by the wait loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    Cancelled,
}

/// When the wait loop first and last asked the runtime to kill the container.
#[derive(Default)]
struct Kills {
    first: Option<Instant>,
    last: Option<Instant>,
}

/// What the runtime process reported.
struct Waited {
    ending: Ending,
    exit_code: i32,
    rusage_cpu_ns: u64,
    /// The largest resident set of the runtime or a process it waited for (rusage).
    rusage_maxrss_bytes: u64,
    wall: Duration,
    first_stdout: Option<Duration>,
}

impl ContainerExecutor {
    /// An executor driving `runtime` (from [`probe`](crate::probe())).
    pub fn new(runtime: Runtime, config: ExecutorConfig) -> Self {
        ContainerExecutor { runtime, config }
    }

    /// The runtime in use.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Runs `job` to completion, or until its deadline or cancellation.
    pub fn run(&self, job: &ContainerJob) -> Result<ContainerRun, ContainerError> {
        job.validate()?;
        if job.cancel.is_cancelled() {
            return Err(ExecError::Cancelled { fuel_used: Fuel(0) }.into());
        }
        let id = self.container_id(job);
        let mut bundle = Bundle::new(&self.runtime, &self.config, &id)?;
        self.prepare(job, &mut bundle)?;
        let spawned = Instant::now();
        let mut child = bundle.spawn(job)?;
        let stdout = capture(child.stdout.take(), job.limits.stdout_bytes);
        let stderr = capture(child.stderr.take(), job.limits.stderr_bytes);
        feed_stdin(child.stdin.take(), job.stdin.clone());
        let mut waited = bundle.wait(&child, job);
        let streams = [stdout.as_ref(), stderr.as_ref()];
        if !streams.iter().flatten().all(|c| c.wait(STREAM_GRACE)) {
            bundle.force_delete();
            for c in streams.iter().flatten() {
                // Whatever was read by then is kept; a stream still open is cut there.
                let _ = c.wait(STREAM_GRACE);
            }
        }
        let (stdout, first) = finish(stdout.as_ref(), "stdout");
        waited.first_stdout = first.map(|t| t.saturating_duration_since(spawned));
        let (stderr, _) = finish(stderr.as_ref(), "stderr");
        let stats = bundle.cgroup.as_ref().map(JobCgroup::stats);
        let result = self.conclude(job, &bundle, &waited, stats, stdout, stderr);
        drop(bundle);
        result
    }

    /// A container id unique on this host: job, process and a process-wide counter (two
    /// executors in one process share the runtime state directory).
    fn container_id(&self, job: &ContainerJob) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let job_hex: String = job.job_id.0[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("agora-{job_hex}-{}-{n}", std::process::id())
    }

    /// Inputs, output directory, cgroup and `config.json`.
    fn prepare(&self, job: &ContainerJob, bundle: &mut Bundle) -> Result<(), ContainerError> {
        let rootless = self.runtime.rootless;
        let userns = if rootless {
            // SAFETY: getuid/getgid cannot fail.
            Some(UserNamespace::rootless(unsafe { libc::getuid() }, unsafe {
                libc::getgid()
            }))
        } else {
            self.config.userns
        };
        write_inputs(job, &bundle.input_dir())?;
        let owner = userns.map_or(Owner::default(), |ns| Owner {
            uid: ns.uid.host_id,
            gid: ns.gid.host_id,
        });
        let output = OutputDir::create(&bundle.output_dir(), &job.limits, !rootless, owner)?;
        let capped = output.is_capped();
        bundle.output = Some(output);
        if !rootless {
            bundle.cgroup = Some(JobCgroup::create(
                &self.config.cgroup_root,
                self.runtime.cgroup,
                &self.config.cgroup_parent,
                &bundle.id,
                &job.limits,
            )?);
        }
        let rootfs = fs::canonicalize(&job.rootfs)
            .map_err(|e| ExecError::InvalidJob(format!("rootfs {}: {e}", job.rootfs.display())))?;
        let mut job = job.clone();
        job.rootfs = rootfs;
        let params = SpecParams {
            job: &job,
            input_dir: &bundle.input_dir(),
            output_dir: &bundle.output_dir(),
            cgroups_path: bundle.cgroup.as_ref().map(JobCgroup::container_path),
            userns,
            rootless,
            fsize_limit: (!capped).then_some(job.limits.output_bytes),
        };
        let json = serde_json::to_vec_pretty(&spec::build(&params))
            .map_err(|e| ContainerError::host("serializing config.json", e.into()))?;
        let path = bundle.dir.join("config.json");
        fs::write(&path, json).map_err(|e| ContainerError::host("writing config.json", e))
    }

    /// Turns what was observed into a run or a typed failure.
    fn conclude(
        &self,
        job: &ContainerJob,
        bundle: &Bundle,
        waited: &Waited,
        stats: Option<CgroupStats>,
        stdout: Captured,
        stderr: Captured,
    ) -> Result<ContainerRun, ContainerError> {
        let has_cgroup = bundle.cgroup.is_some();
        let stats = stats.unwrap_or(CgroupStats {
            peak_memory_bytes: waited.rusage_maxrss_bytes,
            ..CgroupStats::default()
        });
        let cpu_ns = if has_cgroup {
            stats.cpu_ns
        } else {
            waited.rusage_cpu_ns
        };
        let fuel = job.calibration.fuel_for_cpu_ns(cpu_ns);
        let partial = PartialRun {
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            fuel_used: fuel,
        };
        let failure = classify(job, bundle, waited, &stats, fuel, &stderr);
        if let Some(err) = failure {
            return Err(err.with_partial(partial));
        }
        let outputs = match bundle.output.as_ref().map(OutputDir::collect) {
            Some(Ok(outputs)) => outputs,
            Some(Err(e)) => return Err(e.with_partial(partial)),
            None => Vec::new(),
        };
        let metering = Metering {
            cpu_ns,
            peak_memory_bytes: stats.peak_memory_bytes,
            wall_ms: u64::try_from(waited.wall.as_millis()).unwrap_or(u64::MAX),
            fuel_per_cpu_second: job.calibration.fuel_per_cpu_second,
            pids_limit_hits: stats.pids_limit_hits,
            cpu_source: if has_cgroup { "cgroup" } else { "rusage" }.into(),
            first_stdout_ms: waited.first_stdout.map(|d| d.as_secs_f64() * 1000.0),
        };
        let outcome = outcome(job, waited, stdout, stderr, outputs, fuel, &metering);
        Ok(ContainerRun { outcome, metering })
    }
}

/// The failure a finished run amounts to, if any, in order of precedence: the caller's
/// cancellation, the deadline (or the pids limit or a full `/output` behind it), the
/// runtime's own failure, the memory limit, the output limit, the pids limit behind a
/// failed exit. A job that filled `/output` and then ran out of time (busybox `head`
/// spins on `ENOSPC`) failed by its output, which any provider reproduces, not by the
/// clock, which depends on the machine.
fn classify(
    job: &ContainerJob,
    bundle: &Bundle,
    waited: &Waited,
    stats: &CgroupStats,
    fuel: Fuel,
    stderr: &Captured,
) -> Option<ContainerError> {
    let limits = &job.limits;
    let pids = ContainerError::PidsLimit {
        limit: limits.pids,
        partial: None,
    };
    match waited.ending {
        Ending::Cancelled => return Some(ExecError::Cancelled { fuel_used: fuel }.into()),
        Ending::TimedOut if stats.pids_limit_hits > 0 => return Some(pids),
        Ending::TimedOut => {
            if let Some(err) = bundle.output.as_ref().and_then(OutputDir::overflowed) {
                return Some(err.into());
            }
            return Some(
                ExecError::Timeout {
                    limit: limits.wall_timeout,
                    fuel_used: fuel,
                    partial: None,
                }
                .into(),
            );
        }
        Ending::Exited => {}
    }
    if let Some(err) = runtime_failure(bundle, waited, stderr) {
        return Some(err);
    }
    if stats.oom_kills > 0 {
        return Some(
            ExecError::MemoryLimit {
                what: "memory",
                requested: stats.peak_memory_bytes,
                limit: limits.memory_bytes,
                partial: None,
            }
            .into(),
        );
    }
    if let Some(err) = bundle.output.as_ref().and_then(OutputDir::overflowed) {
        return Some(err.into());
    }
    (stats.pids_limit_hits > 0 && waited.exit_code != 0).then_some(pids)
}

/// The runtime logs its own failures as JSON lines at level `error`; the job cannot write
/// to that log, so it tells a runtime failure from a job that merely exited non-zero.
fn runtime_failure(bundle: &Bundle, waited: &Waited, stderr: &Captured) -> Option<ContainerError> {
    if waited.exit_code == 0 {
        return None;
    }
    let log = fs::read_to_string(bundle.dir.join("runtime.log")).unwrap_or_default();
    let errors: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["level"] == "error")
        .filter_map(|v| v["msg"].as_str().map(str::to_owned))
        .collect();
    if errors.is_empty() {
        return None;
    }
    let message = errors.join("; ");
    let job_fault = ["exec:", "executable file", "cwd", "chdir"]
        .iter()
        .any(|needle| message.contains(needle));
    Some(if job_fault {
        ContainerError::StartFailed { message }
    } else {
        ContainerError::Runtime {
            context: format!("running {}", bundle.id),
            message: format!("{message} (stderr: {})", stderr.tail(1000).trim()),
        }
    })
}

fn outcome(
    job: &ContainerJob,
    waited: &Waited,
    stdout: Captured,
    stderr: Captured,
    outputs: Vec<OutputFile>,
    fuel: Fuel,
    metering: &Metering,
) -> Outcome {
    let digest = result_digest(waited.exit_code, &stdout.data, &stderr.data, &outputs);
    Outcome {
        job_id: job.job_id,
        module_hash: job.image,
        exit_code: waited.exit_code,
        stdout,
        stderr,
        outputs,
        fuel_used: fuel,
        compute_units: fuel.as_compute_units_f64(),
        wall_time: waited.wall,
        peak_memory_bytes: metering.peak_memory_bytes,
        // The image was unpacked on disk before the run; nothing was compiled.
        module_source: ModuleSource::DiskCache,
        digest,
    }
}

/// Writes the input files and unpacks the input trees into `dir`.
fn write_inputs(job: &ContainerJob, dir: &Path) -> Result<(), ContainerError> {
    for input in &job.inputs {
        let path = dir.join(&input.name);
        fs::write(&path, &input.bytes)
            .map_err(|e| ContainerError::host(format!("writing input {}", input.name), e))?;
    }
    for input in &job.trees {
        let path = dir.join(&input.name);
        fs::create_dir(&path)
            .map_err(|e| ContainerError::host(format!("creating input {}", input.name), e))?;
        tree::unpack(&input.bytes, &path, &TreeLimits::default()).map_err(|source| {
            ExecError::BadTree {
                what: format!("input {}", input.name),
                source,
            }
        })?;
    }
    Ok(())
}

/// The per-job bundle, and the guard that always cleans up after the runtime.
struct Bundle {
    id: String,
    dir: PathBuf,
    binary: PathBuf,
    state: PathBuf,
    started: bool,
    output: Option<OutputDir>,
    cgroup: Option<JobCgroup>,
}

impl Bundle {
    fn new(runtime: &Runtime, config: &ExecutorConfig, id: &str) -> Result<Self, ContainerError> {
        let dir = config.work_dir.join(id);
        let bundle = Bundle {
            id: id.to_owned(),
            dir,
            binary: runtime.binary.clone(),
            state: config.work_dir.join("state"),
            started: false,
            output: None,
            cgroup: None,
        };
        fs::create_dir_all(bundle.input_dir())
            .map_err(|e| ContainerError::host(format!("creating {}", bundle.dir.display()), e))?;
        Ok(bundle)
    }

    fn input_dir(&self) -> PathBuf {
        self.dir.join("input")
    }

    fn output_dir(&self) -> PathBuf {
        self.dir.join("output")
    }

    /// `<runtime> --root <state> <args...>`.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.state);
        command
    }

    fn spawn(&mut self, job: &ContainerJob) -> Result<Child, ContainerError> {
        let mut command = self.command();
        command
            .arg("--log")
            .arg(self.dir.join("runtime.log"))
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--bundle")
            .arg(&self.dir)
            .arg(&self.id)
            .stdin(if job.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|e| ContainerError::Runtime {
            context: format!("starting {}", self.binary.display()),
            message: e.to_string(),
        })?;
        self.started = true;
        Ok(child)
    }

    /// Waits for the runtime to exit, killing the container at the deadline or on
    /// cancellation (see the module docs).
    fn wait(&self, child: &Child, job: &ContainerJob) -> Waited {
        let start = Instant::now();
        let deadline = start.checked_add(job.limits.wall_timeout);
        let pid = child.id() as libc::pid_t;
        let mut ending = Ending::Exited;
        let mut poll = Duration::from_millis(1);
        let mut kills = Kills::default();
        loop {
            if let Some((status, cpu_ns, maxrss)) = try_reap(pid) {
                return Waited {
                    ending,
                    exit_code: exit_code(status),
                    rusage_cpu_ns: cpu_ns,
                    rusage_maxrss_bytes: maxrss,
                    wall: start.elapsed(),
                    first_stdout: None,
                };
            }
            if ending == Ending::Exited {
                if job.cancel.is_cancelled() {
                    ending = Ending::Cancelled;
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    ending = Ending::TimedOut;
                }
            }
            if ending != Ending::Exited {
                self.keep_killing(pid, &mut kills);
            }
            if let Some(cgroup) = &self.cgroup {
                cgroup.sample();
            }
            std::thread::sleep(poll);
            poll = (poll * 2).min(Duration::from_millis(10));
        }
    }

    /// Sends `kill KILL` every 100 ms until the runtime exits (the first may come before
    /// the container exists); after 10 s of that, kills the runtime process itself.
    fn keep_killing(&self, pid: libc::pid_t, kills: &mut Kills) {
        let now = Instant::now();
        if kills
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        {
            return;
        }
        self.kill();
        kills.last = Some(now);
        let first = *kills.first.get_or_insert(now);
        if now.duration_since(first) > Duration::from_secs(10) {
            // SAFETY: `pid` is our unreaped child, so it cannot have been recycled.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }

    /// `delete --force`: kills whatever is left of the container and removes it.
    fn force_delete(&self) {
        let _ = self
            .command()
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn kill(&self) {
        let _ = self
            .command()
            .args(["kill", &self.id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if self.started {
            // A no-op after a clean exit (`run` deleted it); after a panic or an early
            // return it stops and removes whatever is left.
            self.force_delete();
        }
        if let Some(mut output) = self.output.take() {
            output.unmount();
        }
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reaps `pid` if it exited: its wait status, the CPU time of it and its waited-for
/// descendants (the container's init is the runtime's child, so it is included), and the
/// largest resident set among them.
fn try_reap(pid: libc::pid_t) -> Option<(i32, u64, u64)> {
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; WNOHANG never blocks.
    let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    if rc == pid {
        let ns = |t: libc::timeval| (t.tv_sec as u64) * 1_000_000_000 + (t.tv_usec as u64) * 1000;
        let maxrss = (usage.ru_maxrss.max(0) as u64).saturating_mul(1024);
        return Some((status, ns(usage.ru_utime) + ns(usage.ru_stime), maxrss));
    }
    if rc < 0 {
        // ECHILD: someone else reaped it; report it as killed rather than spin forever.
        return Some((libc::SIGKILL, 0, 0));
    }
    None
}

/// The exit code as a shell reports it: the code, or 128 + the signal.
fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// What a capture thread read: the kept bytes, the total, and when the first byte came.
type Capture = (Vec<u8>, u64, Option<Instant>);

/// How long the output streams may stay open after the runtime exited before the
/// executor forcibly deletes the container (a process that escaped the pid namespace's
/// teardown, e.g. after the runtime itself was killed) and stops waiting for them.
const STREAM_GRACE: Duration = Duration::from_secs(2);

/// A stream being read on its own thread.
struct Capturing {
    state: Arc<Mutex<Capture>>,
    done: mpsc::Receiver<()>,
}

impl Capturing {
    /// Waits up to `timeout` for the stream to end; whether it did.
    fn wait(&self, timeout: Duration) -> bool {
        !matches!(
            self.done.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }
}

/// Reads a stream to its end, keeping the first `cap` bytes and counting the rest.
fn capture<R: Read + Send + 'static>(stream: Option<R>, cap: u64) -> Option<Capturing> {
    let mut stream = stream?;
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let state = Arc::new(Mutex::new(Capture::default()));
    let (tx, done) = mpsc::channel();
    let shared = Arc::clone(&state);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            let mut state = shared.lock().unwrap_or_else(|p| p.into_inner());
            let (kept, total, first) = &mut *state;
            first.get_or_insert_with(Instant::now);
            *total += n as u64;
            let room = cap.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
        }
        let _ = tx.send(());
    });
    Some(Capturing { state, done })
}

/// What was read of a stream (all of it, unless it outlived the grace period).
fn finish(capturing: Option<&Capturing>, stream: &str) -> (Captured, Option<Instant>) {
    let (kept, total, first) = capturing
        .map(|c| std::mem::take(&mut *c.state.lock().unwrap_or_else(|p| p.into_inner())))
        .unwrap_or_default();
    (Captured::new(stream, kept, total), first)
}

/// Writes the job's stdin on its own thread (a job that never reads must not block us),
/// then closes it.
fn feed_stdin(stdin: Option<std::process::ChildStdin>, bytes: Option<Arc<[u8]>>) {
    if let (Some(mut pipe), Some(bytes)) = (stdin, bytes) {
        std::thread::spawn(move || {
            // EPIPE when the job exits without reading everything: not an error.
            let _ = pipe.write_all(&bytes);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 128 + 9);
    }

    #[test]
    fn capture_keeps_the_head_and_counts_all() {
        let data: &'static [u8] = b"hello world";
        let capturing = capture(Some(data), 5);
        assert!(capturing.as_ref().unwrap().wait(Duration::from_secs(5)));
        let (c, first) = finish(capturing.as_ref(), "stdout");
        assert!(first.is_some());
        assert!(c.truncated);
        assert_eq!(c.total_bytes, 11);
        assert!(c.data.starts_with(b"hello\n[agora: stdout truncated"));
    }
}
