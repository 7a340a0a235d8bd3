//! Where the cold-compile time of a module goes: the deterministic profile against the same
//! engine without fuel metering, and without epoch interruption too (what a stock runtime
//! compiles by default).
//!
//! ```sh
//! cargo run --release -p agora-exec --example compile_cost -- MODULE.wasm
//! ```
//!
//! Each variant compiles once, in this process, without any cache; the NaN-guard rewrite is
//! timed on its own.

use std::time::Instant;

use agora_exec::{NanMode, Profile};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: compile_cost MODULE.wasm")?;
    let bytes = std::fs::read(&path)?;
    let unguarded = Profile {
        fuel: false,
        nan: NanMode::Off,
    };
    let variants = [
        (
            "deterministic (NaN guards, fuel, epochs)",
            Profile::DETERMINISTIC,
            true,
        ),
        ("no fuel, epochs", unguarded, true),
        ("no fuel, no epochs", unguarded, false),
    ];
    println!("{path}: {} bytes", bytes.len());
    for (name, profile, epochs) in variants {
        let mut config = profile.config();
        config.epoch_interruption(epochs);
        let engine = wasmtime::Engine::new(&config)?;
        let started = Instant::now();
        let code = profile.code_to_compile(&bytes)?;
        let rewrite = started.elapsed();
        wasmtime::Module::new(&engine, &code)?;
        let compile = started.elapsed() - rewrite;
        println!(
            "{name:42} rewrite {:7.2} s   compile {:7.2} s",
            rewrite.as_secs_f64(),
            compile.as_secs_f64()
        );
    }
    Ok(())
}
