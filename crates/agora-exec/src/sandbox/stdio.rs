//! Captured, size-capped stdout and stderr.
//!
//! wasmtime-wasi's own memory pipe traps when full; a job that logs too much should not
//! fail for it, so this pipe keeps the first `cap` bytes, counts the rest and drops them.
//! The caller turns that into a [`Captured`] with a truncation marker.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::outcome::Captured;

/// How much the guest may write per call; any non-zero value works since the pipe never
/// blocks, and this keeps single host copies small.
const WRITE_PERMIT: usize = 64 * 1024;

/// An output stream that keeps at most `cap` bytes.
#[derive(Clone, Debug)]
pub struct CappedPipe {
    state: Arc<Mutex<PipeState>>,
}

#[derive(Debug)]
struct PipeState {
    kept: Vec<u8>,
    cap: usize,
    total: u64,
}

impl CappedPipe {
    /// A pipe keeping at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        CappedPipe {
            state: Arc::new(Mutex::new(PipeState {
                kept: Vec::new(),
                cap,
                total: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // The state stays consistent even if a holder panicked: every update is one append.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn accept(&self, bytes: &[u8]) {
        let mut state = self.lock();
        state.total = state.total.saturating_add(bytes.len() as u64);
        let room = state.cap.saturating_sub(state.kept.len());
        let take = room.min(bytes.len());
        state.kept.extend_from_slice(&bytes[..take]);
    }

    /// What was captured, with a truncation marker if bytes were dropped.
    pub fn finish(&self, stream: &str) -> Captured {
        let mut state = self.lock();
        let kept = std::mem::take(&mut state.kept);
        Captured::new(stream, kept, state.total)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.accept(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let mut pipe = CappedPipe::new(4);
        pipe.write(Bytes::from_static(b"abc")).unwrap();
        pipe.write(Bytes::from_static(b"defgh")).unwrap();
        let captured = pipe.finish("stdout");
        assert!(captured.truncated);
        assert_eq!(captured.total_bytes, 8);
        assert!(captured.data.starts_with(b"abcd\n[agora: stdout truncated"));
    }
}
