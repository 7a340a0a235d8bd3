//! `agora devnet` as a user runs it: it comes up, the `agora job run` line it prints works
//! as printed, and SIGTERM stops it with every child process gone.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn agora() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agora"))
}

/// Whether process `pid` still exists (zombies included until reaped).
fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn the_printed_job_line_runs_and_sigterm_stops_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut devnet = agora()
        .args([
            "devnet",
            "--json",
            "--providers",
            "2",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("agora devnet starts");
    let mut stdout = BufReader::new(devnet.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a ready line");
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        let _ = devnet.kill();
        panic!("devnet printed {line:?}, not JSON: {e}")
    });
    assert_eq!(ready["event"], "ready");
    let pids: Vec<u64> = std::iter::once(&ready["market"]["pid"])
        .chain(
            ready["providers"]
                .as_array()
                .expect("providers")
                .iter()
                .map(|p| &p["pid"]),
        )
        .map(|p| p.as_u64().expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 3);

    // The suggested line, run from the repository root as the README says.
    let suggested = ready["try"].as_str().expect("a try line");
    let words: Vec<&str> = suggested.split_whitespace().collect();
    assert_eq!(&words[..3], ["agora", "job", "run"], "{suggested}");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    // Our own flags go before the job's arguments (after `--`).
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let out_dir = dir.path().join("out").display().to_string();
    let run = agora()
        .current_dir(root)
        .args(&words[1..split])
        .args(["--output-dir", &out_dir, "--json"])
        .args(&words[split..])
        .output()
        .expect("agora job run runs");
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "job run printed no JSON ({e}): {}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert!(run.status.success(), "{summary:#}");
    assert_eq!(summary["state"], "settled", "{summary:#}");

    // SIGTERM: the devnet stops its children and exits 0.
    // SAFETY: signalling the child we started and have not reaped.
    unsafe {
        libc::kill(devnet.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = devnet.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "devnet did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let survivors: Vec<u64> = pids.into_iter().filter(|&p| alive(p)).collect();
    assert!(
        survivors.is_empty(),
        "children outlived the devnet: {survivors:?}"
    );
}
