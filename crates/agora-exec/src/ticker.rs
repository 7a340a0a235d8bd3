//! The epoch ticker: one background thread per executor that advances the engine's epoch
//! at a fixed rate, so every running store looks at its wall-clock deadline and cancel
//! token once per tick ([`Interrupt::check`](crate::cancel::Interrupt::check)).
//!
//! Epoch interruption is only a safety net behind fuel: it fires if a job runs longer in
//! real time than its timeout (a slow host, or host calls that take long) or is
//! cancelled, and it never changes the result of a job that completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

use crate::error::ExecError;

/// Time between epoch increments; the granularity of wall-clock timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A running ticker; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub fn start(engine: Engine) -> Result<Self, ExecError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("agora-exec-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| ExecError::host("starting the epoch ticker thread", e))?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // A panic in the ticker thread has nothing left to report at this point.
            let _ = thread.join();
        }
    }
}
