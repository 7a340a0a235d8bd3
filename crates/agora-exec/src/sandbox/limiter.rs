//! Memory and table limits, and the peak-memory meter.
//!
//! Exceeding a limit fails the job at once (a trap carrying [`LimitBreach`]) rather than
//! letting `memory.grow` return -1: the job's budget is part of its description, so the
//! failure is deterministic, and a typed error tells the buyer what to raise.

use std::fmt;

/// The most instances, memories and tables a WASI command needs: the job and its WASI
/// trampoline, one memory, and a few tables.
const MAX_INSTANCES: usize = 2;
pub(crate) const MAX_MEMORIES: usize = 1;
pub(crate) const MAX_TABLES: usize = 4;

/// Which limit a job broke, recorded so the run can be classified after the trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitBreach {
    /// Linear memory would have grown past the limit.
    Memory {
        /// Bytes asked for.
        requested: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A table would have grown past the limit.
    Table {
        /// Elements asked for.
        requested: u64,
        /// The limit in elements.
        limit: u64,
    },
}

impl fmt::Display for LimitBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitBreach::Memory { requested, limit } => {
                write!(
                    f,
                    "memory growth to {requested} bytes exceeds the limit of {limit} bytes"
                )
            }
            LimitBreach::Table { requested, limit } => {
                write!(
                    f,
                    "table growth to {requested} elements exceeds the limit of {limit}"
                )
            }
        }
    }
}

impl std::error::Error for LimitBreach {}

/// The store's resource limiter.
#[derive(Debug)]
pub struct JobLimiter {
    memory_limit: u64,
    table_limit: u64,
    peak_memory: u64,
    breach: Option<LimitBreach>,
}

impl JobLimiter {
    /// A limiter allowing `memory_limit` bytes of linear memory and `table_limit` elements
    /// per table.
    pub fn new(memory_limit: u64, table_limit: u64) -> Self {
        JobLimiter {
            memory_limit,
            table_limit,
            peak_memory: 0,
            breach: None,
        }
    }

    /// The largest linear memory reached.
    pub fn peak_memory(&self) -> u64 {
        self.peak_memory
    }

    /// The limit broken, if any.
    pub fn breach(&self) -> Option<LimitBreach> {
        self.breach
    }

    fn fail(&mut self, breach: LimitBreach) -> wasmtime::Result<bool> {
        self.breach = Some(breach);
        Err(wasmtime::Error::new(breach))
    }
}

impl wasmtime::ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory_limit {
            return self.fail(LimitBreach::Memory {
                requested: desired,
                limit: self.memory_limit,
            });
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.table_limit {
            return self.fail(LimitBreach::Table {
                requested: desired,
                limit: self.table_limit,
            });
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn growth_past_the_limit_fails_and_is_recorded() {
        let mut limiter = JobLimiter::new(1 << 20, 10);
        assert!(limiter.memory_growing(0, 65536, None).unwrap());
        assert!(limiter.memory_growing(65536, 2 << 20, None).is_err());
        assert_eq!(
            limiter.breach(),
            Some(LimitBreach::Memory {
                requested: 2 << 20,
                limit: 1 << 20
            })
        );
        assert_eq!(limiter.peak_memory(), 65536);
        assert!(limiter.table_growing(0, 11, None).is_err());
    }
}
