//! Determinism across processes: every sample job, run 20 times by separate `agora exec`
//! processes, gives one digest and one fuel count.

use std::path::{Path, PathBuf};
use std::process::Command;

const RUNS: usize = 20;

fn jobs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/jobs")
}

/// Runs `agora exec --json` once and returns (digest, fuel_used, exit_code).
fn run_once(
    cache: &Path,
    module: &str,
    inputs: &[(&str, &str)],
    args: &[&str],
) -> (String, u64, i64) {
    let out_dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.arg("exec")
        .arg(jobs_dir().join(format!("{module}.wasm")))
        .arg("--json");
    cmd.arg("--cache-dir")
        .arg(cache)
        .arg("--output-dir")
        .arg(out_dir.path());
    for (name, file) in inputs {
        cmd.arg("--input")
            .arg(format!("{name}={}", jobs_dir().join(file).display()));
    }
    cmd.arg("--").args(args);
    let output = cmd.output().expect("agora runs");
    assert!(
        output.status.success(),
        "{module}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON outcome");
    let digest = record["digest"].as_str().expect("digest").to_owned();
    let fuel = record["fuel_used"].as_u64().expect("fuel_used");
    assert!(record["compute_units"].as_f64().expect("compute_units") > 0.0);
    (
        digest,
        fuel,
        record["exit_code"].as_i64().expect("exit_code"),
    )
}

#[test]
fn every_sample_gives_one_digest_and_one_fuel_count_across_processes() {
    type Sample<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let samples: [Sample; 5] = [
        ("pathtrace", &[], &["16", "12", "0", "12", "2"]),
        ("montecarlo", &[], &["20000", "42"]),
        ("logagg", &[("log", "inputs/access.log")], &["log", "5"]),
        ("nn", &[("batch", "inputs/batch.f32")], &["batch"]),
        ("hashchain", &[], &["20000", "7"]),
    ];
    let cache = tempfile::tempdir().unwrap();
    for (module, inputs, args) in samples {
        let first = run_once(cache.path(), module, inputs, args);
        assert_eq!(first.2, 0, "{module} exits 0");
        for run in 1..RUNS {
            let again = run_once(cache.path(), module, inputs, args);
            assert_eq!(again, first, "{module}: run {run} differs from run 0");
        }
    }
}
