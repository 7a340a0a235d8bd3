//! The deterministic engine profile: every wasmtime setting that can change a result or a
//! fuel count is pinned here, with the reason.
//!
//! | setting | value | why |
//! |---|---|---|
//! | `consume_fuel` | on | fuel is the bill and the work limit; counted per operator, so identical on every machine |
//! | `operator_cost` | `OperatorCost::new()` (wasmtime 48 defaults) | pinned explicitly so a future default change cannot silently change bills: `nop`, `drop`, `block`, `loop`, `unreachable`, `return`, `else`, `end` cost 0, every other operator 1; `memory.copy`/`fill`/`init` and `table.copy`/`fill`/`init`/`grow` cost 1 per byte or element; `memory.grow` 0 per page |
//! | NaN handling ([`NanMode::Guard`]) | guards, `cranelift_nan_canonicalization` off | float operations may return any NaN bit pattern; [`crate::nan_guard`] makes every NaN canonical where its bits become observable (stores, reinterprets, copysign, float globals, SIMD lanes), so results are identical on x86-64 and aarch64 without paying for a check after every float operation |
//! | wasm features ([`WASM_FEATURES`]) | exactly this set, every other proposal pinned off | each one listed is pinned on explicitly, so a change of wasmtime's defaults cannot change what validates; [`crate::precheck`] validates with the same set and refuses the rest before compiling (docs/wasm-features.md) |
//! | MVP, mutable globals, sign extension, non-trapping float-to-int, multi-value, bulk memory, reference types, extended const, tail calls | on | emitted by clang, rustc, Zig and Go; pure integer/control semantics, metered per operator like any other |
//! | fixed-width SIMD (`wasm_simd`) | on | emitted by `-msimd128` and auto-vectorizing compilers; lane NaNs are made canonical where observable like scalar ones |
//! | `wasm_relaxed_simd` + `relaxed_simd_deterministic` | on + on | relaxed SIMD results may differ between CPUs; the deterministic mode picks one behaviour everywhere |
//! | exceptions (`wasm_exceptions`, exnref: `try_table`, `throw`, `throw_ref`) | on, collector [`Collector::DeferredReferenceCounting`] | C++ `-fwasm-exceptions`; exception objects live on wasmtime's GC heap (hence the `gc` and `gc-drc` cargo features), whose growth goes through the job's memory limiter; a throw or catch is an operator with a fixed fuel cost |
//! | legacy exceptions (`try`/`catch`/`delegate`/`rethrow`) | off | wasmtime 48's Cranelift cannot compile them; refused with the rebuild flag (`-mllvm -wasm-use-legacy-eh=false`) |
//! | threads, `wasm_shared_everything_threads` | off | shared memory makes results depend on scheduling; wasmtime's `threads` cargo feature is not even compiled in |
//! | `wasm_gc` (structs, arrays, i31), function references, stack switching, multi-memory, memory64, custom page sizes, wide arithmetic, component model | off | not emitted for WASI p1 commands; fewer features, smaller attack surface (a second memory is refused: the sandbox gives each job one) |
//! | `max_wasm_stack` | 512 KiB | a fixed stack makes deep recursion fail the same way on every run; the overflow point still depends on the architecture's frame sizes, so a stack overflow is reported as its own error and never compared as a result |
//! | `epoch_interruption` | on | a wall-clock safety net (checked at loop heads and function entries); never affects a result that completes |
//! | `cranelift_opt_level` | `Speed` | the default; pinned so compiled code (and the cache key) is stable |
//!
//! Host-side determinism (virtual clocks, seeded random, no ambient files or network) lives
//! in [`crate::sandbox`].

use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use wasmtime::{Collector, Config, Engine, OperatorCost, OptLevel, WasmFeatures};

use crate::error::ExecError;

/// The pinned maximum wasm stack in bytes.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// The wasm proposals the deterministic profile accepts: what clang, rustc, Zig and Go emit
/// for WASI preview-1 commands and stays deterministic and metered. Every other proposal
/// is pinned off. `FLOATS` and `GC_TYPES` are wasmparser's names for plain floats and for
/// reference types that live on the GC heap (exception objects among them).
pub const WASM_FEATURES: WasmFeatures = WasmFeatures::FLOATS
    .union(WasmFeatures::GC_TYPES)
    .union(WasmFeatures::MUTABLE_GLOBAL)
    .union(WasmFeatures::SIGN_EXTENSION)
    .union(WasmFeatures::SATURATING_FLOAT_TO_INT)
    .union(WasmFeatures::MULTI_VALUE)
    .union(WasmFeatures::BULK_MEMORY)
    .union(WasmFeatures::REFERENCE_TYPES)
    .union(WasmFeatures::EXTENDED_CONST)
    .union(WasmFeatures::TAIL_CALL)
    .union(WasmFeatures::SIMD)
    .union(WasmFeatures::RELAXED_SIMD)
    .union(WasmFeatures::EXCEPTIONS);

/// Settings of the engine that may be switched off for measurements only.
///
/// Production runs use [`Profile::DETERMINISTIC`]; the other switches exist so that
/// `agora bench exec` can measure what metering and NaN canonicalization cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Profile {
    /// Count fuel. Without it jobs are not metered and `fuel_used` is 0.
    pub fuel: bool,
    /// How NaN bit patterns are made deterministic.
    pub nan: NanMode,
}

/// How the engine keeps NaN bit patterns from differing between CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NanMode {
    /// Canonicalize a NaN only where its bits become observable ([`crate::nan_guard`]).
    /// What real jobs use.
    Guard,
    /// Cranelift's canonicalization after every float operation: the same observable
    /// results as `Guard` for NaNs made by arithmetic, at 2–3× the run time on float code.
    /// Kept for measurements.
    EveryOperation,
    /// No canonicalization at all: NaN bits follow the CPU. For measurements only.
    Off,
}

impl Profile {
    /// The profile every real job runs under.
    pub const DETERMINISTIC: Profile = Profile {
        fuel: true,
        nan: NanMode::Guard,
    };

    /// Builds the wasmtime configuration of this profile.
    pub fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .consume_fuel(self.fuel)
            .operator_cost(OperatorCost::new())
            .cranelift_nan_canonicalization(self.nan == NanMode::EveryOperation)
            .wasm_features(WASM_FEATURES, true)
            .wasm_features(WasmFeatures::all().difference(WASM_FEATURES), false)
            .relaxed_simd_deterministic(true)
            .collector(Collector::DeferredReferenceCounting)
            .max_wasm_stack(MAX_WASM_STACK)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        config
    }

    /// The bytes to compile for `module`: its NaN-guarded rewrite under [`NanMode::Guard`]
    /// (when it has anything to guard), else the module itself.
    pub fn code_to_compile<'a>(
        &self,
        module: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, ExecError> {
        if self.nan != NanMode::Guard {
            return Ok(std::borrow::Cow::Borrowed(module));
        }
        Ok(match crate::nan_guard::guard(module)? {
            Some(guarded) => std::borrow::Cow::Owned(guarded),
            None => std::borrow::Cow::Borrowed(module),
        })
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
