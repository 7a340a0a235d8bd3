//! Checks WASM modules the way a provider will before compiling them, and times the check:
//!
//! ```text
//! cargo run --release -p agora-exec --example precheck -- MODULE.wasm...
//! ```
//!
//! Prints, per module, `ok` or the refusal (the feature, import or problem, and what to do),
//! with the size and the time the check took; exits 1 if any module is refused.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    // The WASI function table is built once per process; keep that out of the timings.
    if let Err(err) = agora_exec::precheck::WasiFunctions::standard() {
        eprintln!("{err}");
        return ExitCode::FAILURE;
    }
    let mut refused = false;
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                eprintln!("{path}: {err}");
                refused = true;
                continue;
            }
        };
        let started = Instant::now();
        let verdict = agora_exec::precheck::check(&bytes);
        let took = started.elapsed();
        match verdict {
            Ok(()) => println!("{path}: ok ({} bytes, checked in {took:.3?})", bytes.len()),
            Err(err) => {
                refused = true;
                println!(
                    "{path}: {err} ({} bytes, checked in {took:.3?})",
                    bytes.len()
                );
            }
        }
    }
    if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
