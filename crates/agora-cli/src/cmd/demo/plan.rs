//! What the demo buyer asks the market to run.
//!
//! A frame of the path-tracer sample split into bands of rows (one task per band, so a
//! frame is rendered across providers), followed by independent Monte Carlo jobs. The
//! sample modules are compiled into the binary so the demo runs from any directory.

use agora_core::{Fuel, Hash};
use agora_exec::WasmModule;

const PATHTRACE_WASM: &[u8] = include_bytes!("../../../../../examples/jobs/pathtrace.wasm");
const MONTECARLO_WASM: &[u8] = include_bytes!("../../../../../examples/jobs/montecarlo.wasm");

/// One job the buyer submits.
#[derive(Clone)]
pub struct Task {
    /// A short label for the report, e.g. `tile 2/6` or `montecarlo #1`.
    pub label: String,
    /// The module to run.
    pub module: WasmModule,
    /// Its arguments.
    pub args: Vec<String>,
    /// The fuel budget the buyer pays for at most.
    pub fuel_budget: Fuel,
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

/// The tasks for a frame and `montecarlo_jobs` simulations.
pub fn tasks(frame: Frame, montecarlo_jobs: u32, montecarlo_samples: u64) -> Vec<Task> {
    let pathtrace = WasmModule::new(PATHTRACE_WASM.to_vec());
    let montecarlo = WasmModule::new(MONTECARLO_WASM.to_vec());
    let mut tasks: Vec<Task> = row_bands(frame.height, frame.tiles)
        .into_iter()
        .enumerate()
        .map(|(i, (start, end))| Task {
            label: format!("tile {}/{}", i + 1, frame.tiles),
            module: pathtrace.clone(),
            args: [frame.width, frame.height, start, end, frame.samples]
                .iter()
                .map(u32::to_string)
                .collect(),
            // ~1.8k fuel per pixel-sample; budget 4x that so a slow scene still fits.
            fuel_budget: Fuel(
                8_000 * frame.width as u64 * (end - start) as u64 * frame.samples as u64,
            ),
            is_tile: true,
        })
        .collect();
    tasks.extend((0..montecarlo_jobs).map(|i| Task {
        label: format!("montecarlo #{}", i + 1),
        module: montecarlo.clone(),
        args: vec![montecarlo_samples.to_string(), (i + 1).to_string()],
        // ~475 fuel per sample; budget 2x.
        fuel_budget: Fuel(1_000 * montecarlo_samples.max(1)),
        is_tile: false,
    }));
    tasks
}

/// Splits `height` rows into `bands` contiguous, nearly equal ranges `[start, end)`.
pub fn row_bands(height: u32, bands: u32) -> Vec<(u32, u32)> {
    let bands = bands.clamp(1, height.max(1));
    (0..bands)
        .map(|i| (height * i / bands, height * (i + 1) / bands))
        .filter(|(start, end)| start < end)
        .collect()
}

/// A task's order id: unique per demo run (the run seed), task index and content.
pub fn order_id(run_seed: &[u8], index: usize, task: &Task) -> Hash {
    Hash::tagged(
        "agora/demo-order/v1",
        &[
            run_seed,
            &(index as u64).to_le_bytes(),
            task.module.hash().as_bytes(),
            task.args.join(" ").as_bytes(),
        ],
    )
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
}
