//! File trees through the market: a buyer runs `agora job run` (the real binary) with a
//! directory input, a working tree and stdin against a real market node and provider
//! process, and gets the output and stdout that `agora exec` gives locally for the same
//! job — the directory travels as one tar blob named `share/` in the signed order, the
//! working tree as `/`, stdin as `/dev/stdin`, and the provider unpacks and mounts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common_net::{AGORA, TestNet, one_job_per_provider};
use serde_json::Value;

/// The C program of the executor's file-tree tests (`agora-exec/tests/trees/trees.c`).
fn trees_module() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../agora-exec/tests/trees/trees.wasm")
}

/// `share/db/{a,b}.txt`, a `share/latest` link, `work/conf/settings.ini` and a stdin file.
fn make_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let share = dir.join("share");
    std::fs::create_dir_all(share.join("db")).unwrap();
    std::fs::write(share.join("db/a.txt"), b"alpha record\n").unwrap();
    std::fs::write(share.join("db/b.txt"), b"beta record\n").unwrap();
    std::os::unix::fs::symlink("db/a.txt", share.join("latest")).unwrap();
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("conf")).unwrap();
    std::fs::write(work.join("conf/settings.ini"), b"level=3\n").unwrap();
    let stdin = dir.join("stdin.txt");
    std::fs::write(&stdin, b"line one\nline two\n").unwrap();
    (share, work, stdin)
}

fn json_of(output: &std::process::Output, what: &str) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_input_workdir_and_stdin_run_through_the_market() {
    let t = TestNet::start(1, one_job_per_provider).await;
    let files = t.scratch("files");
    let (share, work, stdin) = make_files(&files);
    let share_arg = format!("share={}", share.display());
    let tree_args = [
        "--input",
        share_arg.as_str(),
        "--workdir",
        work.to_str().unwrap(),
        "--stdin",
        stdin.to_str().unwrap(),
        "--disk-limit",
        "64MiB",
    ];

    let out = t.scratch("market-out");
    let run = Command::new(AGORA)
        .args(["job", "run"])
        .arg(trees_module())
        .args(tree_args)
        .args(["--verify", "none", "--json", "--market", &t.net.http_url])
        .arg("--wallet")
        .arg(&t.net.buyer_wallets[0])
        .arg("--output-dir")
        .arg(&out)
        .output()
        .expect("agora job run runs");
    let summary = json_of(&run, "agora job run");
    assert!(run.status.success(), "{summary:#}\n{}", t.logs());
    assert_eq!(summary["state"], "settled", "{summary:#}\n{}", t.logs());
    assert_eq!(summary["exit_code"], 0, "{summary:#}");

    let local_out = t.scratch("local-out");
    let local = Command::new(AGORA)
        .arg("exec")
        .arg(trees_module())
        .args(tree_args)
        .args(["--json", "--no-cache", "--output-dir"])
        .arg(&local_out)
        .output()
        .expect("agora exec runs");
    let report = json_of(&local, "agora exec");
    assert!(local.status.success(), "{report:#}");
    let expected_stdout = "share: alpha record\ninput writable: no\nworkdir: level=3\n\
                           relative: relative\nstdin bytes: 18\nshare entries: 2\n";
    assert_eq!(report["stdout"]["data"], expected_stdout, "{report:#}");
    assert_eq!(summary["stdout"], expected_stdout, "{summary:#}");

    // The output the market handed back is the one the local run wrote.
    let outputs = summary["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1, "{summary:#}");
    let market_file = PathBuf::from(outputs[0].as_str().expect("an output path"));
    assert!(market_file.ends_with("stdin.txt"), "{market_file:?}");
    let bytes = std::fs::read(&market_file).unwrap();
    assert_eq!(bytes, b"line one\nline two\n");
    assert_eq!(bytes, std::fs::read(local_out.join("stdin.txt")).unwrap());
}
