//! A local anvil chain as a child process, for tests, benchmarks and devnets.
//!
//! [`Anvil::spawn`] finds the binary (`AGORA_ANVIL`, then the copy `npm ci` puts under
//! `contracts/node_modules`, then `PATH`), starts it on a free 127.0.0.1 port (anvil picks
//! it: `--port 0`), and waits, within a deadline, for the line that says it listens. The
//! process is killed when the handle drops. [`Anvil::pause`] and [`Anvil::resume`] stop
//! and continue it (SIGSTOP/SIGCONT) to simulate an unresponsive RPC.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The npm package that ships the anvil binary (see contracts/package.json).
pub const ANVIL_NPM_PATH: &str = "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

/// How long anvil may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// Why anvil could not be started.
#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    /// No binary anywhere.
    #[error(
        "the anvil binary was not found (looked at $AGORA_ANVIL, {npm} and PATH); install it with `cd contracts && npm ci --ignore-scripts` or point AGORA_ANVIL at one",
        npm = ANVIL_NPM_PATH
    )]
    NotFound,
    /// The process could not be started.
    #[error("could not start anvil at {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// It exited or stayed silent past the deadline.
    #[error("anvil at {path} did not start listening within {secs} s: {detail}")]
    NotReady {
        /// The binary.
        path: PathBuf,
        /// The deadline.
        secs: u64,
        /// What was seen.
        detail: String,
    },
}

/// Options for a local chain.
#[derive(Clone, Debug, Default)]
pub struct AnvilOptions {
    /// Listen on this port instead of a free one (to restart a chain where clients expect it).
    pub port: Option<u16>,
    /// Load this state (written by `--dump-state` or `anvil_dumpState`) at start.
    pub load_state: Option<PathBuf>,
    /// Mine a block every this many seconds besides the automatic one per transaction.
    pub block_time_secs: Option<u64>,
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    binary: PathBuf,
}

impl Anvil {
    /// Where the binary is, if anywhere.
    pub fn find_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("AGORA_ANVIL") {
            return Some(PathBuf::from(path)).filter(|p| p.is_file());
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let npm = repo.join(ANVIL_NPM_PATH);
        if npm.is_file() {
            return Some(npm);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("anvil"))
                .find(|p| p.is_file())
        })
    }

    /// Starts a chain with default options.
    pub fn spawn() -> Result<Anvil, AnvilError> {
        Anvil::spawn_with(&AnvilOptions::default())
    }

    /// Starts a chain and waits until it listens.
    pub fn spawn_with(options: &AnvilOptions) -> Result<Anvil, AnvilError> {
        let binary = Anvil::find_binary().ok_or(AnvilError::NotFound)?;
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port"])
            .arg(options.port.unwrap_or(0).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(state) = &options.load_state {
            command.arg("--load-state").arg(state);
        }
        if let Some(secs) = options.block_time_secs {
            command.args(["--block-time", &secs.to_string()]);
        }
        let mut child = command.spawn().map_err(|source| AnvilError::Spawn {
            path: binary.clone(),
            source,
        })?;
        match wait_for_listening(&mut child) {
            Ok(port) => Ok(Anvil {
                child,
                port,
                binary,
            }),
            Err(detail) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(AnvilError::NotReady {
                    path: binary,
                    secs: START_DEADLINE.as_secs(),
                    detail,
                })
            }
        }
    }

    /// Stops the chain (SIGKILL, as a crash would) and starts a new one on the same port with
    /// `options` (its own port is ignored), so clients find it where they left it.
    pub fn restart(&mut self, options: &AnvilOptions) -> Result<(), AnvilError> {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let options = AnvilOptions {
            port: Some(self.port),
            ..options.clone()
        };
        *self = Anvil::spawn_with(&options)?;
        Ok(())
    }

    /// The JSON-RPC endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The binary it runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes the process (SIGSTOP): RPC requests hang until [`Anvil::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pids fit in pid_t");
        // SAFETY: kill(2) on our own child's pid; a failure (already exited) is harmless.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads anvil's stdout until `Listening on 127.0.0.1:PORT`, within [`START_DEADLINE`].
/// The rest of its output is drained by the reader thread so the pipe never fills.
fn wait_for_listening(child: &mut Child) -> Result<u16, String> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(port) = listening_port(&line) {
                let _ = tx.send(Ok(port));
                sent = true;
            }
        }
        if !sent {
            let _ = tx.send(Err("anvil exited before listening".to_owned()));
        }
    });
    if let Some(stderr) = stderr {
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    }
    match rx.recv_timeout(START_DEADLINE) {
        Ok(result) => result,
        Err(_) => Err("no `Listening on` line".to_owned()),
    }
}

fn listening_port(line: &str) -> Option<u16> {
    line.trim()
        .strip_prefix("Listening on ")?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        assert_eq!(listening_port("Listening on 127.0.0.1:44505"), Some(44505));
        assert_eq!(listening_port("Genesis Number"), None);
    }
}
