//! The figures of `docs/sim/`, drawn as SVG with `plotters` (its SVG backend only).
//!
//! This is the crate's one module that writes files, and only when asked: the simulation
//! itself never calls it.

use std::path::Path;

use plotters::prelude::*;

use crate::config::Behaviour;
use crate::report::Report;
use crate::sweep::Sweep;

/// Why a figure could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {file}: {reason}")]
pub struct PlotError {
    /// The figure.
    pub file: String,
    /// What went wrong.
    pub reason: String,
}

const SIZE: (u32, u32) = (860, 480);
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A line to draw: its legend and points.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
}

/// Writes every figure of a run (and of a sweep, when given) into `dir`; returns the files.
pub fn all(report: &Report, sweep: Option<&Sweep>, dir: &Path) -> Result<Vec<String>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|e| PlotError {
        file: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut files = vec![
        overhead(report, dir)?,
        spot_index(report, dir)?,
        wrong_accepted(report, dir)?,
    ];
    if let Some(sweep) = sweep {
        files.push(sweep_by_strategy(sweep, dir)?);
        files.push(sweep_by_rate(sweep, dir)?);
    }
    Ok(files)
}

fn overhead(report: &Report, dir: &Path) -> Result<String, PlotError> {
    let points = report
        .series
        .iter()
        .filter(|p| p.settled > 0)
        .map(|p| (p.minute as f64, p.overhead))
        .collect();
    chart(
        dir,
        "overhead.svg",
        "Verification overhead per simulated minute (all policies)",
        ("simulated minute", "CU executed ÷ CU billed"),
        vec![Line {
            label: "overhead".into(),
            points,
        }],
        None,
    )
}

fn spot_index(report: &Report, dir: &Path) -> Result<String, PlotError> {
    let vwap = report
        .series
        .iter()
        .filter_map(|p| p.vwap_per_cu.map(|v| (p.minute as f64, v)))
        .collect();
    let best = report
        .series
        .iter()
        .filter_map(|p| p.best_ask_per_cu.map(|v| (p.minute as f64, v)))
        .collect();
    chart(
        dir,
        "spot_index.svg",
        "Spot index (cpu): 60 s volume-weighted price and best free ask",
        ("simulated minute", "AGR per CU"),
        vec![
            Line {
                label: "VWAP, last 60 s".into(),
                points: vwap,
            },
            Line {
                label: "best free ask".into(),
                points: best,
            },
        ],
        None,
    )
}

fn wrong_accepted(report: &Report, dir: &Path) -> Result<String, PlotError> {
    let points = report
        .series
        .iter()
        .map(|p| (p.minute as f64, p.wrong_accepted as f64))
        .collect();
    chart(
        dir,
        "wrong_accepted.svg",
        "Wrong results accepted so far (all policies; `none` buyers accept every lie)",
        ("simulated minute", "wrong results accepted"),
        vec![Line {
            label: "cumulative".into(),
            points,
        }],
        None,
    )
}

fn sweep_by_strategy(sweep: &Sweep, dir: &Path) -> Result<String, PlotError> {
    let p_ppm = 50_000;
    let lines = Behaviour::ALL[1..]
        .iter()
        .map(|&b| Line {
            label: b.name().to_string(),
            points: gain_per_cheat(sweep, b, p_ppm),
        })
        .collect();
    chart(
        dir,
        "stake_sweep_by_strategy.svg",
        "Gain per cheat by strategy under spot:0.05 (> 0: cheating pays)",
        ("slash per proven fault ÷ (C/p − R)", "AGR gained per cheat"),
        lines,
        Some(0.0),
    )
}

fn sweep_by_rate(sweep: &Sweep, dir: &Path) -> Result<String, PlotError> {
    let mut rates: Vec<u32> = sweep.points.iter().map(|p| p.p_ppm).collect();
    rates.dedup();
    let lines = rates
        .iter()
        .map(|&p| Line {
            label: format!("always, spot:{}", p as f64 / 1e6),
            points: gain_per_cheat(sweep, Behaviour::Always, p),
        })
        .collect();
    chart(
        dir,
        "stake_sweep_by_rate.svg",
        "Gain per cheat of the always-cheater, by audit rate p (> 0: cheating pays)",
        ("slash per proven fault ÷ (C/p − R)", "AGR gained per cheat"),
        lines,
        Some(0.0),
    )
}

fn gain_per_cheat(sweep: &Sweep, behaviour: Behaviour, p_ppm: u32) -> Vec<(f64, f64)> {
    sweep
        .points
        .iter()
        .filter(|p| p.p_ppm == p_ppm)
        .filter_map(|p| {
            p.strategies
                .iter()
                .find(|s| s.behaviour == behaviour && s.cheats > 0)
                .map(|s| (p.stake_ratio, s.gain_per_cheat_agr))
        })
        .collect()
}

/// Draws `lines` into `dir/file`; `zero` draws a horizontal rule at that y.
fn chart(
    dir: &Path,
    file: &str,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    lines: Vec<Line>,
    zero: Option<f64>,
) -> Result<String, PlotError> {
    let path = dir.join(file);
    let fail = |e: &dyn std::fmt::Display| PlotError {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all() {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some(z) = zero {
        y0 = y0.min(z);
        y1 = y1.max(z);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let root = SVGBackend::new(&path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| fail(&e))?;
    if let Some(z) = zero {
        chart
            .draw_series(LineSeries::new([(x0, z), (x1, z)], BLACK.stroke_width(1)))
            .map_err(|e| fail(&e))?;
    }
    for (i, line) in lines.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(line.points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(line.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(path.display().to_string())
}
