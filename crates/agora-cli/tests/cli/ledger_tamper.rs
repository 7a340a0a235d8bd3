//! Tampering: changing any byte of any stored block header or transaction list makes
//! `agora ledger verify` fail, naming that block's height.

use std::path::Path;
use std::process::Command;

use agora_ledger::store::LEDGER_FILE;
use agora_ledger::store::testing::{Record, flip_byte, record_len};

fn agora() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agora"))
}

fn verify(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let out = agora()
        .args(["ledger", "verify", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), json)
}

#[test]
fn every_tampered_block_fails_verify_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let run = |args: &[&str]| {
        let out = agora()
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["ledger", "init", "--users", "6"]);
    run(&[
        "ledger",
        "stress-write",
        "--blocks",
        "6",
        "--txs-per-block",
        "12",
    ]);
    let (code, report) = verify(&data);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["report"]["height"], 6);

    let file = data.join(LEDGER_FILE);
    let pristine = std::fs::read(&file).unwrap();
    let mut cases = 0;
    for record in [Record::Header, Record::Body] {
        for height in 1..=6u64 {
            let len = record_len(&data, record, height).unwrap().unwrap();
            // First, last and a spread of bytes in between, with different bit flips.
            let offsets = [0, 1, len / 4, len / 2, 3 * len / 4, len - 1];
            for (i, offset) in offsets.into_iter().enumerate() {
                std::fs::write(&file, &pristine).unwrap();
                flip_byte(&data, record, height, offset, 1 << (i % 8)).unwrap();
                let (code, out) = verify(&data);
                assert_eq!(code, Some(2), "{record:?} h{height} byte {offset}: {out}");
                assert_eq!(
                    out["bad_height"], height,
                    "{record:?} h{height} byte {offset}: {out}"
                );
                cases += 1;
            }
        }
    }
    std::fs::write(&file, &pristine).unwrap();
    assert_eq!(verify(&data).0, Some(0));
    assert_eq!(cases, 72);
}

#[test]
fn show_prints_blocks_and_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let out = agora()
        .args(["ledger", "init", "--users", "3", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let init: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let user = init["genesis"]["allocations"][0][0]
        .as_str()
        .unwrap()
        .to_owned();
    let out = agora()
        .args(["ledger", "stress-write", "--blocks", "2", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());

    let out = agora()
        .args([
            "ledger",
            "show",
            "--json",
            "--height",
            "2",
            "--account",
            &user,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["block"]["header"]["height"], 2);
    assert!(
        shown["block"]["txs"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
    );
    assert_eq!(shown["account"]["id"], user.as_str());

    let out = agora()
        .args(["ledger", "show", "--height", "99", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no block at height 99"));
}
