//! Measures blob transfer throughput between two nodes on loopback.
//!
//! ```text
//! cargo run --release -p agora-net --example blob_throughput -- 256 [CHUNK_KIB] [WINDOW]
//! ```
//!
//! The arguments are the blob size in MiB (default 256), the chunk size in KiB and the
//! number of chunks in flight (default: the `NetConfig` defaults). The blob is generated on disk in
//! 1 MiB blocks, imported into the serving node's store, fetched by the other node
//! (chunked, hash-checked) and the wall time of the fetch is reported.

use std::io::Write;
use std::time::Instant;

use agora_core::Keypair;
use agora_net::{NetConfig, Network};

const MIB: u64 = 1 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = arg(1, "blob size in MiB")?.unwrap_or(256);
    let chunk_kib: Option<u32> = arg(2, "chunk size in KiB")?;
    let window: Option<usize> = arg(3, "chunks in flight")?;
    let dir = tempfile::tempdir()?;
    let server_cfg = NetConfig::new(
        Keypair::from_seed("bench-server"),
        dir.path().join("server"),
    );
    let (server, _server_events) = Network::start(server_cfg).await?;
    let mut client_cfg = NetConfig::new(
        Keypair::from_seed("bench-client"),
        dir.path().join("client"),
    );
    client_cfg.bootstrap = vec![server.bootstrap_addr().await?];
    if let Some(kib) = chunk_kib {
        client_cfg.chunk_bytes = kib * 1024;
    }
    if let Some(window) = window {
        client_cfg.fetch_window = window;
    }
    let (chunk, window) = (client_cfg.chunk_bytes, client_cfg.fetch_window);
    let (client, _client_events) = Network::start(client_cfg).await?;

    let src = dir.path().join("blob.bin");
    write_blob(&src, mib)?;
    let hash = server.store().put_file(&src)?;
    std::fs::remove_file(&src)?;

    let started = Instant::now();
    client.fetch_blob(server.peer_id(), hash).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "blob {}: {mib} MiB in {seconds:.2} s = {:.0} MiB/s \
         ({} KiB chunks, {window} in flight, blake3-checked, fsynced, loopback)",
        hash.short(),
        mib as f64 / seconds,
        chunk / 1024
    );
    Ok(())
}

/// The `n`th command-line argument, parsed, if given.
fn arg<T: std::str::FromStr>(n: usize, what: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    std::env::args()
        .nth(n)
        .map(|a| {
            a.parse()
                .map_err(|e| format!("{what} expected, got {a:?}: {e}"))
        })
        .transpose()
}

/// Writes `mib` MiB of varied content, one block at a time.
fn write_blob(path: &std::path::Path, mib: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; MIB as usize];
    for i in 0..mib {
        for (j, byte) in block.iter_mut().enumerate() {
            *byte = (i as usize)
                .wrapping_mul(31)
                .wrapping_add(j.wrapping_mul(7)) as u8;
        }
        file.write_all(&block)?;
    }
    file.flush()
}
