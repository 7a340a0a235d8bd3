//! `agora demo` end to end, through the real binary: a market node and provider agents as
//! separate processes on loopback, every job settles, the ledger it leaves behind
//! verifies, no child process outlives the demo, and an order nobody can serve is
//! refunded, not stuck.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn demo(out_dir: &Path, extra: &[&str]) -> (bool, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "demo",
            "--json",
            "--providers",
            "2",
            "--jobs",
            "2",
            "--width",
            "48",
            "--height",
            "32",
        ])
        .args(["--samples", "2", "--mc-samples", "20000", "--out-dir"])
        .arg(out_dir)
        .args(extra)
        .output()
        .expect("the agora binary runs");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "demo printed no JSON ({e}); stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let survivors = processes_mentioning(out_dir);
    assert!(
        survivors.is_empty(),
        "children outlived the demo: {survivors:?}"
    );
    (output.status.success(), report)
}

/// The command lines of running processes that name `dir` (the demo's children do).
fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains(&needle))
        .collect()
}

#[test]
fn every_job_settles_and_the_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = demo(dir.path(), &[]);
    assert!(ok, "demo failed: {report:#}");
    let submitted = report["jobs"]["submitted"].as_u64().unwrap();
    assert_eq!(
        submitted,
        4 + 2,
        "two tiles per provider plus two Monte Carlo jobs"
    );
    assert_eq!(report["jobs"]["settled"], submitted);
    assert_eq!(report["jobs"]["refunded"], 0);
    assert_eq!(report["ledger"]["verified"], true);
    assert_eq!(report["ledger"]["conservation"], true);
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        report["latency_ms"]["p95"].as_f64().unwrap()
            >= report["latency_ms"]["p50"].as_f64().unwrap()
    );

    // The buyer paid exactly what the providers and the treasury received.
    let balances = report["balances"].as_array().unwrap();
    let total: u64 = balances
        .iter()
        .map(|b| b["balance"].as_u64().unwrap() + b["stake"].as_u64().unwrap())
        .sum();
    assert_eq!(total, report["ledger"]["audit"]["supply"].as_u64().unwrap());
    let paid: u64 = report["jobs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["cost"].as_u64().unwrap())
        .sum();
    assert!(paid > 0);
    assert_eq!(balances[0]["role"], "buyer");
    assert_eq!(
        balances[0]["balance"].as_u64().unwrap(),
        agora_node::config::DEV_USER_FUNDS.0 - paid
    );
    // Every job names the provider process that ran it, and the bands spread over both.
    let providers: std::collections::BTreeSet<_> = report["jobs"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["provider"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(providers.len(), 2, "{report:#}");

    // The frame is a real PNG of the requested size.
    let image = report["image"].as_str().expect("an image path");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(image).unwrap()));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (48, 32));

    // The ledger it leaves behind passes the standalone audit too.
    let verify = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["ledger", "verify", "--data-dir"])
        .arg(dir.path().join("net/market"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[test]
fn orders_nobody_can_serve_are_refunded_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    // Every provider asks at least 0.02 AGR/CU; a cap of 0.001 matches nobody.
    let (ok, report) = demo(dir.path(), &["--max-price", "0.001"]);
    assert!(!ok, "the demo must fail when jobs do not settle");
    assert_eq!(report["jobs"]["settled"], 0);
    assert_eq!(report["jobs"]["refunded"], report["jobs"]["submitted"]);
    let first = &report["jobs"]["list"][0]["outcome"];
    assert!(first.as_str().unwrap().starts_with("refunded:"), "{first}");
    assert_eq!(report["ledger"]["verified"], true);
    assert_eq!(report["ledger"]["conservation"], true);
    assert_eq!(
        report["balances"][0]["balance"].as_u64().unwrap(),
        agora_node::config::DEV_USER_FUNDS.0,
        "the buyer got everything back"
    );
    assert!(report["image"].is_null());
}

#[test]
fn refuses_to_reuse_a_demo_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _) = demo(dir.path(), &[]);
    assert!(ok);
    let again = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["demo", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a demo network"));
}
