//! Real containers: runc (or crun) with a busybox rootfs built from `/bin/busybox`.
//! Every test skips, saying why, when [`probe`] finds no working runtime (no runc, not
//! root without user namespaces, no static busybox).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agora_container::{
    Calibration, ContainerError, ContainerExecutor, ContainerJob, ContainerLimits, ExecutorConfig,
    Runtime, probe, rootfs,
};
use agora_core::Hash;
use agora_exec::Input;

struct Fixture {
    executor: ContainerExecutor,
    rootfs: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh busybox rootfs (a few ms) and an executor on the runtime probed once, or `None`
/// (with the reason printed) to skip. Per test, so that every temporary directory is
/// removed when the test ends.
fn fixture() -> Option<Fixture> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| match probe() {
        Ok(r) => {
            eprintln!("runtime: {r:?}");
            Some(r)
        }
        Err(e) => {
            eprintln!("SKIP: no usable container runtime: {e}");
            None
        }
    });
    let runtime = runtime.clone()?;
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    rootfs::busybox_rootfs(&rootfs, &rootfs::default_busybox()).unwrap();
    Some(Fixture {
        executor: ContainerExecutor::new(runtime, ExecutorConfig::default()),
        rootfs,
        _dir: dir,
    })
}

fn sh(f: &Fixture, script: &str) -> ContainerJob {
    let mut job = ContainerJob::new(
        Hash::of(script.as_bytes()),
        &f.rootfs,
        vec!["sh".into(), "-c".into(), script.into()],
    );
    job.limits.wall_timeout = Duration::from_secs(20);
    job
}

macro_rules! fixture_or_skip {
    () => {
        match fixture() {
            Some(f) => f,
            None => {
                eprintln!("SKIP: no usable container runtime (see above)");
                return;
            }
        }
    };
}

#[test]
fn hello_world_is_reproducible() {
    let f = &fixture_or_skip!();
    let job = sh(
        f,
        "echo hello; echo oops >&2; echo out > /output/a; mkdir /output/d; echo 2 > /output/d/b",
    );
    let first = f.executor.run(&job).unwrap();
    let second = f.executor.run(&job).unwrap();
    let o = &first.outcome;
    assert_eq!(o.exit_code, 0, "{}", o.stderr.text());
    assert_eq!(o.stdout.text(), "hello\n");
    assert_eq!(o.stderr.text(), "oops\n");
    let names: Vec<_> = o.outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "d/b"]);
    assert_eq!(o.outputs[0].data, b"out\n");
    assert_eq!(o.digest, second.outcome.digest);
    assert_eq!(
        o.digest,
        agora_exec::result_digest(0, b"hello\n", b"oops\n", &o.outputs)
    );
    let source = if f.executor.runtime().rootless {
        "rusage"
    } else {
        "cgroup"
    };
    assert_eq!(first.metering.cpu_source, source);
}

#[test]
fn exit_codes_and_stdin_pass_through() {
    let f = &fixture_or_skip!();
    let mut job = sh(f, "cat; exit 3");
    job.stdin = Some(b"from stdin".to_vec().into());
    let run = f.executor.run(&job).unwrap();
    assert_eq!(run.outcome.exit_code, 3);
    assert_eq!(run.outcome.stdout.text(), "from stdin");
}

#[test]
fn inputs_are_readable_and_read_only() {
    let f = &fixture_or_skip!();
    let mut job = sh(
        f,
        "cat /input/data; cat /input/tree/x; echo hack > /input/data && echo WROTE; echo y > /input/new && echo CREATED; true",
    );
    job.inputs = vec![Input::new("data", b"DATA\n".to_vec())];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"TREE\n").unwrap();
    job.trees = vec![Input::new(
        "tree",
        agora_exec::tree::pack_dir(dir.path()).unwrap(),
    )];
    let run = f.executor.run(&job).unwrap();
    let out = run.outcome.stdout.text();
    assert_eq!(out, "DATA\nTREE\n", "stderr: {}", run.outcome.stderr.text());
    assert!(
        run.outcome.stderr.text().contains("Read-only"),
        "{}",
        run.outcome.stderr.text()
    );
}

#[test]
fn rootfs_is_read_only_and_tmp_is_writable() {
    let f = &fixture_or_skip!();
    let job = sh(
        f,
        "echo x > /bin/evil && echo WROTE; echo t > /tmp/t && cat /tmp/t",
    );
    let run = f.executor.run(&job).unwrap();
    assert_eq!(run.outcome.stdout.text(), "t\n");
    assert!(run.outcome.stderr.text().contains("Read-only"));
    assert!(!f.rootfs.join("bin/evil").exists());
}

#[test]
fn no_network_reaches_the_host() {
    let f = &fixture_or_skip!();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "ip -o link | cut -d: -f2; echo hi | nc -w 2 127.0.0.1 {port} && echo CONNECTED; \
         wget -T 2 -q -O- http://127.0.0.1:{port}/ && echo FETCHED; true"
    );
    let run = f.executor.run(&sh(f, &script)).unwrap();
    let out = run.outcome.stdout.text();
    assert!(
        !out.contains("CONNECTED") && !out.contains("FETCHED"),
        "{out}"
    );
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"], "{out}");
    assert!(
        listener.accept().is_err(),
        "the host listener saw a connection"
    );
}

#[test]
fn memory_bomb_is_a_memory_limit() {
    let f = &fixture_or_skip!();
    if f.executor.runtime().rootless {
        // RLIMIT_AS stands in for the cgroup: the allocation fails, nothing is killed.
        eprintln!("SKIP: rootless runs have no memory cgroup");
        return;
    }
    let mut job = sh(
        f,
        "head -c 500m /dev/zero | tail -c 400m > /dev/null; echo survived",
    );
    job.limits.memory_bytes = 32 << 20;
    let start = Instant::now();
    let err = f.executor.run(&job).unwrap_err();
    assert_eq!(err.kind(), "memory_limit", "{err}");
    assert!(err.is_job_fault());
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn fork_bomb_ends_within_the_deadline() {
    let f = &fixture_or_skip!();
    let mut job = sh(f, "b() { b | b & }; b; sleep 30");
    job.limits.pids = 16;
    job.limits.wall_timeout = Duration::from_secs(3);
    let start = Instant::now();
    let result = f.executor.run(&job);
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    match result {
        Err(ContainerError::PidsLimit { limit: 16, .. }) => {}
        // Rootless: RLIMIT_NPROC holds the bomb but there is no cgroup counter to name it.
        Err(e) if e.kind() == "timeout" && f.executor.runtime().rootless => {}
        Err(e) => panic!("expected pids_limit, got {}: {e}", e.kind()),
        Ok(run) => panic!("expected pids_limit, got exit {}", run.outcome.exit_code),
    }
}

#[test]
fn huge_output_is_an_output_limit_fast() {
    let f = &fixture_or_skip!();
    let mut job = sh(
        f,
        "dd if=/dev/zero of=/output/big bs=1M count=10240; exit 0",
    );
    job.limits.output_bytes = 8 << 20;
    let start = Instant::now();
    let err = f.executor.run(&job).unwrap_err();
    assert_eq!(err.kind(), "output_limit", "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // ENOSPC from the capped tmpfs (root), or SIGXFSZ from RLIMIT_FSIZE (rootless).
    let stderr = err.partial().unwrap().stderr.text().into_owned();
    assert!(
        stderr.contains("No space left") || f.executor.runtime().rootless,
        "{stderr}"
    );
}

#[test]
fn symlink_outputs_are_refused() {
    let f = &fixture_or_skip!();
    let err = f
        .executor
        .run(&sh(f, "ln -s /etc/passwd /output/p"))
        .unwrap_err();
    assert_eq!(err.kind(), "output_symlink", "{err}");
}

#[test]
fn wall_deadline_is_a_timeout() {
    let f = &fixture_or_skip!();
    let mut job = sh(f, "echo started; sleep 30");
    job.limits.wall_timeout = Duration::from_millis(500);
    let start = Instant::now();
    let err = f.executor.run(&job).unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(err.partial().unwrap().stdout.text(), "started\n");
}

#[test]
fn cancellation_stops_the_container() {
    let f = &fixture_or_skip!();
    let job = sh(f, "sleep 30");
    let token = job.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        token.cancel();
    });
    let start = Instant::now();
    let err = f.executor.run(&job).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(err.kind(), "cancelled", "{err}");
    assert!(!err.is_job_fault());
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn seccomp_denies_unshare() {
    let f = &fixture_or_skip!();
    let run = f
        .executor
        .run(&sh(
            f,
            "unshare -U true && echo UNSHARED; unshare -n true && echo NET",
        ))
        .unwrap();
    assert_eq!(
        run.outcome.stdout.text(),
        "",
        "{}",
        run.outcome.stderr.text()
    );
    assert!(
        run.outcome
            .stderr
            .text()
            .contains("Operation not permitted")
    );
}

#[test]
fn capabilities_are_dropped() {
    let f = &fixture_or_skip!();
    let script = "mknod /tmp/null c 1 3 && echo MKNOD; echo x > /tmp/f; chown 1:1 /tmp/f && echo CHOWN; \
                  grep CapEff /proc/self/status";
    let run = f.executor.run(&sh(f, script)).unwrap();
    let out = run.outcome.stdout.text();
    assert!(!out.contains("MKNOD") && !out.contains("CHOWN"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
}

#[test]
fn cpu_time_is_metered_and_converted() {
    let f = &fixture_or_skip!();
    // A busy shell loop of about 0.3 s of CPU on this kind of machine.
    let mut job = sh(f, "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done");
    job.limits.cpu_millis = 0;
    job.calibration = Calibration::fixed(2_000_000_000);
    let run = f.executor.run(&job).unwrap();
    let m = &run.metering;
    assert!(
        (100_000_000..3_000_000_000).contains(&m.cpu_ns),
        "cpu_ns {} (wall {} ms)",
        m.cpu_ns,
        m.wall_ms
    );
    // One process, so its CPU time cannot much exceed the wall-clock time.
    assert!(m.cpu_ns / 1_000_000 <= m.wall_ms + 50, "{m:?}");
    assert_eq!(run.outcome.fuel_used.0, (u128::from(m.cpu_ns) * 2) as u64);
    assert!(m.peak_memory_bytes > 0);
    assert_eq!(
        run.outcome.compute_units,
        run.outcome.fuel_used.as_compute_units_f64()
    );
}

#[test]
fn a_missing_program_fails_to_start() {
    let f = &fixture_or_skip!();
    let job = ContainerJob::new(Hash::ZERO, &f.rootfs, vec!["/no/such/program".into()]);
    let err = f.executor.run(&job).unwrap_err();
    assert_eq!(err.kind(), "start_failed", "{err}");
    assert!(err.is_job_fault());
}

#[test]
fn stdout_is_bounded() {
    let f = &fixture_or_skip!();
    let mut job = sh(f, "head -c 100000 /dev/zero");
    job.limits = ContainerLimits {
        stdout_bytes: 1000,
        ..job.limits
    };
    let run = f.executor.run(&job).unwrap();
    assert!(run.outcome.stdout.truncated);
    assert_eq!(run.outcome.stdout.total_bytes, 100_000);
    let mut tail = String::new();
    (&run.outcome.stdout.data[1000..])
        .read_to_string(&mut tail)
        .unwrap();
    assert!(tail.contains("truncated: 1000 of 100000"));
    let _ = std::io::sink().write(b"");
}

#[test]
fn nothing_is_left_behind() {
    let f = &fixture_or_skip!();
    let job_id = Hash::of(b"leftover check");
    // Container ids start with the job id's first 6 bytes (see run.rs).
    let prefix: String = job_id.0[..6].iter().map(|b| format!("{b:02x}")).collect();
    let prefix = format!("agora-{prefix}-");
    let mut job = sh(f, "echo x > /output/x; echo y > /tmp/y");
    job.job_id = job_id;
    for _ in 0..2 {
        assert_eq!(f.executor.run(&job).unwrap().outcome.exit_code, 0);
    }
    let mut job = sh(f, "sleep 30");
    job.job_id = job_id;
    job.limits.wall_timeout = Duration::from_millis(200);
    assert_eq!(f.executor.run(&job).unwrap_err().kind(), "timeout");
    let mine = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    let work = ExecutorConfig::default().work_dir;
    assert_eq!(mine(work.clone()), Vec::<String>::new(), "bundles left");
    assert_eq!(
        mine(work.join("state")),
        Vec::<String>::new(),
        "runtime state left"
    );
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let left = mine(hierarchy.path().join("agora"));
        assert!(
            left.is_empty(),
            "cgroups left in {:?}: {left:?}",
            hierarchy.path()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&prefix), "mounts left");
}

/// GPU pass-through as the GPU crate will use it: the host's `/dev/nvidia*` nodes as
/// [`DeviceNode`]s and the driver's userland as read-only [`BindMount`]s. Skips on hosts
/// without an NVIDIA driver.
#[test]
fn gpu_devices_and_driver_mounts_pass_through() {
    use agora_container::{BindMount, DeviceNode};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let f = &fixture_or_skip!();
    // The real binary: /usr/bin/nvidia-smi may be a script pointing at a driver tree.
    let smi = ["/usr/local/nvidia/bin/nvidia-smi", "/usr/bin/nvidia-smi"]
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF")));
    let Some(smi) = smi.filter(|_| std::path::Path::new("/dev/nvidiactl").exists()) else {
        eprintln!("SKIP: no NVIDIA driver on this host");
        return;
    };
    let mut devices = Vec::new();
    for entry in std::fs::read_dir("/dev").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().unwrap();
        if name.starts_with("nvidia") && meta.file_type().is_char_device() {
            let rdev = meta.rdev();
            devices.push(DeviceNode {
                path: format!("/dev/{name}"),
                kind: 'c',
                major: i64::from(libc::major(rdev)),
                minor: i64::from(libc::minor(rdev)),
            });
        }
    }
    // A private rootfs: runc creates the bind mounts' mount points inside it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rootfs");
    rootfs::busybox_rootfs(&root, &rootfs::default_busybox()).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", root.join("lib64")).unwrap();
    let ro = |source: &str| BindMount {
        source: source.into(),
        destination: source.into(),
        readonly: true,
    };
    let mut job = ContainerJob::new(Hash::of(b"gpu"), &root, vec![smi.into(), "-L".into()]);
    job.devices = devices;
    job.mounts = vec![ro(smi), ro("/usr/lib/x86_64-linux-gnu"), ro("/usr/lib64")];
    if std::path::Path::new("/usr/local/nvidia/lib64").exists() {
        job.mounts.push(ro("/usr/local/nvidia/lib64"));
    }
    job.env = vec![(
        "LD_LIBRARY_PATH".into(),
        "/usr/local/nvidia/lib64:/usr/lib/x86_64-linux-gnu".into(),
    )];
    let run = f.executor.run(&job).unwrap();
    eprintln!(
        "nvidia-smi -L: {}{}",
        run.outcome.stdout.text(),
        run.outcome.stderr.text()
    );
    assert_eq!(run.outcome.exit_code, 0);
    assert!(run.outcome.stdout.text().contains("GPU 0"));
    // Without the device nodes the same job sees no GPU.
    job.devices.clear();
    let run = f.executor.run(&job).unwrap();
    assert!(!run.outcome.stdout.text().contains("GPU 0"));
}

/// As root, the container's root can be mapped to an unprivileged host range instead.
#[test]
fn root_can_be_mapped_to_an_unprivileged_range() {
    use agora_container::{IdMap, UserNamespace};
    let f = &fixture_or_skip!();
    if f.executor.runtime().rootless {
        eprintln!("SKIP: rootless runtimes always map the caller");
        return;
    }
    let map = IdMap {
        container_id: 0,
        host_id: 200_000,
        size: 65_536,
    };
    let config = ExecutorConfig {
        userns: Some(UserNamespace { uid: map, gid: map }),
        ..ExecutorConfig::default()
    };
    let executor = ContainerExecutor::new(f.executor.runtime().clone(), config);
    let mut job = sh(
        f,
        "id -u; cat /proc/self/uid_map; cat /input/x; echo o > /output/o",
    );
    job.inputs = vec![Input::new("x", b"in\n".to_vec())];
    let run = executor.run(&job).unwrap();
    let out = run.outcome.stdout.text();
    assert_eq!(run.outcome.exit_code, 0, "{}", run.outcome.stderr.text());
    assert!(
        out.starts_with("0\n") && out.contains("200000") && out.ends_with("in\n"),
        "{out}"
    );
    assert_eq!(run.outcome.outputs[0].data, b"o\n");
}

/// `network: true` drops the network namespace: the job reaches the host's loopback.
#[test]
fn network_true_shares_the_host_network() {
    let f = &fixture_or_skip!();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepter = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        got
    });
    let mut job = sh(f, &format!("echo hi | nc -w 2 127.0.0.1 {port}"));
    job.network = true;
    let run = f.executor.run(&job).unwrap();
    assert_eq!(run.outcome.exit_code, 0, "{}", run.outcome.stderr.text());
    assert_eq!(accepter.join().unwrap(), "hi\n");
}

/// The CPU quota holds a busy job to its share of a core.
#[test]
fn cpu_quota_throttles() {
    let f = &fixture_or_skip!();
    if f.executor.runtime().rootless {
        eprintln!("SKIP: rootless runs have no CPU cgroup");
        return;
    }
    let mut job = sh(f, "i=0; while [ $i -lt 60000 ]; do i=$((i+1)); done");
    job.limits.cpu_millis = 200;
    let run = f.executor.run(&job).unwrap();
    let m = &run.metering;
    // A fifth of a core: the wall time is several times the CPU time.
    assert!(m.wall_ms * 1_000_000 > m.cpu_ns * 3, "{m:?}");
}
