//! A 64 MiB blob crosses loopback intact while the process's peak memory grows by far
//! less than the blob: proof that transfers are chunked end to end (store import,
//! serving, fetching, hashing). Alone in its own test binary so that no other test's
//! allocations disturb the peak-RSS measurement.

mod common;

use std::time::Instant;

use common::{no_partial_files, pair, within, write_pattern};

const MIB: u64 = 1 << 20;
const BLOB: u64 = 64 * MIB;
/// Allowed growth of peak RSS during the transfer: half the blob. Holding the blob once,
/// on either side, would need at least 64 MiB. Both nodes live in this process, so the
/// chunked pipeline costs about 5 MiB per chunk in flight (server read and encode,
/// client frame and decode) times the window of 4, plus yamux buffers: about 20 MiB.
const MAX_GROWTH: u64 = BLOB / 2;

/// Peak resident set size of this process, in bytes (Linux `VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("kB");
    kib * 1024
}

/// Resets the peak to the current RSS where the kernel allows it; where it does not,
/// the measurement below is a (looser) bound on growth since process start.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_of_64_mib_transfers_intact_with_bounded_memory() {
    let (server, client) = pair("bulk-server", "bulk-client").await;
    let src = server.dir.path().join("bulk.bin");
    let hash = write_pattern(&src, 64, BLOB);
    server.handle.store().put_file(&src).unwrap();
    std::fs::remove_file(&src).unwrap();

    reset_peak_rss();
    let baseline = peak_rss();
    let started = Instant::now();
    let path = within(
        "the 64 MiB fetch",
        client.handle.fetch_blob(server.handle.peer_id(), hash),
    )
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let growth = peak_rss().saturating_sub(baseline);
    println!(
        "64 MiB blob over loopback: {seconds:.2} s, {:.0} MiB/s, peak RSS growth {:.1} MiB",
        BLOB as f64 / MIB as f64 / seconds,
        growth as f64 / MIB as f64
    );

    assert_eq!(std::fs::metadata(&path).unwrap().len(), BLOB);
    // Re-import the received copy to check its hash independently of the fetcher.
    let check = client.dir.path().join("check.bin");
    std::fs::rename(&path, &check).unwrap();
    assert_eq!(client.handle.store().put_file(&check).unwrap(), hash);
    assert!(no_partial_files(&client));
    assert!(
        growth < MAX_GROWTH,
        "peak RSS grew by {growth} bytes during a {BLOB}-byte transfer: the blob was buffered"
    );
}
