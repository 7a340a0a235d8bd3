//! [`CancelToken`]: stops a running job from another thread, and the store-side check
//! that enforces it together with the wall-clock limit.
//!
//! A provider must be able to take a slot back from a job it will not be paid for (the
//! market reassigned the order, or the agent is shutting down) without waiting for the
//! job's fuel or wall-clock limit. The executor already interrupts guest code by epoch
//! (see [`ticker`](crate::ticker)); each job's store asks [`Interrupt::check`] once per
//! tick, so a cancelled job stops within about one tick (10 ms) of guest execution and
//! reports [`ExecError::Cancelled`](crate::ExecError::Cancelled), which is never the
//! job's fault. Neither check changes the result of a job that completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

/// A switch shared between a job and whoever may stop it. Cloning shares the switch;
/// a fresh token is not cancelled.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Asks every job holding this token to stop. Idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](CancelToken::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Why the store stopped the guest, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// The job's [`CancelToken`] was cancelled.
    Cancelled,
    /// The job ran past its wall-clock timeout.
    TimedOut,
}

/// The per-job state behind the epoch deadline callback.
#[derive(Debug)]
pub struct Interrupt {
    cancel: CancelToken,
    /// `None` when the timeout is too far away to represent (it never fires).
    deadline: Option<Instant>,
    fired: Option<Interruption>,
}

impl Interrupt {
    /// Stops the guest when `cancel` is cancelled or `wall_timeout` from now has passed.
    pub fn new(cancel: CancelToken, wall_timeout: Duration) -> Self {
        Interrupt {
            cancel,
            deadline: Instant::now().checked_add(wall_timeout),
            fired: None,
        }
    }

    /// Called by the store at every epoch tick: interrupt, or look again next tick.
    pub fn check(&mut self) -> UpdateDeadline {
        if self.cancel.is_cancelled() {
            self.fired = Some(Interruption::Cancelled);
            return UpdateDeadline::Interrupt;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.fired = Some(Interruption::TimedOut);
            return UpdateDeadline::Interrupt;
        }
        UpdateDeadline::Continue(1)
    }

    /// Why the guest was interrupted, if [`check`](Interrupt::check) interrupted it.
    pub fn fired(&self) -> Option<Interruption> {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelling_interrupts_and_says_why() {
        let token = CancelToken::new();
        let mut interrupt = Interrupt::new(token.clone(), Duration::from_secs(60));
        assert!(matches!(interrupt.check(), UpdateDeadline::Continue(1)));
        assert_eq!(interrupt.fired(), None);
        token.clone().cancel();
        assert!(token.is_cancelled());
        assert!(matches!(interrupt.check(), UpdateDeadline::Interrupt));
        assert_eq!(interrupt.fired(), Some(Interruption::Cancelled));
    }

    #[test]
    fn the_deadline_interrupts_as_a_timeout() {
        let mut interrupt = Interrupt::new(CancelToken::new(), Duration::ZERO);
        assert!(matches!(interrupt.check(), UpdateDeadline::Interrupt));
        assert_eq!(interrupt.fired(), Some(Interruption::TimedOut));
        let mut never = Interrupt::new(CancelToken::new(), Duration::MAX);
        assert!(matches!(never.check(), UpdateDeadline::Continue(1)));
    }
}
