//! `agora job run` checks the module the way every provider will before it talks to the
//! market: a module no provider would run is refused by name and nothing is submitted or
//! escrowed (the market here does not even exist).

use std::process::Command;

fn job_run(module: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        // Nothing listens on port 9: reaching the market at all would fail differently.
        .args([
            "job",
            "run",
            "--market",
            "http://127.0.0.1:9",
            "--verify",
            "none",
        ])
        .arg(module)
        .output()
        .expect("the agora binary runs")
}

#[test]
fn a_module_no_provider_would_run_is_refused_before_anything_is_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "legacy-eh.wasm",
            r#"(module (tag $e) (memory (export "memory") 1)
                 (func (export "_start") try throw $e catch $e end))"#,
            "clang++ -fwasm-exceptions -mllvm -wasm-use-legacy-eh=false",
        ),
        (
            "threads.wasm",
            r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#,
            "threads (shared memory and atomics)",
        ),
        (
            "reactor.wasm",
            r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#,
            "no `_start` export",
        ),
    ];
    for (name, wat, named) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
        let output = job_run(&path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("would be refused by every provider (nothing was submitted)"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(named), "{name}: {stderr}");
    }
}
