//! The deterministic engine profile: every wasmtime setting that can change a result or a
//! fuel count is pinned here, with the reason.
//!
//! | setting | value | why |
//! |---|---|---|
//! | `consume_fuel` | on | fuel is the bill and the work limit; counted per operator, so identical on every machine |
//! | `operator_cost` | `OperatorCost::new()` (wasmtime 48 defaults) | pinned explicitly so a future default change cannot silently change bills: `nop`, `drop`, `block`, `loop`, `unreachable`, `return`, `else`, `end` cost 0, every other operator 1; `memory.copy`/`fill`/`init` and `table.copy`/`fill`/`init`/`grow` cost 1 per byte or element; `memory.grow` 0 per page |
//! | `cranelift_nan_canonicalization` | on | float operations may return any NaN bit pattern; canonicalizing makes NaN payloads identical on x86-64 and aarch64 |
//! | `wasm_relaxed_simd` + `relaxed_simd_deterministic` | on + on | relaxed SIMD results may differ between CPUs; the deterministic mode picks one behaviour everywhere |
//! | threads (`wasm_threads`), `wasm_shared_everything_threads` | off | shared memory makes results depend on scheduling; wasmtime's `threads` cargo feature is not even compiled in, so modules with shared memories or atomics waits fail validation |
//! | `wasm_stack_switching`, `wasm_gc`, exceptions, `wasm_component_model` | off | not needed by WASI p1 commands; fewer features, smaller attack surface (the `gc` cargo feature, which exceptions need, is not compiled in) |
//! | `max_wasm_stack` | 512 KiB | a fixed stack makes deep recursion fail the same way on every run; the overflow point still depends on the architecture's frame sizes, so a stack overflow is reported as its own error and never compared as a result |
//! | `epoch_interruption` | on | a wall-clock safety net (checked at loop heads and function entries); never affects a result that completes |
//! | `cranelift_opt_level` | `Speed` | the default; pinned so compiled code (and the cache key) is stable |
//!
//! Host-side determinism (virtual clocks, seeded random, no ambient files or network) lives
//! in [`crate::sandbox`].

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use wasmtime::{Config, Engine, OperatorCost, OptLevel};

use crate::error::ExecError;

/// The pinned maximum wasm stack in bytes.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// Settings of the engine that may be switched off for measurements only.
///
/// Production runs use [`Profile::DETERMINISTIC`]; the other switches exist so that
/// `agora bench exec` can measure what metering and NaN canonicalization cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Count fuel. Without it jobs are not metered and `fuel_used` is 0.
    pub fuel: bool,
    /// Canonicalize NaNs.
    pub nan_canonicalization: bool,
}

impl Profile {
    /// The profile every real job runs under.
    pub const DETERMINISTIC: Profile = Profile {
        fuel: true,
        nan_canonicalization: true,
    };

    /// Builds the wasmtime configuration of this profile.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .consume_fuel(self.fuel)
            .operator_cost(OperatorCost::new())
            .cranelift_nan_canonicalization(self.nan_canonicalization)
            .wasm_relaxed_simd(true)
            .relaxed_simd_deterministic(true)
            .wasm_shared_everything_threads(false)
            .wasm_stack_switching(false)
            .wasm_gc(false)
            .wasm_component_model(false)
            .max_wasm_stack(MAX_WASM_STACK)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        config
    }

    /// Creates an engine with this profile.
    pub fn engine(&self) -> Result<Engine, ExecError> {
        Engine::new(&self.config()).map_err(|err| ExecError::Engine {
            context: "creating the wasmtime engine",
            message: format!("{err:#}"),
        })
    }

    /// A stable fingerprint of everything that makes compiled code of `engine` reusable:
    /// the wasmtime version, the engine's own compatibility hash (target, flags, tunables)
    /// and this profile. Part of the module cache key.
    pub fn fingerprint(&self, engine: &Engine) -> String {
        // DefaultHasher::new() uses fixed keys, so this is stable for one build of the
        // binary; wasmtime's version is in the hash too, and wasmtime itself re-checks
        // compatibility when it loads a cached artifact.
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.hash(&mut hasher);
        format!("wasmtime{}-{:016x}", wasmtime_version(), hasher.finish())
    }
}

/// The wasmtime version this crate is built against (pinned in the workspace manifest).
pub fn wasmtime_version() -> &'static str {
    "48.0.8"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_profile() {
        let det = Profile::DETERMINISTIC;
        let nofuel = Profile { fuel: false, ..det };
        let e1 = det.engine().unwrap();
        let e2 = nofuel.engine().unwrap();
        assert_eq!(det.fingerprint(&e1), det.fingerprint(&e1));
        assert_ne!(det.fingerprint(&e1), nofuel.fingerprint(&e2));
        assert!(det.fingerprint(&e1).starts_with("wasmtime48.0.8-"));
    }
}
