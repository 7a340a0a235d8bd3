//! Provider churn under load on a real network of processes, through `agora bench scale`:
//! a market and 12 provider agents (one of them faulty, adaptive verification), 150
//! trivial jobs from 6 buyers, while two providers at a time are SIGKILLed and restarted
//! a second later, over and over.
//!
//! Proves that every job ends settled or refunded (none lost or stuck, nothing left open
//! at the market), that providers were really killed and restarted meanwhile, and, from
//! the market's ledger read here after the bench stopped it: `agora ledger verify`
//! passes, the supply is conserved and no escrow is left locked. The bench's own checks
//! must agree (exit status 0).

use std::process::Command;

use serde_json::Value;

const PROVIDERS: &str = "12";
const JOBS: u64 = 150;

#[test]
fn every_job_settles_or_refunds_and_no_coin_is_lost_while_providers_churn() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["bench", "scale", "--json", "--providers", PROVIDERS])
        .args(["--baseline-providers", "0", "--jobs", &JOBS.to_string()])
        .args(["--buyers", "6", "--faulty", "0.1", "--verify", "adaptive"])
        .args(["--churn", "--churn-every", "600ms", "--churn-down", "1s"])
        .args([
            "--churn-fraction",
            "0.15",
            "--idle",
            "500ms",
            "--warmup",
            "0",
        ])
        .args(["--max-duration", "100s"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("running agora bench scale");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the bench reported a problem ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{stdout}"));
    let run = &report["runs"][0];

    assert_eq!(run["providers"], 12);
    assert_eq!(run["faulty_providers"], 1);
    let settled = run["settled"].as_u64().unwrap();
    let refunded = run["refunded"].as_u64().unwrap();
    assert_eq!(settled + refunded, JOBS, "{run:#}");
    assert_eq!(run["lost_or_stuck"], 0, "{run:#}");
    assert_eq!(run["errors"], 0, "{run:#}");
    // The trivial job settles unless every provider able to run it died on it.
    assert!(settled >= JOBS * 9 / 10, "only {settled} settled: {run:#}");

    let churn = &run["churn"];
    let kills = churn["kills"].as_u64().unwrap();
    assert!(
        kills >= 2,
        "the providers were not churned while the jobs ran: {churn}"
    );
    assert_eq!(churn["restarts"].as_u64(), Some(kills), "{churn}");

    // The ledger, independently of the bench: the command a user runs, then the replay.
    let ledger_dir = dir.path().join("net-12").join("market");
    let verify = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["ledger", "verify", "--data-dir"])
        .arg(&ledger_dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "agora ledger verify failed: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let replay = agora_ledger::verify(&ledger_dir).expect("the ledger replays");
    let s = replay.supply;
    let held = s.balances.0 + s.escrow.0 + s.stakes.0 + s.burned.0;
    assert_eq!(held, s.minted.0, "supply not conserved: {s:?}");
    assert!(s.escrow.is_zero(), "escrow left locked: {s:?}");
    // One escrow per job at least, so every job reached the ledger.
    assert!(replay.txs >= JOBS, "only {} transactions", replay.txs);
}
