//! WebAssembly's wasi-testsuite (wasm32-wasip1: C, Rust and AssemblyScript tests) run through
//! the real `agora exec` binary, each result checked against the test's specification and
//! compared with stock wasmtime's (conformance/reference.py).
//!
//! conformance/expected-failures.toml lists every test that fails its specification under
//! the deterministic profile and every test whose result differs from the reference, with
//! the reason. The test fails when an unlisted test fails or differs, and also when a listed
//! one no longer does, so the list stays true. See docs/conformance.md.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Deserialize;

/// Two workers: CI machines have two cores and each test is one short process per runtime.
const WORKERS: usize = 2;
const SUITES: [&str; 3] = ["c", "rust", "assemblyscript"];

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

/// What a test expects, from its .json file (the legacy form, or `operations` of the kinds
/// preview 1 tests use: run, wait, read). Missing fields take the specification's defaults,
/// except that a stream is checked only when the file names it, as upstream's runner does
/// (a test's diagnostic output is not part of what it asserts).
#[derive(Debug, Default, Clone)]
struct Spec {
    args: Vec<String>,
    env: BTreeMap<String, String>,
    root: Option<String>,
    exit_code: i64,
    stdout: Option<String>,
    stderr: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    root: Option<String>,
    #[serde(default)]
    exit_code: i64,
    stdout: Option<String>,
    stderr: Option<String>,
    operations: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    proposals: Vec<String>,
}

impl Spec {
    fn load(path: &Path) -> Result<Spec, String> {
        if !path.exists() {
            return Ok(Spec::default());
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: SpecFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if !file.proposals.is_empty() {
            return Err(format!(
                "{}: proposals {:?} are not part of preview 1",
                path.display(),
                file.proposals
            ));
        }
        let mut spec = Spec {
            args: file.args,
            env: file.env,
            root: file.root,
            exit_code: file.exit_code,
            stdout: file.stdout,
            stderr: file.stderr,
        };
        for op in file.operations.unwrap_or_default() {
            spec.apply_operation(&op)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(spec)
    }

    fn apply_operation(&mut self, op: &serde_json::Value) -> Result<(), String> {
        let field = |name: &str| op.get(name);
        match field("type").and_then(|t| t.as_str()) {
            Some("run") => {
                if let Some(args) = field("args") {
                    self.args = serde_json::from_value(args.clone()).map_err(|e| e.to_string())?;
                }
                if let Some(env) = field("env") {
                    self.env = serde_json::from_value(env.clone()).map_err(|e| e.to_string())?;
                }
                self.root = field("root").and_then(|r| r.as_str()).map(str::to_owned);
            }
            Some("wait") => {
                self.exit_code = field("exit_code").and_then(|c| c.as_i64()).unwrap_or(0);
            }
            Some("read") => {
                let payload = field("payload").and_then(|p| p.as_str()).unwrap_or("");
                match field("id").and_then(|i| i.as_str()).unwrap_or("stdout") {
                    "stdout" => self.stdout = Some(payload.to_owned()),
                    "stderr" => self.stderr = Some(payload.to_owned()),
                    other => return Err(format!("read of unknown stream {other:?}")),
                }
            }
            other => {
                return Err(format!(
                    "operation {other:?} is not supported by this runner"
                ));
            }
        }
        Ok(())
    }
}

/// One test case: `suite/name`, its module and specification.
struct Case {
    id: String,
    dir: PathBuf,
    wasm: PathBuf,
    spec: Spec,
}

fn discover() -> Vec<Case> {
    let root = conformance_dir().join("wasi-testsuite");
    let mut cases = Vec::new();
    for suite in SUITES {
        let dir = root.join(suite);
        remove_cleanup_files(&dir);
        let mut wasms: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run conformance/import.py)", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        wasms.sort();
        for wasm in wasms {
            let stem = wasm.file_stem().unwrap().to_string_lossy().into_owned();
            let spec = Spec::load(&wasm.with_extension("json")).unwrap_or_else(|e| panic!("{e}"));
            cases.push(Case {
                id: format!("{suite}/{stem}"),
                dir: dir.clone(),
                wasm,
                spec,
            });
        }
    }
    cases
}

/// The specification asks runners to delete `*.cleanup` artifacts before running; both
/// runtimes here work on copies of the roots, so there should never be any.
fn remove_cleanup_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            remove_cleanup_files(&path);
        } else if path.extension().is_some_and(|x| x == "cleanup") {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// How a run ended and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunResult {
    /// The exit code, or None when the job trapped (or was refused).
    exit_code: Option<i64>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Why it did not exit (trap, refusal), for the report only.
    failure: Option<String>,
}

impl RunResult {
    fn meets(&self, spec: &Spec) -> Result<(), String> {
        let mut wrong = Vec::new();
        if self.exit_code != Some(spec.exit_code) {
            wrong.push(format!(
                "exit code {} (want {})",
                self.exit_code.map_or("none".into(), |c| c.to_string()),
                spec.exit_code
            ));
        }
        for (name, got, want) in [
            ("stdout", &self.stdout, &spec.stdout),
            ("stderr", &self.stderr, &spec.stderr),
        ] {
            if let Some(want) = want.as_ref().filter(|w| w.as_bytes() != got.as_slice()) {
                wrong.push(format!("{name} {:?} (want {want:?})", lossy(got)));
            }
        }
        if let Some(failure) = &self.failure {
            wrong.push(failure.clone());
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    }

    /// Differences from the reference's result; the failure messages are each runtime's own
    /// wording and are not compared.
    fn differences(&self, reference: &RunResult) -> Option<String> {
        let mut diffs = Vec::new();
        if self.exit_code != reference.exit_code {
            diffs.push(format!(
                "exit code {:?} vs reference {:?}",
                self.exit_code, reference.exit_code
            ));
        }
        if self.stdout != reference.stdout {
            diffs.push(format!(
                "stdout {:?} vs reference {:?}",
                lossy(&self.stdout),
                lossy(&reference.stdout)
            ));
        }
        if self.stderr != reference.stderr {
            diffs.push(format!(
                "stderr {:?} vs reference {:?}",
                lossy(&self.stderr),
                lossy(&reference.stderr)
            ));
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

fn lossy(bytes: &[u8]) -> String {
    const SHOWN: usize = 300;
    let text = String::from_utf8_lossy(bytes);
    if text.len() > SHOWN {
        format!("{}…", &text[..text.floor_char_boundary(SHOWN)])
    } else {
        text.into_owned()
    }
}

/// Runs a case through `agora exec --json`.
fn run_agora(case: &Case, cache: &Path, out: &Path) -> RunResult {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    cmd.arg("exec")
        .arg(&case.wasm)
        .arg("--json")
        .arg("--timeout")
        .arg("60")
        .arg("--cache-dir")
        .arg(cache)
        .arg("--output-dir")
        .arg(out);
    for (k, v) in &case.spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(root) = &case.spec.root {
        cmd.arg("--workdir").arg(case.dir.join(root));
    }
    cmd.arg("--").args(&case.spec.args);
    let output = cmd.output().expect("spawning agora exec");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let Ok(record) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        return RunResult {
            exit_code: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            failure: Some(format!(
                "agora exec exited {:?} without a JSON result: {}",
                output.status.code(),
                stderr.trim()
            )),
        };
    };
    // A failed job's captured stdio sits inside its "error" record.
    let body = record.get("error").unwrap_or(&record);
    let stream = |name: &str| {
        body.get(name)
            .and_then(|s| s.get("data"))
            .map(captured_bytes)
    };
    // The first line says what happened; the wasm backtrace under it is noise in a report.
    let failure = record.get("error").map(|e| {
        let message = e["message"].as_str().unwrap_or("?");
        format!(
            "{}: {}",
            e["kind"].as_str().unwrap_or("?"),
            message.lines().next().unwrap_or("")
        )
    });
    RunResult {
        exit_code: record.get("exit_code").and_then(|c| c.as_i64()),
        stdout: stream("stdout").unwrap_or_default(),
        stderr: stream("stderr").unwrap_or_default(),
        failure,
    }
}

/// Captured stdio in `agora exec --json`: a string, or `{"hex": ...}` when not UTF-8.
fn captured_bytes(data: &serde_json::Value) -> Vec<u8> {
    match data {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => hex::decode(other["hex"].as_str().expect("captured data is text or hex"))
            .expect("captured hex decodes"),
    }
}

/// Runs a case under conformance/reference.py (stock wasmtime-py).
fn run_reference(case: &Case) -> RunResult {
    let mut cmd = Command::new("python3");
    cmd.arg(conformance_dir().join("reference.py"))
        .arg(&case.wasm);
    for (k, v) in &case.spec.env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    if let Some(root) = &case.spec.root {
        cmd.arg("--root").arg(case.dir.join(root));
    }
    cmd.arg("--").args(&case.spec.args);
    let output = cmd
        .output()
        .expect("spawning python3 conformance/reference.py");
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "reference.py gave no result for {}: {}",
            case.id,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let hex_field = |name: &str| hex::decode(record[name].as_str().unwrap()).unwrap();
    RunResult {
        exit_code: record["exit_code"].as_i64(),
        stdout: hex_field("stdout_hex"),
        stderr: hex_field("stderr_hex"),
        failure: record
            .get("trap")
            .map(|t| format!("trap: {}", t.as_str().unwrap_or("?"))),
    }
}

/// Whether stock wasmtime-py can be run. In CI it must be (.ci/run installs it).
fn reference_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import wasmtime"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but wasmtime-py is missing: .ci/run installs it with pip"
        );
        eprintln!(
            "wasi_testsuite: wasmtime-py is not installed (pip install wasmtime==48.0.0): \
             SKIPPING the comparison with the reference runtime; specifications are still checked"
        );
    }
    found
}

/// Whether this `agora exec` can give a job a root directory (`--workdir`). Until it can,
/// tests with a root are reported as not run rather than failed.
fn agora_has_workdir() -> bool {
    let help = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["exec", "--help"])
        .output()
        .expect("running agora exec --help");
    String::from_utf8_lossy(&help.stdout).contains("--workdir")
}

/// One entry of conformance/expected-failures.toml.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Expectation {
    /// "fail" when Agora does not meet the test's specification, else "pass" (default).
    #[serde(default = "pass")]
    agora: String,
    /// "differs" when Agora's result differs from the reference's, else "same" (default).
    #[serde(default = "same")]
    reference: String,
    reason: String,
}

fn pass() -> String {
    "pass".into()
}
fn same() -> String {
    "same".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectationsFile {
    #[serde(default)]
    test: BTreeMap<String, Expectation>,
}

fn load_expectations(cases: &[Case]) -> BTreeMap<String, Expectation> {
    let path = conformance_dir().join("expected-failures.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file: ExpectationsFile =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (id, exp) in &file.test {
        assert!(
            cases.iter().any(|c| &c.id == id),
            "{}: {id} is not a test in conformance/wasi-testsuite",
            path.display()
        );
        assert!(
            matches!(exp.agora.as_str(), "pass" | "fail")
                && matches!(exp.reference.as_str(), "same" | "differs"),
            "{}: {id}: agora must be \"pass\" or \"fail\", reference \"same\" or \"differs\"",
            path.display()
        );
        assert!(!exp.reason.trim().is_empty(), "{id}: give a reason");
    }
    file.test
}

/// What happened to one case.
struct Verdict {
    id: String,
    agora: Result<(), String>,
    /// None when the reference was not run.
    reference_diff: Option<Option<String>>,
    reference_spec: Option<Result<(), String>>,
}

fn run_all(cases: &[Case], with_reference: bool) -> Vec<Verdict> {
    let next = AtomicUsize::new(0);
    let verdicts = Mutex::new(Vec::new());
    let scratch = tempfile::tempdir().unwrap();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                while let Some(case) = cases.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let out = scratch.path().join("out").join(case.id.replace('/', "-"));
                    let agora = run_agora(case, &scratch.path().join("cache"), &out);
                    let reference = with_reference.then(|| run_reference(case));
                    verdicts.lock().unwrap().push(Verdict {
                        id: case.id.clone(),
                        agora: agora.meets(&case.spec),
                        reference_diff: reference.as_ref().map(|r| agora.differences(r)),
                        reference_spec: reference.map(|r| r.meets(&case.spec)),
                    });
                }
            });
        }
    });
    let mut verdicts = verdicts.into_inner().unwrap();
    verdicts.sort_by(|a, b| a.id.cmp(&b.id));
    verdicts
}

/// The problems in one verdict against its expectation (none when the list is right).
fn problems(v: &Verdict, exp: Option<&Expectation>) -> Vec<String> {
    let mut out = Vec::new();
    let listed_fail = exp.is_some_and(|e| e.agora == "fail");
    match (&v.agora, listed_fail) {
        (Err(why), false) => out.push(format!("{}: FAILS (not listed): {why}", v.id)),
        (Ok(()), true) => out.push(format!(
            "{}: passes but is listed as agora = \"fail\": update conformance/expected-failures.toml",
            v.id
        )),
        _ => {}
    }
    if let Some(diff) = &v.reference_diff {
        let listed_differs = exp.is_some_and(|e| e.reference == "differs");
        match (diff, listed_differs) {
            (Some(d), false) => out.push(format!(
                "{}: DIFFERS from the reference (not listed): {d}",
                v.id
            )),
            (None, true) => out.push(format!(
                "{}: matches the reference but is listed as reference = \"differs\"",
                v.id
            )),
            _ => {}
        }
    }
    out
}

struct Summary<'a>(&'a [Verdict], usize);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Summary(verdicts, not_run) = *self;
        let passed = verdicts.iter().filter(|v| v.agora.is_ok()).count();
        let total = verdicts.len() + not_run;
        writeln!(
            f,
            "wasi-testsuite (wasm32-wasip1) through agora exec: {passed}/{total} pass"
        )?;
        for v in verdicts {
            if let Err(why) = &v.agora {
                writeln!(f, "  agora fails  {}: {why}", v.id)?;
            }
            if let Some(Some(diff)) = &v.reference_diff {
                writeln!(f, "  differs      {}: {diff}", v.id)?;
            }
            if let Some(Err(why)) = &v.reference_spec {
                writeln!(f, "  (reference fails {}: {why})", v.id)?;
            }
        }
        Ok(())
    }
}

#[test]
fn wasi_testsuite_through_agora_exec() {
    let cases = discover();
    assert!(cases.len() >= 70, "only {} tests found", cases.len());
    let expectations = load_expectations(&cases);
    let with_reference = reference_available();
    let (runnable, waiting): (Vec<Case>, Vec<Case>) = if agora_has_workdir() {
        (cases, Vec::new())
    } else {
        cases.into_iter().partition(|c| c.spec.root.is_none())
    };
    if !waiting.is_empty() {
        eprintln!(
            "wasi_testsuite: agora exec has no --workdir yet: {} tests that need a root \
             directory are NOT RUN (counted as failing)",
            waiting.len()
        );
    }
    let verdicts = run_all(&runnable, with_reference);
    eprintln!("{}", Summary(&verdicts, waiting.len()));
    let problems: Vec<String> = verdicts
        .iter()
        .flat_map(|v| problems(v, expectations.get(&v.id)))
        .collect();
    assert!(
        problems.is_empty(),
        "conformance/expected-failures.toml is not true:\n{}",
        problems.join("\n")
    );
}
