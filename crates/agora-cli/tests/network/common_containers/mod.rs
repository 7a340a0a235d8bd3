//! Helpers of the container suites: the sample images, hostile and custom images built
//! from raw tar layers (`agora_oci::build_oci_archive`), and the buyer's side through the
//! real `agora` binary (`job run --image … --json`, `job status --json`), each run
//! bounded in time.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use agora_oci::ImageConfig;
use serde_json::Value;

use crate::common_net::{AGORA, TestNet};

/// The sample images and inputs (`examples/containers`).
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/containers")
}

/// `examples/containers/busybox-hash.oci.tar`.
pub fn busybox_hash() -> PathBuf {
    examples().join("busybox-hash.oci.tar")
}

/// The pinned sha256 of `NAME` (e.g. `busybox-hash/hashes.txt`) in
/// `expected-outputs.sha256`.
pub fn expected_output_sha256(name: &str) -> String {
    let text = std::fs::read_to_string(examples().join("expected-outputs.sha256"))
        .expect("expected-outputs.sha256");
    text.lines()
        .find_map(|line| {
            let (hash, file) = line.split_once("  ")?;
            (file == name).then(|| hash.to_string())
        })
        .unwrap_or_else(|| panic!("{name} is not in expected-outputs.sha256"))
}

/// sha256 of `bytes` (hex) through the system's `sha256sum`, so the tests do not need a
/// hashing crate of their own.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("feeding sha256sum");
    let out = child.wait_with_output().expect("sha256sum finishes");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// One raw tar entry, its name and link target written into the header as they are
/// (the `tar` crate's path setters refuse `..` and absolute names, which is the point).
pub fn raw_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    link: Option<&str>,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    {
        let gnu = header.as_gnu_mut().expect("a GNU header");
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    if kind == tar::EntryType::Char || kind == tar::EntryType::Block {
        header.set_device_major(1).expect("device major");
        header.set_device_minor(3).expect("device minor");
    }
    header.set_cksum();
    builder.append(&header, data).expect("appending to a Vec");
}

/// One raw tar entry: `(name, kind, mode, link target, data)`.
pub type RawEntry<'a> = (&'a str, tar::EntryType, u32, Option<&'a str>, &'a [u8]);

/// A layer of raw entries.
pub fn raw_layer(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, mode, link, data) in entries {
        raw_entry(&mut builder, name, *kind, *mode, *link, data);
    }
    builder.into_inner().expect("a finished tar")
}

/// A layer with the host's static busybox at `/bin/busybox` and applet links for what the
/// custom images run.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let dir = tar::EntryType::Directory;
    let link = tar::EntryType::Symlink;
    let mut entries: Vec<RawEntry<'_>> = vec![
        ("bin/", dir, 0o755, None, &[]),
        (
            "bin/busybox",
            tar::EntryType::Regular,
            0o755,
            None,
            &busybox,
        ),
    ];
    let applets = [
        "bin/sh",
        "bin/sleep",
        "bin/echo",
        "bin/head",
        "bin/cat",
        "bin/wget",
        "bin/nc",
    ];
    for applet in applets {
        entries.push((applet, link, 0o777, Some("busybox"), &[]));
    }
    raw_layer(&entries)
}

/// An image config running `entrypoint` with the samples' environment.
pub fn config(entrypoint: &[&str]) -> ImageConfig {
    ImageConfig {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("LC_ALL".into(), "C".into()),
        ],
        ..ImageConfig::default()
    }
}

/// Writes an OCI archive of `layers` and `config` to `dir/NAME.oci.tar`.
pub fn write_image(dir: &Path, name: &str, layers: &[Vec<u8>], config: &ImageConfig) -> PathBuf {
    let path = dir.join(format!("{name}.oci.tar"));
    std::fs::write(&path, agora_oci::build_oci_archive(layers, config)).expect("writing an image");
    path
}

/// What `agora job run --json` printed and how it exited.
#[derive(Debug)]
pub struct CliRun {
    /// The exit code (0 settled and exit 0, 1 the job exited non-zero, 2 refunded).
    pub code: Option<i32>,
    /// Its JSON on stdout (`Null` when it printed none).
    pub json: Value,
    /// Its stderr.
    pub stderr: String,
}

impl CliRun {
    /// A field of the summary as text ("" when absent).
    pub fn text(&self, field: &str) -> String {
        match &self.json[field] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// Runs the real `agora` binary with `args`, for at most `limit`.
pub async fn agora(t: &TestNet, args: &[String], limit: Duration) -> CliRun {
    let mut command = tokio::process::Command::new(AGORA);
    command.args(args).kill_on_drop(true);
    let what = format!("agora {}", args.join(" "));
    let output = t
        .within(limit, &what, command.output())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    CliRun {
        code: output.status.code(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `agora job run --image IMAGE FLAGS --json … -- ARGS` as the first buyer, outputs
/// under a fresh scratch directory.
pub async fn job_run(
    t: &TestNet,
    image: &Path,
    flags: &[&str],
    job_args: &[&str],
    limit: Duration,
) -> CliRun {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = t.scratch(&format!("out-{n}"));
    let mut args: Vec<String> = vec!["job".into(), "run".into(), "--image".into()];
    args.push(image.display().to_string());
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend([
        "--json".into(),
        "--market".into(),
        t.net.http_url.clone(),
        "--wallet".into(),
        t.net.buyer_wallets[0].display().to_string(),
        "--output-dir".into(),
        out.display().to_string(),
    ]);
    if !job_args.is_empty() {
        args.push("--".into());
        args.extend(job_args.iter().map(|s| s.to_string()));
    }
    agora(t, &args, limit).await
}

/// `agora job status ORDER --json`: the market's order view, as JSON.
pub async fn job_status(t: &TestNet, order: &str) -> Value {
    let args: Vec<String> = vec![
        "job".into(),
        "status".into(),
        order.into(),
        "--json".into(),
        "--market".into(),
        t.net.http_url.clone(),
    ];
    let run = agora(t, &args, Duration::from_secs(30)).await;
    assert_eq!(run.code, Some(0), "agora job status: {run:#?}");
    run.json
}

/// The container metering in a result's signed receipt (hex of the canonical encoding).
pub fn receipt_of(result: &Value) -> agora_core::Receipt {
    let hex_text = result["receipt"].as_str().expect("a receipt");
    let bytes = hex::decode(hex_text).expect("the receipt is hex");
    let signed: agora_core::SignedReceipt =
        agora_core::canonical::decode(&bytes).expect("a canonical signed receipt");
    signed.body
}
