//! Crash safety: a real `agora` process writes blocks while this test SIGKILLs it at
//! random moments. After every kill the ledger must reopen at its last committed block,
//! `agora ledger verify` must pass (so no partial block is visible) and the supply must
//! add up.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KILLS: usize = 50;

fn agora() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agora"))
}

/// splitmix64, seeded from the clock; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn verify(dir: &Path) -> serde_json::Value {
    let out = agora()
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn supply_adds_up(report: &serde_json::Value) -> bool {
    let s = &report["report"]["supply"];
    let get = |k: &str| s[k].as_u64().unwrap() as u128;
    get("minted") == get("balances") + get("escrow") + get("stakes") + get("burned")
}

#[test]
fn sigkill_at_random_moments_never_leaves_a_partial_block() {
    let seed = std::env::var("AGORA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (set AGORA_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let init = agora()
        .args(["ledger", "init", "--users", "8", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let started = Instant::now();
    let mut last_height = 0;
    let mut killed_while_writing = 0;
    for round in 0..KILLS {
        let mut child = agora()
            .args([
                "ledger",
                "stress-write",
                "--txs-per-block",
                "8",
                "--data-dir",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Sometimes kill while it is still opening the ledger, mostly mid-stream.
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 120));
        if child.try_wait().unwrap().is_none() {
            killed_while_writing += 1;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: stress-write exited by itself"
        );

        let report = verify(&data);
        let height = report["report"]["height"].as_u64().unwrap();
        assert!(
            height >= last_height,
            "round {round}: height went back from {last_height} to {height}"
        );
        assert!(
            supply_adds_up(&report),
            "round {round}: conservation broken: {report}"
        );
        last_height = height;
    }
    assert!(
        killed_while_writing >= KILLS * 9 / 10,
        "only {killed_while_writing} kills hit a running writer"
    );
    assert!(
        last_height > KILLS as u64,
        "the writer made too little progress ({last_height} blocks) to test anything"
    );
    eprintln!(
        "{KILLS} kills, height {last_height}, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
