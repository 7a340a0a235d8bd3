//! `agora exec` end to end: outputs written, typed failures give a clear message and a
//! non-zero exit code, sizes parse with units.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs")
}

fn agora(args: &[&str], extra: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.arg("exec").args(extra).arg("--no-cache").args(args);
    cmd.output().expect("agora runs")
}

#[test]
fn writes_outputs_and_prints_a_human_summary() {
    let out = tempfile::tempdir().unwrap();
    let module = jobs_dir().join("pathtrace.wasm");
    let dir = out.path().join("tile");
    let output = agora(
        &[
            "--output-dir",
            dir.to_str().unwrap(),
            "--",
            "8",
            "6",
            "0",
            "6",
            "1",
        ],
        &[&module],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("exit code    0") && text.contains("digest"),
        "{text}"
    );
    let tile = std::fs::read(dir.join("tile.ppm")).expect("tile written");
    assert!(tile.starts_with(b"P6\n8 6\n255\n"));
}

#[test]
fn out_of_fuel_is_a_clear_failure() {
    let module = jobs_dir().join("hashchain.wasm");
    let output = agora(&["--fuel", "1000", "--json", "--", "100000"], &[&module]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("out of fuel"), "{stderr}");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["error"]["kind"], "out_of_fuel");
}

/// life prints "life: step N population P" every 100 steps; 1 CU is far too little for
/// 100,000 steps.
#[test]
fn a_failed_job_still_shows_what_it_wrote_and_the_fuel_it_burnt() {
    let module = jobs_dir().join("life.wasm");
    let run = ["--fuel", "1000000000", "--", "100000", "4"];
    let output = agora(&run, &[&module]);
    assert_eq!(output.status.code(), Some(3));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("failed       out_of_fuel"), "{text}");
    assert!(
        text.contains("fuel         1000000000 (1.000000 compute units)"),
        "{text}"
    );
    assert!(text.contains("--- stdout ("), "{text}");
    assert!(text.contains("life: step 100 population "), "{text}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("out of fuel"));

    let mut json_run = run.to_vec();
    json_run.insert(0, "--json");
    let output = agora(&json_run, &[&module]);
    assert_eq!(output.status.code(), Some(3));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = &record["error"];
    assert_eq!(error["kind"], "out_of_fuel");
    assert_eq!(error["fuel_used"], 1_000_000_000u64);
    let stdout = error["stdout"]["data"].as_str().expect("stdout is text");
    assert!(stdout.starts_with("life: step 100 population "), "{stdout}");
    assert_eq!(error["stderr"]["total_bytes"], 0);
}

#[test]
fn memory_limit_takes_units_and_is_enforced() {
    let module = jobs_dir().join("nn.wasm");
    let input = format!("batch={}", jobs_dir().join("inputs/batch.f32").display());
    let output = agora(
        &["--memory", "64KiB", "--input", &input, "--", "batch"],
        &[&module],
    );
    assert_eq!(output.status.code(), Some(3));
    // The module's initial memory alone is above 64 KiB: refused before it runs.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: job failed: refused: the module's initial memory is ")
            && stderr.contains("the job's memory limit is 65536 bytes"),
        "{stderr}"
    );
    let bad = agora(&["--memory", "64 parsecs"], &[&module]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown size unit"));
}

#[test]
fn a_bad_module_and_a_missing_input_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let output = agora(&[], &[&junk]);
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("malformed module"));
    let module = jobs_dir().join("logagg.wasm");
    let missing = agora(&["--input", "log=/nonexistent/agora.log"], &[&module]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("reading input log"));
}

/// `agora exec --image` runs a sample image the way a provider does: its outputs are the
/// ones `examples/containers/test.sh` pins (sha256), and a run over its memory limit is a
/// typed failure. Skipped, saying why, where this host cannot run containers.
#[test]
fn an_image_runs_locally_as_on_a_provider() {
    let containers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/containers");
    let store = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sales = format!(
        "sales.csv={}",
        containers.join("inputs/sales.csv").display()
    );
    let image = containers.join("sqlite-report.oci.tar");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_agora"))
            .args(["exec", "--image"])
            .arg(&image)
            .arg("--image-store")
            .arg(store.path())
            .args(extra)
            .output()
            .expect("agora runs")
    };
    let output = run(&[
        "--input",
        &sales,
        "--output-dir",
        out.path().to_str().unwrap(),
        "--",
        "sales.csv",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("cannot run containers") {
        eprintln!("skipped: {stderr}");
        return;
    }
    assert!(output.status.success(), "{stderr}");
    let pinned = std::fs::read_to_string(containers.join("expected-outputs.sha256")).unwrap();
    for name in ["by_month_region.csv", "by_product.csv", "top_days.csv"] {
        let data = std::fs::read(out.path().join(name)).unwrap();
        let digest = sha256_hex(&data);
        assert!(
            pinned.contains(&format!("{digest}  sqlite-report/{name}")),
            "{name}: {digest} is not the pinned output"
        );
    }
    let bomb = run(&[
        "--entrypoint",
        "/bin/sh",
        "--memory",
        "32MiB",
        "--",
        "-c",
        "x=a; while true; do x=\"$x$x\"; done",
    ]);
    assert_eq!(
        bomb.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&bomb.stderr)
    );
    assert!(String::from_utf8_lossy(&bomb.stdout).contains("memory_limit"));
}

/// SHA-256 of `data` in hex, via the `sha256sum` tool the pinned digests were made with.
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}
