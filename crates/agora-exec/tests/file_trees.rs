//! File trees on real wasmtime: directory inputs, the writable scratch root with `/tmp`
//! and a seeded working tree, stdin, the disk limit, output symlinks, and hostile tar
//! archives refused before anything is written outside the job's directory.
//!
//! `tests/trees/trees.wasm` is a real C program (wasi-libc), built from `trees.c`.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agora_core::{Fuel, Hash};
use agora_exec::tree::{self, TreeError, TreeLimits};
use agora_exec::{
    ExecConfig, ExecError, Executor, Input, JobSpec, Limits, WasmExecutor, WasmModule,
};
use tar::{EntryType, Header};

fn trees_module() -> WasmModule {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/trees/trees.wasm");
    WasmModule::new(fs::read(path).expect("tests/trees/trees.wasm is committed"))
}

fn executor(work_dir: Option<&Path>) -> WasmExecutor {
    WasmExecutor::new(ExecConfig {
        work_dir: work_dir.map(Path::to_owned),
        ..ExecConfig::default()
    })
    .expect("executor starts")
}

fn job(module: WasmModule, id: &str) -> JobSpec {
    let mut job = JobSpec::new(Hash::of(id.as_bytes()), module);
    job.limits = Limits {
        fuel: Fuel(2_000_000_000),
        memory_bytes: 64 << 20,
        wall_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    job
}

/// A `share/` tree: `db/a.txt`, `db/b.txt`, and a link `latest -> db/a.txt`.
fn share_tree() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("db")).unwrap();
    fs::write(dir.path().join("db/a.txt"), b"alpha record\n").unwrap();
    fs::write(dir.path().join("db/b.txt"), b"beta record\n").unwrap();
    std::os::unix::fs::symlink("db/a.txt", dir.path().join("latest")).unwrap();
    tree::pack_dir(dir.path()).unwrap()
}

fn workdir_tree() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("conf")).unwrap();
    fs::write(dir.path().join("conf/settings.ini"), b"level=3\n").unwrap();
    tree::pack_dir(dir.path()).unwrap()
}

fn full_job(id: &str) -> JobSpec {
    let mut job = job(trees_module(), id);
    job.trees.push(Input::new("share", share_tree()));
    job.workdir = Some(Arc::from(workdir_tree()));
    job.stdin = Some(Arc::from(&b"line one\nline two\n"[..]));
    job
}

#[test]
fn a_c_program_sees_directory_inputs_a_seeded_root_tmp_relative_paths_and_stdin() {
    let executor = executor(None);
    let outcome = executor.run(&full_job("trees")).expect("job runs");
    let stdout = String::from_utf8_lossy(&outcome.stdout.data);
    assert_eq!(outcome.exit_code, 0, "stdout: {stdout}");
    assert_eq!(
        stdout,
        "share: alpha record\ninput writable: no\nworkdir: level=3\nrelative: relative\n\
         stdin bytes: 18\nshare entries: 2\n"
    );
    // Only /output is collected: /tmp and the scratch root are discarded.
    let names: Vec<_> = outcome.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["stdin.txt"]);
    assert_eq!(outcome.outputs[0].data, b"line one\nline two\n");
    let again = executor.run(&full_job("trees")).unwrap();
    assert_eq!(
        outcome.digest, again.digest,
        "file trees keep runs reproducible"
    );
}

#[test]
fn stdin_is_empty_unless_given() {
    let mut job = full_job("no-stdin");
    job.stdin = None;
    let outcome = executor(None).run(&job).unwrap();
    assert!(
        String::from_utf8_lossy(&outcome.stdout.data).contains("stdin bytes: 0\n"),
        "{:?}",
        outcome.stdout
    );
}

#[test]
fn filling_tmp_hits_the_disk_limit() {
    let mut job = job(trees_module(), "fill");
    job.args = vec!["fill".into()];
    job.limits.disk_bytes = 1 << 20;
    let err = executor(None).run(&job).unwrap_err();
    match &err {
        ExecError::DiskLimit { written, limit, .. } => {
            assert_eq!(*limit, 1 << 20);
            assert!(written > limit, "{written}");
        }
        other => panic!("expected a disk limit error, got {other}"),
    }
    // Like every failure of a job that ran, it keeps the fuel it burnt (and what it printed).
    let partial = err
        .partial()
        .expect("a disk-limit failure keeps its partial run");
    assert!(partial.fuel_used.0 > 0);
}

#[test]
fn the_seeded_tree_counts_against_the_disk_limit() {
    let mut job = full_job("seed-too-big");
    job.limits.disk_bytes = 4;
    let err = executor(None).run(&job).unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::BadTree {
                source: TreeError::TooLarge { limit: 4 },
                ..
            }
        ),
        "{err}"
    );
}

/// A module that makes `/output/link -> target` with `path_symlink`.
fn symlink_module() -> WasmModule {
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "path_symlink"
        (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "target")
      (data (i32.const 200) "link")
      (func (export "_start")
        ;; fd 4 is /output
        (call $exit (call $symlink (i32.const 100) (i32.const 6) (i32.const 4)
          (i32.const 200) (i32.const 4)))))"#;
    WasmModule::new(wat::parse_str(wat).unwrap())
}

#[test]
fn a_symlink_left_in_output_is_refused_by_name() {
    let err = executor(None)
        .run(&job(symlink_module(), "symlink"))
        .unwrap_err();
    match &err {
        ExecError::OutputSymlink { name, .. } => assert_eq!(name, "link"),
        other => panic!("expected an output symlink error, got {other}"),
    }
    assert_eq!(err.kind(), "output_symlink");
    assert!(
        err.partial().is_some_and(|run| run.fuel_used.0 > 0),
        "the job ran to its end; its fuel and streams are kept"
    );
}

/// A tar with one entry whose header is written raw, so names like `../x` get through.
fn raw_tar(path: &str, kind: EntryType, mode: u32, link: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut header = Header::new_old();
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, data).unwrap();
    builder.into_inner().unwrap()
}

/// Runs a job whose directory input is `archive` in a work dir under a fresh directory,
/// and checks that nothing named `evil` appeared anywhere under that directory.
fn run_hostile(archive: Vec<u8>) -> ExecError {
    let outer = tempfile::tempdir().unwrap();
    let work = outer.path().join("work");
    let executor = executor(Some(&work));
    let mut job = job(trees_module(), "hostile");
    job.trees.push(Input::new("share", archive));
    let err = executor.run(&job).unwrap_err();
    drop(executor);
    assert_eq!(err.kind(), "bad_tree", "{err}");
    assert!(err.is_job_fault());
    assert_no_evil(outer.path());
    assert_eq!(
        fs::read_dir(&work).unwrap().count(),
        0,
        "the job's directories are removed"
    );
    err
}

fn assert_no_evil(dir: &Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        assert!(
            !entry.file_name().to_string_lossy().contains("evil"),
            "{} was written",
            entry.path().display()
        );
        if entry.file_type().unwrap().is_dir() {
            assert_no_evil(&entry.path());
        }
    }
}

fn source(err: ExecError) -> TreeError {
    match err {
        ExecError::BadTree { source, .. } => source,
        other => panic!("expected a bad tree, got {other}"),
    }
}

#[test]
fn tar_slip_is_refused() {
    for path in ["../evil", "../../../evil", "a/../../evil"] {
        let err = source(run_hostile(raw_tar(
            path,
            EntryType::Regular,
            0o644,
            None,
            b"x",
        )));
        assert!(matches!(err, TreeError::ParentDir { .. }), "{path}: {err}");
    }
}

#[test]
fn absolute_paths_and_links_are_refused() {
    let err = source(run_hostile(raw_tar(
        "/tmp/evil",
        EntryType::Regular,
        0o644,
        None,
        b"x",
    )));
    assert!(matches!(err, TreeError::AbsolutePath { .. }), "{err}");
    let err = source(run_hostile(raw_tar(
        "evil",
        EntryType::Symlink,
        0o777,
        Some("/etc"),
        b"",
    )));
    assert!(matches!(err, TreeError::LinkEscapes { .. }), "{err}");
    let err = source(run_hostile(raw_tar(
        "d/evil",
        EntryType::Symlink,
        0o777,
        Some("../../x"),
        b"",
    )));
    assert!(matches!(err, TreeError::LinkEscapes { .. }), "{err}");
}

#[test]
fn writing_through_a_link_is_refused() {
    // `up -> .` stays inside, but `up/../evil` is refused for `..`, and `up/evil` for
    // passing through a link.
    let mut archive = raw_tar("up", EntryType::Symlink, 0o777, Some("."), b"");
    archive.truncate(archive.len() - 1024);
    archive.extend(raw_tar("up/evil", EntryType::Regular, 0o644, None, b"x"));
    let err = source(run_hostile(archive));
    assert!(matches!(err, TreeError::ThroughLink { .. }), "{err}");
}

#[test]
fn devices_fifos_hard_links_and_setuid_are_refused() {
    for kind in [EntryType::Char, EntryType::Block, EntryType::Fifo] {
        let err = source(run_hostile(raw_tar("evil", kind, 0o644, None, b"")));
        assert!(
            matches!(err, TreeError::Unsupported { .. }),
            "{kind:?}: {err}"
        );
    }
    let err = source(run_hostile(raw_tar(
        "evil",
        EntryType::Link,
        0o644,
        Some("x"),
        b"",
    )));
    assert!(
        matches!(
            err,
            TreeError::Unsupported {
                kind: "hard link",
                ..
            }
        ),
        "{err}"
    );
    let err = source(run_hostile(raw_tar(
        "evil",
        EntryType::Regular,
        0o4755,
        None,
        b"x",
    )));
    assert!(matches!(err, TreeError::SetId { .. }), "{err}");
}

#[test]
fn too_many_entries_and_too_many_bytes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        fs::write(dir.path().join(format!("f{i:02}")), b"0123456789").unwrap();
    }
    let packed = tree::pack_dir(dir.path()).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let few = TreeLimits {
        max_entries: 10,
        ..TreeLimits::default()
    };
    let err = tree::unpack(&packed, dest.path(), &few).unwrap_err();
    assert!(
        matches!(err, TreeError::TooManyEntries { limit: 10 }),
        "{err}"
    );
    let small = TreeLimits {
        max_bytes: 100,
        ..TreeLimits::default()
    };
    let dest = tempfile::tempdir().unwrap();
    let err = tree::unpack(&packed, dest.path(), &small).unwrap_err();
    assert!(matches!(err, TreeError::TooLarge { limit: 100 }), "{err}");
}

#[test]
fn a_ready_tar_is_normalized_to_the_packed_form() {
    // The same tree made by the system's `tar` (other mtimes, owners, order) normalizes
    // to exactly the bytes `pack_dir` gives.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("db")).unwrap();
    fs::write(dir.path().join("db/a.txt"), b"alpha").unwrap();
    fs::write(dir.path().join("z.txt"), b"zed").unwrap();
    let made = tempfile::NamedTempFile::new().unwrap();
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(made.path())
        .arg("-C")
        .arg(dir.path())
        .arg(".")
        .status();
    let Ok(status) = status else {
        eprintln!("no system tar here; normalization is covered by the unit tests");
        return;
    };
    assert!(status.success());
    let normalized =
        tree::normalize_tar(&fs::read(made.path()).unwrap(), &TreeLimits::default()).unwrap();
    assert_eq!(normalized, tree::pack_dir(dir.path()).unwrap());
}

#[test]
fn checkpointed_jobs_refuse_file_trees_by_name() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jobs/life.wasm");
    let mut job = job(WasmModule::new(fs::read(path).unwrap()), "life-trees");
    job.stdin = Some(Arc::from(&b"x"[..]));
    let err = ExecError::from(executor(None).run_checkpointed(&job).unwrap_err());
    assert!(
        matches!(&err, ExecError::InvalidJob(m) if m.contains("checkpoint ABI")),
        "{err}"
    );
}
