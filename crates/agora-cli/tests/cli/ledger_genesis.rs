//! `agora ledger init --genesis FILE`: a hand-written genesis starts a chain that verifies,
//! and a broken one is refused with a message that says what is wrong.

use std::process::Command;

use agora_core::Amount;
use agora_ledger::Genesis;

fn agora() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agora"))
}

#[test]
fn a_genesis_file_starts_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (genesis, _) = Genesis::dev("from-file", 42, 3, Amount::agr(7));
    let file = dir.path().join("genesis.json");
    std::fs::write(&file, serde_json::to_string_pretty(&genesis).unwrap()).unwrap();
    let data = dir.path().join("ledger");

    let out = agora()
        .args(["ledger", "init", "--json", "--genesis"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["genesis_hash"], genesis.hash().to_string());
    assert_eq!(init["supply_base_units"], 21_000_000_000u64);

    let out = agora()
        .args(["ledger", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("ok: chain from-file height 0"), "{line}");
    assert!(line.contains("supply 21 AGR"), "{line}");

    // A second init into the same directory must not clobber the chain.
    let again = agora()
        .args(["ledger", "init", "--genesis"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a ledger"));
}

#[test]
fn a_broken_genesis_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut genesis, _) = Genesis::dev("bad", 1, 2, Amount(5));
    genesis.params.fee_bps = 20_000;
    let file = dir.path().join("genesis.json");
    std::fs::write(&file, serde_json::to_string(&genesis).unwrap()).unwrap();
    let out = agora()
        .args(["ledger", "init", "--genesis"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("l"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fee_bps is 20000 basis points"), "{err}");
    let out = agora()
        .args(["ledger", "verify", "--data-dir"])
        .arg(dir.path().join("l"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ledger at"));
}
