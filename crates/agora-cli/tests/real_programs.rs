//! Large real WASI programs from public packages (examples/real) run as sample jobs through
//! the real `agora exec` binary, their outputs checked against committed digests.
//!
//! The packages are downloaded (pinned, sha256-checked) by each job's script. Outside CI a
//! package that cannot be fetched skips the test with a message; with CI=true the script
//! treats that as a failure.

use std::path::Path;
use std::process::Command;

/// The exit status run.sh uses for "the package could not be fetched" (automake's skip).
const SKIPPED: i32 = 77;

fn run_sample(name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/real")
        .join(name)
        .join("run.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("AGORA", env!("CARGO_BIN_EXE_agora"))
        .output()
        .expect("running bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(SKIPPED) => eprintln!("SKIPPED {name}: its package cannot be fetched here: {stderr}"),
        code => panic!(
            "{} exited {code:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            script.display()
        ),
    }
}

/// Yosys (YoWASP, a 69 MB module with C++ exceptions) synthesizes a small design for iCE40
/// from its share/ tree in the job's scratch root; netlist and statistics match the digests
/// stock wasmtime gives.
#[test]
fn yosys_synthesis_matches_expected_digests() {
    run_sample("yosys");
}
