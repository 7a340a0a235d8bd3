//! Standard output that a closed pipe cannot turn into a crash.
//!
//! The `agora` binary keeps SIGPIPE ignored, as every Rust program starts: a socket whose
//! peer went away then fails one write with `EPIPE`, which the HTTP stacks report as an
//! error, instead of raising a signal whose default action kills the whole process (a
//! market node killed by a client that stopped reading a download, a buyer killed by a
//! node that refused an upload early).
//!
//! With SIGPIPE ignored, a closed *stdout* (`agora ledger show | head`) is an error too,
//! and `println!` would panic on it. [`outln!`] and [`out!`] write to stdout instead and
//! treat a closed stdout as the reader having seen enough:
//! - a command that prints a result exits at once, quietly, with status 0, like any Unix
//!   filter (its child processes die with it: they are started with `PR_SET_PDEATHSIG`);
//! - a long-running process ([`keep_running_without_stdout`]: nodes, devnet) keeps
//!   running and drops what it would have printed, since its work does not depend on
//!   anyone reading its status lines.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether a closed stdout is ignored rather than ending the process.
static KEEP_RUNNING: AtomicBool = AtomicBool::new(false);

/// Makes a closed stdout a reason to stop printing, not to exit: for processes whose
/// job is to keep serving (a market node, a provider agent, a devnet).
pub fn keep_running_without_stdout() {
    KEEP_RUNNING.store(true, Ordering::Relaxed);
}

/// Writes `args` to stdout; the target of [`out!`] and [`outln!`].
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let written = stdout.write_fmt(args).and_then(|()| stdout.flush());
    if let Err(err) = written {
        closed_or_failed(&err);
    }
}

fn closed_or_failed(err: &io::Error) {
    if err.kind() == io::ErrorKind::BrokenPipe {
        if KEEP_RUNNING.load(Ordering::Relaxed) {
            return;
        }
        // The reader has what it wanted; there is nothing left to report to anyone.
        std::process::exit(0);
    }
    // Any other failure (a full disk behind a redirect) is worth a word on stderr, but
    // a status line that could not be written is no reason to abandon the work.
    eprintln!("warning: could not write to stdout: {err}");
}

/// `print!` to stdout, without panicking or dying when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` to stdout, without panicking or dying when stdout is closed.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
