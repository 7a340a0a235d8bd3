//! What the demo buyer asks the market to run.
//!
//! A frame of the path-tracer sample split into bands of rows (one task per band, so a
//! frame is rendered across providers), followed by independent Monte Carlo jobs. The
//! sample modules are compiled into the binary, so the demo runs from any directory; they
//! are written next to the demo's data because the buyer uploads jobs from files.

use std::path::Path;

use agora_client::JobRequest;
use agora_core::{Fuel, Price};
use agora_proto::{OciJob, TaskRef, Workload};
use anyhow::Context;

const PATHTRACE_WASM: &[u8] = include_bytes!("../../../../../examples/jobs/pathtrace.wasm");
const MONTECARLO_WASM: &[u8] = include_bytes!("../../../../../examples/jobs/montecarlo.wasm");
/// The sample container images (examples/containers) and the input they work on.
const BUSYBOX_HASH_IMAGE: &[u8] =
    include_bytes!("../../../../../examples/containers/busybox-hash.oci.tar");
const SQLITE_REPORT_IMAGE: &[u8] =
    include_bytes!("../../../../../examples/containers/sqlite-report.oci.tar");
const SALES_CSV: &[u8] = include_bytes!("../../../../../examples/containers/inputs/sales.csv");

/// The name every demo order carries as its job (`agora job list --job agora-demo`).
pub const JOB_NAME: &str = "agora-demo";

/// One job the buyer submits.
#[derive(Clone)]
pub struct Task {
    /// A short label for the report, e.g. `tile 2/6` or `montecarlo #1`.
    pub label: String,
    /// The order to place.
    pub request: JobRequest,
    /// Whether this task renders a band of the frame (its `/output/tile.ppm` is kept).
    pub is_tile: bool,
}

/// The frame the demo renders.
#[derive(Clone, Copy)]
pub struct Frame {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Samples per pixel.
    pub samples: u32,
    /// Bands the frame is split into.
    pub tiles: u32,
}

/// Writes the sample modules into `dir` and returns the tasks for a frame and
/// `montecarlo_jobs` simulations, each capped at `max_price` per CU.
pub fn tasks(
    dir: &Path,
    frame: Frame,
    montecarlo_jobs: u32,
    montecarlo_samples: u64,
    max_price: Price,
) -> anyhow::Result<Vec<Task>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pathtrace = dir.join("pathtrace.wasm");
    let montecarlo = dir.join("montecarlo.wasm");
    for (path, bytes) in [(&pathtrace, PATHTRACE_WASM), (&montecarlo, MONTECARLO_WASM)] {
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let bands = row_bands(frame.height, frame.tiles);
    let total = bands.len() as u32 + montecarlo_jobs;
    let request = |module: &Path, label: String, args: Vec<String>, fuel: Fuel, index: u32| {
        let mut request = JobRequest::new(module);
        request.label = label;
        request.args = args;
        request.fuel_budget = fuel;
        request.max_price = max_price;
        request.task = Some(TaskRef {
            job: JOB_NAME.into(),
            index,
            of: total,
        });
        request
    };
    let mut tasks: Vec<Task> = bands
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            let label = format!("tile {}/{}", i + 1, bands.len());
            let args = [frame.width, frame.height, start, end, frame.samples]
                .iter()
                .map(u32::to_string)
                .collect();
            // ~1.8k fuel per pixel-sample; budget 4x that so a slow scene still fits.
            let fuel =
                Fuel(8_000 * frame.width as u64 * (end - start) as u64 * frame.samples as u64);
            Task {
                request: request(&pathtrace, label.clone(), args, fuel, i as u32),
                label,
                is_tile: true,
            }
        })
        .collect();
    tasks.extend((0..montecarlo_jobs).map(|i| {
        let label = format!("montecarlo #{}", i + 1);
        let args = vec![montecarlo_samples.to_string(), (i + 1).to_string()];
        // ~475 fuel per sample; budget 2x.
        let fuel = Fuel(1_000 * montecarlo_samples.max(1));
        let index = bands.len() as u32 + i;
        Task {
            request: request(&montecarlo, label.clone(), args, fuel, index),
            label,
            is_tile: false,
        }
    }));
    Ok(tasks)
}

/// Appends the container jobs: the busybox image hashing the sales data and the sqlite
/// image reporting on it, each an OCI image archive run under the provider's runtime.
pub fn add_container_tasks(
    dir: &Path,
    tasks: &mut Vec<Task>,
    max_price: Price,
) -> anyhow::Result<()> {
    let sales = dir.join("sales.csv");
    let images = [
        ("busybox-hash.oci.tar", BUSYBOX_HASH_IMAGE, "oci hash"),
        ("sqlite-report.oci.tar", SQLITE_REPORT_IMAGE, "oci sqlite"),
    ];
    let files = images
        .iter()
        .map(|(name, bytes, _)| (dir.join(name), *bytes));
    for (path, bytes) in files.chain([(sales.clone(), SALES_CSV)]) {
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let total = tasks.len() as u32 + images.len() as u32;
    for task in tasks.iter_mut() {
        if let Some(task_ref) = &mut task.request.task {
            task_ref.of = total;
        }
    }
    for (i, (name, _, label)) in images.iter().enumerate() {
        let mut request = JobRequest::new(dir.join(name));
        request.workload = Workload::Oci(OciJob {
            entrypoint: None,
            working_dir: None,
            network: false,
            deterministic: true,
            max_unpacked_bytes: 64 << 20,
        });
        request.inputs = vec![("sales.csv".into(), sales.clone())];
        request.label = (*label).into();
        request.max_price = max_price;
        request.fuel_budget = Fuel::compute_units(20);
        request.task = Some(TaskRef {
            job: JOB_NAME.into(),
            index: total - images.len() as u32 + i as u32,
            of: total,
        });
        tasks.push(Task {
            label: (*label).into(),
            request,
            is_tile: false,
        });
    }
    Ok(())
}

/// Splits `height` rows into `bands` contiguous, nearly equal ranges `[start, end)`.
pub fn row_bands(height: u32, bands: u32) -> Vec<(u32, u32)> {
    let bands = bands.clamp(1, height.max(1));
    (0..bands)
        .map(|i| (height * i / bands, height * (i + 1) / bands))
        .filter(|(start, end)| start < end)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_cover_every_row_once() {
        for (height, bands) in [(120, 6), (7, 3), (5, 9), (1, 1)] {
            let b = row_bands(height, bands);
            assert_eq!(b.first().map(|r| r.0), Some(0));
            assert_eq!(b.last().map(|r| r.1), Some(height));
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0));
        }
    }

    #[test]
    fn every_task_has_its_own_index_and_the_modules_are_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frame = Frame {
            width: 16,
            height: 8,
            samples: 1,
            tiles: 3,
        };
        let tasks = tasks(dir.path(), frame, 2, 1000, Price(1)).expect("tasks");
        assert_eq!(tasks.len(), 5);
        for (i, task) in tasks.iter().enumerate() {
            let task_ref = task.request.task.as_ref().expect("a task ref");
            assert_eq!((task_ref.index, task_ref.of), (i as u32, 5));
            assert!(task.request.module.exists());
        }
    }
}
