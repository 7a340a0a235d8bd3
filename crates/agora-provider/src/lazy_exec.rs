//! [`LazyExecutor`]: the WASM executor, built on the first WASM job instead of at start.
//!
//! Building a `WasmExecutor` sets up a wasmtime engine and compiles the WASI trampoline
//! with cranelift, which maps megabytes of compiler code into the process. A provider
//! that has not run a job yet needs none of it; on a machine running a hundred agents
//! (`agora devnet --providers 100`) that is most of an idle agent's resident memory
//! beyond the binary's shared pages (docs/benchmarks.md, "Scale: 100 providers").
//!
//! The directories are still created at start, so a data directory that cannot be
//! written stops the agent there. A build that fails later (an engine error, never the
//! job's fault) fails that job, which the market then gives to another provider; the
//! next job tries again.

use std::sync::{Arc, Mutex};

use agora_exec::{ExecConfig, ExecError, WasmExecutor};

/// A `WasmExecutor` made on first use, then shared by every job.
pub(crate) struct LazyExecutor {
    config: ExecConfig,
    built: Mutex<Option<Arc<WasmExecutor>>>,
}

impl LazyExecutor {
    /// An executor with `config`, not built yet.
    pub(crate) fn new(config: ExecConfig) -> LazyExecutor {
        LazyExecutor {
            config,
            built: Mutex::new(None),
        }
    }

    /// The executor, built now if this is the first call. Blocking (the build compiles):
    /// call it on the blocking pool, as jobs run.
    pub(crate) fn get(&self) -> Result<Arc<WasmExecutor>, ExecError> {
        // Held while building, so concurrent first jobs build one executor, not several.
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(executor) = built.as_ref() {
            return Ok(executor.clone());
        }
        let executor = Arc::new(WasmExecutor::new(self.config.clone())?);
        *built = Some(executor.clone());
        Ok(executor)
    }

    /// Whether the executor has been built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executor_is_built_once_on_first_use() {
        let lazy = LazyExecutor::new(ExecConfig::default());
        assert!(!lazy.is_built());
        let first = lazy.get().unwrap();
        assert!(lazy.is_built());
        assert!(Arc::ptr_eq(&first, &lazy.get().unwrap()));
    }
}
