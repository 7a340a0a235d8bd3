//! Unpack throughput of the image store.
//!
//! Builds a synthetic ~200 MiB image of many files (three layers: 1 600 files of 64 KiB in 40
//! directories, 10 files of 8 MiB, 5 000 files of 4 KiB), then five times: loads it into a fresh
//! store (cold: verify, unpack, publish), loads it again (cached) from memory and from a file.
//! Reports the median.
//!
//! `cargo run --release -p agora-oci --example unpack_bench [-- --gzip] [--dir PATH] [--runs N] [--no-blobs]`
//!
//! `--no-blobs` opens the store with `keep_blobs(false)`: only the rootfs is written.

use std::time::{Duration, Instant};

use agora_oci::{ImageConfig, ImageLimits, ImageStore, LayerCompression, build_oci_archive_with};

const RUNS: usize = 5;
const MIB: f64 = 1024.0 * 1024.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let gzip = args.iter().any(|a| a == "--gzip");
    let keep_blobs = !args.iter().any(|a| a == "--no-blobs");
    let base = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(RUNS);
    let compression = if gzip {
        LayerCompression::Gzip
    } else {
        LayerCompression::None
    };
    let config = ImageConfig {
        cmd: vec!["/bin/true".into()],
        ..Default::default()
    };
    let start = Instant::now();
    let archive = build_oci_archive_with(&layers(), &config, compression);
    println!(
        "image: {:.1} MiB archive ({}), built in {:.1} s; blobs {}",
        archive.len() as f64 / MIB,
        if gzip {
            "gzip layers"
        } else {
            "uncompressed layers"
        },
        start.elapsed().as_secs_f64(),
        if keep_blobs { "kept" } else { "not kept" }
    );
    let (mut cold, mut cached, mut cached_file) = (Vec::new(), Vec::new(), Vec::new());
    // Stores are deleted only at the end: ext4 scans past recently deleted inodes when it
    // allocates new ones, so deleting 400 MiB between runs would slow the next run's creates.
    let mut keep = Vec::new();
    for run in 1..=runs {
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let store = ImageStore::open(&dir.path().join("store"))?.keep_blobs(keep_blobs);
        let first = store.load_archive(&archive, &ImageLimits::default())?;
        let second = store.load_archive(&archive, &ImageLimits::default())?;
        assert!(!first.cached && second.cached);
        let file = dir.path().join("image.tar");
        std::fs::write(&file, &archive)?;
        let from_file = store.load_archive_file(&file, &ImageLimits::default())?;
        assert!(from_file.cached);
        let mibs = first.unpacked_bytes as f64 / MIB / first.unpack_time.as_secs_f64();
        println!(
            "run {run}: cold {:.0} ms = {mibs:.0} MiB/s of {:.0} MiB unpacked; cached {:.2} ms, from file {:.1} ms",
            ms(first.unpack_time),
            first.unpacked_bytes as f64 / MIB,
            ms(second.unpack_time),
            ms(from_file.unpack_time)
        );
        cached_file.push(ms(from_file.unpack_time));
        keep.push(dir);
        cold.push(mibs);
        cached.push(ms(second.unpack_time));
    }
    drop(keep);
    println!(
        "median over {runs} runs: cold {:.0} MiB/s, cached load {:.2} ms (bytes) / {:.1} ms (file)",
        median(&mut cold),
        median(&mut cached),
        median(&mut cached_file)
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn layers() -> Vec<Vec<u8>> {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut medium = tar::Builder::new(Vec::new());
    for i in 0..1600 {
        add(
            &mut medium,
            &format!("usr/share/d{}/f{i}", i % 40),
            &noise(&mut seed, 64 << 10),
        );
    }
    let mut large = tar::Builder::new(Vec::new());
    for i in 0..10 {
        add(
            &mut large,
            &format!("opt/big/blob{i}"),
            &noise(&mut seed, 8 << 20),
        );
    }
    let mut small = tar::Builder::new(Vec::new());
    for i in 0..5000 {
        add(
            &mut small,
            &format!("etc/conf{}/c{i}", i % 100),
            &noise(&mut seed, 4 << 10),
        );
    }
    [medium, large, small]
        .into_iter()
        .map(|b| b.into_inner().expect("in-memory tar"))
        .collect()
}

fn add(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, path, data)
        .expect("in-memory tar");
}

/// xorshift bytes: cheap, and not compressible to nothing.
fn noise(seed: &mut u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}
