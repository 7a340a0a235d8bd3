//! Sealing and opening throughput on one core: `cargo bench -p agora-seal`.
//!
//! For 1 MiB and 64 MiB blobs, times on one thread `seal` and `open` (each returns a fresh
//! buffer), `sealS`/`openS` (`seal_stream`/`open_stream` into a buffer reused across runs,
//! as an upload or a store write uses them) and, as the baseline measured in the same run,
//! blake3-hashing the same bytes (what the blob store does to every blob anyway). Prints the median of the runs and the spread, in MiB/s.
//! Optional arguments: `-- RUNS` (default 15 for 1 MiB, a third of it for 64 MiB).

use std::time::Instant;

use agora_core::{Hash, Keypair};
use agora_seal::{DataKey, open, seal};

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15);
    let owner = Keypair::from_seed("bench").account();
    let key = DataKey::generate().expect("the OS random source");
    println!("size     op     median MiB/s   min..max MiB/s   runs");
    for (label, size, runs) in [
        ("1 MiB", 1usize << 20, runs * 4),
        ("64 MiB", 64 << 20, runs.div_ceil(3)),
    ] {
        let plain: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let sealed = seal(&key, owner, &plain).expect("seal");
        let report = |op: &str, mut f: Box<dyn FnMut()>| {
            f(); // warm-up: page faults, lazy CPU feature detection
            let mut rates: Vec<f64> = (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    size as f64 / (1u64 << 20) as f64 / start.elapsed().as_secs_f64()
                })
                .collect();
            rates.sort_by(f64::total_cmp);
            println!(
                "{label:<8} {op:<6} {:>10.0}   {:>7.0}..{:<7.0}   {runs}",
                rates[rates.len() / 2],
                rates[0],
                rates[rates.len() - 1]
            );
        };
        report(
            "blake3",
            Box::new(|| {
                std::hint::black_box(Hash::of(std::hint::black_box(&plain)));
            }),
        );
        report(
            "seal",
            Box::new(|| {
                std::hint::black_box(
                    seal(&key, owner, std::hint::black_box(&plain)).expect("seal"),
                );
            }),
        );
        // The streaming calls into a buffer reused across runs, as an upload or a store
        // write would use them: no fresh 64 MiB allocation (and its page faults) per run.
        let sink = std::cell::RefCell::new(Vec::<u8>::with_capacity(sealed.len()));
        report(
            "sealS",
            Box::new(|| {
                let mut sink = sink.borrow_mut();
                sink.clear();
                let plain = std::hint::black_box(&plain[..]);
                agora_seal::seal_stream(&key, owner, plain, &mut *sink).expect("seal");
            }),
        );
        report(
            "openS",
            Box::new(|| {
                let mut sink = sink.borrow_mut();
                sink.clear();
                let sealed = std::hint::black_box(&sealed[..]);
                agora_seal::open_stream(&key, sealed, &mut *sink).expect("open");
            }),
        );
        report(
            "open",
            Box::new(|| {
                std::hint::black_box(open(&key, std::hint::black_box(&sealed)).expect("open"));
            }),
        );
    }
}
